"""Optional Python dependencies of the plugin: whether they are there, and how they get installed into
QGIS's Python.

QGIS runs its own Python interpreter, so "pip install onnxruntime" in some other environment does not
help: every message names *that* interpreter. Two ways in, both from here: the exact command for the
user to run (:func:`onnxruntime_install_text` and friends), and the one-click install, which runs pip
itself, only after the user agreed, into a folder of the plugin's own (:func:`deps_dir`, added to
``sys.path`` by :func:`activate_deps_dir`), never into QGIS's or the system's site-packages.

Checking logic and command builders only, and no ``qgis`` import: they are unit-tested without QGIS.
The message bar, the consent dialog and the install task live in ``gui/`` (install_prompt.py,
install_task.py).
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import sysconfig
from pathlib import Path
from typing import Optional

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
