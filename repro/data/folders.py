"""Image-folder datasets: ImageNet (ILSVRC-2012), Imagenette, Tiny ImageNet, or any
`train/<class>/...` tree, decoded and preprocessed as the paper does (§2).

Layouts understood (under one root):

* training images: `train/<class>/**/<image>` (searched recursively, so Tiny ImageNet's
  `train/<wnid>/images/*.JPEG` works). Classes are the sorted folder names that hold at
  least one image; class index = position in that sorted list.
* validation images, the first of these that is present:
  - `val/<class>/**/<image>` (ImageNet after the usual `valprep.sh`, Imagenette);
  - Tiny ImageNet: `val/images/*` with `val/val_annotations.txt` (tab-separated
    filename, wnid, box...);
  - ImageNet flat: `val/*.JPEG` plus the devkit's `ILSVRC2012_validation_ground_truth.txt`
    (one 1-based class id per line, for the val files in sorted name order) at the root,
    `devkit/`, `devkit/data/` or `ILSVRC2012_devkit_t12/data/`. The ids are ILSVRC2012_IDs;
    if the devkit's `meta.mat` sits beside the ground-truth file it maps them to wnids
    (needs scipy). Without it we ASSUME id k is the k-th wnid in sorted order. That holds
    for trees written that way (the tests'), NOT for the official devkit, whose id order
    differs from sorted wnids: keep `meta.mat` next to the ground truth for real ImageNet.
* test images: `test/<class>/**/<image>` if such a labelled tree exists; otherwise the
  validation set is also the test set (ImageNet's test labels are not public; the paper,
  Table 2, uses val and test interchangeably). Unlabelled trees such as Tiny ImageNet's
  `test/images/` are ignored.

Preprocessing (paper §2): decode to RGB (`torchvision.io.decode_image`), rescale so the
shorter side is `image_size` (256 in the paper) with antialiasing, take the central
image_size x image_size patch; the result is a uint8 3 x S x S tensor. Everything random
(crops, flips, colour noise) happens later, batched, in `repro.data.Loader`.

Statistics: the per-pixel mean image and the RGB PCA (paper §2 and §4.1) are computed in
one pass over the training images actually used, then cached as
`repro-stats-<size>[-<selection>].pt` in the data root if it is writable, else in the
per-user cache (`<cache>/stats/<hash of the root>/`). The file records a key (a hash of
the used training files' names and sizes); a stale or unreadable file is recomputed.
It is read with `torch.load(weights_only=True)`, so it cannot run code.

`subset` and `holdout` pick from the training list in a fixed shuffled order (seed 0,
independent of the run's seed), because the sorted list is grouped by class and its
"first N" would be a few classes only.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from repro.data import augment
from repro.data.cifar10 import cache_dir
from repro.errors import DataError, one_line
from repro.files import atomic

IMAGE_EXTS = (".jpeg", ".jpg", ".png", ".webp")
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
GT_DIRS = (".", "devkit", "devkit/data", "ILSVRC2012_devkit_t12/data")


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTS)


def _images_under(folder: Path) -> list[Path]:
    """Every image file under `folder`, recursively, sorted by path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found.extend(Path(dirpath) / f for f in sorted(filenames) if _is_image(f))
    return found


def preprocess(img: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 (3,h,w) -> uint8 (3,size,size): shorter side to `size` (antialiased), then the
    central size x size patch (paper §2)."""
    from torchvision.transforms.v2 import functional as TF

    img = TF.resize(img, [size], antialias=True)  # paper §2: shorter side rescaled to 256
    return augment.center_crop(img, size).contiguous()  # paper §2: central 256x256 patch, offsets (h-s)//2


def _decoder():
    """torchvision.io.decode_image (RGB mode); PIL if a future torchvision drops it."""
    try:
        with warnings.catch_warnings():  # torchvision 0.29 deprecates its image IO in favour of TorchCodec
            warnings.simplefilter("ignore", DeprecationWarning)
            from torchvision.io import ImageReadMode, decode_image
        return lambda path: decode_image(path, mode=ImageReadMode.RGB)
    except ImportError:  # pragma: no cover
        import numpy as np
        from PIL import Image

        def pil(path: str) -> torch.Tensor:
            with Image.open(path) as im:
                return torch.from_numpy(np.asarray(im.convert("RGB")).copy()).permute(2, 0, 1)

        return pil


_DECODE = None


def decode(path: str | os.PathLike, size: int) -> torch.Tensor:
    """Read, decode to RGB and preprocess one image; a one-line DataError if it can't."""
    global _DECODE
    if _DECODE is None:
        _DECODE = _decoder()
    try:
        img = _DECODE(str(path))
    except Exception as e:
        raise DataError(f"{path}: cannot decode image ({one_line(e)[:160]})") from None
    return preprocess(img, size)


class FolderDataset(torch.utils.data.Dataset):
    """A labelled list of image files; item i is (uint8 3 x S x S, int label)."""

    def __init__(self, files: list[Path], labels: list[int], image_size: int, root: Path):
        if len(files) != len(labels):
            raise ValueError("files and labels differ in length")
        self.files = [str(f) for f in files]
        self.labels = torch.as_tensor(labels, dtype=torch.int64)
        self.image_size = image_size
        self.root = root

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return decode(self.files[i], self.image_size), int(self.labels[i])

    def select(self, idx: torch.Tensor) -> FolderDataset:
        idx = idx.tolist()
        return FolderDataset([Path(self.files[i]) for i in idx], self.labels[idx].tolist(), self.image_size, self.root)

    def fingerprint(self) -> str:
        """sha256 of the sorted (relative path, size in bytes, label) lines (computed once)."""
        if getattr(self, "_fingerprint", None) is None:
            self._fingerprint = self._compute_fingerprint()
        return self._fingerprint

    def _compute_fingerprint(self) -> str:
        h = hashlib.sha256()
        for f, y in sorted(zip(self.files, self.labels.tolist(), strict=True)):
            try:
                n = os.stat(f).st_size
            except OSError:
                raise DataError(f"{f}: image file vanished") from None
            h.update(f"{os.path.relpath(f, self.root)}\t{n}\t{y}\n".encode())
        return h.hexdigest()


# ----------------------------------------------------------------------------- layouts


def _class_tree(split_dir: Path, classes: list[str] | None) -> tuple[list[Path], list[int], list[str]] | None:
    """`split_dir/<class>/**/images` -> (files, labels, classes), or None if it has no class folders."""
    subdirs = sorted(d for d in split_dir.iterdir() if d.is_dir()) if split_dir.is_dir() else []
    per_class = {d.name: _images_under(d) for d in subdirs}
    per_class = {k: v for k, v in per_class.items() if v}
    if not per_class:
        return None
    if classes is None:
        classes = sorted(per_class)
    unknown = sorted(set(per_class) - set(classes))
    if unknown:
        shown = ", ".join(unknown[:3]) + (" ..." if len(unknown) > 3 else "")
        raise DataError(f"{split_dir}: class folders not in train/: {shown}")
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for name, imgs in per_class.items():
        files += imgs
        labels += [index[name]] * len(imgs)
    return files, labels, classes


def _tiny_imagenet_val(val_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]]:
    ann = val_dir / "val_annotations.txt"
    index = {c: i for i, c in enumerate(classes)}
    files, labels = [], []
    for n, line in enumerate(ann.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) < 2 or parts[1] not in index:
            raise DataError(f"{ann}:{n}: expected 'filename<TAB>wnid' with a wnid from train/, got {line[:80]!r}")
        path = val_dir / "images" / parts[0]
        if not path.is_file():
            raise DataError(f"{ann}:{n}: {path} does not exist")
        files.append(path)
        labels.append(index[parts[1]])
    if not files:
        raise DataError(f"{ann}: no annotations")
    return files, labels


def _devkit_wnids(meta: Path) -> list[str]:
    """ILSVRC2012_ID order (1-based id k -> entry k-1) of the 1000 leaf synsets in meta.mat."""
    try:
        import scipy.io
    except ImportError:
        raise DataError(f"{meta}: reading the devkit's meta.mat needs scipy (pip install scipy)") from None
    try:
        synsets = scipy.io.loadmat(str(meta), squeeze_me=True)["synsets"]
        leaves = [(int(s["ILSVRC2012_ID"]), str(s["WNID"])) for s in synsets if int(s["num_children"]) == 0]
    except Exception as e:
        raise DataError(f"{meta}: not a readable ILSVRC devkit meta.mat ({one_line(e)[:120]})") from None
    return [w for _, w in sorted(leaves)]


def _flat_val(root: Path, val_dir: Path, classes: list[str]) -> tuple[list[Path], list[int]] | None:
    files = sorted(p for p in val_dir.iterdir() if p.is_file() and _is_image(p.name))
    if not files:
        return None
    gt = next((root / d / GROUND_TRUTH for d in GT_DIRS if (root / d / GROUND_TRUTH).is_file()), None)
    if gt is None:
        raise DataError(f"{val_dir}: flat val/ images need {GROUND_TRUTH} in {root} or {root}/devkit")
    meta = gt.parent / "meta.mat"
    order = _devkit_wnids(meta) if meta.is_file() else classes  # assumption without meta.mat: sorted wnids
    index = {c: i for i, c in enumerate(classes)}
    try:
        ids = [int(line) for line in gt.read_text().split()]
    except ValueError:
        raise DataError(f"{gt}: expected one integer class id per line") from None
    if len(ids) != len(files):
        raise DataError(f"{gt}: has {len(ids)} labels but {val_dir} has {len(files)} images")
    labels = []
    for k in ids:
        if not 1 <= k <= len(order) or order[k - 1] not in index:
            raise DataError(f"{gt}: class id {k} has no train/ folder ({len(classes)} classes)")
        labels.append(index[order[k - 1]])
    return files, labels


@dataclass
class Folders:
    """The splits of one image-folder root, before subset/holdout selection."""

    root: Path
    classes: list[str]
    train: FolderDataset
    val: FolderDataset
    test: FolderDataset


def scan(root: str | os.PathLike, image_size: int) -> Folders:
    """Find train/val/test in `root` (layouts in the module docstring)."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DataError(f"{root}: data folder does not exist")
    tree = _class_tree(root / "train", None)
    if tree is None:
        raise DataError(f"{root}: no train/<class>/ image folders (expected the ImageNet layout train/<wnid>/*.JPEG)")
    train_files, train_labels, classes = tree
    val_dir = root / "val"
    val = None
    if val_dir.is_dir():
        tree = _class_tree(val_dir, classes) if not (val_dir / "val_annotations.txt").is_file() else None
        if tree is not None:
            val = tree[:2]
        elif (val_dir / "val_annotations.txt").is_file():
            val = _tiny_imagenet_val(val_dir, classes)
        else:
            val = _flat_val(root, val_dir, classes)
    if val is None:
        raise DataError(
            f"{root}: no labelled val/ images (val/<class>/*, flat val/ + {GROUND_TRUTH}, or val/val_annotations.txt)"
        )
    tree = None
    test_dir = root / "test"
    if test_dir.is_dir() and {d.name for d in test_dir.iterdir() if d.is_dir()} <= set(classes):
        tree = _class_tree(test_dir, classes)  # labelled test/<class>/ tree; anything else is ignored

    def ds(files_labels) -> FolderDataset:
        return FolderDataset(list(files_labels[0]), list(files_labels[1]), image_size, root)

    val_ds = ds(val)
    return Folders(root, classes, ds((train_files, train_labels)), val_ds, ds(tree) if tree else val_ds)


# ----------------------------------------------------------------------------- statistics


def _stats_workers(n: int) -> int:
    if n < 512:
        return 0
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(0, min(8, cpus - 1))


def compute_stats(ds: FolderDataset, workers: int | None = None) -> dict[str, torch.Tensor]:
    """One pass over `ds`: mean image (3,S,S) float32 and RGB PCA (0..255 scale)."""
    s = ds.image_size
    total = torch.zeros(3, s, s, dtype=torch.float64)
    count, rgb_sum, rgb_outer = 0, torch.zeros(3, dtype=torch.float64), torch.zeros(3, 3, dtype=torch.float64)
    loader = torch.utils.data.DataLoader(
        ds, batch_size=64, num_workers=_stats_workers(len(ds)) if workers is None else workers
    )
    for x, _ in loader:
        total += x.to(torch.float64).sum(0)  # paper §2: per-pixel mean over the training set
        c, t, o = augment.rgb_moments(x)  # paper §4.1: RGB covariance over every training pixel
        count, rgb_sum, rgb_outer = count + c, rgb_sum + t, rgb_outer + o
    eigvals, eigvecs = augment.pca_from_moments(count, rgb_sum, rgb_outer)
    return {"mean": (total / len(ds)).to(torch.float32), "eigvals": eigvals, "eigvecs": eigvecs}


def _stats_key(ds: FolderDataset) -> str:
    return hashlib.sha256(f"{ds.image_size}\n{ds.fingerprint()}".encode()).hexdigest()


def stats_paths(root: Path, name: str) -> list[Path]:
    """Where the stats file may live: beside the data, then the per-user cache."""
    where = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [root / name, cache_dir() / "stats" / where / name]


def load_or_compute_stats(ds: FolderDataset, suffix: str = "") -> dict[str, torch.Tensor]:
    """Mean image and RGB PCA of `ds`, from the cache file if it matches, else computed and cached."""
    name = f"repro-stats-{ds.image_size}{suffix}.pt"
    key = _stats_key(ds)
    paths = stats_paths(ds.root, name)
    for p in paths:
        if p.is_file():
            try:
                blob = torch.load(p, map_location="cpu", weights_only=True)
            except Exception:
                continue  # unreadable: recompute below
            if isinstance(blob, dict) and blob.get("key") == key:
                return {k: blob[k] for k in ("mean", "eigvals", "eigvecs")}
    stats = compute_stats(ds)
    for p in paths:
        try:
            with atomic(p) as tmp:
                torch.save({"key": key, **stats}, tmp)
            break
        except OSError:
            continue  # not writable: try the next place
    return stats
