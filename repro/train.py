"""Training one run, the paper's way (§5), in a run directory that survives being killed.

    cfg --> model, PaperSGD, lr schedule, data loaders --> epochs --> run directory

A run directory (its files: repro.rundir) holds everything needed to trust and to continue
a run: the resolved config, the environment, the dataset's identity, one metrics row per
epoch, a checkpoint (model, optimizer, scheduler, every RNG state, epoch, the metrics so
far) and, written last, a summary whose status is finished | target-reached | diverged.

The checkpoint is written atomically at the end of every epoch, and everything random in
an epoch (order, crops, flips, colour noise) is a pure function of (seed, epoch), with the
dropout RNG saved in the checkpoint: rerunning the same command after a `kill -9` resumes
at the last finished epoch and, with `--deterministic` on a CPU, ends with exactly the
metrics of an uninterrupted run. A finished run is never trained twice.

The paper's procedure (§5): batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided
by 10 when the validation error stops improving, three times, then stop. The cuda-convnet
nets use their layer files' step schedules instead (repro.models.registry).
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro import distributed, placement, provenance, rundir
from repro.config import DataConfig, RunConfig
from repro.data import Dataset, Loader, load_dataset
from repro.errors import ConfigError, DivergedError
from repro.files import atomic
from repro.models import build
from repro.optim import PaperSGD

CHECK_EVERY = 25  # steps between non-finite-loss checks (each check syncs a GPU)


# ---------------------------------------------------------------- small helpers


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available here")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device {name!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device 'mps' requested but MPS is not available here")
    return device


def autocast(precision: str, device: torch.device) -> Callable[[], AbstractContextManager]:
    """A factory of the forward pass's autocast context: bfloat16 on a CPU or CUDA device for
    "bf16", none for "fp32". ConfigError where this device has no bf16 autocast."""
    if precision == "fp32":
        return nullcontext
    if precision != "bf16":
        raise ConfigError(f"runtime.precision={precision!r}: choose fp32 or bf16")
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"runtime.precision=bf16 runs on cpu or cuda, not {device.type}; use fp32 there")
    return lambda: torch.autocast(device.type, dtype=torch.bfloat16)


def with_memory_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """`model` with its weights in `memory_format`; for channels_last also a pre-hook that
    brings every 4-d input to it, so training and evaluation batches alike run NHWC."""
    model = model.to(memory_format=memory_format)
    if memory_format == torch.channels_last:
        def nhwc(_, args):
            return (args[0].contiguous(memory_format=memory_format), *args[1:]) if args[0].dim() == 4 else None

        model.register_forward_pre_hook(nhwc)
    return model


def make_optimizer(model: nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """PaperSGD (§5) over the model's per-layer groups (weight decay, bias lr multiplier)."""
    o = cfg.optim
    groups = model.optim_groups(o.weight_decay) if hasattr(model, "optim_groups") else [
        {"params": list(model.parameters()), "lr_mult": 1.0, "weight_decay": o.weight_decay or 0.0}]
    for g in groups:
        g["lr"] = o.lr * g["lr_mult"]
    if o.optimizer == "paper-sgd":
        return PaperSGD(groups, lr=o.lr, momentum=o.momentum)  # paper §5
    return torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum)


def make_scheduler(opt: torch.optim.Optimizer, cfg: RunConfig):
    o = cfg.optim
    if o.schedule == "plateau":
        # paper §5: "divide the learning rate by 10 when the validation error rate stopped improving"
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=o.lr_factor, patience=o.patience)
    if o.schedule == "step":
        return torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(o.milestones), gamma=o.lr_factor)
    return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)


def rng_state(device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: dict, device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def top_errors(logits_or_probs: torch.Tensor, y: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-1 wrong count, top-k wrong count) for one batch, as tensors (no sync)."""
    k = min(k, logits_or_probs.shape[1])
    top = logits_or_probs.topk(k, dim=1).indices
    hit = top == y[:, None]
    return (~hit[:, 0]).sum(), (~hit.any(dim=1)).sum()


# ---------------------------------------------------------------- evaluation


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader, device: torch.device, amp) -> dict:
    """Loss, top-1 and top-5 error. With 10 views the softmax outputs are averaged (paper §4.1)."""
    model.eval()
    n = 0
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    e1 = torch.zeros((), device=device, dtype=torch.long)
    e5 = torch.zeros((), device=device, dtype=torch.long)
    for x, y in loader.epoch(0):
        with amp():
            if x.dim() == 5:  # (views, B, C, H, W)
                v, b = x.shape[:2]
                probs = model(x.flatten(0, 1)).float().softmax(-1).view(v, b, -1).mean(0)  # paper §4.1
            else:
                probs = model(x).float().softmax(-1)
        loss_sum += F.nll_loss(probs.clamp_min(1e-12).log(), y, reduction="sum").double()
        a, b5 = top_errors(probs, y)
        e1 += a
        e5 += b5
        n += y.shape[0]
    n_all, loss_all, e1_all, e5_all = distributed.sum_scalars(device, n, loss_sum, e1, e5)
    model.train()
    return {"loss": loss_all / n_all, "error": e1_all / n_all, "top5_error": e5_all / n_all}


# ---------------------------------------------------------------- the run


def run(cfg: RunConfig, out: Path | str, *, quiet: bool = False, log: bool = False,
        on_step: Callable[[int, int], None] | None = None) -> dict:
    """Train one run in run directory `out` and return its summary (see module docstring).

    `quiet` hides the progress bar; with `log`, a quiet run prints one line per epoch.
    Returns a stored summary at once if the run already finished; resumes from
    `checkpoint.pt` if one exists; raises DivergedError (after recording the run as
    diverged) if the loss becomes non-finite, and again on a rerun of a diverged run.
    Raises ConfigError if `out` holds another config's run.
    """
    out = Path(out)
    done = _stored_summary(cfg, out)
    if done is not None:
        return done
    _check_same_run(out, cfg)
    s = _setup(cfg, out)
    start_epoch, drops, history = _resume_or_start(s)

    total_steps = len(s.train_loader) * cfg.epochs
    status = rundir.TARGET_REACHED if history and _target_reached(cfg, history[-1]) else rundir.FINISHED
    # killed after the checkpoint of its last epoch but before summary.json: train no further
    last_epoch = start_epoch if history and _should_stop(cfg, history[-1], drops) else cfg.epochs
    wall0 = time.perf_counter()
    progress = _Progress(quiet or not s.lead, log and s.lead, f"{cfg.model.name} seed {cfg.seed}", total_steps,
                         s.step)
    try:
        for epoch in range(start_epoch + 1, last_epoch + 1):
            row = _train_epoch(s, epoch, progress, on_step, total_steps)
            history.append(row)
            drops += _schedule_step(s, row)
            if s.lead:
                _save_checkpoint(rundir.checkpoint_path(out), s.model, s.opt, s.sched, s.device, epoch, drops,
                                 history, cfg)
                rundir.write_metrics(out, history)
            progress.epoch_done(row)
            if _target_reached(cfg, row):
                status = rundir.TARGET_REACHED
            if _should_stop(cfg, row, drops):
                break
    except _Diverged as d:
        _record_divergence(s, history, d, wall0)
    finally:
        progress.close()
    return _finish(s, status, history, wall0)


@dataclass
class _Session:
    """Everything one run trains with: where, on what data, which model and optimizer."""

    cfg: RunConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    ds: Dataset
    data_cfg: DataConfig
    per_rank: int
    train_loader: Loader
    val_loader: Loader
    model: nn.Module
    net: nn.Module  # the model as trained: DDP-wrapped and/or compiled
    opt: torch.optim.Optimizer
    sched: Any
    amp: Callable[[], Any]
    memory_format: torch.memory_format
    step: int = 0  # optimizer steps so far, over all epochs
    warned: bool = False  # the "not learning" warning was given

    @property
    def lead(self) -> bool:
        return self.rank == 0


def _stored_summary(cfg: RunConfig, out: Path) -> dict | None:
    """A finished run's stored summary; DivergedError for a run that diverged; None otherwise."""
    done = rundir.read_summary(out)
    if done and done.get("status") in rundir.TERMINAL and done.get("hash") == cfg.hash():
        if done["status"] == rundir.DIVERGED:
            raise DivergedError(f"run already diverged (recorded in {out / rundir.SUMMARY}); "
                                "lower the lr (--set lr=...) or use another --out")
        return done
    return None


def _setup(cfg: RunConfig, out: Path) -> _Session:
    """Devices and threads, the data loaders, the model, its optimizer and lr schedule."""
    rank, world = distributed.rank(), distributed.world_size()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)

    device = resolve_device(cfg.runtime.device) if world == 1 else distributed.device(cfg.runtime.device)
    columns_on = placement.resolve_devices(cfg, world)  # --devices: the two columns on two devices
    device = columns_on[0] if columns_on else device  # data, labels and logits live on column 1's device
    _set_runtime(cfg, device)

    torch.manual_seed(cfg.seed)  # the init draws
    ds: Dataset = load_dataset(cfg.data, cfg.model.num_classes, cfg.model.input_size)
    crop = cfg.data.crop or cfg.model.input_size
    data_cfg = replace(cfg.data, crop=crop)
    if cfg.optim.batch_size % world:
        raise ConfigError(f"optim.batch_size={cfg.optim.batch_size} does not split over {world} processes")
    per_rank = cfg.optim.batch_size // world
    workers = min(8, os.cpu_count() or 1)  # used by folder datasets only; in-memory data needs none
    train_loader = Loader(ds, "train", per_rank, device, train=True, cfg=data_cfg, seed=cfg.seed, shard=(rank, world),
                          workers=workers)
    val_loader = Loader(ds, "holdout" if ds.holdout is not None else "test", max(per_rank, 256), device, train=False, cfg=data_cfg, seed=cfg.seed,
                        shard=(rank, world))

    model = build(cfg.model)
    model = placement.place_columns(model, columns_on) if columns_on else model.to(device)
    memory_format = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    model = with_memory_format(model, memory_format)  # runtime.channels_last: NHWC weights and inputs
    opt = make_optimizer(model, cfg)
    sched = make_scheduler(opt, cfg)
    net = distributed.wrap(model, device) if world > 1 else model
    if cfg.runtime.compile:
        net = torch.compile(net)
    amp = autocast(cfg.runtime.precision, device)  # runtime.precision: bf16 forward, fp32 loss
    return _Session(cfg, out, rank, world, device, ds, data_cfg, per_rank, train_loader, val_loader, model, net, opt,
                    sched, amp, memory_format)


def _set_runtime(cfg: RunConfig, device: torch.device) -> None:
    """Threads and (non-)deterministic kernels."""
    if cfg.runtime.threads:
        torch.set_num_threads(cfg.runtime.threads)
    if cfg.runtime.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=device.type != "cpu")
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True


def _resume_or_start(s: _Session) -> tuple[int, int, list[dict]]:
    """(epochs done, lr drops, metrics rows) from the checkpoint, or a fresh start whose
    config and dataset are recorded; then the environment (each resume noted) and metrics."""
    cfg, out = s.cfg, s.out
    history: list[dict] = []
    start_epoch, drops = 0, 0
    ckpt_path = rundir.checkpoint_path(out)
    if ckpt_path.exists():
        ckpt = torch.load(ckpt_path, map_location=s.device, weights_only=True)  # never runs code from the file
        if ckpt["hash"] != cfg.hash():
            raise ConfigError(f"{out}: holds a different run (hash {ckpt['hash']}, this config {cfg.hash()}); "
                              "use another --out")
        placement.load_states(s.model, s.opt, ckpt["model"], ckpt["optimizer"])  # single-device layout
        s.sched.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"], s.device)
        start_epoch, drops, history = ckpt["epoch"], ckpt["drops"], ckpt["history"]
    elif s.lead:
        rundir.write_config(out, cfg)
        rundir.write_dataset(out, s.ds.identity)
    if s.lead:
        env = provenance.environment(s.device) | {"world_size": s.world} | provenance.numerics(cfg.runtime)
        if start_epoch:  # keep the original record; note each resume
            first = rundir.read_env(out) or env
            env = first | {"resumes": first.get("resumes", []) + [env | {"from_epoch": start_epoch}]}
        rundir.write_env(out, env)
        rundir.write_metrics(out, history)
    s.step = len(s.train_loader) * start_epoch
    return start_epoch, drops, history


def _train_epoch(s: _Session, epoch: int, progress: _Progress, on_step: Callable[[int, int], None] | None,
                 total_steps: int) -> dict:
    """One pass over the training data, then the validation set: the epoch's metrics row."""
    cfg, device, net, opt, amp, memory_format = s.cfg, s.device, s.net, s.opt, s.amp, s.memory_format
    s.model.train()
    distributed.seed_epoch(cfg.seed, epoch)  # DDP: each rank its own dropout masks
    t0 = time.perf_counter()
    data_s = compute_s = 0.0
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    wrong = torch.zeros((), device=device, dtype=torch.long)
    seen = 0
    steps_per_epoch = len(s.train_loader)
    batches = iter(s.train_loader.epoch(epoch))
    for i in range(steps_per_epoch):
        td = time.perf_counter()
        x, y = next(batches)
        x = x.contiguous(memory_format=memory_format)
        tc = time.perf_counter()
        data_s += tc - td
        with amp():
            logits = net(x)
            loss = F.cross_entropy(logits.float(), y)  # mean over the batch: paper §5's <dL/dw>_D
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach().double() * y.shape[0]
        wrong += (logits.detach().argmax(1) != y).sum()
        seen += y.shape[0]
        s.step += 1
        if (i + 1) % CHECK_EVERY == 0 or i + 1 == steps_per_epoch:
            if not distributed.all_finite(loss_sum):  # every rank agrees, so all stop together
                raise _Diverged(epoch, s.step, loss.item())
            _warn_if_stalled(s, loss_sum, seen, progress)
        compute_s += time.perf_counter() - tc
        progress.advance(s.step, seen * s.world / max(time.perf_counter() - t0, 1e-9))
        if on_step is not None:
            on_step(s.step, total_steps)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    n_all, loss_all, wrong_all = distributed.sum_scalars(device, seen, loss_sum, wrong)
    val = evaluate(net, s.val_loader, device, amp)
    if not math.isfinite(val["loss"]):  # the last step's update broke the weights
        raise _Diverged(epoch, s.step, val["loss"])
    seconds = time.perf_counter() - t0
    return {
        "epoch": epoch,
        "lr": opt.param_groups[0]["lr"],
        "train_loss": loss_all / n_all,
        "train_error": wrong_all / n_all,  # top-1 over this epoch's training batches
        "val_loss": val["loss"],
        "val_error": val["error"],
        "val_top5_error": val["top5_error"],
        "seconds": seconds,
        "data_seconds": data_s,
        "compute_seconds": compute_s,
        "images_per_second": n_all / seconds,
        "images": int(n_all),
        "steps": s.step,
    }


def _warn_if_stalled(s: _Session, loss_sum: torch.Tensor, seen: int, progress: _Progress) -> None:
    """Once, after cfg.stall_steps: warn if the mean loss still sits near ln(classes)."""
    cfg = s.cfg
    if s.warned or s.step < cfg.stall_steps:
        return
    ln_c = math.log(cfg.model.num_classes)
    mean_loss = loss_sum.item() / seen
    if abs(mean_loss - ln_c) < 0.02 * ln_c:
        s.warned = True
        progress.warn(
            f"warning: loss {mean_loss:.3f} still sits at ln({cfg.model.num_classes})={ln_c:.3f} "
            f"after {s.step} steps: the net is not learning. Try another init "
            f"(--set init=caffe or bias_init=0.1) or lr (--set lr=...).")


def _schedule_step(s: _Session, row: dict) -> int:
    """Step the lr schedule after an epoch (plateau: on its validation error); 1 if the lr dropped."""
    before = [g["lr"] for g in s.opt.param_groups]
    if s.cfg.optim.schedule == "plateau":
        s.sched.step(row["val_error"])
    else:
        s.sched.step()
    return int([g["lr"] for g in s.opt.param_groups] < before)


def _record_divergence(s: _Session, history: list[dict], d: _Diverged, wall0: float) -> None:
    """Record the run as diverged (summary.json) and raise DivergedError."""
    summary = _summary(s.cfg, rundir.DIVERGED, history, None, wall0)
    # str: json.dumps would write a bare NaN/Infinity, which is not JSON
    summary["diverged_at"] = {"epoch": d.epoch, "step": d.step, "loss": str(d.loss)}
    if s.lead:
        rundir.write_metrics(s.out, history)
        rundir.write_summary(s.out, summary)
    raise DivergedError(f"run diverged: loss {d.loss} at epoch {d.epoch}, step {d.step}; "
                        f"recorded in {s.out / rundir.SUMMARY}. Lower the lr (--set lr=...).") from None


def _finish(s: _Session, status: str, history: list[dict], wall0: float) -> dict:
    """The test-set evaluation (with a holdout), then summary.json, written last."""
    test = None
    if s.cfg.data.holdout > 0:
        test = evaluate(s.net, Loader(s.ds, "test", max(s.per_rank, 256), s.device, train=False, cfg=s.data_cfg,
                                      seed=s.cfg.seed, shard=(s.rank, s.world)), s.device, s.amp)
    summary = _summary(s.cfg, status, history, test, wall0)
    if s.lead:
        rundir.write_summary(s.out, summary)
    return summary


def _check_same_run(out: Path, cfg: RunConfig) -> None:
    """ConfigError if `out` already holds a run of another config (config.json, else checkpoint)."""
    stored = rundir.stored_hash(out)
    if stored is None:
        return  # no config.json (or a torn one): the checkpoint's hash is checked on resume
    if stored != cfg.hash():
        raise ConfigError(f"{out}: holds a different run (hash {stored}, this config {cfg.hash()}); "
                          "use another --out")


def _target_reached(cfg: RunConfig, row: dict) -> bool:
    return cfg.target_train_error is not None and row["train_error"] <= cfg.target_train_error


def _should_stop(cfg: RunConfig, row: dict, drops: int) -> bool:
    """Stop before cfg.epochs: the target was reached (Figure 1), or the plateau schedule's
    lr was dropped max_drops times and the error stopped improving once more (paper §5:
    the lr was "reduced three times prior to termination")."""
    return _target_reached(cfg, row) or (cfg.optim.schedule == "plateau" and drops > cfg.optim.max_drops)


class _Diverged(Exception):
    def __init__(self, epoch: int, step: int, loss: float):
        self.epoch, self.step, self.loss = epoch, step, loss


def _save_checkpoint(path, model, opt, sched, device, epoch, drops, history, cfg) -> None:
    state = {
        "hash": cfg.hash(), "epoch": epoch, "drops": drops, "history": history,
        "model": placement.model_state(model), "optimizer": placement.optimizer_state(model, opt),
        "scheduler": sched.state_dict(),
        "rng": rng_state(device),
    }
    with atomic(path) as tmp:
        torch.save(state, tmp)


def _summary(cfg: RunConfig, status: str, history: list[dict], test: dict | None, wall0: float) -> dict:
    last = history[-1] if history else {}
    target = cfg.target_train_error
    reach = next((r["epoch"] for r in history if target is not None and r["train_error"] <= target), None)
    return {
        "status": status,
        "hash": cfg.hash(),
        "epochs_run": len(history),
        "epochs_to_target": reach,
        "target_train_error": target,
        "final_train_error": last.get("train_error"),
        "final_val_error": last.get("val_error"),
        "final_val_top5_error": last.get("val_top5_error"),
        "best_val_error": min((r["val_error"] for r in history), default=None),
        "test_error": test["error"] if test else last.get("val_error"),
        "test_top5_error": test["top5_error"] if test else last.get("val_top5_error"),
        "test_is_val": test is None,
        "wall_seconds": sum(r["seconds"] for r in history),
        "session_seconds": time.perf_counter() - wall0,
        "total_images": sum(r["images"] for r in history),
        "finished_at": provenance.now(),
    }


class _Progress:
    """A rich progress bar with images/s and ETA, or one log line per epoch when quiet."""

    def __init__(self, quiet: bool, log: bool, label: str, total: int, done: int):
        self.log, self.bar = log, None
        if not quiet:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                TextColumn("{task.fields[ips]}"), TextColumn("{task.fields[info]}"),
                                TimeRemainingColumn(), transient=False)
            self.task = self.bar.add_task(label, total=total, completed=done, ips="", info="")
            self.bar.start()

    def advance(self, step: int, ips: float) -> None:
        if self.bar:
            self.bar.update(self.task, completed=step, ips=f"{ips:,.0f} img/s")

    def epoch_done(self, row: dict) -> None:
        msg = (f"epoch {row['epoch']}: train err {100 * row['train_error']:.2f}%  "
               f"val err {100 * row['val_error']:.2f}%  lr {row['lr']:.2g}  {row['seconds']:.1f}s")
        if self.bar:
            self.bar.update(self.task, info=f"| ep {row['epoch']} val {100 * row['val_error']:.1f}%")
            self.bar.console.print(msg, highlight=False, soft_wrap=True)  # one line, also in a log file
        elif self.log:
            print(msg, file=sys.stderr, flush=True)

    def warn(self, msg: str) -> None:
        if self.bar:
            self.bar.console.print(f"[yellow]{msg}[/]", highlight=False, soft_wrap=True)
        else:
            print(msg, file=sys.stderr)

    def close(self) -> None:
        if self.bar:
            self.bar.stop()
