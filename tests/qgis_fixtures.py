"""pytest plugin for the QGIS-side tests: one real QgsApplication per session, Processing initialised.

Used through ``pytest_plugins = ["qgis_fixtures"]`` in tests/test_plugin_*.py, test_processing_*.py
and test_dialog_*.py (tests/ is on sys.path because it has no __init__.py). Everything here is real
QGIS; the only stand-in is :class:`HeadlessIface`, because a headless QgsApplication has no QGIS main
window and ``qgis.utils.iface`` is None.
"""
from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
QGIS_PYTHON_PLUGINS = "/usr/share/qgis/python/plugins"  # holds QGIS's own `processing` package
if os.path.isdir(QGIS_PYTHON_PLUGINS) and QGIS_PYTHON_PLUGINS not in sys.path:
    sys.path.append(QGIS_PYTHON_PLUGINS)

REPO = Path(__file__).resolve().parents[1]
ARTIFACTS = REPO / "test-artifacts"

@pytest.fixture(scope="session")
def qgis_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The session's QgsApplication (GUI enabled, throw-away profile) with Processing initialised.

    Reuses an application some other fixture already made; only the one created here is exited.
    """
    from qgis.core import QgsApplication, QgsProject

    app = QgsApplication.instance()
    created = app is None
    if created:
        profile = tmp_path_factory.mktemp("qgis-profile")
        os.environ.setdefault("XDG_RUNTIME_DIR", str(profile))
        QgsApplication.setPrefixPath("/usr", True)
        app = QgsApplication([], True, str(profile))
        app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    yield app
    QgsProject.instance().removeAllMapLayers()
    QgsProject.instance().clear()
    gc.collect()  # drop Python-held layers/datasets before QGIS goes away (3.22 segfaults otherwise)
    if created:
        app.exitQgis()


@pytest.fixture(scope="session")
def mlin_provider(qgis_app: Any) -> Iterator[Any]:
    """The plugin's provider registered in the real Processing registry (as initProcessing does)."""
    from qgis.core import QgsApplication

    from mlin_qgis.qgis_plugin.processing.provider import MlinProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("mlin")
    added = provider is None
    if added:
        provider = MlinProvider()
        assert registry.addProvider(provider)
    yield provider
    if added and registry.providerById("mlin") is not None:
        registry.removeProvider(provider)


@pytest.fixture
def project(qgis_app: Any) -> Iterator[Any]:
    """QgsProject.instance(), emptied after the test so layers do not leak between tests."""
    from qgis.core import QgsProject

    yield QgsProject.instance()
    QgsProject.instance().removeAllMapLayers()


@pytest.fixture
def tiny_models_dir(tiny_model: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """List the tiny real test model among the installed models (via MLIN_MODELS_DIR), fresh cache.

    Shipped models stay listed too; use :func:`model_index` to find the tiny one's enum index.
    """
    from mlin_qgis.qgis_plugin.processing import superresolve_algorithm

    monkeypatch.setenv("MLIN_MODELS_DIR", str(tiny_model.parent))
    superresolve_algorithm.shipped_models.cache_clear()
    yield tiny_model
    superresolve_algorithm.shipped_models.cache_clear()


def model_index(name: str) -> int:
    """Index of an installed model in the MODEL enum of mlin:superresolve."""
    from mlin_qgis.qgis_plugin.processing.superresolve_algorithm import shipped_models

    names = [e.name for e in shipped_models()]
    assert name in names, f"model {name} is not listed; listed: {names}"
    return names.index(name)


def wait_until(condition: Callable[[], bool], timeout: float = 60.0, step: float = 0.02) -> bool:
    """Spin the Qt event loop until ``condition()`` holds (tasks finish through queued signals)."""
    from qgis.PyQt.QtCore import QCoreApplication

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        if condition():
            return True
        time.sleep(step)
    QCoreApplication.processEvents()
    return condition()


def raster_info(path: Path) -> Dict[str, Any]:
    """Size, bands, type, geotransform and CRS of a raster, read with GDAL and closed at once."""
    from osgeo import gdal, osr

    ds = gdal.Open(str(path))
    assert ds is not None, f"GDAL cannot open {path}"
    try:
        srs = osr.SpatialReference(wkt=ds.GetProjection()) if ds.GetProjection() else None
        return {
            "width": ds.RasterXSize, "height": ds.RasterYSize, "bands": ds.RasterCount,
            "dtype": gdal.GetDataTypeName(ds.GetRasterBand(1).DataType),
            "geotransform": ds.GetGeoTransform(),
            "epsg": int(srs.GetAuthorityCode(None)) if srs is not None and srs.GetAuthorityCode(None) else None,
        }
    finally:
        ds = None


def read_array(path: Path) -> Any:
    """All bands of a raster as a numpy array (bands, h, w); the dataset is closed before returning."""
    from osgeo import gdal

    ds = gdal.Open(str(path))
    try:
        return ds.ReadAsArray()
    finally:
        ds = None


def qgis_process_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for running scripts/qgis_process.sh in a subprocess."""
    env = dict(os.environ)
    env["QT_QPA_PLATFORM"] = "offscreen"
    env.pop("QGIS_CUSTOM_CONFIG_PATH", None)
    env.update(extra or {})
    return env
