"""tools/worker.sh: campaign workers that share one queue of ablations and never train a run twice."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from repro import rundir, spec_file
from repro.ablation import plan

REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "tests" / "fixtures" / "tiny.toml"
WORKER = REPO / "tools" / "worker.sh"


def _pick(queue: Path, how: str = "--pick") -> str:
    out = subprocess.run(["bash", str(WORKER), how, str(queue)], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_picks_skip_claimed_runs_and_configs_claimed_under_another_ablation(tmp_path):
    """The pick, on a stand-in for `repro ablate` that prints canned plans: ablation B's `on`
    run is the same config (seed and hash) as A's, so it waits for A's and is copied after."""
    fake = tmp_path / "fake.sh"
    fake.write_text('[[ " $* " == *" --plan "* ]] && cat "$(dirname "$0")/$1.plan"\n')
    (tmp_path / "A.plan").write_text("repro ablate A --only on/0-aaa\nrepro ablate A --only off/0-bbb\n"
                                     "# A at scale cifar: 2 to run, 0 running elsewhere\n")
    (tmp_path / "B.plan").write_text("repro ablate B --only on/0-aaa\nrepro ablate B --only x/1-ccc\n")
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "ablations.txt").write_text(f"bash {fake} B @ ^on/\nbash {fake} A\nbash {fake} B\n")
    assert _pick(queue, "--peek") == f"bash {fake} B --only on/0-aaa"  # a peek claims nothing...
    assert (queue / "claims.txt").read_text() == ""
    assert _pick(queue) == f"bash {fake} B --only on/0-aaa"  # the filter: only B's `on` runs
    assert _pick(queue, "--peek") == f"bash {fake} A --only off/0-bbb"  # ...and sees the claims
    assert _pick(queue) == f"bash {fake} A --only off/0-bbb"  # A's on/0-aaa is B's config, claimed
    assert _pick(queue) == f"bash {fake} B --only x/1-ccc"
    assert _pick(queue) == "WAIT"  # nothing free, but claimed runs are still to finish
    assert len((queue / "claims.txt").read_text().splitlines()) == 3
    (queue / "claims.txt").write_text("")  # as if all three ended, x/1-ccc with an error
    (queue / "failed.txt").write_text(f"bash {fake} B --only x/1-ccc\n")
    assert [_pick(queue) for _ in range(4)] == [f"bash {fake} B --only on/0-aaa", f"bash {fake} A --only off/0-bbb",
                                                 "WAIT", "WAIT"]  # the failed job is not picked again
    for name in ("A", "B"):
        (tmp_path / f"{name}.plan").write_text("# nothing to run\n")
    assert _pick(queue) == ""  # every plan empty: the workers stop


def test_lines_that_start_with_a_hash_are_skipped_without_planning(tmp_path):
    """A finished line kept as a record (`# finished: ...`) is never run, not even its `--plan`."""
    fake = tmp_path / "fake.sh"
    fake.write_text('echo "$1" >> "$(dirname "$0")/planned.txt"; echo "repro ablate $1 --only on/0-$1"\n')
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "ablations.txt").write_text(f"# finished 2026-12-07: bash {fake} A\n\nbash {fake} B\n")
    assert _pick(queue, "--peek") == f"bash {fake} B --only on/0-B"
    assert (tmp_path / "planned.txt").read_text() == "B\n"


@pytest.mark.slow
def test_two_workers_drain_a_queue_with_the_real_trainer(tmp_path):
    results = tmp_path / "results"
    line = (f"{shlex.quote(sys.executable)} -m repro ablate {shlex.quote(str(TINY))} --scale smoke --device cpu "
            f"--results {shlex.quote(str(results))} --set runtime.threads=1")
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "ablations.txt").write_text(line + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WORKER_WAIT_S": "1", "PYTHONPATH": str(REPO)}
    workers = [subprocess.Popen(["bash", str(WORKER), str(queue), str(i)], cwd=tmp_path, env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in (1, 2)]
    logs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0] and all("all done" in log for log in logs), logs
    runs = plan.main_runs(spec_file.load(TINY), "smoke", [0, 1], {})
    assert all(rundir.state(results / r.rel) == "done" for r in runs), logs
    started = [x for log in logs for x in log.splitlines() if " --only " in x and "rc=" not in x]
    assert len(started) == len(runs), logs  # every run taken by exactly one worker, once
    assert (queue / "claims.txt").read_text() == ""


def test_a_worker_starts_no_run_after_the_queues_stop_time(tmp_path):
    """QUEUE_DIR/stop-at: past it a worker takes no run and exits; before it, or without the
    file, it trains; a time it cannot read stops it too (whoever wrote the file meant to stop)."""
    fake = tmp_path / "fake.sh"  # plans one run until it has trained it
    fake.write_text('d=$(dirname "$0"); if [[ " $* " == *" --plan "* ]]; then [ -e "$d/ran" ] || '
                    'echo "repro ablate A --only on/0-aaa"; else touch "$d/ran"; fi\n')
    queue = tmp_path / "queue"
    queue.mkdir()
    (queue / "ablations.txt").write_text(f"bash {fake} A\n")

    def work(stop_at: str | None) -> str:
        (queue / "stop-at").unlink(missing_ok=True)
        if stop_at is not None:
            (queue / "stop-at").write_text(stop_at + "\n")
        out = subprocess.run(["bash", str(WORKER), str(queue), "w"], capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "stop-at 1 hour ago reached: no new run" in work("1 hour ago") and not (tmp_path / "ran").exists()
    assert "cannot read the time" in work("half past never") and not (tmp_path / "ran").exists()
    log = work("1 hour")  # an hour from now: the run is taken, then the queue is empty
    assert (tmp_path / "ran").exists() and "--only on/0-aaa" in log and "all done" in log
    (tmp_path / "ran").unlink()
    assert "all done" in work(None) and (tmp_path / "ran").exists()


def test_a_worker_without_a_queue_says_how_to_use_it(tmp_path):
    out = subprocess.run(["bash", str(WORKER), str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 2 and "usage: tools/worker.sh QUEUE_DIR" in out.stderr
