"""The shipped default (`auto` = the degradation-aware model) on four real UC Merced val images
(../shared): floors, never today's exact numbers, so an improvement never fails this test.

- clean LR: at least the official LIIF - 0.30 dB (a model that sent clean rasters to the sharp-input
  expert would lose ~0.4; the acceptance aims at - 0.10, not met yet at x2: -0.15 on these images);
- JPEG-75 LR: at least bicubic + 0.5 dB;
- aliased LR: far above the clean-trained model, which breaks there (x2: by more than 0.8 dB,
  x4: by more than 2 dB). Aliased x2 is still below bicubic on these images (docs/RESULTS.md says so):
  no floor pins that weakness."""
from __future__ import annotations

import pytest

from conftest import SHARED, needs_shared

torch = pytest.importorskip("torch")

VAL = SHARED / "data" / "ucmerced" / "val"
IMAGES = ["agricultural/agricultural08.png", "denseresidential/denseresidential09.png",
          "harbor/harbor00.png", "parkinglot/parkinglot00.png"]


@pytest.fixture(scope="module")
def subset(tmp_path_factory):
    """Four val images in a folder of their own (a fixed, varied subset: fields, houses, boats, cars)."""
    import shutil

    folder = tmp_path_factory.mktemp("val4")
    for rel in IMAGES:
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(VAL / rel, folder / rel)
    return folder


@needs_shared(VAL)
def test_default_auto_meets_its_floors(subset) -> None:
    from mlin_qgis.core.auto import wants_auto
    from mlin_qgis.core.models import resolve_model
    from mlin_qgis.ml.evaluate import evaluate
    from mlin_qgis.ml.methods import AutoMethod, OnnxMethod

    torch.set_num_threads(2)
    assert wants_auto(None), "auto is the default when the degradation-aware model is installed"
    methods = {"auto": AutoMethod(threads=2), "clean": OnnxMethod(resolve_model("mlin-edsr-ucmerced"), threads=2),
               "liif": OnnxMethod(resolve_model("liif-edsr-div2k"), threads=2)}
    scales = [2.0, 4.0]
    clean = evaluate(methods, subset, scales, degradation="bicubic", progress=False)["mean"]
    jpeg = evaluate(methods, subset, scales, degradation="jpeg", progress=False)["mean"]
    aliased = evaluate(methods, subset, scales, degradation="bicubic-aliased", progress=False)["mean"]
    for key in ("2", "4"):
        assert clean["auto"][key]["psnr"] >= clean["liif"][key]["psnr"] - 0.30, (key, clean)
        assert jpeg["auto"][key]["psnr"] >= jpeg["bicubic"][key]["psnr"] + 0.5, (key, jpeg)
    assert aliased["auto"]["2"]["psnr"] > aliased["clean"]["2"]["psnr"] + 0.8, aliased
    assert aliased["auto"]["4"]["psnr"] > aliased["clean"]["4"]["psnr"] + 2.0, aliased
