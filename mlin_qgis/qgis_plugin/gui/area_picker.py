"""The zoom dialog's area of interest: the whole layer, the current map view, or a rectangle drawn on the
map (QGIS's own extent tool), in the layer's CRS. A widget of its own so the dialog only asks
:meth:`AreaPicker.area` and hears :attr:`AreaPicker.changed`.
"""
from __future__ import annotations

from typing import Any, Optional, Tuple

from qgis.core import QgsCoordinateTransform, QgsProject, QgsRasterLayer, QgsRectangle
from qgis.gui import QgsMapToolExtent
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtWidgets import QComboBox, QHBoxLayout, QPushButton, QWidget

from ..layer_source import is_web_layer

AREAS = (("Whole layer", "whole"), ("Current map view", "view"), ("Rectangle drawn on the map", "drawn"))


def rect_tuple(rect: QgsRectangle) -> Tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax): the extent the core's requests take."""
    return (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())


class AreaPicker(QWidget):
    """Area choice and Draw button; map-view and drawn areas need a map canvas (``iface.mapCanvas()``)."""

    changed = pyqtSignal()  # the area (or its kind) changed
    message = pyqtSignal(str)  # a hint for the dialog's status line ("" clears it)

    def __init__(self, iface: Optional[Any], project: QgsProject, parent: Optional[QWidget] = None) -> None:
        super().__init__(parent)
        self.iface = iface
        self.project = project
        self.drawn_area: Optional[QgsRectangle] = None  # in the canvas CRS
        self.map_tool: Optional[QgsMapToolExtent] = None
        self.combo = QComboBox(self)
        self.combo.setObjectName("areaCombo")
        for label, key in AREAS:
            self.combo.addItem(label, key)
        self.draw_button = QPushButton("Draw on map", self)
        self.draw_button.setToolTip("Drag a rectangle on the map canvas: only that area is super-resolved")
        self.draw_button.clicked.connect(self.start_drawing)
        row = QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.combo, 1)
        row.addWidget(self.draw_button)
        self._update_choices()
        self.combo.currentIndexChanged.connect(self._kind_changed)

    def canvas(self) -> Optional[Any]:
        return self.iface.mapCanvas() if self.iface is not None else None

    def kind(self) -> str:
        return str(self.combo.currentData())

    def _update_choices(self) -> None:
        """Map-view and drawn areas need a map canvas; the Draw button goes with the drawn choice."""
        has_canvas = self.canvas() is not None
        for key in ("view", "drawn"):
            item = self.combo.model().item(self.combo.findData(key))
            if item is not None:
                item.setEnabled(has_canvas)
        self.draw_button.setVisible(self.kind() == "drawn")

    def _kind_changed(self, *args: Any) -> None:
        self._update_choices()
        self.changed.emit()

    def start_drawing(self) -> None:
        """Let the user drag a rectangle on the map canvas (QGIS's own extent tool)."""
        canvas = self.canvas()
        if canvas is None:
            return
        self.map_tool = QgsMapToolExtent(canvas)
        self.map_tool.extentChanged.connect(self.set_drawn_area)
        canvas.setMapTool(self.map_tool)
        self.message.emit("Drag a rectangle on the map for the area to super-resolve.")

    def set_drawn_area(self, rect: QgsRectangle) -> None:
        """The rectangle drawn on the canvas (canvas CRS) becomes the area; the map tool is released."""
        if rect is None or rect.isEmpty():
            return
        self.drawn_area = QgsRectangle(rect)
        self.combo.setCurrentIndex(self.combo.findData("drawn"))
        canvas = self.canvas()
        if canvas is not None and self.map_tool is not None and canvas.mapTool() is self.map_tool:
            canvas.unsetMapTool(self.map_tool)
        self.message.emit("")
        self.changed.emit()

    def area(self, layer: QgsRasterLayer) -> Optional[QgsRectangle]:
        """The chosen area in the layer's CRS (None: the whole layer)."""
        kind, canvas = self.kind(), self.canvas()
        if kind == "whole" or canvas is None:
            return None
        rect = canvas.extent() if kind == "view" else self.drawn_area
        if rect is None or rect.isEmpty():
            return None
        canvas_crs = canvas.mapSettings().destinationCrs()
        if canvas_crs.isValid() and layer.crs().isValid() and canvas_crs != layer.crs():
            rect = QgsCoordinateTransform(canvas_crs, layer.crs(), self.project).transformBoundingBox(rect)
        return QgsRectangle(rect)

    def read_resolution(self, layer: QgsRasterLayer) -> Optional[float]:
        """Web layers are read at the map's current scale (canvas map units per pixel, when the canvas
        shows the layer's CRS); other layers at their own resolution."""
        canvas = self.canvas()
        if not is_web_layer(layer) or canvas is None:
            return None
        if canvas.mapSettings().destinationCrs() != layer.crs():
            return None
        return float(canvas.mapUnitsPerPixel()) or None
