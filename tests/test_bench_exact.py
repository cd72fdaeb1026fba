"""The bench is exact: its multiply-add counts are those torch counts, and the engine's row band (which
`bench tune` measures) gives the same colours as the whole proj. No timings here."""
from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from bench.flops import factored_macs_per_query, projection_macs_per_lr_pixel, straightforward_macs_per_query  # noqa: E402
from mlin_qgis.ml.decoder import DecoderConfig, ImplicitDecoder, make_coord, pixel_query_grid  # noqa: E402


def _decoder(weighting: str, feat_dim: int = 8, hidden: tuple = (32, 32, 16)) -> ImplicitDecoder:
    torch.manual_seed(0)
    dec = ImplicitDecoder(DecoderConfig(feat_dim=feat_dim, hidden=list(hidden), weighting=weighting,
                                        meta_hidden=12)).eval()
    for p in dec.parameters():  # non-zero meta head, so the meta path contributes
        torch.nn.init.normal_(p, std=0.3)
    return dec


def _flops(fn) -> int:
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        fn()
    return counter.get_total_flops()


def test_liif_counts_match_the_hand_formula() -> None:
    dec = ImplicitDecoder(DecoderConfig(feat_dim=64, hidden=[256] * 4))
    assert straightforward_macs_per_query(dec) == 4 * (580 * 256 + 3 * 256 * 256 + 256 * 3)
    assert factored_macs_per_query(dec) == 4 * (4 * 256 + 3 * 256 * 256 + 256 * 3)
    assert projection_macs_per_lr_pixel(dec) == 576 * 256


@pytest.mark.parametrize("weighting", ["area", "meta"])
def test_counts_match_torch_flop_counter(weighting: str) -> None:
    dec = _decoder(weighting)
    h, w, oh, ow = 6, 7, 15, 16
    feat = torch.randn(1, dec.cfg.feat_dim, h, w)
    n = oh * ow
    lcoord = make_coord((oh, ow)).reshape(1, n, 2)
    lcell = torch.tensor([2 / oh, 2 / ow]).expand(1, n, 2)
    assert _flops(lambda: dec.query_reference(feat, lcoord, lcell)) == 2 * n * straightforward_macs_per_query(dec)
    proj = dec.project(feat)
    coord, cell = pixel_query_grid((h, w), (oh, ow))
    assert _flops(lambda: dec.project(feat)) == 2 * h * w * projection_macs_per_lr_pixel(dec)
    assert _flops(lambda: dec.query(proj, coord[None], cell[None])) == 2 * n * factored_macs_per_query(dec)


@pytest.mark.parametrize("rows", [(0, 3), (5, 9), (40, 48), (0, 48), (17, 18)])
def test_row_band_gives_the_same_colours(rows: tuple[int, int]) -> None:
    """The engine's own row_band: a chunk of whole output rows decoded from its LR row band equals the
    same chunk decoded from the whole proj, borders included."""
    from mlin_qgis.core.engine import row_band

    dec = _decoder("meta")
    h, w, oh, ow = 13, 11, 48, 40  # x3.7 rows: query rows land on, near and between code centres
    proj = torch.randn(1, dec.proj_channels, h, w)
    coord, cell = pixel_query_grid((h, w), (oh, ow))
    a, b = rows[0] * ow, rows[1] * ow
    lo, hi = row_band(coord[a:b, 0].numpy().astype("float32"), h)
    band = proj.numpy()[:, :, lo:hi]
    shifted = coord[a:b].numpy().copy()
    shifted[:, 0] -= lo
    assert band.shape[2] < h or rows == (0, 48)
    with torch.no_grad():
        want = dec.query(proj, coord[None, a:b], cell[None, a:b])
        got = dec.query(torch.from_numpy(band), torch.from_numpy(shifted)[None], cell[None, a:b])
    for x, y in zip(want, got):
        assert torch.equal(x, y)
