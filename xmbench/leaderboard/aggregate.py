"""One table's numbers from its runs: method order, cells, summaries, gains over the baseline, draws.

A leaf of the leaderboard (it imports no other stage but the schema): frames in, frames out, so
every number a table, a plot or the report shows is computed here once (tests/test_results.py
checks them against scipy and by hand).
"""
from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..grid import fraction_label, table_name
from .schema import BASELINE, GROUP

def method_order(methods, preferred=None) -> list[str]:
    methods = [m for m in dict.fromkeys(methods) if m is not None]
    pref = [m for m in (preferred or []) if m in methods]
    rest = sorted(m for m in methods if m not in pref)
    order = pref + rest
    if BASELINE in order:
        order.remove(BASELINE)
        order.insert(0, BASELINE)
    return order


class _Runs:
    """One table's runs as plain lists, grouped once, each group's moments reduced once: the
    leaderboard, gains and draws tables read the same cells, and pandas' and numpy's per-call cost
    on groups of ~100 runs was most of a table's time."""

    def __init__(self, part: pd.DataFrame, baseline: str = BASELINE, paired: list[tuple] | None = None):
        n = len(part)
        cols = {c: part[c].tolist() if c in part else [None] * n
                for c in ("status", "method", "fraction", "draw", "seed", "provenance.split_sha256", "primary_value")}
        self.method, self.fraction = cols["method"], cols["fraction"]
        self.counts = Counter((f, m, st) for st, m, f in zip(cols["status"], self.method, self.fraction)
                              if st in ("failed", "missing") and m == m)
        # the ok runs as (method, fraction, draw, seed, split or "", value)
        ok = [(m, float(f), int(k), s, "" if sp is None or sp != sp else sp, v)
              for st, m, f, k, s, sp, v in zip(*cols.values()) if st == "ok"]
        keys = [r[:3] for r in ok]
        self.values: dict = {}     # (method, fraction, draw) -> the non-NaN values, in row order
        for key, r in zip(keys, ok):
            if r[5] == r[5]:
                self.values.setdefault(key, []).append(float(r[5]))
        self.shas: dict = {}
        for key, sp in dict.fromkeys(zip(keys, [r[4] for r in ok])):
            if sp and isinstance(sp, str):
                self.shas.setdefault(key, set()).add(sp)
        self.cells: dict = {}      # (fraction, method) -> draw -> values
        for (m, f, k), vals in self.values.items():
            self.cells.setdefault((f, m), {})[k] = vals
        self.paired = stats.paired_rows(ok, baseline) if paired is None else paired
        self.gains: dict = {}      # (method, fraction, draw) -> the paired gains, in row order
        self.pair_groups: dict = {}  # (method, fraction) -> [runs, values, baseline values] (paired ones)
        for m, f, k, _, _, v, b, gain in self.paired:
            g = self.pair_groups.get((m, f)) or self.pair_groups.setdefault((m, f), [0, [], []])
            g[0] += 1
            if b == b:
                self.gains.setdefault((m, f, k), []).append(gain)
                g[1].append(v)
                g[2].append(b)
        self._memo: dict = {}

    def moments(self, kind: str, key: tuple) -> stats.Moments:
        """The moments of values[key] (kind "v") or gains[key] ("g"), reduced on first use."""
        out = self._memo.get((kind, key))
        if out is None:
            out = self._memo[(kind, key)] = stats.moments((self.values if kind == "v" else self.gains).get(key, []))
        return out

    def draws_of(self, kind: str, m: str, f: float) -> dict:
        """draw -> moments of a cell's values ("v") or paired gains ("g"), the draws in first-seen order."""
        if kind == "v":
            return {k: self.moments("v", (m, f, k)) for k in self.cells.get((f, m), {})}
        return {k: self.moments("g", (m, f, k)) for m2, f2, k in self.gains if m2 == m and f2 == f}


LONG_COLUMNS = ["method", "fraction", "mean", "std", "n", "n_draws", "sd_seed", "sd_draw", "ci95_low", "ci95_high",
                "n_failed", "n_missing", "rank", "best", "rank_tested"]


def summary_long(part: pd.DataFrame, methods=None, runs: _Runs | None = None) -> pd.DataFrame:
    """(method, fraction) -> mean, std, n, the seed and draw parts of the spread, 95% CI, failed/missing
    counts, rank with ties (xmbench/stats.py: with several draws the draws' means are the replicates)."""
    runs = _Runs(part) if runs is None else runs
    methods = method_order(runs.method, methods)
    fractions = sorted({float(f) for f in runs.fraction if f is not None and f == f})
    rows = []
    for f in fractions:
        cells = {m: runs.draws_of("v", m, f) for m in methods}
        ranks = stats.rank_of({m: stats.replicates_of(g) for m, g in cells.items() if g})
        for m in methods:
            s = stats.spread_of(cells[m])
            r = ranks.get(m, {})
            rows.append((m, f, s.mean, s.sd_total, s.n, s.n_draws, s.sd_seed, s.sd_draw, s.ci_low, s.ci_high,
                         runs.counts.get((f, m, "failed"), 0), runs.counts.get((f, m, "missing"), 0),
                         r.get("rank"), bool(r.get("best", False)), r.get("tested")))
    return pd.DataFrame(rows, columns=LONG_COLUMNS)


def cell_text(mean, std, n, n_failed=0, n_missing=0, digits=2) -> str:
    if n == 0 or mean is None or (isinstance(mean, float) and math.isnan(mean)):
        parts = [f"{n_failed} failed" if n_failed else "", f"{n_missing} missing" if n_missing else ""]
        return " ".join(p for p in parts if p) or "–"
    text = f"{mean:.{digits}f} ± {std:.{digits}f}" if n >= 2 else f"{mean:.{digits}f}"
    return text


def _as_int(a: np.ndarray) -> np.ndarray:
    """pd.Series(a).fillna(0).astype(int), without the Series where the counts are ints already."""
    return a if a.dtype == np.dtype(int) else pd.Series(a).fillna(0).astype(int).to_numpy()


def summary_table(part: pd.DataFrame, methods=None, long: pd.DataFrame | None = None) -> pd.DataFrame:
    """The wide CSV: one row per method; per fraction the cell text, n, and the numbers behind it."""
    long = summary_long(part, methods) if long is None else long
    order = method_order(long["method"].tolist(), methods)
    index = {(m, f): i for i, (m, f) in enumerate(zip(long["method"].tolist(), long["fraction"].tolist()))}
    col = {c: long[c].to_numpy() for c in ("mean", "std", "n", "ci95_low", "ci95_high", "rank", "n_failed",
                                            "n_missing", "n_draws", "sd_seed", "sd_draw")}
    out: dict = {"method": order}
    for f in sorted(long["fraction"].unique()):
        rows = [index[(m, f)] for m in order]  # summary_long has a row for every (method, fraction)
        take = {c: v[rows] for c, v in col.items()}
        lab = fraction_label(f)
        out[lab] = [cell_text(*args) for args in zip(take["mean"], take["std"], take["n"], take["n_failed"],
                                                     take["n_missing"])]
        out[f"n@{lab}"] = _as_int(take["n"])
        for c in ("mean", "std", "sd_seed", "sd_draw", "ci95_low", "ci95_high", "rank"):
            out[f"{c}@{lab}"] = take[c]
        for c in ("n_draws", "n_failed", "n_missing"):
            out[f"{c}@{lab}"] = _as_int(take[c])
    return pd.DataFrame(out)


def _mean(values: list) -> float:
    return float(np.mean(values)) if values else math.nan


GAIN_COLUMNS = ["method", "fraction", "n_pairs", "n_draws", "mean_gain", "std_gain", "sd_gain_seed", "sd_gain_draw",
                "ci95_low", "ci95_high", "p_value", "p_holm", "significant_holm", "baseline_mean", "method_mean",
                "relative_gain_pct", "unpaired_runs", "note"]


def gains_table(part: pd.DataFrame, baseline: str = BASELINE, paired: list[tuple] | None = None,
                runs: _Runs | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gain over the baseline, paired on (fraction, draw, seed, split sha256); Holm over the family.

    With several draws the interval and the paired test run over the draws' mean gains (stats.py);
    sd_gain_seed and sd_gain_draw split the gain's spread like the values'. Returns (table, pairs):
    the table per (method, fraction) and the paired differences behind it. Plain Python over the
    columns: pandas' merge and groupby cost more than the arithmetic here. ``paired``: stats.paired_rows'
    rows, where the caller has them already; ``runs``: the table's _Runs, where it has those.
    """
    runs = _Runs(part, baseline, paired) if runs is None else runs
    rows = []
    for (m, f) in sorted(runs.pair_groups):
        n_runs, values, base = runs.pair_groups[(m, f)]
        by_draw = runs.draws_of("g", m, f)
        spread = stats.spread_of(by_draw)
        base_mean = _mean(base)
        note = []
        if spread.n == 1:
            note.append("n=1: no CI or p-value")
        if spread.n_draws >= 2:
            note.append(f"CI and p over the {spread.n_draws} draws' mean gains")
        if spread.n == 0:
            note.append(f"no {baseline} run with the same draw, seed and split")
        unpaired = n_runs - len(values)
        if unpaired:
            note.append(f"{unpaired} run(s) without a {baseline} partner (draw/seed/split)")
        rows.append((m, float(f), spread.n, spread.n_draws, spread.mean, spread.sd_total, spread.sd_seed,
                     spread.sd_draw, spread.ci_low, spread.ci_high, stats.paired_of(stats.replicates_of(by_draw)),
                     base_mean, _mean(values),
                     100 * spread.mean / base_mean if base_mean and not math.isnan(base_mean) else math.nan,
                     unpaired, "; ".join(note)))
    rows = [r[:11] + (p, None if math.isnan(p) else bool(p < stats.ALPHA)) + r[11:]
            for r, p in zip(rows, stats.holm([r[10] for r in rows]))]
    table = pd.DataFrame(rows, columns=GAIN_COLUMNS)
    sig = GAIN_COLUMNS.index("significant_holm")
    table.isetitem(sig, np.array([r[sig] for r in rows], dtype=object))  # bools and None, never a bool column
    if not rows:
        table["p_holm"] = table["p_holm"].astype(float)  # pandas' dtype for an empty list of p-values
    pairs = pd.DataFrame([row for row in runs.paired if row[6] == row[6]],
                         columns=["method", "fraction", "draw", "seed", "_split", "primary_value", "baseline", "gain"])
    return table, pairs


DRAW_COLUMNS = ["method", "fraction", "draw", "split_sha256", "n", "mean", "std", "ci95_low", "ci95_high",
                "n_pairs", "mean_gain", "std_gain", "gain_ci95_low", "gain_ci95_high", "p_value"]


def draws_table(part: pd.DataFrame, baseline: str = BASELINE, paired: list[tuple] | None = None,
                runs: _Runs | None = None) -> pd.DataFrame:
    """One row per (method, fraction, draw): the value over seeds on that labelled subset, and the gain
    over the baseline paired by seed on it (p: paired t-test over seeds, no multiplicity correction:
    these rows show where the pooled numbers of the leaderboard and gains tables come from)."""
    runs = _Runs(part, baseline, paired) if runs is None else runs
    order = {m: i for i, m in enumerate(method_order(runs.method))}
    nan = math.nan
    rows = []
    for key in sorted(runs.values.keys() | runs.gains.keys(), key=lambda t: (t[1], order.get(t[0], 0), t[2])):
        m, f, k = key
        s = stats.summary_of(runs.moments("v", key))
        gm = runs.moments("g", key)
        g = stats.summary_of(gm) if m != baseline else None
        rows.append((m, f, k, ";".join(sorted(runs.shas.get(key, ()))), s.n, s.mean, s.std, s.ci_low, s.ci_high,
                     *((g.n, g.mean, g.std, g.ci_low, g.ci_high, stats.paired_of(gm)) if g else
                       (0, nan, nan, nan, nan, nan))))
    return pd.DataFrame(rows, columns=DRAW_COLUMNS)


def table_rows(df: pd.DataFrame) -> dict[tuple, list[int]]:
    """Each table's (dataset, task, engine, track) -> its runs' row positions in ``df``, the tables in
    sorted order; a run with a field of the key missing is in no table. The baseline pretrains
    nothing, so it has no budget-track cells: its own-track rows join every other track's table as
    they are (paired with each method on fraction, draw, seed and split)."""
    rows: dict = {}
    for i, k in enumerate(zip(*(df[c].tolist() for c in GROUP))):
        rows.setdefault(k, []).append(i)
    rows = {k: v for k, v in rows.items() if not any(pd.isna(x) for x in k)}
    method = df["method"].tolist()
    base = {k[:3]: [i for i in v if method[i] == BASELINE] for k, v in rows.items() if k[3] == "own"}
    return {k: v if k[3] == "own" else v + base.get(k[:3], []) for k, v in sorted(rows.items())}


def group_names(df: pd.DataFrame) -> dict[tuple, str]:
    """(dataset, task, engine, track) -> file stem: grid.table_name (<dataset>_<task>, _budget for the
    budget track), plus _<engine> when a task has several."""
    return names_of(table_rows(df))


def names_of(groups) -> dict[tuple, str]:
    """group_names of the tables' (dataset, task, engine, track) keys, where the caller has them."""
    engines: dict = {}
    for d, t, e, _ in groups:
        engines.setdefault((d, t), set()).add(e)
    return {(d, t, e, tr): table_name(d, f"{t}_{e}" if len(engines[(d, t)]) > 1 else t, tr) for d, t, e, tr in groups}


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


def pretrain_costs_of(part: pd.DataFrame) -> dict[str, dict]:
    """Each method's pretraining cost from the frame's ``pretrain.*`` columns (load.py put them there
    once; one value per method of a table, 0 for the baseline, NaN where nothing was recorded)."""
    out = {}
    for m in method_order(part["method"]):
        rows = part[part["method"] == m]
        out[m] = {k: float(rows[f"pretrain.{k}"].iloc[0]) if f"pretrain.{k}" in rows and len(rows) else math.nan
                  for k in ("wall_seconds", "gpu_hours")}
    return out


@dataclass
class Table:
    """One (dataset, task, engine, track) table: its runs, every number computed from them, and what
    it is shown with. ``info`` names it (dataset, task, engine, track, name, metric, unit, protocol);
    ``methods`` orders the rows and gives each method its colour in every plot; ``figures`` (plot kind
    -> PNG path) is filled by the plots."""
    info: dict
    part: pd.DataFrame
    long: pd.DataFrame
    wide: pd.DataFrame
    gains: pd.DataFrame
    pairs: pd.DataFrame
    draws: pd.DataFrame
    published: pd.DataFrame
    methods: list[str] = field(default_factory=list)  # the rows' order, the baseline first
    figures: dict[str, Path] = field(default_factory=dict)


def table(part: pd.DataFrame, info: dict, methods=None, published: pd.DataFrame | None = None) -> Table:
    runs = _Runs(part)
    long = summary_long(part, methods, runs)
    gains, pairs = gains_table(part, runs=runs)
    return Table(info, part, long, summary_table(part, methods, long), gains, pairs, draws_table(part, runs=runs),
                 published if published is not None else pd.DataFrame(), method_order(runs.method, methods))
