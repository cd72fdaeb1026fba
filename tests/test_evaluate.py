"""Metrics and the whole-image evaluation protocol, on real images written to tmp_path."""
from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from conftest import needs_shared
from mlin_qgis.ml import cli_evaluate as cli
from mlin_qgis.ml import evaluate as ev
from mlin_qgis.ml import methods, protocols, reports
from mlin_qgis.ml.images import load_image
from mlin_qgis.ml.metrics import psnr, ssim
from mlin_qgis.ml.resize import resize_bicubic

try:
    from mlin_qgis.core.errors import MlinError
    USER_ERRORS: tuple[type[Exception], ...] = (MlinError,)
except ImportError:
    USER_ERRORS = (ValueError, FileNotFoundError)

SHARED = Path(__file__).resolve().parents[2] / "shared"
UCM_VAL = SHARED / "data" / "ucmerced" / "val"
LIIF_CKPT = SHARED / "weights" / "edsr-baseline-liif.pth"


# ---------------------------------------------------------------- metrics
def test_identical_images_inf_psnr_and_ssim_one() -> None:
    x = np.random.default_rng(0).random((3, 32, 32))
    assert psnr(x, x, shave=2) == float("inf")
    assert ssim(x, x, shave=2) == pytest.approx(1.0, abs=1e-12)
    # torch input and a batch of one are accepted and agree
    assert psnr(torch.from_numpy(x)[None], x, shave=2) == float("inf")


def test_known_noise_psnr_by_hand() -> None:
    hr = np.full((3, 20, 20), 0.5)
    noise = np.where(np.indices((20, 20)).sum(axis=0) % 2 == 0, 0.1, -0.1)  # +-0.1 checkerboard
    sr = hr + noise[None]
    # MSE = 0.01 everywhere -> PSNR = 10 log10(1 / 0.01) = 20 dB
    assert psnr(sr, hr, shave=0) == pytest.approx(20.0, abs=1e-9)
    # a huge error only in the border disappears with shave=2
    sr_border = sr.copy()
    sr_border[:, :2, :] = 0.0
    assert psnr(sr_border, hr, shave=0) < 19.0
    assert psnr(sr_border, hr, shave=2) == pytest.approx(20.0, abs=1e-9)
    # data_range 255: same images scaled -> same PSNR
    assert psnr(sr * 255, hr * 255, shave=0, data_range=255.0) == pytest.approx(20.0, abs=1e-9)


def test_sr_clipped_before_measuring() -> None:
    hr = np.ones((3, 16, 16))
    hr[:, :8] = 0.0
    sr = hr.copy()
    sr[:, 8:] = 1.3  # overshoot above white is clipped away
    sr[:, :8] = -0.2
    assert psnr(sr, hr, shave=1) == float("inf")
    assert ssim(sr, hr, shave=1) == pytest.approx(1.0, abs=1e-12)


def test_ssim_constant_offset_by_hand() -> None:
    # constant images: SSIM is the luminance term (2ab + C1) / (a^2 + b^2 + C1), C1 = (0.01 * 1)^2
    a, b, c1 = 0.5, 0.6, 1e-4
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(np.full((3, 24, 24), b), np.full((3, 24, 24), a), shave=1)
    assert got == pytest.approx(expected, abs=1e-9)


def test_metric_input_errors() -> None:
    x = np.zeros((3, 16, 16))
    with pytest.raises(USER_ERRORS, match="same shape"):
        psnr(x, np.zeros((3, 16, 15)), shave=0)
    with pytest.raises(USER_ERRORS, match="leaves nothing"):
        psnr(x, x, shave=8)
    with pytest.raises(USER_ERRORS, match="11x11"):
        ssim(x, x, shave=3)


# ---------------------------------------------------------------- protocol pieces
def test_parse_scales() -> None:
    assert protocols.parse_scales("2, 2.5,4,2") == [2.0, 2.5, 4.0]
    for bad in ("1", "0.5,2", "-3", "abc", "2,,3", "nan", "inf", ""):
        with pytest.raises(USER_ERRORS):
            protocols.parse_scales(bad)


def test_protocol_sizes() -> None:
    assert protocols.protocol_sizes(257, 242, 3.0) == ((255, 240), (85, 80))
    assert protocols.protocol_sizes(256, 243, 2.5) == ((256, 242), (102, 97))  # 102.4 -> 102, 96.8 -> 97
    assert protocols.protocol_sizes(256, 256, 10.0) == ((250, 250), (25, 25))


def test_parse_checkpoint_arg(tmp_path: Path) -> None:
    assert methods.parse_checkpoint_arg("mlin=runs/a/best.pth") == ("mlin", Path("runs/a/best.pth"))
    assert methods.parse_checkpoint_arg("runs/a/best.pth") == ("best", Path("runs/a/best.pth"))
    odd = tmp_path / "x=y.pth"
    odd.write_bytes(b"")
    assert methods.parse_checkpoint_arg(str(odd)) == ("x=y", odd)


# ---------------------------------------------------------------- evaluate with stand-in models
class BicubicSR:
    """A real (if trivial) SR model: upsample with the project's resize, like the baseline."""

    def super_resolve(self, lr: torch.Tensor, out_size: tuple[int, int], chunk: int = 65536) -> torch.Tensor:
        return resize_bicubic(lr, out_size, quantize=False)


class NearestSR:
    """A deliberately worse SR model, so the table must tell methods apart."""

    def super_resolve(self, lr: torch.Tensor, out_size: tuple[int, int], chunk: int = 65536) -> torch.Tensor:
        return F.interpolate(lr, size=out_size, mode="nearest")


def _smooth_image(h: int, w: int, phase: float) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 0.5 + 0.4 * np.sin(xx / 5.0 + phase) * np.cos(yy / 7.0)
    g = (xx + yy) / (h + w)
    b = 0.5 + 0.3 * np.sin((xx - yy) / 4.0 + phase)
    return np.round(np.stack([r, g, b], axis=-1) * 255).astype(np.uint8)


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    root = tmp_path / "data"
    for cls, phase in (("fields", 0.0), ("roads", 1.3)):
        (root / cls).mkdir(parents=True)
        Image.fromarray(_smooth_image(49, 50, phase)).save(root / cls / f"{cls}01.png")
    return root


def test_evaluate_stand_in_models(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    ckpts = {"bicubic-model": BicubicSR(), "nearest": NearestSR()}
    res = ev.evaluate(ckpts, tiny_dataset, "2,2.5,3", out_dir=out, progress=False)
    again = ev.evaluate(ckpts, tiny_dataset, [2, 2.5, 3], progress=False)
    assert res["mean"] == again["mean"] and res["per_image"] == again["per_image"]
    assert res["methods"] == ["bicubic", "bicubic-model", "nearest"]
    assert res["n_images"] == 2 and res["images"] == ["fields/fields01.png", "roads/roads01.png"]
    for k in ("2", "2.5", "3"):
        assert res["mean"]["bicubic-model"][k] == res["mean"]["bicubic"][k]
        assert res["mean"]["nearest"][k]["psnr"] < res["mean"]["bicubic"][k]["psnr"] - 1.0
        assert 0.0 < res["mean"]["nearest"][k]["ssim"] < res["mean"]["bicubic"][k]["ssim"] < 1.0

    # one number recomputed by hand from the protocol: image 2, scale 2.5, bicubic
    img = torch.from_numpy(load_image(tiny_dataset / "roads" / "roads01.png")).permute(2, 0, 1).float() / 255
    hr = img[:, :48, :50]  # 49 -> 48 and 50 -> 50 (multiples of int(2.5) = 2)
    lr = resize_bicubic(hr, (19, 20))  # round(48 / 2.5) = 19, 50 / 2.5 = 20
    bic = resize_bicubic(lr, (48, 50), quantize=False)
    assert res["per_image"]["bicubic"]["2.5"]["psnr"][1] == pytest.approx(psnr(bic, hr, shave=3), abs=1e-12)

    saved = json.loads((out / "results.json").read_text())
    assert saved["mean"]["nearest"]["3"]["psnr"] == pytest.approx(res["mean"]["nearest"]["3"]["psnr"])
    md = (out / "results.md").read_text()
    assert ("| method | x2 PSNR | x2 SSIM | x2 cons. DN | x2.5 PSNR | x2.5 SSIM | x2.5 cons. DN | x3 PSNR | x3 SSIM "
            "| x3 cons. DN |") in md
    row = next(line for line in md.splitlines() if line.startswith("| nearest |"))
    assert f"{res['mean']['nearest']['2']['psnr']:.2f}" in row


def test_evaluate_limit_and_errors(tiny_dataset: Path, tmp_path: Path) -> None:
    res = ev.evaluate({}, tiny_dataset, "2", limit=1, progress=False)
    assert res["methods"] == ["bicubic"] and res["n_images"] == 1
    with pytest.raises(USER_ERRORS, match="greater than 1"):
        ev.evaluate({}, tiny_dataset, "1", progress=False)
    with pytest.raises(USER_ERRORS, match="does not exist"):
        ev.evaluate({"m": tmp_path / "missing.pth"}, tiny_dataset, "2", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(USER_ERRORS, match="no images"):
        ev.evaluate({}, tmp_path / "empty", "2", progress=False)
    with pytest.raises(USER_ERRORS, match="too small"):
        ev.evaluate({}, tiny_dataset, "20", progress=False)  # 40x40 HR: shaving 20 px leaves nothing
    with pytest.raises(USER_ERRORS, match="expected a .pth path or a model"):
        ev.evaluate({"m": 42}, tiny_dataset, "2", progress=False)
    with pytest.raises(USER_ERRORS, match="reserved"):
        ev.evaluate({"bicubic": BicubicSR()}, tiny_dataset, "2", progress=False)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="evaluate")
    cli.add_arguments(parser)
    return parser.parse_args(argv)


def test_cli_errors_return_2(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.run(_cli(["--checkpoint", str(tmp_path / "nope.pth"), "--data", str(tiny_dataset)])) == 2
    assert "nope.pth does not exist" in capsys.readouterr().err
    ckpt = tmp_path / "garbage.pth"
    ckpt.write_bytes(b"not a checkpoint")
    assert cli.run(_cli(["--checkpoint", str(ckpt), "--data", str(tiny_dataset), "--scales", "0.5"])) == 2
    assert "greater than 1" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert cli.run(_cli(["--checkpoint", str(ckpt), "--data", str(tmp_path / "empty")])) == 2
    assert "no images" in capsys.readouterr().err
    assert cli.run(_cli(["--checkpoint", f"a={ckpt}", "--checkpoint", f"a={ckpt}",
                        "--data", str(tiny_dataset)])) == 2
    assert "two checkpoints are named 'a'" in capsys.readouterr().err


# ---------------------------------------------------------------- the real official LIIF checkpoint
@needs_shared(LIIF_CKPT, UCM_VAL)
def test_real_liif_beats_bicubic_at_x2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "crops"
    data.mkdir()
    for name in ("agricultural/agricultural15.png", "denseresidential/denseresidential05.png"):
        src = UCM_VAL / name
        if not src.is_file():
            src = sorted((UCM_VAL / name.split("/")[0]).glob("*.png"))[0]
        Image.fromarray(load_image(src)[96:160, 96:160]).save(data / Path(name).name)
    out = tmp_path / "out"
    args = _cli(["--checkpoint", f"liif={LIIF_CKPT}", "--data", str(data), "--scales", "2,3",
                 "--out", str(out)])
    assert cli.run(args) == 0
    printed = capsys.readouterr().out
    assert "| liif |" in printed and "| bicubic |" in printed
    first = json.loads((out / "results.json").read_text())
    again = ev.evaluate({"liif": LIIF_CKPT}, data, "2,3", progress=False)
    assert again["per_image"] == first["per_image"]  # deterministic, bit for bit
    assert again["mean"]["liif"]["2"]["psnr"] > again["mean"]["bicubic"]["2"]["psnr"]
    assert again["mean"]["liif"]["2"]["ssim"] > again["mean"]["bicubic"]["2"]["ssim"]
    assert all(math.isfinite(v) for v in again["per_image"]["liif"]["3"]["psnr"])


def test_merge_results_joins_methods_and_refuses_other_images():
    from mlin_qgis.ml.reports import merge_results

    def part(method: str, value: float, images: list[str]) -> dict:
        cell = {"x2": {"psnr": value, "ssim": 0.5}}
        return {"images": images, "scales": [2.0], "methods": ["bicubic", method],
                "mean": {"bicubic": {"x2": {"psnr": 20.0, "ssim": 0.4}}, method: cell},
                "per_image": {"bicubic": {}, method: {}}, "checkpoints": {method: f"{method}.pth"}}

    merged = merge_results([part("liif", 25.0, ["a.png"]), part("mlin", 25.5, ["a.png"])])
    assert merged["methods"] == ["bicubic", "liif", "mlin"]
    assert merged["mean"]["mlin"]["x2"]["psnr"] == 25.5 and merged["mean"]["liif"]["x2"]["psnr"] == 25.0
    with pytest.raises(USER_ERRORS, match="same images and scales"):
        merge_results([part("liif", 25.0, ["a.png"]), part("mlin", 25.5, ["b.png"])])


@needs_shared(LIIF_CKPT, UCM_VAL)
def test_onnx_model_folder_evaluates_like_its_checkpoint(tmp_path: Path) -> None:
    """An exported model folder is evaluated through onnxruntime (what ships) and gives the same
    numbers as the torch checkpoint it was exported from."""
    data = tmp_path / "crops"
    data.mkdir()
    src = sorted((UCM_VAL / "denseresidential").glob("*.png"))[0]
    Image.fromarray(load_image(src)[64:144, 64:144]).save(data / "crop.png")
    liif_onnx = Path(__file__).resolve().parents[1] / "models" / "liif-edsr-div2k"
    res = ev.evaluate({"onnx": liif_onnx, "torch": LIIF_CKPT}, data, "2,3.5", progress=False)
    assert res["checkpoints"]["onnx"] == str(liif_onnx)
    for key in ("2", "3.5"):
        a, b = res["per_image"]["onnx"][key]["psnr"][0], res["per_image"]["torch"][key]["psnr"][0]
        assert a > res["per_image"]["bicubic"][key]["psnr"][0] + 0.5
        assert abs(a - b) < 1e-3, (key, a, b)


def test_paired_diff_by_hand() -> None:
    markdown, paired = reports.paired_markdown, reports.paired_differences

    per = {"a": {"2": {"psnr": [30.0, 31.0, 32.0], "ssim": [0.9, 0.8, 0.7]}},
           "b": {"2": {"psnr": [29.0, 31.5, 31.0], "ssim": [0.9, 0.7, 0.6]}}}
    rows = paired({"per_image": per}, "a", "b")
    # differences 1, -0.5, 1: mean 0.5, sample sd sqrt(0.75), se 0.5
    assert rows[0]["n"] == 3 and rows[0]["psnr"]["wins"] == 2
    assert rows[0]["psnr"]["mean"] == pytest.approx(0.5) and rows[0]["psnr"]["se"] == pytest.approx(0.5)
    assert rows[0]["ssim"]["wins"] == 2 and rows[0]["ssim"]["ties"] == 1
    assert "| x2 | +0.5000 ± 0.5000 | 2/3 |" in markdown(rows, "a", "b")
    # consistency (DN): lower is better, so A "wins" where its RMS is below B's
    per["a"]["2"]["consistency"] = [1.0, 2.0, 0.5]
    per["b"]["2"]["consistency"] = [2.0, 1.0, 0.5]
    rows = paired({"per_image": per}, "a", "b")
    assert rows[0]["consistency"]["wins"] == 1 and rows[0]["consistency"]["ties"] == 1
    assert "| x2 | +0.5000 ± 0.5000 | 2/3 | +0.0667 ± 0.0333 | 2/3 | +0.000 ± 0.577 | 1/3 |" in markdown(rows, "a", "b")
    with pytest.raises(USER_ERRORS, match="no method 'c'"):
        paired({"per_image": per}, "a", "c")


# ---------------------------------------------------------------- degradations and the FunSR protocol
def test_degradation_rows_are_the_hand_made_lr(tiny_dataset: Path, tmp_path: Path) -> None:
    import io

    res = ev.evaluate({}, tiny_dataset, "2", degradation="jpeg", progress=False)
    assert res["degradation"] == "jpeg" and "JPEG quality 75" in res["protocol"]["lr"]
    img = torch.from_numpy(load_image(tiny_dataset / "fields" / "fields01.png")).permute(2, 0, 1).float() / 255
    hr = img[:, :48, :50]
    clean = resize_bicubic(hr, (24, 25))
    buf = io.BytesIO()
    Image.fromarray((clean * 255).round().byte().permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=75)
    lr = torch.from_numpy(np.asarray(Image.open(buf).convert("RGB")).copy()).permute(2, 0, 1).float() / 255
    bic = resize_bicubic(lr, (48, 50), quantize=False)
    assert res["per_image"]["bicubic"]["2"]["psnr"][0] == pytest.approx(psnr(bic, hr, shave=2), abs=1e-9)
    aliased = ev.evaluate({}, tiny_dataset, "2", degradation="bicubic-aliased", progress=False)
    lr_a = torch.round(F.interpolate(hr[None], size=(24, 25), mode="bicubic", align_corners=False,
                                     antialias=False).clamp(0, 1) * 255) / 255
    bic_a = resize_bicubic(lr_a[0], (48, 50), quantize=False)
    assert aliased["per_image"]["bicubic"]["2"]["psnr"][0] == pytest.approx(psnr(bic_a, hr, shave=2), abs=1e-9)
    with pytest.raises(USER_ERRORS, match="unknown degradation 'haze'"):
        ev.evaluate({}, tiny_dataset, "2", degradation="haze", progress=False)


def test_funsr_bicubic_row_is_the_direct_computation(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    rng = np.random.default_rng(3)
    for k in range(2):
        base = _smooth_image(130, 140, phase=k)
        noisy = np.clip(base + rng.normal(0, 6, base.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(root / f"im{k}.png")
    res = ev.evaluate({"same": BicubicSR()}, root, "2,3", protocol="funsr", progress=False)
    assert res["protocol"]["name"] == "funsr"
    for scale, size, border in ((2, 96, 7), (3, 144, 8)):
        direct = []
        for k in range(2):
            img = torch.from_numpy(np.array(Image.open(root / f"im{k}.png"))).permute(2, 0, 1).double() / 255
            hr = torch.zeros((3, size, size), dtype=torch.float64)
            if size <= 130:  # x2: a centre crop of 96 px
                y, x = (130 - size) // 2, (140 - size) // 2
                hr[:] = img[:, y:y + size, x:x + size]
            else:  # x3: 144 > 130 rows, so rows are zero-padded (7 each side), columns cropped (140 < 144 too)
                hr[:, 7:137, 2:142] = img
            lr = F.interpolate(hr[None].float(), size=(48, 48), mode="bicubic", align_corners=False)
            up = F.interpolate(lr, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)[0].double()
            diff = (up - hr)[:, border:-border, border:-border]
            direct.append(float(10 * torch.log10(1 / diff.pow(2).mean())))
        assert res["mean"]["bicubic"][str(scale)]["psnr"] == pytest.approx(float(np.mean(direct)), abs=1e-4)
        # the project resize (a = -0.5 kernel) is not the protocol's bicubic (a = -0.75)
        assert res["mean"]["same"][str(scale)]["psnr"] != res["mean"]["bicubic"][str(scale)]["psnr"]
    with pytest.raises(USER_ERRORS, match="leave --degradation out"):
        ev.evaluate({}, root, "2", protocol="funsr", degradation="jpeg", progress=False)


def test_cli_several_degradations_write_one_table_each(tiny_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "suite"
    args = _cli(["--checkpoint", f"b={tmp_path / 'nope.pth'}", "--data", str(tiny_dataset),
                 "--degradation", "bicubic,noise,fog", "--out", str(out)])
    assert cli.run(args) == 2 and not out.exists()  # 'fog' is refused before anything runs
    assert cli.run(_cli(["--checkpoint", f"b={tmp_path / 'nope.pth'}", "--data", str(tiny_dataset),
                        "--degradation", "blur,mixed", "--out", str(out)])) == 2  # missing checkpoint
    cli.run  # the happy path with a real model is in the ONNX evaluation test


def test_merge_table_and_paired_actions(tiny_dataset: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    ev.evaluate({"bicubic-model": BicubicSR()}, tiny_dataset, "2", out_dir=a, progress=False)
    ev.evaluate({"nearest": NearestSR()}, tiny_dataset, "2", out_dir=b, progress=False)
    assert cli.run(_cli(["merge", str(tmp_path / "m"), str(a / "results.json"), str(b)])) == 0
    merged = json.loads((tmp_path / "m" / "results.json").read_text())
    assert merged["methods"] == ["bicubic", "bicubic-model", "nearest"]
    capsys.readouterr()
    assert cli.run(_cli(["table", str(tmp_path / "m"), "nearest=Nearest neighbour"])) == 0
    out = capsys.readouterr().out
    assert "| Nearest neighbour | " in out and "2 images from" in out
    assert cli.run(_cli(["paired", str(tmp_path / "m"), "nearest", "bicubic"])) == 0
    assert "| x2 | -" in capsys.readouterr().out  # nearest loses to bicubic on every image
    assert cli.run(_cli(["paired", str(tmp_path / "m"), "nearest"])) == 2
    assert "evaluate paired RESULTS_JSON METHOD_A METHOD_B" in capsys.readouterr().err
    assert cli.run(_cli(["table", str(tmp_path / "nothing")])) == 2
    assert "no evaluation results at" in capsys.readouterr().err


# ---------------------------------------------------------------- consistency and the fidelity option
def test_consistency_by_hand(tiny_dataset: Path) -> None:
    res = ev.evaluate({"nearest": NearestSR()}, tiny_dataset, "2,2.5", progress=False)
    # nearest at x2 repeats each LR pixel 2x2, so its area average gives LR back exactly
    assert max(res["per_image"]["nearest"]["2"]["consistency"]) < 1e-9
    # bicubic at x2: the area average is the 2x2 mean; RMS against LR, in DN
    img = torch.from_numpy(load_image(tiny_dataset / "fields" / "fields01.png")).permute(2, 0, 1).double() / 255
    hr = img[:, :48, :50].float()
    lr = resize_bicubic(hr, (24, 25))
    bic = resize_bicubic(lr, (48, 50), quantize=False).clamp(0, 1).double()
    rms = float(((F.avg_pool2d(bic[None], 2)[0] - lr.double()) ** 2).mean().sqrt()) * 255
    assert res["per_image"]["bicubic"]["2"]["consistency"][0] == pytest.approx(rms, abs=1e-6)
    assert res["mean"]["bicubic"]["2.5"]["consistency"] > 0.1
    assert set(res["hr_consistency"]["mean"]) == {"2", "2.5"}  # the truth's own, for reference


def test_fidelity_twins_average_back_to_lr(tiny_dataset: Path, tmp_path: Path) -> None:
    res = ev.evaluate({"nearest": NearestSR()}, tiny_dataset, "2,2.5", fidelity=True, out_dir=tmp_path / "o",
                      progress=False)
    assert res["methods"] == ["bicubic", "bicubic+fidelity", "nearest", "nearest+fidelity"]
    mean, per = res["mean"], res["per_image"]
    for key in ("2", "2.5"):
        for name in ("bicubic", "nearest"):
            assert mean[f"{name}+fidelity"][key]["consistency"] < 0.05, (name, key)
        assert mean["bicubic"][key]["consistency"] > 10 * mean["bicubic+fidelity"][key]["consistency"]
    # nearest at x2 already averages back to LR: the correction leaves it as it was
    assert per["nearest+fidelity"]["2"]["psnr"] == pytest.approx(per["nearest"]["2"]["psnr"], abs=1e-6)
    assert "| nearest+fidelity |" in (tmp_path / "o" / "results.md").read_text()
    rows = reports.paired_differences(res, "bicubic+fidelity", "bicubic")
    assert all(r["consistency"]["wins"] == 2 for r in rows)
    assert "lower (consistency)" in reports.paired_markdown(rows, "bicubic+fidelity", "bicubic")
    assert "x2 consistency (DN)" in reports.quality_table(res)
    with pytest.raises(USER_ERRORS, match="taken by a checkpoint"):
        ev.evaluate({"nearest": NearestSR(), "nearest+fidelity": NearestSR()}, tiny_dataset, "2", fidelity=True,
                    progress=False)


def test_reports_read_results_without_consistency(tiny_dataset: Path) -> None:
    """results.json files written before the consistency column still make tables and paired reports."""
    res = ev.evaluate({"nearest": NearestSR()}, tiny_dataset, "2", progress=False)
    for cells in (*res["mean"].values(), *res["per_image"].values()):
        del cells["2"]["consistency"]
    assert "cons. DN" not in ev.format_table(res) and "| nearest |" in ev.format_table(res)
    assert "consistency" not in reports.quality_table(res)
    rows = reports.paired_differences(res, "nearest", "bicubic")
    assert "consistency" not in rows[0] and "consistency" not in reports.paired_markdown(rows, "nearest", "bicubic")


@needs_shared(UCM_VAL)
def test_fidelity_option_on_real_val_images(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two real val crops through the shipped LIIF folder: the SR output does not average back to LR
    (> 0.5 DN), the corrected one does (< 0.5 DN before rounding), and bicubic's consistency is reported."""
    data = tmp_path / "crops"
    data.mkdir()
    for cls in ("agricultural", "harbor"):
        src = sorted((UCM_VAL / cls).glob("*.png"))[0]
        Image.fromarray(load_image(src)[64:160, 64:160]).save(data / f"{cls}.png")
    liif = Path(__file__).resolve().parents[1] / "models" / "liif-edsr-div2k"
    out = tmp_path / "out"
    assert cli.run(_cli(["--checkpoint", f"liif={liif}", "--data", str(data), "--scales", "2,2.5",
                         "--fidelity", "--out", str(out)])) == 0
    assert "| liif+fidelity |" in capsys.readouterr().out
    mean = json.loads((out / "results.json").read_text())["mean"]
    for key in ("2", "2.5"):
        assert mean["liif"][key]["consistency"] > 0.5 > mean["liif+fidelity"][key]["consistency"], (key, mean)
        assert mean["bicubic"][key]["consistency"] > 0.5 > mean["bicubic+fidelity"][key]["consistency"]
    assert cli.run(_cli(["paired", str(out), "liif+fidelity", "liif"])) == 0
    assert "Δconsistency (DN)" in capsys.readouterr().out
