"""repro.data.augment: batched crops, flips, 10 views and PCA colour noise vs per-image references."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.data import augment
from repro.data.augment import (
    _reference_crop_flip,
    _reference_pca_noise,
    _reference_ten_views,
    center_crop,
    crop_flip,
    draw_crop_flip,
    pca_noise,
    random_crop_flip,
    rgb_pca,
    ten_views,
)

pytestmark = pytest.mark.usefixtures("one_thread")

FAST = settings(max_examples=25, deadline=None, database=None)  # no .hypothesis/ in the repo


def numbered(b: int, c: int, h: int, w: int, dtype=torch.float32) -> torch.Tensor:
    """Every element a different number (mod 256 for uint8), so misplaced pixels show."""
    x = torch.arange(b * c * h * w, dtype=torch.int64).reshape(b, c, h, w)
    return (x % 256).to(dtype) if dtype == torch.uint8 else x.to(dtype)


@FAST
@given(
    b=st.integers(1, 5),
    h=st.integers(1, 11),
    w=st.integers(1, 11),
    frac=st.floats(0.01, 1.0),
    flip=st.booleans(),
    uint8=st.booleans(),
    seed=st.integers(0, 2**31),
)
def test_random_crop_flip_equals_per_image_reference(b, h, w, frac, flip, uint8, seed):
    size = max(1, int(round(frac * min(h, w))))
    x = numbered(b, 3, h, w, torch.uint8 if uint8 else torch.float32)
    out = random_crop_flip(x, size, flip, torch.Generator().manual_seed(seed))
    tops, lefts, flips = draw_crop_flip(b, h, w, size, torch.Generator().manual_seed(seed))
    assert out.shape == (b, 3, size, size) and out.dtype == x.dtype
    for i in range(b):
        ref = _reference_crop_flip(x[i], int(tops[i]), int(lefts[i]), flip and bool(flips[i]), size)
        assert torch.equal(out[i], ref)


def test_crop_offsets_cover_every_position_and_flip_half():
    g = torch.Generator().manual_seed(0)
    tops, lefts, flips = draw_crop_flip(4000, 7, 6, 4, g)
    assert set(tops.tolist()) == {0, 1, 2, 3} and set(lefts.tolist()) == {0, 1, 2}
    assert abs(flips.float().mean().item() - 0.5) < 0.04
    assert not flips.all() and flips.any()


def test_random_crop_flip_whole_image_and_no_flip():
    x = numbered(6, 3, 5, 5)
    g = torch.Generator().manual_seed(1)
    assert torch.equal(random_crop_flip(x, None, False, g), x)
    out = random_crop_flip(x, None, True, torch.Generator().manual_seed(1))
    _, _, flips = draw_crop_flip(6, 5, 5, 5, torch.Generator().manual_seed(1))
    for i in range(6):
        assert torch.equal(out[i], x[i].flip(-1) if flips[i] else x[i])


def test_crop_flip_rejects_bad_offsets():
    x = numbered(2, 3, 5, 5)
    with pytest.raises(ValueError):
        crop_flip(x, torch.tensor([0, 3]), torch.tensor([0, 0]), None, 3)
    with pytest.raises(ValueError):
        draw_crop_flip(2, 5, 5, 6, None)


def test_center_crop():
    x = numbered(2, 3, 7, 8)
    out = center_crop(x, 4)
    assert torch.equal(out, x[:, :, 1:5, 2:6])
    assert torch.equal(center_crop(x, 7), x[:, :, :, 0:7])


@FAST
@given(b=st.integers(1, 3), h=st.integers(2, 9), w=st.integers(2, 9), frac=st.floats(0.1, 1.0))
def test_ten_views_geometry(b, h, w, frac):
    size = max(1, int(round(frac * min(h, w))))
    x = numbered(b, 3, h, w)
    views = ten_views(x, size)
    assert views.shape == (10, b, 3, size, size)
    s = size
    assert torch.equal(views[0], x[..., :s, :s])  # top-left
    assert torch.equal(views[1], x[..., :s, w - s :])  # top-right
    assert torch.equal(views[2], x[..., h - s :, :s])  # bottom-left
    assert torch.equal(views[3], x[..., h - s :, w - s :])  # bottom-right
    assert torch.equal(views[4], center_crop(x, s))
    for k in range(5):
        assert torch.equal(views[5 + k], views[k].flip(-1))
    for i in range(b):
        for k, ref in enumerate(_reference_ten_views(x[i], s)):
            assert torch.equal(views[k, i], ref)


def _random_pca(seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=g, dtype=torch.float64))
    vals = torch.tensor([30.0, 8.0, 2.0], dtype=torch.float64)
    return vals.float(), q.float()


def test_pca_noise_matches_reference_per_image():
    vals, vecs = _random_pca(0)
    x = numbered(4, 3, 3, 5) / 10
    out = pca_noise(x, vals, vecs, 0.1, torch.Generator().manual_seed(3))
    alphas = augment.draw_pca_alphas(4, 0.1, torch.Generator().manual_seed(3))
    for i in range(4):
        torch.testing.assert_close(out[i], _reference_pca_noise(x[i], alphas[i], vals, vecs))


def test_pca_noise_statistics():
    vals, vecs = _random_pca(1)
    std, n = 0.1, 20000
    x = torch.rand(1, 3, 2, 3).expand(n, -1, -1, -1).contiguous() * 255  # one fixed image, many draws
    out = pca_noise(x, vals, vecs, std, torch.Generator().manual_seed(5))
    delta = (out - x).double()
    # the offset is one RGB vector per image, the same at every pixel
    per_image = delta[:, :, 0, 0]
    torch.testing.assert_close(delta, per_image[:, :, None, None].expand_as(delta), atol=1e-4, rtol=0)
    assert per_image.unique(dim=0).shape[0] == n  # and different for every image
    # zero mean, covariance std^2 V diag(lambda^2) V^T (paper §4.1 with these magnitudes)
    v, lam = vecs.double(), vals.double()
    expected = std**2 * v @ torch.diag(lam**2) @ v.T
    cov = torch.cov(per_image.T)
    sd = (std * lam).max().item()
    assert per_image.mean(0).abs().max().item() < 4 * sd / n**0.5
    assert (cov - expected).abs().max().item() < 0.05 * sd**2


def test_rgb_pca_equals_numpy():
    g = torch.Generator().manual_seed(2)
    mix = torch.tensor([[1.0, 0.5, 0.2], [0.0, 0.8, 0.3], [0.0, 0.0, 0.4]])
    base = torch.randn(17, 5, 6, 3, generator=g) @ mix * 40 + 120
    images = base.clamp(0, 255).round().to(torch.uint8).permute(0, 3, 1, 2).contiguous()
    vals, vecs = rgb_pca(images, chunk=4)  # chunked on purpose
    px = images.permute(1, 0, 2, 3).reshape(3, -1).double().numpy()
    cov = np.cov(px)
    ref_vals, ref_vecs = np.linalg.eigh(cov)
    ref_vals, ref_vecs = ref_vals[::-1], ref_vecs[:, ::-1]
    np.testing.assert_allclose(vals.numpy(), ref_vals, rtol=1e-5)
    for i in range(3):  # eigenvectors agree up to sign
        dot = abs(float(np.dot(vecs[:, i].double().numpy(), ref_vecs[:, i])))
        assert dot == pytest.approx(1.0, abs=1e-5)
    recon = vecs.double() @ torch.diag(vals.double()) @ vecs.double().T
    np.testing.assert_allclose(recon.numpy(), cov, rtol=1e-4, atol=1e-3)
    assert (vecs.sum(0) >= 0).all()  # the sign convention


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_same_result_on_cuda_as_on_cpu():
    x = numbered(8, 3, 12, 12, torch.uint8)
    vals, vecs = _random_pca(0)
    cpu = random_crop_flip(x, 9, True, torch.Generator().manual_seed(4))
    gpu = random_crop_flip(x.cuda(), 9, True, torch.Generator().manual_seed(4))
    assert torch.equal(cpu, gpu.cpu())
    f = cpu.float()
    a = pca_noise(f, vals, vecs, 0.1, torch.Generator().manual_seed(6))
    b = pca_noise(f.cuda(), vals, vecs, 0.1, torch.Generator().manual_seed(6))
    assert torch.equal(a, b.cpu())
    assert torch.equal(ten_views(f, 9), ten_views(f.cuda(), 9).cpu())
