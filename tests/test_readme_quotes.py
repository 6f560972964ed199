"""The README quotes its figures from the reports and the stored bench run, never from memory.

Each paragraph or bullet of the README that links a report (`reports/NAME.md`) may quote three
kinds of figure: an effect with its interval (`-1.05 pp [95% CI -1.50, -0.59]`, `1.27x [1.10,
1.47]`), an arm's mean and spread (`25.39 ± 0.40%`) and an exact sign-flip test's p (`sign-flip
p = 0.0625`, or `sign-flip p < 0.001` as the report writes a smaller one). Every such figure
must appear in one of the reports the bullet links. When new records change a report, this test
fails until the README quotes the report as it now stands.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NUM = r"[+\-−]?\d+(?:\.\d+)?"
INTERVAL = re.compile(rf"({NUM})\s*(pp|x)\s*\[\s*(?:95% CI\s*)?({NUM}),\s*({NUM})\s*\]")
MEAN_SD = re.compile(r"(\d+\.\d+)\s*±\s*(\d+\.\d+)")
LINK = re.compile(r"\(reports/([\w.-]+)\.md\)")
SIGN_FLIP = re.compile(r"sign-flip p ([=<]) (\d+(?:\.\d+)?)")  # the README's spelling of a report's exact test


def _blocks(readme: str) -> list[str]:
    """The README's paragraphs and bullets (code blocks left out), each joined onto one line."""
    readme = re.sub(r"```.*?```", "", readme, flags=re.S)
    blocks, current = [], []
    for line in readme.splitlines():
        if not line.strip() or line.startswith(("- ", "#", "|")):
            blocks.append(current)
            current = [line[2:]] if line.startswith("- ") else []
        else:
            current.append(line.strip())
    blocks.append(current)
    return [" ".join(b).replace("**", "") for b in blocks if b]


def _quotes(text: str) -> list[str]:
    """Each quoted figure in `text`, in the one spelling the reports use."""
    found = [f"{v} {unit} [{lo}, {hi}]" for v, unit, lo, hi in INTERVAL.findall(text)]
    found += [f"{mean} ± {sd}" for mean, sd in MEAN_SD.findall(text)]
    found += [f"p {op} {p}" for op, p in SIGN_FLIP.findall(text)]  # "p < 0.001" where the report says so
    return [q.replace("−", "-") for q in found]


def _report_quotes(text: str) -> str:
    """A report's text with the `x` of its ratios spaced as `_quotes` writes them."""
    return re.sub(rf"({NUM})x \[", r"\1 x [", text)


def _cases() -> list[tuple[str, str, list[str]]]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    cases = []
    for bullet in _blocks(readme):
        names = LINK.findall(bullet)
        if names:
            cases.append((names[0], bullet, names))
    return cases


def test_the_readme_has_paragraphs_that_cite_reports():
    names = {c[0] for c in _cases()}
    assert len(names) >= 6 and "precision-80sec" in names  # a parser that finds nothing would pass every check


@pytest.mark.parametrize("name, bullet, names", _cases(), ids=[c[0] for c in _cases()])
def test_a_results_bullet_quotes_only_what_its_reports_say(name, bullet, names):
    reports = " ".join(_report_quotes((REPO / "reports" / f"{n}.md").read_text(encoding="utf-8"))
                       for n in names)
    missing = [q for q in _quotes(bullet) if q not in reports]
    assert not missing, f"README quotes {missing} for {', '.join(names)}, which the report does not say"


def test_quotes_are_found_in_both_spellings():
    text = ("LRN: -1.05 pp [95% CI -1.50, -0.59] (25.25 ± 0.46% vs 26.30 ± 0.23%), 1.27x [1.10, 1.47]; "
            "sign-flip p = 0.0625; dropout p = 0.5; sign-flip p < 0.001")
    assert _quotes(text) == ["-1.05 pp [-1.50, -0.59]", "1.27 x [1.10, 1.47]",
                             "25.25 ± 0.46", "26.30 ± 0.23", "p = 0.0625", "p < 0.001"]
    assert "1.27 x [1.10, 1.47]" in _report_quotes("| 1.27x [1.10, 1.47] |")


def _table_rows(readme: str, header_start: str) -> list[list[str]]:
    """The cells of each body row of the README table whose header row begins `header_start`."""
    lines = readme.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([c.strip().strip("*`") for c in line.strip("|").split("|")])
    return rows


def _count(x: float) -> str:
    return f"{x:,.0f}"


def test_the_performance_tables_quote_the_stored_bench_run():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    bench = json.loads((REPO / "reports" / "bench.json").read_text(encoding="utf-8"))
    training = _table_rows(readme, "| model | reference | harness fp32 NCHW |")
    assert {r[0] for r in training} == set(bench["training"])
    for model, ref, nchw, default, speedup, bf16, bf16_speedup, _goal in training:
        b = bench["training"][model]
        assert [ref, nchw, default, bf16] == [_count(b["reference_img_s"]),
                                              _count(b["harness_by_numerics_img_s"]["fp32-nchw"]),
                                              _count(b["harness_img_s"]), _count(b["harness_bf16_img_s"])]
        assert [speedup, bf16_speedup] == [f"{b['speedup']:.2f}x", f"{b['speedup_bf16']:.2f}x"]
    lrn = _table_rows(readme, "| input | shape | ours, images/s |")
    assert {r[0] for r in lrn} == set(bench["lrn"])
    for name, _shape, ours, theirs, ratio, _goal in lrn:
        b = bench["lrn"][name]
        assert [ours, theirs, ratio] == [_count(b["ours_img_s"]), _count(b["torch_img_s"]),
                                         f"{b['ours_over_torch']:.2f}x"]
    layout = _table_rows(readme, "| op | NCHW, images/s |")
    assert {r[0] for r in layout} == set(bench["layout"])
    for op, nchw, cl, ratio in layout:
        b = bench["layout"][op]
        assert [nchw, cl, ratio] == [_count(b["nchw_img_s"]), _count(b["channels_last_img_s"]),
                                     f"{b['channels_last_over_nchw']:.2f}x"]


def _other_machine_table(readme: str, name: str, bf16_column: str) -> dict:
    """The stored bench run `name` (reports/), after checking the README's table of it (whose bf16
    column is headed `bf16_column`) quotes its training figures."""
    bench = json.loads((REPO / "reports" / name).read_text(encoding="utf-8"))
    rows = _table_rows(readme, "| model | reference | harness fp32 NCHW | harness (default) | speedup | "
                               f"harness bf16 ({bf16_column})")
    assert {r[0] for r in rows} == set(bench["training"])
    for model, ref, nchw, default, speedup, bf16, bf16_speedup in rows:
        b = bench["training"][model]
        assert [ref, nchw, default, bf16] == [_count(b["reference_img_s"]),
                                              _count(b["harness_by_numerics_img_s"]["fp32-nchw"]),
                                              _count(b["harness_img_s"]), _count(b["harness_bf16_img_s"])]
        assert [speedup, bf16_speedup] == [f"{b['speedup']:.2f}x", f"{b['speedup_bf16']:.2f}x"]
    return bench


def test_the_avx2_table_quotes_its_stored_bench_run():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    bench = _other_machine_table(readme, "bench-avx2.json", "emulated")
    assert bench["machine"]["cpu_features"] == ["avx2"]  # what the README says of that machine
    ratios = sorted(v["ours_over_torch"] for v in bench["lrn"].values())
    assert f"our LRN is {ratios[0]:.2f}-{ratios[-1]:.2f}x" in " ".join(readme.split())


STRENGTH = REPO / "reports" / "lrn-strength"
THREE_DECIMALS = re.compile(r"(?<![\d.])(?<!p < )(?<!p = )\d\.\d{3}(?!\d)")  # not a test's p: the report's
WHOLE_PERCENT = re.compile(r"(?<![\d.])(\d+)%(?! CI)")  # not a 95% CI


def _stored_strength() -> set[str]:
    """Every figure of the stored LRN-strength measurements, as the README and its table write them."""
    out = set()
    for p in sorted(STRENGTH.glob("*.json")):
        for layers in json.loads(p.read_text(encoding="utf-8"))["layers"].values():
            for s in layers.values():
                out |= {f"{s[k]:.3f}" for k in ("output_over_gain", "median", "p10")}
                out.add(f"{100 * s['share_below_0.9']:.0f}%")
    return out


def test_lrn_strength_figures_come_from_the_stored_measurements():
    """The LRN-strength table and the README bullet that links it quote the stored JSON, never memory."""
    stored = _stored_strength()
    folder = (STRENGTH / "README.md").read_text(encoding="utf-8")  # its table included
    bullet = next(b for b in _blocks((REPO / "README.md").read_text(encoding="utf-8")) if "lrn-strength/" in b)
    for text in (folder, bullet):
        quoted = THREE_DECIMALS.findall(text) + [f"{n}%" for n in WHOLE_PERCENT.findall(text)]
        assert len(quoted) >= 4, quoted  # a parser that finds nothing would pass
        missing = [q for q in quoted if q not in stored]
        assert not missing, f"quoted {missing}, which no file in reports/lrn-strength/ says"


def test_the_avx512_epyc_table_quotes_its_stored_bench_run():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    bench = _other_machine_table(readme, "bench-avx512.json", "AVX-512")
    assert bench["machine"]["cpu_features"] == ["avx2", "avx512f", "avx512_bf16"]  # as the README says: no AMX
    text = " ".join(readme.split())
    ratios = sorted(v["ours_over_torch"] for v in bench["lrn"].values())
    assert f"our LRN is {ratios[0]:.2f}-{ratios[-1]:.2f}x `torch.nn.LocalResponseNorm` at the same three" in text

    def gains(b: dict) -> str:
        x = sorted(t["harness_bf16_img_s"] / t["harness_img_s"] for t in b["training"].values())
        return f"{x[0]:.1f}-{x[-1]:.1f}x"

    xeon = json.loads((REPO / "reports" / "bench.json").read_text(encoding="utf-8"))
    assert f"buys {gains(bench)} over the fp32 harness, against {gains(xeon)} on the Xeon with AMX" in text


def test_the_profile_table_quotes_its_stored_profile():
    """The README's where-the-time-goes table is the stored `repro bench --profile` run, row by row."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    stored = json.loads((REPO / "reports" / "profile-avx512.json").read_text(encoding="utf-8"))
    parts = list(stored["profile"]["alexnet-cifar"]["fp32"]["shares"])
    rows = _table_rows(readme, "| | ms/step | " + " | ".join(parts) + " |")
    assert len(rows) == sum(len(v) for v in stored["profile"].values()) == 4
    for label, ms, *shares in rows:
        model, precision = label.replace("`", "").split()
        r = stored["profile"][model][precision]
        assert [ms, *shares] == [f"{r['ms_per_step']:.1f}"] + [f"{100 * r['shares'][k]:.0f}%" for k in parts]
    assert stored["machine"]["cpu_features"] == ["avx2", "avx512f", "avx512_bf16"]  # as the README says: no AMX
    assert f"at commit {stored['machine']['git_revision'][:7]} on the AMD EPYC" in readme
