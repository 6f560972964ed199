"""`repro spec`: a model's layer table (output shapes, parameters, neurons), set beside the paper.

The table is measured, not declared: the model is built from its config and one image
is pushed through it with forward hooks on every named layer.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from repro import paper
from repro.config import ModelConfig
from repro.layers import LocallyConnected2d
from repro.models import build

WEIGHTED = (nn.Conv2d, nn.Linear, LocallyConnected2d)  # layers whose outputs are the paper's "neurons"


@dataclass(frozen=True)
class LayerRow:
    layer: str
    kind: str
    columns: str
    output_shape: tuple[int, ...]
    params: int
    neurons: int | None  # units a weighted layer outputs (what Figure 2's caption counts)
    paper_neurons: int | None


def layer_table(cfg: ModelConfig) -> tuple[list[LayerRow], dict]:
    """Rows per named layer, and totals (with the paper's printed figures where they apply)."""
    model = build(cfg).eval()
    shapes: dict[str, tuple[int, ...]] = {}
    hooks = [m.register_forward_hook(lambda m, i, o, n=name: shapes.__setitem__(n, tuple(o.shape[1:])))
             for name, m in model.named_children()]
    with torch.no_grad():
        model(torch.zeros(1, 3, cfg.input_size, cfg.input_size))
    for h in hooks:
        h.remove()
    is_paper_net = (cfg.name == "alexnet" and cfg.columns == 2 and cfg.num_classes == 1000
                    and cfg.input_size in (224, 227))
    rows = []
    for name, m in model.named_children():
        weighted = isinstance(m, WEIGHTED)
        n_out = 1
        for s in shapes[name]:
            n_out *= s
        rows.append(LayerRow(
            layer=name,
            kind=m.__class__.__name__,
            columns=getattr(model, "column_role", {}).get(name, ""),
            output_shape=shapes[name],
            params=sum(p.numel() for p in m.parameters()),
            neurons=n_out if weighted else None,
            paper_neurons=paper.LAYER_NEURONS.get(name) if is_paper_net else None,
        ))
    totals = {
        "total_params": sum(p.numel() for p in model.parameters()),
        "total_neurons": sum(r.neurons for r in rows if r.neurons is not None),
        "input_neurons": 3 * cfg.input_size * cfg.input_size,
    }
    if cfg.name == "alexnet" and cfg.num_classes == 1000:
        totals["paper"] = {
            "params": paper.PARAMS_ROUNDED,
            "neurons": paper.NEURONS_ROUNDED,
            "params_exact_calc": paper.PARAMS_EXACT if cfg.columns == 2 else paper.ONE_GPU_PARAMS_EXACT,
        }
        if is_paper_net:
            totals["paper"] |= {"input_neurons": paper.INPUT_NEURONS, "printed_layer_neurons": sum(
                paper.LAYER_NEURONS.values()), "note": paper.CONV1_NOTE}
    return rows, totals


def cost(cfg: ModelConfig) -> tuple[int, int]:
    """(parameters, multiply-adds per image) of the net `cfg` describes, measured with one
    forward pass: a conv or linear layer costs one multiply-add per weight per output position
    (a locally connected layer's weights are each used once)."""
    model = build(cfg).eval()
    macs = [0]

    def count(m: nn.Module, i: tuple, o: torch.Tensor) -> None:
        if isinstance(m, nn.Conv2d):
            macs[0] += m.weight.numel() * o.shape[2] * o.shape[3]
        elif isinstance(m, (nn.Linear, LocallyConnected2d)):
            macs[0] += m.weight.numel()

    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, WEIGHTED)]
    with torch.no_grad():
        model(torch.zeros(1, 3, cfg.input_size, cfg.input_size))
    for h in hooks:
        h.remove()
    return sum(p.numel() for p in model.parameters()), macs[0]
