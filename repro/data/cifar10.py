"""CIFAR-10 from the canonical python layout (`cifar-10-batches-py/`), loaded safely.

Where the data is looked for (`find_root`), in order:

1. `data_dir` (`--data-dir D`), when given: it must hold the data, or it is an error
   (a path someone typed is never silently replaced by another);
2. `$REPRO_DATA`;
3. the per-user cache, `$XDG_CACHE_HOME/repro` or `~/.cache/repro` (where `download`
   puts it by default).

Each may hold `cifar-10-batches-py/` or be that folder itself.

Why a custom unpickler: the batches are Python pickles, and `pickle.load` on a file from
the internet runs whatever the file says. `_SafeUnpickler.find_class` resolves only the
few numpy globals an array needs (`_reconstruct`, `ndarray`, `dtype`, `scalar`, and
`_frombuffer` for protocol-5 re-pickles), plus a latin-1-only stand-in for
`_codecs.encode`, which Python 3 protocol-2 pickles use for bytes; anything else raises
`DataError` before it is called, so a malicious file runs nothing.

Every file is validated: `data_batch_1`..`5` and `test_batch`, each a dict with 'data'
uint8 (10000, 3072) (R, G, B planes of 32x32, row-major) and 'labels' 10000 ints in 0..9.
Problems give a one-line `DataError` naming the file. There is no md5 check of the
extracted files: rebuilt copies (e.g. shared/tools/cifar10.py, JPEG round-tripped) are
legitimate; `download` verifies the archive's md5 instead.

Loading the six pickles takes about 0.5 s, so nothing is cached.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import torch

from repro.errors import DataError, one_line

FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))  # cuda-convnet's batches 1-5
TEST_FILE = "test_batch"  # cuda-convnet's batch 6
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
ROWS, PIXELS, CLASSES = 10000, 3072, 10

HOW_TO_GET = (
    "pass --data-dir D (a folder holding cifar-10-batches-py/), set $REPRO_DATA, "
    "use --download to fetch it, or --dataset synthetic to run without it"
)


def cache_dir() -> Path:
    """The per-user cache: $XDG_CACHE_HOME/repro, else ~/.cache/repro."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "repro"


def _batches_dir(candidate: Path) -> Path | None:
    """`candidate`/cifar-10-batches-py, or `candidate` itself if it is that folder."""
    if (candidate / FOLDER).is_dir():
        return candidate / FOLDER
    if candidate.is_dir() and (
        candidate.name == FOLDER or any((candidate / f).exists() for f in (*TRAIN_FILES, TEST_FILE))
    ):
        return candidate
    return None


def find_root(data_dir: str | os.PathLike | None = None) -> Path:
    """The `cifar-10-batches-py` folder to load, searched as the module docstring says."""
    if data_dir is not None:
        found = _batches_dir(Path(data_dir).expanduser())
        if found is None:
            raise DataError(f"CIFAR-10 not found: {data_dir} has no {FOLDER}/; {HOW_TO_GET}")
        return found
    looked = []
    env = os.environ.get("REPRO_DATA")
    if env:
        looked.append(f"$REPRO_DATA={env}")
        found = _batches_dir(Path(env).expanduser())
        if found is not None:
            return found
    cache = cache_dir()
    looked.append(str(cache))
    found = _batches_dir(cache)
    if found is not None:
        return found
    raise DataError(f"CIFAR-10 not found (looked in {', '.join(looked)}); {HOW_TO_GET}")


def download(root: str | os.PathLike | None = None) -> Path:
    """Download and extract the official archive into `root` (default: the per-user cache),
    verifying its md5; returns the `cifar-10-batches-py` folder. Does nothing if present."""
    from torchvision.datasets.utils import download_and_extract_archive

    root = Path(root).expanduser() if root is not None else cache_dir()
    if (root / FOLDER / TEST_FILE).exists():
        return root / FOLDER
    try:
        root.mkdir(parents=True, exist_ok=True)
        download_and_extract_archive(URL, download_root=str(root), md5=MD5)
    except Exception as e:  # network, disk, or md5 mismatch: all mean "no data"
        raise DataError(f"downloading {URL} into {root} failed: {one_line(e)}") from e
    return root / FOLDER


# ----------------------------------------------------------------------------- safe loading


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """What `_codecs.encode` is used for in protocol-2 pickles of bytes, and nothing else."""
    if encoding.lower().replace("-", "").replace("_", "") not in ("latin1", "iso88591") or not isinstance(text, str):
        raise DataError(f"unsafe pickle: _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_globals() -> dict[tuple[str, str], object]:
    try:
        from numpy._core import multiarray, numeric  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray, numeric
    allowed: dict[tuple[str, str], object] = {}
    for pkg in ("numpy.core", "numpy._core"):  # Python 2 files say numpy.core; numpy 2 writes numpy._core
        allowed[(f"{pkg}.multiarray", "_reconstruct")] = multiarray._reconstruct
        allowed[(f"{pkg}.multiarray", "scalar")] = multiarray.scalar
        allowed[(f"{pkg}.numeric", "_frombuffer")] = numeric._frombuffer  # pickle protocol 5
    allowed[("numpy", "ndarray")] = np.ndarray
    allowed[("numpy", "dtype")] = np.dtype
    allowed[("_codecs", "encode")] = _latin1_encode
    return allowed


class _SafeUnpickler(pickle.Unpickler):
    """Resolves only numpy array reconstruction globals; anything else is a DataError."""

    ALLOWED = _allowed_globals()

    def __init__(self, file, path: Path):
        super().__init__(file, encoding="latin1")  # Python 2 str -> str, as CIFAR needs
        self.path = path

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise DataError(f"{self.path}: unsafe pickle, refuses to load global {module}.{name}") from None

    def persistent_load(self, pid):
        raise DataError(f"{self.path}: unsafe pickle, has persistent ids")


def _unpickle(path: Path) -> object:
    if not path.is_file():
        raise DataError(f"{path}: missing CIFAR-10 file; {HOW_TO_GET}")
    try:
        with open(path, "rb") as f:
            return _SafeUnpickler(f, path).load()
    except DataError as e:  # from find_class or the _codecs stand-in
        raise e if str(path) in str(e) else DataError(f"{path}: {e}") from None
    except Exception as e:  # EOFError (truncated), UnpicklingError, ValueError, ... (corrupt)
        raise DataError(f"{path}: corrupt or truncated pickle ({type(e).__name__}: {one_line(e)[:200]})") from None


def load_batch(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """One validated batch file: (data uint8 (10000, 3072), labels int64 (10000,))."""
    path = Path(path)
    obj = _unpickle(path)
    if not isinstance(obj, dict):
        raise DataError(f"{path}: expected a dict, found {type(obj).__name__}")
    obj = {k.decode("latin1") if isinstance(k, bytes) else k: v for k, v in obj.items()}  # b"data" keys too
    for key in ("data", "labels"):
        if key not in obj:
            raise DataError(f"{path}: no {key!r} entry (has {', '.join(map(str, obj)) or 'nothing'})")
    data = obj["data"]
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != (ROWS, PIXELS):
        what = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise DataError(f"{path}: 'data' must be uint8 of shape ({ROWS}, {PIXELS}), found {what}")
    raw = obj["labels"]
    if not isinstance(raw, (list, tuple, np.ndarray)):
        raise DataError(f"{path}: 'labels' must be a list of ints, found {type(raw).__name__}")
    try:
        labels = np.asarray(raw)
    except Exception:
        raise DataError(f"{path}: 'labels' is not a list of ints") from None
    if labels.shape != (ROWS,):
        raise DataError(f"{path}: 'labels' must hold {ROWS} entries, found shape {labels.shape}")
    if labels.dtype.kind not in "iu":
        raise DataError(f"{path}: 'labels' must be ints, found {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= CLASSES:
        raise DataError(f"{path}: labels must lie in 0..{CLASSES - 1}, found {lo}..{hi}")
    return data, labels.astype(np.int64)


def load_cifar10(root: str | os.PathLike) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train_x uint8 (50000,3,32,32), train_y int64, test_x uint8 (10000,3,32,32), test_y).

    `root` is the `cifar-10-batches-py` folder or a folder holding it. The training order is
    the files' order (batches 1..5), so "the first N" and "the last N" are well defined
    (cuda-convnet validates on batch 5, the last 10000)."""
    root = Path(root)
    folder = _batches_dir(root) or root
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder; {HOW_TO_GET}")
    train = [load_batch(folder / f) for f in TRAIN_FILES]
    test_x, test_y = load_batch(folder / TEST_FILE)

    def images(a: np.ndarray) -> torch.Tensor:  # rows are R, G, B planes of 32x32 each
        return torch.from_numpy(np.ascontiguousarray(a).reshape(-1, 3, 32, 32))

    train_x = images(np.concatenate([d for d, _ in train]))
    train_y = torch.from_numpy(np.concatenate([y for _, y in train]))
    return train_x, train_y, images(test_x), torch.from_numpy(test_y)
