"""The plugin as QGIS loads it: metadata, lazy imports, qgis.utils load/initGui/unload, missing onnxruntime.

Load/unload runs in a subprocess through QGIS's real plugin machinery (``qgis.utils.loadPlugin``,
``startPlugin``, ``unloadPlugin``) on the folder ``make plugin`` builds, because unloadPlugin purges
the package from ``sys.modules`` and would break the other tests of this session.

Headless there is no QGIS main window and ``qgis.utils.iface`` is None, so the subprocess installs
``HeadlessIface``: a small real QObject with a real QMainWindow, toolbar, Raster menu, QgsMessageBar
and QgsMapCanvas, providing the iface methods the plugin calls (addToolBarIcon, removeToolBarIcon,
addPluginToRasterMenu, removePluginRasterMenu, messageBar, mainWindow, activeLayer, mapCanvas).
It is a stand-in for the missing main window, not a mock: every widget and action is real Qt.
"""
from __future__ import annotations

import configparser
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytest_plugins = ["qgis_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SYSTEM_PYTHON = Path("/usr/bin/python3")

# Fields plugins.qgis.org rejects a plugin without (plus the ones the brief asks for).
REQUIRED_METADATA = ("name", "qgisMinimumVersion", "description", "about", "version", "author", "email",
                     "repository")
EXPECTED_METADATA = REQUIRED_METADATA + ("tracker", "homepage", "tags", "icon", "hasProcessingProvider",
                                         "license", "experimental", "category")


def read_metadata() -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    assert parser.read(REPO / "metadata.txt", encoding="utf-8"), "metadata.txt is missing"
    return parser["general"]


def test_metadata_has_every_required_field() -> None:
    meta = read_metadata()
    missing = [k for k in EXPECTED_METADATA if not meta.get(k, "").strip()]
    assert not missing, f"metadata.txt lacks {missing}"
    assert meta["name"] == "MLIN Super-Resolution"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["category"] == "Raster"
    assert meta["experimental"] == "True"
    assert meta["license"] == "GPL-2.0-or-later"
    assert (REPO / meta["icon"]).is_file(), "the icon named in metadata.txt must exist"
    import mlin_qgis

    assert meta["version"] == mlin_qgis.__version__, "metadata.txt and mlin_qgis.__version__ disagree"


def test_icon_is_a_valid_svg(qgis_app) -> None:
    from qgis.PyQt.QtSvg import QSvgRenderer

    renderer = QSvgRenderer(str(REPO / "resources" / "icon.svg"))
    assert renderer.isValid()
    assert renderer.defaultSize().width() == 64


def test_plugin_modules_do_not_import_torch_or_onnxruntime_at_load(qgis_app) -> None:
    """Loading the plugin's QGIS modules (what QGIS does at start) stays light: no torch, no onnxruntime."""
    code = textwrap.dedent("""
        import sys, json
        import mlin_qgis.qgis_plugin.plugin, mlin_qgis.qgis_plugin.processing.provider
        import mlin_qgis.qgis_plugin.processing.superresolve_algorithm
        import mlin_qgis.qgis_plugin.processing.exportonnx_algorithm
        import mlin_qgis.qgis_plugin.gui.zoom_dialog, mlin_qgis.qgis_plugin.gui.task
        print(json.dumps({"torch": "torch" in sys.modules, "onnxruntime": "onnxruntime" in sys.modules,
                          "ml": any(m.startswith("mlin_qgis.ml") for m in sys.modules)}))
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "QT_QPA_PLATFORM": "offscreen"})
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout.strip().splitlines()[-1]) == {"torch": False, "onnxruntime": False, "ml": False}


HARNESS = textwrap.dedent('''
    """Load, start and unload the built plugin through qgis.utils with a headless iface stand-in."""
    import json, os, sys
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    plugins_dir, profile = sys.argv[1], sys.argv[2]
    sys.path.append("/usr/share/qgis/python/plugins")
    from qgis.core import Qgis, QgsApplication
    from qgis.gui import QgsMapCanvas, QgsMessageBar
    from qgis.PyQt.QtCore import QObject
    from qgis.PyQt.QtWidgets import QMainWindow, QMenu

    app = QgsApplication([], True, profile)
    app.initQgis()
    from processing.core.Processing import Processing
    Processing.initialize()

    class HeadlessIface(QObject):
        """Stand-in for QGIS's main-window interface (none exists headless); real Qt widgets."""
        def __init__(self):
            super().__init__()
            self.window = QMainWindow()
            self.toolbar = self.window.addToolBar("Plugins")
            self.raster_menu = self.window.menuBar().addMenu("&Raster")
            self.bar = QgsMessageBar(self.window)
            self.canvas = QgsMapCanvas(self.window)
        def mainWindow(self): return self.window
        def messageBar(self): return self.bar
        def mapCanvas(self): return self.canvas
        def activeLayer(self): return None
        def addToolBarIcon(self, action): self.toolbar.addAction(action); return 0
        def removeToolBarIcon(self, action): self.toolbar.removeAction(action)
        def _submenu(self, name):
            for a in self.raster_menu.actions():
                if a.menu() is not None and a.text() == name:
                    return a.menu()
            return None
        def addPluginToRasterMenu(self, name, action):
            menu = self._submenu(name) or self.raster_menu.addMenu(name)
            menu.addAction(action)
        def removePluginRasterMenu(self, name, action):
            menu = self._submenu(name)
            if menu is None:
                return
            menu.removeAction(action)
            if not menu.actions():
                self.raster_menu.removeAction(menu.menuAction())

    import qgis.utils
    iface = HeadlessIface()
    qgis.utils.iface = iface
    qgis.utils.plugin_paths = [plugins_dir]
    sys.path.insert(0, plugins_dir)
    qgis.utils.updateAvailablePlugins()
    registry = QgsApplication.processingRegistry()
    state = {"available": "mlin_qgis" in qgis.utils.available_plugins,
             "meta_name": qgis.utils.pluginMetadata("mlin_qgis", "name"),
             "loaded": qgis.utils.loadPlugin("mlin_qgis"),
             "started": qgis.utils.startPlugin("mlin_qgis")}
    plugin_file = sys.modules["mlin_qgis"].__file__
    state["from_build"] = plugin_file.startswith(plugins_dir)
    state["provider"] = registry.providerById("mlin") is not None
    state["algorithms"] = sorted(a.id() for a in registry.providerById("mlin").algorithms()) if state["provider"] else []
    state["toolbar"] = [a.text() for a in iface.toolbar.actions()]
    state["raster_menu"] = {a.text(): [b.text() for b in a.menu().actions()] for a in iface.raster_menu.actions() if a.menu()}
    state["messages"] = [w.text() for w in iface.bar.items()]
    state["modules_torch"] = "torch" in sys.modules
    # the toolbar action opens the zoom dialog
    iface.toolbar.actions()[0].trigger()
    dialog = qgis.utils.plugins["mlin_qgis"].dialog
    state["dialog_visible"] = bool(dialog is not None and dialog.isVisible())
    state["unloaded"] = qgis.utils.unloadPlugin("mlin_qgis")
    app.processEvents()
    state["provider_after"] = registry.providerById("mlin") is not None
    state["toolbar_after"] = [a.text() for a in iface.toolbar.actions()]
    state["raster_menu_after"] = [a.text() for a in iface.raster_menu.actions()]
    state["modules_after"] = sorted(m for m in sys.modules if m == "mlin_qgis" or m.startswith("mlin_qgis."))
    print("STATE " + json.dumps(state))
    sys.stdout.flush()
    qgis.utils.iface = None
    del iface, dialog
    app.exitQgis()
''')


def run_harness(python: Path, tmp_path: Path, build: Path) -> dict:
    script = tmp_path / "harness.py"
    script.write_text(HARNESS)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "QGIS_CUSTOM_CONFIG_PATH")}
    env.update(QT_QPA_PLATFORM="offscreen", XDG_RUNTIME_DIR=str(tmp_path))
    out = subprocess.run([str(python), str(script), str(build), str(tmp_path / "profile")], capture_output=True,
                         text=True, timeout=300, env=env, cwd=tmp_path)
    lines = [line for line in out.stdout.splitlines() if line.startswith("STATE ")]
    assert lines, f"harness failed (rc {out.returncode}):\n{out.stdout}\n{out.stderr}"
    return json.loads(lines[-1][len("STATE "):])


@pytest.fixture(scope="module")
def built_plugin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`make plugin` into a temporary build folder (the same target users and CI run)."""
    build = tmp_path_factory.mktemp("plugin-build")
    out = subprocess.run(["make", "-s", "plugin", f"PLUGIN_BUILD={build}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return build


def test_make_plugin_builds_a_complete_plugin_folder(built_plugin: Path) -> None:
    folder = built_plugin / "mlin_qgis"
    for name in ("__init__.py", "metadata.txt", "resources/icon.svg", "core/models.py",
                 *(f"qgis_plugin/{p.relative_to(REPO / 'mlin_qgis' / 'qgis_plugin')}"
                   for p in sorted((REPO / "mlin_qgis" / "qgis_plugin").rglob("*.py")))):
        assert (folder / name).is_file(), f"{name} missing from the built plugin"
    assert not list(folder.rglob("__pycache__")), "build must not ship __pycache__"
    assert not (folder / "tests").exists()
    shipped = sorted(p.name for p in (REPO / "models").iterdir() if (p / "encoder.onnx").is_file())
    built = sorted(p.name for p in (folder / "models").iterdir() if (p / "encoder.onnx").is_file()) if (folder / "models").is_dir() else []
    assert built == shipped


def test_make_zip_has_the_plugin_folder_at_its_root(tmp_path: Path) -> None:
    import zipfile

    out = subprocess.run(["make", "-s", "zip", f"PLUGIN_BUILD={tmp_path}"], cwd=REPO, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    with zipfile.ZipFile(tmp_path / "mlin_qgis.zip") as zf:
        names = zf.namelist()
        assert "mlin_qgis/metadata.txt" in names and "mlin_qgis/__init__.py" in names
        assert all(n.startswith("mlin_qgis/") for n in names)
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "mlin_qgis/resources/icon.svg" in names
        assert {"mlin_qgis/qgis_plugin/plugin.py", "mlin_qgis/qgis_plugin/gui/zoom_dialog.py",
                "mlin_qgis/qgis_plugin/processing/provider.py"} <= set(names), "the QGIS folder is in the zip"


def test_plugin_loads_starts_and_unloads_cleanly(built_plugin: Path, tmp_path: Path) -> None:
    state = run_harness(Path(sys.executable), tmp_path, built_plugin)
    assert state["available"] and state["meta_name"] == "MLIN Super-Resolution"
    assert state["loaded"] and state["started"] and state["from_build"]
    assert state["provider"] and state["algorithms"] == ["mlin:exportonnx", "mlin:superresolve"]
    assert state["toolbar"] == ["MLIN Super-Resolution…"]
    assert state["raster_menu"] == {"&MLIN Super-Resolution": ["MLIN Super-Resolution…"]}
    assert state["messages"] == [], "onnxruntime is installed here: no dependency message expected"
    assert not state["modules_torch"], "loading the plugin must not import torch"
    assert state["dialog_visible"], "the toolbar action must open the zoom dialog"
    assert state["unloaded"]
    assert not state["provider_after"], "the provider must be removed on unload"
    assert state["toolbar_after"] == [] and state["raster_menu_after"] == [], "no leftover actions or menus"
    # qgis.utils purges the modules its import hook recorded: every leaf module. It does not record
    # intermediate sub-packages of relative imports (a QGIS limitation); those hold no state.
    assert "mlin_qgis" not in state["modules_after"] and "mlin_qgis.qgis_plugin.plugin" not in state["modules_after"]
    assert set(state["modules_after"]) <= {"mlin_qgis.core", "mlin_qgis.qgis_plugin", "mlin_qgis.qgis_plugin.gui",
                                           "mlin_qgis.qgis_plugin.processing"}


@pytest.mark.skipif(not SYSTEM_PYTHON.is_file(), reason="needs Debian's /usr/bin/python3 (QGIS's Python)")
def test_missing_onnxruntime_gives_one_clear_message_and_no_crash(built_plugin: Path, tmp_path: Path) -> None:
    """QGIS's own Python here has no onnxruntime (it lives in .venv): a real missing-dependency case."""
    probe = subprocess.run([str(SYSTEM_PYTHON), "-c", "import onnxruntime"], capture_output=True, env={
        k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    if probe.returncode == 0:
        pytest.skip("the system Python has onnxruntime installed, so the missing case cannot be exercised")
    state = run_harness(SYSTEM_PYTHON, tmp_path, built_plugin)
    assert state["started"] and state["provider"], "the plugin must still load without onnxruntime"
    assert len(state["messages"]) == 1, state["messages"]
    assert "onnxruntime" in state["messages"][0]
    assert state["unloaded"] and not state["provider_after"] and state["toolbar_after"] == []


def test_install_command_names_qgis_python_and_debian_flag() -> None:
    from mlin_qgis.qgis_plugin import dependencies

    text = dependencies.onnxruntime_install_text()
    command = dependencies.pip_install_command("onnxruntime")
    assert dependencies.pip_install_command(*dependencies.RUNTIME_PACKAGES) in text
    assert command.split(" -m pip install ")[1].split()[-1] == "onnxruntime"
    assert "onnxruntime-gpu" in text and "numpy<2" in text
    if os.name != "nt":
        assert "--user" in command
        assert Path(command.split(" -m ")[0]).name.startswith("python")
    import sysconfig

    managed = (Path(sysconfig.get_path("stdlib")) / "EXTERNALLY-MANAGED").exists()
    assert ("--break-system-packages" in command) == managed


@pytest.mark.parametrize("foreign", ["/root/.pyenv/shims/python3", "/usr/bin/qgis", ""])
def test_install_hint_names_the_interpreter_qgis_runs_not_whatever_sys_executable_says(foreign: str, monkeypatch,
                                                                                       tmp_path: Path) -> None:
    """Inside QGIS sys.executable can be a pyenv shim or the QGIS binary; the hint must still name a
    Python with this interpreter's prefix and version (checked by running it)."""
    from mlin_qgis.qgis_plugin import dependencies

    if foreign.startswith("/root/.pyenv"):
        shim = tmp_path / "shims" / "python3"  # a real, foreign executable named like a Python
        shim.parent.mkdir()
        shim.write_text("#!/bin/sh\necho foreign\n")
        shim.chmod(0o755)
        foreign = str(shim)
    monkeypatch.setattr(sys, "executable", foreign)
    found = dependencies.qgis_python()
    assert found != foreign
    probe = subprocess.run([found, "-c", "import sys; print(sys.prefix); print(sys.version_info[:2])"],
                           capture_output=True, text=True, timeout=60)
    prefix, version = probe.stdout.split("\n")[:2]
    assert version == str(tuple(sys.version_info[:2]))
    assert Path(prefix).resolve() in {Path(p).resolve() for p in (sys.prefix, sys.base_prefix)}


def test_one_click_install_command_targets_the_plugin_folder_and_pins_numpy(monkeypatch, tmp_path: Path) -> None:
    import numpy

    from mlin_qgis.qgis_plugin import dependencies

    monkeypatch.setenv("MLIN_DEPS_DIR", str(tmp_path / "deps"))
    args = dependencies.one_click_install_args()
    assert args[0] == dependencies.qgis_python() and args[1:4] == ["-m", "pip", "install"]
    assert args[args.index("--target") + 1] == str(tmp_path / "deps")
    assert f"numpy=={numpy.__version__}" in args
    wanted = "onnxruntime-gpu" if dependencies.nvidia_gpu_present() else "onnxruntime"
    assert wanted in args and ("onnxruntime" in args) != ("onnxruntime-gpu" in args)
    # the folder joins sys.path (after QGIS's own entries) once it exists
    (tmp_path / "deps").mkdir()
    (tmp_path / "deps" / "mlin_probe_module.py").write_text("VALUE = 42\n")
    try:
        assert dependencies.activate_deps_dir() and sys.path[-1] == str(tmp_path / "deps")
        import mlin_probe_module

        assert mlin_probe_module.VALUE == 42
        assert not dependencies.activate_deps_dir(), "added once"
    finally:
        sys.path.remove(str(tmp_path / "deps"))
        sys.modules.pop("mlin_probe_module", None)


def test_install_task_runs_pip_into_a_target_folder_in_real_qgis(qgis_app, tmp_path: Path) -> None:
    """The one-click install's QgsTask, on a tiny real package (the registry must answer; skipped if not)."""
    from qgis.core import QgsApplication

    from mlin_qgis.qgis_plugin.gui.install_task import InstallTask
    from qgis_fixtures import wait_until

    reach = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(tmp_path / "dl"),
                            "six"], capture_output=True, text=True, timeout=120)
    if reach.returncode != 0:
        pytest.skip(f"the package index does not answer here: {reach.stderr.strip()[-200:]}")
    target = tmp_path / "deps"
    task = InstallTask([sys.executable, "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                        "--target", str(target), "six"])
    results: list = []
    task.done.connect(lambda ok, text: results.append((ok, text)))
    QgsApplication.taskManager().addTask(task)
    assert wait_until(lambda: bool(results), 180), "the install task did not finish"
    ok, text = results[0]
    assert ok and str(target) in text, text
    assert (target / "six.py").is_file() and any("six" in line for line in task.log)
