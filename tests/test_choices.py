"""reports/choices.md: every `# paper §N` tag in the code, by section, beside the ablations that test it."""

from __future__ import annotations

from pathlib import Path

from repro import choices, scorecard, spec_file

REPO = Path(__file__).resolve().parents[1]


def _package(tmp_path: Path) -> Path:
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text(
        'K = 2.0  # paper §3.3: k = 2\n'
        '"""Lines carry a `# paper §3.3` tag."""\n'  # a mention of the convention, not a tag
        '    # paper §5: w <- w + v\n'
        'p.add_(v)  # paper §5\n', encoding="utf-8")
    (pkg / "sub" / "b.py").write_text("x = 1  # paper §4.1, on every image\ny = 2  # no tag\n", encoding="utf-8")
    return pkg


def test_scan_finds_each_tag_with_its_code_and_note(tmp_path):
    found = choices.scan(_package(tmp_path))
    assert found == [
        choices.Choice("§3.3", "pkg/a.py", "K = 2.0", "k = 2"),
        choices.Choice("§5", "pkg/a.py", "", "w <- w + v"),
        choices.Choice("§5", "pkg/a.py", "p.add_(v)", ""),
        choices.Choice("§4.1", "pkg/sub/b.py", "x = 1", "on every image"),
    ]


def test_the_page_puts_each_section_beside_its_ablations_and_lists_every_tag(tmp_path):
    path = choices.write_choices(tmp_path, {}, _package(tmp_path))
    text = path.read_text(encoding="utf-8")
    assert "4 lines of `repro/` carry" in text
    assert "| §3.3 | Local Response Normalization | 1 | `lrn` (no real-data report yet)" in text
    assert "| §2 |" not in text  # no tag and no ablation names it
    assert "| [pkg/sub/b.py](../pkg/sub/b.py) | `x = 1` | on every image |" in text
    assert text.index("## §3.3") < text.index("## §4.1") < text.index("## §5")


def test_every_shipped_paper_ablation_is_on_the_page_under_a_known_section():
    on_trial = choices.trials()
    named = {n for names in on_trial.values() for n in names}
    for name in spec_file.names():
        if spec_file.load(name).section.startswith("§"):
            assert name in named, name
    assert set(on_trial) <= set(choices.SECTIONS)
    assert {"lrn", "lrn-vs-batchnorm"} <= set(on_trial["§3.3"]) and on_trial["§3.4"] == ["pooling"]


def test_the_code_tags_every_choice_the_ablations_put_on_trial():
    sections = {c.section for c in choices.scan()}
    assert set(choices.trials()) <= sections  # an ablation's section with no tagged line would be a gap


def test_the_committed_page_is_what_the_code_and_reports_make_now(tmp_path):
    """Fails when a tagged line changed (or a report's verdicts) without `repro report all`."""
    built = choices.write_choices(tmp_path, scorecard.real_data_sides(REPO / "reports"))
    committed = REPO / "reports" / "choices.md"
    assert committed.read_text(encoding="utf-8") == built.read_text(encoding="utf-8")
