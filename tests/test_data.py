"""repro.data: Loader (determinism, shards, mean subtraction, views), load_dataset, synthetic data."""

from __future__ import annotations

import pytest
import torch

from repro.config import DataConfig
from repro.data import Dataset, Loader, Split, load_dataset, selection_order
from repro.data.augment import _reference_crop_flip, center_crop, rgb_pca
from repro.data.synthetic import make_synthetic
from repro.errors import ConfigError, DataError

pytestmark = pytest.mark.usefixtures("isolated_cache", "one_thread")


def indexed_dataset(n: int = 60, size: int = 8, seed: int = 0) -> Dataset:
    """Random images whose label is their index, so a batch's y says which images it holds."""
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, size, size), generator=g, dtype=torch.uint8)
    labels = torch.arange(n)
    eigvals, eigvecs = rgb_pca(images)
    mean = images.double().mean(0).float()
    split = Split(images, labels)
    return Dataset("synthetic", n, split, split, split, split, mean, eigvals, eigvecs, {})


def batches(loader: Loader, epoch: int, **kw) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader.epoch(epoch, **kw))


AUG = DataConfig(dataset="synthetic", crop=6, flip=True, pca_noise=0.1)


def test_same_seed_and_epoch_give_identical_batches():
    ds = indexed_dataset()
    a = batches(Loader(ds, "train", 16, "cpu", True, AUG, seed=7), 3)
    b = batches(Loader(ds, "train", 16, "cpu", True, AUG, seed=7), 3)
    assert len(a) == len(b) == 4
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
        assert xa.dtype == torch.float32 and ya.dtype == torch.int64 and xa.shape[1:] == (3, 6, 6)


def test_different_epoch_or_seed_changes_the_order():
    ds = indexed_dataset()
    loader = Loader(ds, "train", 60, "cpu", True, AUG, seed=7)
    e0, e1 = batches(loader, 0)[0][1], batches(loader, 1)[0][1]
    other = batches(Loader(ds, "train", 60, "cpu", True, AUG, seed=8), 0)[0][1]
    assert not torch.equal(e0, e1) and not torch.equal(e0, other)
    assert sorted(e0.tolist()) == sorted(e1.tolist()) == list(range(60))


def test_resume_mid_epoch_gives_the_remaining_batches():
    loader = Loader(indexed_dataset(), "train", 16, "cpu", True, AUG, seed=1)
    full, rest = batches(loader, 5), batches(loader, 5, start=2)
    assert len(rest) == 2
    for (xa, ya), (xb, yb) in zip(full[2:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_len_keeps_the_last_incomplete_batch():
    loader = Loader(indexed_dataset(60), "train", 16, "cpu", True, AUG, seed=0)
    got = batches(loader, 0)
    assert len(loader) == len(got) == 4 and [len(y) for _, y in got] == [16, 16, 16, 12]
    assert sorted(torch.cat([y for _, y in got]).tolist()) == list(range(60))
    evaluation = Loader(indexed_dataset(60), "test", 25, "cpu", False, AUG, seed=0)
    assert len(evaluation) == 3 and evaluation.num_samples == 60


@pytest.mark.parametrize("n", [60, 62])
def test_shards_are_disjoint_and_match_one_big_batch(n):
    ds, world, per_rank = indexed_dataset(n), 3, 8
    shards = [
        batches(Loader(ds, "train", per_rank, "cpu", True, AUG, seed=4, shard=(r, world)), 2) for r in range(world)
    ]
    seen = [torch.cat([y for _, y in s]).tolist() for s in shards]
    assert all(len(s) == n // world for s in seen)  # equal steps on every rank
    union = set().union(*map(set, seen))
    assert sum(map(len, seen)) == len(union)  # disjoint
    assert len(union) == (n // world) * world  # n % world dropped, no more
    single = batches(Loader(ds, "train", per_rank * world, "cpu", True, AUG, seed=4), 2)
    if n % world == 0:
        assert union == set(range(n))
        for b, (x1, y1) in enumerate(single):  # rank shares of batch b == batch b of one process
            xs = torch.cat([s[b][0] for s in shards])
            ys = torch.cat([s[b][1] for s in shards])
            order = ys.argsort()
            assert torch.equal(ys[order], y1.sort().values)
            assert torch.equal(xs[order], x1[y1.argsort()])  # same crops, flips and colour noise per image


def test_eval_is_in_order_and_shards_cover_everything():
    ds = indexed_dataset(61)
    ys = [
        torch.cat([y for _, y in batches(Loader(ds, "test", 7, "cpu", False, AUG, 0, shard=(r, 2)), 0)])
        for r in range(2)
    ]
    assert ys[0].tolist() == list(range(0, 61, 2)) and ys[1].tolist() == list(range(1, 61, 2))


def test_plain_training_batches_are_image_minus_mean_image():
    ds = indexed_dataset()
    for x, y in Loader(ds, "train", 16, "cpu", True, DataConfig(dataset="synthetic"), seed=0).epoch(0):
        assert x.shape == (len(y), 3, 8, 8)
        torch.testing.assert_close(x, ds.train.images[y].float() - ds.mean, rtol=0, atol=0)


def test_crops_subtract_the_mean_with_the_same_offsets_and_flip():
    ds = indexed_dataset(40, size=6)
    cfg = DataConfig(dataset="synthetic", crop=4, flip=True)
    flips = 0
    for x, y in Loader(ds, "train", 40, "cpu", True, cfg, seed=3).epoch(0):
        for xi, yi in zip(x, y, strict=True):
            centred = ds.train.images[yi].float() - ds.mean  # the full-size mean, before cropping
            matches = [
                (t, left, f)
                for t in range(3)
                for left in range(3)
                for f in (False, True)
                if torch.equal(_reference_crop_flip(centred, t, left, f, 4), xi)
            ]
            assert matches, "no crop of (image - mean image) equals the batch entry"
            flips += matches[0][2]
    assert 5 < flips < 35  # flipping happens, about half the time


def test_pca_noise_is_one_rgb_offset_per_image_of_the_right_size():
    ds = indexed_dataset(3000, size=4)
    base = DataConfig(dataset="synthetic", crop=3, flip=True)
    noisy = DataConfig(dataset="synthetic", crop=3, flip=True, pca_noise=0.1)
    ((x0, y0),) = batches(Loader(ds, "train", 3000, "cpu", True, base, seed=2), 0)
    ((x1, y1),) = batches(Loader(ds, "train", 3000, "cpu", True, noisy, seed=2), 0)
    assert torch.equal(y0, y1)  # same order, and (below) the same crops: noise only adds
    delta = (x1 - x0).double()
    rgb = delta[:, :, 0, 0]
    torch.testing.assert_close(delta, rgb[:, :, None, None].expand_as(delta), atol=1e-3, rtol=0)
    proj = rgb @ ds.eigvecs.double()  # coordinates along the principal components
    want = 0.1 * ds.eigvals.double().sqrt()  # alpha ~ N(0, 0.1) times each component's std
    torch.testing.assert_close(proj.std(0), want, rtol=0.1, atol=0)


def test_eval_views():
    ds = indexed_dataset(20, size=8)
    ten = DataConfig(dataset="synthetic", crop=6, test_views=10)
    x, y = batches(Loader(ds, "test", 8, "cpu", False, ten, 0), 0)[0]
    assert x.shape == (10, 8, 3, 6, 6)
    centred = ds.test.images[y].float() - ds.mean
    assert torch.equal(x[4], center_crop(centred, 6))
    assert torch.equal(x[0], centred[..., :6, :6]) and torch.equal(x[8], centred[..., 2:, 2:].flip(-1))
    one = DataConfig(dataset="synthetic", crop=6, flip=True, pca_noise=0.1)  # no augmentation when evaluating
    x1, _ = batches(Loader(ds, "test", 8, "cpu", False, one, 0), 0)[0]
    assert torch.equal(x1, center_crop(centred, 6))
    whole, _ = batches(Loader(ds, "test", 8, "cpu", False, DataConfig(dataset="synthetic"), 0), 0)[0]
    assert torch.equal(whole, centred)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"split": "val"},
        {"batch_size": 0},
        {"shard": (2, 2)},
        {"cfg": DataConfig(dataset="synthetic", crop=9)},
        {"train": False, "cfg": DataConfig(dataset="synthetic", test_views=10)},  # 10 views need a crop size
    ],
)
def test_loader_rejects_bad_arguments(kwargs):
    args = {"ds": indexed_dataset(), "split": "train", "batch_size": 8, "device": "cpu", "train": True}
    args |= {"cfg": AUG, "seed": 0} | kwargs
    with pytest.raises(ConfigError) as e:
        Loader(**args)
    assert "\n" not in str(e.value)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_batches_equal_cpu_batches():
    ds = indexed_dataset()
    for cfg in (AUG, DataConfig(dataset="synthetic", crop=6, test_views=10)):
        for train in (True, False):
            cpu = batches(Loader(ds, "train", 16, "cpu", train, cfg, seed=3), 1)
            gpu = batches(Loader(ds, "train", 16, "cuda", train, cfg, seed=3), 1)
            for (xa, ya), (xb, yb) in zip(cpu, gpu, strict=True):
                assert xb.is_cuda and torch.equal(xa, xb.cpu()) and torch.equal(ya, yb.cpu())


# ----------------------------------------------------------------------------- load_dataset


def synthetic_cfg(**kw) -> DataConfig:
    return DataConfig(**({"dataset": "synthetic", "synthetic_train": 200, "synthetic_test": 50} | kw))


def test_load_synthetic_dataset_and_identity():
    ds = load_dataset(synthetic_cfg(image_size=12, crop=10), num_classes=5, input_size=10)
    assert ds.name == "synthetic" and ds.num_classes == 5
    assert ds.identity["synthetic"] is True and ds.identity["source"] == "generated"
    assert (ds.identity["train_size"], ds.identity["holdout_size"], ds.identity["test_size"]) == (200, 0, 50)
    assert ds.identity["train_eval_size"] == 200  # data.train_eval=5000 caps at the training split
    assert ds.train.images.shape == (200, 3, 12, 12) and ds.train.images.dtype == torch.uint8
    assert ds.holdout is None  # no holdout: nothing may adapt, and the test split is never a stand-in
    assert ds.mean.shape == (3, 12, 12) and ds.mean.dtype == torch.float32
    assert ds.eigvals.shape == (3,) and ds.eigvecs.shape == (3, 3)
    again = load_dataset(synthetic_cfg(image_size=12, crop=10), num_classes=5, input_size=10)
    assert again.identity == ds.identity
    # default size is the model's input size; default class count is the model's
    larger = load_dataset(synthetic_cfg(image_size=12), num_classes=5, input_size=10)  # the Loader crops later
    x, _ = next(iter(Loader(larger, "train", 4, "cpu", True, synthetic_cfg(image_size=12, crop=10), 0).epoch(0)))
    assert x.shape == (4, 3, 10, 10)
    small = load_dataset(synthetic_cfg(), num_classes=4, input_size=9)
    assert small.train.images.shape[-1] == 9 and set(small.train.labels.tolist()) == {0, 1, 2, 3}


def test_holdout_is_a_fixed_shuffled_slice_and_subset_cuts_the_rest():
    full = load_dataset(synthetic_cfg(image_size=8), 3, 8)
    ds = load_dataset(synthetic_cfg(image_size=8, subset=100, holdout=20, train_eval=30), 3, 8)
    order = selection_order(200)
    hold = order[:20].sort().values
    rest = order[20:].sort().values[:100]
    assert torch.equal(ds.holdout.images, full.train.images[hold])  # protocol §1: a fixed shuffled order
    assert torch.equal(ds.holdout.labels, full.train.labels[hold])
    assert torch.equal(ds.train.images, full.train.images[rest])  # the rest in file order, then the subset
    assert torch.equal(ds.train_eval.images, ds.train.images[:30])  # eval-mode slice of the training split
    assert torch.equal(ds.test.images, full.test.images)
    assert not set(hold.tolist()) & set(rest.tolist())
    torch.testing.assert_close(ds.mean, full.train.images[rest].double().mean(0).float())  # train only
    assert (ds.identity["train_size"], ds.identity["holdout_size"], ds.identity["train_eval_size"]) == (100, 20, 30)
    assert ds.identity["sha256"] != full.identity["sha256"]
    # the holdout does not depend on the subset: a lesson learnt on one subset is judged on the same images
    other = load_dataset(synthetic_cfg(image_size=8, subset=50, holdout=20), 3, 8)
    assert torch.equal(other.holdout.images, ds.holdout.images)
    with pytest.raises(ConfigError, match="no holdout split"):
        Loader(full, "holdout", 4, "cpu", False, synthetic_cfg(image_size=8), 0)


@pytest.mark.parametrize(
    "kw, classes, size, needle",
    [
        ({"subset": 0}, 3, 8, "subset"),
        ({"subset": 500}, 3, 8, "subset"),
        ({"holdout": 200}, 3, 8, "holdout"),
        ({"holdout": -1}, 3, 8, "holdout"),
        ({"holdout": 20, "subset": 190}, 3, 8, "subset"),
        ({"train_eval": 0}, 3, 8, "train_eval"),
        ({"crop": 9}, 3, 8, "crop"),
        ({"test_views": 5}, 3, 8, "test_views"),
        ({"image_size": 8}, 3, 10, "input_size"),
        ({"pca_noise": -0.1}, 3, 8, "pca_noise"),
        ({"image_size": 8, "crop": 6}, 3, 8, "input_size"),
        ({"synthetic_classes": 4}, 3, 8, "synthetic_classes"),
        ({"dataset": "folder"}, 3, 8, "--data-dir"),
        ({"dataset": "mnist"}, 3, 8, "dataset"),
    ],
)
def test_load_dataset_rejects_bad_configs(kw, classes, size, needle):
    with pytest.raises(ConfigError) as e:
        load_dataset(synthetic_cfg(**kw), classes, size)
    msg = str(e.value)
    assert "\n" not in msg and needle in msg


def test_loader_too_few_images_for_ranks():
    ds = indexed_dataset(2)
    with pytest.raises(DataError):
        Loader(ds, "train", 4, "cpu", True, AUG, 0, shard=(0, 3))


# ----------------------------------------------------------------------------- synthetic


def test_synthetic_is_deterministic():
    a = make_synthetic(64, 16, 4, 10, seed=3)
    b = make_synthetic(64, 16, 4, 10, seed=3)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    c = make_synthetic(64, 16, 4, 10, seed=4)
    assert not torch.equal(a[0], c[0])
    train = {bytes(img.numpy()) for img in a[0]}
    assert not any(bytes(img.numpy()) in train for img in a[2])  # test images are new draws
    d = make_synthetic(32, 16, 4, 10, seed=3)
    assert torch.equal(a[2], d[2]) and torch.equal(a[3], d[3])  # the test split ignores n_train


@pytest.mark.parametrize("size, classes", [(1, 1), (5, 7), (17, 3), (32, 10)])
def test_synthetic_shapes(size, classes):
    tx, ty, ex, ey = make_synthetic(70, 21, classes, size)
    assert tx.shape == (70, 3, size, size) and ex.shape == (21, 3, size, size)
    assert tx.dtype == ex.dtype == torch.uint8 and ty.dtype == ey.dtype == torch.int64
    counts = torch.bincount(ty, minlength=classes)
    assert counts.max() - counts.min() <= 1  # balanced
    assert int(ty.max()) < classes and int(ty.min()) >= 0


def test_synthetic_is_learnable():
    torch.manual_seed(0)
    cfg = synthetic_cfg(synthetic_train=2048, synthetic_test=512, image_size=16, flip=False)
    ds = load_dataset(cfg, num_classes=10, input_size=16)
    model = torch.nn.Linear(3 * 16 * 16, 10)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    train = Loader(ds, "train", 64, "cpu", True, cfg, seed=0)
    steps = 0
    for epoch in range(4):
        for x, y in train.epoch(epoch):
            loss = torch.nn.functional.cross_entropy(model(x.flatten(1) / 64), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
    assert steps == 128
    wrong = total = 0
    with torch.no_grad():
        for x, y in Loader(ds, "test", 256, "cpu", False, cfg, seed=0).epoch(0):
            wrong += int((model(x.flatten(1) / 64).argmax(1) != y).sum())
            total += len(y)
    assert total == 512 and wrong / total < 0.3  # chance is 0.9
