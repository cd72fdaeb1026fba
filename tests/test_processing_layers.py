"""mlin:superresolve on an area of interest and on layers that are not files (virtual raster, XYZ
tiles from a local folder), through real QGIS Processing, real providers and real GeoTIFFs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from osgeo import gdal

from conftest import UTM33N_GT, smooth_image, write_geotiff

pytest_plugins = ["qgis_fixtures"]

ALG = "mlin:superresolve"


def run(params: dict) -> dict:
    import processing
    from qgis.core import QgsProcessingContext

    return processing.run(ALG, params, context=QgsProcessingContext())


def read(path: Path) -> tuple[np.ndarray, tuple]:
    ds = gdal.Open(str(path))
    return ds.ReadAsArray().astype(np.float64), ds.GetGeoTransform()


def window_of(whole: Path, part: Path) -> tuple[np.ndarray, np.ndarray]:
    """The part's pixels and the same pixels cut from the whole result (located by georeferencing)."""
    big, gt = read(whole)
    small, sgt = read(part)
    assert sgt[1] == pytest.approx(gt[1]) and sgt[5] == pytest.approx(gt[5])
    c0 = int(round((sgt[0] - gt[0]) / gt[1]))
    r0 = int(round((sgt[3] - gt[3]) / gt[5]))
    big = big.reshape(-1, *big.shape[-2:])
    small = small.reshape(-1, *small.shape[-2:])
    return small, big[:, r0:r0 + small.shape[1], c0:c0 + small.shape[2]]


@pytest.fixture
def rgb(tmp_path: Path) -> Path:
    data = (smooth_image(90, 120, 3, seed=7) * 255).round().astype(np.uint8)
    return write_geotiff(tmp_path / "rgb.tif", data)


def test_extent_in_another_crs_equals_the_window_of_the_whole_result(mlin_provider, tiny_model: Path, rgb: Path,
                                                                       tmp_path: Path) -> None:
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject, QgsRectangle

    model = str(tiny_model / "encoder.onnx")
    whole = run({"INPUT": str(rgb), "SCALE": 2, "MODEL_FILE": model, "OUTPUT": str(tmp_path / "whole.tif")})
    x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
    area = QgsRectangle(x0 + 10.2, y0 - 30.1, x0 + 40.3, y0 - 12.6)  # 0.5 m pixels: not pixel-aligned
    to_wgs84 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:32633"),
                                      QgsCoordinateReferenceSystem("EPSG:4326"), QgsProject.instance())
    geo = to_wgs84.transformBoundingBox(area)
    extent = f"{geo.xMinimum()},{geo.xMaximum()},{geo.yMinimum()},{geo.yMaximum()} [EPSG:4326]"
    part = run({"INPUT": str(rgb), "EXTENT": extent, "SCALE": 2, "MODEL_FILE": model,
                "OUTPUT": str(tmp_path / "part.tif")})
    assert 0 < part["WIDTH"] < whole["WIDTH"] and 0 < part["HEIGHT"] < whole["HEIGHT"]
    small, same = window_of(Path(whole["OUTPUT"]), Path(part["OUTPUT"]))
    assert np.abs(small - same).max() <= 2
    # the area (reprojected, so a little larger) is covered, snapped to input pixels
    _, sgt = read(Path(part["OUTPUT"]))
    assert sgt[0] <= area.xMinimum() + 1e-6 and sgt[3] >= area.yMaximum() - 1e-6
    assert ((sgt[0] - x0) / 0.5) == pytest.approx(round((sgt[0] - x0) / 0.5))


def _virtual_layer(source: Path):
    """A `virtualraster` layer (QGIS's on-the-fly raster calculator): band 1 of ``source`` x 1.0."""
    from qgis.core import QgsRasterDataProvider, QgsRasterLayer

    src = QgsRasterLayer(str(source), "src")
    params = QgsRasterDataProvider.VirtualRasterParameters()
    params.crs = src.crs()
    params.extent = src.extent()
    params.width, params.height = src.width(), src.height()
    params.formula = '"src@1" * 1.0'
    entry = QgsRasterDataProvider.VirtualRasterInputLayers()
    entry.name, entry.uri, entry.provider = "src", str(source), "gdal"
    params.rInputLayers = [entry]
    layer = QgsRasterLayer(QgsRasterDataProvider.encodeVirtualRasterProviderUri(params), "virtual", "virtualraster")
    assert layer.isValid() and layer.providerType() == "virtualraster"
    return layer


def test_virtual_raster_layer_is_read_through_its_provider(mlin_provider, tiny_model: Path, rgb: Path,
                                                           tmp_path: Path) -> None:
    from qgis.core import QgsProject, QgsRectangle

    layer = _virtual_layer(rgb)
    QgsProject.instance().addMapLayer(layer)
    model = str(tiny_model / "encoder.onnx")
    try:
        result = run({"INPUT": layer, "SCALE": 2, "MODEL_FILE": model, "OUTPUT": str(tmp_path / "virtual.tif")})
        # the same values as a file: band 1 of the GeoTIFF as float64, run by the core directly
        from mlin_qgis.core.pipeline import SuperResolveRequest, superresolve

        ds = gdal.Open(str(rgb))  # keep the dataset alive while its band is read
        band1 = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
        ds = None
        as_file = write_geotiff(tmp_path / "band1.tif", band1)
        core = superresolve(SuperResolveRequest(as_file, tmp_path / "core.tif", 2, model=tiny_model))
        out, gt = read(Path(result["OUTPUT"]))
        ref, rgt = read(core.output_path)
        assert out.shape == ref.shape == (180, 240)
        assert gt == pytest.approx(rgt)
        assert np.abs(out - ref).max() <= 1e-3
        # an area of a virtual layer equals the same window of its whole result
        x0, y0 = UTM33N_GT[0], UTM33N_GT[3]
        area = QgsRectangle(x0 + 20, y0 - 35, x0 + 45, y0 - 10)
        part = run({"INPUT": layer, "EXTENT": area, "SCALE": 2, "MODEL_FILE": model,
                    "OUTPUT": str(tmp_path / "virtual_part.tif")})
        assert (part["WIDTH"], part["HEIGHT"]) == (100, 100)
        small, same = window_of(Path(result["OUTPUT"]), Path(part["OUTPUT"]))
        assert np.abs(small - same).max() <= 2
        # a cluster's workers could not read the temporary copy: refused before anything is read
        from qgis.core import QgsProcessingException

        with pytest.raises(QgsProcessingException, match="is not a file"):
            run({"INPUT": layer, "SCALE": 2, "MODEL_FILE": model, "CLUSTER": "tcp://127.0.0.1:1",
                 "OUTPUT": str(tmp_path / "cluster.tif")})
    finally:
        QgsProject.instance().removeMapLayer(layer.id())


WEB_MERCATOR_HALF = 20037508.342789244


def _xyz_tiles(folder: Path, zmax: int = 2) -> np.ndarray:
    """A local XYZ tile pyramid (PNG, 256 px) of one smooth picture covering the whole Web Mercator world;
    returns the full-resolution picture of level ``zmax``."""
    side = 256 * 2 ** zmax
    world = (smooth_image(side, side, 3, seed=11) * 255).round().astype(np.uint8)
    driver = gdal.GetDriverByName("PNG")
    for z in range(zmax + 1):
        level = world[:, ::2 ** (zmax - z), ::2 ** (zmax - z)]
        for x in range(2 ** z):
            for y in range(2 ** z):
                (folder / str(z) / str(x)).mkdir(parents=True, exist_ok=True)
                mem = gdal.GetDriverByName("MEM").Create("", 256, 256, 3, gdal.GDT_Byte)
                mem.WriteArray(level[:, y * 256:(y + 1) * 256, x * 256:(x + 1) * 256])
                driver.CreateCopy(str(folder / str(z) / str(x) / f"{y}.png"), mem)
    return world


def test_xyz_tile_layer_from_a_local_folder_needs_an_area_and_is_georeferenced_to_it(mlin_provider, tiny_model: Path,
                                                                                     tmp_path: Path) -> None:
    from qgis.core import QgsProcessingException, QgsRasterLayer, QgsRectangle

    world = _xyz_tiles(tmp_path / "tiles")
    uri = f"type=xyz&url=file://{tmp_path / 'tiles'}/{{z}}/{{x}}/{{y}}.png&zmin=0&zmax=2"
    layer = QgsRasterLayer(uri, "xyz", "wms")
    assert layer.isValid() and layer.providerType() == "wms"
    model = str(tiny_model / "encoder.onnx")
    with pytest.raises(QgsProcessingException, match="area of interest"):
        run({"INPUT": layer, "SCALE": 2, "MODEL_FILE": model, "OUTPUT": str(tmp_path / "all.tif")})
    res = 2 * WEB_MERCATOR_HALF / world.shape[1]  # level 2: the finest native resolution
    # 100 x 60 level-2 pixels in the north-west quarter
    x0, y0 = -WEB_MERCATOR_HALF + 200 * res, WEB_MERCATOR_HALF - 150 * res
    area = QgsRectangle(x0, y0 - 60 * res, x0 + 100 * res, y0)
    result = run({"INPUT": layer, "EXTENT": area, "SCALE": 2, "MODEL_FILE": model, "OUTPUT": str(tmp_path / "xyz.tif")})
    assert (result["WIDTH"], result["HEIGHT"]) == (200, 120)
    out, gt = read(Path(result["OUTPUT"]))
    assert gt[0] == pytest.approx(x0) and gt[3] == pytest.approx(y0)
    assert gt[1] == pytest.approx(res / 2) and gt[5] == pytest.approx(-res / 2)
    ds = gdal.Open(str(result["OUTPUT"]))
    assert "3857" in ds.GetProjection() or "Pseudo-Mercator" in ds.GetProjection()
    # the picture is the tiles' picture there: each output pixel close to its source pixel's colour
    rgb = out[:3]
    source = world[:, 150:210, 200:300].astype(np.float64).repeat(2, axis=1).repeat(2, axis=2)
    assert np.corrcoef(rgb.ravel(), source.ravel())[0, 1] > 0.95
