"""QGIS Processing glue: the ``mlin`` provider and its algorithms (thin wrappers over mlin_qgis.core)."""
