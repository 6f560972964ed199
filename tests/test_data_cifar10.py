"""repro.data.cifar10: finding, downloading and safely loading CIFAR-10; the real data set."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from repro.config import DataConfig
from repro.data import Loader, cifar10, load_dataset, selection_order
from repro.data.cifar10 import FOLDER, TEST_FILE, TRAIN_FILES, find_root, load_batch, load_cifar10
from repro.errors import DataError

pytestmark = pytest.mark.usefixtures("isolated_cache", "one_thread")


def batch(rows: int = 10000, seed: int = 0, **overrides) -> dict:
    data = np.zeros((rows, 3072), dtype=np.uint8)
    data[:, 0] = np.arange(rows) % 251 + seed  # something to tell batches apart
    return {"batch_label": "fake", "data": data, "labels": [i % 10 for i in range(rows)], **overrides}


def write(path: Path, obj, protocol: int = 2) -> Path:
    path.write_bytes(pickle.dumps(obj, protocol=protocol))
    return path


@pytest.fixture(scope="module")
def fake_layout(tmp_path_factory) -> Path:
    """A valid, tiny-content but full-shape layout: 5 train batches + test batch of zeros."""
    folder = tmp_path_factory.mktemp("fake") / FOLDER
    folder.mkdir()
    for i, name in enumerate(TRAIN_FILES):
        write(folder / name, batch(seed=i), protocol=2 if i % 2 else pickle.HIGHEST_PROTOCOL)
    write(folder / TEST_FILE, batch(seed=9))
    return folder


def layout_with(tmp_path: Path, fake: Path, name: str, blob: bytes | None) -> Path:
    """A copy of `fake` (symlinks) where file `name` is replaced by `blob` (None: removed)."""
    folder = tmp_path / FOLDER
    folder.mkdir()
    for f in (*TRAIN_FILES, TEST_FILE):
        if f != name:
            os.symlink(fake / f, folder / f)
    if blob is not None:
        (folder / name).write_bytes(blob)
    return folder


def one_line_naming(err: pytest.ExceptionInfo, name: str) -> str:
    msg = str(err.value)
    assert "\n" not in msg and name in msg, msg
    return msg


def test_valid_layout_loads(fake_layout):
    tx, ty, ex, ey = load_cifar10(fake_layout.parent)  # the parent works as well as the folder
    assert tx.shape == (50000, 3, 32, 32) and tx.dtype == torch.uint8
    assert ex.shape == (10000, 3, 32, 32) and ty.dtype == ey.dtype == torch.int64
    assert tx[10000, 0, 0, 0] == 1 and tx[0, 0, 0, 1] == 0  # batch order kept, R plane first
    assert torch.equal(ty[:10], torch.arange(10))


def test_pixel_layout_is_rgb_planes(tmp_path, fake_layout):
    data = np.zeros((10000, 3072), dtype=np.uint8)
    data[0, 1024 + 32 * 5 + 7] = 200  # G plane, row 5, column 7
    folder = layout_with(tmp_path, fake_layout, "data_batch_1", pickle.dumps(batch(data=data)))
    tx, *_ = load_cifar10(folder)
    assert tx[0, 1, 5, 7] == 200 and int(tx[0].sum()) == 200


@pytest.mark.parametrize(
    "name, blob, needle",
    [
        ("data_batch_3", None, "missing"),
        (TEST_FILE, None, "missing"),
        ("data_batch_2", b"\x80\x02garbage that is not a pickle" * 3, "corrupt"),
        ("data_batch_4", pickle.dumps(batch(), protocol=2)[:1_000_000], "truncated"),
        ("data_batch_1", pickle.dumps(batch(data=np.zeros((10000, 3071), np.uint8))), "shape"),
        ("data_batch_1", pickle.dumps(batch(data=np.zeros((10000, 3072), np.float32))), "uint8"),
        ("data_batch_5", pickle.dumps(batch(rows=9999)), "shape"),
        ("data_batch_5", pickle.dumps(batch(labels=[10] * 10000)), "labels"),
        ("data_batch_5", pickle.dumps(batch(labels=[-1] + [0] * 9999)), "labels"),
        ("data_batch_5", pickle.dumps(batch(labels=[0] * 9999)), "labels"),
        ("data_batch_5", pickle.dumps(batch(labels=["cat"] * 10000)), "labels"),
        ("data_batch_5", pickle.dumps(batch(labels=np.zeros(10000, np.float32))), "labels"),
        (TEST_FILE, pickle.dumps([1, 2, 3]), "dict"),
        (TEST_FILE, pickle.dumps({"data": np.zeros((10000, 3072), np.uint8)}), "labels"),
    ],
)
def test_bad_files_give_one_line_errors_naming_the_file(tmp_path, fake_layout, name, blob, needle):
    folder = layout_with(tmp_path, fake_layout, name, blob)
    with pytest.raises(DataError) as err:
        load_cifar10(folder)
    assert needle in one_line_naming(err, name)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _EvalExploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (eval, (f"open({str(self.marker)!r}, 'w')",))


@pytest.mark.parametrize("exploit", [_Exploit, _EvalExploit])
def test_malicious_pickle_runs_nothing(tmp_path, exploit):
    marker = tmp_path / "pwned"
    path = write(tmp_path / "data_batch_1", batch(rows=3, data=exploit(marker)))
    with pytest.raises(DataError) as err:
        load_batch(path)
    assert "unsafe" in one_line_naming(err, "data_batch_1")
    assert not marker.exists()


def test_codecs_standin_allows_latin1_only(tmp_path):
    import _codecs

    class Rot13:
        def __reduce__(self):
            return (_codecs.encode, ("payload", "rot13"))

    with pytest.raises(DataError) as err:
        load_batch(write(tmp_path / "data_batch_1", {"data": Rot13()}))
    assert "unsafe" in one_line_naming(err, "data_batch_1")


def test_bytes_keys_and_all_protocols_load(tmp_path):
    for protocol in (2, 3, 4, 5):
        obj = batch()
        obj = {k.encode(): v for k, v in obj.items()}
        data, labels = load_batch(write(tmp_path / f"b{protocol}", obj, protocol))
        assert data.shape == (10000, 3072) and labels.dtype == np.int64


# ----------------------------------------------------------------------------- find_root / download


def test_find_root_missing_everywhere(tmp_path):
    with pytest.raises(DataError) as err:
        find_root(None)
    msg = str(err.value)
    assert "\n" not in msg and "--data-dir" in msg and "synthetic" in msg and "$REPRO_DATA" in msg
    with pytest.raises(DataError) as err:
        find_root(tmp_path / "nowhere")
    assert "nowhere" in str(err.value) and "--data-dir" in str(err.value)


def test_find_root_search_order(tmp_path, monkeypatch, isolated_cache):
    def make(where: Path) -> Path:
        (where / FOLDER).mkdir(parents=True)
        (where / FOLDER / TEST_FILE).touch()
        return where / FOLDER

    in_cache = make(isolated_cache)
    assert find_root(None) == in_cache
    in_env = make(tmp_path / "env")
    monkeypatch.setenv("REPRO_DATA", str(tmp_path / "env"))
    assert find_root(None) == in_env
    given = make(tmp_path / "given")
    assert find_root(str(tmp_path / "given")) == given
    assert find_root(given) == given  # the folder itself
    with pytest.raises(DataError):  # a given path is never silently replaced by $REPRO_DATA
        find_root(tmp_path / "empty")


def test_download_uses_torchvision_with_the_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tvu

    calls = []

    def fake(url, download_root, md5=None, **kw):
        calls.append((url, download_root, md5))
        (Path(download_root) / FOLDER).mkdir()

    monkeypatch.setattr(tvu, "download_and_extract_archive", fake)
    assert cifar10.download(tmp_path) == tmp_path / FOLDER
    assert calls == [(cifar10.URL, str(tmp_path), "c58f30108f718f92721af3b95e74349a")]

    def broken(url, download_root, md5=None, **kw):
        raise RuntimeError("File not found or corrupted.\nsecond line")

    monkeypatch.setattr(tvu, "download_and_extract_archive", broken)
    with pytest.raises(DataError) as err:
        cifar10.download(tmp_path / "other")
    assert "\n" not in str(err.value) and "corrupted" in str(err.value)


# ----------------------------------------------------------------------------- the real data set


@pytest.mark.data
def test_real_cifar10(cifar10_root):
    tx, ty, ex, ey = load_cifar10(find_root(cifar10_root))
    assert tx.shape == (50000, 3, 32, 32) and ex.shape == (10000, 3, 32, 32)
    assert torch.equal(torch.bincount(ty), torch.full((10,), 5000))
    assert torch.equal(torch.bincount(ey), torch.full((10,), 1000))
    assert 100 < tx[:2000].float().mean() < 140  # real photographs, not zeros


@pytest.mark.data
def test_real_cifar10_subset_holdout_and_loader(cifar10_root, monkeypatch):
    monkeypatch.setenv("REPRO_DATA", str(cifar10_root))  # found through the environment
    cfg = DataConfig(dataset="cifar10", subset=800, holdout=200, crop=24, flip=True, pca_noise=0.1, test_views=10)
    ds = load_dataset(cfg, num_classes=10, input_size=24)
    tx, ty, ex, _ = load_cifar10(find_root(cifar10_root))
    order = selection_order(50000)
    hold, train = order[:200].sort().values, order[200:].sort().values[:800]
    assert torch.equal(ds.train.images, tx[train]) and torch.equal(ds.holdout.images, tx[hold])
    assert torch.equal(ds.holdout.labels, ty[hold]) and torch.equal(ds.test.images, ex)
    assert len(set(ty[hold].tolist())) == 10  # a shuffled holdout: every class, not one batch's tail
    torch.testing.assert_close(ds.mean, tx[train].double().mean(0).float())
    assert ds.identity["synthetic"] is False and ds.identity["train_size"] == 800
    assert ds.eigvals[0] > ds.eigvals[1] > ds.eigvals[2] > 0
    x, y = next(iter(Loader(ds, "train", 128, "cpu", True, cfg, seed=0).epoch(0)))
    assert x.shape == (128, 3, 24, 24) and abs(x.mean().item()) < 10  # mean-subtracted, 0..255 scale
    x, y = next(iter(Loader(ds, "holdout", 50, "cpu", False, cfg, seed=0).epoch(0)))
    assert x.shape == (10, 50, 3, 24, 24) and torch.equal(y, ty[hold[:50]])
