"""The `repro` command line. Thin: parse, call the module that owns the work, print.

Errors a user can cause (a bad model name, key, value, data file or spec) print one line
on stderr and exit non-zero, with no traceback; see repro.errors.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from repro.errors import ConfigError, ReproError

app = typer.Typer(
    help="AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as the paper describes it, and its ablations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
PIPE_WIDTH = 200  # columns when output goes to a pipe or a file: a log keeps a table's paths and hashes whole


def _console(stderr: bool = False) -> Console:
    """rich's console; where there is no terminal to measure (and no COLUMNS), PIPE_WIDTH
    columns instead of rich's 80, which cut a dry run's run directories to a few letters."""
    stream = sys.stderr if stderr else sys.stdout
    wide = stream is None or not stream.isatty()
    return Console(stderr=stderr, width=PIPE_WIDTH if wide and not os.environ.get("COLUMNS") else None)


console = _console()
err_console = _console(stderr=True)

SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", help="Override a config key: key=value (e.g. columns=1, optim.lr=0.02). Repeatable."),
]


def main() -> None:
    try:
        app()
    except ReproError as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(e.exit_code)


@app.callback()
def _root() -> None:
    """AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as the paper describes it, and its ablations."""


@app.command()
def spec(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `repro spec --list`).")] = "alexnet",
    set_: SetOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
    list_models: Annotated[bool, typer.Option("--list", help="List the models and exit.")] = False,
) -> None:
    """Print a model's layer table (output shapes, parameters, neurons) beside the paper's figures."""
    from repro.config import parse_sets
    from repro.layer_table import layer_table
    from repro.models import ENTRIES, make_config

    if list_models:
        for name, entry in ENTRIES.items():
            console.print(f"[bold]{name:14s}[/] {entry.summary}", highlight=False)
        return
    cfg = make_config(model, parse_sets(set_))
    rows, totals = layer_table(cfg.model)
    if as_json:
        out = {
            "model": cfg.model.name,
            "config": cfg.to_dict()["model"],
            "layers": [
                {"layer": r.layer, "kind": r.kind, "columns": r.columns, "output_shape": list(r.output_shape),
                 "params": r.params, "neurons": r.neurons, "paper_neurons": r.paper_neurons}
                for r in rows
            ],
            **totals,
        }
        print(json.dumps(out, indent=2))
        return
    table = Table(title=f"{cfg.model.name}  (input 3x{cfg.model.input_size}x{cfg.model.input_size})", show_lines=False)
    for col, just in [("layer", "left"), ("columns", "left"), ("output", "right"),
                      ("params", "right"), ("neurons", "right"), ("paper", "right")]:
        table.add_column(col, justify=just)
    for r in rows:
        table.add_row(r.layer, r.columns, "x".join(map(str, r.output_shape)), f"{r.params:,}" if r.params else "",
                      f"{r.neurons:,}" if r.neurons is not None else "",
                      f"{r.paper_neurons:,}" if r.paper_neurons is not None else "")
    console.print(table)
    console.print(f"total parameters: [bold]{totals['total_params']:,}[/]   neurons: {totals['total_neurons']:,}"
                  f"   input: {totals['input_neurons']:,}", highlight=False)
    if "paper" in totals:
        p = totals["paper"]
        console.print(f"paper: ~{p['params']:,} parameters (exact count for this net: {p['params_exact_calc']:,}),"
                      f" ~{p['neurons']:,} neurons", highlight=False)
        if "note" in p:
            console.print(f"note: {p['note']}", highlight=False)


@app.command()
def ablate(
    name: Annotated[str, typer.Argument(help="An ablation (see ablations/*.toml), a spec file's path, or `all`.")],
    scale: Annotated[Optional[str], typer.Option(
        "--scale", help="smoke | cifar | imagenet (default: cifar when CIFAR-10 is found).")] = None,
    seeds: Annotated[Optional[int], typer.Option("--seeds", help="Seeds 0..N-1 (default: the scale's own).")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Override every run's epochs (cap).")] = None,
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where the data is.")] = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch CIFAR-10 (md5-checked) if missing.")] = False,
    device: Annotated[Optional[str], typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")] = None,
    results: Annotated[str, typer.Option("--results", help="Run directories go here.")] = "results",
    reports: Annotated[str, typer.Option("--reports", help="Reports go here.")] = "reports",
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the runs and their state; train nothing.")] = False,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress view.")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", "-j", help="Train N runs at once, in N worker processes that share the run locks (so they also "
        "compose with other `repro ablate` processes): one per CUDA device when there are several, else the CPU "
        "threads divided among them (runtime.threads = cpus // N unless --set). Selection grids still finish "
        "before their arm's main seeds.")] = 1,
    plan: Annotated[bool, typer.Option(
        "--plan", help="Train nothing; print one shell command per pending run (`repro ablate NAME ... --only "
        "RUN`), then `#` comments, for a scheduler sharing this results directory (e.g. a SLURM array). "
        "Main seeds waiting for a selection grid appear in a later --plan.")] = False,
    only: Annotated[Optional[list[str]], typer.Option(
        "--only", help="Train only this run: ARM/SEED, or ARM/lr-VALUE/SEED for a selection run, optionally "
        "ending -HASH (checked), as --plan prints. Repeatable. Updates the manifest; no report.")] = None,
) -> None:
    """Run an ablation (arms x seeds); finished runs are skipped, interrupted ones resume.

    Each run is a run directory under --results; the report is written once
    every run is done.

    Fan-out:
      repro ablate lrn --scale cifar --jobs 2             two runs at a time here
      repro ablate lrn --scale cifar --plan > jobs.txt    a line per pending run
      sbatch --array=1-K --wrap 'sed -n "${SLURM_ARRAY_TASK_ID}p" jobs.txt | bash'
      repro report lrn --scale cifar                      once every run is done
    """
    from repro.ablate import AblationRequest, run_ablation
    from repro.config import parse_sets

    request = AblationRequest(name, scale=scale, seeds=seeds, epochs=epochs, data_dir=data_dir, device=device,
                              results_dir=results, reports_dir=reports, overrides=parse_sets(set_),
                              download=download, dry_run=dry_run, quiet=quiet, jobs=jobs, plan=plan, only=only)
    run_ablation(request, console=console)


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="An ablation, or `all` (every ablation with stored runs).")] = "all",
    scale: Annotated[Optional[str], typer.Option(
        "--scale", help="Which scale's runs (default: the one most recently ablated).")] = None,
    results: Annotated[str, typer.Option("--results", help="Where the run directories are.")] = "results",
    reports: Annotated[str, typer.Option("--reports", help="Reports go here.")] = "reports",
) -> None:
    """Write reports/NAME.md and the scorecard from the run records; trains nothing.

    Also NAME.csv, NAME.json, the plots and reports/README.md. The records
    are read from reports/records/ first, then --results. Smoke-scale
    reports go to RESULTS/smoke-reports/."""
    from repro.scorecard import write_reports

    for path in write_reports(name, results, reports, scale=scale):
        console.print(f"wrote {path}", highlight=False)


DeviceOpt = Annotated[str, typer.Option("--device", help="auto | cpu | cuda | cuda:N | mps.")]


@app.command()
def train(
    model: Annotated[str, typer.Option("--model", "-m", help="Model name (see `repro spec --list`).")] = "cifar-80sec",
    dataset: Annotated[Optional[str], typer.Option(
        "--dataset", help="cifar10 | imagenet | folder | synthetic (default: the model's own).")] = None,
    data_dir: Annotated[Optional[str], typer.Option(
        "--data-dir", help="Where the data is (else $REPRO_DATA, else the user cache).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch CIFAR-10 (md5-checked) if missing.")] = False,
    subset: Annotated[Optional[int], typer.Option("--subset", help="Use only the first N training images.")] = None,
    epochs: Annotated[Optional[int], typer.Option("--epochs", help="Epochs (default: the model's own).")] = None,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    set_: SetOpt = None,
    out: Annotated[Optional[str], typer.Option(
        "--out", help="Run directory (default: runs/<model>-<dataset>-s<seed>-<hash>). Rerun to resume.")] = None,
    device: DeviceOpt = "auto",
    deterministic: Annotated[bool, typer.Option("--deterministic", help="Deterministic kernels.")] = False,
    channels_last: Annotated[Optional[bool], typer.Option(
        "--channels-last/--no-channels-last", help="NHWC model and batches (default: runtime.channels_last).")] = None,
    precision: Annotated[Optional[str], typer.Option(
        "--precision", help="fp32 | bf16: bf16 autocast of the forward pass, CPU or CUDA (default: fp32).")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile the model.")] = False,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads (default: torch's).")] = None,
    nproc: Annotated[int, typer.Option("--nproc", help="Data-parallel processes: launches torchrun.")] = 1,
    devices: Annotated[Optional[str], typer.Option(
        "--devices", help="Two devices for AlexNet's two columns, e.g. cuda:0,cuda:1 (paper §3.2).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar; one log line per epoch.")] = False,
) -> None:
    """Train one run with the paper's procedure; writes (or resumes) its run directory."""
    if nproc > 1 and devices:
        raise ConfigError("--devices (two devices per model) does not combine with data-parallel --nproc")
    if nproc > 1:  # before importing torch: the launcher only waits for torchrun
        _launch_torchrun(nproc)
        return
    from pathlib import Path

    from repro import distributed
    from repro.config import parse_sets
    from repro.models import make_config
    from repro.train import run

    overrides: dict = {"seed": seed, "runtime.device": device, "runtime.deterministic": deterministic,
                       "runtime.compile": compile_, "runtime.threads": threads, "runtime.devices": devices or ""}
    for key, value in [("data.dataset", dataset), ("data.data_dir", data_dir), ("data.subset", subset),
                       ("epochs", epochs), ("runtime.channels_last", channels_last), ("runtime.precision", precision)]:
        if value is not None:
            overrides[key] = value
    cfg = make_config(model, overrides | parse_sets(set_))
    if download:
        if cfg.data.dataset != "cifar10":
            raise ConfigError("--download fetches CIFAR-10 only; ImageNet must be obtained by hand")
        from repro.data.cifar10 import download as fetch

        fetch(cfg.data.data_dir)
    run_dir = Path(out) if out else Path("runs") / f"{cfg.model.name}-{cfg.data.dataset}-s{cfg.seed}-{cfg.hash()}"
    distributed.init_from_env(cfg.runtime.device)
    lead = distributed.rank() == 0  # read before shutdown: afterwards every process says rank 0
    try:
        if lead:
            err_console.print(f"run directory: {run_dir}", highlight=False, soft_wrap=True)
        summary = run(cfg, run_dir, quiet=quiet, log=quiet)
    finally:
        distributed.shutdown()
    if lead:
        pct = lambda v: "n/a" if v is None else f"{100 * v:.2f}%"  # noqa: E731  (None: no epoch ran)
        ten = summary.get("test_error_10view")
        console.print(f"{summary['status']}: {summary['epochs_run']:g} epochs, "
                      f"final train error {pct(summary.get('final_train_error'))} (eval mode), "
                      f"test error {pct(summary.get('test_error_1view'))} centre crop"
                      + (f", {pct(ten)} 10 views" if ten is not None else "")
                      + f", {summary['wall_seconds']:.0f} s  ->  {run_dir}", highlight=False, soft_wrap=True)


@app.command("eval")
def eval_(
    run_dir: Annotated[str, typer.Argument(help="A run directory with a checkpoint (repro train --out).")],
    views: Annotated[int, typer.Option("--views", help="1: centre crop; 10: the paper's ten views (§4.1).")] = 1,
    split: Annotated[str, typer.Option("--split", help="test | holdout | train_eval.")] = "test",
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where the data is.")] = None,
    device: DeviceOpt = "auto",
    lrn: Annotated[bool, typer.Option("--lrn", help="Instead: how strongly each LRN layer normalizes, beyond "
                                      "its constant gain, with the trained and the initial weights.")] = False,
    images: Annotated[int, typer.Option("--images", min=1, help="With --lrn: how many images of the split.")] = 2000,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
) -> None:
    """Evaluate a trained run's checkpoint on one split (reads the run directory, writes nothing).

    With --lrn, instead: how far each LRN layer scales its inputs beyond its constant gain."""
    from repro.evaluation import evaluate_run, lrn_strength_run

    if lrn:
        result = lrn_strength_run(run_dir, split=split, images=images, data_dir=data_dir, device=device)
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            _print_lrn_strength(result)
        return
    result = evaluate_run(run_dir, views=views, split=split, data_dir=data_dir, device=device)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    console.print(f"{result['split']} ({result['images']} images, {views} view{'s' if views > 1 else ''}): "
                  f"error {100 * result['error']:.2f}%, top-5 {100 * result['top5_error']:.2f}%, "
                  f"loss {result['loss']:.4f}  <-  {run_dir} (epoch {result['epoch']:g})",
                  highlight=False, soft_wrap=True)


def _print_lrn_strength(result: dict) -> None:
    table = Table(title=f"LRN beyond its constant gain: {result['run_dir']} (epoch {result['epoch']:g}, "
                        f"{result['images']} {result['split']} images)")
    for col in ("weights", "layer", "output / gain's", "median f", "10th pct f", "f < 0.9"):
        table.add_column(col, justify="left" if col in ("weights", "layer") else "right")
    for weights, layers in result["layers"].items():
        for name, s in layers.items():
            table.add_row(weights, name, f"{s['output_over_gain']:.3f}", f"{s['median']:.3f}", f"{s['p10']:.3f}",
                          f"{100 * s['share_below_0.9']:.1f}%")
    console.print(table)
    console.print("f = out / (input x k^-beta): 1 where LRN is only its constant gain; output / gain's: f "
                  "weighted by |input|.", highlight=False, soft_wrap=True)


def _launch_torchrun(nproc: int) -> None:
    """`repro train --nproc N ...` is `torchrun --nproc-per-node N -m repro train ...`."""
    import subprocess

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--nproc":
            skip = True
            continue
        if a.startswith("--nproc="):
            continue
        args.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
           "-m", "repro", *args]
    err_console.print("launching: " + " ".join(cmd[1:]), highlight=False)
    raise typer.Exit(subprocess.call(cmd))


@app.command()
def bench(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
    seconds: Annotated[float, typer.Option(
        "--seconds", help="Seconds of timed steps per training figure (LRN and layout: half).")] = 3.0,
    device: DeviceOpt = "auto",
    data_dir: Annotated[Optional[str], typer.Option(
        "--data-dir", help="CIFAR-10 (else synthetic of its shape).")] = None,
    threads: Annotated[Optional[int], typer.Option("--threads", help="CPU threads.")] = None,
    save: Annotated[Optional[str], typer.Option("--save", help="Also write the JSON to this file.")] = None,
    imagenet: Annotated[Optional[int], typer.Option(
        "--imagenet", min=1, help="Also time AlexNet's ImageNet-shape step at this batch size (fp32 NCHW, fp32 "
        "channels_last, bf16): seconds per step on a GPU, minutes on a small CPU.")] = None,
    profile: Annotated[bool, typer.Option(
        "--profile", help="Instead: where the harness step's time goes on the CPU (torch.profiler), by part, "
        "for each model in fp32 and bf16.")] = False,
    steps: Annotated[int, typer.Option("--steps", min=1, help="With --profile: steps profiled per figure.")] = 5,
) -> None:
    """Throughput against a plain-torch reference, side by side in one run.

    The training step of cifar-80sec and alexnet-cifar, our LRN vs torch's,
    and channels_last vs NCHW per layer; each ratio from interleaved
    repetitions. --profile: where a step's time goes instead."""
    from pathlib import Path

    from repro.bench import profile_all, run_all
    from repro.files import write_json

    if profile and device not in ("auto", "cpu"):
        raise ConfigError("--profile times CPU events: it runs on the CPU (leave --device out)")
    result = (profile_all(steps, data_dir, threads) if profile
              else run_all(device, seconds, data_dir, threads, imagenet=imagenet))
    if save:
        write_json(Path(save), result)
    if as_json:
        print(json.dumps(result, indent=2))
        return
    (_print_profile if profile else _print_bench)(result)


def _print_profile(result: dict) -> None:
    m = result["machine"]
    console.print(f"[bold]repro bench --profile[/] on {m['device_name']} ({m['threads']} threads), "
                  f"torch {m['torch']}", highlight=False)
    parts = list(next(iter(next(iter(result["profile"].values())).values()))["shares"])
    table = Table(title="the harness step's time by part (share of the step)")
    for c in ["model", "numerics", "ms/step", *parts]:
        table.add_column(c, justify="left" if c in ("model", "numerics") else "right")
    for name, by_precision in result["profile"].items():
        for precision, r in by_precision.items():
            table.add_row(name, precision, f"{r['ms_per_step']:.1f}", *(f"{100 * r['shares'][k]:.0f}%" for k in parts))
    console.print(table)


def _print_bench(result: dict) -> None:
    m = result["machine"]
    console.print(f"[bold]repro bench[/] on {m['device']} ({m['device_name']}, {m['threads']} threads), "
                  f"torch {m['torch']}", highlight=False)
    table = Table(title="training step, images/s (reference: plain torch.nn, fp32, NCHW, one batch)")
    for c in ("model", "reference", "harness", "speedup", "numerics", "bf16 harness", "bf16 speedup"):
        table.add_column(c, justify="left" if c in ("model", "numerics") else "right")
    for name, t in result["training"].items():
        table.add_row(name, f"{t['reference_img_s']:,.0f}", f"{t['harness_img_s']:,.0f}", f"{t['speedup']:.2f}x",
                      f"{t['precision']}{', channels_last' if t['channels_last'] else ''}",
                      f"{t['harness_bf16_img_s']:,.0f}", f"{t['speedup_bf16']:.2f}x")
    console.print(table)
    table = Table(title="LRN fwd+bwd (per column), images/s")
    for c in ("input", "shape", "ours", "torch.nn", "ours / torch"):
        table.add_column(c, justify="left" if c in ("input", "shape") else "right")
    for key, r in result["lrn"].items():
        table.add_row(key, "x".join(map(str, r["shape"])), f"{r['ours_img_s']:,.0f}", f"{r['torch_img_s']:,.0f}",
                      f"{r['ours_over_torch']:.2f}x")
    console.print(table)
    table = Table(title="channels_last vs NCHW at alexnet-cifar's shapes, images/s")
    for c in ("op", "NCHW", "channels_last", "ratio"):
        table.add_column(c, justify="left" if c == "op" else "right")
    for key, r in result["layout"].items():
        table.add_row(key, f"{r['nchw_img_s']:,.0f}", f"{r['channels_last_img_s']:,.0f}",
                      f"{r['channels_last_over_nchw']:.2f}x")
    console.print(table)
    if "imagenet" in result:
        r = result["imagenet"]["alexnet"]
        table = Table(title=f"AlexNet's step at ImageNet shape (batch {r['batch']}, {r['input']}), images/s")
        for c in ("numerics", "images/s", "over fp32 NCHW"):
            table.add_column(c, justify="left" if c == "numerics" else "right")
        for key, v in r["img_s_by_numerics"].items():
            table.add_row(key, f"{v:,.1f}", f"{r['over_fp32_nchw'][key]:.2f}x")
        console.print(table)


data_app = typer.Typer(help="Data utilities.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("prepare")
def data_prepare(
    dataset: Annotated[str, typer.Option("--dataset", help="cifar10 | imagenet | folder.")] = "cifar10",
    data_dir: Annotated[Optional[str], typer.Option("--data-dir", help="Where the data is.")] = None,
    image_size: Annotated[Optional[int], typer.Option(
        "--image-size", help="Folder datasets: stored size after §2's resize and centre crop (default 256).")] = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch CIFAR-10 (md5-checked) if missing.")] = False,
) -> None:
    """Check a dataset and build its caches (mean image and RGB PCA); prints its identity."""
    from repro.config import DataConfig
    from repro.data import load_dataset

    if dataset == "cifar10":
        if download:
            from repro.data.cifar10 import download as fetch

            fetch(data_dir)
        ds = load_dataset(DataConfig(dataset="cifar10", data_dir=data_dir, image_size=image_size), 10, image_size or 32)
    elif dataset in ("imagenet", "folder"):
        from repro.data import folders

        if data_dir is None:
            raise ConfigError(f"--dataset {dataset} needs --data-dir D (a folder with train/<class>/ and val/)")
        size = image_size or 256
        found = folders.scan(data_dir, size)
        ds = load_dataset(DataConfig(dataset=dataset, data_dir=data_dir, image_size=size), len(found.classes), size)
    else:
        raise ConfigError(f"--dataset {dataset!r}: choose cifar10, imagenet or folder (synthetic needs no preparing)")
    console.print(json.dumps(ds.identity, indent=2), highlight=False)


if __name__ == "__main__":
    main()
