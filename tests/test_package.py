"""`make package`: a zip QGIS installs, holding only what the plugin needs."""

import configparser
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), str(out)],
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
