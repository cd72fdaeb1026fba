"""Any QGIS raster layer as a raster the core can read: a file path as it is, otherwise the layer read
through its data provider into a temporary GeoTIFF (virtual rasters, memory-backed and web layers such
as WMS/WMTS and XYZ tiles).

The provider is read for the area of interest grown by the model's halo (so the area's result equals
the same window of a run over more of the layer), at the layer's native resolution, or for web layers
at a ground resolution the caller picks (their finest native resolution by default). QGIS glue only:
the pixels are copied by QGIS's own QgsRasterFileWriter; no numerical code here.
"""
from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

from qgis.core import (
    QgsCoordinateTransformContext,
    QgsProject,
    QgsRasterBlockFeedback,
    QgsRasterDataProvider,
    QgsRasterFileWriter,
    QgsRasterLayer,
    QgsRasterPipe,
    QgsRectangle,
)

from mlin_qgis.core.errors import MlinError

from .common import raster_file_path

# LR pixels read around an area of interest: the default model's halo (receptive field + 3 = 39)
# with room to spare, so the cut area sees the same context as inside a larger raster.
HALO_PX = 48
# Refuse to copy more than this many pixels from a provider (a whole web map at full resolution).
MAX_PIXELS = 400_000_000

Extent = Tuple[float, float, float, float]


@dataclass
class LayerSource:
    """What the core reads: ``path`` (and ``extent`` in that raster's CRS, None = all of it). ``temporary``
    is a folder to remove when the run is over (None for a file layer)."""

    path: str
    extent: Optional[Extent]
    temporary: Optional[Path] = None
    description: str = ""

    def cleanup(self) -> None:
        if self.temporary is not None:
            shutil.rmtree(self.temporary, ignore_errors=True)
            self.temporary = None


def is_web_layer(layer: QgsRasterLayer) -> bool:
    """WMS/WMTS/XYZ and ArcGIS map services: pictures of a map, with no pixel grid of their own."""
    return layer.providerType() in ("wms", "arcgismapserver", "wcs")


def native_resolution(layer: QgsRasterLayer) -> Optional[float]:
    """Map units per pixel of the layer's own grid; for web layers their finest native resolution
    (XYZ zoom levels, WMTS matrices), None when the service has none."""
    provider = layer.dataProvider()
    if not is_web_layer(layer) and provider.capabilities() & QgsRasterDataProvider.Size and provider.xSize() > 0:
        return layer.extent().width() / provider.xSize()
    resolutions = [r for r in provider.nativeResolutions() if r > 0]
    return min(resolutions) if resolutions else None


def _as_tuple(rect: QgsRectangle) -> Extent:
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


def _snapped(rect: QgsRectangle, grid: QgsRectangle, res: float) -> QgsRectangle:
    """``rect`` grown outward to whole pixels of size ``res`` on the grid whose corner is ``grid``'s
    top-left (the layer's own pixels; for XYZ layers the tile grid's corner), so nothing is resampled
    when the layer is read at its native resolution."""
    x0, y0 = grid.xMinimum(), grid.yMaximum()
    left = x0 + math.floor((rect.xMinimum() - x0) / res + 1e-9) * res
    right = x0 + math.ceil((rect.xMaximum() - x0) / res - 1e-9) * res
    top = y0 - math.floor((y0 - rect.yMaximum()) / res + 1e-9) * res
    bottom = y0 - math.ceil((y0 - rect.yMinimum()) / res - 1e-9) * res
    return QgsRectangle(left, bottom, right, top)


def layer_source(layer: QgsRasterLayer, extent: Optional[QgsRectangle] = None, resolution: Optional[float] = None,
                 feedback: Any = None) -> LayerSource:
    """The layer as a readable raster for the core; ``extent`` is in the layer's CRS.

    Raises MlinError with what to do when the layer cannot be read that way."""
    path = raster_file_path(layer)
    if path:
        return LayerSource(path, None if extent is None or extent.isEmpty() else _as_tuple(extent),
                           description=f"file {path}")
    web = is_web_layer(layer)
    if extent is None or extent.isEmpty():
        if web:
            raise MlinError(f"layer '{layer.name()}' is a web map ({layer.providerType()}): give an area of interest "
                            "(EXTENT, or the map view in the dialog); a whole web map cannot be super-resolved.")
        extent = layer.extent()
    res = float(resolution) if resolution else native_resolution(layer)
    if not res or not math.isfinite(res) or res <= 0:
        raise MlinError(f"layer '{layer.name()}' has no pixel size of its own; give a read resolution "
                        "(RESOLUTION, in map units per input pixel).")
    area = QgsRectangle(extent)
    grown = QgsRectangle(area.xMinimum() - HALO_PX * res, area.yMinimum() - HALO_PX * res,
                         area.xMaximum() + HALO_PX * res, area.yMaximum() + HALO_PX * res)
    if not web:
        grown = grown.intersect(layer.extent())
        area = area.intersect(layer.extent())
    if area.isEmpty() or grown.isEmpty():
        raise MlinError(f"the area of interest does not overlap layer '{layer.name()}'; draw it over the layer.")
    grown = _snapped(grown, layer.extent(), res)
    cols, rows = max(1, int(round(grown.width() / res))), max(1, int(round(grown.height() / res)))
    if cols * rows > MAX_PIXELS:
        raise MlinError(f"reading layer '{layer.name()}' at {res:g} map units per pixel would copy {cols} x {rows} px; "
                        "choose a smaller area or a coarser read resolution.")
    folder = Path(tempfile.mkdtemp(prefix="mlin-layer-"))
    target = folder / "layer.tif"
    writer = QgsRasterFileWriter(str(target))
    writer.setOutputFormat("GTiff")
    writer.setCreateOptions(["COMPRESS=DEFLATE", "TILED=YES", "BIGTIFF=IF_SAFER"])
    pipe = QgsRasterPipe()
    if not pipe.set(layer.dataProvider().clone()):
        shutil.rmtree(folder, ignore_errors=True)
        raise MlinError(f"layer '{layer.name()}' cannot be read through its provider ({layer.providerType()}).")
    context = QgsProject.instance().transformContext() if QgsProject.instance() else QgsCoordinateTransformContext()
    block_feedback = QgsRasterBlockFeedback()  # what the writer takes; the caller's cancel and progress follow it
    if feedback is not None:
        feedback.canceled.connect(block_feedback.cancel)
        block_feedback.progressChanged.connect(feedback.setProgress)
        if feedback.isCanceled():
            block_feedback.cancel()
    error = writer.writeRaster(pipe, cols, rows, grown, layer.crs(), context, block_feedback)
    if error != QgsRasterFileWriter.NoError or not target.exists():
        shutil.rmtree(folder, ignore_errors=True)
        if block_feedback.isCanceled():
            from mlin_qgis.core.errors import MlinCancelled

            raise MlinCancelled("cancelled while reading the layer; nothing was written.")
        raise MlinError(f"reading layer '{layer.name()}' ({layer.providerType()}) into a temporary GeoTIFF failed "
                        f"(QgsRasterFileWriter error {int(error)}); check that its source is reachable.")
    return LayerSource(str(target), _as_tuple(area), folder,
                       description=f"{layer.providerType()} layer read at {res:g} map units per pixel "
                                   f"({cols} x {rows} px, area plus a {HALO_PX} px margin)")
