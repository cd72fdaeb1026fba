"""mlin-qgis: arbitrary-scale raster super-resolution (MLIN) for QGIS, with a torch-free core.

This file is both the Python package and the QGIS plugin entry point. QGIS calls
:func:`classFactory`; the import of :mod:`mlin_qgis.qgis_plugin.plugin` (and so of ``qgis``) happens inside it,
so that ``import mlin_qgis.core`` and ``python -m mlin_qgis`` work on machines without QGIS.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .core.version import __version__  # noqa: F401  (the one literal lives in core/version.py)

if TYPE_CHECKING:  # pragma: no cover - typing only, never imported at run time
    from .qgis_plugin.plugin import MlinPlugin


def classFactory(iface: Any) -> "MlinPlugin":  # noqa: N802 - name imposed by QGIS
    """Create the plugin for QGIS; ``iface`` is the QgisInterface (None in qgis_process)."""
    from .qgis_plugin.plugin import MlinPlugin

    return MlinPlugin(iface)
