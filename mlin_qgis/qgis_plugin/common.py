"""What the QGIS layer's modules share (provider, algorithms, dialog, plugin): the icon, the installed
models, scale limits and layer helpers. A module of its own, so none of them imports another.
QGIS glue only: no numerical code."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, Optional, Tuple

from qgis.core import QgsProviderRegistry, QgsRasterLayer
from qgis.PyQt.QtGui import QIcon

from mlin_qgis.core.devices import DEVICES

__all__ = ["DEVICES", "FALLBACK_MAX_SCALE", "MIN_SCALE", "icon", "max_scale", "output_layer_name",
           "raster_file_path", "resource_path", "shipped_models"]

PACKAGE_DIR = Path(__file__).resolve().parents[1]  # mlin_qgis/, the plugin folder once built


def resource_path(name: str) -> Path:
    """A file of ``resources/``: inside the plugin folder once built, beside the package in a checkout."""
    for root in (PACKAGE_DIR / "resources", PACKAGE_DIR.parent / "resources"):
        if (root / name).exists():
            return root / name
    return PACKAGE_DIR / "resources" / name  # missing: QIcon then shows nothing, which is not fatal


def icon() -> QIcon:
    """The plugin icon (toolbar, provider, algorithms)."""
    return QIcon(str(resource_path("icon.svg")))


FALLBACK_MAX_SCALE = 16.0
MIN_SCALE = 1.01  # 1.0 would be a copy; anything above is a real (possibly fractional) zoom


@functools.lru_cache(maxsize=1)
def shipped_models() -> Tuple[Any, ...]:
    """The installed models (``ModelEntry``), default first, read once per session.

    Cached because QGIS creates algorithm instances often and the enum index chosen by the user
    must mean the same model at definition and at run time. Empty when onnxruntime (needed to read
    the model cards) is missing: the plugin still loads and the run explains what to install.
    """
    from mlin_qgis.core.auto import auto_entry
    from mlin_qgis.core.errors import MlinError
    from mlin_qgis.core.models import available_models

    try:
        auto = auto_entry()  # `auto` first when the degradation-aware model is installed
        return tuple(([auto] if auto is not None else []) + available_models())
    except (MlinError, OSError):
        return ()


def max_scale(entries: Tuple[Any, ...]) -> float:
    """Largest scale any shipped model accepts (its card's hard cap); the core re-checks per model."""
    caps = [float(e.card.hard_max_scale) for e in entries]
    return max(caps) if caps else FALLBACK_MAX_SCALE


def output_layer_name(input_name: str, scale: float, suffix: str = "") -> str:
    """Name of a result layer in the project, e.g. ``ortho ×2.5 (MLIN)``."""
    return f"{input_name} ×{scale:g}{suffix} (MLIN)"


def raster_file_path(layer: QgsRasterLayer) -> Optional[str]:
    """The file behind a GDAL raster layer, or None for web/database/memory rasters the core cannot read."""
    if layer.providerType() != "gdal":
        return None
    source = layer.source()
    parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
    if parts.get("layerName") or not parts.get("path"):
        # a sub-dataset such as GPKG:/x.gpkg:table: GDAL opens the connection string itself
        return source.split("|")[0]
    return parts["path"]


