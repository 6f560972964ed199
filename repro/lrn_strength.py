"""How strongly a net's LRN layers normalize: their output against their constant gain alone.

LRN (paper §3.3) divides each activity by d^beta, d = k + alpha * (sum of squares over the
window). With alpha = 0 it is a constant gain k^-beta (the `lrn-gain` control of
ablations/lrn.toml). So whether LRN does more than its gain depends on how large
alpha * sum a^2 is against k in the nets it trains: if the activities stay small, LRN *is*
its gain, by construction, and "LRN vs constant gain" cannot differ. This module measures it.

For each LRN layer, on a split's first images (eval mode, centre crop), the factor by which
the normalization scales each nonzero input beyond the gain: f = out / (a * k^-beta) =
(k / d)^beta, in (0, 1]. Reported: the mean of f weighted by |a| (the layer's output as a
share of what its gain alone would give), the median and 10th percentile of f over nonzero
inputs, and the share of them scaled down by more than 10% (f < 0.9). Both the run's trained
weights and its initial ones (the same seeded draws as `repro train`) are measured.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn

from repro.layers import LocalResponseNorm

QUANTILE_SAMPLE = 1_000_000  # torch.quantile's input limit is 16M; a fixed-stride sample keeps it exact enough


def _factors(m: LocalResponseNorm, a: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(f, |a|) over the nonzero inputs of one batch."""
    a, out = a.detach().float().flatten(), out.detach().float().flatten()
    keep = a != 0
    gain = m.k ** -m.beta
    return out[keep] / (a[keep] * gain), a[keep].abs()


def _summary(f: torch.Tensor, w: torch.Tensor) -> dict[str, float]:
    step = max(1, f.numel() // QUANTILE_SAMPLE)
    q = torch.quantile(f[::step].double(), torch.tensor([0.1, 0.5], dtype=torch.float64))
    return {"output_over_gain": float((f.double() * w).sum() / w.double().sum()), "p10": float(q[0]),
            "median": float(q[1]), "share_below_0.9": float((f < 0.9).double().mean()), "inputs": int(f.numel())}


@torch.no_grad()
def measure(model: nn.Module, batches: Iterable[torch.Tensor]) -> dict[str, dict[str, float]]:
    """Layer name -> summary of its factors over `batches` (eval mode; the model is left in it)."""
    model.eval()
    seen: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    hooks = [mod.register_forward_hook(lambda m, inp, out, name=name: seen.setdefault(name, []).append(
        _factors(m, inp[0], out))) for name, mod in model.named_modules() if isinstance(mod, LocalResponseNorm)]
    try:
        for x in batches:
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return {name: _summary(torch.cat([f for f, _ in parts]), torch.cat([w for _, w in parts]).double())
            for name, parts in seen.items()}
