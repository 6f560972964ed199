"""Every paper choice the code encodes, and the ablation that puts it on trial (reports/choices.md).

A line of `repro/` that encodes a choice stated in the paper carries a `# paper §N` tag. `scan`
finds every tag; `write_choices` groups them by the paper's sections, each beside the shipped
ablations whose TOML names that section and the verdicts of their committed reports, so a
reader sees which choices have been tested and which are taken on trust. `repro report` writes
it from the source and the reports' sidecars only, so a fresh clone rebuilds it byte for byte.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repro import spec_file
from repro.files import write_text

PACKAGE = Path(__file__).resolve().parent
TAG = re.compile(r"(?<!`)# paper (§\d+(?:\.\d+)?)(?:[:,;]\s*|'s\s+|\s+)?(.*)$")
SPEC_SECTION = re.compile(r"^§(\d+(?:\.\d+)?)")
# The paper's section headings (Krizhevsky, Sutskever and Hinton, NIPS 2012).
SECTIONS = {
    "§1": "Introduction", "§2": "The Dataset", "§3": "The Architecture", "§3.1": "ReLU Nonlinearity",
    "§3.2": "Training on Multiple GPUs", "§3.3": "Local Response Normalization", "§3.4": "Overlapping Pooling",
    "§3.5": "Overall Architecture", "§4": "Reducing Overfitting", "§4.1": "Data Augmentation", "§4.2": "Dropout",
    "§5": "Details of learning", "§6": "Results", "§7": "Discussion",
}


@dataclass(frozen=True)
class Choice:
    """One tagged line: its section, file (relative to the repository), code and the tag's note."""

    section: str
    path: str
    code: str
    note: str


def scan(package: Path = PACKAGE) -> list[Choice]:
    """Every `# paper §N` tag under `package`, in file and line order."""
    out = []
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package.parent).as_posix()
        for line in path.read_text(encoding="utf-8").splitlines():
            m = TAG.search(line)
            if m:
                code = line[:m.start()].strip()
                out.append(Choice(m.group(1), rel, code.rstrip("#").strip(), m.group(2).strip()))
    return out


def _order(section: str) -> tuple[int, ...]:
    return tuple(int(p) for p in section[1:].split("."))


def trials() -> dict[str, list[str]]:
    """Paper section -> the shipped ablations whose TOML `section` begins with it."""
    out: dict[str, list[str]] = {}
    for name in spec_file.names():
        m = SPEC_SECTION.match(spec_file.load(name).section)
        if m:
            out.setdefault(f"§{m.group(1)}", []).append(name)
    return out


def _verdicts(name: str, side: Mapping[str, Any] | None) -> str:
    """An ablation's link and each claim's verdict from its committed report's sidecar."""
    if side is None:
        return f"`{name}` (no real-data report yet)"
    link = f"[{name}]({side.get('report', name + '.md')})"
    claims = [f"{c['claim']}, {c['comparison']}: "
              + ("superseded" if c.get("test", "?") == "?" else f"**{c['verdict']}**") for c in side["claims"]]
    done, total = side["runs"]["done"], side["runs"]["total"]
    progress = "" if done >= total else f", {done}/{total} runs"
    return f"{link} ({'; '.join(claims) or 'no paper claim'}{progress})"


def _summary(choices: list[Choice], on_trial: Mapping[str, list[str]], sides: Mapping[str, Any]) -> list[str]:
    rows = ["| § | section | tagged lines | ablations that test (part of) it |", "|---|---|---|---|"]
    for s in sorted({c.section for c in choices} | set(on_trial), key=_order):
        names = on_trial.get(s, [])
        trial = "; ".join(_verdicts(n, sides.get(n)) for n in names) or "none: taken on the paper's word"
        rows.append(f"| {s} | {SECTIONS.get(s, '?')} | {sum(c.section == s for c in choices)} | {trial} |")
    return rows


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _section_table(section: str, choices: list[Choice]) -> list[str]:
    rows = [f"## {section} {SECTIONS.get(section, '')}".rstrip(), "", "| file | code | the tag says |",
            "|---|---|---|"]
    for c in choices:
        if c.section == section:
            code = f"`{_cell(c.code)}`" if c.code else "(a comment above the next line)"
            rows.append(f"| [{c.path}](../{c.path}) | {code} | {_cell(c.note) or '—'} |")
    return rows + [""]


def write_choices(reports_dir: str | Path, sides: Mapping[str, Any], package: Path = PACKAGE) -> Path:
    """reports/choices.md: the summary by section, then every tagged line of each section."""
    choices = scan(package)
    on_trial = trials()
    lines = ["# Every paper choice in the code, and its trial", "",
             f"{len(choices)} lines of `repro/` carry a `# paper §N` tag: each encodes a choice the paper "
             "states. Below, each section of the paper with the ablations that test it (their TOML's "
             "`section`) and the verdicts of their committed reports, then the tagged lines themselves. "
             "An ablation tests one choice of its section (bias-init tests §5's bias values, not its SGD "
             "rule); the arms of its TOML say which. Made by `repro report` from the source.", ""]
    lines += _summary(choices, on_trial, sides) + [""]
    for s in sorted({c.section for c in choices}, key=_order):
        lines += _section_table(s, choices)
    path = Path(reports_dir) / "choices.md"
    write_text(path, "\n".join(lines))
    return path

