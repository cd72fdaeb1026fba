"""QGIS desktop glue: the zoom dialog and the background task that runs the core pipeline."""
