"""The router's aliasing detector: the numpy network equals its torch twin, its file format refuses
what does not chain, training is deterministic per seed, and the shipped one tells an aliased x2
downsample of a real image from the clean one."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import REPO, SHARED, needs_shared
from mlin_qgis.core import router as R
from mlin_qgis.core.aliasing_detector import MAX_SIDE, AliasingDetector, conv2d
from mlin_qgis.core.errors import ModelCardError

VAL = SHARED / "data" / "ucmerced" / "val"


def test_conv2d_matches_a_hand_computed_value() -> None:
    """One 3x3 kernel on a 4x4 ramp: each output is the kernel's weighted sum of its window."""
    x = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    w = np.zeros((1, 1, 3, 3), np.float32)
    w[0, 0, 0, 0], w[0, 0, 2, 2] = 1.0, 2.0  # top-left + 2 x bottom-right
    out = conv2d(x, w, np.array([0.5], np.float32))
    assert out.shape == (1, 2, 2)
    assert out[0, 0, 0] == 0 + 2 * 10 + 0.5 and out[0, 1, 1] == 5 + 2 * 15 + 0.5


def test_numpy_detector_equals_its_torch_twin() -> None:
    torch = pytest.importorskip("torch")
    from mlin_qgis.ml.aliasing_fit import DetectorNet

    torch.manual_seed(0)
    net = DetectorNet()
    det = net.to_detector()
    y = np.random.default_rng(0).uniform(0, 255, (100, 150))
    c0 = (150 - MAX_SIDE) // 2  # only the centre crop of at most MAX_SIDE is scored
    with torch.no_grad():
        expect = float(net(torch.from_numpy(y[:, c0:c0 + MAX_SIDE] / 255.0).float()[None, None]))
    assert abs(det.score(y) - expect) < 1e-5


def test_three_output_detector_twin_and_features() -> None:
    """With three outputs (clean, sharp, other) the torch twin gives the same three mean logits, and
    the features are the sharp and clean logits each minus the 'other' one (softmax-invariant)."""
    torch = pytest.importorskip("torch")
    from mlin_qgis.ml.aliasing_fit import DetectorNet, detector_loss

    torch.manual_seed(1)
    net = DetectorNet((4, 6), outputs=3)
    det = net.to_detector()
    assert det.outputs == 3 and det.feature_names == ("detector_sharp_vs_other", "detector_clean_vs_other")
    y = np.random.default_rng(2).uniform(0, 255, (48, 40))
    with torch.no_grad():
        expect = net(torch.from_numpy(y / 255.0).float()[None, None])[0].numpy()
    assert np.allclose(det.mean_logits(y), expect, atol=1e-5)
    clean, sharp, other = expect
    assert np.allclose(det.features(y), [sharp - other, clean - other], atol=1e-5)
    assert np.isclose(det.score(y), sharp - other, atol=1e-5)
    again = AliasingDetector.from_json(json.loads(json.dumps(det.to_json())))
    assert np.allclose(again.features(y), det.features(y))
    # the losses: cross-entropy over the three classes; one output = binary 'made sharp'
    logits = torch.tensor([[0.0, 0.0, 0.0]])
    assert np.isclose(float(detector_loss(logits, torch.tensor([1]), 3)), np.log(3.0))
    one = torch.tensor([0.0, 0.0])
    assert np.isclose(float(detector_loss(one, torch.tensor([1, 0]), 1)), np.log(2.0))
    with pytest.raises(ModelCardError, match="one or three"):
        bad = det.to_json()
        bad["weights"][-1] = bad["weights"][-1][:2]
        bad["biases"][-1] = bad["biases"][-1][:2]
        AliasingDetector.from_json(bad)


def test_detector_file_round_trip_and_clear_errors() -> None:
    rng = np.random.default_rng(1)
    det = AliasingDetector(weights=[rng.normal(size=(4, 1, 3, 3)).astype(np.float32),
                                    rng.normal(size=(1, 4, 1, 1)).astype(np.float32)],
                           biases=[np.zeros(4, np.float32), np.zeros(1, np.float32)])
    again = AliasingDetector.from_json(json.loads(json.dumps(det.to_json())))
    y = rng.uniform(0, 255, (40, 40))
    assert np.isclose(det.score(y), again.score(y))
    bad = det.to_json()
    bad["weights"][1] = rng.normal(size=(1, 3, 1, 1)).tolist()  # 3 inputs after 4 channels
    with pytest.raises(ModelCardError, match="do not chain"):
        AliasingDetector.from_json(bad)
    # a router carrying a detector lists its feature and round-trips with it
    n = len(R.FEATURE_NAMES) + 1
    data = {"format": "mlin-router/1", "features": [*R.FEATURE_NAMES, R.DETECTOR_FEATURE], "classes": ["a", "b"],
            "routes": {"a": "model-a", "b": "model-b"}, "terms": "linear", "mean": [0.0] * n, "std": [1.0] * n,
            "weights": [[0.0, 0.0] for _ in range(n - 1)] + [[1.0, 0.0]], "bias": [0.0, 0.0],
            "detector": det.to_json()}
    router = R.Router.from_json(data)
    image = np.repeat((y / 255.0)[..., None], 3, axis=-1)
    assert np.isclose(router.features(image)[-1], det.score(y))
    assert R.Router.from_json(json.loads(json.dumps(router.to_json()))).feature_names == router.feature_names
    with pytest.raises(ModelCardError, match="refit it"):
        R.Router.from_json({**data, "features": list(R.FEATURE_NAMES)})  # a detector but not its feature


def test_detector_training_is_deterministic_per_seed(tmp_path) -> None:
    pytest.importorskip("torch")
    from PIL import Image

    from conftest import smooth_image
    from mlin_qgis.ml.aliasing_fit import DetectorFitConfig, fit_detector

    for i in range(2):
        img = (smooth_image(96, 96, seed=i).transpose(1, 2, 0) * 255).astype(np.uint8)
        Image.fromarray(img).save(tmp_path / f"img{i}.png")
    cfg = DetectorFitConfig(steps=4, batch_size=4, channels=(4, 4, 4), scale_max=3.0)
    a, b = fit_detector(str(tmp_path), cfg, progress=False), fit_detector(str(tmp_path), cfg, progress=False)
    assert all(np.array_equal(x, y) for x, y in zip(a.weights, b.weights))
    c = fit_detector(str(tmp_path), DetectorFitConfig(**{**cfg.__dict__, "seed": 2}), progress=False)
    assert not np.array_equal(a.weights[0], c.weights[0])


SHIPPED = REPO / "models" / R.ROUTER_FILE
BUSY = ["harbor/harbor00.png", "parkinglot/parkinglot04.png", "denseresidential/denseresidential09.png"]  # misrouted before


@needs_shared(*(VAL / name for name in BUSY))
def test_shipped_detector_tells_an_aliased_x2_downsample_from_a_clean_one() -> None:
    """Busy val scenes at x2, where the spectrum alone confused the router: the same HR made LR with
    and without an antialiasing filter; the detector scores the aliased one clearly higher."""
    torch = pytest.importorskip("torch")
    from mlin_qgis.ml.degradation import make_lr, suite_degradation
    from mlin_qgis.ml.images import load_image

    router = R.Router.load(SHIPPED)
    assert router.detector is not None and router.feature_names[-1] == R.DETECTOR_FEATURE
    for name in BUSY:
        hr = torch.from_numpy(load_image(VAL / name)).permute(2, 0, 1).float().div(255.0)[None, :, :256, :256]
        scores = {}
        for kind in ("bicubic", "bicubic-aliased"):
            lr = make_lr(hr, (128, 128), suite_degradation(kind, 2.0, 0))[0].permute(1, 2, 0).numpy()
            scores[kind] = router.detector.score(R.luminance(lr))
        assert scores["bicubic-aliased"] > scores["bicubic"] + 1.0, (name, scores)
