"""campaign/: the committed queue names shipped ablations, and its README says where each runs from."""

from __future__ import annotations

import re
from pathlib import Path

from repro import spec_file

REPO = Path(__file__).resolve().parents[1]
LINE = re.compile(r"campaign/ablate (?P<rev>[0-9a-f]{7,40}) (?:main:)?(?P<name>[a-z0-9-]+)(?P<args>( --seeds \d+)?)"
                  r"( @ (?P<filter>\S+))?")


def test_every_queued_line_is_a_shipped_ablation_from_a_documented_commit():
    lines = [x.removeprefix("# finished: ") for x in (REPO / "campaign" / "ablations.txt").read_text().splitlines()
             if x.strip()]  # finished lines stay, marked, as the record of which commit ran what
    readme = (REPO / "campaign" / "README.md").read_text()
    shipped = set(spec_file.names())
    assert lines
    for line in lines:
        m = LINE.fullmatch(line)
        assert m is not None, line
        assert m["name"] in shipped, line
        assert f"| `{m['rev']}` |" in readme, f"{m['rev']} is not in campaign/README.md's table"
        if m["filter"]:
            re.compile(m["filter"])
