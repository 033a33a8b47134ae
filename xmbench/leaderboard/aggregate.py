"""One table's numbers from its runs: method order, cells, summaries, gains over the baseline, draws.

A leaf of the leaderboard (it imports no other stage but the schema): frames in, frames out, so
every number a table, a plot or the report shows is computed here once (tests/test_results.py
checks them against scipy and by hand).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .. import stats
from ..grid import fraction_label, table_name
from .schema import BASELINE, GROUP

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


def gains_table(part: pd.DataFrame, baseline: str = BASELINE,
                paired: list[tuple] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Gain over the baseline, paired on (fraction, draw, seed, split sha256); Holm over the family.

    With several draws the interval and the paired test run over the draws' mean gains (stats.py);
    sd_gain_seed and sd_gain_draw split the gain's spread like the values'. Returns (table, pairs):
    the table per (method, fraction) and the paired differences behind it. Plain Python over the
    columns: pandas' merge and groupby cost more than the arithmetic here. ``paired``: _paired's
    rows, where the caller has them already.
    """
    groups: dict = {}
    pair_rows = []
    for m, f, k, s, sp, v, b, gain in (_paired(part, baseline) if paired is None else paired):
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


def draws_table(part: pd.DataFrame, baseline: str = BASELINE, paired: list[tuple] | None = None) -> pd.DataFrame:
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
    for m, f, k, s, sp, v, b, gain in (_paired(part, baseline) if paired is None else paired):
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
    long = summary_long(part, methods)
    paired = _paired(part, BASELINE)
    gains, pairs = gains_table(part, paired=paired)
    return Table(info, part, long, summary_table(part, methods, long), gains, pairs,
                 draws_table(part, paired=paired),
                 published if published is not None else pd.DataFrame(), method_order(part["method"], methods))
