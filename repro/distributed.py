"""Data-parallel training with torch.distributed, as launched by torchrun.

    torchrun --nproc-per-node N -m repro train ...      (or: repro train --nproc N ...)

torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; `init_from_env` joins the process group
(nccl on CUDA, gloo on CPU). Each rank trains on its own shard of every batch (the
batch size is split over the ranks, so the combined batch is the configured one), DDP
averages the gradients, and only rank 0 writes the run directory. With one process
every function here is a no-op, so the trainer has a single code path.

Multi-node runs use torchrun's own rendezvous flags, e.g. on each of two nodes:

    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29500 --rdzv-id JOB -m repro train ...
"""

from __future__ import annotations

import hashlib
import os

import torch
import torch.distributed as dist
from torch import nn

from repro.errors import ConfigError


def active() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def launched_by_torchrun() -> bool:
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def init_from_env(device_name: str = "auto") -> None:
    """Join the process group torchrun describes; a no-op in a plain single process."""
    if active() or not launched_by_torchrun():
        return
    if device_name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {device_name!r} requested but CUDA is not available here")
    use_cuda = torch.cuda.is_available() and (device_name == "auto" or device_name.startswith("cuda"))
    if use_cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend="nccl" if use_cuda else "gloo")


def device(name: str) -> torch.device:
    """This rank's device: cuda:LOCAL_RANK when CUDA is used, else the CPU."""
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(model, device_ids=[device.index] if device.type == "cuda" else None)


def sum_scalars(device: torch.device, *values) -> list[float]:
    """Sum numbers (ints, floats or 0-d tensors) over all ranks; returns Python floats."""
    t = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=device).reshape(()) for v in values])
    if active():
        dist.all_reduce(t)
    return t.tolist()


def all_finite(t: torch.Tensor) -> bool:
    """Whether `t` is finite on every rank. Under DDP one all-reduce, so that a loss that
    diverges on one rank stops all of them at the same step instead of leaving the others
    waiting in the next gradient all-reduce."""
    ok = torch.isfinite(t).all().to(torch.int32).reshape(1)
    if active():
        dist.all_reduce(ok, op=dist.ReduceOp.MIN)
    return bool(ok.item())


def seed_epoch(seed: int, epoch: int) -> None:
    """Under DDP, seed torch's RNGs (dropout masks) from (seed, epoch, rank); a no-op in one process.

    All ranks start from the same `torch.manual_seed` (the init draws), so without this
    every rank would draw the same dropout masks for its share of the batch, where one
    process with the combined batch draws an independent mask per image (paper §4.2).
    Seeding per epoch also makes a resumed DDP run draw what an uninterrupted one would
    (a checkpoint holds rank 0's RNG state only)."""
    if not active():
        return
    digest = hashlib.sha256(f"repro-dropout:{seed}:{epoch}:{rank()}".encode()).digest()
    torch.manual_seed(int.from_bytes(digest[:8], "little") >> 1)


def shutdown() -> None:
    if active():
        dist.destroy_process_group()


def resolve_device(name: str) -> torch.device:
    """`auto` (cuda, else mps, else cpu) or a named device that exists here; else a one-line ConfigError."""
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
