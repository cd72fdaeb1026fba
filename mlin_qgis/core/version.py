"""mlin-qgis's version, in the core so that core modules (the cluster's version check) need not import
the package root, which is the QGIS plugin entry point. Keep it equal to metadata.txt's version
(tests/test_plugin_load.py checks it)."""
from __future__ import annotations

__version__ = "0.12.0"
