"""Planning an ablation: which runs it has, what state they are in, what was chosen. Trains nothing.

    spec (ablations/NAME.toml) x scale x seeds  ->  Run(arm, seed, RunConfig)
    each Run's directory is     <results>/<ablation>/<arm>/<seed>-<config hash>/
    a selection run's is        <results>/<ablation>/<arm>/<key>-<value>/<seed>-<hash>/

Selection (Figure 1's "learning rate chosen independently ... to make training as fast as
possible"): for a spec with a [selection] table, each arm first trains every value of its
grid on the selection seed; the value reaching the target in the fewest epochs (ties: the
lower final training error, then the earlier grid entry) is kept (`choose`), and the
analysed seeds run with it. The selection seed is the [selection] table's `seed`, one that
is not analysed (protocol §3), or else the first analysed seed, whose winning selection
run is then that seed's run.

`<results>/<ablation>/manifest-<scale>.json` records which run directories make up the
ablation at that scale (and what was chosen); `repro report` reads it and the run
directories, and nothing else. `write_manifest` is its one writer; at real-data scales it
writes a copy beside the committed records too (`reports/records/<ablation>/`).

`results` arguments are a rundir.Store or a results folder: a run whose record is in the
store's committed records counts as finished. Evaluation arms (`evaluate = {...}`) train
nothing: they are left out of every run list, and the manifest lists them with their `of`
arm's run directories (`evaluates`, `views`).

`--only` names runs by `selector` (`arm/seed-hash`, `arm/lr-0.004/seed-hash`); `--plan`
lists one command per pending run (`plan_commands`); `--dry-run` shows `dry_run_rows`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import platform
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from repro import distributed, machines, provenance, records, rundir
from repro.ablation.request import AblationRequest
from repro.config import ModelConfig, RunConfig, canonical_key
from repro.errors import ConfigError
from repro.spec_file import AblationSpec

state = rundir.state  # done | diverged | outrun | running | partial | pending
NOTHING_LEFT = ("done", "diverged", "outrun", "copy")  # dry-run states with nothing left to train
TIMED = (*rundir.DONE, rundir.OUTRUN)  # runs whose wall time per epoch measures a speed (stopped by a rival too)


@dataclass(frozen=True)
class Run:
    """One training run of an ablation."""

    ablation: str
    arm: str
    seed: int
    cfg: RunConfig
    stage: str = "main"  # "main" or "selection"
    grid_key: str | None = None  # selection: the config key the grid sets
    grid_value: float | None = None
    rivals: tuple[Path, ...] = ()  # selection by epochs to target: the arm's other grid runs (rel)

    @property
    def hash(self) -> str:
        return self.cfg.hash()

    @property
    def rel(self) -> Path:
        """The run directory, relative to the results directory."""
        parts = [self.ablation, self.arm]
        if self.stage == "selection":
            parts.append(f"{self.grid_key.split('.')[-1]}-{self.grid_value:g}")
        return Path(*parts, rundir.dir_name(self.seed, self.hash))

    @property
    def label(self) -> str:
        grid = f" {self.grid_key.split('.')[-1]}={self.grid_value:g}" if self.grid_key else ""
        return f"{self.ablation}/{self.arm}{grid} seed {self.seed}"

    def record(self, main: bool) -> dict[str, Any]:
        """This run's entry in the manifest."""
        return {"arm": self.arm, "seed": self.seed, "stage": self.stage, "grid_key": self.grid_key,
                "grid_value": self.grid_value, "hash": self.hash, "dir": self.rel.as_posix(), "main": main}


# ----------------------------------------------------------------------------- expansion


def run_overrides(
    spec: AblationSpec, epochs: int | None, data_dir: str | None, device: str | None,
    overrides: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Command-line settings, applied to every run after the spec's own."""
    out: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        key = canonical_key(k)
        if spec.selection is not None and key == spec.selection.key:
            raise ConfigError(f"--set {k}: {spec.name} chooses {key} per arm from a grid; edit the grid in {spec.path}")
        if key == "seed":
            raise ConfigError("--set seed: use --seeds N")
        out[key] = v
    if epochs is not None:
        if epochs < 1:
            raise ConfigError(f"--epochs {epochs}: must be at least 1")
        out["epochs"] = epochs
    if device is not None:
        out["runtime.device"] = device
    if data_dir is not None:
        out["data.data_dir"] = str(data_dir)
    return out


def selection_seed(spec: AblationSpec, seeds: Sequence[int]) -> int:
    """The seed the selection grid trains on: the [selection] table's own `seed` (a seed that
    is not analysed, protocol §3), else the first analysed seed (whose winner is then kept)."""
    own = spec.selection.seed
    if own is None:
        return seeds[0]
    if own in seeds:
        raise ConfigError(f"{spec.path}: [selection] seed = {own} is also an analysed seed "
                          f"({seeds[0]}..{seeds[-1]}); choose one outside them")
    return own


def selection_runs(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                   results: rundir.Store | Path | None = None) -> list[Run]:
    """Every grid value of every arm, on the selection seed (none without a [selection] table);
    given `results`, also the values past a grid's edge that the spec's `beyond_edge` adds
    (`_past_edges`). Where the fewest epochs to the target choose, each run knows its arm's other
    grid runs (`rivals`): once one of them has reached the target, a run that has trained as long
    without reaching it cannot be chosen, and stops (status outrun; repro.train `stop_at`)."""
    if spec.selection is None:
        return []
    key, seed = spec.selection.key, selection_seed(spec, seeds)
    runs = [Run(spec.name, arm, seed, spec.config(arm, scale, seed, v, overrides), "selection", key, v)
            for arm in spec.training_arms for v in spec.grid(arm, scale)]
    if results is not None:  # each arm's value past an edge after its declared grid
        runs += _past_edges(spec, scale, overrides, runs, results)
        runs = [r for arm in spec.training_arms for r in runs if r.arm == arm]
    if spec.selection.by != "epochs_to_target":
        return runs
    out = []
    for r in runs:  # rivals only where the run stops at the very target the choice reads
        stop = r.cfg.target_train_error
        exact = stop is not None and (spec.target is None or spec.target == stop)
        rivals = tuple(x.rel for x in runs if x.arm == r.arm and x is not r) if exact else ()
        out.append(dataclasses.replace(r, rivals=rivals))
    return out


def _past_edges(spec: AblationSpec, scale: str, overrides: Mapping[str, Any], declared: Sequence[Run],
                results: rundir.Store | Path) -> list[Run]:
    """`beyond_edge`: for each arm whose declared grid is finished and chose its lowest or highest
    value, one run of the value a step past that edge (`AblationSpec.beyond`). Once only: the
    choice that decides it is the declared grid's, so an added value is never itself extended."""
    if not spec.selection.beyond_edge:
        return []
    out = []
    for arm, v in choose(spec, declared, results).items():
        past = None if v is None else spec.beyond(arm, scale, v)
        if past is not None:
            seed = declared[0].seed
            out.append(Run(spec.name, arm, seed, spec.config(arm, scale, seed, past, overrides),
                           "selection", spec.selection.key, past))
    return out


def execution_order(runs: Sequence[Run]) -> list[Run]:
    """The order to train `runs` in: each arm's grid runs with rivals largest value first (at a
    constant lr the larger rates usually reach the target soonest, or diverge at once), so the
    rest stop sooner; every other run, and the arms, in the order given."""
    out: list[Run] = []
    for r in runs:
        if r.rivals and r.grid_value is not None:
            i = len(out)  # insert before this arm's smaller values already placed
            while i and out[i - 1].rivals and out[i - 1].arm == r.arm and out[i - 1].grid_value < r.grid_value:
                i -= 1
            out.insert(i, r)
        else:
            out.append(r)
    return out


def rival_bound(results: rundir.Store | Path, rivals: Sequence[Path]) -> float | None:
    """The fewest epochs any of `rivals` took to reach its target; None until one has."""
    store, best = rundir.as_store(results), None
    for rel in rivals:
        s = rundir.read_summary(store.find(rel))
        if s and s.get("status") == rundir.TARGET_REACHED:
            e = records.number(s.get("epochs_to_target"))
            if not math.isnan(e) and (best is None or e < best):
                best = e
    return best


def _main_seeds(spec: AblationSpec, seeds: Sequence[int]) -> Sequence[int]:
    """With selection on the first analysed seed, its winner is that seed's main run."""
    return seeds[1:] if spec.selection is not None and spec.selection.seed is None else seeds


def main_runs(
    spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
    chosen: Mapping[str, float | None] | None = None,
) -> list[Run]:
    """arms x seeds. With selection, only arms whose value is chosen, and without the first
    seed when the selection ran on it (its winning selection run is that seed's run)."""
    if spec.selection is None:
        return [Run(spec.name, arm, s, spec.config(arm, scale, s, None, overrides))
                for arm in spec.training_arms for s in seeds]
    out = []
    for arm in spec.training_arms:
        v = (chosen or {}).get(arm)
        if v is None:
            continue
        out += [Run(spec.name, arm, s, spec.config(arm, scale, s, v, overrides), "main", spec.selection.key, v)
                for s in _main_seeds(spec, seeds)]
    return out


def total_runs(spec: AblationSpec, seeds: Sequence[int], sel: Sequence[Run]) -> int:
    """Every run the ablation has: its selection runs `sel` (`selection_runs`; with results, a
    value added past a grid's edge included) and each arm's main seeds."""
    arms = spec.training_arms
    if spec.selection is None:
        return len(arms) * len(seeds)
    return len(sel) + len(arms) * len(_main_seeds(spec, seeds))


# ----------------------------------------------------------------------------- selection


def choose(spec: AblationSpec, runs: Sequence[Run], results: rundir.Store | Path) -> dict[str, float | None]:
    """Per arm, the grid value whose run scored best by the selection's `by` (ties: grid order):
    the fewest epochs to the target (ties: lower final training error), or the lowest final
    holdout error. None for an arm with an unfinished grid or one where every value diverged."""
    store = rundir.as_store(results)
    chosen: dict[str, float | None] = {}
    for arm in spec.training_arms:
        best = None
        for i, r in enumerate(x for x in runs if x.arm == arm):
            s = rundir.read_summary(store.find(r.rel))
            if s is None or s.get("status") not in rundir.TERMINAL:
                best = None
                break
            if s["status"] == rundir.DIVERGED:
                continue
            key = (*_selection_key(spec, store.find(r.rel), s), i)
            if best is None or key < best[0]:
                best = (key, r.grid_value)
        chosen[arm] = None if best is None else best[1]
    return chosen


def _selection_key(spec: AblationSpec, run_dir: Path, summary: Mapping[str, Any]) -> tuple[float, float]:
    """What `choose` minimises for one finished selection run (smaller is better)."""
    assert spec.selection is not None
    if spec.selection.by == "final_holdout_error":
        return _or_inf(summary.get("final_holdout_error")), _or_inf(summary.get("final_train_error"))
    ept, censored = records.run_values(run_dir, spec)["epochs_to_target"]
    return (math.inf if censored or ept is None or math.isnan(ept) else ept,
            _or_inf(summary.get("final_train_error")))


def _or_inf(x: Any) -> float:
    return math.inf if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def chosen_so_far(spec: AblationSpec, sel: Sequence[Run], results: rundir.Store | Path
                  ) -> dict[str, float | None] | None:
    """`choose` for a spec with selection runs; None for one without."""
    return choose(spec, sel, results) if sel else None


def all_diverged(sel: Sequence[Run], arm: str, results: rundir.Store | Path) -> bool:
    """Whether every selection run of `arm` is terminal (then, with nothing chosen, all diverged)."""
    store = rundir.as_store(results)
    return all(rundir.status(store.find(r.rel)) in rundir.TERMINAL for r in sel if r.arm == arm)


# ----------------------------------------------------------------------------- the manifest


def manifest(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
             chosen: Mapping[str, float | None] | None, results: rundir.Store | Path | None = None) -> dict:
    """The manifest with what is chosen so far: the selection runs (a winner marked main; with
    `results`, any value added past a grid's edge) and the main runs of every arm with a chosen
    value (all of them without selection)."""
    sel = selection_runs(spec, scale, seeds, overrides, results)
    main = main_runs(spec, scale, seeds, overrides, chosen)
    chosen = dict(chosen or {})
    kept = spec.selection is not None and spec.selection.seed is None  # a winner is an analysed run
    winners = {(r.arm, r.grid_value) for r in sel if kept and chosen.get(r.arm) == r.grid_value}
    runs = [r.record(main=(r.arm, r.grid_value) in winners) for r in sel] + [r.record(main=True) for r in main]
    for arm, a in spec.arms.items():  # evaluation arms: the `of` arm's analysed runs, evaluated another way
        if a.evaluate is not None:
            runs += [{**e, "arm": arm, "evaluates": a.evaluate.of, "views": a.evaluate.views}
                     for e in list(runs) if e["arm"] == a.evaluate.of and e["main"] and "evaluates" not in e]
    return {
        "ablation": spec.name, "scale": scale, "spec": spec.path,
        "spec_sha256": spec.sha256,
        "seeds": list(seeds), "overrides": {k: v for k, v in overrides.items() if k != "data.data_dir"},
        "selection": ({"key": spec.selection.key, "by": spec.selection.by, "chosen": chosen}
                      if spec.selection else None),
        "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "runs": runs,
    }


def write_manifest(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                   results: rundir.Store | Path, chosen: Mapping[str, float | None] | None) -> Path:
    """Write the manifest (see `manifest`) into place atomically, and a copy beside the
    committed records when the store has them; return its path under results."""
    store = rundir.as_store(results)
    m = manifest(spec, scale, seeds, overrides, chosen, store)
    path = rundir.manifest_path(store.results, spec.name, scale)
    rundir.write_manifest(path, m)
    if store.records is not None:
        rundir.write_manifest(rundir.manifest_path(store.records, spec.name, scale), m)
    return path


def update_manifest(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                    results: rundir.Store | Path) -> Path:
    """Rewrite the manifest from what is on disk now, under a lock, so that concurrent
    `--only` processes leave the most recent state (a later writer sees at least as much)."""
    path = rundir.manifest_path(rundir.as_store(results).results, spec.name, scale)
    path.parent.mkdir(parents=True, exist_ok=True)
    with rundir.lock(path):
        chosen = chosen_so_far(spec, selection_runs(spec, scale, seeds, overrides, results), results)
        write_manifest(spec, scale, seeds, overrides, results, chosen)
    return path


def runs_not_in(spec: AblationSpec, manifest: Mapping[str, Any]) -> int | None:
    """How many runs the spec as it stands would plan, at the manifest's scale, seeds,
    overrides and choices, that the manifest does not list (another config hash, a new arm or
    seed). 0: an edit to the TOML since the manifest was written changed none of its runs.
    None: the spec no longer has that scale or those arms."""
    scale, seeds, overrides = manifest["scale"], manifest["seeds"], manifest.get("overrides", {})
    chosen = (manifest.get("selection") or {}).get("chosen")
    try:
        now = selection_runs(spec, scale, seeds, overrides) + main_runs(spec, scale, seeds, overrides, chosen)
    except (ConfigError, KeyError):
        return None
    listed = {(r["arm"], r["seed"], r["hash"]) for r in manifest["runs"] if "evaluates" not in r}
    return len({(r.arm, r.seed, r.hash) for r in now} - listed)


# ----------------------------------------------------------------------------- --only


_LAST = re.compile(r"(\d+)(?:-([0-9a-f]+))?")


def selector(run: Run, with_hash: bool = True) -> str:
    """`arm/seed-hash` (main) or `arm/lr-0.004/seed-hash` (selection): the run directory
    below the ablation's folder; without the hash, what `--only` also accepts."""
    parts = list(run.rel.parts[1:])
    if not with_hash:
        parts[-1] = str(run.seed)
    return "/".join(parts)


def only_runs(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
              results: rundir.Store | Path, selectors: Sequence[str]) -> list[Run]:
    """The runs `--only` names, in the order given; a one-line ConfigError for any other."""
    sel = selection_runs(spec, scale, seeds, overrides, results)
    chosen = chosen_so_far(spec, sel, results)
    index = {selector(r, with_hash=False): r for r in [*sel, *main_runs(spec, scale, seeds, overrides, chosen)]}
    out: list[Run] = []
    for s in selectors:
        *head, last = s.strip().strip("/").split("/")
        m = _LAST.fullmatch(last)
        if not head or m is None:
            grid = f"{spec.selection.short}-VALUE/" if spec.selection is not None else ""
            raise ConfigError(f"--only {s}: expected ARM/SEED or ARM/{grid}SEED, "
                              "optionally ending in -HASH (as --plan prints)")
        key, want = "/".join([*head, m.group(1)]), m.group(2)
        run = index.get(key)
        if run is None:
            raise _not_a_run(spec, scale, seeds, results, sel, index, s, head, int(m.group(1)))
        if want is not None and want != run.hash:
            raise ConfigError(f"--only {s}: this spec and these options give {key} the hash {run.hash}, not {want}; "
                              "the spec or the options changed since --plan: rerun --plan")
        if run not in out:
            out.append(run)
    return out


def _not_a_run(spec: AblationSpec, scale: str, seeds: Sequence[int], results: rundir.Store | Path, sel: Sequence[Run],
               index: Mapping[str, Run], s: str, head: list[str], seed: int) -> ConfigError:
    """Why `--only s` names no run: a main seed waiting for its grid, a grid that diverged, or no such run."""
    arm = head[0]
    if spec.selection is not None and len(head) == 1 and arm in spec.arms and seed in seeds:
        if seed == seeds[0] and spec.selection.seed is None:
            return ConfigError(f"--only {s}: seed {seed} of {arm} is its selection grid; name one value, "
                               f"e.g. {selector(next(r for r in sel if r.arm == arm), False)}")
        if all_diverged(sel, arm, results):
            return ConfigError(f"--only {s}: every {spec.selection.key} in {arm}'s grid diverged; "
                               "its other seeds are not run")
        return ConfigError(f"--only {s}: {arm}'s {spec.selection.key} is chosen by its selection runs on "
                           f"seed {selection_seed(spec, seeds)}, which are not all done; run them first (rerun --plan)")
    where = f"{spec.name} at scale {scale} with seeds {seeds[0]}..{seeds[-1]}"
    examples = ", ".join(list(index)[:4])
    return ConfigError(f"--only {s}: no such run in {where}; e.g. {examples}")


# ----------------------------------------------------------------------------- --plan and --dry-run


def waiting_arms(spec: AblationSpec, seeds: Sequence[int], chosen: Mapping[str, float | None] | None) -> list[str]:
    """Arms whose main seeds wait for a value to be chosen."""
    return [a for a in spec.training_arms if chosen is not None and chosen.get(a) is None and len(seeds) > 1]


def plan_commands(spec: AblationSpec, request: AblationRequest, scale: str, seeds: Sequence[int],
                  overrides: Mapping[str, Any], store: rundir.Store | None = None
                  ) -> tuple[list[str], list[str], int]:
    """(commands, comments, total) for one ablation: a `repro ablate ... --only RUN` command per
    run that is neither done, diverged nor running; comments for what is left out and why; the
    number of runs it has (`total_runs`). `request` gives the options the commands repeat
    (request.for_run)."""
    results = store or rundir.Store(Path(request.results_dir))
    sel = selection_runs(spec, scale, seeds, overrides, results)
    chosen = chosen_so_far(spec, sel, results)
    commands, comments, counts = [], [], {"done": 0, "diverged": 0, "outrun": 0, "running": 0}
    for r in execution_order([*sel, *main_runs(spec, scale, seeds, overrides, chosen)]):
        st = results.state(r.rel)
        if st in ("pending", "partial"):
            commands.append(request.for_run(selector(r)).command())
        else:
            counts[st] += 1
            if st == "running":
                comments.append(f"# {r.label}: running in another process now (not listed)")
    if chosen is not None and _main_seeds(spec, seeds):
        comments += _waiting_comments(spec, seeds, sel, chosen, results)
    total = total_runs(spec, seeds, sel)
    comments.append(f"# {spec.name} at scale {scale}: {len(commands)} to run, {counts['running']} running elsewhere, "
                    f"{counts['done']} done, {counts['diverged']} diverged"
                    + (f", {counts['outrun']} outrun (stopped: could not be chosen)" if counts["outrun"] else "")
                    + f", of {total} runs")
    return commands, comments, total


def _waiting_comments(spec: AblationSpec, seeds: Sequence[int], sel: Sequence[Run],
                      chosen: Mapping[str, float | None], results: rundir.Store | Path) -> list[str]:
    later = [a for a, v in chosen.items() if v is None and not all_diverged(sel, a, results)]
    gone = [a for a, v in chosen.items() if v is None and a not in later]
    main = _main_seeds(spec, seeds)
    others = f"seed {main[0]}" if len(main) == 1 else f"seeds {main[0]}-{main[-1]}"
    out = []
    if later:
        out.append(f"# {spec.name} ({', '.join(later)}): the main-seed commands ({others}) appear after "
                   f"the selection runs of {'that arm' if len(later) == 1 else 'those arms'} are done "
                   "(rerun --plan then)")
    for a in gone:
        out.append(f"# {spec.name}/{a}: every {spec.selection.key} in its grid diverged; no other seeds")
    return out


def dry_run_rows(spec: AblationSpec, scale: str, seeds: Sequence[int], overrides: Mapping[str, Any],
                 results: rundir.Store | Path) -> list[dict[str, Any]]:
    """--dry-run: one row per run (and one per arm whose main seeds wait for selection), each
    with `estimate_s`: the seconds left to train it at the measured speed (`measured_speed`),
    an upper bound for a run that may stop early at a target (`stops_early`); None where
    nothing is measured."""
    results = rundir.as_store(results)
    sel = selection_runs(spec, scale, seeds, overrides, results)
    chosen = chosen_so_far(spec, sel, results)
    speeds: dict[str, tuple[float, int] | None] = {}
    rows = []
    for r in [*sel, *main_runs(spec, scale, seeds, overrides, chosen)]:
        st, src = results.state(r.rel), results.find(r.rel)
        if st == "pending" and (twin := results.identical(r.rel, r.seed, r.hash)):
            st, src = "copy", twin  # a finished run with the same config elsewhere (another ablation): copied
        label, speed = _speed_for(results, r.cfg, speeds)
        most, about = _seconds_left(r, st, results, speed, sel)
        rows.append({"ablation": spec.name, "stage": r.stage, "arm": r.arm, "seed": r.seed,
                     "grid": "" if r.grid_value is None else f"{r.grid_key.split('.')[-1]}={r.grid_value:g}",
                     "hash": r.hash, "state": st, "dir": str(results.find(r.rel)),
                     "estimate_s": most, "about_s": about, "model": label, "speed": speed,
                     "stops_early": r.cfg.target_train_error is not None,
                     **dict(zip(("machine", "platform"), _trained_on(src) if st in NOTHING_LEFT else _here(r.cfg),
                                strict=True))})
    for arm in waiting_arms(spec, seeds, chosen):
        arm_sel = [r for r in sel if r.arm == arm]
        waiting = _waiting_seconds(spec, seeds, arm_sel, results, speeds)
        rows.append({"ablation": spec.name, "stage": "main", "arm": arm, "seed": "others", "grid": "after selection",
                     "hash": "?", "state": "pending", "dir": "", "estimate_s": None, "model": "", "speed": None,
                     "waiting_s": waiting, "waiting_runs": len(_main_seeds(spec, seeds)),
                     # a value beyond_edge may add past the grid: one more selection run at its cap
                     "extend_s": (waiting[0] / max(1, len(_main_seeds(spec, seeds)))
                                  if waiting and _may_extend(spec, scale, arm_sel) else 0.0)})
    names = machines.tagged([r.get("machine") for r in rows], [r.get("platform") for r in rows])
    return [r | {"machine": m} for r, m in zip(rows, names, strict=True)]


def _trained_on(run_dir: Path) -> tuple[str | None, str | None]:
    """The machine a finished run trained on, as its record names it: ('AMD EPYC', and the
    platform, which tells apart machines of one name: repro.machines.tagged)."""
    env = rundir.read_json(Path(run_dir) / rundir.ENV) or {}
    return env.get("device_name") or env.get("device"), env.get("platform")


def _here(cfg: RunConfig) -> tuple[str | None, str | None]:
    """(device name, platform) of the machine cfg's runs would train on here, as `_trained_on`."""
    name = _device_here(cfg)
    return name, _platform_here() if name else None


def _platform_here() -> str:
    return platform.platform()  # as provenance.environment records it


def machines_line(rows: Sequence[Mapping[str, Any]]) -> str:
    """'' when every run trained (or would train) on one machine; else where the finished runs
    trained and where what is left would, since pairs across machines are worth a look (each
    report's Machines section)."""
    done: dict[str, int] = {}
    for r in rows:
        if r["state"] in NOTHING_LEFT and r.get("machine"):
            done[r["machine"]] = done.get(r["machine"], 0) + 1
    here = sorted({r["machine"] for r in rows if r["state"] not in NOTHING_LEFT and r.get("machine")})
    if len(set(done) | set(here)) <= 1:
        return ""
    trained = ", ".join(f"{m} ({n})" for m, n in sorted(done.items(), key=lambda kv: (-kv[1], kv[0])))
    return (f"machines: finished runs trained on {trained or 'none yet'}"
            + (f"; what is left would train here, on {', '.join(here)}" if here else "")
            + ": runs on different machines are compared in the report's Machines section")


def _may_extend(spec: AblationSpec, scale: str, arm_sel: Sequence[Run]) -> bool:
    """Whether `beyond_edge` may still add a selection run to this arm (its declared grid is
    unfinished, so whether its choice falls at an edge is not known yet)."""
    if spec.selection is None or not spec.selection.beyond_edge or not arm_sel:
        return False
    grid = spec.grid(arm_sel[0].arm, scale)
    return len(grid) > 1 and all(r.grid_value in grid for r in arm_sel)


def _waiting_seconds(spec: AblationSpec, seeds: Sequence[int], arm_sel: Sequence[Run], results: rundir.Store,
                     speeds: dict[str, tuple[float, int] | None]) -> tuple[float, float] | None:
    """(at most, about) seconds for the main seeds of an arm whose value is not chosen yet, as
    `_seconds_left` orders them: each seed priced at its cap, and at the end of the epoch in which
    the arm's fastest selection run so far reached its target (its cap while none has). None
    without a measured speed."""
    if not arm_sel:
        return None
    _, speed = _speed_for(results, arm_sel[0].cfg, speeds)
    if speed is None:
        return None
    n, cap = len(_main_seeds(spec, seeds)), float(arm_sel[0].cfg.epochs)
    about = _fastest_crossing_end(arm_sel, results, cap)
    return n * cap * speed[0], n * (cap if about is None else about) * speed[0]


def _fastest_crossing_end(arm_sel: Sequence[Run], results: rundir.Store, cap: float) -> float | None:
    """The end of the epoch in which the fastest of an arm's selection runs reached its target
    (at most `cap`); None while none has."""
    best = rival_bound(results, [r.rel for r in arm_sel])
    return None if best is None else min(cap, float(math.ceil(best)))


def _speed_for(results: rundir.Store, cfg: RunConfig, cache: dict[str, tuple[float, int] | None]
               ) -> tuple[str, tuple[float, int] | None]:
    """(label, speed) for a run like `cfg`: measured on its own model's finished runs
    (`_own_speed`), else a guess from the measured model of the same input size whose
    multiply-adds per image are nearest, scaled by their ratio (`_scaled_speed`)."""
    label, speed = _own_speed(results, cfg.model.name, cfg, cache, net=cfg.model)
    return (label, speed) if speed is not None else _scaled_speed(results, cfg, cache)


def _own_speed(results: rundir.Store, model: str, cfg: RunConfig, cache: dict[str, tuple[float, int] | None],
               net: ModelConfig | None = None) -> tuple[str, tuple[float, int] | None]:
    """Measured on finished runs of `model` with cfg's precision and evaluation frequency
    (bf16 trains ~1.3-2x faster; four evaluations an epoch cost ~50% more), on the machine these
    runs would train on here (its device name and platform) where such runs exist (one CPU model
    ran the same runs 2.5x slower than another, and one name has come as two machines), else on
    any machine; else with its precision, else of `model` at all. Given `net` (the run's own
    switches), runs of that very net come first at each of the first two levels: an arm's
    switches move its speed (alexnet-cifar without LRN trains ~1.6x faster)."""
    precision, every, (here, where) = cfg.runtime.precision, cfg.eval_every, _here(cfg)
    same = {"precision": precision, "eval_every": every}
    nets = [(_net_label(model, net), {"net": net}), (f"{model}, any switches", {})] if net else [(model, {})]
    levels = [(f"{name} ({precision}, evaluated every {every:g} epochs{on})", same | kw | machine)
              for on, machine in ([(f", on this {here}", {"device_name": here, "on_platform": where})] if here else [])
              + [("", {})] for name, kw in nets]
    for label, kw in (*levels, (f"{model} ({precision})", {"precision": precision}), (model, {})):
        key = f"{label} {sorted(kw)}"  # a net's label can be the model's name: the filters tell them apart
        if key not in cache:
            cache[key] = measured_speed(results, model, **kw)
        if cache[key] is not None:
            return label, cache[key]
    return model, None


def _net_label(model: str, net: ModelConfig) -> str:
    """'alexnet-cifar with norm=none': the model and the switches where `net` differs from the
    model's own; the model's name alone where it does not (the arm that is the model as
    registered)."""
    from repro.models import registry

    own = registry.make_config(model).model
    diff = [f"{f.name}={getattr(net, f.name)}" for f in dataclasses.fields(net)
            if getattr(net, f.name) != getattr(own, f.name)]
    return f"{model} with {', '.join(diff)}" if diff else model


def _device_here(cfg: RunConfig) -> str | None:
    """The name of the device cfg's runs would train on on this machine ('AMD EPYC', a GPU's
    name), as run records store it; None where cfg names a device this machine lacks."""
    return _device_name_of(cfg.runtime.device)


@functools.cache
def _device_name_of(device: str) -> str | None:  # once per device, not once per planned run
    try:
        return provenance.device_name(distributed.resolve_device(device))
    except ConfigError:
        return None


def _scaled_speed(results: rundir.Store, cfg: RunConfig, cache: dict[str, tuple[float, int] | None]
                  ) -> tuple[str, tuple[float, int] | None]:
    """No finished run of cfg's model yet: a rough guess from the measured model of the same
    input size whose multiply-adds per image are nearest to its own, scaled by their ratio
    (layer costs other than multiply-adds, such as LRN and pooling, are not scaled)."""
    from repro import layer_table  # builds nets; only --dry-run of an unmeasured model needs it
    from repro.models import registry

    own = layer_table.cost(cfg.model)[1]
    best: tuple[float, str, tuple[float, int]] | None = None
    for other in registry.names():
        other_cfg = registry.make_config(other).model
        if other == cfg.model.name or other_cfg.input_size != cfg.model.input_size:
            continue
        label, speed = _own_speed(results, other, cfg, cache)
        if speed is not None:
            ratio = own / layer_table.cost(other_cfg)[1]
            if best is None or abs(math.log(ratio)) < abs(math.log(best[0])):
                best = ratio, label, speed
    if best is None:
        return cfg.model.name, None
    ratio, label, (seconds, n) = best
    return f"{cfg.model.name} (a guess: {label} x {ratio:.2f}, its multiply-adds' ratio)", (seconds * ratio, n)


def measured_speed(results: rundir.Store | Path, model: str, precision: str | None = None,
                   eval_every: float | None = None, device_name: str | None = None,
                   on_platform: str | None = None, net: ModelConfig | None = None) -> tuple[float, int] | None:
    """(median seconds per epoch, number of runs) over the finished or outrun runs of `model` (and
    of `precision`, `eval_every`, the env's `device_name` and `platform`, and the net's switches
    `net`, where given) in the store's roots, training and evaluation included; None if there is
    none yet. A run is counted once: its record beside its results folder, and its copies in
    other ablations (the same `<seed>-<hash>` directory), are one run."""
    per_epoch, seen = [], set()
    for root in rundir.as_store(results).roots:
        for summary in sorted(Path(root).glob("**/summary.json")):
            if summary.parent.name in seen:
                continue
            s = rundir.read_json(summary)
            cfg = rundir.run_config(summary.parent)
            if not s or s.get("status") not in TIMED or cfg is None or cfg.model.name != model:
                continue
            if (precision is not None and cfg.runtime.precision != precision) or (
                    eval_every is not None and cfg.eval_every != eval_every) or (net is not None and cfg.model != net):
                continue
            env = rundir.read_env(summary.parent) or {}
            if (device_name is not None and env.get("device_name") != device_name) or (
                    on_platform is not None and env.get("platform") != on_platform):
                continue
            epochs, wall = records.number(s.get("epochs_run")), records.number(s.get("wall_seconds"))
            if epochs > 0 and wall > 0:
                per_epoch.append(wall / epochs)
                seen.add(summary.parent.name)
    if not per_epoch:
        return None
    per_epoch.sort()
    mid = len(per_epoch) // 2
    median = per_epoch[mid] if len(per_epoch) % 2 else (per_epoch[mid - 1] + per_epoch[mid]) / 2
    return median, len(per_epoch)


def _seconds_left(run: Run, state: str, results: rundir.Store, speed: tuple[float, int] | None,
                  sel: Sequence[Run]) -> tuple[float | None, float | None]:
    """(at most, about) seconds to train `run` from where it stands: to `_epochs_cap`, and, for
    a main run that stops at a target, to where its arm's fastest selection run reached it
    (the chosen value's, on another seed; the cap until one has)."""
    if state in NOTHING_LEFT:
        return 0.0, 0.0
    if speed is None:
        return None, None
    done = rundir.read_metrics(results.find(run.rel))
    trained = records.number(done[-1].get("epoch")) if done else 0.0
    trained = 0.0 if math.isnan(trained) else trained
    cap = _epochs_cap(run, results)
    likely = None
    if run.stage == "main" and run.cfg.target_train_error is not None:
        likely = _fastest_crossing_end([r for r in sel if r.arm == run.arm], results, cap)
    return tuple(max(0.0, end - trained) * speed[0] for end in (cap, cap if likely is None else likely))


def _epochs_cap(run: Run, results: rundir.Store) -> float:
    """The most epochs `run` can still train: its cap, or for a selection run a rival has
    already beaten, the end of the epoch its rival's crossing falls in (then it is outrun)."""
    bound = rival_bound(results, run.rivals) if run.rivals else None
    return float(run.cfg.epochs) if bound is None else min(float(run.cfg.epochs), float(math.ceil(bound)))
