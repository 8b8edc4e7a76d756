"""``make package``: a zip that QGIS's "Install from ZIP" accepts.

The zip holds one folder, ``lcfusion/``, with only what the plugin needs at run time:
metadata, the entry point, ``plugin/``, ``engine/``, ``resources/``, the README, the licence and
the requirements (for the engine's virtual environment). No tests, tools, caches or data.
"""

from __future__ import annotations

import configparser
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
INCLUDED = ("metadata.txt", "__init__.py", "README.md", "LICENSE", "requirements.txt",
            "Makefile", "plugin", "engine", "resources")
EXCLUDED_SUFFIXES = (".pyc", ".pyo")
EXCLUDED_PARTS = ("__pycache__",)


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


def main() -> int:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "dist")
    out.mkdir(parents=True, exist_ok=True)
    metadata = configparser.ConfigParser()
    metadata.read(ROOT / "metadata.txt", encoding="utf-8")
    version = metadata["general"]["version"]
    target = out / f"lcfusion-{version}.zip"
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in files():
            archive.write(path, f"lcfusion/{path.relative_to(ROOT)}")
    print(target)
    return 0


if __name__ == "__main__":
    sys.exit(main())
