"""repro.data.folders: ImageNet / Imagenette / Tiny ImageNet layouts, paper §2 preprocessing, cached stats."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from repro.config import DataConfig
from repro.data import Loader, folders, load_dataset
from repro.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("isolated_cache", "one_thread")

WNIDS = ["n01440764", "n02102040", "n03000684"]  # sorted


def save(path, rng, fmt="JPEG", size=None):
    w, h = size or (int(rng.integers(18, 41)), int(rng.integers(18, 41)))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path, fmt)


def imagenet_tree(root, val: str = "folders", per_class: int = 4, seed: int = 0):
    """3 classes x `per_class` training JPEGs of random sizes; val as class folders, or flat
    with the devkit ground truth (`val="flat"`), or Tiny ImageNet's (`val="tiny"`)."""
    rng = np.random.default_rng(seed)
    for wnid in WNIDS:
        for i in range(per_class):
            sub = "images/" if val == "tiny" else ""
            save(root / "train" / wnid / f"{sub}{wnid}_{i}.JPEG", rng)
    truth = [2, 0, 1, 1, 0, 2]  # class indices of the 6 val images
    if val == "folders":
        for i, c in enumerate(truth):
            save(root / "val" / WNIDS[c] / f"ILSVRC2012_val_{i + 1:08d}.JPEG", rng)
    elif val == "flat":
        for i in range(len(truth)):
            save(root / "val" / f"ILSVRC2012_val_{i + 1:08d}.JPEG", rng)
        (root / "devkit").mkdir()
        (root / "devkit" / folders.GROUND_TRUTH).write_text("".join(f"{c + 1}\n" for c in truth))
    elif val == "tiny":
        lines = []
        for i, c in enumerate(truth):
            save(root / "val" / "images" / f"val_{i}.JPEG", rng)
            lines.append(f"val_{i}.JPEG\t{WNIDS[c]}\t0\t0\t10\t10\n")
        (root / "val" / "val_annotations.txt").write_text("".join(lines))
        save(root / "test" / "images" / "test_0.JPEG", rng)  # unlabelled: must be ignored
    return truth


def cfg(root, **kw) -> DataConfig:
    return DataConfig(**({"dataset": "folder", "data_dir": str(root), "image_size": 16, "crop": 12} | kw))


@pytest.mark.parametrize("layout", ["folders", "flat", "tiny"])
def test_layouts_labels_and_preprocessing(tmp_path, layout):
    truth = imagenet_tree(tmp_path, layout)
    ds = load_dataset(cfg(tmp_path), num_classes=3, input_size=12)
    assert ds.name == "folder" and ds.identity["synthetic"] is False
    assert (len(ds.train), ds.holdout, len(ds.test)) == (12, None, 6)  # no labelled test/ tree: val/ is the test
    assert ds.train.labels.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    val_order = sorted(range(6), key=lambda i: ds.test.files[i])
    got = [int(ds.test.labels[i]) for i in val_order]
    want = truth if layout != "folders" else sorted(truth, key=lambda c: WNIDS[c])  # class folders list by class
    assert got == want
    img, label = ds.train[5]
    assert img.shape == (3, 16, 16) and img.dtype == torch.uint8 and label == 1
    assert ds.mean.shape == (3, 16, 16)
    torch.testing.assert_close(ds.mean, torch.stack([ds.train[i][0] for i in range(12)]).double().mean(0).float())


def test_preprocess_is_shorter_side_then_centre_crop(tmp_path):
    rng = np.random.default_rng(1)
    arr = rng.integers(0, 256, (20, 50, 3), dtype=np.uint8)  # h=20, w=50
    Image.fromarray(arr).save(tmp_path / "x.png")  # lossless, so the input is known exactly
    out = folders.decode(tmp_path / "x.png", 10)
    x = torch.from_numpy(arr).permute(2, 0, 1)[None].float()
    ref = F.interpolate(x, size=(10, 25), mode="bilinear", antialias=True, align_corners=False)[0]
    ref = ref[:, :, 7:17]  # centre 10 of 25 columns
    assert out.shape == (3, 10, 10) and out.dtype == torch.uint8
    assert (out.float() - ref).abs().max() <= 1.0
    gray = tmp_path / "g.png"
    Image.fromarray(arr[:, :, 0]).save(gray)  # greyscale files become RGB
    assert folders.decode(gray, 10).shape == (3, 10, 10)


def test_stats_are_cached_and_reused(tmp_path, monkeypatch):
    imagenet_tree(tmp_path)
    first = load_dataset(cfg(tmp_path), 3, 12)
    cached = tmp_path / "repro-stats-16.pt"
    assert cached.is_file()
    blob = torch.load(cached, weights_only=True)
    assert set(blob) == {"key", "mean", "eigvals", "eigvecs"}

    def boom(*a, **k):
        raise AssertionError("recomputed although cached")

    monkeypatch.setattr(folders, "compute_stats", boom)
    again = load_dataset(cfg(tmp_path), 3, 12)
    assert torch.equal(again.mean, first.mean) and torch.equal(again.eigvecs, first.eigvecs)
    assert again.identity == first.identity
    # a changed training set invalidates the cache
    monkeypatch.undo()
    save(tmp_path / "train" / WNIDS[0] / "extra.JPEG", np.random.default_rng(9))
    changed = load_dataset(cfg(tmp_path), 3, 12)
    assert len(changed.train) == 13 and not torch.equal(changed.mean, first.mean)


def test_stats_fall_back_to_the_user_cache(tmp_path, monkeypatch, isolated_cache):
    imagenet_tree(tmp_path)
    real_save = torch.save

    def refuse_beside_data(obj, f, *a, **k):
        if str(tmp_path) in str(f) and "xdg-cache" not in str(f):
            raise PermissionError("read-only")
        return real_save(obj, f, *a, **k)

    monkeypatch.setattr(torch, "save", refuse_beside_data)
    load_dataset(cfg(tmp_path), 3, 12)
    assert not (tmp_path / "repro-stats-16.pt").exists()
    assert len(list((isolated_cache / "stats").rglob("repro-stats-16.pt"))) == 1


def test_subset_and_holdout_from_a_fixed_shuffle(tmp_path):
    imagenet_tree(tmp_path, per_class=6)
    ds = load_dataset(cfg(tmp_path, subset=9, holdout=3), 3, 12)
    assert (len(ds.train), len(ds.holdout), len(ds.test)) == (9, 3, 6)
    assert not set(ds.train.files) & set(ds.holdout.files)
    again = load_dataset(cfg(tmp_path, subset=9, holdout=3), 3, 12)
    assert again.train.files == ds.train.files and again.holdout.files == ds.holdout.files
    assert len(set(ds.train.labels.tolist())) > 1  # not the first class only
    assert len(list(tmp_path.glob("repro-stats-16-9of18-*.pt"))) == 1


def test_loader_over_folders_is_deterministic(tmp_path):
    imagenet_tree(tmp_path)
    c = cfg(tmp_path, flip=True, pca_noise=0.1, test_views=10)
    ds = load_dataset(c, 3, 12)
    a = list(Loader(ds, "train", 5, "cpu", True, c, seed=1).epoch(0))
    b = list(Loader(ds, "train", 5, "cpu", True, c, seed=1).epoch(0))
    assert [len(y) for _, y in a] == [5, 5, 2]
    assert all(torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True))
    assert a[0][0].shape == (5, 3, 12, 12) and a[0][0].dtype == torch.float32
    x, y = next(iter(Loader(ds, "test", 4, "cpu", False, c, seed=1).epoch(0)))
    assert x.shape == (10, 4, 3, 12, 12) and torch.equal(y, ds.test.labels[:4])


@pytest.mark.parametrize("workers", [0, 1])
def test_undecodable_image_gives_one_line_error(tmp_path, workers):
    imagenet_tree(tmp_path)
    c = cfg(tmp_path)
    ds = load_dataset(c, 3, 12)
    bad = tmp_path / "train" / WNIDS[1] / f"{WNIDS[1]}_2.JPEG"
    bad.write_bytes(b"not an image")
    with pytest.raises(DataError) as err:
        for _ in Loader(ds, "train", 12, "cpu", True, c, seed=0, workers=workers).epoch(0):
            pass
    msg = str(err.value)
    assert "\n" not in msg and bad.name in msg and "decode" in msg


@pytest.mark.slow  # importing scipy.io next to torch takes ~5 s here (scipy array_api_compat)
def test_meta_mat_maps_devkit_ids_to_wnids(tmp_path):
    scipy_io = pytest.importorskip("scipy.io")
    truth = imagenet_tree(tmp_path, "flat")
    devkit_order = [WNIDS[2], WNIDS[0], WNIDS[1]]  # ILSVRC2012_ID 1, 2, 3: not sorted
    dt = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    syn = np.array([(i + 1, w, "x", 0) for i, w in enumerate(devkit_order)] + [(4, "n0", "root", 3)], dtype=dt)
    scipy_io.savemat(tmp_path / "devkit" / "meta.mat", {"synsets": syn})
    # the ground-truth ids are devkit ids: id k means devkit_order[k-1]
    ids = [devkit_order.index(WNIDS[c]) + 1 for c in truth]
    (tmp_path / "devkit" / folders.GROUND_TRUTH).write_text("".join(f"{k}\n" for k in ids))
    ds = load_dataset(cfg(tmp_path), 3, 12)
    assert ds.test.labels.tolist() == truth


@pytest.mark.parametrize(
    "breakage, needle",
    [
        ("no-train", "train/"),
        ("gt-short", "labels"),
        ("gt-range", "class id"),
        ("no-gt", folders.GROUND_TRUTH),
        ("unknown-val-class", "not in train/"),
        ("tiny-bad-wnid", "val_annotations.txt"),
    ],
)
def test_bad_layouts_give_one_line_errors(tmp_path, breakage, needle):
    layout = {"gt-short": "flat", "gt-range": "flat", "no-gt": "flat", "tiny-bad-wnid": "tiny"}.get(breakage, "folders")
    imagenet_tree(tmp_path, layout)
    gt = tmp_path / "devkit" / folders.GROUND_TRUTH
    if breakage == "no-train":
        (tmp_path / "train").rename(tmp_path / "training")
    elif breakage == "gt-short":
        gt.write_text("1\n2\n")
    elif breakage == "gt-range":
        gt.write_text("1\n2\n3\n4\n1\n1\n")
    elif breakage == "no-gt":
        gt.unlink()
    elif breakage == "unknown-val-class":
        save(tmp_path / "val" / "n09999999" / "x.JPEG", np.random.default_rng(0))
    elif breakage == "tiny-bad-wnid":
        ann = tmp_path / "val" / "val_annotations.txt"
        ann.write_text(ann.read_text().replace(WNIDS[0], "n00000000"))
    with pytest.raises(DataError) as err:
        load_dataset(cfg(tmp_path), 3, 12)
    msg = str(err.value)
    assert "\n" not in msg and needle in msg, msg


def test_class_count_must_match_the_model(tmp_path):
    imagenet_tree(tmp_path)
    with pytest.raises(ConfigError) as err:
        load_dataset(cfg(tmp_path), 1000, 12)
    assert "num_classes=3" in str(err.value)
