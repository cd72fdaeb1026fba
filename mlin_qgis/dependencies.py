"""Optional Python dependencies of the plugin, and the exact command that installs them into QGIS's Python.

QGIS runs its own Python interpreter, so "pip install onnxruntime" in some other environment does not
help: the message has to name *that* interpreter. We never install anything ourselves (a plugin that
runs pip behind the user's back can break QGIS's Python); we only say what to run.

No ``qgis`` import at module level: the command builders are plain Python and are unit-tested
without QGIS; only :func:`warn_if_onnxruntime_missing` touches the GUI.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Any, Optional

MESSAGE_TAG = "MLIN"  # QgsMessageLog tag and message-bar title

# numpy<2 keeps pip from replacing the numpy that Debian's/OSGeo4W's GDAL bindings were built against.
RUNTIME_PACKAGES = ("onnxruntime", '"numpy<2"')
GPU_RUNTIME_PACKAGES = ("onnxruntime-gpu", '"numpy<2"')


def onnxruntime_available() -> bool:
    """True when the ``onnxruntime`` module can be found, without importing it (keeps plugin load fast)."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):  # a broken half-installed package
        return False


def qgis_python() -> str:
    """Path of the Python interpreter that matches the one QGIS embeds (same prefix, same version).

    Inside QGIS ``sys.executable`` is unreliable: it can be the QGIS binary itself, or whatever
    ``python3`` comes first on PATH (a pyenv shim was seen), which is another Python. So it is used
    only when it is a Python living in this interpreter's own prefix (a virtual environment counts);
    otherwise the interpreter is looked up in the embedded Python's prefix: ``bin/pythonX.Y`` on
    Linux (Debian: /usr/bin/python3.11) and in macOS's QGIS.app framework, ``python.exe`` on Windows
    (OSGeo4W: apps/PythonXY/python.exe).
    """
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    exe = Path(sys.executable) if sys.executable else None
    prefixes = [Path(p) for p in dict.fromkeys((sys.exec_prefix, sys.prefix, sys.base_exec_prefix, sys.base_prefix))]
    if exe is not None and exe.name.lower().startswith("python") and exe.exists():
        if any(_inside(exe, prefix) for prefix in prefixes):
            return str(exe)
    for prefix in prefixes:
        if os.name == "nt":
            candidates = [prefix / "python.exe", prefix / "python3.exe"]
        else:
            candidates = [prefix / "bin" / f"python{version}", prefix / "bin" / "python3"]
        for candidate in candidates:
            if candidate.exists():
                return str(candidate)
    return shutil.which(f"python{version}") or shutil.which("python3") or "python3"


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` (not resolved: a venv's python is a link to the system one) lies in ``folder``."""
    try:
        path.absolute().relative_to(folder.absolute())
        return True
    except ValueError:
        return False


def _externally_managed() -> bool:
    """PEP 668: Debian 12+/Ubuntu 23.04+ mark the system Python; pip then needs --break-system-packages."""
    stdlib = sysconfig.get_path("stdlib")
    return bool(stdlib) and (Path(stdlib) / "EXTERNALLY-MANAGED").exists()


def pip_install_command(*packages: str) -> str:
    """The exact command that installs ``packages`` into the Python QGIS runs (user site, no root)."""
    names = " ".join(packages)
    if os.name == "nt":  # OSGeo4W / standalone installer: run from the "OSGeo4W Shell"
        return f"python -m pip install {names}"
    flags = "--user"
    if _externally_managed():
        flags += " --break-system-packages"
    return f"{qgis_python()} -m pip install {flags} {names}"


# -- the one-click install: pip into a folder of our own, added to sys.path -------------------------
def deps_dir() -> Path:
    """Where the one-click install puts packages: a folder of this plugin's, per Python version, outside
    QGIS's and the system's site-packages (so nothing QGIS ships is replaced)."""
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if os.name == "nt":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return Path(os.environ.get("MLIN_DEPS_DIR") or base / "mlin-qgis" / version)


def activate_deps_dir() -> bool:
    """Append the one-click install's folder to sys.path when it exists (after QGIS's own paths, so
    QGIS's numpy and GDAL keep precedence); True when it was added."""
    folder = str(deps_dir())
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)
        importlib.invalidate_caches()
        return True
    return False


def nvidia_gpu_present() -> bool:
    """An NVIDIA driver that answers (nvidia-smi lists a GPU): then onnxruntime-gpu is the package."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return False
    import subprocess

    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def one_click_install_args(packages: Optional[list] = None, target: Optional[Path] = None) -> list:
    """The pip command the one-click install runs: QGIS's Python, ``--target`` our folder, numpy pinned
    to the version QGIS's GDAL was built with (so pip never brings another one into play)."""
    try:
        import numpy

        pin = [f"numpy=={numpy.__version__}"]
    except ImportError:
        pin = ["numpy<2"]
    wanted = packages or (["onnxruntime-gpu"] if nvidia_gpu_present() else ["onnxruntime"])
    return [qgis_python(), "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "--upgrade",
            "--target", str(target or deps_dir()), *wanted, *pin]


def onnxruntime_install_text() -> str:
    """The full user-facing explanation of what to install, for the message bar, dialogs and errors."""
    cpu = pip_install_command(*RUNTIME_PACKAGES)
    gpu = pip_install_command(*GPU_RUNTIME_PACKAGES)
    where = "in the OSGeo4W Shell" if os.name == "nt" else "in a terminal"
    return (
        "MLIN Super-Resolution needs the Python package 'onnxruntime' in QGIS's Python, and it is not "
        f"installed. Run {where}:\n\n    {cpu}\n\n"
        f"(for an NVIDIA GPU with CUDA use instead:  {gpu}  — install one of the two, not both), "
        "then restart QGIS. Or press \"Install now…\" in QGIS's message bar: the plugin then runs pip for you, "
        f"after asking, into {deps_dir()}."
    )


def distributed_available() -> bool:
    """True when Dask distributed can be found (without importing it): the optional CLUSTER option."""
    try:
        return importlib.util.find_spec("distributed") is not None
    except (ImportError, ValueError):
        return False


def distributed_install_text() -> str:
    """What to install for the optional CLUSTER option (a running Dask scheduler's address)."""
    return ("Running on a Dask cluster (the CLUSTER option) needs the Python package 'dask[distributed]' in "
            f"QGIS's Python, and it is not installed. Run in a terminal:\n\n    "
            f"{pip_install_command(chr(34) + 'dask[distributed]' + chr(34))}\n\nthen restart QGIS; or leave "
            "CLUSTER empty to run here.")


def torch_install_text(missing: str = "torch") -> str:
    """What to install for the model export (PyTorch side), which the runtime plugin never needs."""
    if missing == "torch":
        cmd = (pip_install_command("torch") + " --index-url https://download.pytorch.org/whl/cpu"
               + "\n    " + pip_install_command("onnx", '"numpy<2"'))
    else:
        cmd = pip_install_command(missing, '"numpy<2"')
    return (
        f"Exporting a checkpoint to ONNX needs the Python package '{missing}', which is not installed in "
        f"QGIS's Python. Run in a terminal:\n\n    {cmd}\n\nthen restart QGIS. (Running models does not "
        "need it; only the export does. Alternatively run `python -m mlin_qgis export` in the project's "
        "virtual environment.)"
    )


def warn_if_onnxruntime_missing(iface: Optional[Any]) -> bool:
    """Show ONE message when onnxruntime is missing; return True if it was missing.

    With a GUI: a persistent message-bar item with a button that opens the full command in a dialog
    (selectable text). Without one (qgis_process): only the QGIS message log; the algorithm itself
    raises the same text when run.
    """
    if onnxruntime_available():
        return False
    from qgis.core import Qgis, QgsMessageLog

    text = onnxruntime_install_text()
    QgsMessageLog.logMessage(text, MESSAGE_TAG, Qgis.Warning)
    if iface is None:
        return True
    from qgis.PyQt.QtWidgets import QPushButton

    bar = iface.messageBar()
    item = bar.createMessage(MESSAGE_TAG, "onnxruntime is not installed in QGIS's Python: the plugin cannot run models yet.")
    button = QPushButton("How to install…", item)

    def show_details() -> None:
        install_details_box(text, iface.mainWindow()).exec_()

    button.clicked.connect(show_details)
    item.layout().addWidget(button)
    install = QPushButton("Install now…", item)
    install.setToolTip(f"Runs pip for you (after asking) into {deps_dir()}, which the plugin adds to its path")
    install.clicked.connect(lambda: ask_and_install(iface, bar, item))
    item.layout().addWidget(install)
    bar.pushWidget(item, Qgis.Warning, 0)
    return True


_install_tasks: list = []  # keeps running install tasks referenced until they end


def ask_and_install(iface: Any, bar: Any = None, item: Any = None) -> Optional[Any]:
    """Ask for consent (showing the exact command and folder), then run the install as a QgsTask."""
    from qgis.core import Qgis, QgsApplication
    from qgis.PyQt.QtWidgets import QMessageBox

    from .gui.install_task import InstallTask

    args = one_click_install_args()
    gpu = "an NVIDIA GPU was found, so this installs onnxruntime-gpu" if "onnxruntime-gpu" in args else \
        "no NVIDIA GPU was found, so this installs the CPU onnxruntime"
    question = (f"Install onnxruntime for MLIN now? ({gpu})\n\nThis runs:\n    {' '.join(args)}\n\n"
                f"Packages go to {deps_dir()} only (not into QGIS's or the system's Python); numpy is pinned "
                "to the version QGIS uses. The output appears in the Log Messages panel under MLIN.")
    parent = iface.mainWindow() if iface is not None else None
    if QMessageBox.question(parent, "MLIN: install onnxruntime", question) != QMessageBox.Yes:
        return None
    task = InstallTask(args)
    _install_tasks.append(task)

    def report(ok: bool, text: str) -> None:
        _install_tasks.remove(task)
        if bar is not None:
            if item is not None and ok:
                bar.popWidget(item)
            bar.pushMessage(MESSAGE_TAG, text.splitlines()[0], Qgis.Success if ok else Qgis.Critical, 0)

    task.done.connect(report)
    QgsApplication.taskManager().addTask(task)
    return task


def install_details_box(text: str, parent: Any = None) -> Any:
    """A message box whose text (the install command) can be selected and copied."""
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QMessageBox

    box = QMessageBox(QMessageBox.Warning, "MLIN: onnxruntime missing", text, QMessageBox.Ok, parent)
    box.setTextInteractionFlags(Qt.TextSelectableByMouse)
    return box
