"""`repro bench`: throughput figures as ratios measured side by side in one run.

Never a timed test: absolute numbers depend on the machine, ratios measured in the same
process on the same net, batch and data are what we compare against targets.

1. Training throughput, images/s, with `cifar-80sec` at batch 128 on CIFAR-10-sized data
   (32x32, the real CIFAR-10 when it can be found, else synthetic of the same shape):
     pure     forward + backward + step on one pre-made batch already on the device
     harness  `repro train`'s step: the on-device Loader (uint8 tensor on the device,
              batched crops, flips and PCA colour noise), then forward + backward + step
     naive    torchvision-style per-image PIL transforms (RandomCrop with padding,
              RandomHorizontalFlip, ToTensor, Normalize) through a DataLoader
   Targets (the issue's): harness/pure >= 0.95 and harness/naive >= 3.
2. LRN forward + backward at AlexNet's conv1 shape: ours vs torch.nn.LocalResponseNorm.
3. The columns: a grouped convolution (groups=2) vs two separate column convolutions vs
   one groups=1 convolution with the same output (block-diagonal weights), at conv2's
   shape, forward + backward.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from repro import provenance
from repro.data import Loader, load_dataset
from repro.errors import DataError
from repro.layers import LocalResponseNorm
from repro.models import build, make_config
from repro.train import make_optimizer, resolve_device


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _rate(step: Callable[[], int], device: torch.device, seconds: float, warmup: int = 3) -> float:
    """Images per second of `step` (which returns the images it processed), after warm-up."""
    for _ in range(warmup):
        step()
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        n += step()
        _sync(device)
        if time.perf_counter() - t0 >= seconds:
            break
    return n / (time.perf_counter() - t0)


def _cifar_like(data_dir: str | None):
    """The real CIFAR-10 if it can be found, else synthetic data of the same shape."""
    base = make_config("cifar-80sec", {"data.data_dir": data_dir})
    try:
        return base, load_dataset(base.data, 10, 32)
    except DataError:
        cfg = make_config("cifar-80sec", {"data.dataset": "synthetic", "data.synthetic_train": 10_000,
                                          "data.synthetic_test": 1_000})
        return cfg, load_dataset(cfg.data, 10, 32)


def training_throughput(device: torch.device, seconds: float, data_dir: str | None, batch: int = 128) -> dict:
    cfg, ds = _cifar_like(data_dir)
    # the harness step with all of §4.1's training-time augmentation switched on
    data_cfg = replace(cfg.data, crop=32, flip=True, pca_noise=0.1)
    torch.manual_seed(0)
    model = build(cfg.model).to(device).train()
    opt = make_optimizer(model, cfg)

    def train_step(x: torch.Tensor, y: torch.Tensor) -> int:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return y.shape[0]

    loader = Loader(ds, "train", batch, device, train=True, cfg=data_cfg, seed=0)
    x0, y0 = next(iter(loader.epoch(1)))
    pure = _rate(lambda: train_step(x0, y0), device, seconds)

    def batches():
        epoch = 1
        while True:
            yield from loader.epoch(epoch)
            epoch += 1

    stream = batches()
    harness = _rate(lambda: train_step(*next(stream)), device, seconds)

    naive_stream = _naive_batches(ds, batch)
    naive = _rate(lambda: train_step(*[t.to(device) for t in next(naive_stream)]), device, seconds)
    return {
        "net": "cifar-80sec", "batch": batch, "data": ds.identity["name"],
        "pure_img_s": pure, "harness_img_s": harness, "naive_img_s": naive,
        "harness_over_pure": harness / pure, "harness_over_naive": harness / naive,
        "targets": {"harness_over_pure": 0.95, "harness_over_naive": 3.0},
    }


def _naive_batches(ds, batch: int):
    """What a torchvision tutorial does: PIL images, per-image transforms, a DataLoader."""
    import torchvision.transforms as T
    from PIL import Image

    images = ds.train.images.permute(0, 2, 3, 1).numpy()  # N, H, W, C uint8
    labels = ds.train.labels
    mean = (ds.mean.mean(dim=(1, 2)) / 255).tolist()
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(),
                    T.Normalize(mean, [1 / 255] * 3)])

    class PerImage(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(images)

        def __getitem__(self, i: int):
            return tf(Image.fromarray(images[i])), labels[i]

    loader = torch.utils.data.DataLoader(PerImage(), batch_size=batch, shuffle=True, num_workers=2,
                                         drop_last=True, persistent_workers=True)
    while True:
        yield from loader


def lrn_throughput(device: torch.device, seconds: float, batch: int = 32) -> dict:
    """AlexNet's norm1 input: (batch, 96, 55, 55); the paper's LRN vs torch's module."""
    x = torch.randn(batch, 96, 55, 55, device=device, requires_grad=True)
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0, convention="paper").to(device)
    theirs = nn.LocalResponseNorm(**ours.torch_equivalent()).to(device)

    def step(m):
        def f():
            m(x).sum().backward()
            return batch
        return f

    a, b = _rate(step(ours), device, seconds), _rate(step(theirs), device, seconds)
    return {"shape": [batch, 96, 55, 55], "ours_img_s": a, "torch_img_s": b, "ours_over_torch": a / b}


def column_conv_throughput(device: torch.device, seconds: float, batch: int = 32) -> dict:
    """conv2's shape: 96 maps in (48 per column), 256 out (128 per column), 5x5, 27x27."""
    torch.manual_seed(0)
    x = torch.randn(batch, 96, 27, 27, device=device, requires_grad=True)
    grouped = nn.Conv2d(96, 256, 5, padding=2, groups=2).to(device)
    halves = nn.ModuleList([nn.Conv2d(48, 128, 5, padding=2) for _ in range(2)]).to(device)
    dense = nn.Conv2d(96, 256, 5, padding=2).to(device)
    with torch.no_grad():  # the same function three ways
        w = grouped.weight.view(2, 128, 48, 5, 5)
        dense.weight.zero_()
        for c in range(2):
            halves[c].weight.copy_(w[c])
            halves[c].bias.copy_(grouped.bias[c * 128:(c + 1) * 128])
            dense.weight[c * 128:(c + 1) * 128, c * 48:(c + 1) * 48] = w[c]
        dense.bias.copy_(grouped.bias)
        ref = grouped(x)
        assert torch.allclose(torch.cat([halves[c](x[:, c * 48:(c + 1) * 48]) for c in range(2)], 1), ref, atol=1e-4)
        assert torch.allclose(dense(x), ref, atol=1e-4)

    def run(f):
        def g():
            f().sum().backward()
            return batch
        return g

    rates = {
        "grouped_img_s": _rate(run(lambda: grouped(x)), device, seconds),
        "two_convs_img_s": _rate(run(lambda: torch.cat([halves[c](x[:, c * 48:(c + 1) * 48]) for c in range(2)], 1)),
                                 device, seconds),
        "dense_img_s": _rate(run(lambda: dense(x)), device, seconds),
    }
    rates["fastest"] = max(("grouped", "two_convs", "dense"), key=lambda k: rates[f"{k}_img_s"])
    return {"shape": [batch, 96, 27, 27], **rates}


def run_all(device_name: str = "auto", seconds: float = 5.0, data_dir: str | None = None,
            threads: int | None = None) -> dict:
    device = resolve_device(device_name)
    if threads:
        torch.set_num_threads(threads)
    env = provenance.environment(device)
    return {
        "environment": {k: env[k] for k in ("torch", "device", "device_name", "threads", "cpu_count",
                                             "git_revision", "git_dirty", "started_at")},
        "seconds_per_figure": seconds,
        "training": training_throughput(device, seconds, data_dir),
        "lrn": lrn_throughput(device, seconds),
        "columns": column_conv_throughput(device, seconds),
    }
