"""The torch model: LIIF parity, the factored decoder, the meta weights, the frozen encoder, training."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import needs_shared as needs_shared_paths
from mlin_qgis.core.errors import ConfigError
from mlin_qgis.ml.decoder import DecoderConfig, ImplicitDecoder, make_coord, pixel_query_grid
from mlin_qgis.ml.encoders import build_encoder
from mlin_qgis.ml.model import CheckpointError, ImplicitSR, load_model, save_model

SHARED = Path(__file__).resolve().parents[2] / "shared"
LIIF_CKPT = SHARED / "weights" / "edsr-baseline-liif.pth"
FIXTURE = SHARED / "fixtures" / "liif_official_osbs029.npz"
needs_shared = needs_shared_paths(LIIF_CKPT)


@pytest.fixture(scope="module")
def liif() -> ImplicitSR:
    return load_model(LIIF_CKPT)


def test_encoders_have_liif_shapes_and_keys():
    edsr = build_encoder("edsr-baseline")
    x = torch.rand(1, 3, 11, 13)
    assert edsr(x).shape == (1, 64, 11, 13)
    assert "body.0.body.2.weight" in edsr.state_dict() and "sub_mean.weight" in edsr.state_dict()
    assert edsr.receptive_field == 34
    rdn = build_encoder("rdn")
    assert rdn(torch.rand(1, 3, 5, 6)).shape == (1, 64, 5, 6)
    assert "RDBs.15.convs.7.conv.0.weight" in rdn.state_dict() and "GFF.1.weight" in rdn.state_dict()
    with pytest.raises(ConfigError, match="choose one of: edsr-baseline, rdn"):
        build_encoder("swin")


def _linear_decoder(weighting: str = "area") -> ImplicitDecoder:
    """A decoder whose MLP is one linear layer that returns the centre code of the 3x3 unfold."""
    dec = ImplicitDecoder(DecoderConfig(feat_dim=1, hidden=[], out_dim=1, weighting=weighting))
    with torch.no_grad():
        layer = dec.imnet.layers[0]
        layer.weight.zero_()
        layer.bias.zero_()
        layer.weight[0, 4] = 1.0  # unfold index c*9 + 4 is the centre tap
    return dec


def test_hand_derived_case_is_bilinear_interpolation_of_codes():
    # Codes f(i, j) = 10 i + j on a 4x4 grid. LIIF's area weights are bilinear weights, so the
    # answer at (row 1.25, col 1.75) is 10*1.25 + 1.75 = 14.25 with weights, in LIIF's neighbour
    # order (r-,c-), (r-,c+), (r+,c-), (r+,c+): (.75*.25, .75*.75, .25*.25, .25*.75).
    feat = (10 * torch.arange(4.0).view(4, 1) + torch.arange(4.0).view(1, 4)).view(1, 1, 4, 4)
    dec = _linear_decoder()
    coord = torch.tensor([[[1.25, 1.75]]])
    cell = torch.tensor([[[0.5, 0.5]]])
    rgb, weights, area = dec.query(dec.project(feat), coord, cell)
    assert rgb.item() == pytest.approx(14.25, abs=1e-6)
    assert weights[0, 0].tolist() == pytest.approx([0.1875, 0.5625, 0.0625, 0.1875], abs=1e-7)
    # The same query through the LIIF-literal path (LIIF's [-1, 1] coordinates).
    norm = torch.tensor([[[-1 + (2 * 1.25 + 1) / 4, -1 + (2 * 1.75 + 1) / 4]]])
    ref = dec.query_reference(feat, norm, torch.tensor([[[0.25, 0.25]]]))
    assert ref[0].item() == pytest.approx(14.25, abs=1e-6)
    # At the border LIIF clamps to the edge code: col -0.3 sees code column 0 twice.
    edge = dec.query(dec.project(feat), torch.tensor([[[2.0, -0.3]]]), cell)[0]
    assert edge.item() == pytest.approx(20.0, abs=1e-6)


@pytest.mark.parametrize("weighting", ["area", "meta"])
def test_factored_decoder_equals_liif_literal_decoder(weighting):
    torch.manual_seed(0)
    dec = ImplicitDecoder(DecoderConfig(feat_dim=8, hidden=[32, 32], weighting=weighting))
    if dec.meta is not None:  # move away from the zero start so the meta path is exercised
        torch.nn.init.normal_(dec.meta.head[2].weight, std=0.3)
    feat = torch.randn(2, 8, 9, 7)
    for out_size in [(20, 15), (23, 31), (9, 7)]:
        coord, cell = pixel_query_grid((9, 7), out_size)
        norm = make_coord(out_size).view(-1, 2)
        norm_cell = torch.tensor([2 / out_size[0], 2 / out_size[1]]).expand_as(norm)
        with torch.no_grad():
            fast = dec.query(dec.project(feat), coord.expand(2, -1, -1), cell.expand(2, -1, -1))
            slow = dec.query_reference(feat, norm.expand(2, -1, -1), norm_cell.expand(2, -1, -1))
        for a, b in zip(fast, slow):
            assert torch.allclose(a, b, atol=2e-5), (out_size, (a - b).abs().max())
        assert torch.allclose(fast[1].sum(-1), torch.ones(2, coord.shape[0]), atol=1e-6)


def test_meta_starts_exactly_at_area_weights_and_can_move():
    torch.manual_seed(1)
    area = ImplicitDecoder(DecoderConfig(feat_dim=4, hidden=[16], weighting="area"))
    meta = ImplicitDecoder(DecoderConfig(feat_dim=4, hidden=[16], weighting="meta"))
    meta.imnet.load_state_dict(area.imnet.state_dict())
    feat = torch.randn(1, 4, 6, 6)
    coord, cell = pixel_query_grid((6, 6), (15, 15))
    a = area.query(area.project(feat), coord[None], cell[None])
    m = meta.query(meta.project(feat), coord[None], cell[None])
    assert torch.allclose(a[0], m[0], atol=1e-6) and torch.allclose(m[1], m[2], atol=1e-6)
    torch.nn.init.normal_(meta.meta.head[2].weight, std=1.0)
    moved = meta.query(meta.project(feat), coord[None], cell[None])
    assert (moved[1] - moved[2]).abs().max() > 0.05
    assert torch.allclose(moved[1].sum(-1), torch.ones(1, coord.shape[0]), atol=1e-6)


@needs_shared
@pytest.mark.parametrize("key", ["sr_x2.5", "sr_x4.0", "sr_x7.3"])
def test_reproduces_official_liif_output(liif, key):
    fixture = np.load(FIXTURE)
    lr = torch.from_numpy(fixture["lr_uint8"]).float().div(255).unsqueeze(0)
    ref = fixture[key]
    with torch.no_grad():
        out = liif.super_resolve(lr, ref.shape[1:])[0].numpy()
    assert out.shape == ref.shape and out.dtype == np.float32
    assert np.abs(out - ref).max() <= 1e-5


@needs_shared
def test_integer_scale_x2_matches_the_liif_literal_path(liif):
    lr = torch.from_numpy(np.load(FIXTURE)["lr_uint8"][:, :20, :24]).float().div(255).unsqueeze(0)
    with torch.no_grad():
        fast = liif.super_resolve(lr, (40, 48))
        feat = liif.encode(lr)
        ref = liif.decoder.query_reference(feat, make_coord((40, 48)).view(1, -1, 2),
                                           torch.tensor([2 / 40, 2 / 48]).expand(1, 40 * 48, 2))[0]
    ref = (ref * 0.5 + 0.5).permute(0, 2, 1).reshape(1, 3, 40, 48)
    assert (fast - ref).abs().max() <= 1e-5


@needs_shared
def test_meta_model_from_liif_gives_liif_output(liif):
    meta = load_model(LIIF_CKPT, weighting="meta")
    lr = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert (meta.super_resolve(lr, (29, 23)) - liif.super_resolve(lr, (29, 23))).abs().max() <= 1e-6


def test_checkpoint_round_trip_and_bad_checkpoints(tmp_path):
    torch.manual_seed(2)
    model = ImplicitSR("edsr-baseline", DecoderConfig(weighting="meta"))
    path = tmp_path / "m.pth"
    save_model(model, path)
    again = load_model(path)
    assert again.decoder.cfg.weighting == "meta"
    lr = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(model.eval().super_resolve(lr, (13, 13)), again.super_resolve(lr, (13, 13)))
    with pytest.raises(CheckpointError, match="checkpoint not found"):
        load_model(tmp_path / "missing.pth")
    torch.save({"state": 1}, tmp_path / "foreign.pth")
    with pytest.raises(CheckpointError, match="not an MLIN or LIIF checkpoint"):
        load_model(tmp_path / "foreign.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a pickle")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_model(tmp_path / "junk.pth")
    with pytest.raises(ValueError, match="unknown weighting 'fixed'"):
        DecoderConfig(weighting="fixed")


def test_neighbour_colours_mixed_by_the_weights_give_the_query():
    torch.manual_seed(1)
    dec = ImplicitDecoder(DecoderConfig(weighting="meta", feat_dim=8, hidden=[16, 16]))
    torch.nn.init.normal_(dec.meta.head[2].weight, std=0.5)
    proj = dec.project(torch.randn(1, 8, 6, 7))
    coord, cell = pixel_query_grid((6, 7), (13, 15))
    rgb, weights, _ = dec.query(proj, coord[None], cell[None])
    colours = dec.neighbour_colours(proj, coord[None], cell[None])
    assert colours.shape == (1, 13 * 15, 4, 3)
    assert torch.allclose((colours * weights[..., None]).sum(-2), rgb, atol=1e-6)
    assert not torch.allclose(colours[..., 0, :], colours[..., 3, :])
