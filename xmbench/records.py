"""Reading a run's record back: the folder it sits in says which cell it is, not its contents.

A metrics.json copied into another cell's folder would otherwise be counted twice (n=2, std 0,
ranked first) while the real cell shows as missing. The leaderboard and the end-of-run summary both
ask here, so a record that disagrees with its folder is failed with the same reason in both.
"""
from __future__ import annotations

from pathlib import Path

from .grid import FIELDS, Cell


def _same(field: str, a, b) -> bool:
    if field == "fraction":
        try:
            return abs(float(a) - float(b)) < 1e-9
        except (TypeError, ValueError):
            return False
    if field == "draw":  # records written before draws existed are draw 0
        return _same("seed", 0 if a is None else a, b)
    if field == "track":  # and before tracks, the methods' own schedules
        return (a or "own") == b
    if field == "seed":
        try:
            return int(a) == int(b)
        except (TypeError, ValueError):
            return False
    return a == b


def wrong_cell(record: dict, path: str | Path) -> str | None:
    """Why a record does not belong to the folder it sits in, or None (also for a path that is no cell)."""
    cell = Cell.from_metrics_path(path)
    if cell is None:
        return None
    own = cell.identity()
    bad = [f for f in FIELDS if not _same(f, record.get(f), own[f])]
    if not bad:
        return None
    said = ", ".join(f"{f}={record.get(f)!r}" for f in bad)
    return (f"{path}: its contents name another cell ({said}) than its folder; it was copied or moved here: "
            "delete it and re-run this cell")
