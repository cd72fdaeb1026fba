"""Learning side of mlin-qgis (torch): encoders, implicit decoder, training, evaluation, export.

Nothing in here is imported by the QGIS runtime; it needs torch."""
