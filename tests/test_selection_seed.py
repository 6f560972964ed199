"""[selection] seed: the lr grid trains on a seed that is not analysed (protocol §3)."""

import pytest

from repro import spec_file
from repro.ablation import plan
from repro.errors import ConfigError


def _activation(seed_line: str) -> spec_file.AblationSpec:
    text = spec_file.resolve("activation").read_text()
    start = text.index("[selection]\n") + len("[selection]\n")
    end = text.index("key = ", start)
    assert text[start:end].startswith("seed = ")  # the shipped spec's own selection seed, replaced here
    text = text[:start] + f"{seed_line}\n" + text[end:]
    return spec_file.loads(text, "ablations/activation.toml", "activation")


def test_a_selection_seed_trains_the_grid_and_every_analysed_seed_runs_after_it():
    spec = _activation("seed = 100")
    seeds = [0, 1, 2]
    sel = plan.selection_runs(spec, "smoke", seeds, {})
    assert {r.seed for r in sel} == {100} and len(sel) == 4
    main = plan.main_runs(spec, "smoke", seeds, {}, {"relu": 0.004, "tanh": 0.002})
    assert [(r.arm, r.seed) for r in main] == [("relu", 0), ("relu", 1), ("relu", 2), ("tanh", 0), ("tanh", 1),
                                               ("tanh", 2)]
    assert plan.total_runs(spec, seeds, sel) == 4 + 2 * 3
    m = plan.manifest(spec, "smoke", seeds, {}, {"relu": 0.004, "tanh": 0.002})
    analysed = [e for e in m["runs"] if e["main"]]
    assert sorted(e["seed"] for e in analysed) == [0, 0, 1, 1, 2, 2]  # no selection run is analysed
    assert all(e["stage"] == "main" for e in analysed)


def test_without_a_selection_seed_the_first_seed_keeps_its_winner():
    spec = _activation("")
    m = plan.manifest(spec, "smoke", [0, 1], {}, {"relu": 0.004, "tanh": 0.002})
    winners = [e for e in m["runs"] if e["main"] and e["stage"] == "selection"]
    assert sorted((e["arm"], e["seed"]) for e in winners) == [("relu", 0), ("tanh", 0)]


def test_a_selection_seed_among_the_analysed_seeds_is_refused():
    with pytest.raises(ConfigError, match=r"seed = 1 is also an analysed seed"):
        plan.selection_runs(_activation("seed = 1"), "smoke", [0, 1, 2], {})
    with pytest.raises(ConfigError, match="selection.seed"):
        _activation('seed = "x"')
