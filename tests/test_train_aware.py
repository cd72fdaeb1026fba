"""Training of the degradation-aware MLIN: exact resume, the GPU path's smoke mode on CPU, the mixture's
starting point (a one-hot gate is exactly that expert) and the estimator's targets. Real shipped ONNX
experts, real PNG files, real torch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, smooth_image

torch = pytest.importorskip("torch")

from mlin_qgis.core.errors import ConfigError  # noqa: E402
from mlin_qgis.ml.aware_stages import AnchoredStage, EstimatorFinish  # noqa: E402
from mlin_qgis.ml.data import SamplerConfig  # noqa: E402
from mlin_qgis.ml.degradation import Degradation, DegradationConfig  # noqa: E402
from mlin_qgis.ml.estimator import degradation_targets  # noqa: E402
from mlin_qgis.ml.onnx_import import model_from_onnx  # noqa: E402
from mlin_qgis.ml.train_aware import AwareTrainConfig, smoke_config, train  # noqa: E402

# Three real trained models of the same architecture (the shipped MLIN and the aware model's own clean-mix
# pair, twice): what the mixture needs, whatever they were trained for.
EXPERTS = {"clean": str(REPO / "models/mlin-edsr-ucmerced"), "robust": str(REPO / "models/mlin-aware-ucmerced"),
           "sharp": str(REPO / "models/mlin-edsr-ucmerced")}


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("imgs")
    for i in range(3):
        (root / "cls").mkdir(exist_ok=True)
        arr = np.rint(smooth_image(40, 44, seed=i) * 255).astype(np.uint8).transpose(1, 2, 0)
        Image.fromarray(arr).save(root / "cls" / f"img{i}.png")
    return root


def config(images: Path, run_dir: Path) -> AwareTrainConfig:
    cfg = smoke_config(AwareTrainConfig(data_root=str(images), split_file=None, split=None, dev_split=None,
                                        val_root=str(images), experts=EXPERTS, run_dir=str(run_dir), threads=1,
                                        device="cpu"))
    cfg.amp = False  # bit-for-bit comparisons run in float32
    cfg.monitor_images = 0
    return cfg


def state(run_dir: Path) -> dict:
    return torch.load(run_dir / "checkpoint.pth", map_location="cpu", weights_only=True)


def test_resume_continues_bit_for_bit(images: Path, tmp_path: Path) -> None:
    whole = config(images, tmp_path / "whole")
    train(whole)
    halves = config(images, tmp_path / "halves")
    train(halves, stop_at=2)
    assert state(tmp_path / "halves")["iteration"] == 2
    with pytest.raises(ConfigError, match="--resume"):
        train(halves)  # an existing run is never silently restarted or overwritten
    train(halves, resume=True)
    a, b = state(tmp_path / "whole"), state(tmp_path / "halves")
    assert a["iteration"] == b["iteration"] == 4
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    moments_a = [s["exp_avg"] for s in a["optimizer"]["state"].values()]
    moments_b = [s["exp_avg"] for s in b["optimizer"]["state"].values()]
    assert all(torch.equal(x, y) for x, y in zip(moments_a, moments_b))
    assert (tmp_path / "halves" / "weights.fp16.pth").is_file()


def test_committed_weights_continue_on_a_new_machine(images: Path, tmp_path: Path) -> None:
    first = config(images, tmp_path / "first")
    train(first, stop_at=2)
    weights = tmp_path / "first" / "weights.fp16.pth"
    again = config(images, tmp_path / "again")
    again.init_weights = str(weights)
    from mlin_qgis.ml.train_aware import build

    model = build(again)
    saved = torch.load(weights, weights_only=True)["state_dict"]
    for key, value in saved.items():
        assert torch.equal(model.state_dict()[key], value.float()), key


def test_smoke_mode_runs_the_gpu_path_on_cpu(images: Path, tmp_path: Path) -> None:
    cfg = smoke_config(AwareTrainConfig(data_root=str(images), split_file=None, split=None, dev_split=None,
                                        val_root=str(images), experts=EXPERTS, run_dir=str(tmp_path / "smoke"),
                                        threads=1, device="cpu"))
    assert cfg.amp is True
    train(cfg)
    lines = (tmp_path / "smoke" / "monitor.jsonl").read_text().splitlines()
    assert len(lines) == 2, "a monitor entry at the start and at the end"
    import json

    last = json.loads(lines[-1])
    assert last["iteration"] == 4 and np.isfinite(last["sr"])
    assert all(np.isfinite(v) and v > 10 for v in last["val"].values())


def test_one_hot_gate_is_exactly_that_expert(images: Path, tmp_path: Path) -> None:
    from mlin_qgis.ml.train_aware import build

    model = build(config(images, tmp_path / "x"))
    lr = torch.rand(1, 3, 20, 22)
    for k, (name, spec) in enumerate(EXPERTS.items()):
        folder, _, variant = spec.partition("@")
        pi = torch.zeros(len(EXPERTS))
        pi[k] = 1.0
        mixed = model.single_model(pi).super_resolve(lr, (41, 45))
        alone = model_from_onnx(folder, variant).super_resolve(lr, (41, 45))
        assert torch.allclose(mixed, alone, atol=1e-6), name


def test_estimator_targets_follow_the_chain() -> None:
    clean = degradation_targets(Degradation(), 3.0)
    assert clean.tolist() == [0.0, 0.0, 0.0, 0.0]
    aliased = degradation_targets(Degradation(kernel="bicubic-aliased"), 3.0)
    assert aliased[0] == 1.0 and aliased[1:].abs().sum() == 0
    assert degradation_targets(Degradation(kernel="bicubic-aliased"), 1.0)[0] == 0.0, "nothing aliases at x1"
    blurred = degradation_targets(Degradation(kernel="bicubic-aliased", blur_sigma=(1.5, 1.5, 0.0)), 3.0)
    assert blurred[0] == 0.0 and blurred[1] > 0.6, "a blur of half an LR pixel removes the aliasing"
    jpeg = degradation_targets(Degradation(jpeg_quality=75), 2.0)
    assert jpeg[3] == pytest.approx(25 / 70)


def test_export_runs_in_the_engine_as_in_torch(images: Path, tmp_path: Path) -> None:
    """The exported folder (one ONNX pair patched per code, experts, estimator) gives torch's numbers:
    the mixed weights in onnxruntime, and the code pooled over windows as the estimator pools it (a
    share of positions per score, carried in experts.npz)."""
    from mlin_qgis.core.aware import code_spec, estimate_code
    from mlin_qgis.core.engine import SuperResolver
    from mlin_qgis.ml.export_aware import aware_card, export_aware
    from mlin_qgis.ml.train_aware import build

    cfg = config(images, tmp_path / "x")
    cfg.estimator_pooling = [0.2, 0.5, 1.0, 0.1]  # per score, as chunk 3 pools noise over every position
    model = build(cfg).eval()
    assert model.estimator.pooling == (0.2, 0.5, 1.0, 0.1)
    with torch.no_grad():
        model.gate.bias.copy_(torch.tensor([0.3, -0.2, 0.1]))  # a gate that mixes all three experts
    folder = export_aware(model, tmp_path / "aware", aware_card(model, "aware-test", {}))
    image = torch.from_numpy(np.random.default_rng(2).random((1, 3, 26, 30)).astype(np.float32))
    with torch.no_grad():
        code = torch.sigmoid(model.code_logits(image))[0]
    assert np.allclose(estimate_code(folder, [image[0].permute(1, 2, 0).numpy()]), code.numpy(), atol=2e-4)
    for looks in ((0.0, 0.0, 0.0, 0.0), (0.9, 0.1, 0.2, 0.6)):
        with torch.no_grad():
            ref = model.super_resolve(image, (52, 75), scores=torch.tensor([looks]))[0].numpy()
        out = SuperResolver(code_spec(str(folder), looks), device="cpu", threads=1).upscale(
            image[0].numpy(), (52, 75), clip=False)
        assert np.abs(out - ref).max() < 3e-3, looks  # float16 storage of the experts


def test_a_later_estimator_stretch_moves_only_the_estimator(images: Path, tmp_path: Path) -> None:
    """`estimator_only` (chunk 2's refresh after the estimator's pooling changed): experts and gate stay."""
    cfg = config(images, tmp_path / "run")
    cfg.estimator_only = [[2, 3]]
    cfg.estimator_sampler = SamplerConfig(lr_size=20, scale_min=1.2, scale_max=2.0, sample_q=64)
    train(cfg, stop_at=2)
    before = state(tmp_path / "run")["state_dict"]
    train(cfg, resume=True, stop_at=3)
    after = state(tmp_path / "run")["state_dict"]
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and all(k.startswith("estimator.") for k in moved), sorted(moved)[:5]
    train(cfg, resume=True)  # and the joint training goes on after it
    final = state(tmp_path / "run")["state_dict"]
    assert any(not torch.equal(after[k], final[k]) for k in final if k.startswith("experts."))


def finishing(images: Path, run_dir: Path) -> AwareTrainConfig:
    cfg = config(images, run_dir)
    cfg.estimator_finish = EstimatorFinish(iterations=3, batch_size=2, lr=1e-3, samplers=[
        SamplerConfig(lr_size=20, scale_min=1.0, scale_max=2.0, sample_q=16),
        SamplerConfig(lr_size=12, scale_min=2.0, scale_max=3.0, sample_q=16)])
    return cfg


def test_the_finishing_stage_moves_only_the_estimator_and_resumes_exactly(images: Path, tmp_path: Path) -> None:
    """`estimator_finish` (chunk 3): after the joint iterations, the estimator alone on large crops."""
    cfg = finishing(images, tmp_path / "run")
    train(cfg, stop_at=cfg.iterations)
    before = state(tmp_path / "run")["state_dict"]
    train(cfg, resume=True, stop_at=cfg.iterations + 1)
    train(cfg, resume=True)
    done = state(tmp_path / "run")
    assert done["iteration"] == cfg.iterations + 3
    moved = {k for k in before if not torch.equal(before[k], done["state_dict"][k])}
    assert moved and all(k.startswith("estimator.") for k in moved), sorted(moved)[:5]
    whole = finishing(images, tmp_path / "whole")
    train(whole)
    for key, value in state(tmp_path / "whole")["state_dict"].items():
        assert torch.equal(value, done["state_dict"][key]), key


def test_the_finishing_stage_reads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iterations: 10\nestimator_finish: {iterations: 5, samplers: [{lr_size: 64, scale_max: 2.0}]}\n")
    cfg = AwareTrainConfig.from_yaml(path)
    assert cfg.total_iterations() == 15 and cfg.estimator_finish is not None
    assert cfg.estimator_finish.samplers[0] == SamplerConfig(lr_size=64, scale_max=2.0)
    path.write_text("estimator_finish: {iterations: 5, sampler: {}}\n")
    with pytest.raises(ConfigError, match="unknown estimator_finish config keys: sampler"):
        AwareTrainConfig.from_yaml(path)


def anchored(images: Path, run_dir: Path, teacher_weight: float = 1.0) -> AwareTrainConfig:
    """Two joint iterations, then three of the anchored stage, every crop clean (so the teacher always
    speaks). The teacher is a real model of ours that differs from every expert's mix."""
    cfg = config(images, run_dir)
    cfg.iterations = 2
    cfg.degradation = DegradationConfig(p_clean=1.0)
    cfg.anchored = AnchoredStage(iterations=3, lr_experts=1e-4, lr_gate=1e-3, lr_estimator=0.0, warmup=1,
                                 teacher=str(REPO / "models/mlin-edsr-ucmerced"), teacher_weight=teacher_weight)
    return cfg


def test_the_anchored_stage_trains_experts_and_gate_against_the_teacher(images: Path, tmp_path: Path) -> None:
    """`anchored` (chunk 4): joint training again after the earlier stages, the estimator left alone,
    stop + `--resume` inside it bit-exact, and the teacher's term really in the loss."""
    cfg = anchored(images, tmp_path / "run")
    train(cfg, stop_at=2)
    before = state(tmp_path / "run")["state_dict"]
    train(cfg, resume=True, stop_at=3)
    train(cfg, resume=True)
    done = state(tmp_path / "run")
    assert done["iteration"] == 5
    moved = {k for k in before if not torch.equal(before[k], done["state_dict"][k])}
    assert any(k.startswith("experts.") for k in moved) and any(k.startswith("gate.") for k in moved)
    assert not any(k.startswith("estimator.") for k in moved), sorted(moved)[:5]
    whole = anchored(images, tmp_path / "whole")
    train(whole)
    for key, value in state(tmp_path / "whole")["state_dict"].items():
        assert torch.equal(value, done["state_dict"][key]), key
    untaught = anchored(images, tmp_path / "untaught", teacher_weight=0.0)
    train(untaught)
    other = state(tmp_path / "untaught")["state_dict"]
    assert any(not torch.equal(other[k], done["state_dict"][k]) for k in other if k.startswith("experts."))


def test_the_anchored_stage_reads_from_yaml_and_refuses_a_missing_teacher(images: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iterations: 10\nestimator_finish: {iterations: 5}\nanchored: {iterations: 7, teacher: nowhere.pth}\n")
    cfg = AwareTrainConfig.from_yaml(path)
    assert cfg.total_iterations() == 22 and cfg.finish_end() == 15
    path.write_text("anchored: {iterations: 7, teacher_wieght: 2}\n")
    with pytest.raises(ConfigError, match="unknown anchored config keys: teacher_wieght"):
        AwareTrainConfig.from_yaml(path)
    cfg = anchored(images, tmp_path / "run")
    cfg.anchored.teacher = str(tmp_path / "nowhere.pth")
    with pytest.raises(ConfigError, match="teacher .*nowhere.pth not found"):
        train(cfg)


def test_more_anchored_stages_follow_in_order_and_resume_exactly_across_their_boundary(images: Path,
                                                                                        tmp_path: Path) -> None:
    """`more_anchored` (chunk 5): a second anchored stage with its own teacher weight after the first; a
    stop at the boundary and `--resume` give the same weights as one go, and its weight is really used."""
    def plan(run_dir: Path, weight: float) -> AwareTrainConfig:
        cfg = anchored(images, run_dir)
        cfg.more_anchored = [AnchoredStage(iterations=2, lr_experts=1e-4, lr_gate=1e-3, lr_estimator=0.0, warmup=1,
                                           teacher=cfg.anchored.teacher, teacher_weight=weight)]
        return cfg

    cfg = plan(tmp_path / "run", 20.0)
    assert cfg.total_iterations() == 7 and cfg.stage_ends() == [5, 7]
    assert cfg.anchored_at(4) == (cfg.anchored, 2) and cfg.anchored_at(5) == (cfg.more_anchored[0], 0)
    train(cfg, stop_at=5)
    train(cfg, resume=True)
    resumed = state(tmp_path / "run")
    assert resumed["iteration"] == 7
    train(plan(tmp_path / "whole", 20.0))
    for key, value in state(tmp_path / "whole")["state_dict"].items():
        assert torch.equal(value, resumed["state_dict"][key]), key
    train(plan(tmp_path / "weak", 0.0))
    weak = state(tmp_path / "weak")["state_dict"]
    assert any(not torch.equal(weak[k], resumed["state_dict"][k]) for k in weak if k.startswith("experts."))


def test_more_anchored_needs_the_anchored_stage_and_one_teacher(images: Path, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("iterations: 10\nanchored: {iterations: 7}\nmore_anchored: [{iterations: 3, teacher_weight: 20}]\n")
    cfg = AwareTrainConfig.from_yaml(path)
    assert cfg.total_iterations() == 20 and cfg.more_anchored[0].teacher_weight == 20
    path.write_text("iterations: 10\nmore_anchored: [{iterations: 3}]\n")
    with pytest.raises(ConfigError, match="more_anchored follows the anchored stage"):
        AwareTrainConfig.from_yaml(path)
    cfg = anchored(images, tmp_path / "run")
    cfg.more_anchored = [AnchoredStage(iterations=1, teacher=str(REPO / "models/liif-edsr-div2k"))]
    with pytest.raises(ConfigError, match="different teachers"):
        train(cfg)


def test_a_teacher_expert_alone_receives_the_teachers_gradient(images: Path, tmp_path: Path) -> None:
    """`teacher_expert`: the teacher's term reads that expert alone, so no other expert gets its gradient;
    with the mixed network (chunk 4's form) every expert with a share of the mix does."""
    from dataclasses import replace

    from mlin_qgis.ml.aware_stages import load_teacher
    from mlin_qgis.ml.data import CropSource
    from mlin_qgis.ml.train_aware import build, step_loss

    cfg = anchored(images, tmp_path / "run", teacher_weight=20.0)
    model = build(cfg)
    teacher = load_teacher(str(REPO / "models/mlin-aware-ucmerced")).eval()  # unlike the clean expert
    source = CropSource(sorted(images.rglob("*.png")), cfg.sampler, cfg.seed, cfg.degradation)
    reach = {}
    for expert in (None, "clean"):
        model.zero_grad(set_to_none=True)
        losses = step_loss(model, source, cfg, 0, 2, torch.device("cpu"), teacher,
                           replace(cfg.anchored, teacher_expert=expert))
        assert float(losses["teacher"]) > 0
        losses["teacher"].backward()
        reach[expert] = sum(p.grad.flatten(1).abs().sum(1) for p in model.experts.values())  # per expert
    assert reach["clean"][0] > 0 and reach["clean"][1] == 0 and reach["clean"][2] == 0
    assert reach[None][1] > 0 and reach[None][2] > 0
    path = tmp_path / "c.yaml"
    path.write_text("anchored: {iterations: 3, teacher_expert: clear}\n")
    with pytest.raises(ConfigError, match="teacher_expert 'clear' is not one of the experts"):
        AwareTrainConfig.from_yaml(path)


def test_context_blocks_start_at_identity_and_export_as_trained(images: Path, tmp_path: Path) -> None:
    """Weights without context blocks grow them at identity (the same code), and once the blocks are
    trained the exported estimator pools the same code as torch."""
    from mlin_qgis.core.aware import estimate_code
    from mlin_qgis.ml.export_aware import aware_card, export_aware, load_aware
    from mlin_qgis.ml.train_aware import build

    plain = config(images, tmp_path / "plain")
    train(plain, stop_at=1)
    wide = config(images, tmp_path / "wide")
    wide.init_weights = str(tmp_path / "plain" / "weights.fp16.pth")
    wide.estimator_context = [2, 4]
    before, after = build(plain).eval(), build(wide).eval()
    before.load_state_dict(after.state_dict(), strict=False)  # the same trained weights on both sides
    assert len(after.estimator.context) == 2 and receptive_field_grows(after) and not receptive_field_grows(before)
    image = torch.from_numpy(np.random.default_rng(5).random((1, 3, 40, 36)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(before.code_logits(image), after.code_logits(image))
        for block in after.estimator.context:
            block.second.weight.normal_(0, 0.05)
        code = torch.sigmoid(after.code_logits(image))[0]
        assert not torch.allclose(code, torch.sigmoid(before.code_logits(image))[0], atol=1e-3)
    folder = export_aware(after, tmp_path / "aware", aware_card(after, "aware-test", {}))
    assert np.allclose(estimate_code(folder, [image[0].permute(1, 2, 0).numpy()]), code.numpy(), atol=2e-4)
    torch.save({"state_dict": after.state_dict(), "config": {"experts": list(wide.experts),
                "estimator_width": wide.estimator_width, "estimator_pooling": wide.estimator_pooling,
                "estimator_context": [2, 4]}}, tmp_path / "w.pth")
    reloaded = load_aware(tmp_path / "w.pth")
    with torch.no_grad():
        assert torch.equal(reloaded.code_logits(image), after.code_logits(image))


def receptive_field_grows(model: torch.nn.Module) -> bool:
    """A change 40 px away from a position reaches its logit with context blocks (19 px without)."""
    est = model.estimator
    with torch.no_grad():
        for block in est.context:
            block.second.weight.fill_(0.01)
        a = torch.zeros(1, 3, 96, 96)
        b = a.clone()
        b[..., 40:48, 40:48] = 1.0
        grew = not torch.allclose(est.logit_map(a)[..., 0, 0], est.logit_map(b)[..., 0, 0])
        for block in est.context:
            block.second.weight.zero_()
    return grew


def test_an_aliasing_offset_moves_that_logit_alone_and_ships_through_export(images: Path, tmp_path: Path) -> None:
    """`export-aware --aliasing-offset`: the raster's pooled aliasing logit moves by exactly the offset (top
    fraction pooling commutes with a constant), the other scores stay, and the exported estimator carries it."""
    from mlin_qgis.core.aware import estimate_code
    from mlin_qgis.ml.estimator import offset_score
    from mlin_qgis.ml.export_aware import aware_card, export_aware
    from mlin_qgis.ml.train_aware import build

    model = build(config(images, tmp_path / "x")).eval()
    image = torch.from_numpy(np.random.default_rng(8).random((1, 3, 33, 41)).astype(np.float32))
    with torch.no_grad():
        before = model.code_logits(image)[0].clone()
        offset_score(model.estimator, "aliasing", 0.7)
        after = model.code_logits(image)[0]
    assert after[0].item() == pytest.approx(before[0].item() + 0.7, abs=1e-5)
    assert torch.allclose(after[1:], before[1:])
    folder = export_aware(model, tmp_path / "aware", aware_card(model, "aware-test", {}))
    code = estimate_code(folder, [image[0].permute(1, 2, 0).numpy()])
    assert code[0] == pytest.approx(float(torch.sigmoid(before[0] + 0.7)), abs=2e-4)
