"""CSV as pandas writes it (NaN and None as empty fields), assembled column by column.

10,000 rows of ~70 fields were the largest single cost of the leaderboard build through
csv.writer; the run-level file is written in a forked child while the tables are built.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import atomic_path
from ..errors import BenchError
from .read import idle_cores

_NEEDS_QUOTES = frozenset(',"\r\n')


def _csv_text(v) -> str:
    """One field as the csv module writes it (QUOTE_MINIMAL; NaN and None empty, as pandas writes them)."""
    if v is None or v != v:
        return ""
    s = v if isinstance(v, str) else str(v)
    if not _NEEDS_QUOTES.isdisjoint(s):
        s = '"' + s.replace('"', '""') + '"'
    return s


def _texts(uniques: list) -> list[str]:
    """Distinct values' fields; strings without a character that needs quotes (checked once over
    all of them, which the 10,000 distinct paths of a leaderboard make worth it) are their own field."""
    if uniques and all(type(u) is str for u in uniques):
        joined = "".join(uniques)
        if all(c not in joined for c in _NEEDS_QUOTES):
            return uniques
    return [_csv_text(v) for v in uniques]


def _column_text(col: pd.Series) -> list[str]:
    """A column's fields, each distinct value formatted once: leaderboard columns repeat the same
    few strings (method, status, packages) and numbers thousands of times. pandas' factorize finds
    the distinct values (NaN and None as one code, written empty)."""
    try:
        codes, uniques = pd.factorize(col, use_na_sentinel=True)
    except TypeError:                             # lists or objects: unhashable
        return [_csv_text(v) for v in col.tolist()]
    uniques = list(uniques)
    if col.dtype.kind == "O" and not all(type(u) is str for u in uniques):   # factorize leaves None and NaN out
        # 1, 1.0 and True are one distinct value but three different fields
        return [_csv_text(v) for v in col.tolist()]
    texts = np.array(_texts(uniques) + [""], dtype=object)   # code -1 (NaN, None) is the last entry
    return texts[codes].tolist()


def _rows(cols: list[list[str]]) -> str:
    """The CSV body: runs of columns that hold one field on every row are joined once, not per row
    (a leaderboard's packages, recipe and provenance columns mostly do)."""
    merged: list[list[str]] = []
    run: list[str] = []
    for c in cols:
        if c and c.count(c[0]) == len(c):
            run.append(c[0])
            continue
        if run:
            merged.append([",".join(run)] * len(c))
            run = []
        merged.append(c)
    if run:
        merged.append([",".join(run)] * len(cols[0]))
    return "\n".join(map(",".join, zip(*merged)))


def write_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV as pandas writes it (NaN and None as empty fields), assembled column by column: 10,000
    rows of ~70 fields were the largest single cost of the leaderboard build through csv.writer."""
    header = ",".join(_csv_text(str(c)) for c in df.columns)
    body = _rows([_column_text(df[c]) for c in df.columns]) if len(df.columns) and len(df) else ""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(header + "\n")
            if body:
                f.write(body + "\n")


def write_csv_in_child(df: pd.DataFrame, path: Path):
    """Write the run-level leaderboard in a forked child while this process builds the tables:
    formatting 10,000 wide rows is the largest cost after the reading, and it needs nothing back.
    Returns the function that waits for the child (and raises if it failed). Where there is no
    fork or no idle core (read.idle_cores) that function writes the file itself, so the tables
    come first either way and a failure reads the same."""
    if not hasattr(os, "fork") or idle_cores() < 2:
        def write_here() -> None:
            try:
                write_csv(df, path)
            except OSError as exc:
                print(f"error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                raise BenchError(f"{path}: writing the leaderboard failed (the error is printed above); re-run "
                                 "the leaderboard rule") from None
        return write_here
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: write (atomically), report, and leave without running any cleanup
        code = 1
        try:
            write_csv(df, path)
            code = 0
        except BaseException as exc:  # noqa: BLE001 - the parent raises it by name
            print(f"error: {path}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        finally:
            os._exit(code)

    def wait() -> None:
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise BenchError(f"{path}: writing the leaderboard failed (the error is printed above); re-run the "
                             "leaderboard rule")
    return wait
