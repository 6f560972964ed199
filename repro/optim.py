"""The paper's SGD update rule, and exactly how it relates to `torch.optim.SGD`.

The rule
--------
Krizhevsky et al. (2012, §5) train with batch size 128, momentum 0.9 and weight decay
0.0005, and write the update for a weight w as

    v_{i+1} = 0.9 * v_i  -  0.0005 * eps * w_i  -  eps * <dL/dw |_{w_i}>_{D_i}
    w_{i+1} = w_i + v_{i+1}

where eps is the learning rate and <.>_{D_i} is the mean over batch D_i. cuda-convnet
(v1 and v2) uses the same form, Delta <- mom*Delta + eps*mean(grad) - wc*eps*w, then
w <- w + Delta, with per-layer `wc` and separate `epsW`/`epsB`. Written with general
hyperparameters (mu = momentum, lambda = weight decay), `PaperSGD` computes

    v <- mu * v - eps * (g + lambda * w)
    w <- w + v

with g = `p.grad`. Because the training loss is a batch *mean*, `p.grad` is already the
paper's <dL/dw>_{D_i}; no division by the batch size happens here.

The important point is the units of v: the paper's velocity is a *parameter change*.
The learning rate in force at step i is folded in once, when that step's gradient is
added, and the stored velocity keeps it afterwards.

Where this equals torch.optim.SGD
---------------------------------
`torch.optim.SGD(momentum=mu, weight_decay=lambda, dampening=0, nesterov=False)` keeps
a buffer in units of *gradient* and multiplies it by the *current* lr at each step:

    b <- mu * b + (g + lambda * w)          (b starts as g + lambda*w on the first step,
    w <- w - lr * b                          which equals starting from b = 0)

If the lr is the same constant eps at every step, induction on the step gives
v = -eps * b after every step (both start at zero, and -eps*(mu*b + d) = mu*(-eps*b)
- eps*d), so both produce the same sequence of weights, up to floating-point
rounding. `tests/test_optim.py` checks both the weights and v == -lr * b.

Where it differs
----------------
Suppose both optimizers ran at eps up to step t, so that they hold the same w and
v_t = -eps * b_t, and the lr is then changed to eps' (e.g. by a scheduler, which only
edits `group['lr']`). With the next gradient g' and d = g' + lambda * w:

    paper:  w_paper = w + mu * v_t - eps' * d = w - mu * eps  * b_t - eps' * d
    torch:  w_torch = w - eps' * (mu * b_t + d) = w - mu * eps' * b_t - eps' * d

so the first step after the change differs by exactly

    w_paper - w_torch = mu * (eps' - eps) * b_t = mu * (1 - eps'/eps) * v_t

(the second form needs eps > 0). Torch rescales the momentum carried over from the old
lr by eps'/eps; after a 10x drop it keeps only a tenth of it. The paper keeps it whole:
the old velocity decays at rate mu, still in step units of the old lr, so the effective
step size falls to the new value over roughly 1/(1 - mu) = 10 steps instead of at once.
For a 10x drop the difference in that first step is -0.9 * 0.9 * eps * b_t =
0.81 * v_t. After that the weights differ, so the later gradients differ too, and the
trajectories do not in general come back together. The rules themselves, though, only
disagree about the old velocity, which decays like mu**k: about 10 steps after each of
the paper's three hand-made drops, in a run of roughly 840k steps (90 epochs of 1.2M
images at batch 128). It is a small effect, but it is the paper's rule, and this module
implements it.

Per-group hyperparameters
-------------------------
cuda-convnet nets use per-layer weight decay and a 2x learning rate for biases, and
biases have no weight decay. `lr`, `momentum` and `weight_decay` are therefore read
from each param group, which may override the defaults given to the constructor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Optional

import torch
from torch.optim import Optimizer

__all__ = ["PaperSGD"]


def _check(lr: float, momentum: float, weight_decay: float) -> None:
    if not lr >= 0.0:  # `not >=` also rejects NaN
        raise ValueError(f"Invalid learning rate: {lr!r} (need lr >= 0)")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"Invalid momentum: {momentum!r} (need 0 <= momentum < 1)")
    if not weight_decay >= 0.0:
        raise ValueError(f"Invalid weight_decay: {weight_decay!r} (need weight_decay >= 0)")


class PaperSGD(Optimizer):
    """SGD with momentum and weight decay in the paper's form (§5).

    Per step and per parameter w with gradient g (the batch-mean gradient):

        v <- momentum * v - lr * (g + weight_decay * w)
        w <- w + v

    The velocity v is stored in `self.state[p]['velocity']`, in units of parameter
    change (it is -lr * torch's `momentum_buffer` while the lr is constant). It starts
    at zero. Parameters whose `.grad` is None are skipped and their velocity is left
    unchanged.

    Args:
        params: parameters or param-group dicts. A group may set its own `lr`,
            `momentum` and `weight_decay`.
        lr: learning rate eps (paper: 0.01, divided by 10 three times).
        momentum: mu, 0 <= mu < 1 (paper: 0.9).
        weight_decay: lambda, multiplied by lr as in the paper (paper: 0.0005).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 0.01,  # paper §5: initial learning rate
        momentum: float = 0.9,  # paper §5
        weight_decay: float = 5e-4,  # paper §5
    ) -> None:
        _check(lr, momentum, weight_decay)
        defaults = dict(lr=lr, momentum=momentum, weight_decay=weight_decay)
        super().__init__(params, defaults)
        for group in self.param_groups:
            _check(group["lr"], group["momentum"], group["weight_decay"])

    @torch.no_grad()
    def step(self, closure: Optional[Callable[[], float]] = None):
        """Do one update. `closure`, if given, re-evaluates the loss (with grad enabled)
        and its value is returned, as in the torch optimizers."""
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            lr = group["lr"]  # read every step: schedulers edit group['lr']
            mu = group["momentum"]
            wd = group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    raise RuntimeError("PaperSGD does not support sparse gradients")
                state = self.state[p]
                if "velocity" not in state:
                    state["velocity"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                v = state["velocity"]
                # paper §5: v <- mu*v - wd*eps*w - eps*g. The lr is folded into v now
                # and v keeps it; a later lr change does not rescale v.
                v.mul_(mu)  # paper §5
                if wd != 0:
                    v.add_(p, alpha=-lr * wd)  # paper §5: weight decay scaled by eps
                v.add_(g, alpha=-lr)  # paper §5
                # paper §5: w <- w + v
                p.add_(v)  # paper §5
        return loss
