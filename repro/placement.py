"""AlexNet's two columns on two devices, as the paper trained it (§3.2, Figure 2).

    repro train --model alexnet --devices cuda:0,cuda:1

On one device the two columns are grouped convolutions (`repro.models.alexnet`).
`place_columns` rebuilds the same net, with the same numbers, as two `Column`s on two
devices, column 1 on devices[0] and column 2 on devices[1]:

    layer   column 1 (devices[0])          column 2 (devices[1])          reads
    conv1   kernels 0..47 of 96            kernels 48..95                 the image (copied to both)
    conv2   its 128 of 256 (groups=2)      its 128                        its own column's maps
    conv3   kernels 0..191 of 384          kernels 192..383               BOTH columns  <- exchange
    conv4   its 192 of 384 (groups=2)      its 192                        its own column
    conv5   its 128 of 256 (groups=2)      its 128                        its own column
    fc6     units 0..2047 of 4096          units 2048..4095               BOTH columns  <- exchange
    fc7     units 0..2047 of 4096          units 2048..4095               BOTH columns  <- exchange
    fc8     all units, on devices[0]                                      BOTH columns  <- exchange

(the paper's widths; alexnet-cifar has the same layout at its own widths). LRN, pooling,
ReLU and dropout are per column: each GPU normalizes and pools its own maps. Every
cross-device transfer goes through `_exchange`, which is called exactly four times per
forward pass (into conv3, fc6, fc7 and fc8); nothing else moves activations between the
devices. On CUDA the two columns' kernels are queued on their own GPUs one after the
other without waiting, so the columns compute concurrently between exchanges.

The placed net is numerically the grouped net: `place_columns` copies the weights (the
grouped weights' halves) and `gather_state_dict` / `scatter_state_dict` map parameters
back and forth in the single-device layout (`conv2.weight` is the two columns' halves
concatenated), which is what checkpoints store, so a run started on two devices resumes
on one and the other way round (`optimizer_state` / `load_states` do the same for the
optimizer's velocities).

Dropout: each column draws its own masks on its own device, so in training mode the
placed net's masks are different random draws from the grouped net's, even from the same
seed (identically distributed, every unit dropped independently with probability p, but
not the same bits). Equivalence is therefore tested in eval mode or with dropout 0.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Sequence

import torch
from torch import nn

from repro.errors import ConfigError
from repro.models.common import ColumnwiseLRN, PaperNet

__all__ = ["Column", "TwoColumnAlexNet", "place_columns", "parse_devices", "resolve_devices",
           "model_state", "optimizer_state", "load_states"]

PLACEABLE = ("alexnet", "alexnet-cifar")
CONVS = ("conv1", "conv2", "conv3", "conv4", "conv5")
FCS = ("fc6", "fc7", "fc8")
PER_COLUMN = ("conv2", "conv4", "conv5")  # paper §3.5: kernels read only their own GPU's maps
EXCHANGES = ("conv3", "fc6", "fc7", "fc8")  # the layers whose input is both columns' maps


def _exchange(parts: Sequence[torch.Tensor], devices: Sequence[torch.device], into: str) -> list[torch.Tensor]:
    """Both columns' outputs, concatenated (column 1's channels first), on each of `devices`.

    The only place where data moves between the columns' devices. Paper §3.2: "the GPUs
    communicate only in certain layers": the input of conv3 and of the fully connected
    layers fc6, fc7 and fc8 (`into` names which). Autograd sends the gradients back the
    same way.
    """
    return [torch.cat([p.to(d) for p in parts], dim=1) for d in devices]


class Column(nn.Module):
    """One column's layers (paper-named children, as in the grouped net), on one device."""

    def __init__(self, layers: list[tuple[str, nn.Module]], device: torch.device):
        super().__init__()
        for name, module in layers:
            self.add_module(name, module)
        self.device = device

    def run(self, x: torch.Tensor, start: str | None, stop: str | None) -> torch.Tensor:
        """Apply the children from `start` (inclusive; None: the first) to `stop` (exclusive; None: the end)."""
        names = list(self._modules)
        lo = 0 if start is None else names.index(start)
        hi = len(names) if stop is None else names.index(stop)
        for name in names[lo:hi]:
            x = self._modules[name](x)
        return x

    def extra_repr(self) -> str:
        return f"device={self.device}"


def _split_sizes(n: int) -> list[int]:
    return [n // 2, n - n // 2]


def _param(t: torch.Tensor, device: torch.device, like: nn.Parameter) -> nn.Parameter:
    return nn.Parameter(t.detach().to(device).clone(), requires_grad=like.requires_grad)


def _take_rows(src: nn.Module, half: nn.Module, column: int, device: torch.device) -> nn.Module:
    """Give `half` column `column`'s rows (output units) of `src`'s weight and bias, on `device`."""
    out = half.weight.shape[0]
    rows = slice(column * out, (column + 1) * out)
    half.weight = _param(src.weight[rows], device, src.weight)
    if src.bias is not None:
        half.bias = _param(src.bias[rows], device, src.bias)
    return half


def _split_conv(conv: nn.Conv2d, column: int, device: torch.device) -> nn.Conv2d:
    """Column `column`'s half of `conv`'s kernels (output channels), as a dense conv on `device`.

    groups=2: the half reads only its own column's maps (paper §3.5: conv2, conv4, conv5);
    groups=1: it reads all input maps (conv1: the image; conv3: both columns, exchanged)."""
    out = conv.out_channels // 2
    in_ch = conv.in_channels // conv.groups
    half = type(conv)(in_ch, out, conv.kernel_size, stride=conv.stride, padding=conv.padding,
                      dilation=conv.dilation, groups=1, bias=conv.bias is not None,
                      padding_mode=conv.padding_mode, device="meta")
    return _take_rows(conv, half, column, device)


def _split_linear(fc: nn.Linear, column: int, device: torch.device) -> nn.Linear:
    """Column `column`'s half of `fc`'s units; it reads both columns' inputs (exchanged)."""
    out = fc.out_features // 2
    half = nn.Linear(fc.in_features, out, bias=fc.bias is not None, device="meta")
    return _take_rows(fc, half, column, device)


def _split_batchnorm(bn: nn.BatchNorm2d, column: int, device: torch.device) -> nn.BatchNorm2d:
    """BatchNorm is per channel, so each column's half of it is exact."""
    c = bn.num_features // 2
    half = copy.deepcopy(bn)
    half.num_features = c
    rows = slice(column * c, (column + 1) * c)
    for name, p in list(bn.named_parameters(recurse=False)):
        setattr(half, name, _param(p[rows], device, p))
    for name, b in list(bn.named_buffers(recurse=False)):
        half.register_buffer(name, (b if b.dim() == 0 else b[rows]).detach().to(device).clone())
    return half


def _meta_copy(model: nn.Module) -> nn.Module:
    """A copy of `model` on the meta device (shapes, names, hparams; no memory, no copying)."""
    memo: dict = {}
    for t in list(model.parameters()) + list(model.buffers()):
        meta = torch.empty_like(t, device="meta")
        memo[id(t)] = nn.Parameter(meta, requires_grad=t.requires_grad) if isinstance(t, nn.Parameter) else meta
    return copy.deepcopy(model, memo)


def _check(model: nn.Module) -> None:
    name = type(model).__name__
    if not isinstance(model, PaperNet):
        raise ConfigError(f"place_columns needs a two-column AlexNet (a PaperNet), got {name}")
    if model.columns != 2:
        raise ConfigError(f"model has columns={model.columns}: only the two-column AlexNet "
                          "(alexnet or alexnet-cifar with columns=2) can be placed on two devices")
    kids = dict(model.named_children())
    missing = [n for n in CONVS + FCS if n not in kids]
    if missing:
        raise ConfigError(f"model has no {', '.join(missing)}: only AlexNet's columns can be placed on two devices")
    for n in CONVS:
        want = 2 if n in PER_COLUMN else 1
        if not isinstance(kids[n], nn.Conv2d) or kids[n].groups != want or kids[n].out_channels % 2:
            raise ConfigError(f"{n} is not AlexNet's {'per-column' if want == 2 else 'dense'} convolution "
                              f"(groups={want}, an even number of kernels); cannot place it")
    for n in FCS:
        if not isinstance(kids[n], nn.Linear) or (n != "fc8" and kids[n].out_features % 2):
            raise ConfigError(f"{n} is not AlexNet's fully connected layer; cannot place it")
    names = list(kids)
    if names[-1] != "fc8" or not names.index("conv3") < names.index("fc6") < names.index("fc7") < names.index("fc8"):
        raise ConfigError("the model's layers are not in AlexNet's order (conv1..conv5, fc6, fc7, fc8)")


class TwoColumnAlexNet(nn.Module):
    """A two-column AlexNet with column 1 on devices[0] and column 2 on devices[1].

    Build it with `place_columns(model, devices)`. Children: `column1`, `column2` (each a
    `Column` with the paper's layer names) and `fc8` (on devices[0]). Inputs may be on any
    device; the output is on devices[0].
    """

    def __init__(self, model: PaperNet, devices: Sequence[torch.device | str]):
        super().__init__()
        _check(model)
        if len(devices) != 2:
            raise ConfigError(f"two devices are needed, one per column; got {len(devices)}")
        self.devices = tuple(torch.device(d) for d in devices)
        # A shape-only copy of the grouped net: its parameter names, shapes and optim groups.
        self._template = (_meta_copy(model),)  # in a tuple: not a submodule
        # single-device state key -> [(placed state key, dim it is split along, or None: replicated)]
        self._layout: dict[str, list[tuple[str, int | None]]] = OrderedDict()
        columns: list[list[tuple[str, nn.Module]]] = [[], []]
        fc8: nn.Linear | None = None
        for name, layer in model.named_children():
            if name == "fc8":
                fc8 = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, device="meta")
                fc8.weight = _param(layer.weight, self.devices[0], layer.weight)
                if layer.bias is not None:
                    fc8.bias = _param(layer.bias, self.devices[0], layer.bias)
                for p, _ in layer.named_parameters():
                    self._layout[f"fc8.{p}"] = [(f"fc8.{p}", None)]
                continue
            for c, dev in enumerate(self.devices):
                if isinstance(layer, nn.Conv2d):
                    part = _split_conv(layer, c, dev)
                elif isinstance(layer, nn.Linear):
                    part = _split_linear(layer, c, dev)
                elif isinstance(layer, ColumnwiseLRN):
                    part = copy.deepcopy(layer.lrn).to(dev)  # paper §3.3: each column normalizes its own maps
                elif isinstance(layer, nn.BatchNorm2d):
                    part = _split_batchnorm(layer, c, dev)
                elif not any(True for _ in layer.parameters()) and not any(True for _ in layer.buffers()):
                    part = copy.deepcopy(layer).to(dev)  # ReLU, pooling, flatten, dropout: per column
                else:
                    raise ConfigError(f"cannot place layer {name} ({type(layer).__name__}) on two devices")
                columns[c].append((name, part))
            for key, value in layer.state_dict().items():
                whole = value.dim() == 0  # e.g. BatchNorm's num_batches_tracked: the same in both columns
                self._layout[f"{name}.{key}"] = [(f"column{c + 1}.{name}.{key}", None if whole else 0)
                                                 for c in range(2)]
        self.column1 = Column(columns[0], self.devices[0])
        self.column2 = Column(columns[1], self.devices[1])
        self.fc8 = fc8  # paper Figure 2: the 1000-way softmax's layer reads both columns
        self.train(model.training)

    # ------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d1, d2 = self.devices
        c1, c2 = self.column1, self.column2
        # Figure 2: both columns see the whole image. This is the input, not a column exchange.
        a, b = c1.run(x.to(d1), None, "conv3"), c2.run(x.to(d2), None, "conv3")  # conv1 .. pool2, per column
        a, b = _exchange([a, b], (d1, d2), into="conv3")
        a, b = c1.run(a, "conv3", "fc6"), c2.run(b, "conv3", "fc6")  # conv3 .. pool5, flatten
        a, b = _exchange([a, b], (d1, d2), into="fc6")
        a, b = c1.run(a, "fc6", "fc7"), c2.run(b, "fc6", "fc7")  # fc6, relu6, drop6
        a, b = _exchange([a, b], (d1, d2), into="fc7")
        a, b = c1.run(a, "fc7", None), c2.run(b, "fc7", None)  # fc7, relu7, drop7
        (h,) = _exchange([a, b], (d1,), into="fc8")
        return self.fc8(h)

    # ------------------------------------------------------------ the single-device layout

    @property
    def template(self) -> PaperNet:
        """The grouped net on the meta device: names and shapes only."""
        return self._template[0]

    def _placed(self) -> dict[str, torch.Tensor]:
        return dict(self.state_dict(keep_vars=True))

    def _gather(self, get: Callable[[str], torch.Tensor | None], device) -> OrderedDict:
        out: OrderedDict[str, torch.Tensor] = OrderedDict()
        dev = torch.device(device) if device is not None else self.devices[0]
        for key, parts in self._layout.items():
            ts = [get(k) for k, _ in parts]
            if any(t is None for t in ts):
                continue
            dim = parts[0][1]
            out[key] = ts[0].detach().to(dev) if dim is None else torch.cat([t.detach().to(dev) for t in ts], dim)
        return out

    def gather_state_dict(self, device: torch.device | str | None = None) -> OrderedDict:
        """The state dict of the equivalent single-device (grouped) net, on `device`
        (default devices[0]): what `build(cfg.model).state_dict()` would hold."""
        placed = self._placed()
        return self._gather(placed.__getitem__, device)

    def gather_grads(self, device: torch.device | str | None = None) -> OrderedDict:
        """Each single-device parameter's gradient, assembled from the columns' halves
        (parameters without a gradient are left out)."""
        params = dict(self.named_parameters())
        return self._gather(lambda k: params[k].grad if k in params else None, device)

    @torch.no_grad()
    def scatter_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        """Load a single-device (grouped) state dict into the columns; strict about keys and shapes."""
        missing = [k for k in self._layout if k not in state]
        extra = [k for k in state if k not in self._layout]
        if missing or extra:
            raise ConfigError(f"state dict does not fit this net: missing {missing[:4]}, unexpected {extra[:4]}")
        placed = self._placed()
        for key, parts in self._layout.items():
            for t, piece in zip((placed[k] for k, _ in parts), self._pieces(state[key], parts, key), strict=True):
                t.copy_(piece)

    def _pieces(self, whole: torch.Tensor, parts: list[tuple[str, int | None]], key: str) -> list[torch.Tensor]:
        shape = tuple(self.template.state_dict()[key].shape)
        if tuple(whole.shape) != shape:
            raise ConfigError(f"{key}: shape {tuple(whole.shape)} does not fit this net's {shape}")
        dim = parts[0][1]
        if dim is None:
            return [whole] * len(parts)
        return list(torch.split(whole, _split_sizes(whole.shape[dim]), dim))

    def gather_model(self, device: torch.device | str = "cpu") -> PaperNet:
        """The equivalent single-device grouped net, with these weights, on `device`."""
        net = copy.deepcopy(self.template).to_empty(device=device)
        net.load_state_dict(self.gather_state_dict(device))
        return net.train(self.training)

    # ------------------------------------------------------------ optimizer

    def _group_names(self, weight_decay: float | None = None) -> list[tuple[dict, list[str]]]:
        """The grouped net's optimizer groups, each with the names of its parameters."""
        tmpl = self.template
        names = {id(p): n for n, p in tmpl.named_parameters()}
        return [(g, [names[id(p)] for p in g["params"]]) for g in tmpl.optim_groups(weight_decay)]

    def optim_groups(self, weight_decay: float | None = None) -> list[dict]:
        """The grouped net's parameter groups (per-layer weight decay, bias lr multiplier),
        in the same order, each holding the split halves of that group's parameters."""
        params = dict(self.named_parameters())
        groups = []
        for g, names in self._group_names(weight_decay):
            placed = [params[k] for n in names for k, _ in self._layout[n]]
            groups.append({**{k: v for k, v in g.items() if k != "params"}, "params": placed})
        return groups

    def gather_optimizer_state(self, state: dict) -> dict:
        """An optimizer state dict of this net (built over `optim_groups`), in the layout of
        one built over the grouped net's `optim_groups`: per-parameter tensors (velocity,
        momentum buffer) are concatenated like the parameters."""
        layout = self._group_names()
        if len(state["param_groups"]) != len(layout):
            raise ConfigError("optimizer state does not match this net's optim_groups")
        params = dict(self.named_parameters())
        new_state, groups, next_id = {}, [], 0
        for group, (_, names) in zip(state["param_groups"], layout, strict=True):
            ids = iter(group["params"])
            new_ids = []
            for n in names:
                parts = self._layout[n]
                own = [next(ids) for _ in parts]
                entries = [state["state"].get(i) for i in own]
                if all(e is not None for e in entries):
                    new_state[next_id] = _merge(entries, [params[k] for k, _ in parts], parts[0][1], self.devices[0])
                new_ids.append(next_id)
                next_id += 1
            groups.append({**group, "params": new_ids})
        return {"state": new_state, "param_groups": groups}

    def scatter_optimizer_state(self, state: dict) -> dict:
        """The inverse of `gather_optimizer_state`: a grouped net's optimizer state dict, in
        the layout of this net's optimizer (load it with `opt.load_state_dict`)."""
        layout = self._group_names()
        if len(state["param_groups"]) != len(layout):
            raise ConfigError("optimizer state does not match this net's optim_groups")
        shapes = {n: p.shape for n, p in self.template.named_parameters()}
        new_state, groups, next_id = {}, [], 0
        for group, (_, names) in zip(state["param_groups"], layout, strict=True):
            if len(group["params"]) != len(names):
                raise ConfigError("optimizer state does not match this net's optim_groups")
            new_ids = []
            for n, i in zip(names, group["params"], strict=True):
                parts = self._layout[n]
                entry = state["state"].get(i)
                for c in range(len(parts)):
                    if entry is not None:
                        new_state[next_id + c] = {
                            k: (self._pieces(v, parts, n)[c] if _is_per_param(v, shapes[n]) else v)
                            for k, v in entry.items()}
                new_ids.extend(range(next_id, next_id + len(parts)))
                next_id += len(parts)
            groups.append({**group, "params": new_ids})
        return {"state": new_state, "param_groups": groups}

    def extra_repr(self) -> str:
        return f"devices=({self.devices[0]}, {self.devices[1]}); columns communicate into {', '.join(EXCHANGES)}"


def _is_per_param(v, shape) -> bool:
    return isinstance(v, torch.Tensor) and v.dim() > 0 and tuple(v.shape) == tuple(shape)


def _merge(entries: list[dict], params: list[torch.Tensor], dim: int | None, device: torch.device) -> dict:
    out = {}
    for k, v in entries[0].items():
        if dim is not None and isinstance(v, torch.Tensor) and v.dim() > 0 and v.shape == params[0].shape:
            out[k] = torch.cat([e[k].detach().to(device) for e in entries], dim)
        else:
            out[k] = v
    return out


def place_columns(model: PaperNet, devices: Sequence[torch.device | str]) -> TwoColumnAlexNet:
    """The two-column AlexNet `model` with column 1 on devices[0] and column 2 on devices[1].

    The weights are copied (the grouped convolutions' halves become per-column
    convolutions), so the result computes the same function as `model`; `model` itself is
    left as it was. Raises ConfigError for a one-column net or a net that is not AlexNet.
    Both devices may be the same (how the CPU tests run it).
    """
    return TwoColumnAlexNet(model, devices)


# ---------------------------------------------------------------- for the trainer


def parse_devices(spec: str) -> list[torch.device]:
    """`"cuda:0,cuda:1"` -> two devices, checked against what this machine has."""
    names = [s.strip() for s in spec.split(",") if s.strip()]
    if len(names) != 2:
        raise ConfigError(f"runtime.devices={spec!r}: name two devices, one per column (e.g. cuda:0,cuda:1)")
    devices = []
    for n in names:
        try:
            d = torch.device(n)
        except RuntimeError:
            raise ConfigError(f"runtime.devices={spec!r}: unknown device {n!r}; use cpu, cuda:N or mps") from None
        if d.type == "cuda":
            count = torch.cuda.device_count() if torch.cuda.is_available() else 0
            index = d.index if d.index is not None else (torch.cuda.current_device() if count else 0)
            if index >= count:
                raise ConfigError(f"runtime.devices={spec!r} names cuda:{index}, but this machine has "
                                  f"{count} CUDA device(s)")
            d = torch.device("cuda", index)
        elif d.type == "mps" and not torch.backends.mps.is_available():
            raise ConfigError(f"runtime.devices={spec!r}: MPS is not available here")
        devices.append(d)
    return devices


def resolve_devices(cfg, world: int = 1) -> list[torch.device] | None:
    """The two column devices a RunConfig asks for (`runtime.devices`), or None for one device."""
    spec = getattr(cfg.runtime, "devices", "") or ""
    if not spec.strip():
        return None
    if cfg.model.name not in PLACEABLE or cfg.model.columns != 2:
        raise ConfigError(f"--devices places AlexNet's two columns on two devices; model {cfg.model.name} with "
                          f"columns={cfg.model.columns} has no two columns to place (use --device)")
    if world > 1:
        raise ConfigError("--devices (two devices per model) does not combine with data-parallel --nproc/torchrun")
    return parse_devices(spec)


def model_state(model: nn.Module) -> dict:
    """The model's state dict in the single-device layout (what checkpoints store)."""
    return model.gather_state_dict() if isinstance(model, TwoColumnAlexNet) else model.state_dict()


def optimizer_state(model: nn.Module, opt: torch.optim.Optimizer) -> dict:
    """The optimizer's state dict in the single-device layout (what checkpoints store)."""
    sd = opt.state_dict()
    return model.gather_optimizer_state(sd) if isinstance(model, TwoColumnAlexNet) else sd


def load_states(model: nn.Module, opt: torch.optim.Optimizer | None, model_sd: dict, opt_sd: dict | None) -> None:
    """Load single-device-layout states (a checkpoint's) into `model` and `opt`, placed or not."""
    if isinstance(model, TwoColumnAlexNet):
        model.scatter_state_dict(model_sd)
        if opt is not None and opt_sd is not None:
            opt.load_state_dict(model.scatter_optimizer_state(opt_sd))
        return
    model.load_state_dict(model_sd)
    if opt is not None and opt_sd is not None:
        opt.load_state_dict(opt_sd)
