"""Test images off UC Merced (issue 30's "off UC Merced" cells): PNG tiles of the real rasters in
../shared/data/geotiff (other sensors, other resolutions), for `mlin evaluate --data`.

    .venv/bin/python scripts/off_ucmerced_tiles.py --out runs/offucm/geotiff
    .venv/bin/python -m mlin_qgis evaluate --data runs/offucm/geotiff --checkpoint auto=auto \\
        --checkpoint liif=models/liif-edsr-div2k --scales 2,4 --out runs/offucm/eval-geotiff

OSBS_029 (NEON airborne RGB, 0.1 m, 400x400): its four 200x200 quarters. The drone orthophoto (RGBA, 2 cm,
1243x841): every 256x256 tile on a 256 px grid whose alpha is fully opaque (bands 1-3). Set14 is used as
it is (../shared/data/natural/Set14)."""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from osgeo import gdal
from PIL import Image

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "geotiff"


def read(path: Path) -> np.ndarray:
    ds = gdal.Open(str(path))
    if ds is None:
        raise SystemExit(f"cannot open {path}: is ../shared beside the checkout?")
    return ds.ReadAsArray().transpose(1, 2, 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/offucm/geotiff")
    out = Path(parser.parse_args().out)
    out.mkdir(parents=True, exist_ok=True)
    osbs = read(SHARED / "OSBS_029.tif")
    for r in (0, 200):
        for c in (0, 200):
            Image.fromarray(np.ascontiguousarray(osbs[r:r + 200, c:c + 200, :3])).save(out / f"osbs029_r{r}_c{c}.png")
    drone = read(SHARED / "drone_orthophoto_rgba_utm33n.tif")
    for r in range(0, drone.shape[0] - 255, 256):
        for c in range(0, drone.shape[1] - 255, 256):
            tile = drone[r:r + 256, c:c + 256]
            if (tile[..., 3] == 255).all():
                Image.fromarray(np.ascontiguousarray(tile[..., :3])).save(out / f"drone_r{r}_c{c}.png")
    print(f"{len(list(out.glob('*.png')))} tiles in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
