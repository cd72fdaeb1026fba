"""The shipped default model on real UC Merced val images (../shared): better than bicubic where the
old clean-trained model was worse (aliased and JPEG-compressed LR), and close to LIIF on clean LR."""
from __future__ import annotations

import pytest

from conftest import SHARED, needs_shared
from mlin_qgis.core.models import DEFAULT_MODEL, resolve_model

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
def test_default_model_holds_up_where_the_clean_model_breaks(subset) -> None:
    """Measured on these four images (x2 / x4): aliased LR, bicubic 32.18 / 22.51, clean-trained MLIN
    29.08 / 17.66, default 31.46 / 22.63; JPEG-75, bicubic 27.74 / 21.92, clean MLIN 27.78 / 22.02,
    default 28.43 / 22.56. The margins below leave room for float noise only where the claim is made."""
    from mlin_qgis.ml.evaluate import OnnxMethod, evaluate

    torch.set_num_threads(2)
    assert DEFAULT_MODEL == "mlin-robust-ucmerced" and resolve_model().name == DEFAULT_MODEL
    methods = {"default": OnnxMethod(resolve_model(), threads=2),
               "clean": OnnxMethod(resolve_model("mlin-edsr-ucmerced"), threads=2)}
    aliased = evaluate(methods, subset, [2.0, 4.0], degradation="bicubic-aliased", progress=False)["mean"]
    jpeg = evaluate(methods, subset, [2.0, 4.0], degradation="jpeg", progress=False)["mean"]
    for key in ("2", "4"):
        assert aliased["default"][key]["psnr"] > aliased["clean"][key]["psnr"] + 2.0
        assert jpeg["default"][key]["psnr"] > jpeg["bicubic"][key]["psnr"] + 0.4
        assert jpeg["default"][key]["psnr"] > jpeg["clean"][key]["psnr"] + 0.4
    assert aliased["default"]["4"]["psnr"] > aliased["bicubic"]["4"]["psnr"]
    # and the honest limit: at x2 on aliased LR it is still below bicubic (see the model card)
    assert aliased["default"]["2"]["psnr"] < aliased["bicubic"]["2"]["psnr"]
