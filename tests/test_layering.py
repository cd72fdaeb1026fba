"""The layers of docs/ARCHITECTURE.md, proven: every module under mlin_qgis/core/ imports in a Python where
qgis, Qt, torch and the package's QGIS and learning layers cannot be imported, and so do the package root
(QGIS's classFactory) and the CLI. A module that breaks this is named.

The check runs in a subprocess with a meta-path finder that raises ImportError for the blocked names, so it
fails even on a machine where QGIS and torch are installed (an import that succeeds by accident here
would fail on a user's machine without them)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

from conftest import REPO

CORE = REPO / "mlin_qgis" / "core"

CHECKER = textwrap.dedent("""
    import importlib, importlib.abc, json, pkgutil, sys, traceback

    BLOCKED_TOP = {"qgis", "PyQt5", "PyQt6", "sip", "torch", "torchvision"}
    BLOCKED_PACKAGES = ("mlin_qgis.ml", "mlin_qgis.qgis_plugin")

    def blocked(name):
        return name.split(".")[0] in BLOCKED_TOP or any(name == p or name.startswith(p + ".")
                                                        for p in BLOCKED_PACKAGES)

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if blocked(name):
                raise ImportError(f"{name} may not be imported here (layering test)", name=name)
            return None

    for loaded in [m for m in sys.modules if blocked(m)]:
        del sys.modules[loaded]
    sys.meta_path.insert(0, Block())
    package, extra = sys.argv[1], sys.argv[2:]
    root = importlib.import_module(package)
    names = sorted(m.name for m in pkgutil.walk_packages(root.__path__, package + ".", onerror=lambda n: None))
    failures = {}
    for name in [package, *names, *extra]:
        try:
            importlib.import_module(name)
        except BaseException as exc:
            ours = [f for f in traceback.extract_tb(exc.__traceback__) if not f.filename.startswith("<")]
            where = f" (at {ours[-1].filename}:{ours[-1].lineno})" if ours else ""
            failures[name] = f"{type(exc).__name__}: {exc}{where}"
    print(json.dumps({"modules": names, "failures": failures,
                      "leaked": sorted(m for m in sys.modules if blocked(m)),
                      "onnxruntime": "onnxruntime" in sys.modules}))
""")


def _check(package: str, *extra: str, path: Path = REPO) -> dict:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(path), str(REPO)]))
    proc = subprocess.run([sys.executable, "-c", CHECKER, package, *extra], cwd=str(path), env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_every_core_module_imports_without_qgis_or_torch() -> None:
    result = _check("mlin_qgis.core")
    on_disk = sorted(f"mlin_qgis.core.{p.stem}" for p in CORE.glob("*.py") if p.stem != "__init__")
    assert result["modules"] == on_disk  # every module was tried, none skipped
    assert result["failures"] == {}, "core modules that import qgis, Qt, torch or a QGIS/ml layer:\n" + \
        "\n".join(f"  {name}: {why}" for name, why in result["failures"].items())
    assert result["leaked"] == []


def test_package_root_and_cli_import_without_qgis_torch_or_onnxruntime() -> None:
    """`import mlin_qgis` (what QGIS does before classFactory), the CLI and the model list stay light:
    no qgis, no torch, and onnxruntime only when a model runs."""
    code = textwrap.dedent("""
        import importlib.abc, json, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("qgis", "PyQt5", "torch") or name.startswith("mlin_qgis.ml"):
                    raise ImportError(name + " blocked")
        sys.meta_path.insert(0, Block())
        import mlin_qgis, mlin_qgis.core, mlin_qgis.core.models, mlin_qgis.qgis_plugin.dependencies, mlin_qgis.__main__
        print(json.dumps({"classFactory": callable(mlin_qgis.classFactory), "version": mlin_qgis.__version__,
                          "onnxruntime": "onnxruntime" in sys.modules}))
    """)
    proc = subprocess.run([sys.executable, "-c", code], cwd=str(REPO), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    from mlin_qgis.core.version import __version__

    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"classFactory": True, "version": __version__,
                                                                "onnxruntime": False}


def test_the_layering_check_names_a_module_that_breaks_it(tmp_path: Path) -> None:
    """The check can fail: a stand-in core with one module importing qgis and one importing torch
    lazily (allowed) is reported with exactly the bad module named."""
    pkg = tmp_path / "fakecore"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "fine.py").write_text("import numpy\n\ndef later():\n    import torch\n    return torch\n")
    (pkg / "leaky.py").write_text("from qgis.core import QgsRasterLayer\n")
    (pkg / "reaches.py").write_text("from mlin_qgis.ml import decoder\n")
    result = _check("fakecore", path=tmp_path)
    assert result["modules"] == ["fakecore.fine", "fakecore.leaky", "fakecore.reaches"]
    assert sorted(result["failures"]) == ["fakecore.leaky", "fakecore.reaches"]
    assert "qgis" in result["failures"]["fakecore.leaky"] and "leaky.py:1" in result["failures"]["fakecore.leaky"]


def test_every_logger_is_named_after_its_module() -> None:
    """`logging.getLogger(__name__)` everywhere in the package (third-party loggers such as Dask's may be
    named; qgis_plugin/log.py installs its handler on the package's logger, PACKAGE_LOGGER)."""
    import ast

    wrong = {}
    for path in sorted((REPO / "mlin_qgis").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "getLogger"):
                continue
            arg = node.args[0] if node.args else None
            ok = (isinstance(arg, ast.Name) and arg.id in ("__name__", "PACKAGE_LOGGER")) or \
                (isinstance(arg, ast.Constant) and isinstance(arg.value, str) and not arg.value.startswith("mlin"))
            if not ok:
                wrong[str(path.relative_to(REPO))] = node.lineno
    assert not wrong, f"use logging.getLogger(__name__) in {wrong}"
