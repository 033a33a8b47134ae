"""The code a job runs, as a hash its rule carries as a param, so that editing that code re-runs it.

Snakemake re-runs a job whose params changed, but it sees only the rule's own shell line: a fixed
`method.py` or backbone would otherwise leave the old results standing ("Nothing to be done"). The
files are found by following imports from a job's entry files (statically, with `ast`), so a module a
method starts importing enters its hash with no list to keep up to date.

Modules that only validate, write or record (``BOOKKEEPING``) are left out: they cannot change a
number, and editing an error message must not re-run a 756-cell grid. Everything else the closure
reaches counts, third-party packages excepted (their versions are in every record's provenance).
"""
from __future__ import annotations

import ast
import hashlib
from functools import lru_cache
from pathlib import Path

from .config import REPO

# Modules that never change a result; each is a leaf for the closure too (its imports are not followed).
BOOKKEEPING = frozenset({"xmbench/errors.py", "xmbench/atomic.py", "xmbench/provenance.py", "xmbench/config.py",
                         "xmbench/cli.py", "xmbench/grid.py"})
# Calls that load another project file by name: run_module(python, "waymo.tf.convert", ...) is
# xmbench.data.waymo.tf.convert (in the Waymo environment). Methods reach one another by plain imports
# (methods/ is a package: `from methods.clap.method import CLAP`), which the import walk follows.
_LOADERS = {"run_module": (1, "xmbench.data.{}")}


def _module_file(root: Path, dotted: str) -> list[Path]:
    """The file of a module and the package __init__ files importing it runs; [] when not the project's."""
    parts = dotted.split(".")
    out = [root.joinpath(*parts[:i], "__init__.py") for i in range(1, len(parts))]
    for cand in (root.joinpath(*parts).with_suffix(".py"), root.joinpath(*parts, "__init__.py")):
        if cand.is_file():
            return [p for p in out if p.is_file()] + [cand]
    return []


def _package_of(root: Path, path: Path) -> list[str]:
    """The package a relative import in ``path`` starts from (a module's folder; an __init__'s own)."""
    return list(path.relative_to(root).parts[:-1])


def _imports(root: Path, path: Path, tree: ast.AST | None = None) -> list[Path]:
    """Project files ``path`` (or ``tree``, a part of it) imports, lazy imports included, or loads by name."""
    tree = tree if tree is not None else ast.parse(path.read_bytes(), filename=str(path))
    found: list[Path] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                found += _module_file(root, alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(root, path)
                base = base[:len(base) - node.level + 1] if node.level > 1 else base
                dotted = ".".join(base + ([node.module] if node.module else []))
            else:
                dotted = node.module or ""
            found += _module_file(root, dotted)
            for alias in node.names:  # `from pkg import submodule`
                found += _module_file(root, f"{dotted}.{alias.name}")
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _LOADERS:
            pos, pattern = _LOADERS[node.func.id]
            arg = node.args[pos] if len(node.args) > pos else None
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                found += _module_file(root, pattern.format(arg.value))
    return found


def command_entries(command: str, root: Path = REPO) -> list[Path]:
    """The project files the CLI subcommand's function imports (``cmd_<command>`` in xmbench/cli.py).

    The CLI is a dispatcher (bookkeeping), but what each subcommand imports is the code its rule
    runs: following it names that code without a list here that would rot when modules move.
    """
    root = Path(root).resolve()
    cli = root / "xmbench" / "cli.py"
    tree = ast.parse(cli.read_bytes(), filename=str(cli))
    fn = next((n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == f"cmd_{command.replace('-', '_')}"),
              None)
    if fn is None:
        raise KeyError(f"{cli}: no cmd_{command}")
    return _imports(root, cli, ast.Module(body=[fn], type_ignores=[]))


def closure(entries: list[Path], root: Path = REPO) -> list[Path]:
    """Every project file the entries run, entries included, sorted; bookkeeping modules left out."""
    root = Path(root).resolve()
    seen: set[Path] = set()
    todo = [Path(e).resolve() for e in entries if Path(e).is_file()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        rel = path.relative_to(root).as_posix()
        if rel in BOOKKEEPING:
            continue
        seen.add(path)
        todo += [p.resolve() for p in _imports(root, path)]
    return sorted(seen)


def code_hash(entries: list[Path], root: Path = REPO) -> str:
    """A short hash of the contents (and names) of every file in the entries' closure."""
    root = Path(root).resolve()
    h = hashlib.sha256()
    for path in closure(entries, root):
        h.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


@lru_cache(maxsize=None)
def command_code(command: str, root: Path = REPO) -> str:
    """What a rule's CLI subcommand runs (generate, index, split, leaderboard)."""
    return code_hash(command_entries(command, root), root)


@lru_cache(maxsize=None)
def pretrain_code(method: str, root: Path = REPO) -> str:
    """A method's folder code and the pretraining harness, with all they import (backbones, shared modules)."""
    root = Path(root)
    return code_hash(sorted((root / "methods" / method).rglob("*.py")) + command_entries("pretrain", root), root)


@lru_cache(maxsize=None)
def engine_code(task: str, root: Path = REPO) -> str:
    """A task's engine code (downstream/<task>/**/*.py) and the finetune wrapper, with all they import."""
    root = Path(root)
    return code_hash(sorted((root / "downstream" / task).rglob("*.py")) + command_entries("finetune", root), root)
