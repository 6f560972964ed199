"""Data-parallel training (repro.distributed) on CPU processes with gloo, over loopback.

The claim under test: N ranks, each training on its shard of every batch with DDP
averaging the gradients, follow the same trajectory as one process on the combined batch
(float rounding aside), including across a kill and resume; each rank reads only its own
shard; only rank 0 writes the run directory. The ranks go through `repro.train.run`, the
trainer's real code path; the smoke test goes through `repro train --nproc 2`, which
relaunches itself under torchrun.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from repro import distributed
from repro.models import make_config

REPO = Path(__file__).resolve().parents[1]
WORLD = 2
STEPS_PER_EPOCH = 3  # 96 images, combined batch 32 (16 per rank)
# fork: the ranks inherit the imported modules (spawn re-imports torch: ~10 s more on 2 cores);
# each rank sets one thread before any torch op, as DataLoader workers do.
START = "fork" if sys.platform == "linux" else "spawn"


def _cfg():
    # no augmentation (cifar-80sec: no crop, no flip), no dropout: the trajectories are comparable.
    # NCHW: the tolerances below are for its kernels' rounding at batch 16 vs 32. In channels_last
    # (the default) oneDNN rounds batch 16 and 32 differently enough to move pool1 argmaxes; after 6
    # steps conv1's weights then differ by ~4e-6 (0.1% of how far they moved), not by 1e-6.
    # No holdout (the step schedule adapts nothing): the eval-mode training slice and, at the end, the
    # test set are the sharded evaluations compared. (Other data, e.g. 128 images less a 32-image
    # holdout, moves different pool1 argmaxes: conv1 then differs by ~2e-6, beyond the tolerance.)
    return make_config("cifar-80sec", {
        "data.dataset": "synthetic", "synthetic_train": 96, "synthetic_test": 40, "batch_size": 32,
        "epochs": 2, "threads": 1, "device": "cpu", "stall_steps": 10**6, "channels_last": False})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Kill(Exception):
    pass


def _rank_main(rank: int, port: int, out: str, record: str) -> None:
    """One rank: join the group as torchrun would, train until killed in epoch 2, resume."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(WORLD))
    torch.set_num_threads(1)
    from repro import train
    from repro.data import Loader

    read: dict[int, list[int]] = {}
    plan = Loader._plan

    def recording_plan(self, epoch):  # which training images this rank's batches take
        positions, order, draws = plan(self, epoch)
        if self.train:
            read.setdefault(epoch, []).extend(order[positions].tolist())
        return positions, order, draws

    Loader._plan = recording_plan
    distributed.init_from_env("cpu")
    try:
        cfg = _cfg()

        def kill(step, total):
            if step == STEPS_PER_EPOCH + 1:  # every rank dies at the same step of epoch 2
                raise _Kill

        try:
            train.run(cfg, out, quiet=True, on_step=kill)
        except _Kill:
            pass
        summary = train.run(cfg, out, quiet=True)  # resumes from rank 0's epoch-1 checkpoint
        # the helpers the trainer relies on, with rank-dependent inputs
        finite = distributed.all_finite(torch.tensor(float("inf") if rank == 1 else 1.0))
        distributed.seed_epoch(0, 1)
        draw = torch.rand(3).tolist()
        total = distributed.sum_scalars(torch.device("cpu"), rank + 1, 0.5)
        Path(record, f"rank{rank}.json").write_text(json.dumps(
            {"read": read, "finite": finite, "draw": draw, "sum": total, "status": summary["status"]}))
    finally:
        distributed.shutdown()


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory):
    """One process uninterrupted, then two gloo ranks through train.run (killed and resumed)."""
    from repro.train import run

    root = tmp_path_factory.mktemp("ddp")
    out, record = root / "two", root / "record"
    record.mkdir()
    before = torch.get_num_threads()
    try:  # first: it also imports what the ranks need (torch.optim pulls in torch._dynamo, ~5 s)
        run(_cfg(), root / "one", quiet=True)
    finally:
        torch.set_num_threads(before)
    mp.start_processes(_rank_main, args=(_free_port(), str(out), str(record)), nprocs=WORLD, join=True,
                       start_method=START)
    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in range(WORLD)]
    return out, root / "one", ranks


def _ckpt(d: Path) -> dict:
    return torch.load(d / "checkpoint.pt", weights_only=True)


def test_two_ranks_end_with_the_parameters_of_one_process_on_the_combined_batch(two_ranks):
    two, one, _ = two_ranks
    a, b = _ckpt(two), _ckpt(one)
    assert a["epoch"] == b["epoch"] == 2
    for k, v in b["model"].items():
        torch.testing.assert_close(a["model"][k], v, rtol=1e-5, atol=1e-6, msg=k)
    # PaperSGD's velocities are parameter changes: the same absolute tolerance. (Rounding differs
    # between batch 16 and 32, and can move a max-pool's argmax: a whole conv1 filter's
    # gradient then differs by ~1e-4 of its size, still ~1e-7 in parameter units.)
    for i, s in b["optimizer"]["state"].items():
        torch.testing.assert_close(a["optimizer"]["state"][i]["velocity"], s["velocity"], rtol=1e-5, atol=1e-6)
    rows_a = [json.loads(x) for x in (two / "metrics.jsonl").read_text().splitlines()]
    rows_b = [json.loads(x) for x in (one / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows_a] == [r["step"] for r in rows_b] == [0, 3, 6]
    assert [r["images"] for r in rows_a] == [r["images"] for r in rows_b] == [0, 96, 96]
    for ra, rb in zip(rows_a, rows_b, strict=True):
        for key in ("train_loss", "train_loss_running"):
            if rb[key] is None:  # the epoch-0 row's running figures
                assert ra[key] is None, key
                continue
            assert ra[key] == pytest.approx(rb[key], rel=1e-5), key
        for key in ("train_error", "train_error_running"):
            assert ra[key] == rb[key], key
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (two, one))
    assert sa["test_loss"] == pytest.approx(sb["test_loss"], rel=1e-5)  # the test set too, over both shards
    assert (sa["test_error"], sa["test_top5_error"]) == (sb["test_error"], sb["test_top5_error"])


def test_each_rank_reads_only_its_own_shard(two_ranks):
    _, _, ranks = two_ranks
    for epoch in ("1", "2"):
        shards = [set(r["read"][epoch]) for r in ranks]
        assert all(len(s) == 96 // WORLD for s in shards)
        assert not shards[0] & shards[1]
        assert shards[0] | shards[1] == set(range(96))


def test_only_rank_zero_writes_and_the_run_is_recorded_once(two_ranks):
    two, _, ranks = two_ranks
    assert [r["status"] for r in ranks] == ["finished", "finished"]
    assert sorted(p.name for p in two.iterdir()) == [
        "checkpoint.pt", "config.json", "dataset.json", "env.json", "metrics.jsonl", "summary.json"]
    env = json.loads((two / "env.json").read_text())
    assert env["world_size"] == WORLD and env["resumes"][0]["from_epoch"] == 1


def test_ranks_agree_on_divergence_and_draw_their_own_dropout_masks(two_ranks):
    _, _, ranks = two_ranks
    assert [r["finite"] for r in ranks] == [False, False]  # rank 1's inf stops rank 0 too
    assert ranks[0]["draw"] != ranks[1]["draw"]  # seed_epoch: (seed, epoch, rank)
    assert ranks[0]["sum"] == ranks[1]["sum"] == [3.0, 1.0]


def test_single_process_helpers_are_no_ops():
    assert not distributed.active() and distributed.rank() == 0 and distributed.world_size() == 1
    state = torch.get_rng_state()
    distributed.seed_epoch(0, 1)
    assert torch.equal(torch.get_rng_state(), state)
    assert distributed.all_finite(torch.tensor(1.0)) and not distributed.all_finite(torch.tensor(float("nan")))
    assert distributed.sum_scalars(torch.device("cpu"), 2, torch.tensor(0.5)) == [2.0, 0.5]


@pytest.mark.slow
def test_repro_train_nproc_2_under_torchrun(tmp_path):
    """`repro train --nproc 2` relaunches under `torchrun --standalone --nproc-per-node 2`."""
    out = tmp_path / "run"
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", "repro", "train", "--nproc", "2", "--model", "cifar-80sec", "--dataset", "synthetic",
         "--set", "synthetic_train=256", "--set", "synthetic_test=64", "--epochs", "1", "--out", str(out),
         "--quiet", "--threads", "1", "--device", "cpu"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "torch.distributed.run" in proc.stderr and "--nproc-per-node=2" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]  # nothing written anywhere else
    assert len(list(out.glob("summary.json"))) == 1 and len(list(out.glob("metrics.jsonl"))) == 1
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1] and rows[1]["images"] == 256  # the epoch-0 row, then epoch 1
    assert json.loads((out / "summary.json").read_text())["status"] == "finished"
    assert proc.stdout.count("finished:") == 1  # one report, from rank 0


def test_torchrun_with_cuda_device_but_no_cuda_is_a_config_error(monkeypatch):
    """Under torchrun, `--device cuda:N` on a machine without CUDA is a one-line error, not a traceback."""
    import torch

    from repro import distributed
    from repro.errors import ConfigError

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "active", lambda: False)
    with pytest.raises(ConfigError, match="CUDA is not available"):
        distributed.init_from_env("cuda:1")
