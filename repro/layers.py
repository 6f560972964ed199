"""Layers that torch.nn lacks, or names ambiguously: LRN in its three forms, cuda-convnet's
same-map response norm, and cuda-convnet's locally connected (untied) layer.

Local response normalization: one name, three functions
--------------------------------------------------------
The paper (Krizhevsky et al. 2012, §3.3) writes, for the activity a^i at one (x, y) in map
i of a layer with N maps,

    b^i = a^i / (k + alpha * sum_{j=max(0, i-n/2)}^{min(N-1, i+n/2)} (a^j)^2) ** beta

with k=2, n=5, alpha=1e-4, beta=0.75. Two things are literal here: alpha multiplies the raw
sum of squares (it is *not* divided by n), and for an even n the bounds i-n/2 .. i+n/2 hold
n+1 maps, not n. The paper only ever uses n=5, where the window is the 5 maps centred on i.

The code that trained the network does not compute that formula:

* cuda-convnet (v1) `cmrnorm` computes (1 + (scale/n) * sum)^pow: `layer.py` divides the
  configured `scale` by `size` (line 1043 of dnouri/cuda-convnet @e4ac0c1f374a) and the
  kernel in `conv_util.cu` adds a hard-coded 1 (`prod = 1 + addScale*prod`). The window
  starts at i - n//2 and holds n maps (`startF = -sizeF/2 + filterIdx`,
  `loopEndF = MIN(numFilters, startF + sizeF)`), clipped at both ends.
* cuda-convnet2 `cmrnorm` is the same with a configurable `minDiv` in place of the 1. Its
  ImageNet configs set scale=1e-4, size=5, pow=0.75, minDiv=2 (akrizhevsky/cuda-convnet2
  @3238bf0367f6, `layer.py` lines 1331-1333): k=2 as in the paper, but a per-term alpha of
  2e-5, five times weaker than the paper's formula read literally.
* Caffe's ACROSS_CHANNELS `LRN` computes (k + (alpha/n) * sum)^beta (`lrn_layer.cpp`,
  `alpha_over_size = alpha_ / size_`), with k defaulting to 1 in `caffe.proto`.
  bvlc_alexnet and CaffeNet set alpha=1e-4, beta=0.75, local_size=5 and leave k unset, so
  they run with k=1 *and* alpha/n. Caffe rejects even sizes outright
  (`CHECK_EQ(size_ % 2, 1) << "LRN only supports odd values for local_size"`).
* PyTorch's `nn.LocalResponseNorm(size, alpha=1e-4, beta=0.75, k=1.0)` computes
  (k + (alpha/size) * sum)^beta over maps i - size//2 .. i + (size-1)//2: the cuda-convnet
  window and Caffe's default k.

The discrepancy in alpha was raised publicly in BVLC/caffe issue #1453 (2014); a later
comment there notes Caffe's k=1 against the paper's k=2. Which of these the paper's
reported numbers came from is not knowable from the paper; the released configs suggest
the alpha/n form. This module therefore makes the convention an explicit argument of
`LocalResponseNorm` instead of picking one silently:

    convention      denominator                              window (maps summed)
    "paper"         (k + alpha * sum)^beta                   i-n//2 .. i+n//2  (n+1 if n even)
    "cuda-convnet"  (k + (alpha/n) * sum)^beta               i-n//2 .. i-n//2+n-1
    "caffe"         (1 + (alpha/n) * sum)^beta, k ignored    i-n//2 .. i+n//2  (odd n only)

All windows are clipped at the first and last map. In torch.nn.LocalResponseNorm terms
(see `LocalResponseNorm.torch_equivalent`) the paper's defaults are
`LocalResponseNorm(5, alpha=5e-4, beta=0.75, k=2.0)`, cuda-convnet2's ImageNet setting is
`LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0)` and Caffe's bvlc_alexnet is
`LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=1.0)`. The paper's formula with an even n has
no torch equivalent and is computed here directly.

cuda-convnet's `rnorm` is a different layer again: same map, a size x size spatial window,
(1 + (scale/size^2) * sum)^pow. It is `SpatialResponseNorm` below (used by the 18pct
CIFAR-10 net); PyTorch has nothing like it.

Lines that encode a choice stated in the paper carry a `# paper §3.3` tag.
"""

from __future__ import annotations

import contextlib
import functools

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "LRN_CONVENTIONS",
    "PAPER_LRN_ALPHA",
    "PAPER_LRN_BETA",
    "PAPER_LRN_K",
    "PAPER_LRN_SIZE",
    "LocalResponseNorm",
    "LocallyConnected2d",
    "SpatialResponseNorm",
]

PAPER_LRN_SIZE = 5  # paper §3.3: n = 5
PAPER_LRN_ALPHA = 1e-4  # paper §3.3: alpha = 1e-4 (multiplies the raw sum)
PAPER_LRN_BETA = 0.75  # paper §3.3: beta = 0.75
PAPER_LRN_K = 2.0  # paper §3.3: k = 2

LRN_CONVENTIONS = ("paper", "cuda-convnet", "caffe")


class LocalResponseNorm(nn.Module):
    """Cross-map local response normalization on (N, C, ...) input, in a named convention.

    `alpha` is the number as written in the convention's own source: the paper multiplies
    the sum of squares by it; cuda-convnet and Caffe multiply by alpha/size
    (`alpha_per_term` holds the factor actually applied to each squared term). "caffe"
    ignores `k` and uses 1, and like Caffe accepts only odd sizes.
    """

    def __init__(
        self,
        size: int = PAPER_LRN_SIZE,  # paper §3.3
        alpha: float = PAPER_LRN_ALPHA,  # paper §3.3
        beta: float = PAPER_LRN_BETA,  # paper §3.3
        k: float = PAPER_LRN_K,  # paper §3.3
        convention: str = "paper",
    ) -> None:
        super().__init__()
        if convention not in LRN_CONVENTIONS:
            raise ValueError(f"unknown LRN convention {convention!r}; valid: {', '.join(LRN_CONVENTIONS)}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ValueError(f"LRN size must be a positive int, got {size!r}")
        if convention == "caffe" and size % 2 == 0:
            raise ValueError(
                f"the caffe LRN convention needs an odd size (Caffe's LRNLayer rejects even local_size), got {size}"
            )
        self.size = size
        self.alpha = float(alpha)
        self.beta = float(beta)
        self.convention = convention
        # Caffe's bvlc_alexnet leaves k unset, so it is the proto default 1.
        self.k = 1.0 if convention == "caffe" else float(k)

    @property
    def alpha_per_term(self) -> float:
        """The factor multiplying each (a^j)^2 in the denominator's sum."""
        if self.convention == "paper":
            return self.alpha  # paper §3.3: alpha is not divided by n
        return self.alpha / self.size

    @property
    def window(self) -> tuple[int, int]:
        """(before, after): map i sums maps i-before .. i+after, clipped to [0, C-1]."""
        if self.convention == "paper":
            return self.size // 2, self.size // 2  # paper §3.3: j from i-n/2 to i+n/2
        return self.size // 2, (self.size - 1) // 2

    def torch_equivalent(self) -> dict[str, float | int] | None:
        """Keyword arguments for `torch.nn.LocalResponseNorm` that compute this same
        function, or None where none exists (the paper's formula with an even size)."""
        if self.convention == "paper":
            if self.size % 2 == 0:
                return None
            # torch divides alpha by size; the paper does not.  # paper §3.3
            return {
                "size": self.size,
                "alpha": self.alpha * self.size,
                "beta": self.beta,
                "k": self.k,
            }
        return {"size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}

    def forward(self, x: torch.Tensor, groups: int = 1) -> torch.Tensor:
        """The normalized activities; with `groups` > 1 the maps are split into that many equal
        blocks (AlexNet's columns) and no window crosses from one block into the next."""
        if x.dim() < 3:
            raise ValueError(f"LocalResponseNorm needs (N, C, ...) input, got shape {tuple(x.shape)}")
        if x.shape[1] % groups:
            raise ValueError(f"LocalResponseNorm: {x.shape[1]} maps do not split into {groups} groups")
        if x.numel() == 0:
            return x
        before, after = self.window
        return _FusedCrossMapNorm.apply(x, before, after, self.alpha_per_term, self.k, self.beta, groups)

    def extra_repr(self) -> str:
        before, after = self.window
        return (
            f"size={self.size}, alpha={self.alpha:g}, beta={self.beta:g}, k={self.k:g}, "
            f"convention={self.convention!r}, alpha_per_term={self.alpha_per_term:g}, "
            f"window=[i-{before}, i+{after}]"
        )


# --------------------------------------------------------------------------- the fused LRN
#
# One code path for every convention: b = a * d^-beta with d = k + alpha_per_term * W(a^2),
# where W sums each map's window of maps. W is block-diagonal, one banded 0/1 block per group
# (AlexNet's columns), so the window sum is one matrix product per group over the channel axis:
# a batched (C/g x C/g) @ (C/g x HW) in NCHW, or one (NHW*g x C/g) @ (C/g x C/g) in
# channels_last, with no padding, no shifted copies and no reshape between layouts (multiplying
# by the whole C x C matrix would spend half its work on the zero blocks). Backward uses the
# closed form
#
#     dL/da = g * d^-beta  -  2 * alpha_per_term * beta * a * W^T(g * a * d^-beta / d)
#
# with d and d^-beta saved from the forward pass. Low-precision inputs (bf16 under autocast)
# are normalized in float32 (squares, sums and powers) and the result cast back. Measured on a
# CPU this is 3-8x torch.nn.LocalResponseNorm (an avg_pool3d over a^2) fwd+bwd: `repro bench`.


@functools.lru_cache(maxsize=64)
def _window_matrix(c: int, before: int, after: int, value: float, dtype: torch.dtype,
                   device: torch.device) -> torch.Tensor:
    """One group's block of W: W[i, j] = `value` where map j is in map i's window
    [i-before, i+after] clipped to the group's c maps, else 0. The window (after, before)
    gives W's transpose."""
    with torch.inference_mode(False):  # cached: must be usable outside inference mode too
        i = torch.arange(c, device=device)
        offset = i[None, :] - i[:, None]  # j - i
        return ((offset >= -before) & (offset <= after)).to(dtype) * value


def _channels_last(x: torch.Tensor) -> bool:
    """True where x is 4-d, stored NHWC, and not also plain contiguous (C=1 or H=W=1)."""
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _window_sum(v: torch.Tensor, w: torch.Tensor, groups: int, nhwc: bool) -> torch.Tensor:
    """sum_j w[i, j] * v_j over each group's maps (w: one group's block), in v's own layout."""
    n, c = v.shape[:2]
    if nhwc:
        vt = v.permute(0, 2, 3, 1)  # a contiguous (N, H, W, C) view
        return (vt.reshape(-1, groups, c // groups) @ w.T).view(vt.shape).permute(0, 3, 1, 2)
    return torch.matmul(w, v.view(n, groups, c // groups, -1)).view(v.shape)


def _no_autocast(device: torch.device):
    """A context with autocast off on `device`: the function computes in its own precision."""
    if torch.amp.is_autocast_available(device.type):
        return torch.autocast(device.type, enabled=False)
    return contextlib.nullcontext()


class _FusedCrossMapNorm(torch.autograd.Function):
    """x / (k + alpha_per_term * sum_{j=i-before}^{i+after} x_j^2)^beta, the window clipped
    to the channel range of map i's group, with a closed-form backward (see above)."""

    @staticmethod
    def forward(ctx, x, before: int, after: int, alpha_per_term: float, k: float, beta: float, groups: int):
        nhwc = _channels_last(x)
        x = x if nhwc else x.contiguous()
        acc = x.dtype if x.dtype in (torch.float32, torch.float64) else torch.float32  # bf16: fp32 sums
        with _no_autocast(x.device):
            w = _window_matrix(x.shape[1] // groups, before, after, alpha_per_term, acc, x.device)
            xa = x.to(acc)  # explicit casts: mixed-dtype elementwise ops are slow on a CPU
            denom = _window_sum(xa * xa, w, groups, nhwc).add_(k)  # paper §3.3: k + alpha * sum of squares
            scale = _neg_power(denom, beta)  # paper §3.3: denom^-beta
            out = xa * scale
            ratio = out / denom  # b / denom, for the backward pass
        ctx.save_for_backward(xa, scale, ratio)
        ctx.nhwc, ctx.groups, ctx.beta = nhwc, groups, beta
        ctx.window = (after, before, alpha_per_term)  # the transpose's band
        return out.to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        xa, scale, ratio = ctx.saved_tensors
        fmt = torch.channels_last if ctx.nhwc else torch.contiguous_format
        with _no_autocast(xa.device):
            w_t = _window_matrix(xa.shape[1] // ctx.groups, *ctx.window, xa.dtype, xa.device)  # alpha * W^T
            ga = grad.to(xa.dtype).contiguous(memory_format=fmt)
            back = _window_sum(ga * ratio, w_t, ctx.groups, ctx.nhwc)
            dx = (ga * scale).addcmul_(xa, back, value=-2.0 * ctx.beta)
        return dx.to(grad.dtype), None, None, None, None, None, None


def _neg_power(d: torch.Tensor, beta: float) -> torch.Tensor:
    """d^-beta for d > 0. beta = 0.75 (every convention's) as rsqrt(d) * sqrt(rsqrt(d)) and
    0.5 as rsqrt(d); others as exp(-beta * log d). On a CPU each is 2-4x faster than pow with
    a fractional exponent, and as exact (float64 to ~1e-15)."""
    if beta == 0:
        return torch.ones_like(d)
    if beta == 0.5:
        return d.rsqrt()
    if beta == 0.75:
        r = d.rsqrt()
        return r.mul_(r.sqrt())
    return d.log().mul_(-beta).exp_()


class SpatialResponseNorm(nn.Module):
    """cuda-convnet's same-map `rnorm`: b = a / (1 + (scale/size^2) * S)^power, where S is
    the sum of a^2 over the size x size window of the same map centred on (x, y), clipped
    at the borders (the divisor stays size^2 there). Odd sizes only. Not the paper's LRN."""

    def __init__(self, size: int = 3, scale: float = 5e-5, power: float = 0.75) -> None:
        super().__init__()
        if isinstance(size, bool) or not isinstance(size, int) or size < 1 or size % 2 == 0:
            raise ValueError(f"SpatialResponseNorm size must be a positive odd int, got {size!r}")
        self.size = size
        self.scale = float(scale)
        self.power = float(power)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # avg_pool2d divides by size^2 including the zero padding: exactly scale/size^2
        # times the clipped-window sum.
        mean_sq = F.avg_pool2d(x * x, self.size, stride=1, padding=self.size // 2, count_include_pad=True)
        return x / mean_sq.mul(self.scale).add(1.0).pow(self.power)

    def extra_repr(self) -> str:
        return (
            f"size={self.size}, scale={self.scale:g}, power={self.power:g}, "
            f"scale_per_term={self.scale / self.size**2:g}"
        )


class LocallyConnected2d(nn.Module):
    """cuda-convnet's `local` layer: a convolution whose weights and biases are untied,
    i.e. every output location has its own filter bank and its own bias per filter.

    `weight` has shape (out_h*out_w, out_channels, in_channels*k*k), locations in row-major
    order, the last axis in F.unfold's (channel, row, column) order, so a conv kernel
    `w.reshape(out_channels, -1)` is one location's weights. `bias` has shape
    (out_channels, out_h, out_w). Input must be square with side `in_size`.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        in_size: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_channels", in_channels, 1),
            ("out_channels", out_channels, 1),
            ("in_size", in_size, 1),
            ("kernel_size", kernel_size, 1),
            ("stride", stride, 1),
            ("padding", padding, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"LocallyConnected2d {name} must be an int >= {low}, got {value!r}")
        out_size = (in_size + 2 * padding - kernel_size) // stride + 1
        if out_size < 1:
            raise ValueError(
                f"LocallyConnected2d: kernel {kernel_size} does not fit input {in_size} with padding {padding}"
            )
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.in_size = in_size
        self.kernel_size = kernel_size
        self.stride = stride
        self.padding = padding
        self.out_size = out_size
        locations = out_size * out_size
        self.weight = nn.Parameter(torch.empty(locations, out_channels, in_channels * kernel_size * kernel_size))
        self.bias = nn.Parameter(torch.empty(out_channels, out_size, out_size))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.01) weights and zero biases; models re-initialise as their config says."""
        nn.init.normal_(self.weight, mean=0.0, std=0.01)
        nn.init.zeros_(self.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.in_channels or x.shape[2:] != (self.in_size, self.in_size):
            raise ValueError(
                f"LocallyConnected2d expects (N, {self.in_channels}, {self.in_size}, "
                f"{self.in_size}) input, got {tuple(x.shape)}"
            )
        cols = F.unfold(x, self.kernel_size, padding=self.padding, stride=self.stride)
        out = torch.einsum("ncl,loc->nol", cols, self.weight)
        return out.reshape(x.shape[0], self.out_channels, self.out_size, self.out_size) + self.bias

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}, {self.out_channels}, in_size={self.in_size}, "
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"out_size={self.out_size}"
        )
