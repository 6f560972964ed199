"""`repro bench`: throughput against a stable reference, as ratios measured side by side in one run.

Never a timed test: absolute numbers depend on the machine (and on whatever else runs on
it), so every figure is a ratio of things timed in the same process, in interleaved
repetitions (A B C A B C ...), so that load from other processes hits them alike; each
rate is the median over the repetitions.

1. `training`, for `cifar-80sec` and `alexnet-cifar` at batch 128 on CIFAR-10 (the real one
   when it can be found, else synthetic data of its shape):
     reference  the same net written in plain torch.nn (`reference_net`: nn.LocalResponseNorm
                with the mapped alpha), fp32, NCHW, eager, torch.optim.SGD: forward +
                backward + step on one pre-made batch. What a user would write.
     harness    `repro train`'s whole default step: the on-device Loader (crops and flips as
                the model's config has them), the model, PaperSGD, under the default
                runtime.precision and runtime.channels_last.
   and the harness under the other numerics (fp32 in the other layout; bf16 autocast), so the
   README can show what each buys. speedup = harness / reference.
2. `lrn`: LRN forward + backward at alexnet-cifar's norm1 and norm2 inputs and AlexNet's
   norm1 input, each split into its two columns: ours vs torch.nn.LocalResponseNorm.
3. `layout`: max-pooling, the grouped column convolution and the loader (batch plus the
   NHWC copy) in channels_last over NCHW: the layout must not slow them down.
4. `imagenet` (opt-in, `--imagenet BATCH`: minutes per step on a small CPU): the paper's
   AlexNet (two columns, 224x224 inputs, 1000 classes), forward + backward + PaperSGD step on
   one pre-made batch, fp32 NCHW, fp32 channels_last and bf16 channels_last, interleaved.
5. `profile` (instead of the rest, `--profile`): where the harness step's time goes on the CPU
   (torch.profiler), by part: convolutions, LRN, pooling, FC layers, loader, optimizer, casts.
"""

from __future__ import annotations

import functools
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

import torch
import torch.nn.functional as F
from torch import nn

from repro import provenance
from repro.config import RunConfig, RuntimeConfig
from repro.data import Loader, load_dataset
from repro.errors import DataError
from repro.layers import LocalResponseNorm
from repro.models import build, make_config
from repro.train import autocast, make_optimizer, resolve_device, with_memory_format

MODELS = ("cifar-80sec", "alexnet-cifar")
BATCH = 128


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def interleaved(steps: dict[str, Callable[[], int]], device: torch.device, seconds: float,
                warmup: int = 2) -> dict[str, dict[str, float]]:
    """Images per second of each step (a callable returning the images it processed): after
    `warmup` calls each, rounds of one call of every step in turn until each step has had
    about `seconds`; the median over rounds, and the round count."""
    for step in steps.values():
        for _ in range(warmup):
            step()
    _sync(device)
    rates: dict[str, list[float]] = {name: [] for name in steps}
    spent = dict.fromkeys(steps, 0.0)
    while min(spent.values()) < seconds or len(rates[next(iter(steps))]) < 3:
        for name, step in steps.items():
            t0 = time.perf_counter()
            n = step()
            _sync(device)
            dt = time.perf_counter() - t0
            spent[name] += dt
            rates[name].append(n / dt)
    return {name: {"img_s": statistics.median(r), "rounds": len(r)} for name, r in rates.items()}


# ---------------------------------------------------------------- the plain-torch reference


class _ColumnLRN(nn.Module):
    """nn.LocalResponseNorm over each of `columns` equal blocks of maps (AlexNet's columns)."""

    def __init__(self, columns: int, **lrn):
        super().__init__()
        self.columns, self.lrn = columns, nn.LocalResponseNorm(**lrn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        return self.lrn(x.reshape(n * self.columns, c // self.columns, h, w)).reshape(n, c, h, w)


def reference_net(name: str) -> nn.Sequential:
    """`name`'s architecture written independently of repro.models, in plain torch.nn."""
    if name == "cifar-80sec":  # cuda-convnet layers-80sec.cfg
        return nn.Sequential(
            nn.Conv2d(3, 32, 5, padding=2), nn.MaxPool2d(3, 2, ceil_mode=True), nn.ReLU(),
            nn.Conv2d(32, 32, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False),
            nn.Conv2d(32, 64, 5, padding=2), nn.ReLU(), nn.AvgPool2d(3, 2, ceil_mode=True, count_include_pad=False),
            nn.Flatten(), nn.Linear(64 * 4 * 4, 64), nn.ReLU(), nn.Linear(64, 10))
    if name == "alexnet-cifar":  # AlexNet's topology at a quarter width, 24x24 crops, two columns
        lrn = {"size": 5, "alpha": 5 * 1e-4, "beta": 0.75, "k": 2.0}  # paper §3.3 in torch's alpha/n form
        pool = lambda: nn.MaxPool2d(3, 2, ceil_mode=True)  # noqa: E731  paper §3.4
        return nn.Sequential(
            nn.Conv2d(3, 24, 5, padding=2), nn.ReLU(), _ColumnLRN(2, **lrn), pool(),
            nn.Conv2d(24, 64, 5, padding=2, groups=2), nn.ReLU(), _ColumnLRN(2, **lrn), pool(),
            nn.Conv2d(64, 96, 3, padding=1), nn.ReLU(),
            nn.Conv2d(96, 96, 3, padding=1, groups=2), nn.ReLU(),
            nn.Conv2d(96, 64, 3, padding=1, groups=2), nn.ReLU(), pool(),
            nn.Flatten(), nn.Linear(64 * 3 * 3, 512), nn.ReLU(), nn.Dropout(0.5),
            nn.Linear(512, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10))
    raise ValueError(f"no reference net for {name!r}; have {', '.join(MODELS)}")


def _reference_step(name: str, cfg: RunConfig, x: torch.Tensor, y: torch.Tensor) -> Callable[[], int]:
    """fwd + bwd + step of the plain-torch net on one fixed batch (fp32, NCHW, eager)."""
    net = reference_net(name).to(x.device).train()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.optim.lr, momentum=cfg.optim.momentum, weight_decay=5e-4)
    x = x.contiguous()

    def step() -> int:
        loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return y.shape[0]

    return step


# ---------------------------------------------------------------- the harness


def _dataset(name: str, data_dir: str | None) -> tuple[RunConfig, object]:
    """`name`'s default config and data: the real CIFAR-10 if it can be found, else synthetic."""
    cfg = make_config(name, {"data.data_dir": data_dir})
    try:
        return cfg, load_dataset(cfg.data, cfg.model.num_classes, cfg.model.input_size)
    except DataError:
        cfg = make_config(name, {"data.dataset": "synthetic", "data.synthetic_train": 10_000,
                                 "data.synthetic_test": 1_000})
        return cfg, load_dataset(cfg.data, cfg.model.num_classes, cfg.model.input_size)


def _loader(cfg: RunConfig, ds, device: torch.device) -> Loader:
    """The training Loader exactly as train.run builds it (crop defaults to the input size)."""
    data_cfg = replace(cfg.data, crop=cfg.data.crop or cfg.model.input_size)
    return Loader(ds, "train", cfg.optim.batch_size, device, train=True, cfg=data_cfg, seed=cfg.seed)


def _endless(loader: Loader):
    epoch = 1
    while True:
        yield from loader.epoch(epoch)
        epoch += 1


def _harness_step(cfg: RunConfig, ds, device: torch.device) -> Callable[[], int]:
    """train.run's step under cfg.runtime's numerics: next batch from the on-device Loader
    (augmentation included; under a profiler, recorded as "loader"), then `_sgd_step`."""
    torch.manual_seed(cfg.seed)
    model = _model(cfg, device)  # the init draws first, as before the loader
    batches = _endless(_loader(cfg, ds, device))

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.profiler.record_function("loader"):  # a no-op unless profiling
            return next(batches)

    return _sgd_step(model, cfg, device, batch)


def _model(cfg: RunConfig, device: torch.device) -> nn.Module:
    """cfg's model on `device`, in training mode and cfg.runtime's layout."""
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    return with_memory_format(build(cfg.model).to(device).train(), fmt)


def _sgd_step(model: nn.Module, cfg: RunConfig, device: torch.device,
              batch: Callable[[], tuple[torch.Tensor, torch.Tensor]]) -> Callable[[], int]:
    """One call: `batch()`'s images in cfg.runtime's layout (NHWC copy if channels_last; none
    if they are in it already), forward (autocast if bf16), fp32 loss, backward, PaperSGD step."""
    fmt = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    opt = make_optimizer(model, cfg)
    amp = autocast(cfg.runtime.precision, device)

    def step() -> int:
        x, y = batch()
        x = x.contiguous(memory_format=fmt)
        with amp():
            loss = F.cross_entropy(model(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return y.shape[0]

    return step


NUMERICS = (("fp32", False), ("fp32", True), ("bf16", True))  # the settings `imagenet` times


def imagenet_step(device: torch.device, seconds: float, batch: int) -> dict:
    """AlexNet's own step at ImageNet shape under each of NUMERICS (img/s), and their ratios
    to fp32 NCHW. Synthetic inputs: the step's cost does not depend on the pixels."""
    cfg = make_config("alexnet", {"optim.batch_size": batch})
    torch.manual_seed(0)
    side = cfg.model.input_size
    x = torch.randn(batch, 3, side, side, device=device)
    y = torch.randint(0, cfg.model.num_classes, (batch,), device=device)
    steps = {}
    for precision, cl in NUMERICS:
        run_cfg = replace(cfg, runtime=replace(cfg.runtime, precision=precision, channels_last=cl))
        laid_out = x.contiguous(memory_format=torch.channels_last if cl else torch.contiguous_format)
        steps[_numerics_name(precision, cl)] = _sgd_step(_model(run_cfg, device), run_cfg, device,
                                                         lambda xs=laid_out: (xs, y))
    rates = interleaved(steps, device, seconds)
    base = rates[_numerics_name("fp32", False)]["img_s"]
    rounds = rates[_numerics_name(*NUMERICS[0])]["rounds"]
    return {"alexnet": {"batch": batch, "input": [3, side, side], "rounds": rounds,
                        "img_s_by_numerics": {k: v["img_s"] for k, v in rates.items()},
                        "over_fp32_nchw": {k: v["img_s"] / base for k, v in rates.items()}}}


def _numerics_name(precision: str, channels_last: bool) -> str:
    return f"{precision}-{'channels_last' if channels_last else 'nchw'}"


def training_throughput(name: str, device: torch.device, seconds: float, data_dir: str | None) -> dict:
    """Reference vs harness for one model; the harness under the default numerics, fp32 in the
    other layout, and bf16 in the default layout, all interleaved."""
    cfg, ds = _dataset(name, data_dir)
    default = RuntimeConfig()
    numerics = [(default.precision, default.channels_last), ("fp32", not default.channels_last),
                ("bf16", default.channels_last)]
    numerics = list(dict.fromkeys(numerics))  # the default may itself be bf16
    x, y = next(iter(_loader(cfg, ds, device).epoch(1)))
    steps = {"reference": _reference_step(name, cfg, x, y)}
    for precision, cl in numerics:
        run_cfg = replace(cfg, runtime=replace(cfg.runtime, precision=precision, channels_last=cl))
        steps[_numerics_name(precision, cl)] = _harness_step(run_cfg, ds, device)
    rates = interleaved(steps, device, seconds)
    ref = rates["reference"]["img_s"]
    harness = rates[_numerics_name(default.precision, default.channels_last)]["img_s"]
    bf16 = rates[_numerics_name("bf16", default.channels_last)]["img_s"]
    return {
        "reference_img_s": ref, "harness_img_s": harness, "speedup": harness / ref,
        "precision": default.precision, "channels_last": default.channels_last,
        "harness_bf16_img_s": bf16, "speedup_bf16": bf16 / ref,
        "harness_by_numerics_img_s": {k: v["img_s"] for k, v in rates.items() if k != "reference"},
        "rounds": rates["reference"]["rounds"], "batch": int(y.shape[0]), "data": ds.identity["name"],
        "input": list(x.shape[1:]),
    }


# ---------------------------------------------------------------- LRN and layout


# (batch, maps, side) of each LRN input, normalized per column (two columns)
LRN_SHAPES = {
    "alexnet-cifar-conv1": (BATCH, 24, 24),
    "alexnet-cifar-conv2": (BATCH, 64, 12),
    "alexnet-conv1": (32, 96, 55),  # paper §3.3: the norm1 input, batch 32 (128 would be 150 MB a tensor)
}


def _fwd_bwd(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, grad: torch.Tensor) -> Callable[[], int]:
    def step() -> int:
        x.grad = None
        f(x).backward(grad)
        return x.shape[0]
    return step


def lrn_throughput(device: torch.device, seconds: float) -> dict:
    """Ours (the fused LRN, as the model calls it) vs nn.LocalResponseNorm per column, fwd+bwd,
    fp32 NCHW, the paper's constants."""
    ours = LocalResponseNorm(5, 1e-4, 0.75, 2.0, convention="paper").to(device)  # paper §3.3
    theirs = _ColumnLRN(2, **ours.torch_equivalent()).to(device)
    out = {}
    for key, (n, c, side) in LRN_SHAPES.items():
        torch.manual_seed(0)
        x = torch.randn(n, c, side, side, device=device).relu_().requires_grad_()
        grad = torch.randn_like(x)
        rates = interleaved({"ours": _fwd_bwd(functools.partial(ours, groups=2), x, grad),
                             "torch": _fwd_bwd(theirs, x, grad)}, device, seconds)
        a, b = rates["ours"]["img_s"], rates["torch"]["img_s"]
        out[key] = {"shape": [n, c, side, side], "columns": 2, "ours_img_s": a, "torch_img_s": b,
                    "ours_over_torch": a / b}
    return out


def layout_throughput(device: torch.device, seconds: float, data_dir: str | None) -> dict:
    """channels_last over NCHW, fwd+bwd, at alexnet-cifar's shapes: pool1, the grouped conv2,
    and the loader's batch (crops, flips) with its copy into the layout."""
    torch.manual_seed(0)
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)
    conv = nn.Conv2d(24, 64, 5, padding=2, groups=2).to(device)
    conv_cl = with_memory_format(nn.Conv2d(24, 64, 5, padding=2, groups=2).to(device), torch.channels_last)
    conv_cl.load_state_dict(conv.state_dict())
    cfg, ds = _dataset("alexnet-cifar", data_dir)
    cases = {
        "max_pool": (pool, pool, (BATCH, 24, 24)),
        "grouped_conv": (conv, conv_cl, (BATCH, 24, 12)),
    }
    out = {}
    for key, (nchw, nhwc, (n, c, side)) in cases.items():
        x = torch.randn(n, c, side, side, device=device).requires_grad_()
        x_cl = x.detach().contiguous(memory_format=torch.channels_last).requires_grad_()
        g = torch.ones_like(nchw(x))
        rates = interleaved({"nchw": _fwd_bwd(nchw, x, g), "channels_last": _fwd_bwd(nhwc, x_cl, g)}, device, seconds)
        out[key] = _layout_row(rates, [n, c, side, side])
    streams = {fmt: _endless(_loader(cfg, ds, device)) for fmt in (torch.contiguous_format, torch.channels_last)}

    def batch(fmt: torch.memory_format) -> Callable[[], int]:
        return lambda: next(streams[fmt])[0].contiguous(memory_format=fmt).shape[0]

    rates = interleaved({"nchw": batch(torch.contiguous_format), "channels_last": batch(torch.channels_last)},
                        device, seconds)
    out["loader"] = _layout_row(rates, [BATCH, 3, cfg.model.input_size, cfg.model.input_size])
    return out


def _layout_row(rates: dict, shape: list[int]) -> dict:
    a, b = rates["channels_last"]["img_s"], rates["nchw"]["img_s"]
    return {"shape": shape, "nchw_img_s": b, "channels_last_img_s": a, "channels_last_over_nchw": a / b}


# ---------------------------------------------------------------- where a step's time goes

# What each top-level profiler event of a harness step is part of (a name containing one of
# the strings); everything else is "other". Casts inside an op (autocast's, our LRN's fp32
# accumulation) count with that op; "casts" are the ones between ops, the NHWC copy included.
PROFILE_PARTS = (
    ("conv", ("aten::conv2d", "ConvolutionBackward")),
    ("LRN", ("_FusedCrossMapNorm",)),  # repro.layers' fused LRN, forward and backward
    ("pooling", ("max_pool2d", "MaxPool2D", "avg_pool2d", "AvgPool2D")),
    ("fc", ("aten::linear", "AddmmBackward", "MmBackward")),
    ("loader", ("loader",)),
    ("optimizer", ("Optimizer.", "AccumulateGrad")),
    ("casts", ("aten::to", "aten::_to_copy", "ToCopyBackward", "aten::contiguous")),
)


def _part(event: str) -> str:
    return next((part for part, keys in PROFILE_PARTS if any(k in event for k in keys)), "other")


def profile_step(name: str, precision: str, device: torch.device, steps: int, data_dir: str | None) -> dict:
    """Where `name`'s harness step (default layout, `precision`) spends its time: torch.profiler
    over `steps` steps after two warm-up steps, each top-level CPU event's time summed by
    PROFILE_PARTS; the shares of their sum and the milliseconds per step. CPU only (a GPU's
    kernels run asynchronously, so CPU event times would not say where its time goes)."""
    from torch.profiler import ProfilerActivity, profile

    cfg, ds = _dataset(name, data_dir)
    cfg = replace(cfg, runtime=replace(cfg.runtime, precision=precision))
    step = _harness_step(cfg, ds, device)
    for _ in range(2):
        step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    totals = dict.fromkeys([part for part, _ in PROFILE_PARTS] + ["other"], 0.0)
    for e in prof.events():
        if e.cpu_parent is None:
            totals[_part(e.name)] += e.cpu_time_total  # microseconds, children included
    whole = sum(totals.values())
    return {"ms_per_step": whole / steps / 1e3, "shares": {k: v / whole for k, v in totals.items()},
            "steps": steps, "batch": BATCH, "precision": precision, "channels_last": cfg.runtime.channels_last,
            "data": ds.identity["name"]}


def profile_all(steps: int = 5, data_dir: str | None = None, threads: int | None = None,
                models: tuple[str, ...] = MODELS) -> dict:
    """`repro bench --profile`: profile_step for every model in fp32 and bf16, on the CPU."""
    device = torch.device("cpu")
    if threads:
        torch.set_num_threads(threads)
    where = machine(device)
    result = {name: {p: profile_step(name, p, device, steps, data_dir) for p in ("fp32", "bf16")} for name in models}
    where["load_average_at_end"] = list(os.getloadavg())
    return {"profile": result, "machine": where}


def machine(device: torch.device) -> dict:
    """Where the figures come from: provenance, the CPU, and its load around the run."""
    env = provenance.environment(device)
    keep = ("torch", "python", "platform", "device", "device_name", "threads", "cpu_count", "hostname",
            "git_revision", "git_dirty", "command", "started_at")
    return {k: env[k] for k in keep} | {"cpu_features": provenance.cpu_features(),
                                        "load_average_at_start": list(os.getloadavg())}


def run_all(device_name: str = "auto", seconds: float = 3.0, data_dir: str | None = None,
            threads: int | None = None, models: tuple[str, ...] = MODELS, imagenet: int | None = None) -> dict:
    """Every figure of the module docstring, as one JSON-ready dict."""
    device = resolve_device(device_name)
    if threads:
        torch.set_num_threads(threads)
    where = machine(device)
    result = {
        "training": {name: training_throughput(name, device, seconds, data_dir) for name in models},
        "lrn": lrn_throughput(device, seconds / 2),
        "layout": layout_throughput(device, seconds / 2, data_dir),
    }
    if imagenet:
        result["imagenet"] = imagenet_step(device, seconds, imagenet)
    where["load_average_at_end"] = list(os.getloadavg())
    return result | {"seconds_per_figure": seconds, "machine": where}
