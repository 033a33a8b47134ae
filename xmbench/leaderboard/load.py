"""The run-level frame: one row per expected cell (ok, failed, missing), costs as columns.

Costs are completed here once, from Snakemake's benchmark TSVs and each pretraining job's
pretrain.json, and stay in the frame (``cost.*``, ``benchmark.*``, ``pretrain.*``): every later
stage, the plots included, reads them from the frame and never from disk again.
"""
from __future__ import annotations

import csv
import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..grid import Cell, cells, split_tag, track_tag
from .read import read_columns
from .schema import BASELINE, FRONT, ID

def _frac_key(f) -> float:
    return round(float(f), 9)


def _key(rec: dict) -> tuple:
    return (rec.get("dataset"), rec.get("task"), rec.get("engine"), rec.get("method"),
            _frac_key(rec["fraction"]) if rec.get("fraction") is not None else None,
            int(rec.get("draw") or 0),
            int(rec["seed"]) if rec.get("seed") is not None else None, rec.get("track") or "own")


def expected_grid(cfg: dict, results_dir: str | Path | None = None) -> list[dict]:
    """Every cell the config asks for (engines as the config selects them), with the path its
    metrics.json has in the DAG."""
    r = results_dir if results_dir is not None else cfg["results_dir"]
    return [{**c.identity(), "path": str(c.metrics_path(r))} for c in cells(cfg)]


def _identity_from_path(path: Path) -> dict:
    """<results>/<dataset>/<task>/<engine>/<method>/<tag>pct/seed<k>/metrics.json -> identity."""
    cell = Cell.from_metrics_path(path)
    return cell.identity() if cell else {}


def _read_tsv_row(path: Path) -> dict:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        return {}
    vals = {}
    for col in ("s", "max_rss", "cpu_time"):
        xs = [float(r[col]) for r in rows if r.get(col) not in (None, "", "NA", "-")]
        if xs:
            vals[col] = sum(xs) / len(xs)  # `benchmark: repeat(...)` writes several rows: their mean
    return vals


def finetune_benchmarks(out_dir: Path) -> dict[str, Path]:
    folder = Path(out_dir) / "benchmarks" / "finetune"
    try:
        return {n[:-4]: folder / n for n in os.listdir(folder) if n.endswith(".tsv")}
    except FileNotFoundError:
        return {}


def pretrain_costs(out_dir: Path, dataset: str, methods) -> dict[str, dict]:
    """Cost of each method's pretraining job: Snakemake's benchmark TSV and pretrain.json's cost.
    ``methods`` are pretraining folder names (``clap``, ``clap-budget`` for the budget track)."""
    out = {}
    for m in methods:
        if m == BASELINE:
            out[m] = {"wall_seconds": 0.0, "gpu_hours": 0.0, "max_rss_mb": 0.0, "source": "no pretraining"}
            continue
        tsv = Path(out_dir) / "benchmarks" / "pretrain" / f"{dataset}_{m}.tsv"
        rec_path = Path(out_dir) / dataset / "pretrain" / m / "pretrain.json"
        cost = {"wall_seconds": math.nan, "gpu_hours": math.nan, "max_rss_mb": math.nan, "source": None}
        if rec_path.is_file():
            try:
                rc = json.loads(rec_path.read_text()).get("cost") or {}
                for k in ("wall_seconds", "gpu_hours"):
                    if rc.get(k) is not None:
                        cost[k] = float(rc[k])
                cost["source"] = "pretrain.json"
            except (OSError, ValueError):
                pass
        if tsv.is_file():
            b = _read_tsv_row(tsv)
            if math.isnan(cost["wall_seconds"]) and "s" in b:
                cost["wall_seconds"] = b["s"]
            cost["max_rss_mb"] = b.get("max_rss", math.nan)
            cost["source"] = "snakemake benchmark" if cost["source"] is None else cost["source"] + " + snakemake benchmark"
        out[m] = cost
    return out


def load_runs(paths, expected: list[dict] | None = None, out_dir: str | Path | None = None) -> pd.DataFrame:
    """One row per run: ok and failed runs from their metrics.json, and ``missing`` rows for every
    expected cell without one. ``out_dir`` (the results folder) is where the benchmark TSVs are."""
    paths = [str(p) for p in paths]
    expected = expected or []
    exp_by_path = {str(e["path"]): e for e in expected if e.get("path")}
    columns, failures = read_columns(paths)
    if columns:
        # a record written before draws existed is of draw 0, the only subset there was
        columns["draw"] = [0 if d is None else d for d in columns["draw"]]
        columns["track"] = [t or "own" for t in columns["track"]]  # and before tracks, the own schedules
        _trust_folders(columns)
    extra_rows = []
    for path, err in failures:
        ident = {k: v for k, v in (exp_by_path.get(path) or _identity_from_path(Path(path))).items() if k in ID}
        if err == "missing":
            extra_rows.append({**ident, "status": "missing", "path": path,
                               "reason": f"no metrics.json at {path} (the job did not run, or died before writing it)"})
        else:
            extra_rows.append({**ident, "status": "failed", "path": path,
                               "reason": f"{path}: {err or 'not a JSON object'}; delete the folder to re-run"})
    seen: set = set()
    if expected:
        seen = {(d, t, e, m, _frac_key(f) if f is not None else None, int(k or 0), int(s) if s is not None else None,
                 tr or "own") for d, t, e, m, f, k, s, tr in zip(*(columns[k] for k in ID))} if columns else set()
        seen |= {_key(r) for r in extra_rows if all(r.get(k) is not None for k in ID)}
    for e in expected:
        if _key(e) not in seen:
            seen.add(_key(e))
            p = e.get("path") or "<expected cell>"
            extra_rows.append({**{k: e.get(k) for k in ID}, "status": "missing", "path": p,
                               "reason": f"no metrics.json at {p} (the job did not run, or died before writing it)"})
    df = _frame(columns) if columns else pd.DataFrame()
    if extra_rows:
        df = pd.concat([df, pd.DataFrame(extra_rows)], ignore_index=True) if len(df) else pd.DataFrame(extra_rows)
    if not len(df):
        return pd.DataFrame(columns=FRONT + ["path"])
    for c in FRONT + ["cost.wall_seconds", "cost.peak_memory_mb", "cost.gpu_hours"]:
        if c not in df.columns:
            df[c] = None
    df["primary_value"] = pd.to_numeric(df["primary_value"], errors="coerce")
    df.loc[df["status"] != "ok", "primary_value"] = np.nan
    df["draw"] = pd.to_numeric(df["draw"], errors="coerce").fillna(0).astype(int)
    df["track"] = df["track"].fillna("own")
    for c in ("cost.wall_seconds", "cost.peak_memory_mb", "cost.gpu_hours"):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    df["cost.source"] = np.where(df["cost.wall_seconds"].notna(), "engine", None)
    if out_dir is not None:
        _add_benchmark_costs(df, Path(out_dir))
    order = FRONT + sorted(c for c in df.columns if c not in FRONT and c != "path") + ["path"]
    df = df[order]
    return df.sort_values(ID, na_position="last", kind="stable", ignore_index=True)


def _own_tail(d, t, e, m, f, k, s, tr, tags: dict) -> str | None:
    """The end of the path a record of this identity has in its own folder (None where a field has
    the wrong type: the full check says which). ``tags`` caches the (fraction, draw, track) tags."""
    try:
        tag = tags.get((f, k, tr))
        if tag is None:
            tag = tags[(f, k, tr)] = (track_tag(tr or "own"), split_tag(f, k or 0))
        return f"/{d}/{t}/{e}/{m}{tag[0]}/{tag[1]}/seed{int(s)}/metrics.json"
    except (TypeError, ValueError):
        return None


def _trust_folders(columns: dict[str, list]) -> None:
    """A record in another cell's folder counts as that folder's cell, failed with the reason."""
    from ..records import wrong_cell

    tags: dict = {}
    for i, (path, *ident) in enumerate(zip(columns["path"], *(columns[c] for c in ID))):
        tail = _own_tail(*ident, tags)
        if tail is not None and str(path).replace("\\", "/").endswith(tail):
            continue                  # the common case, a record in its own folder, by one string comparison
        why = wrong_cell(dict(zip(ID, ident)), path)
        if why:
            own = Cell.from_metrics_path(path).identity()
            for k in ID:
                columns[k][i] = own[k]
            columns["status"][i], columns["reason"][i] = "failed", why


_DTYPE_OF_TYPES = {frozenset({float}): float, frozenset({float, type(None)}): float, frozenset({int, float}): float,
                   frozenset({int, float, type(None)}): float, frozenset({int}): np.int64, frozenset({bool}): bool}
_OBJECT_TYPES = (frozenset({str}), frozenset({str, type(None)}), frozenset({type(None)}))


def _series(values: list) -> pd.Series:
    """pd.Series(values)'s dtype and values, a third of its cost at 10,000 rows: the types present
    give the dtype pandas would infer where that is plain (floats, ints, bools, strings, None), and
    numpy fills the array; for anything else numpy fills an object array and infer_objects picks
    float64/int64/bool exactly as list inference does (tests/test_leaderboard_flatten.py checks both)."""
    types = frozenset(map(type, values))
    dtype = _DTYPE_OF_TYPES.get(types)
    if dtype is not None:
        try:
            return pd.Series(np.array(values, dtype=dtype), copy=False)
        except OverflowError:   # an int beyond 64 bits
            pass
    arr = np.fromiter(values, dtype=object, count=len(values))
    return pd.Series(arr, copy=False) if types in _OBJECT_TYPES else pd.Series(arr, copy=False).infer_objects()


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    """pd.DataFrame(columns) with the same dtypes, column by column through _series."""
    return pd.DataFrame({k: _series(v) for k, v in columns.items()}, copy=False)


def _add_benchmark_costs(df: pd.DataFrame, out_dir: Path) -> None:
    tsvs = finetune_benchmarks(out_dir)
    if tsvs:
        bs, brss = [], []
        for d, t, e, m, f, k, s, tr in zip(*(df[c] for c in ID)):
            name = (Cell(d, t, e, m, f, int(k or 0), s, tr).benchmark_name if f is not None and f == f
                    else f"{d}_{t}_{e}_{m}_{f}_seed{s}")
            b = _read_tsv_row(tsvs[name]) if name in tsvs else {}
            bs.append(b.get("s", math.nan))
            brss.append(b.get("max_rss", math.nan))
        df["benchmark.s"], df["benchmark.max_rss_mb"] = bs, brss
        wall_missing = df["cost.wall_seconds"].isna() & df["benchmark.s"].notna()
        df.loc[wall_missing, "cost.wall_seconds"] = df.loc[wall_missing, "benchmark.s"]
        df.loc[wall_missing, "cost.source"] = "snakemake benchmark"
        mem_missing = df["cost.peak_memory_mb"].isna() & df["benchmark.max_rss_mb"].notna()
        df.loc[mem_missing, "cost.peak_memory_mb"] = df.loc[mem_missing, "benchmark.max_rss_mb"]
    keys = list(zip(df["dataset"], df["method"], df["track"]))
    wall, gpu = {}, {}
    for key in dict.fromkeys(keys):  # a cost per pretraining job, not per row
        d, m, tr = key
        folder = f"{m}{track_tag(tr)}" if m is not None else None   # the track's own pretraining job
        c = pretrain_costs(out_dir, d, [folder])[folder] if d is not None and folder is not None else {}
        wall[key], gpu[key] = c.get("wall_seconds", math.nan), c.get("gpu_hours", math.nan)
    df["pretrain.wall_seconds"] = list(map(wall.__getitem__, keys))
    df["pretrain.gpu_hours"] = list(map(gpu.__getitem__, keys))
