"""The reports' figures: training curves per arm, each paired claim's per-seed differences, and
the scorecard's every claim beside what it expects.

Pure drawing: repro.report and repro.scorecard gather the numbers and name the files. Every PNG is written without
date or version metadata, so a report rebuilds byte for byte from the same records.
"""

from __future__ import annotations

import math
import textwrap
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro import files

RATIO_TICKS = (0.5, 0.67, 0.8, 0.9, 1, 1.1, 1.2, 1.3, 1.5, 2, 3)  # a ratio axis spanning less than 4x
COARSE_RATIO_TICKS = (0.125, 0.25, 0.5, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32)
PNG_METADATA = {"Software": None}  # no matplotlib version or date in the PNG: rebuilt byte for byte


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with files.atomic(path) as tmp:
        fig.savefig(tmp, format="png", metadata=PNG_METADATA)
    _pyplot().close(fig)


def curves(arm_curves: Mapping[str, list], keys: Sequence[tuple[str, str]], path: Path, title: str, ylabel: str,
           hline: float | None, hline_label: str, scale: float = 100.0) -> None:
    """One line per arm and series (mean over seeds at each evaluation; thin lines: single runs);
    values times `scale` (100: errors in %)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    steps: set[float] = set()
    for i, (arm, runs) in enumerate(arm_curves.items()):
        colour = f"C{i}"
        for key, style in keys:
            by_epoch: dict[float, list[float]] = defaultdict(list)
            for epochs, values in runs:
                ys = [scale * y for y in values[key]]
                if all(math.isnan(y) for y in ys):
                    continue
                ax.plot(epochs, ys, color=colour, ls=style, lw=0.8, alpha=0.3)
                for ep, y in zip(epochs, ys, strict=True):
                    if not math.isnan(y):
                        by_epoch[ep].append(y)
            xs = sorted(by_epoch)
            steps.update(round(b - a, 6) for a, b in zip(xs, xs[1:]))
            if xs:
                ax.plot(xs, [float(np.mean(by_epoch[x])) for x in xs], color=colour, ls=style, lw=2,
                        label=f"{arm}, {key.replace('_', ' ')} (mean of {len(runs)})")
    if hline is not None:
        ax.axhline(scale * hline, color="black", ls="--", lw=1, alpha=0.7, label=hline_label)
    step = min(steps, default=1.0)
    ax.set_xlabel("epoch" if step >= 1 else f"epoch (evaluated every {step:g} epochs)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    _save(fig, path)


@dataclass(frozen=True)
class Pairs:
    """One paired claim's per-seed differences, on the claim's scale: arm minus against in pp, or
    arm over against (`unit` "x", drawn on a log axis). `same_machine[i]`: both runs of seed i on
    one machine (None: every run on one machine, nothing to tell apart); `censored[i]`: a value
    of the pair is a bound (a run stopped at its cap before its target)."""

    title: str
    unit: str
    seeds: tuple[int, ...]
    values: tuple[float, ...]
    same_machine: tuple[bool, ...] | None
    censored: tuple[bool, ...]
    estimate: float
    lo: float
    hi: float
    paper: float | None  # the paper's effect, where the claim states a size
    paper_band: tuple[float, float] | None  # where the claim states a size (an open end runs to the edge)
    margin_band: tuple[float, float] | None


def pairs(panels: Sequence[Pairs], path: Path) -> None:
    """One panel a claim: a dot a seed, the mean (geometric for ratios) and its 95% interval above
    them, no effect dashed, the paper's value and band green, the smallest effect of interest grey;
    one legend below all the panels."""
    plt = _pyplot()
    heights = [1.6 + 0.22 * len(p.seeds) + 0.2 * (len(p.title) > 72) for p in panels]
    legend_in = 0.5  # inches below the panels for one legend for all
    fig, axes = plt.subplots(len(panels), 1, figsize=(6.4, sum(heights) + legend_in), dpi=100, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    legend: dict[str, object] = {}
    for ax, p in zip(axes[:, 0], panels, strict=True):
        _pairs_panel(ax, p)
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            legend.setdefault(label, handle)
    fig.legend(legend.values(), legend.keys(), loc="lower center", ncol=3, fontsize="x-small", frameon=False)
    fig.tight_layout(rect=(0, legend_in / (sum(heights) + legend_in), 1, 1))
    _save(fig, path)


def _pairs_panel(ax, p: Pairs) -> None:
    null = 1.0 if p.unit == "x" else 0.0
    ys = list(range(len(p.seeds)))
    if p.unit == "x":
        ax.set_xscale("log")
    lo, hi = _limits(p, null)
    for band, colour, label in ((p.margin_band, "0.85", "smallest effect of interest"),
                                (p.paper_band, "#cdebc5", "the paper's band")):
        if band is not None:
            ax.axvspan(*_clip(*band, lo, hi), color=colour, zorder=0, label=label)
    ax.set_xlim(lo, hi)
    if p.unit == "x":
        _ratio_ticks(ax, lo, hi)
    ax.axvline(null, color="black", ls="--", lw=1, label="no effect")
    if p.paper is not None:
        ax.axvline(p.paper, color="C2", lw=1.5, label="the paper's value")
    for same, marker_face, label in ((True, "C0", "both runs on one machine"), (False, "white", "on two machines"),
                                     (None, "C0", None)):
        keep = [i for i in ys if (p.same_machine[i] if p.same_machine is not None else None) is same]
        for censored, marker in ((False, "o"), (True, "D")):
            idx = [i for i in keep if p.censored[i] == censored]
            if idx:
                ax.scatter([p.values[i] for i in idx], idx, marker=marker, facecolors=marker_face,
                           edgecolors="C0", s=28, zorder=3,
                           label=(label if not censored else "a bound (a run stopped at its cap)"))
    top = len(ys) + 0.6
    ax.plot(_clip(p.lo, p.hi, lo, hi), [top, top], color="C3", lw=3, solid_capstyle="butt", zorder=3)
    if math.isfinite(p.estimate):
        ax.scatter([p.estimate], [top], color="C3", s=40, zorder=4, label="mean, 95% CI")
    ax.set_yticks(ys + [top], [str(s) for s in p.seeds] + ["mean"], fontsize="small")
    ax.set_ylim(-0.8, top + 0.8)
    ax.set_ylabel("seed")
    ax.set_xlabel("arm / against (log scale)" if p.unit == "x" else "arm − against (pp)")
    ax.set_title(textwrap.fill(p.title, 72), fontsize="medium")  # a long comparison wraps, not clipped
    ax.grid(axis="x", alpha=0.3)


def _limits(p: Pairs, null: float) -> tuple[float, float]:
    """x limits holding every dot, the interval, no effect, the paper's value and the bands'
    finite ends; an interval's open end (censored values) runs to the edge."""
    marks = [*p.values, p.lo, p.hi, p.estimate, null] + ([p.paper] if p.paper is not None else [])
    return _span(marks + [x for b in (p.paper_band, p.margin_band) if b for x in b], p.unit == "x")


def _clip(a: float | None, b: float | None, lo: float, hi: float) -> list[float]:
    """The span a..b inside the axis limits lo..hi; an open end (None or infinite) runs to the edge."""
    return [lo if a is None or not math.isfinite(a) else max(a, lo),
            hi if b is None or not math.isfinite(b) else min(b, hi)]


def _span(xs: Sequence[float | None], log: bool) -> tuple[float, float]:
    """The finite (and, on a log axis, positive) values' range, padded by 8% either side (on
    logs for a log axis)."""
    keep = [x for x in xs if x is not None and math.isfinite(x) and (not log or x > 0)]
    f = np.log if log else (lambda v: v)
    a, b = float(f(min(keep))), float(f(max(keep)))
    pad = 0.08 * (b - a or 1.0)
    return (float(np.exp(a - pad)), float(np.exp(b + pad))) if log else (a - pad, b + pad)


def _ratio_ticks(ax, lo: float, hi: float) -> None:
    """Ratios read as plain numbers (1.2, 6), not powers of ten."""
    from matplotlib.ticker import NullFormatter

    ticks = [t for t in (RATIO_TICKS if hi / lo < 4 else COARSE_RATIO_TICKS) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_formatter(NullFormatter())


VERDICT_COLOURS = {"reproduced": "C2", "contradicted": "C3", "no effect": "C0", "inconclusive": "0.45"}


@dataclass(frozen=True)
class ClaimMark:
    """One claim of the scorecard: its effect (`unit` "pp" or "x") and 95% interval (None: an open
    end), the band it expects (None: an open end) and, where it states a size, the paper's value."""

    label: str
    unit: str
    estimate: float
    lo: float | None
    hi: float | None
    paper: float | None
    band: tuple[float | None, float | None]
    verdict: str


def claims(marks: Sequence[ClaimMark], path: Path) -> None:
    """Every measured claim on one page, a row each, in the scorecard's order: differences (pp) in
    one panel, ratios (on a log axis) in another; the dot and bar coloured by verdict, the band
    the claim expects green, the paper's value a green tick, no effect dashed."""
    plt = _pyplot()
    groups = [[m for m in marks if m.unit == u] for u in ("pp", "x")]
    groups = [g for g in groups if g]
    heights = [0.9 + 0.34 * len(g) for g in groups]
    legend_in = 0.4
    fig, axes = plt.subplots(len(groups), 1, figsize=(8.0, sum(heights) + legend_in), dpi=100, squeeze=False,
                             gridspec_kw={"height_ratios": heights})
    for ax, group in zip(axes[:, 0], groups, strict=True):
        _claims_panel(ax, group)
    colours = [(v, c) for v, c in VERDICT_COLOURS.items() if any(m.verdict == v for m in marks)]
    handles = [plt.Line2D([], [], color=c, marker="o", lw=3) for _, c in colours]
    handles += [plt.Rectangle((0, 0), 1, 1, color="#cdebc5"), plt.Line2D([], [], color="C2", lw=1.5)]
    fig.legend(handles, [v for v, _ in colours] + ["what the claim expects", "the paper's value"],
               loc="lower center", ncol=len(handles), fontsize="x-small", frameon=False)
    fig.tight_layout(rect=(0, legend_in / (sum(heights) + legend_in), 1, 1))
    _save(fig, path)


def _claims_panel(ax, group: Sequence[ClaimMark]) -> None:
    log = group[0].unit == "x"
    null = 1.0 if log else 0.0
    if log:
        ax.set_xscale("log")
    lo, hi = _span([null] + [x for m in group for x in (m.estimate, m.lo, m.hi, m.paper, *m.band)], log)
    ys = list(range(len(group)))[::-1]  # the first claim on top
    for y, m in zip(ys, group, strict=True):
        ax.fill_betweenx([y - 0.4, y + 0.4], *_clip(*m.band, lo, hi), color="#cdebc5", lw=0, zorder=0)
        if m.paper is not None:
            ax.plot([m.paper, m.paper], [y - 0.4, y + 0.4], color="C2", lw=1.5, zorder=1)
        colour = VERDICT_COLOURS.get(m.verdict, "0.45")
        ax.plot(_clip(m.lo, m.hi, lo, hi), [y, y], color=colour, lw=3,
                solid_capstyle="butt", zorder=2)
        ax.scatter([m.estimate], [y], color=colour, s=30, zorder=3)
    ax.axvline(null, color="black", ls="--", lw=1)
    ax.set_xlim(lo, hi)
    if log:
        _ratio_ticks(ax, lo, hi)
    ax.set_yticks(ys, [m.label for m in group], fontsize="small")
    ax.set_ylim(-0.7, len(group) - 0.3)
    ax.set_xlabel("effect: arm / comparison (log scale)" if log else "effect: arm − comparison (pp)")
    ax.grid(axis="x", alpha=0.3)
