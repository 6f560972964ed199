"""A synthetic, learnable image-classification set for smoke tests and CPU-only runs.

Not a stand-in for any real data: results on it say only that the code learns. Each
class has a fixed smooth random colour template (low-resolution Gaussian noise upsampled
bilinearly, on a class-specific base colour); an image is its class template seen through
a randomly placed window (a small translation, so crops and flips still make sense) plus
pixel noise, clipped to 0..255 uint8. A small convnet, or even a linear model on the
mean-subtracted pixels, gets far below chance error within a few hundred steps.

Deterministic: the same arguments give the same bytes (with the same torch version). The
templates, the training split and the test split each come from their own generator
seeded from (seed, part), so the test images do not depend on `n_train`.
"""

from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from repro.data.augment import crop_flip

NOISE_STD = 24.0  # pixel noise, 0..255 scale
TEMPLATE_STD = 40.0  # spread of a template around its base colour


def _generator(seed: int, part: str) -> torch.Generator:
    digest = hashlib.sha256(f"repro-synthetic:{seed}:{part}".encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def _templates(num_classes: int, size: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Low-resolution template noise (K,3,g,g) and base colours (K,3,1,1); upsampled later."""
    g = _generator(seed, "templates")
    grid = max(2, min(8, size // 4))
    low = torch.randn(num_classes, 3, grid, grid, generator=g) * TEMPLATE_STD
    base = torch.rand(num_classes, 3, 1, 1, generator=g) * 128 + 64  # base colour per class
    return low, base


def _split(n: int, templates: tuple[torch.Tensor, torch.Tensor], size: int, pad: int, g: torch.Generator):
    low, base = templates
    k, full = low.shape[0], size + 2 * pad
    chunk = max(1, 4_000_000 // (3 * full * full))  # about 48 MB of float32 templates at a time
    labels = (torch.arange(n) % k)[torch.randperm(n, generator=g)]  # balanced, shuffled
    images = torch.empty(n, 3, size, size, dtype=torch.uint8)
    for i in range(0, n, chunk):
        y = labels[i : i + chunk]
        b = len(y)
        tops = torch.randint(0, 2 * pad + 1, (b,), generator=g)
        lefts = torch.randint(0, 2 * pad + 1, (b,), generator=g)
        smooth = F.interpolate(low[y], size=(full, full), mode="bilinear", align_corners=False) + base[y]
        view = crop_flip(smooth, tops, lefts, None, size)
        noise = torch.randn(b, 3, size, size, generator=g) * NOISE_STD
        images[i : i + b] = (view + noise).round_().clamp_(0, 255).to(torch.uint8)
    return images, labels.to(torch.int64)


def make_synthetic(
    n_train: int, n_test: int, num_classes: int, size: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x uint8 (n_train,3,size,size), train_y int64, test_x, test_y); see module doc."""
    if n_train < 1 or n_test < 1 or num_classes < 1 or size < 1:
        raise ValueError(f"make_synthetic needs positive sizes, got {n_train=}, {n_test=}, {num_classes=}, {size=}")
    pad = max(1, size // 8)  # translations of up to size/8 pixels each way
    templates = _templates(num_classes, size, seed)
    train_x, train_y = _split(n_train, templates, size, pad, _generator(seed, "train"))
    test_x, test_y = _split(n_test, templates, size, pad, _generator(seed, "test"))
    return train_x, train_y, test_x, test_y
