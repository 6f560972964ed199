"""Batched data augmentation (paper §4.1) and the RGB PCA it needs.

What the paper does to a training image (§4.1), and what these functions compute:

* "Extracting random 224x224 patches (and their horizontal reflections) from the
  256x256 images": `random_crop_flip`. Every image of a batch gets its own crop offset,
  uniform over all (H - size + 1) x (W - size + 1) valid positions, and is mirrored with
  probability 1/2. cuda-convnet's CIFAR provider does the same (`convdata.py`,
  `nr.randint(0, border*2 + 1)` per case, flip if `nr.randint(2) == 0`).
* Test time: "extracting five 224x224 patches (the four corner patches and the center
  patch) as well as their horizontal reflections (hence ten patches in all), and
  averaging the predictions made by the network's softmax layer on the ten patches":
  `ten_views`; the single-view protocol is `center_crop`.
* "Altering the intensities of the RGB channels": `pca_noise` adds to every pixel of
  image b the same RGB vector  [p1 p2 p3] [a1*l1, a2*l2, a3*l3]^T  with a_i ~ N(0, std)
  drawn once per image each time it is used; p_i, l_i are the eigenvectors and the
  numbers multiplied by a_i (see "Units" below). `rgb_pca` gives the eigen-decomposition
  of the 3x3 RGB covariance over every pixel of the training set.

Units of the PCA noise (a choice the paper leaves open). The paper multiplies a_i by the
*eigenvalue* l_i, which only makes sense in some pixel unit: on CIFAR-10 in the 0..255
scale the covariance eigenvalues are about (11173, 815, 172), so a_i * l_i with
std 0.1 moves pixels by about 1100 levels, which destroys the image. Krizhevsky's own
code, cuda-convnet2 `convdata.py` (`ColorNoiseMakerThread`), multiplies a_i by the
components' *standard deviations* (`color_pca[0]`, named `pca_stdevs`), which is
independent of the pixel unit (about 10 levels on CIFAR-10 for std 0.1). `pca_noise`
implements the formula with whatever per-component magnitudes it is given;
`repro.data.Loader` passes `sqrt(eigvals)`, following cuda-convnet2. (cuda-convnet2 also
rescales the noisy batch by 1 / (1 + std); the paper does not say so and neither do we.)

Design rules that make these usable for exact reproduction:

* Batched: no Python loop over images. Crops and flips are one advanced-indexing gather,
  run on whatever device the tensor is on (airbench style).
* Randomness is drawn on the CPU from an explicit `torch.Generator` and only then moved
  to the tensor's device, so a (generator state, batch) pair gives bit-identical results
  on every device. The draw functions (`draw_crop_flip`, `draw_pca_alphas`) are separate
  from the apply functions (`crop_flip`, `add_rgb_offsets`), so a loader can draw a whole
  epoch's randomness up front (see `repro.data.Loader`).
* `_reference_*` functions do the same thing one image at a time, the obvious way; the
  tests use them to prove the batched versions right.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = [
    "draw_crop_flip",
    "crop_flip",
    "random_crop_flip",
    "center_crop",
    "ten_views",
    "draw_pca_alphas",
    "pca_offsets",
    "add_rgb_offsets",
    "pca_noise",
    "rgb_pca",
    "pca_from_moments",
    "rgb_moments",
]


# ----------------------------------------------------------------------------- crops


def draw_crop_flip(
    n: int, height: int, width: int, size: int, generator: torch.Generator | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Draw `n` crop offsets and flip decisions on the CPU, in this order: tops, lefts, flips.

    Offsets are uniform over every valid position (0 .. H - size inclusive; paper §4.1);
    flips are True with probability 1/2 (paper §4.1). All three are always drawn, so
    turning flipping off does not change the crops.
    """
    if not 0 < size <= min(height, width):
        raise ValueError(f"crop size {size} does not fit in {height}x{width} images")
    tops = torch.randint(0, height - size + 1, (n,), generator=generator)  # paper §4.1: any position
    lefts = torch.randint(0, width - size + 1, (n,), generator=generator)
    flips = torch.randint(0, 2, (n,), generator=generator).bool()  # paper §4.1: reflections, p = 1/2
    return tops, lefts, flips


def crop_flip(x: Tensor, tops: Tensor, lefts: Tensor, flips: Tensor | None, size: int) -> Tensor:
    """Crop image b of `x` (B,C,H,W) to size x size at (tops[b], lefts[b]), mirrored
    left-right where flips[b]. One gather; works on any dtype, device and on expanded
    (stride-0) inputs. The offsets may live on any device."""
    b, c, h, w = x.shape
    dev = x.device
    if tops.shape != (b,) or lefts.shape != (b,):
        raise ValueError(f"need {b} offsets, got {tuple(tops.shape)} and {tuple(lefts.shape)}")
    # checked where the offsets live (the CPU in the loaders), so no device sync
    if bool((tops < 0).any() | (tops > h - size).any() | (lefts < 0).any() | (lefts > w - size).any()):
        raise ValueError(f"crop offsets out of range for {size}x{size} crops of {h}x{w} images")
    tops, lefts = tops.to(dev), lefts.to(dev)
    ar = torch.arange(size, device=dev)
    rows = tops[:, None] + ar  # (B, S)
    cols = lefts[:, None] + ar  # (B, S)
    if flips is not None:
        flips = flips.to(dev)
        cols = torch.where(flips[:, None], lefts[:, None] + (size - 1 - ar), cols)
    bi = torch.arange(b, device=dev)[:, None, None, None]
    ci = torch.arange(c, device=dev)[None, :, None, None]
    return x[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]


def random_crop_flip(x: Tensor, size: int | None, flip: bool, generator: torch.Generator | None) -> Tensor:
    """Random size x size crop of every image of `x` (B,C,H,W), and a left-right mirror with
    p = 1/2 when `flip` (paper §4.1). `size=None` keeps the whole image (flip only).
    Randoms come from `generator` on the CPU (see `draw_crop_flip`), so the result is the
    same on every device."""
    b, _, h, w = x.shape
    if size is None and h != w:
        raise ValueError("size=None needs square images")
    s = h if size is None else size
    tops, lefts, flips = draw_crop_flip(b, h, w, s, generator)
    return crop_flip(x, tops, lefts, flips if flip else None, s)


def center_crop(x: Tensor, size: int) -> Tensor:
    """The central size x size patch of every image of `x` (..., H, W); offsets (H-size)//2
    and (W-size)//2, as cuda-convnet's `border_size` (paper §4.1, single-view testing)."""
    h, w = x.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size {size} does not fit in {h}x{w} images")
    top, left = (h - size) // 2, (w - size) // 2
    return x[..., top : top + size, left : left + size]


def ten_views(x: Tensor, size: int) -> Tensor:
    """(10, B, C, size, size): the top-left, top-right, bottom-left, bottom-right and centre
    patches of `x` (B,C,H,W), then the left-right mirrors of those five in the same order
    (paper §4.1: "the four corner patches and the center patch as well as their horizontal
    reflections"; the net's softmax is averaged over dim 0, footnote 5)."""
    h, w = x.shape[-2:]
    if not 0 < size <= min(h, w):
        raise ValueError(f"crop size {size} does not fit in {h}x{w} images")
    s = size
    five = [
        x[..., :s, :s],  # top-left
        x[..., :s, w - s :],  # top-right
        x[..., h - s :, :s],  # bottom-left
        x[..., h - s :, w - s :],  # bottom-right
        center_crop(x, s),  # centre
    ]
    views = torch.stack(five)
    return torch.cat([views, views.flip(-1)])  # paper §4.1: plus their horizontal reflections


# ----------------------------------------------------------------------------- PCA colour


def draw_pca_alphas(n: int, std: float, generator: torch.Generator | None) -> Tensor:
    """(n, 3) float32 alphas ~ N(0, std), drawn on the CPU (paper §4.1: std 0.1)."""
    return torch.randn(n, 3, generator=generator) * std  # paper §4.1: alpha_i ~ N(0, 0.1)


def pca_offsets(alphas: Tensor, eigvals: Tensor, eigvecs: Tensor) -> Tensor:
    """(B, 3) RGB offsets  [p1 p2 p3] [a1 l1, a2 l2, a3 l3]^T  for each row of `alphas`
    (paper §4.1). `eigvecs` holds the eigenvectors as columns. Computed on the device of
    `alphas` (the CPU in the loaders, so the offsets are the same on every device)."""
    a = alphas.to(torch.float32)
    lam = eigvals.to(device=a.device, dtype=torch.float32)
    vecs = eigvecs.to(device=a.device, dtype=torch.float32)
    return (a * lam) @ vecs.T  # paper §4.1: row b = sum_i p_i * (alpha_bi * lambda_i)


def add_rgb_offsets(x: Tensor, offsets: Tensor) -> Tensor:
    """x (B,3,H,W) float + offsets (B,3): the same RGB vector added to every pixel of an image."""
    return x + offsets.to(device=x.device, dtype=x.dtype)[:, :, None, None]


def pca_noise(x: Tensor, eigvals: Tensor, eigvecs: Tensor, std: float, generator: torch.Generator | None) -> Tensor:
    """Paper §4.1 "fancy PCA": add to every pixel of image b the RGB vector
    eigvecs @ (alpha_b * eigvals), alpha_b ~ N(0, std) drawn per image per call.
    `x` is float (B,3,H,W) on any device; returns a new tensor. See the module docstring
    for what to pass as `eigvals` (the loader passes the components' standard deviations)."""
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"pca_noise needs (B,3,H,W) images, got {tuple(x.shape)}")
    alphas = draw_pca_alphas(x.shape[0], std, generator)
    return add_rgb_offsets(x, pca_offsets(alphas, eigvals, eigvecs))


def pca_from_moments(count: int, total: Tensor, outer: Tensor) -> tuple[Tensor, Tensor]:
    """Eigen-decomposition of an RGB covariance given moments over `count` pixels:
    total = sum of RGB vectors (3,), outer = sum of their outer products (3,3), float64.
    Returns (eigvals (3,), eigvecs (3,3) with eigenvectors as columns) as float32, sorted
    by decreasing eigenvalue; each eigenvector's sign is fixed so its entries sum to >= 0
    (any sign is equally valid; this one makes the result reproducible)."""
    if count < 2:
        raise ValueError("need at least two pixels for a covariance")
    mean = total.to(torch.float64) / count
    cov = (outer.to(torch.float64) - count * torch.outer(mean, mean)) / (count - 1)
    vals, vecs = torch.linalg.eigh(cov)  # ascending
    vals, vecs = vals.flip(0), vecs.flip(1)
    signs = torch.where(vecs.sum(0) < 0, -1.0, 1.0).to(vecs.dtype)
    return vals.clamp_min(0).to(torch.float32), (vecs * signs).to(torch.float32)


def rgb_moments(images: Tensor, chunk: int = 4096) -> tuple[int, Tensor, Tensor]:
    """(pixel count, sum (3,), sum of outer products (3,3)) over every pixel of uint8 (or
    float) images (N,3,H,W), in float64, `chunk` images at a time."""
    n, c, h, w = images.shape
    if c != 3:
        raise ValueError(f"rgb_pca needs 3-channel images, got {c}")
    total = torch.zeros(3, dtype=torch.float64)
    outer = torch.zeros(3, 3, dtype=torch.float64)
    for i in range(0, n, chunk):
        px = images[i : i + chunk].to(torch.float64).permute(1, 0, 2, 3).reshape(3, -1)
        total += px.sum(1).cpu()
        outer += (px @ px.T).cpu()
    return n * h * w, total, outer


def rgb_pca(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Eigenvalues (3,) and eigenvectors (3,3, columns) of the 3x3 covariance of RGB values
    over every pixel of `images` (N,3,H,W), in their own scale (0..255 for uint8)
    (paper §4.1: "PCA on the set of RGB pixel values throughout the ImageNet training set")."""
    return pca_from_moments(*rgb_moments(images, chunk))


# ----------------------------------------------------------------------------- references
# One image at a time, written the obvious way; the tests check the batched code against these.


def _reference_crop_flip(img: Tensor, top: int, left: int, flip: bool, size: int) -> Tensor:
    out = img[:, top : top + size, left : left + size]
    return out.flip(-1) if flip else out


def _reference_ten_views(img: Tensor, size: int) -> list[Tensor]:
    c, h, w = img.shape
    starts = [(0, 0), (0, w - size), (h - size, 0), (h - size, w - size), ((h - size) // 2, (w - size) // 2)]
    five = [img[:, top : top + size, left : left + size] for top, left in starts]
    return five + [v.flip(-1) for v in five]


def _reference_pca_noise(img: Tensor, alpha: Tensor, eigvals: Tensor, eigvecs: Tensor) -> Tensor:
    out = img.clone()
    for i in range(3):  # paper §4.1: I_xy += [p1 p2 p3][a1 l1, a2 l2, a3 l3]^T
        for ch in range(3):
            out[ch] += float(eigvecs[ch, i]) * float(alpha[i]) * float(eigvals[i])
    return out
