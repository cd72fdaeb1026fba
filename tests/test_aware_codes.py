"""What the shipped aware model reads from real rasters: fine texture is not sensor noise. 0.9.0 read
four clean tiles of the drone orthophoto (grass, gravel at 2 cm) as noisy (0.55-0.78) and denoised them,
3-6 dB below bicubic; 0.10.0 pools the noise score over every position. Real files, real onnxruntime;
a real noisy image is the other side, so the test fails if the noise score stops reading at all."""
from __future__ import annotations

import numpy as np
import pytest
from osgeo import gdal

from conftest import REPO, SHARED, needs_shared
from mlin_qgis.core.aware import CODE_NAMES, looks_of_image

torch = pytest.importorskip("torch")
from mlin_qgis.ml.degradation import make_lr, suite_degradation  # noqa: E402
from mlin_qgis.ml.resize import resize_bicubic  # noqa: E402

AWARE = REPO / "models" / "mlin-aware-ucmerced"
DRONE = SHARED / "data" / "geotiff" / "drone_orthophoto_rgba_utm33n.tif"
VAL = SHARED / "data" / "ucmerced" / "val"
NOISE = CODE_NAMES.index("noise")
TEXTURED_TILES = [(256, 256), (256, 512), (512, 0), (512, 256)]  # (row, col) of 256 px tiles, all opaque


def clean_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """(H, W, 3) uint8 -> the antialiased bicubic LR (h, w, 3) in [0, 1], 8-bit like a raster."""
    t = torch.from_numpy(hr.astype(np.float32) / 255).permute(2, 0, 1)[None]
    lr = resize_bicubic(t, (hr.shape[0] // scale, hr.shape[1] // scale))[0]
    return np.round(lr.permute(1, 2, 0).numpy() * 255) / 255


@needs_shared(DRONE)
@pytest.mark.parametrize("scale", [2, 4])
def test_fine_texture_is_not_read_as_noise(scale: int) -> None:
    ds = gdal.Open(str(DRONE))
    for row, col in TEXTURED_TILES:
        tile = np.stack([ds.GetRasterBand(b).ReadAsArray(col, row, 256, 256) for b in (1, 2, 3)], axis=-1)
        code = looks_of_image(AWARE, clean_lr(tile, scale)).code
        assert code[NOISE] < 0.3, f"tile ({row}, {col}) at x{scale}: {code}"


@needs_shared(VAL)
def test_real_sensor_like_noise_is_still_read() -> None:
    path = sorted((VAL / "intersection").glob("*.png"))[1]
    hr = torch.from_numpy(np.asarray(gdal.Open(str(path)).ReadAsArray(), dtype=np.float32) / 255)[None, :3, :256, :256]
    lr = make_lr(hr, (128, 128), suite_degradation("noise", 2.0, 0))[0].permute(1, 2, 0).numpy()
    assert looks_of_image(AWARE, lr).code[NOISE] > 0.4
