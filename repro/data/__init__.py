"""Data for `repro`: datasets (`load_dataset`) and the batches a trainer consumes (`Loader`).

Pixel scale (paper §2, cuda-convnet): images are kept as uint8 0..255 and become float32
in the same 0..255 scale with the training set's per-pixel MEAN IMAGE subtracted. Nothing
else: no division by a standard deviation or by 255 ("we trained our network on the
(centered) raw RGB values of the pixels"). The paper's N(0, 0.01) initialisation is
tuned to this scale.

Datasets (`load_dataset(cfg, num_classes, input_size)`):

* `cifar10`: `repro.data.cifar10` (safe unpickling, validated files).
* `synthetic`: `repro.data.synthetic`, generated (never a real result).
* `imagenet` / `folder`: `repro.data.folders` (paper §2 preprocessing to image_size,
  256 by default); their labelled `val/` folder is the test split.

Four splits, each with one job (`../shared/reference/protocol.md` §1):

* `holdout`: `holdout` N images taken from the training set, the first N of one fixed
  shuffled order of its images (`selection_order`: the same for every run, seed and
  subset). Everything adaptive reads it: the plateau schedule, lr selection, best epochs.
  None when `holdout` is 0 (then nothing may adapt: `repro.config` refuses it).
* `train`: the other training images, in file order; `subset` N keeps the first N of them.
* `train_eval`: the first `train_eval` images of `train`, evaluated in eval mode (no
  dropout, no augmentation): the training error the paper plots.
* `test`: the test images, evaluated once, at the end of a run.

The mean image and the RGB PCA are computed over the training images actually used
(after subset and holdout), so no holdout or test image leaks into them.

Batches (`Loader`): every random choice of an epoch is a pure function of (seed, epoch).
At the start of an epoch one CPU `torch.Generator`, seeded from (seed, epoch), draws in
this order: the permutation of the split; for every *position* of the permutation a crop
offset (top, left) and a flip bit; and, when `pca_noise > 0`, three N(0, 1) alphas
(scaled by pca_noise). Batch b of rank r takes positions r, r + world, r + 2*world, ...
(its b-th slice), so

* killing and resuming at any epoch (or batch: `epoch(e, start=b)`) reproduces the
  exact batches;
* ranks see disjoint shares of one permutation, and the union over ranks of their b-th
  batches is exactly batch b of a single process with world x the batch size, with the
  same crops, flips and colour noise per image;
* switching flip or PCA noise on or off does not change the crops.

Training batches: crop (`cfg.crop`, or the whole image) and flip (`cfg.flip`) per image
(paper §4.1), subtract the mean image cropped and flipped *with the same offsets* (equal
to subtracting the full-size mean before cropping, which is what the paper's per-pixel
mean means; cuda-convnet2 instead subtracts the mean's centre patch from every crop), and
add PCA colour noise (paper §4.1) with magnitudes alpha * sqrt(eigenvalue), as
cuda-convnet2 does (see `repro.data.augment` for why not alpha * eigenvalue).
Evaluation batches: the split in order, mean subtracted, centre crop to `cfg.crop` (or
the whole image); with `test_views == 10` a (10, B, 3, h, w) tensor of the four corners,
the centre and their mirrors (paper §4.1; the trainer averages the softmax over dim 0).

In-memory splits (cifar10, synthetic) are moved to the device once, as uint8 (airbench
style), and all indexing, cropping, flipping and noise run there in batched ops. Folder
datasets decode in a `torch.utils.data.DataLoader` (`workers` processes, pinned memory on
CUDA) that yields uint8 batches; the same batched augmentation then runs on the device.
All randoms are drawn on the CPU, so results are bit-identical on every device.

The last, incomplete batch of an epoch is kept (training and evaluation alike), so every
image is used once per epoch; for training with `world > 1`, the n % world images at the
end of each epoch's permutation are dropped so that all ranks run the same number of
steps (different images each epoch). Evaluation shards are strided and not truncated, so
ranks may differ by one image (and then by one batch): reduce sums once after the loop.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from repro.config import DATASETS, DataConfig
from repro.data import augment
from repro.errors import ConfigError, DataError

__all__ = ["Split", "Dataset", "load_dataset", "Loader"]

PAPER_IMAGE_SIZE = 256  # paper §2: shorter side rescaled to 256, central 256x256 patch


@dataclass
class Split:
    """An in-memory split: uint8 images (N,3,H,W) on the CPU and int64 labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class Dataset:
    name: str  # "cifar10" | "synthetic" | "imagenet" | "folder"
    num_classes: int
    train: Split | torch.utils.data.Dataset
    holdout: Split | torch.utils.data.Dataset | None  # cfg.holdout training images; None if 0
    test: Split | torch.utils.data.Dataset
    train_eval: Split | torch.utils.data.Dataset  # the first cfg.train_eval images of train
    mean: torch.Tensor  # float32 (3,H,W): per-pixel mean of the used training images, 0..255 scale
    eigvals: torch.Tensor  # float32 (3,): RGB covariance eigenvalues, decreasing, 0..255 scale
    eigvecs: torch.Tensor  # float32 (3,3): the matching eigenvectors, as columns
    identity: dict  # name, synthetic, train/holdout/test/train_eval_size, image_size, sha256, source

    @property
    def image_size(self) -> int:
        return int(self.mean.shape[-1])


SPLITS = ("train", "train_eval", "holdout", "test")


# ----------------------------------------------------------------------------- load_dataset


def _validate(cfg: DataConfig) -> None:
    if cfg.dataset not in DATASETS:
        raise ConfigError(f"data.dataset={cfg.dataset!r} is not valid; choose from {', '.join(DATASETS)}")
    if cfg.subset is not None and cfg.subset <= 0:
        raise ConfigError(f"data.subset={cfg.subset} must be positive (or none for all images)")
    if cfg.holdout < 0:
        raise ConfigError(f"data.holdout={cfg.holdout} must be >= 0")
    if cfg.train_eval < 1:
        raise ConfigError(f"data.train_eval={cfg.train_eval} must be positive")
    if cfg.image_size is not None and cfg.image_size <= 0:
        raise ConfigError(f"data.image_size={cfg.image_size} must be positive (or none)")
    if cfg.crop is not None and cfg.crop <= 0:
        raise ConfigError(f"data.crop={cfg.crop} must be positive (or none)")
    if cfg.pca_noise < 0:
        raise ConfigError(f"data.pca_noise={cfg.pca_noise} must be >= 0")
    if cfg.test_views not in (1, 10):
        raise ConfigError(f"data.test_views={cfg.test_views} is not valid; choose 1 (centre) or 10 (paper §4.1)")


def _check_classes(name: str, found: int, num_classes: int) -> None:
    if found != num_classes:
        raise ConfigError(
            f"{name} has {found} classes but the model has num_classes={num_classes}; set num_classes={found}"
        )


def selection_order(n: int) -> torch.Tensor:
    """The one fixed shuffled order of n training images from which the holdout is taken."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(0))


def _select(n: int, cfg: DataConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training and holdout images (module doc): the holdout is the first
    `holdout` of `selection_order(n)`; training is the rest in file order, cut to `subset`."""
    if cfg.holdout >= n:
        raise ConfigError(f"data.holdout={cfg.holdout} leaves no training images (of {n})")
    order = selection_order(n)
    hold, rest = order[: cfg.holdout], order[cfg.holdout :].sort().values
    if cfg.subset is not None:
        if cfg.subset > len(rest):
            raise ConfigError(f"data.subset={cfg.subset} exceeds the {len(rest)} training images left "
                              f"after data.holdout={cfg.holdout}")
        rest = rest[: cfg.subset]
    return rest, hold.sort().values


def _resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (N,3,h,w) -> uint8 (N,3,size,size), bilinear with antialiasing, in chunks."""
    if images.shape[-1] == size and images.shape[-2] == size:
        return images
    out = torch.empty(len(images), 3, size, size, dtype=torch.uint8)
    for i in range(0, len(images), 1024):
        x = images[i : i + 1024].float()
        y = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        out[i : i + 1024] = y.round_().clamp_(0, 255).to(torch.uint8)
    return out


def _sha256(*tensors: torch.Tensor) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.contiguous().numpy().data)
    return h.hexdigest()


def _mean_image(images: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
    total = torch.zeros(images.shape[1:], dtype=torch.float64)
    for i in range(0, len(images), chunk):
        total += images[i : i + chunk].to(torch.float64).sum(0)
    return (total / len(images)).to(torch.float32)  # paper §2: per-pixel training-set mean


def _in_memory(name, num_classes, tx, ty, ex, ey, cfg, source, synthetic) -> Dataset:
    train_idx, hold_idx = _select(len(tx), cfg)
    train = Split(tx[train_idx], ty[train_idx])
    test = Split(ex, ey)
    holdout = Split(tx[hold_idx], ty[hold_idx]) if cfg.holdout else None
    train_eval = Split(train.images[: cfg.train_eval], train.labels[: cfg.train_eval])
    eigvals, eigvecs = augment.rgb_pca(train.images)  # paper §4.1: PCA over the training set's pixels
    parts = [train.images, train.labels, test.images, test.labels]
    if holdout is not None:
        parts += [holdout.images, holdout.labels]
    identity = _identity(name, synthetic, train, holdout, test, train_eval, int(tx.shape[-1]), _sha256(*parts), source)
    return Dataset(name, num_classes, train, holdout, test, train_eval, _mean_image(train.images), eigvals, eigvecs,
                   identity)


def _identity(name, synthetic, train, holdout, test, train_eval, image_size, sha, source) -> dict:
    return {
        "name": name,
        "synthetic": synthetic,
        "train_size": len(train),
        "holdout_size": 0 if holdout is None else len(holdout),
        "test_size": len(test),
        "train_eval_size": len(train_eval),
        "image_size": image_size,
        "sha256": sha,
        "source": source,
    }


def _folders(name: str, cfg: DataConfig, num_classes: int) -> Dataset:
    from repro.data import folders

    if cfg.data_dir is None:
        raise ConfigError(f"data.dataset={name} needs --data-dir D (a folder with train/<class>/ and val/)")
    size = cfg.image_size or PAPER_IMAGE_SIZE
    found = folders.scan(cfg.data_dir, size)
    _check_classes(f"{found.root}", len(found.classes), num_classes)
    n = len(found.train)
    whole = cfg.subset is None and cfg.holdout == 0
    train_idx, hold_idx = _select(n, cfg)
    train = found.train if whole else found.train.select(train_idx)
    holdout = found.train.select(hold_idx) if cfg.holdout else None
    train_eval = train.select(torch.arange(min(cfg.train_eval, len(train))))
    suffix = "" if whole else f"-{len(train_idx)}of{n}-{hashlib.sha256(train_idx.numpy().tobytes()).hexdigest()[:8]}"
    stats = folders.load_or_compute_stats(train, suffix)
    h = hashlib.sha256()
    for part in (train, found.test) if holdout is None else (train, found.test, holdout):
        h.update(part.fingerprint().encode())
    identity = _identity(name, False, train, holdout, found.test, train_eval, size, h.hexdigest(),
                         str(Path(found.root).resolve()))
    return Dataset(name, num_classes, train, holdout, found.test, train_eval, stats["mean"], stats["eigvals"],
                   stats["eigvecs"], identity)


def load_dataset(cfg: DataConfig, num_classes: int, input_size: int) -> Dataset:
    """The dataset `cfg` names, with its splits, mean image, RGB PCA and identity.

    `num_classes` and `input_size` are the model's: the data must have that many classes
    (synthetic: at most that many); `cfg.crop`, when set, must equal `input_size`, and the
    stored images must be at least that large. With `cfg.crop` None the caller crops to
    `input_size` by passing `replace(cfg, crop=input_size)` to `Loader` (the trainer does);
    a Loader whose cfg has no crop yields whole images."""
    _validate(cfg)
    if cfg.dataset == "cifar10":
        from repro.data import cifar10

        root = cifar10.find_root(cfg.data_dir)
        _check_classes("cifar10", 10, num_classes)
        tx, ty, ex, ey = cifar10.load_cifar10(root)
        size = cfg.image_size or 32
        tx, ex = _resize(tx, size), _resize(ex, size)
        ds = _in_memory("cifar10", num_classes, tx, ty, ex, ey, cfg, str(root.resolve()), False)
    elif cfg.dataset == "synthetic":
        from repro.data.synthetic import make_synthetic

        size = cfg.image_size or input_size
        classes = cfg.synthetic_classes or num_classes
        if classes > num_classes or classes < 1:
            raise ConfigError(f"data.synthetic_classes={classes} must lie in 1..num_classes={num_classes}")
        if cfg.synthetic_train < 1 or cfg.synthetic_test < 1:
            raise ConfigError("data.synthetic_train and data.synthetic_test must be positive")
        tx, ty, ex, ey = make_synthetic(cfg.synthetic_train, cfg.synthetic_test, classes, size, seed=0)
        ds = _in_memory("synthetic", num_classes, tx, ty, ex, ey, cfg, "generated", True)
    else:
        ds = _folders(cfg.dataset, cfg, num_classes)
    s = ds.image_size
    if cfg.crop is not None and cfg.crop > s:
        raise ConfigError(f"data.crop={cfg.crop} is larger than the {s}x{s} images")
    if cfg.crop is not None and cfg.crop != input_size:
        raise ConfigError(f"data.crop={cfg.crop} but the model expects input_size={input_size}")
    if input_size > s:
        raise ConfigError(
            f"the images are {s}x{s}, smaller than the model's input_size={input_size}; set data.image_size"
        )
    return ds


# ----------------------------------------------------------------------------- Loader


def _epoch_seed(seed: int, epoch: int) -> int:
    digest = hashlib.sha256(f"repro-loader:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _one_line_data_error(e: DataError) -> DataError:
    """DataLoader workers re-raise our DataError with a traceback in the message; keep its last line."""
    text = str(e)
    if "\n" not in text:
        return e
    last = [ln for ln in text.splitlines() if ln.strip()][-1]
    return DataError(last.split("DataError: ", 1)[-1].strip())


class Loader:
    """Iterates one split of `ds` as ready-to-use float32 batches on `device` (module doc)."""

    def __init__(
        self,
        ds: Dataset,
        split: str,
        batch_size: int,
        device: torch.device | str,
        train: bool,
        cfg: DataConfig,
        seed: int,
        shard: tuple[int, int] = (0, 1),
        workers: int = 0,
        views: int | None = None,
    ):
        if split not in SPLITS:
            raise ConfigError(f"split {split!r} is not one of {', '.join(SPLITS)}")
        if batch_size < 1:
            raise ConfigError(f"batch_size={batch_size} must be positive")
        rank, world = shard
        if world < 1 or not 0 <= rank < world:
            raise ConfigError(f"shard={shard} is not (rank, world) with 0 <= rank < world")
        self.ds, self.split, self.batch_size, self.train = ds, split, batch_size, train
        self.device = torch.device(device)
        self.seed, self.rank, self.world, self.workers = seed, rank, world, workers
        self.data = getattr(ds, split)
        if self.data is None:
            raise ConfigError(f"this dataset has no {split} split (data.{split}=0)")
        self.n = len(self.data)
        s = ds.image_size
        if cfg.crop is not None and cfg.crop > s:
            raise ConfigError(f"data.crop={cfg.crop} is larger than the {s}x{s} images")
        self.views = cfg.test_views if views is None else views
        if self.views not in (1, 10):
            raise ConfigError(f"views={self.views} is not valid; choose 1 (centre) or 10 (paper §4.1)")
        if not train and self.views == 10 and cfg.crop is None:
            raise ConfigError("10 test views need data.crop")
        self.crop = cfg.crop
        self.flip = bool(cfg.flip)
        self.pca_std = float(cfg.pca_noise)
        self.mean = ds.mean.to(self.device, torch.float32)
        # cuda-convnet2 convdata.py: alphas scale the components' standard deviations (see augment)
        self.pca_scale = ds.eigvals.to(torch.float32).clamp_min(0).sqrt()
        self.eigvecs = ds.eigvecs.to(torch.float32)
        self.in_memory = isinstance(self.data, Split)
        if self.in_memory:  # airbench style: the whole split lives on the device, as uint8
            self.images = self.data.images.to(self.device)
            self.labels = self.data.labels.to(self.device)
        if train:
            self.per_rank = self.n // world  # equal steps on every rank
        else:
            self.per_rank = len(range(rank, self.n, world))
        if self.per_rank == 0:
            raise DataError(f"the {split} split has {self.n} images, too few for {world} ranks")

    def __len__(self) -> int:
        """Batches per epoch on this rank; the last, incomplete batch is kept."""
        return math.ceil(self.per_rank / self.batch_size)

    @property
    def num_samples(self) -> int:
        """Images per epoch on this rank."""
        return self.per_rank

    # -- the epoch's plan: which images, in which order, with which randoms

    def _plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """(positions, indices, draws): this rank's positions in the epoch's order, the image
        index at each position, and per-position randoms (indexed by position)."""
        if not self.train:  # evaluation: the split in order, strided over ranks
            return torch.arange(self.rank, self.n, self.world), torch.arange(self.n), {}
        g = torch.Generator().manual_seed(_epoch_seed(self.seed, epoch))
        perm = torch.randperm(self.n, generator=g)
        s = self.ds.image_size
        tops, lefts, flips = augment.draw_crop_flip(self.n, s, s, self.crop or s, g)  # paper §4.1
        draws = {"tops": tops, "lefts": lefts, "flips": flips}
        if self.pca_std > 0:
            draws["alphas"] = augment.draw_pca_alphas(self.n, 1.0, g)  # times pca_std when used
        usable = (self.n // self.world) * self.world
        positions = torch.arange(self.rank, usable, self.world)
        return positions, perm, draws

    def _train_batch(self, x: torch.Tensor, pos: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
        b, s = len(pos), self.ds.image_size
        size = self.crop or s
        if self.crop is not None or self.flip:
            tops, lefts = draws["tops"][pos], draws["lefts"][pos]
            flips = draws["flips"][pos] if self.flip else None  # paper §4.1: horizontal reflections
            crop = augment.crop_flip(x, tops, lefts, flips, size)  # paper §4.1: random crops
            mean = augment.crop_flip(self.mean.expand(b, -1, -1, -1), tops, lefts, flips, size)
            out = crop.float() - mean  # paper §2: subtract the per-pixel mean (same offsets)
        else:
            out = x.float() - self.mean  # paper §2
        if self.pca_std > 0:
            alphas = draws["alphas"][pos] * self.pca_std  # paper §4.1: alpha ~ N(0, 0.1)
            out = augment.add_rgb_offsets(out, augment.pca_offsets(alphas, self.pca_scale, self.eigvecs))
        return out

    def _eval_batch(self, x: torch.Tensor) -> torch.Tensor:
        out = x.float() - self.mean  # paper §2
        if self.views == 10:
            return augment.ten_views(out, self.crop)  # paper §4.1: 5 patches + reflections
        if self.crop is not None:
            return augment.center_crop(out, self.crop).contiguous()
        return out

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield (x float32 on device, y int64 on device) for every batch of `epoch` from
        batch `start` on. Training x is (B,3,h,w); evaluation x is (B,3,h,w), or (10,B,3,h,w)
        with 10 test views. The same (seed, epoch) always gives the same batches."""
        positions, order, draws = self._plan(epoch)
        chunks = [
            positions[i : i + self.batch_size] for i in range(start * self.batch_size, len(positions), self.batch_size)
        ]
        if self.in_memory:
            for pos in chunks:
                idx = order[pos].to(self.device)
                x, y = self.images[idx], self.labels[idx]
                yield (self._train_batch(x, pos, draws) if self.train else self._eval_batch(x)), y
            return
        loader = torch.utils.data.DataLoader(
            self.data,
            batch_sampler=[order[pos].tolist() for pos in chunks],
            num_workers=self.workers,
            pin_memory=self.device.type == "cuda",
            prefetch_factor=4 if self.workers > 0 else None,
        )
        try:
            for (x, y), pos in zip(loader, chunks, strict=True):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                yield (self._train_batch(x, pos, draws) if self.train else self._eval_batch(x)), y
        except DataError as e:
            raise _one_line_data_error(e) from None
