"""Training one run, the paper's way (§5), in a run directory that survives being killed.

    cfg --> model, PaperSGD, lr schedule, data loaders --> epochs --> run directory

A run directory (its files: repro.rundir) holds everything needed to trust and to continue
a run: the resolved config, the environment, the dataset's identity, one metrics row per
evaluation (every `eval_every` epochs, and one at epoch 0: repro.evaluation), a checkpoint
(model, optimizer, scheduler, every RNG state, epoch, the metrics so far) and, written last,
a summary whose status is finished | target-reached | diverged | outrun, with the test-set
figures of the one evaluation of the test set, at the end.

The checkpoint is written atomically at the end of every epoch (and at the evaluation that
reaches a target), and everything random in an epoch (order, crops, flips, colour noise) is
a pure function of (seed, epoch), with the dropout RNG saved in the checkpoint: rerunning the
same command after a `kill -9` resumes at the last finished epoch and, with `--deterministic`
on a CPU, ends with exactly the metrics of an uninterrupted run. A finished run is never
trained twice.

The paper's procedure (§5): batch 128, momentum 0.9, weight decay 5e-4, lr 0.01 divided
by 10 when the validation error (here: the holdout's, never the test set's) stops
improving, three times, then stop. The cuda-convnet nets use their layer files' step
schedules instead (repro.models.registry).
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
from repro.config import DataConfig, RunConfig, validate
from repro.data import Dataset, Loader, load_dataset
from repro.distributed import resolve_device  # bench and the tests call it as train.resolve_device
from repro.errors import ConfigError, DivergedError
from repro.evaluation import Evaluator, crossing, eval_steps
from repro.files import atomic
from repro.models import build
from repro.optim import PaperSGD

CHECK_EVERY = 25  # steps between non-finite-loss checks (each check syncs a GPU)


# ---------------------------------------------------------------- small helpers


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


# ---------------------------------------------------------------- the run


def run(cfg: RunConfig, out: Path | str, *, quiet: bool = False, log: bool = False,
        on_step: Callable[[int, int], None] | None = None,
        stop_at: Callable[[], float | None] | None = None) -> dict:
    """Train one run in run directory `out` and return its summary (see module docstring).

    `quiet` hides the progress bar; with `log`, a quiet run prints one line per epoch.
    `stop_at` (a selection run, one process): the epochs a rival grid run needed to reach the
    target, or None; asked at the end of each epoch, and once this run has trained that long
    without reaching the target it stops, status outrun: it can no longer be chosen.
    Returns a stored summary at once if the run already finished; resumes from
    `checkpoint.pt` if one exists; raises DivergedError (after recording the run as
    diverged) if the loss becomes non-finite, and again on a rerun of a diverged run.
    Raises ConfigError if `out` holds another config's run.
    """
    validate(cfg)
    out = Path(out)
    done = _stored_summary(cfg, out)
    if done is not None:
        return done
    _check_same_run(out, cfg)
    s = _setup(cfg, out)
    start_epoch, drops, history = _resume_or_start(s)

    total_steps = len(s.train_loader) * cfg.epochs
    # killed after the checkpoint of its last epoch but before summary.json: train no further
    last_epoch = start_epoch if history and _should_stop(cfg, history[-1], drops) else cfg.epochs
    wall0 = time.perf_counter()
    progress = _Progress(quiet or not s.lead, log and s.lead, f"{cfg.model.name} seed {cfg.seed}", total_steps,
                         s.step)
    if s.lead and (note := provenance.bf16_emulated(cfg.runtime.precision, s.device)):
        progress.warn(note)
    outrun = None
    try:
        if not history:
            history.append(_evaluation_row(s, 0, None, 0.0))  # epoch 0: the net as initialised
        for epoch in range(start_epoch + 1, last_epoch + 1):
            reached = _train_epoch(s, epoch, history, progress, on_step, total_steps)
            if not reached:  # Figure 1: a run stops at the evaluation that reaches the target
                drops += _schedule_step(s, history[-1])
            if s.lead:  # also where the target was reached (mid-epoch): the final weights, so a rerun trains nothing
                _save_checkpoint(rundir.checkpoint_path(out), s.model, s.opt, s.sched, s.device, epoch, drops,
                                 history, cfg)
                rundir.write_metrics(out, history)
            if reached or _should_stop(cfg, history[-1], drops):
                break
            if (outrun := _outrun(s, stop_at, history[-1])) is not None:
                break
    except _Diverged as d:
        _record_divergence(s, history, d, wall0)
    finally:
        progress.close()
    status = (rundir.TARGET_REACHED if _target_reached(cfg, history[-1]) else
              rundir.OUTRUN if outrun is not None else rundir.FINISHED)
    return _finish(s, status, history, wall0, {} if outrun is None else {"outrun_at": outrun})


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
    evaluator: Evaluator
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
    evaluator = Evaluator(ds, data_cfg, max(per_rank, 256), device, cfg.seed, (rank, world), amp)
    return _Session(cfg, out, rank, world, device, ds, data_cfg, per_rank, train_loader, evaluator, model, net, opt,
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


def _train_epoch(s: _Session, epoch: int, history: list[dict], progress: _Progress,
                 on_step: Callable[[int, int], None] | None, total_steps: int) -> bool:
    """One pass over the training data, evaluating after each of `eval_steps` (rows appended
    to `history`). True if an evaluation reached the target (the run stops there)."""
    cfg, device, net, opt, amp = s.cfg, s.device, s.net, s.opt, s.amp
    s.model.train()
    distributed.seed_epoch(cfg.seed, epoch)  # DDP: each rank its own dropout masks
    steps_per_epoch = len(s.train_loader)
    points = set(eval_steps(steps_per_epoch, cfg.eval_every))
    run = _Running(device)
    batches = iter(s.train_loader.epoch(epoch))
    for i in range(steps_per_epoch):
        x, y = next(batches)
        with amp():
            logits = net(x)  # channels_last, where set, is applied by the model's input hook
            loss = F.cross_entropy(logits.float(), y)  # mean over the batch: paper §5's <dL/dw>_D
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run.add(loss, logits, y)
        s.step += 1
        if (i + 1) % CHECK_EVERY == 0 or i + 1 in points:
            if not distributed.all_finite(run.loss_sum):  # every rank agrees, so all stop together
                raise _Diverged(epoch, s.step, loss.item())
            _warn_if_stalled(s, run.loss_sum, run.seen, progress)
        progress.advance(s.step, run.seen * s.world / max(time.perf_counter() - run.t0, 1e-9))
        if on_step is not None:
            on_step(s.step, total_steps)
        if i + 1 in points:
            row = _evaluation_row(s, epoch - 1 + (i + 1) / steps_per_epoch, run, time.perf_counter() - run.t0)
            history.append(row)
            progress.evaluated(row)
            if _target_reached(cfg, row):
                return True
            run = _Running(device)
    return False


class _Running:
    """Training loss and error summed over the batches since the last evaluation (on device)."""

    def __init__(self, device: torch.device):
        self.loss_sum = torch.zeros((), device=device, dtype=torch.float64)
        self.wrong = torch.zeros((), device=device, dtype=torch.long)
        self.seen, self.t0 = 0, time.perf_counter()

    def add(self, loss: torch.Tensor, logits: torch.Tensor, y: torch.Tensor) -> None:
        self.loss_sum += loss.detach().double() * y.shape[0]
        self.wrong += (logits.detach().argmax(1) != y).sum()
        self.seen += y.shape[0]


def _evaluation_row(s: _Session, epoch: float, run: _Running | None, seconds: float) -> dict:
    """One metrics row: the running training figures since the last row (None at epoch 0),
    then the eval-mode training-slice and holdout figures (repro.evaluation)."""
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)
    images, loss_run, err_run = None, None, None
    if run is not None:
        n_all, loss_all, wrong_all = distributed.sum_scalars(s.device, run.seen, run.loss_sum, run.wrong)
        images, loss_run, err_run = int(n_all), loss_all / n_all, wrong_all / n_all
    t0 = time.perf_counter()
    ev = s.evaluator.row(s.net)
    for key in ("train_loss", "holdout_loss"):
        if ev[key] is not None and not math.isfinite(ev[key]):  # the last update broke the weights
            raise _Diverged(math.ceil(epoch), s.step, ev[key])
    return {
        "epoch": round(float(epoch), 6), "step": s.step, "lr": s.opt.param_groups[0]["lr"],
        "train_loss_running": loss_run, "train_error_running": err_run,  # as cuda-convnet printed it
        **ev,  # train_loss/train_error: eval mode on the fixed training slice; holdout_*
        "seconds": seconds, "eval_seconds": time.perf_counter() - t0,
        "images": images or 0, "images_per_second": (images or 0) / seconds if seconds > 0 else None,
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
    """Step the lr schedule after an epoch (plateau: on the holdout error); 1 if the lr dropped."""
    before = [g["lr"] for g in s.opt.param_groups]
    if s.cfg.optim.schedule == "plateau":
        s.sched.step(row["holdout_error"])  # paper §5's "validation error": the holdout, never the test set
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


def _outrun(s: _Session, stop_at: Callable[[], float | None] | None, row: dict) -> float | None:
    """A rival's epochs to target, once this run has trained that long without reaching it."""
    bound = stop_at() if stop_at is not None and s.world == 1 else None
    return bound if bound is not None and row["epoch"] >= bound else None


def _finish(s: _Session, status: str, history: list[dict], wall0: float, extra: dict | None = None) -> dict:
    """The once-per-run test evaluation, then summary.json, written last."""
    summary = _summary(s.cfg, status, history, s.evaluator.test(s.net), wall0) | (extra or {})
    if s.lead:
        rundir.write_metrics(s.out, history)
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
    """summary.json: the run's status, its final and best figures, and the test evaluation."""
    last = history[-1] if history else {}
    target = cfg.target_train_error
    holdout = [(r["holdout_error"], r["epoch"]) for r in history if r.get("holdout_error") is not None]
    best = min(holdout, default=(None, None))
    return {
        "status": status,
        "hash": cfg.hash(),
        "epochs_run": float(last.get("epoch", 0.0)),
        "steps": last.get("step", 0),
        "epochs_to_target": crossing(history, "train_error", target) if target is not None else None,
        "target_train_error": target,
        "eval_every": cfg.eval_every,
        "final_train_error": last.get("train_error"),  # eval mode, on the fixed training slice
        "final_train_error_running": last.get("train_error_running"),
        "final_holdout_error": last.get("holdout_error"),
        "best_holdout_error": best[0],
        "best_holdout_epoch": best[1],
        **(test or {}),
        "wall_seconds": sum(r["seconds"] + r["eval_seconds"] for r in history),
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

    def evaluated(self, row: dict) -> None:
        hold = row.get("holdout_error")
        hold_text = f"  holdout err {100 * hold:.2f}%" if hold is not None else ""
        msg = (f"epoch {row['epoch']:g}: train err {100 * row['train_error']:.2f}% (running "
               f"{100 * row['train_error_running']:.2f}%){hold_text}  lr {row['lr']:.2g}  {row['seconds']:.1f}s")
        if self.bar:
            self.bar.update(self.task, info=f"| ep {row['epoch']:g} train {100 * row['train_error']:.1f}%")
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
