"""The shipped default (`auto`) on real UC Merced val images (../shared): far above bicubic where the
old clean-trained model was far below it (aliased LR), above it on JPEG-compressed LR, and it keeps
the clean-trained model's sharpness where the input is a clean downsample."""
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
def test_default_auto_holds_up_where_the_clean_model_breaks(subset) -> None:
    """MEASURED_DOC"""
    from mlin_qgis.core.auto import wants_auto
    from mlin_qgis.core.models import resolve_model
    from mlin_qgis.ml.evaluate import AutoMethod, OnnxMethod, evaluate

    torch.set_num_threads(2)
    assert wants_auto(None), "auto is the default when its router and models are installed"
    methods = {"auto": AutoMethod(threads=2), "clean": OnnxMethod(resolve_model("mlin-edsr-ucmerced"), threads=2)}
    aliased = evaluate(methods, subset, [2.0, 4.0], degradation="bicubic-aliased", progress=False)
    jpeg = evaluate(methods, subset, [2.0, 4.0], degradation="jpeg", progress=False)
    print(aliased["mean"], aliased["routes"], jpeg["mean"], jpeg["routes"])
    for key in ("2", "4"):
        a, j = aliased["mean"], jpeg["mean"]
        ASSERTS
