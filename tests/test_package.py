"""`make package`: a zip QGIS installs, holding only what the plugin needs, that passes the
checks of plugins.qgis.org; a zip broken in any of those ways is refused, naming the problem."""

import configparser
import os
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest

from lcfusion.tools.package import MAX_ZIP_BYTES, REQUIRED_METADATA, validate

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_SCRIPT = ROOT / "tools" / "package.py"


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, str(PACKAGE_SCRIPT), str(out)],
                            capture_output=True, text=True, check=True)
    return Path(result.stdout.strip())


def test_zip_holds_one_plugin_folder_and_nothing_else(package):
    names = zipfile.ZipFile(package).namelist()
    assert all(name.startswith("lcfusion/") for name in names)
    for needed in ("lcfusion/metadata.txt", "lcfusion/__init__.py", "lcfusion/LICENSE",
                   "lcfusion/plugin/provider.py", "lcfusion/engine/cli.py",
                   "lcfusion/resources/icons/lcfusion.svg"):
        assert needed in names
    assert not [n for n in names if "/tests/" in n or "/tools/" in n or n.endswith(".pyc")
                or "__pycache__" in n or n.endswith((".tif", ".gpkg"))]
    assert package.stat().st_size < 1_000_000


def test_metadata_is_complete():
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    general = metadata["general"]
    for key in ("name", "qgisMinimumVersion", "description", "about", "version", "author",
                "email", "repository", "tracker", "icon", "tags", "changelog"):
        assert general.get(key, "").strip(), key
    assert general["name"] == "Land Cover Fusion"
    assert general["qgisMinimumVersion"] == "3.22"
    assert general["hasProcessingProvider"] == "yes"
    assert (ROOT / general["icon"]).is_file()
    changelog = general["changelog"]
    for feature in ("FG-UNET", "MRFusion", "TWINNS", "Random Forest", "Evaluate", "Slurm",
                    "settings dialog", "training report", "repeated over k seeds"):
        assert feature.lower() in changelog.lower(), feature
    from lcfusion.engine import __version__

    assert general["version"] == __version__


@pytest.mark.slow
def test_unzipped_plugin_loads_in_qgis_process(package, tmp_path):
    plugins = tmp_path / "plugins"
    zipfile.ZipFile(package).extractall(plugins)
    profile = tmp_path / "profile"
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "QGIS_PLUGINPATH": str(plugins),
           "HOME": str(tmp_path), "QGIS_CUSTOM_CONFIG_PATH": str(profile),
           "QGIS_OPTIONS_PATH": str(profile), "PYTHONPATH": ""}
    enable = subprocess.run(["qgis_process.bin", "plugins", "enable", "lcfusion"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert enable.returncode == 0, enable.stdout + enable.stderr
    listing = subprocess.run(["qgis_process.bin", "list"], env=env, capture_output=True,
                             text=True, timeout=120)
    assert "lcfusion:trainfgunet" in listing.stdout
    assert "lcfusion:classifyfgunet" in listing.stdout


# The validation (the checks of plugins.qgis.org) ---------------------------------------------

def rebuilt(package: Path, target: Path, change: Callable[[dict[str, bytes]], None]) -> Path:
    """A copy of the plugin zip whose entries (name -> bytes) went through `change`."""
    with zipfile.ZipFile(package) as archive:
        entries = {name: archive.read(name) for name in archive.namelist()}
    change(entries)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return target


def adding(name: str, data: bytes = b"x") -> Callable[[dict], None]:
    return lambda entries: entries.update({name: data})


def removing(name: str) -> Callable[[dict], None]:
    return lambda entries: entries.pop(name)


def renaming_folder(folder: str) -> Callable[[dict], None]:
    def change(entries: dict) -> None:
        for name in list(entries):
            entries[folder + name.removeprefix("lcfusion")] = entries.pop(name)
    return change


def metadata_line(key: str, value: str | None) -> Callable[[dict], None]:
    """Set (or, with None, remove) one line of metadata.txt."""
    def change(entries: dict) -> None:
        text = entries["lcfusion/metadata.txt"].decode()
        line = "" if value is None else f"{key}={value}\n"
        entries["lcfusion/metadata.txt"] = re.sub(rf"(?m)^{key}=.*\n", line, text).encode()
    return change


def test_the_real_zip_passes_the_validation(package):
    assert validate(package) == []


@pytest.mark.parametrize("change, problem", [
    (adding("other/readme.txt"), "exactly one top-level folder, not lcfusion, other"),
    (renaming_folder("lc-fusion"), "the folder 'lc-fusion' is not a valid Python package name"),
    (adding("lcfusion/__MACOSX/._metadata.txt"), "a __MACOSX folder"),
    (adding("lcfusion/.git/config"), "lcfusion/.git/config: a .git folder"),
    (adding("lcfusion/engine/__pycache__/cli.cpython-311.pyc"), "a __pycache__ folder"),
    (adding("lcfusion/engine/cli.pyc"), "lcfusion/engine/cli.pyc: a compiled file (.pyc)"),
    (adding("lcfusion/engine/cli.pyo"), "a compiled file (.pyo)"),
    (adding("lcfusion/engine/_fast.so"), "lcfusion/engine/_fast.so: a compiled file (.so)"),
    (adding("lcfusion/engine/fast.dll"), "a compiled file (.dll)"),
    (adding("lcfusion/tools/setup.exe"), "a compiled file (.exe)"),
    (adding("lcfusion/tests/test_x.py"), "lcfusion/tests/test_x.py: a tests folder"),
    (adding("lcfusion/tools/bench.py"), "a tools folder"),
    (adding("lcfusion/resources/scene.tif"), "a data file (.tif) the plugin does not need"),
    (adding("lcfusion/resources/model.lcfusion"), "a data file (.lcfusion)"),
    (adding("lcfusion/.DS_Store"), "a hidden file or folder (.DS_Store)"),
    (adding("lcfusion/../evil.py"), "lcfusion/../evil.py: a path outside the plugin folder"),
    (removing("lcfusion/metadata.txt"), "lcfusion/metadata.txt is missing"),
    (removing("lcfusion/__init__.py"), "lcfusion/__init__.py is missing"),
    (adding("lcfusion/__init__.py", b"def class_factory(iface):\n    pass\n"),
     "defines no classFactory(iface)"),
    (removing("lcfusion/LICENSE"), "lcfusion/LICENSE is missing"),
    (adding("lcfusion/metadata.txt", b"name=lcfusion\n"), "metadata.txt cannot be read"),
    (metadata_line("version", "one"), "version 'one' is not a version like 1.2.3"),
    (metadata_line("qgisMinimumVersion", "3.x"), "qgisMinimumVersion '3.x' is not a QGIS"),
    (metadata_line("repository", "github.com/lcfusion"), "repository 'github.com/lcfusion' "
                                                         "is not an http(s) URL"),
    (metadata_line("tracker", "ftp://bugs"), "tracker 'ftp://bugs' is not an http(s) URL"),
    (metadata_line("email", "lcfusion"), "email 'lcfusion' is not an e-mail address"),
    (metadata_line("author", "a/b"), "author cannot contain slashes"),
    (metadata_line("experimental", "maybe"), "experimental 'maybe' is not True or False"),
    (metadata_line("icon", "resources/icons/missing.svg"),
     "the icon 'resources/icons/missing.svg' is not in the zip"),
    (metadata_line("icon", None), "the icon '' is not in the zip"),
])
def test_a_broken_zip_is_refused_naming_the_problem(package, tmp_path, change, problem):
    problems = validate(rebuilt(package, tmp_path / "broken.zip", change))
    assert [p for p in problems if problem in p], problems


@pytest.mark.parametrize("key", REQUIRED_METADATA)
def test_each_required_metadata_field_is_checked(package, tmp_path, key):
    problems = validate(rebuilt(package, tmp_path / "broken.zip", metadata_line(key, None)))
    assert problems == [f"metadata.txt: {key} is missing or empty"]


def test_a_zip_too_large_or_not_a_zip_or_damaged_is_refused(package, tmp_path):
    big = rebuilt(package, tmp_path / "big.zip",
                  adding("lcfusion/resources/noise.bin", os.urandom(MAX_ZIP_BYTES)))
    assert [p for p in validate(big) if "plugins.qgis.org accepts" in p]
    text = tmp_path / "text.zip"
    text.write_text("not a zip")
    assert validate(text) == ["text.zip is not a zip file: File is not a zip file"]
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(damaged, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("lcfusion/__init__.py", b"def classFactory(iface):\n    return 0\n" * 40)
    data = bytearray(damaged.read_bytes())
    data[100] ^= 0xFF
    damaged.write_bytes(bytes(data))
    assert validate(damaged) == ["the zip is damaged (lcfusion/__init__.py)"]


def test_the_package_command_refuses_an_invalid_zip(package, tmp_path):
    broken = rebuilt(package, tmp_path / "broken.zip", adding("lcfusion/engine/cli.pyc"))
    result = subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--check", str(broken)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "is not a valid QGIS plugin zip" in result.stderr
    assert "- lcfusion/engine/cli.pyc: a compiled file (.pyc)" in result.stderr
    good = subprocess.run([sys.executable, str(PACKAGE_SCRIPT), "--check", str(package)],
                          capture_output=True, text=True)
    assert good.returncode == 0 and good.stdout.strip() == str(package)
