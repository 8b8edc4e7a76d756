"""The architecture's rules, checked in the source and at run time:

* the engine never imports qgis (it runs on nodes without QGIS);
* the plugin never imports torch, safetensors or scikit-learn (QGIS only needs numpy and GDAL;
  heavy work runs in the engine's child process);
* the engine's layers import one way, from the foundation up to the entry points (the order is
  the prose at the top of ``engine/__init__.py``).
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import lcfusion

REPO = Path(__file__).resolve().parents[1]
#: The folder that holds the `lcfusion` package (e.g. build/, with a link to the repository).
PACKAGE_PARENT = Path(lcfusion.__file__).parent.parent
HEAVY = ("torch", "safetensors", "sklearn")


def python_files(*parts: str) -> list[Path]:
    files = sorted(REPO.joinpath(*parts).rglob("*.py"))
    assert files, f"no Python files under {'/'.join(parts)}"
    return files


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """(line, absolute or relative module name) of every import in a file, including
    imports inside functions and `importlib.import_module("...")` / `__import__("...")`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            found.append((node.lineno, module))
            if node.level and not node.module:  # from . import x
                found += [(node.lineno, "." * node.level + a.name) for a in node.names]
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id == "__import__"))):
            found.append((node.lineno, node.args[0].value))
    return found


def top_level(module: str) -> str:
    return module.lstrip(".").split(".")[0] if not module.startswith(".") else ""


def resolves_into_plugin(path: Path, module: str) -> bool:
    """Whether a relative import in `path` reaches the `plugin` package."""
    if not module.startswith("."):
        return module == "lcfusion.plugin" or module.startswith("lcfusion.plugin.")
    level = len(module) - len(module.lstrip("."))
    package = path.parent
    for _ in range(level - 1):
        package = package.parent
    target = package.joinpath(*module.lstrip(".").split(".")) if module.lstrip(".") else package
    try:
        relative = target.relative_to(REPO)
    except ValueError:
        return False
    return relative.parts[:1] == ("plugin",)


# Static checks -------------------------------------------------------------------------------

def test_the_engine_source_never_imports_qgis():
    offenders = []
    for path in python_files("engine"):
        for line, module in imported_modules(path):
            if top_level(module) in ("qgis", "PyQt5", "PyQt6") or resolves_into_plugin(path,
                                                                                      module):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {module}")
    assert not offenders, "the engine must not import QGIS:\n" + "\n".join(offenders)


def test_the_plugin_source_never_imports_torch_safetensors_or_sklearn():
    files = python_files("plugin") + [REPO / "__init__.py"]
    offenders = []
    for path in files:
        for line, module in imported_modules(path):
            if top_level(module) in HEAVY:
                offenders.append(f"{path.relative_to(REPO)}:{line}: {module}")
    assert not offenders, ("the plugin must not import torch, safetensors or sklearn:\n"
                           + "\n".join(offenders))


def test_the_static_check_sees_imports_in_every_form(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text(textwrap.dedent("""
        import os, torch.nn as nn
        from safetensors.torch import load
        def later():
            import sklearn.metrics
            return __import__("qgis.core")
        importlib.import_module("torch")
    """))
    modules = [m for _, m in imported_modules(sample)]
    assert {top_level(m) for m in modules} >= {"torch", "safetensors", "sklearn", "qgis"}


#: The engine's layers, lowest first: a module may import its own layer and the layers before
#: it. Top-level modules are named one by one; a folder is its own layer.
ENGINE_LAYERS = (
    ("foundation", ("", "errors", "wording", "progress", "jobs")),
    ("compute", ("compute",)),
    ("io", ("io",)),
    ("reference", ("reference",)),
    ("modelfile", ("modelfile",)),
    ("training", ("training",)),
    ("inference", ("inference",)),
    ("reports", ("reports",)),
    ("families", ("families",)),
    ("entry points", ("cli", "__main__", "sample_scene")),
)


def engine_layer(module: str) -> int | None:
    """The index of the layer of an engine module given relative to the engine ("io.series",
    "cli", "" for the package itself), or None when no layer names it."""
    head = module.split(".")[0]
    for index, (_, members) in enumerate(ENGINE_LAYERS):
        if head in members:
            return index
    return None


def engine_module(root: Path, path: Path, module: str) -> str | None:
    """The engine module (relative to `root`, dotted) that an import in `path` names, or None
    when it lies outside the engine."""
    if module.startswith("."):
        level = len(module) - len(module.lstrip("."))
        package = path.parent
        for _ in range(level - 1):
            package = package.parent
        target = package.joinpath(*module.lstrip(".").split(".")) if module.lstrip(".") \
            else package
        try:
            return ".".join(target.relative_to(root).parts)
        except ValueError:
            return None
    for prefix in ("lcfusion.engine.", "engine."):
        if module.startswith(prefix):
            return module[len(prefix):]
    return "" if module == "lcfusion.engine" else None


def upward_imports(root: Path) -> list[str]:
    """Every import in the engine under `root` that reaches a later layer than its own module's,
    and every module that no layer names."""
    problems = []
    for path in sorted(root.rglob("*.py")):
        own = ".".join(path.relative_to(root).with_suffix("").parts)
        own = "" if own == "__init__" else own
        own_layer = engine_layer(own)
        if own_layer is None:
            problems.append(f"{path.relative_to(root)}: in no layer; add it to ENGINE_LAYERS "
                            "and to the layer prose in engine/__init__.py")
            continue
        for line, module in imported_modules(path):
            target = engine_module(root, path, module)
            target_layer = None if target is None else engine_layer(target)
            if target_layer is not None and target_layer > own_layer:
                problems.append(
                    f"{path.relative_to(root)}:{line}: {module} — "
                    f"{ENGINE_LAYERS[own_layer][0]} imports {ENGINE_LAYERS[target_layer][0]}, "
                    "a later layer")
    return problems


def test_the_engine_layers_import_only_downwards():
    problems = upward_imports(REPO / "engine")
    assert not problems, "engine imports against the layer order:\n" + "\n".join(problems)


def test_the_layer_check_finds_an_upward_import_and_an_unplaced_module(tmp_path):
    engine = tmp_path / "engine"
    for folder in ("io", "families/fgunet", "compute"):
        (engine / folder).mkdir(parents=True)
    (engine / "io" / "series.py").write_text("from ..families.fgunet import commands\n"
                                             "from ..errors import LcfusionError\n")
    (engine / "compute" / "launcher.py").write_text(
        "def later():\n    from lcfusion.engine.families.staged import fit_packed_job\n")
    (engine / "families" / "fgunet" / "commands.py").write_text("from ...io import series\n")
    (engine / "helpers.py").write_text("")
    assert upward_imports(engine) == [
        "compute/launcher.py:2: lcfusion.engine.families.staged — compute imports families, "
        "a later layer",
        "helpers.py: in no layer; add it to ENGINE_LAYERS and to the layer prose in "
        "engine/__init__.py",
        "io/series.py:1: ..families.fgunet — io imports families, a later layer",
    ]


def test_the_layer_prose_lists_the_layers_in_order():
    import lcfusion.engine

    prose = lcfusion.engine.__doc__
    positions = [prose.find(f"``{members[0] or members[1]}``") for _, members in ENGINE_LAYERS]
    assert -1 not in positions, positions
    assert positions == sorted(positions)
    folders = {p.name for p in (REPO / "engine").iterdir()
               if p.is_dir() and (p / "__init__.py").exists()}
    assert folders == {members[0] for _, members in ENGINE_LAYERS
                       if members[0] and "." not in members[0] and len(members) == 1}


# Run-time checks ----------------------------------------------------------------------------

QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"
#: Debian's Python, which QGIS runs on: it has no torch.
QGIS_PYTHON = "/usr/bin/python3"


def run_python(code: str) -> dict:
    """Run `code` in a fresh interpreter that can import lcfusion; it prints one JSON object."""
    env = dict(os.environ)
    # QGIS puts its Processing plugin on the path (pytest-qgis does too, for the other tests).
    env["PYTHONPATH"] = os.pathsep.join([str(PACKAGE_PARENT), QGIS_PYTHON_PLUGINS,
                                         env.get("PYTHONPATH", "")])
    env["QT_QPA_PLATFORM"] = "offscreen"
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env,
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, f"the check failed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


BLOCK_HEAVY = """
    import importlib, importlib.abc, json, pkgutil, sys

    HEAVY = {heavy!r}

    class Blocker(importlib.abc.MetaPathFinder):
        attempts = []

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in HEAVY:
                frame = sys._getframe(1)
                while frame and "importlib" in frame.f_code.co_filename:
                    frame = frame.f_back
                where = f"{{frame.f_code.co_filename}}:{{frame.f_lineno}}" if frame else "?"
                self.attempts.append(f"{{name}} from {{where}}")
                raise ImportError(f"blocked: {{name}} (the plugin must not import it)")
            return None

    sys.meta_path.insert(0, Blocker())
"""


def test_the_plugin_imports_without_torch():
    """Every plugin module imports with torch, safetensors and sklearn made unimportable; so
    do the engine commands of sample design and area accuracy, which declare no engine
    package beyond numpy and rasterio."""
    report = run_python(BLOCK_HEAVY.format(heavy=HEAVY) + """
    import lcfusion
    import lcfusion.plugin
    names = ["lcfusion"] + [m.name for m in pkgutil.walk_packages(
        lcfusion.plugin.__path__, "lcfusion.plugin.")]
    failures = {}
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as exc:
            failures[name] = f"{type(exc).__name__}: {exc}"
    from lcfusion.engine.cli import job_command
    for command in ("sample-design", "area-accuracy"):
        try:
            job_command(command)
        except Exception as exc:
            failures[command] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({
        "imported": names,
        "failures": failures,
        "attempts": Blocker.attempts,
        "heavy_loaded": sorted(m for m in sys.modules if m.split(".")[0] in HEAVY),
        "engine_modules": sorted(m for m in sys.modules if m.startswith("lcfusion.engine")),
        "qgis_loaded": "qgis.core" in sys.modules,
    }))
    """)
    assert report["qgis_loaded"]
    assert "lcfusion.plugin.provider" in report["imported"]
    assert "lcfusion.plugin.algorithms.classify_fgunet" in report["imported"]
    assert report["failures"] == {}
    assert report["attempts"] == []
    assert report["heavy_loaded"] == []
    # The plugin does use engine modules (class tables, model headers, jobs): they must stay
    # torch-free too, and this is where the check proves it.
    assert {"lcfusion.engine.reference.classes", "lcfusion.engine.modelfile.header",
            "lcfusion.engine.jobs", "lcfusion.engine.io.outputs",
            "lcfusion.engine.reports.area_estimation"} <= set(report["engine_modules"])


def test_the_onnx_classifications_import_no_torch():
    """Every classify command's ONNX version (what the light engine environment runs) imports
    with torch, safetensors, scikit-learn and onnx made unimportable: onnxruntime, numpy and
    rasterio are all it has."""
    heavy = (*HEAVY, "onnx")
    report = run_python(BLOCK_HEAVY.format(heavy=heavy) + """
    from lcfusion.engine.cli import ONNX_COMMANDS, job_command
    failures = {}
    for command in ONNX_COMMANDS:
        try:
            job_command(command, onnx=True)
        except Exception as exc:
            failures[command] = f"{type(exc).__name__}: {exc}"
    print(json.dumps({"commands": sorted(ONNX_COMMANDS), "failures": failures,
                      "attempts": Blocker.attempts}))
    """)
    assert report["commands"] == ["classify-fgunet", "classify-mrfusion",
                                  "classify-randomforest", "classify-twinns"]
    assert report["failures"] == {}
    assert report["attempts"] == []


def test_the_engine_cli_and_fgunet_import_without_qgis():
    report = run_python("""
    import importlib, json, sys
    for name in ("lcfusion.engine.cli", "lcfusion.engine.families.fgunet.commands"):
        importlib.import_module(name)
    print(json.dumps({
        "qgis": sorted(m for m in sys.modules
                       if m.split(".")[0] in ("qgis", "PyQt5", "sip")),
        "plugin": sorted(m for m in sys.modules if m.startswith("lcfusion.plugin")),
        "torch": "torch" in sys.modules,
    }))
    """)
    assert report["qgis"] == []
    assert report["plugin"] == []
    assert report["torch"]  # the check really imported the heavy engine


def test_every_engine_module_imports_without_qgis():
    report = run_python("""
    import importlib, json, pkgutil, sys
    import lcfusion.engine
    names = [m.name for m in pkgutil.walk_packages(lcfusion.engine.__path__,
                                                   "lcfusion.engine.")
             if m.name != "lcfusion.engine.__main__"]  # __main__ runs the CLI
    for name in names:
        importlib.import_module(name)
    print(json.dumps({
        "imported": names,
        "qgis": sorted(m for m in sys.modules if m.split(".")[0] in ("qgis", "PyQt5", "sip")),
    }))
    """)
    assert "lcfusion.engine.families.fgunet.commands" in report["imported"]
    assert "lcfusion.engine.families.fgunet.network" in report["imported"]
    assert report["qgis"] == []


def test_an_engine_without_torch_says_how_to_create_its_environment(tmp_path):
    """Offers ``make setup`` only in a source checkout: an installed ZIP has no Makefile."""
    installed = tmp_path / "plugins" / "lcfusion"
    shutil.copytree(PACKAGE_PARENT / "lcfusion" / "engine", installed / "engine",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (installed / "__init__.py").write_text("")
    code = "from lcfusion.engine import cli; cli.job_command('train-fgunet')"
    messages = {}
    for name, parent in (("zip", installed.parent), ("checkout", PACKAGE_PARENT)):
        result = subprocess.run([QGIS_PYTHON, "-c", code], capture_output=True, text=True,
                                env={**os.environ, "PYTHONPATH": str(parent)}, check=False)
        messages[name] = result.stderr.strip().splitlines()[-1]
    hint = ("create the engine environment with Plugins > Land Cover Fusion > Create Engine "
            "Environment… in QGIS")
    assert messages["zip"].startswith(f"lcfusion.engine.errors.LcfusionError: the engine "
                                      f"interpreter {QGIS_PYTHON} cannot import torch; {hint}, "
                                      "or install torch==2.13.0")
    assert "make setup" not in messages["zip"]
    assert f"{hint} or run 'make setup' in {PACKAGE_PARENT / 'lcfusion'}, or" in \
        messages["checkout"]
