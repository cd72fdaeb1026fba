"""The QGIS side of mlin-qgis, in one folder: the plugin object, the zoom dialog (``gui/``), the Processing
provider (``processing/``) and the glue they share (layer reading, logging, optional-dependency checks).

Nothing is imported here, so ``import mlin_qgis.qgis_plugin.dependencies`` stays free of ``qgis`` (the
package root's classFactory imports :mod:`.plugin` only when QGIS calls it). Numerical code lives in
:mod:`mlin_qgis.core`; nothing there imports this folder.
"""
