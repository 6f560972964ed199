"""The `repro` command line. Thin: parse, call the module that owns the work, print.

Errors a user can cause (a bad model name, key, value, data file or spec) print one line
on stderr and exit non-zero, with no traceback; see repro.errors.
"""

from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from repro.errors import ReproError

app = typer.Typer(
    help="AlexNet (Krizhevsky, Sutskever, Hinton, NIPS 2012) as the paper describes it, and its ablations.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
console = Console()
err_console = Console(stderr=True)

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
    from repro.config import make_config, parse_sets
    from repro.models import ENTRIES
    from repro.spec import layer_table

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


if __name__ == "__main__":
    main()
