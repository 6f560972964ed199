"""Evaluating a net: the fixed evaluations of a run, the final test, and crossing times.

Protocol (`../shared/reference/protocol.md` §1-§2):

* every `eval_every` epochs (fractions allowed: 0.25 is four times an epoch) a run measures,
  in eval mode (no dropout, no augmentation, centre crop), the loss and error on a fixed
  5,000-image training slice (`data.train_eval`: the training error the paper plots) and on
  the holdout (`data.holdout`), the only split anything adaptive may read;
* the test set is evaluated once, at the end: with the centre crop and, where the crop is
  smaller than the image, with the paper's ten views (§4.1: four corners and the centre,
  each flipped, softmax averaged), so the 10-crop comparison never needs a checkpoint;
* a crossing time ("epochs to 25% training error") is interpolated linearly between the
  two evaluations around the crossing.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from repro import distributed, provenance, rundir
from repro.config import DataConfig
from repro.data import SPLITS, Dataset, Loader, load_dataset
from repro.errors import ConfigError


def top_errors(logits_or_probs: torch.Tensor, y: torch.Tensor, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
    """(top-1 wrong count, top-k wrong count) for one batch, as tensors (no sync)."""
    k = min(k, logits_or_probs.shape[1])
    top = logits_or_probs.topk(k, dim=1).indices
    hit = top == y[:, None]
    return (~hit[:, 0]).sum(), (~hit.any(dim=1)).sum()


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader, device: torch.device, amp: Callable[[], Any]) -> dict:
    """Loss, top-1 and top-5 error over one split. With 10 views the softmax outputs are
    averaged (paper §4.1). Leaves the model in training mode."""
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


class Evaluator:
    """The evaluations of one run: its training slice and holdout during training, the test
    set at the end. `data_cfg` has the crop set (the trainer's); batches are `batch` images."""

    def __init__(self, ds: Dataset, data_cfg: DataConfig, batch: int, device: torch.device, seed: int,
                 shard: tuple[int, int], amp: Callable[[], Any]):
        self.ds, self.data_cfg, self.batch, self.device = ds, data_cfg, batch, device
        self.seed, self.shard, self.amp = seed, shard, amp
        self.train = self._loader("train_eval", 1)
        self.holdout = self._loader("holdout", 1) if ds.holdout is not None else None

    def _loader(self, split: str, views: int) -> Loader:
        return Loader(self.ds, split, self.batch, self.device, train=False, cfg=self.data_cfg, seed=self.seed,
                      shard=self.shard, views=views)

    def row(self, net: nn.Module) -> dict:
        """Eval-mode loss and error on the training slice and the holdout (None without one)."""
        tr = evaluate(net, self.train, self.device, self.amp)
        ho = evaluate(net, self.holdout, self.device, self.amp) if self.holdout is not None else None
        return {
            "train_loss": tr["loss"], "train_error": tr["error"],
            "holdout_loss": ho["loss"] if ho else None, "holdout_error": ho["error"] if ho else None,
            "holdout_top5_error": ho["top5_error"] if ho else None,
        }

    def ten_views_possible(self) -> bool:
        return self.data_cfg.crop is not None and self.data_cfg.crop < self.ds.image_size

    def test(self, net: nn.Module) -> dict:
        """The once-per-run test evaluation: `test_*_1view`, `test_*_10view` where the crop is
        smaller than the image, and the headline `test_*` with `data.test_views` views."""
        out: dict[str, Any] = {}
        for views in (1, 10) if self.ten_views_possible() else (1,):
            r = evaluate(net, self._loader("test", views), self.device, self.amp)
            out |= {f"test_error_{views}view": r["error"], f"test_loss_{views}view": r["loss"],
                    f"test_top5_error_{views}view": r["top5_error"]}
        views = self.data_cfg.test_views if self.ten_views_possible() else 1
        return {"test_error": out[f"test_error_{views}view"], "test_loss": out[f"test_loss_{views}view"],
                "test_top5_error": out[f"test_top5_error_{views}view"], "test_views": views} | out


def eval_steps(steps_per_epoch: int, eval_every: float) -> list[int]:
    """The steps of an epoch (1-based) after which a run evaluates: every `eval_every` of an
    epoch (0 < eval_every <= 1), rounded to whole steps, always including the epoch's last."""
    k = max(1, min(round(1 / eval_every), steps_per_epoch))  # more would repeat steps (and a tiny eval_every hang)
    points = {max(1, round(j * steps_per_epoch / k)) for j in range(1, k + 1)}
    return sorted(points | {steps_per_epoch})


def crossing(rows: Sequence[dict], key: str, target: float) -> float | None:
    """The first epoch at which rows[key] falls to `target`, linearly interpolated between the
    evaluation before (above the target) and the first at or below it; None if never."""
    prev = None
    for r in rows:
        x = r.get(key)
        if x is None or (isinstance(x, float) and math.isnan(x)):
            continue
        if x <= target:
            if prev is None or prev[1] == x:
                return float(r["epoch"])
            e0, x0 = prev
            return e0 + (x0 - target) / (x0 - x) * (float(r["epoch"]) - e0)
        prev = (float(r["epoch"]), x)
    return None


def load_run(run_dir: str, data_dir: str | None = None, device: str = "auto"
             ) -> tuple[Any, DataConfig, Dataset, nn.Module, dict]:
    """A stored run's (config, data config with its crop, dataset, model, checkpoint). The model
    holds the run's *initial* weights: the same seeded draws, in the same order, as `repro
    train` (seed, then the dataset, then the model); load `checkpoint["model"]` for the trained
    ones. ConfigError (one line) for a directory without a readable config or checkpoint."""
    from dataclasses import replace

    from repro.models import build

    cfg = rundir.run_config(run_dir)
    ckpt_path = rundir.checkpoint_path(run_dir)
    if cfg is None or not ckpt_path.exists():
        raise ConfigError(f"{run_dir}: not a run directory with a config and a checkpoint (repro train --out DIR)")
    dev = distributed.resolve_device(device)
    data = replace(cfg.data, data_dir=data_dir or cfg.data.data_dir, crop=cfg.data.crop or cfg.model.input_size)
    torch.manual_seed(cfg.seed)  # as repro train: the init draws follow the seed and the dataset
    ds = load_dataset(data, cfg.model.num_classes, cfg.model.input_size)
    model = build(cfg.model).to(dev)
    ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)  # never runs code from the file
    return cfg, data, ds, model, ckpt


def evaluate_run(run_dir: str, views: int = 1, split: str = "test", data_dir: str | None = None,
                 device: str = "auto") -> dict:
    """A stored run's checkpoint evaluated on `split` with `views` views, in fp32 (`repro eval`).
    ConfigError (one line) for a directory without a readable config or checkpoint."""
    _check_split(split)
    cfg, data, ds, model, ckpt = load_run(run_dir, data_dir, device)
    dev = next(model.parameters()).device
    model.load_state_dict(ckpt["model"])
    loader = Loader(ds, split, 256, dev, train=False, cfg=data, seed=cfg.seed, views=views)
    r = evaluate(model, loader, dev, nullcontext)  # fp32
    return {"run_dir": str(run_dir), "split": split, "views": views, "epoch": ckpt["epoch"], "images": loader.n,
            "error": r["error"], "top5_error": r["top5_error"], "loss": r["loss"]}


def _check_split(split: str) -> None:
    if split not in SPLITS or split == "train":
        raise ConfigError(f"--split {split}: choose test, holdout or train_eval")


def lrn_strength_run(run_dir: str, split: str = "test", images: int = 2000, data_dir: str | None = None,
                     device: str = "auto") -> dict:
    """How strongly a stored run's LRN layers normalize (repro.lrn_strength), with its trained
    weights and its initial ones, on the first `images` of `split` (centre crop, fp32)."""
    import copy

    from repro import lrn_strength

    _check_split(split)
    cfg, data, ds, model, ckpt = load_run(run_dir, data_dir, device)
    dev = next(model.parameters()).device
    initial = copy.deepcopy(model)
    model.load_state_dict(ckpt["model"])
    loader = Loader(ds, split, 250, dev, train=False, cfg=data, seed=cfg.seed, views=1)

    def batches():
        seen = 0
        for x, _ in loader.epoch(0):
            if seen >= images:
                return
            yield x[: images - seen]
            seen += x.shape[0]

    layers = {"initial": lrn_strength.measure(initial, batches()), "trained": lrn_strength.measure(model, batches())}
    if not layers["trained"]:
        raise ConfigError(f"{run_dir}: its model ({cfg.model.name}) has no LRN layer to measure")
    env = rundir.read_json(Path(run_dir) / rundir.ENV) or {}
    revision, dirty = provenance.git_revision()
    return {"run_dir": str(run_dir), "hash": cfg.hash(), "seed": cfg.seed, "model": cfg.model.name,
            "norm": cfg.model.norm, "lr": cfg.optim.lr, "epoch": ckpt["epoch"], "split": split,
            "images": min(images, loader.n), "trained_at": env.get("git_revision"),
            "trained_on": env.get("device_name") or env.get("device"),
            "measured_at": revision and revision + (" (dirty)" if dirty else ""), "torch": torch.__version__,
            "layers": layers}
