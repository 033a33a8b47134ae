"""From metrics.json files to leaderboards, statistics, plots and a report.

Every expected cell is a row: runs that finished (``ok``), runs that failed (``failed`` with the
reason from their metrics.json), and cells the config expects but that have no metrics.json
(``missing``). Outputs, all under ``out_dir`` (written atomically):

- ``leaderboard.csv``: one row per run, every field of metrics.json flattened, cost completed from
  Snakemake's benchmark TSV where the engine did not measure it, the pretraining job's cost.
- per (dataset, task, engine), named ``<dataset>_<task>`` (``<dataset>_<task>_<engine>`` when a
  task has several engines): ``leaderboard_<name>.csv|.md|.tex`` (method x fraction, mean ± std
  and n over draws and seeds, the spread split into seed and draw parts, ranks with ties; see
  xmbench/stats.py), ``gains_<name>.csv`` (gain over scratch paired by fraction, draw, seed and split,
  95% t-interval, Holm-corrected p), ``draws_<name>.csv`` (one row per method, fraction and draw:
  the value over seeds and the gain over scratch on that draw),
  ``tables/leaderboard_<name>.html`` and ``plots/{label_efficiency,gains,per_class,gain_vs_cost}_<name>.png``.
- ``report.md``: the tables and plots for a code-hosting site; published numbers beside ours.
- ``README.md``: what every file and column above means (xmbench/report.py ``results_readme``).

Entry points: ``build_results(metric_paths, out_dir, expected=..., config=...)`` and
``python -m xmbench.results --out-dir results --config results/config.resolved.json [--metrics ...]``.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from operator import itemgetter
from pathlib import Path

import numpy as np
import orjson
import pandas as pd

from . import stats
from .atomic import atomic_path, write_text
from .errors import BenchError
from .grid import Cell, cells, fraction_label, metrics_glob, table_name, track_tag

ID = ["dataset", "task", "engine", "method", "fraction", "draw", "seed", "track"]
GROUP = ["dataset", "task", "engine", "track"]   # the pretraining tracks never share a table
STATUSES = ("ok", "failed", "missing")
BASELINE = "scratch"
FRONT = ID + ["status", "reason", "primary_metric", "primary_unit", "primary_value"]


# --------------------------------------------------------------------------- loading

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


_SECTIONS = ("metrics", "cost", "provenance", "init")
_KNOWN = frozenset(("primary_metric", "recipe", "recipe_hash", "status", "reason") + _SECTIONS + tuple(ID))


def _flat_section(val: dict, prefix: str, row: dict) -> None:
    """One level at a time with dict comprehensions: this runs for every key of 10,000s of files."""
    nested = [k for k, v in val.items() if isinstance(v, (dict, list))]
    if not nested:
        row.update({prefix + k: v for k, v in val.items()})
        return
    for k, v in val.items():
        if isinstance(v, dict):
            _flat_section(v, prefix + k + ".", row)
        elif isinstance(v, list):
            row[prefix + k] = json.dumps(v)
        else:
            row[prefix + k] = v


def run_row(rec: dict, path: str) -> dict:
    """One leaderboard row from one metrics.json record."""
    pm = rec.get("primary_metric") or {}
    row = {"dataset": rec.get("dataset"), "task": rec.get("task"), "engine": rec.get("engine"),
           "method": rec.get("method"), "fraction": rec.get("fraction"), "seed": rec.get("seed"),
           "status": rec.get("status"), "reason": rec.get("reason"), "primary_metric": pm.get("name"),
           "primary_unit": pm.get("unit"), "primary_value": pm.get("value")}
    for section in _SECTIONS:
        val = rec.get(section)
        if isinstance(val, dict):
            _flat_section(val, section + ".", row)
    row["recipe_hash"] = rec.get("recipe_hash")
    if isinstance(rec.get("recipe"), dict):
        _flat_section(rec["recipe"], "recipe.", row)
    for k in rec.keys() - _KNOWN:  # anything a future engine adds stays visible
        v = rec[k]
        if isinstance(v, dict):
            _flat_section(v, k + ".", row)
        else:
            row[k] = json.dumps(v) if isinstance(v, list) else v
    row["path"] = path
    return row


def _parse(data: bytes):
    """orjson parses these files 2.3x faster than the json module (the parse is most of the reading
    cost at 10,000 files); NaN/Infinity, which our writer never emits but a hand-edited file may
    hold, fall back to the json module, which accepts them."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)


def read_records(paths) -> list[tuple[str, dict | None, str | None]]:
    """(path, record or None, error or None) for each path; a missing or broken file is not fatal."""
    out = []
    for p in paths:
        p = str(p)
        try:
            with open(p, "rb") as f:
                out.append((p, _parse(f.read()), None))
        except FileNotFoundError:
            out.append((p, None, "missing"))
        except (OSError, ValueError) as exc:
            out.append((p, None, f"unreadable metrics.json ({type(exc).__name__}: {exc})"))
    return out


def _json_lists(col: list) -> list:
    memo: dict = {}
    out = []
    for v in col:
        if isinstance(v, list):
            try:
                key = tuple(v)
                text = memo.get(key)
                if text is None:
                    text = memo[key] = json.dumps(v)
            except TypeError:  # nested lists are not hashable
                text = json.dumps(v)
            out.append(text)
        else:
            out.append(v)
    return out


def _columns(dicts: list, prefix: str, out: dict) -> None:
    """Flatten aligned records column by column (``a.b.c`` names). Records of one engine share
    their keys, so one C-level ``itemgetter`` call per record reads a whole section: this keeps
    10,000 files cheap (see tests/benchmarks/test_harness_scale.py)."""
    sigs: dict = {}
    for d in dicts:
        if d:
            sigs.setdefault(tuple(d), None)
    if not sigs:
        return
    if len(sigs) == 1 and len(next(iter(sigs))) > 1:
        keys = next(iter(sigs))
        get, none = itemgetter(*keys), (None,) * len(keys)
        cols = dict(zip(keys, map(list, zip(*[get(d) if d else none for d in dicts]))))
    else:
        keys = dict.fromkeys(k for sig in sigs for k in sig)
        cols = {k: [d.get(k) if d else None for d in dicts] for k in keys}
    for k, col in cols.items():
        types = set(map(type, col))
        if dict in types:
            _columns([v if isinstance(v, dict) else None for v in col], f"{prefix}{k}.", out)
        elif list in types:
            out[f"{prefix}{k}"] = _json_lists(col)
        else:
            out[f"{prefix}{k}"] = col


def records_to_columns(records: list[dict], paths: list[str]) -> dict[str, list]:
    """The leaderboard's columns from metrics.json records (same names as ``run_row``)."""
    out: dict[str, list] = {k: [r.get(k) for r in records] for k in ID + ["status", "reason"]}
    pms = [r.get("primary_metric") or {} for r in records]
    out["primary_metric"] = [pm.get("name") for pm in pms]
    out["primary_unit"] = [pm.get("unit") for pm in pms]
    out["primary_value"] = [pm.get("value") for pm in pms]
    for section in _SECTIONS:
        _columns([r.get(section) if isinstance(r.get(section), dict) else None for r in records], section + ".", out)
    out["recipe_hash"] = [r.get("recipe_hash") for r in records]
    _columns([r.get("recipe") if isinstance(r.get("recipe"), dict) else None for r in records], "recipe.", out)
    extra = {k: None for r in records for k in r.keys() - _KNOWN}
    if extra:
        _columns([{k: r[k] for k in r.keys() - _KNOWN} for r in records], "", out)
    out["path"] = list(paths)
    return out


def _read_chunk(paths: list[str]) -> tuple[dict | None, list[tuple[str, str]]]:
    with _NoGC():
        records, ok_paths, failures = [], [], []
        for path, rec, err in read_records(paths):
            if isinstance(rec, dict):
                records.append(rec)
                ok_paths.append(path)
            else:
                failures.append((path, err or "not a JSON object"))
        return (records_to_columns(records, ok_paths) if records else None), failures


PARALLEL_MIN_FILES = 4000


def _merge_columns(parts: list[dict | None]) -> dict | None:
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else None
    names = list(dict.fromkeys(k for p in parts for k in p))
    out = {}
    for k in names:
        col = []
        for p in parts:
            v = p.get(k)
            col.extend(v if v is not None else [None] * len(p["path"]))
        out[k] = col
    return out


def read_columns(paths: list[str], workers: int | None = None) -> tuple[dict | None, list[tuple[str, str]]]:
    """Read and flatten every metrics.json into columns; (columns, [(path, error)]).

    JSON parsing is CPU-bound: above PARALLEL_MIN_FILES files, on 4 cores or more, the reading is
    split over forked worker processes (one per core, at most 8), each returning its columns; one process otherwise,
    or if a pool cannot start."""
    if workers is None:  # measured: on 2 cores the pickling costs more than the second core gains
        cores = os.cpu_count() or 1
        workers = min(8, cores) if cores >= 4 else 1
    if workers < 2 or len(paths) < PARALLEL_MIN_FILES:
        return _read_chunk(paths)
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    chunks = [paths[i * len(paths) // workers:(i + 1) * len(paths) // workers] for i in range(workers)]
    try:
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("fork")) as pool:
            results = list(pool.map(_read_chunk, chunks))
    except (OSError, RuntimeError, ValueError):
        return _read_chunk(paths)
    return _merge_columns([r[0] for r in results]), [f for r in results for f in r[1]]


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
    return df.sort_values(ID, na_position="last", kind="stable").reset_index(drop=True)


def _trust_folders(columns: dict[str, list]) -> None:
    """A record in another cell's folder counts as that folder's cell, failed with the reason."""
    from .records import wrong_cell

    for i, path in enumerate(columns["path"]):
        why = wrong_cell({k: columns[k][i] for k in ID}, path)
        if why:
            own = Cell.from_metrics_path(path).identity()
            for k in ID:
                columns[k][i] = own[k]
            columns["status"][i], columns["reason"][i] = "failed", why


def _frame(columns: dict[str, list]) -> pd.DataFrame:
    """pd.DataFrame(columns) with the same dtypes, a third faster at 10,000 rows: numpy fills an
    object array from an iterator quicker than pandas converts a list, and infer_objects then picks
    float64/int64/bool exactly as list inference does (checked on the leaderboard's columns)."""
    return pd.DataFrame({k: pd.Series(np.fromiter(v, dtype=object, count=len(v)), copy=False).infer_objects()
                         for k, v in columns.items()})


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
    pcols = {"pretrain.wall_seconds": [], "pretrain.gpu_hours": []}
    cache: dict = {}
    for d, m, tr in zip(df["dataset"], df["method"], df["track"]):
        folder = f"{m}{track_tag(tr)}" if m is not None else None   # the track's own pretraining job
        if (d, folder) not in cache:
            cache[(d, folder)] = (pretrain_costs(out_dir, d, [folder])[folder]
                                  if d is not None and folder is not None else {})
        pcols["pretrain.wall_seconds"].append(cache[(d, folder)].get("wall_seconds", math.nan))
        pcols["pretrain.gpu_hours"].append(cache[(d, folder)].get("gpu_hours", math.nan))
    for k, v in pcols.items():
        df[k] = v


# --------------------------------------------------------------------------- aggregation

def method_order(methods, preferred=None) -> list[str]:
    methods = list(dict.fromkeys(m for m in methods if m is not None))
    pref = [m for m in (preferred or []) if m in methods]
    rest = sorted(m for m in methods if m not in pref)
    order = pref + rest
    if BASELINE in order:
        order.remove(BASELINE)
        order.insert(0, BASELINE)
    return order


def _cell_groups(part: pd.DataFrame) -> dict[tuple, dict[int, list[float]]]:
    """(fraction, method) -> draw -> the ok runs' primary values."""
    ok = part[part["status"] == "ok"]
    out: dict = {}
    for f, m, k, v in zip(ok["fraction"], ok["method"], ok["draw"], ok["primary_value"]):
        if v == v:
            out.setdefault((float(f), m), {}).setdefault(int(k), []).append(float(v))
    return out


LONG_COLUMNS = ["method", "fraction", "mean", "std", "n", "n_draws", "sd_seed", "sd_draw", "ci95_low", "ci95_high",
                "n_failed", "n_missing", "rank", "best", "rank_tested"]


def summary_long(part: pd.DataFrame, methods=None) -> pd.DataFrame:
    """(method, fraction) -> mean, std, n, the seed and draw parts of the spread, 95% CI, failed/missing
    counts, rank with ties (xmbench/stats.py: with several draws the draws' means are the replicates)."""
    methods = method_order(part["method"], methods)
    fractions = sorted({float(f) for f in part["fraction"].dropna()})
    rows = []
    groups = _cell_groups(part)
    counts = part.groupby(["fraction", "method", "status"]).size().to_dict()
    for f in fractions:
        cells = {m: groups.get((f, m), {}) for m in methods}
        ranks = stats.rank_methods({m: stats.replicates(g) for m, g in cells.items() if g})
        for m in methods:
            s = stats.decompose(cells[m])
            r = ranks.get(m, {})
            rows.append({"method": m, "fraction": f, "mean": s.mean, "std": s.sd_total, "n": s.n,
                         "n_draws": s.n_draws, "sd_seed": s.sd_seed, "sd_draw": s.sd_draw,
                         "ci95_low": s.ci_low, "ci95_high": s.ci_high,
                         "n_failed": int(counts.get((f, m, "failed"), 0)),
                         "n_missing": int(counts.get((f, m, "missing"), 0)),
                         "rank": r.get("rank"), "best": bool(r.get("best", False)),
                         "rank_tested": r.get("tested")})
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def cell_text(mean, std, n, n_failed=0, n_missing=0, digits=2) -> str:
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        parts = [f"{n_failed} failed" if n_failed else "", f"{n_missing} missing" if n_missing else ""]
        return " ".join(p for p in parts if p) or "–"
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if n >= 2 else f"{mean:.{digits}f}"
    return text


def summary_table(part: pd.DataFrame, methods=None, long: pd.DataFrame | None = None) -> pd.DataFrame:
    """The wide CSV: one row per method; per fraction the cell text, n, and the numbers behind it."""
    long = summary_long(part, methods) if long is None else long
    order = method_order(long["method"], methods)
    index = {(m, f): i for i, (m, f) in enumerate(zip(long["method"], long["fraction"]))}
    col = {c: long[c].to_numpy() for c in ("mean", "std", "n", "ci95_low", "ci95_high", "rank", "n_failed",
                                            "n_missing", "n_draws", "sd_seed", "sd_draw")}
    out: dict = {"method": order}
    for f in sorted(long["fraction"].unique()):
        rows = [index[(m, f)] for m in order]  # summary_long has a row for every (method, fraction)
        take = {c: v[rows] for c, v in col.items()}
        lab = fraction_label(f)
        out[lab] = [cell_text(*args) for args in zip(take["mean"], take["std"], take["n"], take["n_failed"],
                                                     take["n_missing"])]
        out[f"n@{lab}"] = pd.Series(take["n"]).fillna(0).astype(int).to_numpy()
        for c in ("mean", "std", "sd_seed", "sd_draw", "ci95_low", "ci95_high", "rank"):
            out[f"{c}@{lab}"] = take[c]
        for c in ("n_draws", "n_failed", "n_missing"):
            out[f"{c}@{lab}"] = pd.Series(take[c]).fillna(0).astype(int).to_numpy()
    return pd.DataFrame(out)


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else math.nan


def _paired(part: pd.DataFrame, baseline: str) -> list[tuple]:
    """(method, fraction, draw, seed, split, value, baseline value, gain) of every ok run that has a
    baseline run on the same fraction, draw, seed and split sha256 (value NaN where it has none)."""
    n = len(part)
    splits = part["provenance.split_sha256"].tolist() if "provenance.split_sha256" in part else [None] * n
    rows_in = [(m, float(f), int(k), s, "" if sp is None or sp != sp else sp, v)
               for st, m, f, k, s, sp, v in zip(part["status"], part["method"], part["fraction"], part["draw"],
                                                part["seed"], splits, part["primary_value"]) if st == "ok"]
    base: dict = {}
    for m, f, k, s, sp, v in rows_in:
        if m == baseline:
            base.setdefault((f, k, s, sp), v)
    out = []
    for m, f, k, s, sp, v in rows_in:
        if m != baseline:
            b = base.get((f, k, s, sp), math.nan)
            b = math.nan if b is None else b
            out.append((m, f, k, s, sp, v, b, v - b))
    return out


GAIN_COLUMNS = ["method", "fraction", "n_pairs", "n_draws", "mean_gain", "std_gain", "sd_gain_seed", "sd_gain_draw",
                "ci95_low", "ci95_high", "p_value", "p_holm", "significant_holm", "baseline_mean", "method_mean",
                "relative_gain_pct", "unpaired_runs", "note"]


def gains_table(part: pd.DataFrame, baseline: str = BASELINE) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gain over the baseline, paired on (fraction, draw, seed, split sha256); Holm over the family.

    With several draws the interval and the paired test run over the draws' mean gains (stats.py);
    sd_gain_seed and sd_gain_draw split the gain's spread like the values'. Returns (table, pairs):
    the table per (method, fraction) and the paired differences behind it. Plain Python over the
    columns: pandas' merge and groupby cost more than the arithmetic here.
    """
    groups: dict = {}
    pair_rows = []
    for m, f, k, s, sp, v, b, gain in _paired(part, baseline):
        groups.setdefault((m, f), []).append((k, v, b))
        if b == b:
            pair_rows.append((m, f, k, s, sp, v, b, gain))
    rows = []
    for (m, f) in sorted(groups):
        g = groups[(m, f)]
        paired = [(k, v, b) for k, v, b in g if b == b]
        by_draw: dict = {}
        for k, v, b in paired:
            by_draw.setdefault(k, []).append(v - b)
        spread = stats.decompose(by_draw)
        reps = stats.replicates(by_draw) if by_draw else []
        base_mean = _mean([b for _, _, b in paired])
        note = []
        if spread.n == 1:
            note.append("n=1: no CI or p-value")
        if spread.n_draws >= 2:
            note.append(f"CI and p over the {spread.n_draws} draws' mean gains")
        if spread.n == 0:
            note.append(f"no {baseline} run with the same draw, seed and split")
        unpaired = len(g) - len(paired)
        if unpaired:
            note.append(f"{unpaired} run(s) without a {baseline} partner (draw/seed/split)")
        rows.append({"method": m, "fraction": float(f), "n_pairs": spread.n, "n_draws": spread.n_draws,
                     "mean_gain": spread.mean, "std_gain": spread.sd_total, "sd_gain_seed": spread.sd_seed,
                     "sd_gain_draw": spread.sd_draw, "ci95_low": spread.ci_low, "ci95_high": spread.ci_high,
                     "p_value": stats.paired_p(reps), "baseline_mean": base_mean,
                     "method_mean": _mean([v for _, v, _ in paired]),
                     "relative_gain_pct": 100 * spread.mean / base_mean if base_mean and not math.isnan(base_mean)
                     else math.nan, "unpaired_runs": unpaired, "note": "; ".join(note)})
    table = pd.DataFrame(rows, columns=[c for c in GAIN_COLUMNS if c not in ("p_holm", "significant_holm")])
    table["p_holm"] = stats.holm(table["p_value"].tolist()) if len(table) else []
    table["significant_holm"] = pd.Series([None if math.isnan(p) else bool(p < stats.ALPHA)
                                           for p in table["p_holm"]], index=table.index, dtype=object)
    pairs = pd.DataFrame(pair_rows, columns=["method", "fraction", "draw", "seed", "_split", "primary_value",
                                             "baseline", "gain"])
    return table[GAIN_COLUMNS], pairs


DRAW_COLUMNS = ["method", "fraction", "draw", "split_sha256", "n", "mean", "std", "ci95_low", "ci95_high",
                "n_pairs", "mean_gain", "std_gain", "gain_ci95_low", "gain_ci95_high", "p_value"]


def draws_table(part: pd.DataFrame, baseline: str = BASELINE) -> pd.DataFrame:
    """One row per (method, fraction, draw): the value over seeds on that labelled subset, and the gain
    over the baseline paired by seed on it (p: paired t-test over seeds, no multiplicity correction:
    these rows show where the pooled numbers of the leaderboard and gains tables come from)."""
    ok = part[part["status"] == "ok"]
    sha = ok["provenance.split_sha256"] if "provenance.split_sha256" in ok else pd.Series([None] * len(ok),
                                                                                          index=ok.index)
    values: dict = {}
    shas: dict = {}
    for m, f, k, v, sp in zip(ok["method"], ok["fraction"], ok["draw"], ok["primary_value"], sha):
        key = (m, float(f), int(k))
        if v == v:
            values.setdefault(key, []).append(float(v))
        if isinstance(sp, str) and sp:
            shas.setdefault(key, set()).add(sp)
    gains: dict = {}
    for m, f, k, s, sp, v, b, gain in _paired(part, baseline):
        if b == b:
            gains.setdefault((m, f, k), []).append(gain)
    order = {m: i for i, m in enumerate(method_order(part["method"]))}
    rows = []
    for key in sorted(values.keys() | gains.keys(), key=lambda t: (t[1], order.get(t[0], 0), t[2])):
        m, f, k = key
        s = stats.summarize(values.get(key, []))
        g = stats.summarize(gains.get(key, []))
        rows.append({"method": m, "fraction": f, "draw": k, "split_sha256": ";".join(sorted(shas.get(key, ()))),
                     "n": s.n, "mean": s.mean, "std": s.std, "ci95_low": s.ci_low, "ci95_high": s.ci_high,
                     "n_pairs": g.n if m != baseline else 0, "mean_gain": g.mean if m != baseline else math.nan,
                     "std_gain": g.std if m != baseline else math.nan,
                     "gain_ci95_low": g.ci_low if m != baseline else math.nan,
                     "gain_ci95_high": g.ci_high if m != baseline else math.nan,
                     "p_value": stats.paired_p(gains.get(key, [])) if m != baseline else math.nan})
    return pd.DataFrame(rows, columns=DRAW_COLUMNS)


def group_names(df: pd.DataFrame) -> dict[tuple, str]:
    """(dataset, task, engine, track) -> file stem: grid.table_name (<dataset>_<task>, _budget for the
    budget track), plus _<engine> when a task has several."""
    names = {}
    groups = df[GROUP].dropna().drop_duplicates()
    for d, t, e, tr in groups.itertuples(index=False):
        several = groups[(groups["dataset"] == d) & (groups["task"] == t)]["engine"].nunique() > 1
        names[(d, t, e, tr)] = table_name(d, f"{t}_{e}" if several else t, tr)
    return names


def with_shared_baseline(df: pd.DataFrame) -> pd.DataFrame:
    """The baseline pretrains nothing, so it has no budget-track cells: its own-track rows join every
    other track's table as they are (paired with each method on fraction, draw, seed and split)."""
    base = df[(df["method"] == BASELINE) & (df["track"] == "own")]
    extra = [base[(base["dataset"] == d) & (base["task"] == t) & (base["engine"] == e)].assign(track=tr)
             for d, t, e, tr in df[GROUP].dropna().drop_duplicates().itertuples(index=False) if tr != "own"]
    extra = [x for x in extra if len(x)]
    return pd.concat([df, *extra], ignore_index=True) if extra else df


def per_class_columns(part: pd.DataFrame) -> tuple[str, list[str]]:
    """The per-class metric (``metrics.<x>_per_class.<class>``) closest to the primary metric."""
    prefixes = sorted({c.rsplit(".", 1)[0] for c in part.columns
                       if c.startswith("metrics.") and "per_class" in c and c.count(".") >= 2
                       and part[c].notna().any()})
    if not prefixes:
        return "", []
    pm = str(part["primary_metric"].dropna().iloc[0]).lower() if part["primary_metric"].notna().any() else ""
    stem = pm.lstrip("m")
    prefixes.sort(key=lambda p: (stem not in p.lower(), p))
    prefix = prefixes[0]
    return prefix, [c for c in part.columns if c.startswith(prefix + ".")]


# --------------------------------------------------------------------------- outputs

_NEEDS_QUOTES = frozenset(',"\r\n')


def _csv_text(v) -> str:
    """One field as the csv module writes it (QUOTE_MINIMAL; NaN and None empty, as pandas writes them)."""
    if v is None or v != v:
        return ""
    s = v if isinstance(v, str) else str(v)
    if not _NEEDS_QUOTES.isdisjoint(s):
        s = '"' + s.replace('"', '""') + '"'
    return s


_NUMBER_TYPES = frozenset((bool, int, float))


def _column_text(col: pd.Series) -> list[str]:
    """A column's fields, each distinct value formatted once: leaderboard columns repeat the same
    few strings (method, status, packages) and numbers thousands of times."""
    kind = col.dtype.kind
    vals = col.tolist()
    if kind in "iub":
        return list(map(str, vals))
    types = set(map(type, vals))
    if kind == "f" or (len(types & _NUMBER_TYPES) <= 1 and not types & {list, dict}):
        # values of one number type (1, 1.0 and True are equal dict keys but different fields)
        text = {v: _csv_text(v) for v in set(vals)}
        return list(map(text.__getitem__, vals))
    memo: dict = {}
    out = []
    for v in vals:
        key = (v.__class__, v)
        try:
            t = memo.get(key)
            if t is None:
                t = memo[key] = _csv_text(v)
        except TypeError:  # unhashable
            t = _csv_text(v)
        out.append(t)
    return out


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    """CSV as pandas writes it (NaN and None as empty fields), assembled column by column: 10,000
    rows of ~70 fields were the largest single cost of the leaderboard build through csv.writer."""
    header = ",".join(_csv_text(str(c)) for c in df.columns)
    cols = [_column_text(df[c]) for c in df.columns]
    body = "\n".join(map(",".join, zip(*cols))) if len(df.columns) else ""
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as f:
            f.write(header + "\n")
            if body:
                f.write(body + "\n")


def _write_csv_in_child(df: pd.DataFrame, path: Path):
    """Write the run-level leaderboard in a forked child while this process builds the tables:
    formatting 10,000 wide rows is the largest cost after the reading, and it needs nothing back.
    Returns the function that waits for the child (and raises if it failed). Synchronous where
    there is no fork or a single core."""
    if not hasattr(os, "fork") or (os.cpu_count() or 1) < 2:
        _write_csv(df, path)
        return lambda: None
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid == 0:  # the child: write (atomically), report, and leave without running any cleanup
        code = 1
        try:
            _write_csv(df, path)
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


class _NoGC:
    """The loader allocates ~100 containers per file and keeps them all: Python's cyclic collector
    would re-traverse that growing heap again and again (it dominated the time at 10,000 files)."""

    def __enter__(self):
        import gc

        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self.was:
            gc.enable()


def build_results(metric_paths, out_dir, expected: list[dict] | None = None, config: dict | None = None,
                  published: str | Path | None = None, plots: bool = True, report: bool = True) -> pd.DataFrame:
    with _NoGC():
        return _build_results(metric_paths, out_dir, expected, config, published, plots, report)


def _build_results(metric_paths, out_dir, expected, config, published, plots, report) -> pd.DataFrame:
    """Write every results file from the metrics.json paths (and the expected grid, if given).

    ``config`` (the resolved config) gives the expected grid when ``expected`` is None, and the
    method order of the tables. Returns the run-level leaderboard.
    """
    out_dir = Path(out_dir)
    if expected is None and config is not None:
        expected = expected_grid(config, out_dir)
    df = load_runs(metric_paths, expected, out_dir)
    wait_board = _write_csv_in_child(df, out_dir / "leaderboard.csv")
    try:
        names = _write_tables(df, out_dir, config, published, plots, report)
        if report:
            from .report import results_readme

            write_text(out_dir / "README.md", results_readme(df, names, config, plots))
    finally:
        wait_board()
    return df


def protocol_text(config: dict | None, dataset: str) -> str:
    """Which protocol made a dataset's labelled subsets, for the report and README."""
    if not config or "split" not in config:
        return "not known (the leaderboard was built without the run's config)"
    from .splits import describe

    return describe(config["split"], dataset)


def _write_tables(df: pd.DataFrame, out_dir: Path, config, published, plots, report) -> list[str]:
    """Per (dataset, task, engine): tables, gains, draws, plots; then report.md. Returns the table names."""
    from . import report as rep

    methods_pref = list(config["methods"]) if config else None
    pub = rep.load_published(published)
    sections = []
    names = group_names(df)
    keep = [c for c in df.columns if c in FRONT or c in ("provenance.split_sha256", "path")
            or (c.startswith("metrics.") and "per_class" in c)]
    for (d, t, e, tr), part in with_shared_baseline(df[keep]).groupby(GROUP, sort=True):
        name = names[(d, t, e, tr)]
        part = part[[c for c in part.columns if c in FRONT or part[c].notna().any()]]
        long = summary_long(part, methods_pref)
        wide = summary_table(part, methods_pref, long)
        gains, pairs = gains_table(part)
        draws = draws_table(part)
        metric = part["primary_metric"].dropna()
        unit = part["primary_unit"].dropna() if "primary_unit" in part else pd.Series(dtype=object)
        # the track is named wherever the task is shown, so a budget table never reads as the own one
        info = {"dataset": d, "task": t if tr == "own" else f"{t} ({tr} track)", "engine": e, "track": tr, "name": name,
                "metric": metric.iloc[0] if len(metric) else "primary metric",
                "unit": unit.iloc[0] if len(unit) else "", "protocol": protocol_text(config, d)}
        published_rows = rep.published_for(pub, t, info["metric"])
        _write_csv(wide, out_dir / f"leaderboard_{name}.csv")
        _write_csv(gains, out_dir / f"gains_{name}.csv")
        _write_csv(draws, out_dir / f"draws_{name}.csv")
        write_text(out_dir / f"leaderboard_{name}.md", rep.markdown_table(long, info, methods_pref) + "\n")
        write_text(out_dir / f"leaderboard_{name}.tex", rep.latex_table(long, info, methods_pref))
        write_text(out_dir / "tables" / f"leaderboard_{name}.html",
                   rep.html_tables(long, gains, published_rows, part, info, methods_pref))
        figures = {}
        if plots:
            figures = make_plots(part, long, gains, pairs, info, out_dir, published_rows)
        sections.append({"info": info, "long": long, "gains": gains, "draws": draws, "part": part,
                         "figures": figures, "published": published_rows})
    if report:
        write_text(out_dir / "report.md", rep.report_markdown(sections, df, methods_pref, plots, config))
    return [s["info"]["name"] for s in sections]


def make_plots(part, long, gains, pairs, info, out_dir: Path, published_rows) -> dict[str, Path]:
    name = info["name"]
    folder = out_dir / "plots"
    figs = {"label_efficiency": folder / f"label_efficiency_{name}.png",
            "gains": folder / f"gains_{name}.png",
            "per_class": folder / f"per_class_{name}.png",
            "gain_vs_cost": folder / f"gain_vs_cost_{name}.png"}
    label_efficiency(part, info, figs["label_efficiency"], published_rows)
    gain_bars(pairs, gains, info, figs["gains"])
    per_class_heatmap(part, info, figs["per_class"])
    tag = track_tag(info.get("track", "own"))
    costs = {m: c for m, c in zip(method_order(part["method"]), pretrain_costs(
        out_dir, info["dataset"], [m if m == BASELINE else m + tag for m in method_order(part["method"])]).values())}
    gain_vs_cost(gains, costs, info, figs["gain_vs_cost"])
    return figs


# --------------------------------------------------------------------------- plots (seaborn)

def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def t_interval(values) -> tuple[float, float]:
    """seaborn ``errorbar=`` callable: the 95% Student-t interval of the mean (NaN when n < 2)."""
    s = stats.summarize(values)
    return (s.ci_low, s.ci_high)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _ylabel(info: dict) -> str:
    return f"{info['metric']} ({info['unit']})" if info.get("unit") else str(info["metric"])


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def label_efficiency(part: pd.DataFrame, info: dict, path: Path, published_rows: pd.DataFrame | None = None):
    plt, sns = _plt()
    ok = part[part["status"] == "ok"].copy()
    ok["labels (%)"] = ok["fraction"].astype(float) * 100
    fig, ax = plt.subplots(figsize=(7, 4.5))
    order = method_order(part["method"])
    if len(ok):
        sns.lineplot(data=ok, x="labels (%)", y="primary_value", hue="method", hue_order=order, marker="o",
                     errorbar=t_interval, err_style="band", ax=ax)
        ax.set_xscale("log")
        fr = sorted(ok["labels (%)"].unique())
        ax.set_xticks(fr)
        ax.set_xticklabels([f"{x:g}" for x in fr])
        ax.minorticks_off()
    else:
        _empty(ax, "no finished run yet")
    if published_rows is not None and len(published_rows) and info["dataset"] in set(published_rows["dataset"]):
        pub = published_rows[(published_rows["dataset"] == info["dataset"])
                             & (published_rows["metric"] == info["metric"])]
        for (m, src), g in pub.groupby(["method", "source_short"]):
            ax.scatter(g["fraction"].astype(float) * 100, g["value"], marker="D", facecolors="none",
                       edgecolors="0.2", label=f"published: {m} ({src})", zorder=5)
        if len(ok) or len(pub):
            ax.set_xscale("log")
    ax.set_xlabel("labelled training frames (%, log scale)")
    ax.set_ylabel(_ylabel(info))
    ax.set_title(f"Label efficiency: {info['dataset']} {info['task']} ({info['engine']} engine)\n"
                 "mean over draws and seeds, band = 95% t-interval", fontsize=11)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="method", fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path)


def gain_bars(pairs: pd.DataFrame, gains: pd.DataFrame, info: dict, path: Path):
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(pairs):
        d = pairs.copy()
        fr = sorted(d["fraction"].astype(float).unique())
        d["labels"] = pd.Categorical(d["fraction"].map(fraction_label), [fraction_label(f) for f in fr])
        sns.barplot(data=d, x="labels", y="gain", hue="method", hue_order=method_order(d["method"]),
                    errorbar=t_interval, capsize=0.1, ax=ax)
        ax.axhline(0, color="0.2", lw=0.8)
        ax.legend(title="method", fontsize=8)
    else:
        _empty(ax, f"no run paired with {BASELINE} yet")
    ax.set_xlabel("labelled training frames")
    ax.set_ylabel(f"gain over {BASELINE} ({info['unit'] + ' points' if info.get('unit') == '%' else info.get('unit', '')})")
    ax.set_title(f"Gain over {BASELINE}: {info['dataset']} {info['task']} ({info['engine']})\n"
                 "paired by draw, seed and split, error bar = 95% t-interval", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def per_class_heatmap(part: pd.DataFrame, info: dict, path: Path):
    plt, sns = _plt()
    prefix, cols = per_class_columns(part)
    ok = part[part["status"] == "ok"]
    fractions = sorted(ok["fraction"].astype(float).unique()) if len(ok) else []
    if not cols or not fractions:
        fig, ax = plt.subplots(figsize=(6, 3))
        _empty(ax, "no per-class metric in these runs")
        _save(fig, path)
        return
    classes = [c[len(prefix) + 1:] for c in cols]
    order = method_order(ok["method"])
    vals = ok[cols].apply(pd.to_numeric, errors="coerce")
    scale = 100.0 if info.get("unit") == "%" and np.nanmax(np.abs(vals.to_numpy(float)), initial=0) <= 1 else 1.0
    n = len(fractions)
    fig, axes = plt.subplots(n, 1, figsize=(max(8, 0.6 * len(classes) + 3), (0.5 * len(order) + 2.2) * n + 0.6),
                             squeeze=False)
    for ax, f in zip(axes[:, 0], fractions):
        sel = ok["fraction"] == f
        mat = (vals[sel].groupby(ok.loc[sel, "method"]).mean() * scale).reindex(order)
        mat.columns = classes
        sns.heatmap(mat, ax=ax, vmin=0, vmax=100 if scale == 100.0 else None, cmap="viridis", annot=len(classes) <= 20,
                    fmt=".0f", cbar_kws={"label": f"{prefix.split('.')[-1]} ({info.get('unit', '')})"})
        ax.set_title(f"{fraction_label(f)} labels (mean over draws and seeds; blank = class absent from val)", fontsize=10)
        ax.set_ylabel("method")
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=45)
        for lab in ax.get_xticklabels():
            lab.set_ha("right")
    fig.suptitle(f"Per-class {prefix.split('.')[-1]}: {info['dataset']} {info['task']} ({info['engine']})",
                 fontsize=12)
    fig.tight_layout()
    _save(fig, path)


def gain_vs_cost(gains: pd.DataFrame, costs: dict[str, dict], info: dict, path: Path):
    plt, sns = _plt()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    g = gains[gains["mean_gain"].notna()].copy()
    gpu = {m: c.get("gpu_hours", math.nan) for m, c in costs.items() if m != BASELINE}
    use_gpu = bool(gpu) and all(v == v and v > 0 for v in gpu.values())
    key, label = (("gpu_hours", "pretraining cost (GPU-hours)") if use_gpu
                  else ("wall_seconds", "pretraining wall-clock time (s, Snakemake benchmark)"))
    g["cost"] = g["method"].map(lambda m: costs.get(m, {}).get(key, math.nan))
    g = g[g["cost"].notna()]
    if len(g):
        g["labels"] = g["fraction"].map(fraction_label)
        sns.scatterplot(data=g, x="cost", y="mean_gain", hue="labels", style="method", s=80, ax=ax)
        for r in g.itertuples():
            if r.ci95_low == r.ci95_low:
                ax.plot([r.cost, r.cost], [r.ci95_low, r.ci95_high], color="0.6", lw=1, zorder=0)
        ax.axhline(0, color="0.2", lw=0.8)
        ax.legend(fontsize=8, title="labels / method")
    else:
        _empty(ax, "no pretraining cost or gain recorded yet")
    ax.set_xlabel(label)
    ax.set_ylabel(f"mean gain over {BASELINE} ({info.get('unit', '')})")
    ax.set_title(f"Gain against pretraining cost: {info['dataset']} {info['task']} ({info['engine']})\n"
                 "line = 95% t-interval of the gain", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m xmbench.results",
                                description="Build leaderboards, statistics, plots and report.md.")
    p.add_argument("--out-dir", required=True, help="the results folder (config results_dir)")
    p.add_argument("--config", default=None,
                   help="resolved config (results/config.resolved.json or a yaml): its grid gives the "
                        "expected cells, so cells without metrics.json become 'missing' rows")
    p.add_argument("--metrics", nargs="*", default=None,
                   help="metrics.json paths; default: the config's grid, or every metrics.json under --out-dir")
    p.add_argument("--published", default=None, help="published numbers CSV (default config/published_results.csv)")
    p.add_argument("--no-plots", action="store_true")
    a = p.parse_args(argv)

    try:
        cfg = None
        if a.config:
            from .config import check_config, load_yaml

            raw = (json.loads(Path(a.config).read_text()) if a.config.endswith(".json") else load_yaml(a.config))
            cfg = check_config(raw, a.config)
        expected = expected_grid(cfg, a.out_dir) if cfg else None
        if a.metrics is not None:
            paths = a.metrics
        elif expected:
            paths = [e["path"] for e in expected]
        else:
            paths = sorted(str(x) for x in Path(a.out_dir).glob(metrics_glob()))
        df = build_results(paths, a.out_dir, expected=expected, config=cfg, published=a.published,
                           plots=not a.no_plots)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    print(f"leaderboard: {len(df)} rows ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}) "
          f"-> {Path(a.out_dir) / 'leaderboard.csv'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
