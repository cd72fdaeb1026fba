"""Torch-free core of mlin-qgis: model card, model discovery, raster I/O, tiling and the
onnxruntime engine behind the `sr` command, the Processing algorithm and the zoom dialog.

Only numpy, GDAL and onnxruntime are used here, and onnxruntime is imported lazily (inside the
functions that run a model) so that QGIS can load the plugin, list models' absence and show a clear
message even when onnxruntime is not installed.
"""
