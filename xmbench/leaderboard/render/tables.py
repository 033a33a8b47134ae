"""One table as Markdown and LaTeX (and the cell helpers the HTML shares): method x fraction,
the spread, the per-draw rows, the gains, the published numbers, the failed and missing runs."""
from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd

from ... import stats
from ...grid import fraction_label
from ..aggregate import cell_text, method_order
from .notes import GAIN_NOTE, RANK_NOTE, SPREAD_NOTE

def is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def rows(frame: pd.DataFrame, columns=None, keep=None) -> list[SimpleNamespace]:
    """The frame's rows (those whose position ``keep`` lists, default all) with an attribute per column,
    the values itertuples gives: without its namedtuple class per call, which cost more than the
    rendering of a small table."""
    columns = list(frame.columns) if columns is None else columns
    data = [frame[c].tolist() for c in columns]
    if keep is not None:
        data = [[col[i] for i in keep] for col in data]
    return [SimpleNamespace(**dict(zip(columns, values))) for values in zip(*data)]


def table_grid(long: pd.DataFrame, methods=None):
    order = method_order(long["method"].tolist(), methods)
    fractions = sorted(long["fraction"].unique())
    cells = {(r.method, r.fraction): r for r in rows(long)}
    return order, fractions, cells


def shown(method: str, info: dict, key: bool = True) -> str:
    """A method as a reader sees it: its display_name, with the folder name (the CSVs' key) beside
    it where they differ and ``key``."""
    name = (info.get("display_names") or {}).get(method, method)
    return f"{name} ({method})" if key and name != method else name


def cell_parts(r) -> tuple[str, bool, str]:
    """(value text, bold, annotation) of one table cell."""
    txt = cell_text(r.mean, r.std, r.n, r.n_failed, r.n_missing)
    if r.n == 0:
        return txt, False, ""
    draws = getattr(r, "n_draws", 1)
    notes = [f"n={r.n}" + (f" over {draws} draws" if draws and draws > 1 else "")]
    if r.n_failed:
        notes.append(f"{r.n_failed} failed")
    if r.n_missing:
        notes.append(f"{r.n_missing} missing")
    rank = "" if is_nan(r.rank) else f"#{int(r.rank)}" + ("" if r.rank_tested else "†")
    return txt, bool(r.best), ", ".join(notes) + (f"; {rank}" if rank else "")


def title(info: dict) -> str:
    unit = f" ({info['unit']})" if info.get("unit") else ""
    return f"{info['dataset']} · {info['task']} · {info['engine']} engine: {info['metric']}{unit}"


def several_draws(long: pd.DataFrame) -> bool:
    return "n_draws" in long and any(d is not None and d > 1 for d in long["n_draws"].tolist())


def fmt(x, digits=2, signed=False) -> str:
    if is_nan(x):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def p_text(x) -> str:
    if is_nan(x):
        return "n/a"
    return "<0.001" if x < 1e-3 else f"{x:.3f}"


GAIN_SHOWN = ["method", "fraction", "n_pairs", "mean_gain", "ci95_low", "ci95_high", "p_holm", "note"]


def problems(part: pd.DataFrame) -> list[SimpleNamespace]:
    """The failed and missing runs (method, fraction, draw, seed, status, reason), in the part's order."""
    bad = np.flatnonzero(part["status"].to_numpy() != "ok").tolist()
    return rows(part, ["method", "fraction", "draw", "seed", "status", "reason"], bad) if bad else []


def markdown_table(long: pd.DataFrame, info: dict, methods=None) -> str:
    order, fractions, cells = table_grid(long, methods)
    head = "| method | " + " | ".join(f"{fraction_label(f)} labels" for f in fractions) + " |"
    lines = [f"**{title(info)}**, mean ± std over draws and seeds", "", head,
             "|---|" + "---:|" * len(fractions)]
    for m in order:
        row = []
        for f in fractions:
            r = cells.get((m, f))
            if r is None:
                row.append("–")
                continue
            txt, bold, ann = cell_parts(r)
            txt = f"**{txt}**" if bold else txt
            row.append(f"{txt} <sub>{ann}</sub>" if ann else txt)
        lines.append(f"| {shown(m, info)} | " + " | ".join(row) + " |")
    lines += ["", RANK_NOTE]
    if info.get("protocol"):
        lines += ["", f"Labelled subsets: {info['protocol']}."]
    return "\n".join(lines)


def spread_markdown(long: pd.DataFrame, methods=None) -> str:
    """sd seed / sd draw per cell: the two sources of spread, side by side."""
    order, fractions, cells = table_grid(long, methods)
    lines = ["| method | " + " | ".join(f"{fraction_label(f)}: sd seed / sd draw (draws)" for f in fractions) + " |",
             "|---|" + "---:|" * len(fractions)]
    for m in order:
        row = []
        for f in fractions:
            r = cells.get((m, f))
            row.append("–" if r is None or r.n == 0 else
                       f"{fmt(r.sd_seed)} / {fmt(r.sd_draw)} ({int(r.n_draws)})")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines + ["", SPREAD_NOTE])


def draws_markdown(draws: pd.DataFrame) -> str:
    """The per-draw rows behind the pooled numbers."""
    if not len(draws):
        return "_No finished run yet._"
    lines = ["| method | labels | draw | n | mean ± std over seeds | gain over scratch (pairs) | p (paired, uncorrected) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows(draws):
        val = "–" if r.n == 0 else (f"{r.mean:.2f} ± {r.std:.2f}" if r.n >= 2 else f"{r.mean:.2f}")
        gain = "" if is_nan(r.mean_gain) else f"{fmt(r.mean_gain, signed=True)} ({r.n_pairs})"
        lines.append(f"| {r.method} | {fraction_label(r.fraction)} | {r.draw} | {r.n} | {val} | {gain} | "
                     f"{'' if is_nan(r.p_value) else p_text(r.p_value)} |")
    return "\n".join(lines)


def gains_markdown(gains: pd.DataFrame) -> str:
    if not len(gains):
        return "_No run paired with scratch yet._"
    lines = ["| method | labels | pairs | gain | 95% CI | p (Holm) | note |", "|---|---:|---:|---:|---|---:|---|"]
    for r in rows(gains, GAIN_SHOWN + ["significant_holm"]):
        ci = "n/a" if is_nan(r.ci95_low) else f"[{fmt(r.ci95_low, signed=True)}, {fmt(r.ci95_high, signed=True)}]"
        sig = " *" if r.significant_holm is True else ""
        lines.append(f"| {r.method} | {fraction_label(r.fraction)} | {r.n_pairs} | {fmt(r.mean_gain, signed=True)} "
                     f"| {ci} | {p_text(r.p_holm)}{sig} | {r.note or ''} |")
    return "\n".join(lines + ["", GAIN_NOTE + " `*`: p (Holm) < 0.05."])


def published_markdown(pub: pd.DataFrame) -> str:
    if not len(pub):
        return "_No published figure for this task in config/published_results.csv._"
    lines = ["| method (published) | dataset | protocol | metric | labels | value | source | note |",
             "|---|---|---|---|---:|---:|---|---|"]
    for r in rows(pub):
        lines.append(f"| {r.method} | {r.dataset} | {r.protocol} | {r.metric} | {fraction_label(r.fraction)} "
                     f"| {r.value:g} | {r.source} | {r.note or ''} |")
    return "\n".join(lines)


def problems_markdown(part: pd.DataFrame) -> str:
    bad = problems(part)
    if not len(bad):
        return ""
    lines = ["| method | labels | draw | seed | status | reason |", "|---|---:|---:|---:|---|---|"]
    for r in bad:
        reason = str(r.reason or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.method} | {fraction_label(r.fraction)} | {r.draw} | {r.seed} | **{r.status}** | {reason} |")
    return "\n".join(lines)


def _tex(s) -> str:
    s = str(s).replace("\\", "\x00")
    for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"),
                 ("}", r"\}")):
        s = s.replace(a, b)
    return s.replace("\x00", r"\textbackslash{}")


def latex_table(long: pd.DataFrame, info: dict, methods=None) -> str:
    order, fractions, cells = table_grid(long, methods)
    lines = [r"% generated by xmbench.leaderboard; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * len(fractions) + "}", r"\toprule",
             "Method & " + " & ".join(_tex(fraction_label(f)) for f in fractions) + r" \\", r"\midrule"]
    for m in order:
        row = []
        for f in fractions:
            r = cells.get((m, f))
            if r is None or r.n == 0:
                row.append("--" if r is None else _tex(cell_parts(r)[0]))
                continue
            txt = f"{r.mean:.2f}" + (f" $\\pm$ {r.std:.2f}" if r.n >= 2 else "")
            txt = rf"\textbf{{{txt}}}" if r.best else txt
            dag = r"$^\dagger$" if not r.rank_tested else ""
            row.append(txt + rf" {{\scriptsize ({r.n}){dag}}}")
        lines.append(_tex(shown(m, info, key=False)) + " & " + " & ".join(row) + r" \\")
    cap = (f"{_tex(info['dataset'])} {_tex(info['task'])} ({_tex(info['engine'])} engine): "
           f"{_tex(str(info['metric']))} ({_tex(info.get('unit') or '')}), mean $\\pm$ std over draws and seeds (n). "
           f"Bold: best and statistically tied (two-sided Welch t-test, $\\alpha={stats.ALPHA}$); "
           r"$^\dagger$: fewer than two seeds, ranked by the mean.")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{cap}}}",
              rf"\label{{tab:{info['name'].replace('_', '-')}}}", r"\end{table}", ""]
    return "\n".join(lines)
