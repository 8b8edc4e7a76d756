"""``make package``: a zip that QGIS's "Install from ZIP" accepts.

The zip holds one folder, ``lcfusion/``, with only what the plugin needs at run time:
metadata, the entry point, ``plugin/``, ``engine/``, ``resources/``, the README, the licence and
the requirements (for the engine's virtual environment). No tests, tools, caches or data.

The zip is then checked as the official plugin repository (plugins.qgis.org) checks uploads,
plus what makes a plugin importable: `validate` lists the problems, and the build fails (the zip
is removed, the problems printed) when there is any. ``package.py --check ZIP`` checks a zip.
"""

from __future__ import annotations

import argparse
import configparser
import re
import sys
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
INCLUDED = ("metadata.txt", "__init__.py", "README.md", "LICENSE", "requirements.txt",
            "requirements-light.txt",
            "Makefile", "plugin", "engine", "resources")
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
EXCLUDED_PARTS = ("__pycache__",)

#: The upload limit of plugins.qgis.org.
MAX_ZIP_BYTES = 25_000_000
#: Metadata that plugins.qgis.org requires.
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author",
                     "email", "repository", "tracker")
URL_METADATA = ("repository", "tracker", "homepage")
BOOLEAN_METADATA = ("experimental", "deprecated", "server", "hasProcessingProvider",
                    "supportsQt6")
#: Folders that plugins.qgis.org refuses, and what only development needs.
FORBIDDEN_FOLDERS = ("__MACOSX", ".git", "__pycache__", "tests", "test", "tools")
COMPILED_SUFFIXES = (".pyc", ".pyo", ".pyd", ".so", ".dll", ".dylib", ".exe", ".o", ".a",
                     ".lib", ".class", ".jar")
DATA_SUFFIXES = (".tif", ".tiff", ".gpkg", ".shp", ".lcfusion", ".safetensors", ".pt", ".pth",
                 ".npy", ".npz", ".h5", ".zip")
PACKAGE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
VERSION = re.compile(r"\d+(\.\d+){1,3}([-.]?[A-Za-z]+\d*)?")
QGIS_VERSION = re.compile(r"\d+\.\d+(\.\d+)?")
EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")


def files() -> list[Path]:
    found = []
    for name in INCLUDED:
        path = ROOT / name
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(p for p in sorted(path.rglob("*")) if p.is_file()
                         and p.suffix not in EXCLUDED_SUFFIXES
                         and not any(part in EXCLUDED_PARTS for part in p.parts))
    return found


def name_problems(name: str) -> list[str]:
    """What is wrong with one entry of the zip."""
    path = PurePosixPath(name)
    if name.startswith("/") or "\\" in name or ".." in path.parts:
        return [f"{name}: a path outside the plugin folder"]
    problems = [f"{name}: a {part} folder" for part in path.parts[:-1]
                if part in FORBIDDEN_FOLDERS]
    hidden = [part for part in path.parts if part.startswith(".")]
    if hidden and not problems:
        problems.append(f"{name}: a hidden file or folder ({hidden[0]})")
    suffix = path.suffix.lower()
    if suffix in COMPILED_SUFFIXES:
        problems.append(f"{name}: a compiled file ({suffix})")
    if suffix in DATA_SUFFIXES:
        problems.append(f"{name}: a data file ({suffix}) the plugin does not need")
    return problems


def metadata_problems(archive: zipfile.ZipFile, folder: str) -> list[str]:
    """The metadata.txt checks: required fields, formats, URLs, the icon."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    try:
        parser.read_string(archive.read(f"{folder}/metadata.txt").decode("utf-8"))
        general = parser["general"]
    except (UnicodeDecodeError, configparser.Error, KeyError) as exc:
        return [f"metadata.txt cannot be read: {exc}"]
    problems = [f"metadata.txt: {key} is missing or empty" for key in REQUIRED_METADATA
                if not general.get(key, "").strip()]
    checks = {"version": (VERSION, "a version like 1.2.3"),
              "qgisMinimumVersion": (QGIS_VERSION, "a QGIS version like 3.22"),
              "qgisMaximumVersion": (QGIS_VERSION, "a QGIS version like 3.99"),
              "email": (EMAIL, "an e-mail address")}
    for key, (pattern, expected) in checks.items():
        value = general.get(key, "").strip()
        if value and not pattern.fullmatch(value):
            problems.append(f"metadata.txt: {key} {value!r} is not {expected}")
    for key in URL_METADATA:
        url = urlparse(general.get(key, "").strip())
        if general.get(key, "").strip() and not (url.scheme in ("http", "https") and url.netloc):
            problems.append(f"metadata.txt: {key} {general[key]!r} is not an http(s) URL")
    for key in BOOLEAN_METADATA:
        if general.get(key, "true").strip().lower() not in ("true", "false", "yes", "no"):
            problems.append(f"metadata.txt: {key} {general[key]!r} is not True or False")
    if "/" in general.get("author", ""):
        problems.append("metadata.txt: author cannot contain slashes")
    icon = general.get("icon", "").strip().removeprefix("./")
    if not icon or f"{folder}/{icon}" not in archive.namelist():
        problems.append(f"metadata.txt: the icon {icon!r} is not in the zip")
    return problems


def content_problems(archive: zipfile.ZipFile, folder: str) -> list[str]:
    """The plugin folder: its name, entry point, licence and metadata."""
    names = set(archive.namelist())
    problems = []
    if not PACKAGE_NAME.fullmatch(folder):
        problems.append(f"the folder {folder!r} is not a valid Python package name")
    for required in ("__init__.py", "metadata.txt", "LICENSE"):
        if f"{folder}/{required}" not in names:
            problems.append(f"{folder}/{required} is missing")
    if (f"{folder}/__init__.py" in names and not re.search(
            rb"^def classFactory\(", archive.read(f"{folder}/__init__.py"), re.MULTILINE)):
        problems.append(f"{folder}/__init__.py defines no classFactory(iface)")
    if f"{folder}/metadata.txt" in names:
        problems += metadata_problems(archive, folder)
    return problems


def validate(zip_path: str | Path) -> list[str]:
    """The problems that keep a plugin zip from installing into QGIS or from being accepted by
    plugins.qgis.org; empty when there is none."""
    path = Path(zip_path)
    problems = []
    if path.stat().st_size > MAX_ZIP_BYTES:
        problems.append(f"the zip is {path.stat().st_size:,} bytes, above the "
                        f"{MAX_ZIP_BYTES:,} bytes plugins.qgis.org accepts")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        return [*problems, f"{path.name} is not a zip file: {exc}"]
    with archive:
        names = archive.namelist()
        for name in names:
            problems += name_problems(name)
        try:
            damaged = archive.testzip()
        except (zipfile.BadZipFile, zlib.error, OSError) as exc:
            damaged = str(exc)
        if damaged:
            return [*problems, f"the zip is damaged ({damaged})"]
        folders = sorted({name.split("/")[0] for name in names})
        if len(folders) != 1 or not all("/" in name for name in names):
            problems.append("the zip must hold exactly one top-level folder, not "
                            + (", ".join(folders) or "nothing"))
        else:
            problems += content_problems(archive, folders[0])
    return problems


def build(out: Path) -> Path:
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    version = metadata["general"]["version"]
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"lcfusion-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files():
            archive.write(path, f"lcfusion/{path.relative_to(ROOT)}")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default="dist", type=Path,
                        help="the folder to write the zip to (default: dist)")
    parser.add_argument("--check", type=Path, metavar="ZIP",
                        help="only check an existing plugin zip")
    args = parser.parse_args(argv)
    target = args.check or build(args.out)
    problems = validate(target)
    if problems:
        print(f"{target} is not a valid QGIS plugin zip:", file=sys.stderr)
        print("\n".join(f"- {problem}" for problem in problems), file=sys.stderr)
        if not args.check:
            target.unlink()
        return 1
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
