"""Tests for repro.optim.PaperSGD: the paper's update rule (§5) and its relation to torch SGD."""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from repro.optim import PaperSGD

SETTINGS = settings(max_examples=30, deadline=None)

shapes = st.lists(
    st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple), min_size=1, max_size=3
)
lrs = st.floats(1e-4, 0.5)
momenta = st.floats(0.0, 0.95)
decays = st.floats(0.0, 0.1)


def _make_problem(shape_list, seed):
    """Initial params and a fixed quadratic: loss = sum_j sum(0.5 * a_j * (w_j - c_j)**2).

    The gradient a_j * (w_j - c_j) depends on w, so any error in one step changes the
    later gradients too. a_j is in [0.1, 1.5], inside heavy-ball's stable region for
    the lrs drawn."""
    gen = torch.Generator().manual_seed(seed)
    init, coef, centre = [], [], []
    for shape in shape_list:
        init.append(torch.randn(shape, generator=gen, dtype=torch.float64))
        coef.append(0.1 + 1.4 * torch.rand(shape, generator=gen, dtype=torch.float64))
        centre.append(torch.randn(shape, generator=gen, dtype=torch.float64))
    return init, coef, centre


def _params(init):
    return [torch.nn.Parameter(t.clone()) for t in init]


def _set_grads(params, coef, centre):
    for p in params:
        p.grad = None
    loss = sum((0.5 * a * (p - c) ** 2).sum() for p, a, c in zip(params, coef, centre))
    loss.backward()
    return loss


def _close(actual, expected, rtol=1e-11, atol=1e-12):
    torch.testing.assert_close(actual, expected, rtol=rtol, atol=atol)


# ---------------------------------------------------------------------------------------
# 1. Constant lr: same trajectory as torch.optim.SGD.


@SETTINGS
@given(
    shape_list=shapes,
    lr=lrs,
    mu=momenta,
    wd=decays,
    n_steps=st.integers(1, 20),
    seed=st.integers(0, 2**31 - 1),
)
def test_constant_lr_matches_torch_sgd(shape_list, lr, mu, wd, n_steps, seed):
    init, coef, centre = _make_problem(shape_list, seed)
    pp, tp = _params(init), _params(init)
    paper = PaperSGD(pp, lr=lr, momentum=mu, weight_decay=wd)
    ref = torch.optim.SGD(tp, lr=lr, momentum=mu, weight_decay=wd, dampening=0, nesterov=False)
    for _ in range(n_steps):
        before = [p.detach().clone() for p in pp]
        _set_grads(pp, coef, centre)
        _set_grads(tp, coef, centre)
        paper.step()
        ref.step()
        for p, t, w0 in zip(pp, tp, before):
            _close(p, t)
            v = paper.state[p]["velocity"]
            # w_{i+1} = w_i + v_{i+1}
            _close(v, p.detach() - w0, rtol=1e-9, atol=1e-12)
            if mu > 0:
                _close(v, -lr * ref.state[t]["momentum_buffer"])


# ---------------------------------------------------------------------------------------
# 2. lr change: the exact one-step difference.


@SETTINGS
@given(
    shape_list=shapes,
    eps=lrs,
    eps_new=lrs,
    mu=momenta,
    wd=decays,
    t=st.integers(1, 10),
    seed=st.integers(0, 2**31 - 1),
)
def test_lr_change_one_step_difference(shape_list, eps, eps_new, mu, wd, t, seed):
    init, coef, centre = _make_problem(shape_list, seed)
    pp, tp = _params(init), _params(init)
    paper = PaperSGD(pp, lr=eps, momentum=mu, weight_decay=wd)
    ref = torch.optim.SGD(tp, lr=eps, momentum=mu, weight_decay=wd)
    for _ in range(t):
        _set_grads(pp, coef, centre)
        _set_grads(tp, coef, centre)
        paper.step()
        ref.step()

    # Make the state identical up to the convention (not just equal up to rounding):
    # same w, and v_t = -eps * b_t exactly.
    bufs = {}
    with torch.no_grad():
        for p, q in zip(pp, tp):
            b = ref.state[q]["momentum_buffer"] if mu > 0 else torch.zeros_like(q)
            bufs[q] = b.clone()
            p.copy_(q)
            paper.state[p]["velocity"] = -eps * b.clone()
    w_t = [q.detach().clone() for q in tp]

    for group in paper.param_groups + ref.param_groups:
        group["lr"] = eps_new
    _set_grads(pp, coef, centre)
    _set_grads(tp, coef, centre)
    grads = [q.grad.clone() for q in tp]
    paper.step()
    ref.step()

    for p, q, w, g in zip(pp, tp, w_t, grads):
        b = bufs[q]
        # Closed form: w_paper - w_torch = mu * (eps' - eps) * b_t.
        _close(p.detach() - q.detach(), mu * (eps_new - eps) * b)
        # And each step on its own:
        d = g + wd * w
        _close(p.detach(), w - mu * eps * b - eps_new * d)
        _close(q.detach(), w - mu * eps_new * b - eps_new * d)


def test_lr_drop_difference_is_real():
    """A 10x drop with mu = 0.9: the paper keeps 0.81 * v_t more of the old velocity."""
    w0 = torch.tensor([1.0, -2.0], dtype=torch.float64)
    coef, centre = [torch.ones(2, dtype=torch.float64)], [torch.zeros(2, dtype=torch.float64)]
    pp, tp = _params([w0]), _params([w0])
    paper = PaperSGD(pp, lr=0.1, momentum=0.9, weight_decay=0.0)
    ref = torch.optim.SGD(tp, lr=0.1, momentum=0.9)
    for _ in range(3):
        _set_grads(pp, coef, centre)
        _set_grads(tp, coef, centre)
        paper.step()
        ref.step()
    v_t = paper.state[pp[0]]["velocity"].clone()
    _close(pp[0].detach(), tp[0].detach())
    for group in paper.param_groups + ref.param_groups:
        group["lr"] = 0.01
    _set_grads(pp, coef, centre)
    _set_grads(tp, coef, centre)
    paper.step()
    ref.step()
    diff = pp[0].detach() - tp[0].detach()
    _close(diff, 0.81 * v_t)
    assert diff.abs().min() > 1e-3


# ---------------------------------------------------------------------------------------
# 3. Against a hand-written loop of the paper's formula, with schedulers and param groups.


def _linear_problem():
    torch.manual_seed(0)
    x = torch.randn(16, 3, dtype=torch.float64)
    y = torch.randn(16, 2, dtype=torch.float64)
    model = torch.nn.Linear(3, 2).double()
    return model, x, y


def _groups(model):
    # cuda-convnet style: weights with weight decay, biases at 2x lr and no weight decay;
    # a third group (an extra tensor) overrides momentum.
    extra = torch.nn.Parameter(torch.ones(2, dtype=torch.float64))
    groups = [
        {"params": [model.weight], "weight_decay": 5e-3},
        {"params": [model.bias], "lr": 0.2, "weight_decay": 0.0},
        {"params": [extra], "momentum": 0.5, "weight_decay": 0.05},
    ]
    return groups, extra


def _loss(model, extra, x, y):
    return ((model(x) - y) ** 2).mean() + 0.5 * (extra**2).sum()


@pytest.mark.parametrize("sched", ["plateau", "step"])
def test_matches_hand_written_paper_rule_with_scheduler(sched):
    model, x, y = _linear_problem()
    groups, extra = _groups(model)
    opt = PaperSGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    if sched == "plateau":
        scheduler = torch.optim.lr_scheduler.ReduceLROnPlateau(
            opt, mode="min", factor=0.1, patience=1
        )
    else:
        scheduler = torch.optim.lr_scheduler.StepLR(opt, step_size=4, gamma=0.1)

    # The hand loop: its own copies of the params and velocities, same gradients' source.
    hand = [p.detach().clone() for p in (model.weight, model.bias, extra)]
    hand_v = [torch.zeros_like(h) for h in hand]
    hyper = [(0.9, 5e-3), (0.9, 0.0), (0.5, 0.05)]  # (momentum, weight decay) per group
    lr_seen = set()

    for _ in range(12):
        # Hand-loop gradient at the hand-loop params.
        hw = [h.clone().requires_grad_(True) for h in hand]
        hl = ((x @ hw[0].T + hw[1] - y) ** 2).mean() + 0.5 * (hw[2] ** 2).sum()
        hgrads = torch.autograd.grad(hl, hw)

        opt.zero_grad()
        loss = _loss(model, extra, x, y)
        loss.backward()
        lrs_now = [g["lr"] for g in opt.param_groups]
        lr_seen.add(tuple(lrs_now))
        opt.step()

        for k in range(3):
            mu, wd = hyper[k]
            eps = lrs_now[k]
            hand_v[k] = mu * hand_v[k] - wd * eps * hand[k] - eps * hgrads[k]
            hand[k] = hand[k] + hand_v[k]

        for p, h in zip((model.weight, model.bias, extra), hand):
            _close(p.detach(), h, rtol=1e-12, atol=1e-14)
        for p, hv in zip((model.weight, model.bias, extra), hand_v):
            _close(opt.state[p]["velocity"], hv, rtol=1e-12, atol=1e-14)

        if sched == "plateau":
            scheduler.step(1.0)  # a flat metric: the lr drops every `patience + 1` epochs
        else:
            scheduler.step()

    # The schedulers really changed the lr, and kept the 2x bias ratio.
    assert len(lr_seen) >= 3
    for lrs_now in lr_seen:
        assert math.isclose(lrs_now[1], 2 * lrs_now[0])
    assert opt.param_groups[0]["lr"] < 0.1 * 0.1 * 1.0001


def test_grad_none_is_skipped_and_closure_returns_loss():
    a = torch.nn.Parameter(torch.tensor([1.0, 2.0], dtype=torch.float64))
    b = torch.nn.Parameter(torch.tensor([3.0], dtype=torch.float64))
    opt = PaperSGD([a, b], lr=0.1, momentum=0.9, weight_decay=0.01)

    def closure():
        opt.zero_grad()
        loss = (a**2).sum()
        loss.backward()
        return loss

    loss = opt.step(closure)
    assert float(loss.detach()) == pytest.approx(5.0)
    assert b.grad is None and torch.equal(b.detach(), torch.tensor([3.0], dtype=torch.float64))
    assert "velocity" not in opt.state[b]
    # v = -eps * (g + wd * w) = -0.1 * (2w + 0.01w) = -0.201 w
    _close(opt.state[a]["velocity"], torch.tensor([-0.201, -0.402], dtype=torch.float64))
    _close(a.detach(), torch.tensor([0.799, 1.598], dtype=torch.float64))


def test_defaults_are_the_papers():
    opt = PaperSGD([torch.nn.Parameter(torch.zeros(1))])
    d = opt.defaults
    assert (d["lr"], d["momentum"], d["weight_decay"]) == (0.01, 0.9, 5e-4)


# ---------------------------------------------------------------------------------------
# 4. state_dict round-trip.


@pytest.mark.parametrize("k", [1, 5])
def test_state_dict_round_trip(k):
    def run(n_steps, model, extra, opt):
        for _ in range(n_steps):
            opt.zero_grad()
            _loss(model, extra, x, y).backward()
            opt.step()

    model, x, y = _linear_problem()
    groups, extra = _groups(model)
    opt = PaperSGD(groups, lr=0.1)
    run(k, model, extra, opt)
    for g in opt.param_groups:
        g["lr"] *= 0.1  # an lr edit before saving must be restored too

    buf = io.BytesIO()
    torch.save({"opt": opt.state_dict(), "params": [model.weight, model.bias, extra]}, buf)
    saved_params = [t.detach().clone() for t in (model.weight, model.bias, extra)]

    # Uninterrupted.
    run(6, model, extra, opt)
    expected = [t.detach().clone() for t in (model.weight, model.bias, extra)]

    # Fresh model and optimizer (constructed with a different lr), loaded and continued.
    buf.seek(0)
    ckpt = torch.load(buf, weights_only=True)
    model2 = copy.deepcopy(model)
    groups2, extra2 = _groups(model2)
    with torch.no_grad():
        for p, s in zip((model2.weight, model2.bias, extra2), saved_params):
            p.copy_(s)
    opt2 = PaperSGD(groups2, lr=0.5)
    opt2.load_state_dict(ckpt["opt"])
    assert [g["lr"] for g in opt2.param_groups] == [g["lr"] for g in opt.param_groups]
    run(6, model2, extra2, opt2)
    for got, want in zip((model2.weight, model2.bias, extra2), expected):
        assert torch.equal(got.detach(), want)


# ---------------------------------------------------------------------------------------
# 5. Validation.


@pytest.mark.parametrize(
    "kwargs",
    [
        {"lr": -0.01},
        {"lr": float("nan")},
        {"momentum": 1.0},
        {"momentum": -0.1},
        {"momentum": float("nan")},
        {"weight_decay": -1e-4},
    ],
)
def test_bad_hyperparameters_raise(kwargs):
    with pytest.raises(ValueError):
        PaperSGD([torch.nn.Parameter(torch.zeros(1))], **kwargs)


def test_bad_per_group_hyperparameter_raises():
    with pytest.raises(ValueError):
        PaperSGD([{"params": [torch.nn.Parameter(torch.zeros(1))], "momentum": 1.5}])


def test_zero_momentum_and_zero_lr_allowed():
    p = torch.nn.Parameter(torch.ones(2))
    opt = PaperSGD([p], lr=0.0, momentum=0.0, weight_decay=0.0)
    p.grad = torch.ones(2)
    opt.step()
    assert torch.equal(p.detach(), torch.ones(2))
