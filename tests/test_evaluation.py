"""Tests for repro.evaluation: when a run evaluates (`eval_steps`), crossing times
(`crossing`) and the once-per-run test evaluation (`Evaluator.test`), on the CPU with
small synthetic data and a linear net."""

from __future__ import annotations

import math
from contextlib import nullcontext

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from repro.config import DataConfig
from repro.data import load_dataset
from repro.evaluation import Evaluator, crossing, eval_steps, evaluate

pytestmark = pytest.mark.usefixtures("one_thread")

SETTINGS = settings(max_examples=300, deadline=None, database=None)


# ---------------------------------------------------------------- eval_steps


@SETTINGS
@given(steps=st.integers(1, 5000),
       eval_every=st.one_of(st.floats(1e-12, 1.0), st.integers(1, 64).map(lambda k: 1 / k)))
def test_eval_steps(steps, eval_every):
    points = eval_steps(steps, eval_every)
    assert all(a < b for a, b in zip(points, points[1:]))  # strictly increasing
    assert 1 <= points[0] and points[-1] == steps  # within the epoch, always at its last step
    k = round(1 / eval_every)
    assert len(points) == min(k, steps)  # every step where more were asked for than there are
    if k <= steps:  # evenly spread: each point is the nearest step to j/k of the epoch
        assert all(abs(p - j * steps / k) <= 0.5 for j, p in enumerate(points, 1))


def test_eval_steps_examples():
    assert eval_steps(10, 1.0) == [10]
    assert eval_steps(8, 0.25) == [2, 4, 6, 8]
    assert eval_steps(10, 0.3) == [3, 7, 10]  # round(1 / 0.3) = 3 evaluations
    assert eval_steps(2, 0.25) == [1, 2]
    assert eval_steps(3, 1e-9) == [1, 2, 3]  # and at once: not a billion candidates


# ---------------------------------------------------------------- crossing


def _hist(errors, epochs=None, key="train_error"):
    epochs = epochs if epochs is not None else [0.25 * i for i in range(len(errors))]
    return [{"epoch": e, key: x} for e, x in zip(epochs, errors, strict=True)]


def test_crossing_interpolates_linearly():
    rows = _hist([1.0, 0.75, 0.25, 0.125], epochs=[0.0, 0.5, 1.0, 1.5])
    assert crossing(rows, "train_error", 0.5) == 0.75  # halfway from 0.75 (epoch 0.5) to 0.25 (epoch 1.0)
    assert crossing(rows, "train_error", 0.625) == 0.625
    assert crossing(rows, "train_error", 0.875) == 0.25
    assert crossing(rows, "train_error", 0.125) == 1.5
    assert crossing(rows, "train_error", 0.1875) == 1.25


def test_crossing_first_one_wins():
    rows = _hist([1.0, 0.5, 0.0, 0.75, 0.0], epochs=[0.0, 1.0, 2.0, 3.0, 4.0])
    assert crossing(rows, "train_error", 0.25) == 1.5  # not 3.5, where it crosses again


def test_crossing_never():
    assert crossing(_hist([0.9, 0.8, 0.7]), "train_error", 0.5) is None
    assert crossing([], "train_error", 0.5) is None
    assert crossing(_hist([None, None]), "train_error", 0.5) is None


def test_crossing_skips_missing_values():
    """None (the epoch-0 row's running error) and NaN rows are skipped: the interpolation runs
    between the evaluations around them that have the figure."""
    rows = _hist([None, 1.0, None, math.nan, 0.0], epochs=[0.0, 1.0, 2.0, 3.0, 5.0], key="train_error_running")
    assert crossing(rows, "train_error_running", 0.5) == 3.0
    assert crossing(_hist([None, 0.25]), "train_error", 0.5) == 0.25  # the first value is already below


@pytest.mark.parametrize("epochs", [[0.0, 1.0], [0.5, 0.75], [0.2, 0.3], [1.7, 1.8], [0.0, 0.1]])
def test_crossing_at_a_row_exactly_on_the_target(epochs):
    assert crossing(_hist([0.75, 0.5], epochs), "train_error", 0.5) == epochs[1]
    assert crossing(_hist([0.5, 0.25], epochs), "train_error", 0.5) == epochs[0]  # the first row, at the target
    assert crossing(_hist([0.25, 0.0], epochs), "train_error", 0.5) == epochs[0]  # below from the start


# ---------------------------------------------------------------- Evaluator


def _evaluator(crop: int, test_views: int = 1, holdout: int = 8) -> Evaluator:
    cfg = DataConfig(dataset="synthetic", synthetic_train=40, synthetic_test=24, image_size=28, crop=crop,
                     test_views=test_views, holdout=holdout, train_eval=16)
    ds = load_dataset(cfg, 10, crop)
    return Evaluator(ds, cfg, 16, torch.device("cpu"), 0, (0, 1), nullcontext)


def _net(crop: int) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * crop * crop, 10))


ONE = {"test_error_1view", "test_loss_1view", "test_top5_error_1view"}
TEN = {"test_error_10view", "test_loss_10view", "test_top5_error_10view"}
HEADLINE = {"test_error", "test_loss", "test_top5_error", "test_views"}


@pytest.mark.parametrize("test_views", [1, 10])
def test_evaluator_test_with_a_smaller_crop_records_both(test_views):
    """Crop 24 of 28: the centre crop and the paper's 10 views (§4.1); the headline is the
    one `data.test_views` names."""
    ev = _evaluator(24, test_views)
    net = _net(24)
    out = ev.test(net)
    assert set(out) == HEADLINE | ONE | TEN
    v = f"{test_views}view"
    assert out["test_views"] == test_views
    assert (out["test_error"], out["test_loss"], out["test_top5_error"]) == (
        out[f"test_error_{v}"], out[f"test_loss_{v}"], out[f"test_top5_error_{v}"])
    assert out["test_loss_1view"] != out["test_loss_10view"]  # they are two evaluations
    for views in ("1view", "10view"):
        assert 0 <= out[f"test_top5_error_{views}"] <= out[f"test_error_{views}"] <= 1
    assert net.training  # left in training mode


@pytest.mark.parametrize("test_views", [1, 10])
def test_evaluator_test_with_the_whole_image_records_one_view(test_views):
    """Crop = image: no corners to take, so only the centre view, and it is the headline."""
    ev = _evaluator(28, test_views)
    out = ev.test(_net(28))
    assert set(out) == HEADLINE | ONE
    assert out["test_views"] == 1 and out["test_error"] == out["test_error_1view"]
    assert out["test_loss"] == out["test_loss_1view"]


def test_evaluator_test_is_the_test_split():
    """The test figures are those of `evaluate` on the test split, not the holdout's or the slice's."""
    ev = _evaluator(24, 1)
    net = _net(24)
    out = ev.test(net)
    test_loader = ev._loader("test", 1)
    assert test_loader.n == 24
    direct = evaluate(net, test_loader, torch.device("cpu"), nullcontext)
    assert out["test_loss_1view"] == direct["loss"] and out["test_error_1view"] == direct["error"]


def test_evaluator_row_without_a_holdout():
    ev = _evaluator(24, holdout=0)
    row = ev.row(_net(24))
    assert row["holdout_loss"] is row["holdout_error"] is row["holdout_top5_error"] is None
    assert math.isfinite(row["train_loss"]) and 0 <= row["train_error"] <= 1
    row = _evaluator(24, holdout=8).row(_net(24))
    assert math.isfinite(row["holdout_loss"]) and 0 <= row["holdout_top5_error"] <= row["holdout_error"] <= 1
