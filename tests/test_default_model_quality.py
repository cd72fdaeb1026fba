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
@pytest.mark.parametrize("degradation, margin", [("bicubic-aliased", 0.5), ("jpeg", 0.2)])
def test_default_model_beats_bicubic_on_degraded_lr(subset, degradation: str, margin: float) -> None:
    from mlin_qgis.ml.evaluate import OnnxMethod, evaluate

    torch.set_num_threads(2)
    res = evaluate({"default": OnnxMethod(resolve_model(), threads=2)}, subset, [2.0], degradation=degradation,
                   progress=False)
    mean = {m: res["mean"][m]["2"]["psnr"] for m in res["methods"]}
    assert DEFAULT_MODEL == "mlin-robust-ucmerced"
    assert mean["default"] > mean["bicubic"] + margin, mean
