"""The code's shape: imports between repro modules go one way, and functions fit on a screen.

Both read the source with ast (nothing is imported), so an import inside a function counts
as much as one at the top of a module.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "repro"
MAX_FUNCTION_LINES = 100


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(encoding="utf-8"), str(p)) for p in sorted(PACKAGE.rglob("*.py"))}


def _imports(name: str, tree: ast.Module, known: set[str]) -> set[str]:
    """The repro modules `name` imports anywhere in its source (`from repro import x` counts
    as importing repro.x when that is a module; a package's own __init__ is not counted for
    its submodules, which Python imports first without it being a dependency of the code)."""
    package = name if (PACKAGE / Path(*name.split(".")[1:]) / "__init__.py").exists() else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("repro")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + [base]).strip(".")
            if not base.startswith("repro"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                out.add(sub if sub in known else base)
    return {m for m in out if m in known and m != name}


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: _imports(name, tree, set(mods)) for name, tree in mods.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as a path a -> b -> ... -> a, or None."""
    colour: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        colour[n] = 1
        stack.append(n)
        for m in sorted(graph[n]):
            if colour.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in colour and (found := visit(m)):
                return found
        stack.pop()
        colour[n] = 2
        return None

    for n in sorted(graph):
        if n not in colour and (found := visit(n)):
            return found
    return None


def test_the_import_graph_is_read_from_the_source():
    g = import_graph()
    assert "repro.config" in g and "repro.ablation.plan" in g
    assert "repro.rundir" in g["repro.train"]  # a top-level import
    assert "repro.train" in g["repro.ablate"]  # an import inside a function counts too
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_circle_between_repro_modules():
    cycle = _cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_config_depends_only_on_errors():
    assert import_graph()["repro.config"] <= {"repro.errors"}


def test_stats_is_pure():
    tree = _modules()["repro.stats"]
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))
             for a in (n.names if isinstance(n, ast.Import) else [ast.alias(n.module or "")])}
    assert not names & {"pandas", "matplotlib", "repro", "torch"}, names


def test_no_function_in_repro_is_over_100_lines():
    long = []
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {n} lines")
    assert not long, long


def test_only_rundir_spells_the_run_directory_file_names():
    names = ("config.json", "env.json", "dataset.json", "metrics.jsonl", "summary.json", "checkpoint.pt",
             "reused_from.txt")
    sources = [*PACKAGE.rglob("*.py"), *(REPO / "tests" / "fixtures").glob("*.py")]
    offenders = [f"{p.relative_to(REPO)}: {n}" for p in sources if p.name != "rundir.py"
                 for n in names if f'"{n}"' in p.read_text(encoding="utf-8")]
    assert not offenders, offenders
