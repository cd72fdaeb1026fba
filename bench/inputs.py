"""The benchmark's input image and the models it measures.

The image is a real 256x256 remote-sensing tile when one is at hand (UC Merced val from ../shared,
else the shipped demo raster cropped), else a synthetic one, and the table header says which: speed
does not depend on content, but the agreement check and any quality side-glance are more honest on
a real image. Torch rows need the checkpoint an ONNX pair was exported from; when it is absent the
torch rows use a seeded random model of the same architecture and the ONNX row a temporary export
of it (same speed, and the rows still agree), which the header also says.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZE = 256
# A textured, fixed choice so every run benches the same pixels (any 256x256 image works).
PREFERRED = ("denseresidential", "denseresidential09.png")
DEMO_RASTER = ROOT / "resources" / "OSBS_029.tif"
# Known ONNX pair -> checkpoint it was exported from ("{shared}" is the shared folder); a .pth
# shipped inside the model folder comes first.
CHECKPOINTS = {
    "liif-edsr-div2k": ("{shared}/weights/edsr-baseline-liif.pth",),
    "mlin-edsr-ucmerced": ("runs/mlin/checkpoint.pth",),
}
MODELS = ("liif-edsr-div2k", "mlin-edsr-ucmerced")


@dataclass
class BenchImage:
    """(3, 256, 256) float32 in [0, 1] and a line saying where it came from."""

    hr: np.ndarray
    source: str


def default_shared() -> Path:
    return ROOT.parent / "shared"


def load_bench_image(shared: Path | None) -> BenchImage:
    """UC Merced val tile, else the demo raster cropped to 256x256, else a synthetic image."""
    val = shared / "data" / "ucmerced" / "val" if shared else None
    if val is not None and val.is_dir():
        from mlin_qgis.ml.images import load_image

        preferred = val / PREFERRED[0] / PREFERRED[1]
        candidates = [preferred] if preferred.is_file() else []
        candidates += sorted(val.glob("*/*.png"))
        for path in candidates:
            array = load_image(path)
            if array.shape[:2] == (SIZE, SIZE):
                hr = array.transpose(2, 0, 1).astype(np.float32) / 255.0
                return BenchImage(hr, f"real: UC Merced val {path.parent.name}/{path.name} (256x256)")
    if DEMO_RASTER.is_file():
        from osgeo import gdal

        ds = gdal.Open(str(DEMO_RASTER))
        x0, y0 = (ds.RasterXSize - SIZE) // 2, (ds.RasterYSize - SIZE) // 2
        array = ds.ReadAsArray(x0, y0, SIZE, SIZE)[:3].astype(np.float32) / 255.0
        return BenchImage(array, f"real: {DEMO_RASTER.relative_to(ROOT)} centre crop (256x256), "
                                 "../shared absent")
    return BenchImage(synthetic_image(), "SYNTHETIC 256x256 (no ../shared and no resources/OSBS_029.tif)")


def synthetic_image(size: int = SIZE, seed: int = 0) -> np.ndarray:
    """Seeded stand-in with smooth areas, sharp edges and texture, quantised to 8 bits."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.stack([0.5 + 0.3 * np.sin(6 * x + 2 * k) * np.cos(5 * y - k) for k in range(3)])
    for _ in range(12):
        r0, c0 = rng.integers(0, size - 32, 2)
        img[:, r0:r0 + rng.integers(8, 64), c0:c0 + rng.integers(8, 64)] = rng.random((3, 1, 1))
    img += 0.04 * rng.standard_normal(img.shape)
    return (np.round(np.clip(img, 0, 1) * 255) / 255).astype(np.float32)


def make_lr(hr: np.ndarray, scale: int) -> np.ndarray:
    """The project's degradation (THE resize, quantised to 8 bits): (3, 256/s, 256/s)."""
    import torch

    from mlin_qgis.ml.resize import resize_bicubic

    h, w = hr.shape[1:]
    lr = resize_bicubic(torch.from_numpy(hr)[None], (h // scale, w // scale), quantize=True)
    return lr[0].numpy()


@dataclass
class BenchModel:
    """One model as the bench runs it: the torch model for rows 1-2 and the ONNX pair for row 3."""

    name: str
    onnx_dir: Path
    torch_model: object  # mlin_qgis.ml.model.ImplicitSR
    weights: str  # where the torch weights came from (for the header)
    card: dict


def _read_card(onnx_dir: Path) -> dict:
    import onnx

    proto = onnx.load(str(onnx_dir / "decoder.onnx"), load_external_data=False)
    return json.loads({p.key: p.value for p in proto.metadata_props}["mlin_card"])


def find_models(names: list[str] | None, shared: Path | None, overrides: dict[str, Path],
                tmp: Path) -> list[BenchModel]:
    """The shipped pairs that exist (both weightings when both are installed), each with its torch model."""
    import torch

    from mlin_qgis.ml.decoder import DecoderConfig
    from mlin_qgis.ml.model import ImplicitSR, load_model

    found = []
    for name in names or MODELS:
        onnx_dir = ROOT / "models" / name
        if not (onnx_dir / "encoder.onnx").is_file():
            if names:
                raise SystemExit(f"bench: no ONNX pair at {onnx_dir}; installed: "
                                 f"{', '.join(p.parent.name for p in sorted((ROOT / 'models').glob('*/decoder.onnx')))}")
            continue
        card = _read_card(onnx_dir)
        paths = [overrides[name]] if name in overrides else sorted(onnx_dir.glob("*.pth")) + _checkpoints(name, shared)
        checkpoint = next((p for p in paths if p.is_file()), None)
        if checkpoint is not None:
            model = load_model(checkpoint)
            weights = f"torch: {_rel(checkpoint)}; ONNX: {_rel(onnx_dir)} (shipped)"
        else:
            looked = ", ".join(_rel(p) for p in paths) or f"no *.pth in {_rel(onnx_dir)}, no known location"
            torch.manual_seed(0)
            model = ImplicitSR(card["encoder"], DecoderConfig(weighting=card["weighting"]))
            if model.decoder.meta is not None:  # a non-zero meta head so the meta path really runs
                torch.nn.init.normal_(model.decoder.meta.head[2].weight, std=0.05)
            model.eval()
            from mlin_qgis.ml.export import export_model

            onnx_dir = tmp / name
            export_model(model, onnx_dir, card)
            weights = (f"RANDOM weights (no checkpoint found: {looked}); ONNX: a temporary export of them "
                       "(the shipped graph's speed, not its file)")
        found.append(BenchModel(name, onnx_dir, model, weights, card))
    if not found:
        raise SystemExit(f"bench: no ONNX model pair under {ROOT / 'models'}")
    return found


def _checkpoints(name: str, shared: Path | None) -> list[Path]:
    paths = []
    for pattern in CHECKPOINTS.get(name, ()):
        if pattern.startswith("{shared}"):
            if shared is not None:
                paths.append(Path(pattern.format(shared=shared)))
        else:
            paths.append(ROOT / pattern)
    return paths


def _rel(path: Path) -> str:
    """Paths in the header relative to the repository (so a table does not show a home folder)."""
    return os.path.relpath(Path(path).resolve(), ROOT)


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="mlin-bench-")
