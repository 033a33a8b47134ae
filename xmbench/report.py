"""Rendering of the results: Markdown, LaTeX and HTML tables, published numbers, report.md.

Everything here formats numbers that xmbench.results / xmbench.stats computed; nothing is
recomputed. Published numbers come from config/published_results.csv, are always labelled as
published with their source, and never enter our statistics.
"""
from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from . import stats
from .grid import fraction_label

REPO = Path(__file__).resolve().parent.parent
PUBLISHED_CSV = REPO / "config" / "published_results.csv"
PUBLISHED_COLUMNS = ["dataset", "task", "protocol", "metric", "unit", "method", "fraction", "value",
                     "source_short", "source", "note"]

RANK_NOTE = (f"Bold: best in its column and every method statistically tied with it. Rank = 1 + the "
             f"number of methods significantly better (two-sided Welch t-test over seeds, or over the "
             f"draws' means where a cell has several label draws; alpha = {stats.ALPHA}); tied methods "
             f"share the rank. † = a comparison had fewer than two replicates on a side, so that pair was "
             f"ranked by its means alone (no test).")
GAIN_NOTE = ("Gain = method − scratch, paired on (fraction, draw, seed, split sha256). CI: 95% Student-t "
             "interval over the pairs, or over the draws' mean gains where there are several draws (n=1: "
             "no interval, shown as n/a). p: two-sided paired t-test on the same replicates, "
             "Holm-corrected over every (method, fraction) of the table.")
SPREAD_NOTE = ("Spread over draws and seeds (one-way random-effects ANOVA, draw as the factor): sd seed = "
               "the pooled sd of seeds within a draw (what a new seed moves), sd draw = the draw's variance "
               "component (what a new labelled subset moves, beyond the seeds). n/a where a cell has one "
               "draw, or one seed per draw.")
TUNING_RULE = ("No tuning on what is scored: nothing selects a checkpoint, a learning rate or an epoch on the "
               "val split these tables report. Every recipe (downstream/<task>/task.yaml) trains a fixed "
               "schedule that depends on the dataset's profile and the fraction only, and its final weights "
               "are scored once. A recipe that needs tuning must tune on the `tune` split (split.tune: train "
               "scenes held out by hash, never labelled, never val; xmbench/tuning.py refuses any val frame).")


def _isnan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


# --------------------------------------------------------------------------- published numbers

def load_published(path: str | Path | None = None) -> pd.DataFrame:
    path = Path(path) if path else PUBLISHED_CSV
    if not path.is_file():
        return pd.DataFrame(columns=PUBLISHED_COLUMNS)
    pub = pd.read_csv(path)
    missing = [c for c in PUBLISHED_COLUMNS if c not in pub.columns and c != "note"]
    if missing:
        from .errors import BenchError

        raise BenchError(f"{path}: missing column(s) {missing} (expected {PUBLISHED_COLUMNS})")
    if "note" not in pub.columns:
        pub["note"] = ""
    pub["note"] = pub["note"].fillna("")
    return pub


def published_for(pub: pd.DataFrame, task: str, metric: str | None = None) -> pd.DataFrame:
    """Published rows of a task, the primary metric's first."""
    rows = pub[pub["task"] == task].copy()
    rows["_primary"] = rows["metric"] != metric
    return rows.sort_values(["_primary", "metric", "fraction", "method"]).drop(columns="_primary")


# --------------------------------------------------------------------------- tables

def _grid(long: pd.DataFrame, methods=None):
    from .results import method_order

    order = method_order(long["method"], methods)
    fractions = sorted(long["fraction"].unique())
    cells = {(r.method, r.fraction): r for r in long.itertuples()}
    return order, fractions, cells


def _cell_parts(r) -> tuple[str, bool, str]:
    """(value text, bold, annotation) of one table cell."""
    from .results import cell_text

    txt = cell_text(r.mean, r.std, r.n, r.n_failed, r.n_missing)
    if r.n == 0:
        return txt, False, ""
    draws = getattr(r, "n_draws", 1)
    notes = [f"n={r.n}" + (f" over {draws} draws" if draws and draws > 1 else "")]
    if r.n_failed:
        notes.append(f"{r.n_failed} failed")
    if r.n_missing:
        notes.append(f"{r.n_missing} missing")
    rank = "" if _isnan(r.rank) else f"#{int(r.rank)}" + ("" if r.rank_tested else "†")
    return txt, bool(r.best), ", ".join(notes) + (f"; {rank}" if rank else "")


def _title(info: dict) -> str:
    unit = f" ({info['unit']})" if info.get("unit") else ""
    return f"{info['dataset']} · {info['task']} · {info['engine']} engine: {info['metric']}{unit}"


def markdown_table(long: pd.DataFrame, info: dict, methods=None) -> str:
    order, fractions, cells = _grid(long, methods)
    head = "| method | " + " | ".join(f"{fraction_label(f)} labels" for f in fractions) + " |"
    lines = [f"**{_title(info)}**, mean ± std over draws and seeds", "", head,
             "|---|" + "---:|" * len(fractions)]
    for m in order:
        row = []
        for f in fractions:
            r = cells.get((m, f))
            if r is None:
                row.append("–")
                continue
            txt, bold, ann = _cell_parts(r)
            txt = f"**{txt}**" if bold else txt
            row.append(f"{txt} <sub>{ann}</sub>" if ann else txt)
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    lines += ["", RANK_NOTE]
    if info.get("protocol"):
        lines += ["", f"Labelled subsets: {info['protocol']}."]
    return "\n".join(lines)


def _several_draws(long: pd.DataFrame) -> bool:
    return "n_draws" in long and bool((long["n_draws"].fillna(0) > 1).any())


def spread_markdown(long: pd.DataFrame, methods=None) -> str:
    """sd seed / sd draw per cell: the two sources of spread, side by side."""
    order, fractions, cells = _grid(long, methods)
    lines = ["| method | " + " | ".join(f"{fraction_label(f)}: sd seed / sd draw (draws)" for f in fractions) + " |",
             "|---|" + "---:|" * len(fractions)]
    for m in order:
        row = []
        for f in fractions:
            r = cells.get((m, f))
            row.append("–" if r is None or r.n == 0 else
                       f"{_fmt(r.sd_seed)} / {_fmt(r.sd_draw)} ({int(r.n_draws)})")
        lines.append(f"| {m} | " + " | ".join(row) + " |")
    return "\n".join(lines + ["", SPREAD_NOTE])


def draws_markdown(draws: pd.DataFrame) -> str:
    """The per-draw rows behind the pooled numbers."""
    if not len(draws):
        return "_No finished run yet._"
    lines = ["| method | labels | draw | n | mean ± std over seeds | gain over scratch (pairs) | p (paired, uncorrected) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in draws.itertuples():
        val = "–" if r.n == 0 else (f"{r.mean:.2f} ± {r.std:.2f}" if r.n >= 2 else f"{r.mean:.2f}")
        gain = "" if _isnan(r.mean_gain) else f"{_fmt(r.mean_gain, signed=True)} ({r.n_pairs})"
        lines.append(f"| {r.method} | {fraction_label(r.fraction)} | {r.draw} | {r.n} | {val} | {gain} | "
                     f"{'' if _isnan(r.p_value) else _p(r.p_value)} |")
    return "\n".join(lines)


def _tex(s) -> str:
    s = str(s).replace("\\", "\x00")
    for a, b in (("&", r"\&"), ("%", r"\%"), ("_", r"\_"), ("#", r"\#"), ("$", r"\$"), ("{", r"\{"),
                 ("}", r"\}")):
        s = s.replace(a, b)
    return s.replace("\x00", r"\textbackslash{}")


def latex_table(long: pd.DataFrame, info: dict, methods=None) -> str:
    order, fractions, cells = _grid(long, methods)
    lines = [r"% generated by xmbench.report; needs \usepackage{booktabs}",
             r"\begin{table}[t]", r"\centering", r"\begin{tabular}{l" + "r" * len(fractions) + "}", r"\toprule",
             "Method & " + " & ".join(_tex(fraction_label(f)) for f in fractions) + r" \\", r"\midrule"]
    for m in order:
        row = []
        for f in fractions:
            r = cells.get((m, f))
            if r is None or r.n == 0:
                row.append("--" if r is None else _tex(_cell_parts(r)[0]))
                continue
            txt = f"{r.mean:.2f}" + (f" $\\pm$ {r.std:.2f}" if r.n >= 2 else "")
            txt = rf"\textbf{{{txt}}}" if r.best else txt
            dag = r"$^\dagger$" if not r.rank_tested else ""
            row.append(txt + rf" {{\scriptsize ({r.n}){dag}}}")
        lines.append(_tex(m) + " & " + " & ".join(row) + r" \\")
    cap = (f"{_tex(info['dataset'])} {_tex(info['task'])} ({_tex(info['engine'])} engine): "
           f"{_tex(str(info['metric']))} ({_tex(info.get('unit') or '')}), mean $\\pm$ std over draws and seeds (n). "
           f"Bold: best and statistically tied (two-sided Welch t-test, $\\alpha={stats.ALPHA}$); "
           r"$^\dagger$: fewer than two seeds, ranked by the mean.")
    lines += [r"\bottomrule", r"\end{tabular}", rf"\caption{{{cap}}}",
              rf"\label{{tab:{info['name'].replace('_', '-')}}}", r"\end{table}", ""]
    return "\n".join(lines)


def _fmt(x, digits=2, signed=False) -> str:
    if _isnan(x):
        return "n/a"
    return f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}"


def _p(x) -> str:
    if _isnan(x):
        return "n/a"
    return "<0.001" if x < 1e-3 else f"{x:.3f}"


def gains_markdown(gains: pd.DataFrame) -> str:
    if not len(gains):
        return "_No run paired with scratch yet._"
    lines = ["| method | labels | pairs | gain | 95% CI | p (Holm) | note |", "|---|---:|---:|---:|---|---:|---|"]
    for r in gains.itertuples():
        ci = "n/a" if _isnan(r.ci95_low) else f"[{_fmt(r.ci95_low, signed=True)}, {_fmt(r.ci95_high, signed=True)}]"
        sig = " *" if r.significant_holm is True else ""
        lines.append(f"| {r.method} | {fraction_label(r.fraction)} | {r.n_pairs} | {_fmt(r.mean_gain, signed=True)} "
                     f"| {ci} | {_p(r.p_holm)}{sig} | {r.note or ''} |")
    return "\n".join(lines + ["", GAIN_NOTE + " `*`: p (Holm) < 0.05."])


def published_markdown(pub: pd.DataFrame) -> str:
    if not len(pub):
        return "_No published figure for this task in config/published_results.csv._"
    lines = ["| method (published) | dataset | protocol | metric | labels | value | source | note |",
             "|---|---|---|---|---:|---:|---|---|"]
    for r in pub.itertuples():
        lines.append(f"| {r.method} | {r.dataset} | {r.protocol} | {r.metric} | {fraction_label(r.fraction)} "
                     f"| {r.value:g} | {r.source} | {r.note or ''} |")
    return "\n".join(lines)


def problems(part: pd.DataFrame) -> pd.DataFrame:
    return part[part["status"] != "ok"][["method", "fraction", "draw", "seed", "status", "reason"]]


def problems_markdown(part: pd.DataFrame) -> str:
    bad = problems(part)
    if not len(bad):
        return ""
    lines = ["| method | labels | draw | seed | status | reason |", "|---|---:|---:|---:|---|---|"]
    for r in bad.itertuples():
        reason = str(r.reason or "").replace("|", "\\|").replace("\n", " ")
        lines.append(f"| {r.method} | {fraction_label(r.fraction)} | {r.draw} | {r.seed} | **{r.status}** | {reason} |")
    return "\n".join(lines)


# --------------------------------------------------------------------------- HTML (for snakemake --report)

_CSS = """body{font-family:system-ui,sans-serif;margin:1em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.2em}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}
th:first-child,td:first-child{text-align:left}th{background:#f2f2f2}.best{font-weight:bold}
.ann{color:#777;font-size:.8em}.pub{background:#fff8e6}.bad{color:#a00}caption{text-align:left;font-weight:bold}
p.note{color:#555;font-size:.9em;max-width:60em}"""


def html_tables(long: pd.DataFrame, gains: pd.DataFrame, pub: pd.DataFrame, part: pd.DataFrame, info: dict,
                methods=None) -> str:
    e = html.escape
    order, fractions, cells = _grid(long, methods)
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{e(info['name'])}</title>"
           f"<style>{_CSS}</style></head><body>",
           f"<table id='ours'><caption>Ours: {e(_title(info))}, mean ± std over draws and seeds</caption><tr><th>method</th>"
           + "".join(f"<th>{fraction_label(f)} labels</th>" for f in fractions) + "</tr>"]
    for m in order:
        tds = []
        for f in fractions:
            r = cells.get((m, f))
            if r is None:
                tds.append("<td>–</td>")
                continue
            txt, bold, ann = _cell_parts(r)
            cls = " class='best'" if bold else (" class='bad'" if r.n == 0 else "")
            tds.append(f"<td{cls}>{e(txt)} <span class='ann'>{e(ann)}</span></td>")
        out.append(f"<tr><td>{e(m)}</td>{''.join(tds)}</tr>")
    out.append(f"</table><p class='note'>{e(RANK_NOTE)}</p>")
    if info.get("protocol"):
        out.append(f"<p class='note' id='protocol'>Labelled subsets: {e(info['protocol'])}.</p>")
    if _several_draws(long):
        out.append("<table id='spread'><caption>Spread: seed against draw</caption><tr><th>method</th>"
                   + "".join(f"<th>{fraction_label(f)}: sd seed / sd draw (draws)</th>" for f in fractions) + "</tr>")
        for m in order:
            tds = "".join("<td>–</td>" if (r := cells.get((m, f))) is None or r.n == 0 else
                          f"<td>{_fmt(r.sd_seed)} / {_fmt(r.sd_draw)} ({int(r.n_draws)})</td>" for f in fractions)
            out.append(f"<tr><td>{e(m)}</td>{tds}</tr>")
        out.append(f"</table><p class='note'>{e(SPREAD_NOTE)}</p>")
    if len(pub):
        out.append("<table id='published' class='pub'><caption>Published (not re-run here; never part of our "
                   "statistics)</caption><tr><th>method</th><th>dataset</th><th>protocol</th><th>metric</th>"
                   "<th>labels</th><th>value</th><th>source</th><th>note</th></tr>")
        for r in pub.itertuples():
            out.append(f"<tr class='pub'><td>{e(str(r.method))} (published)</td><td>{e(str(r.dataset))}</td>"
                       f"<td>{e(str(r.protocol))}</td><td>{e(str(r.metric))}</td><td>{fraction_label(r.fraction)}</td>"
                       f"<td>{r.value:g}</td><td>{e(str(r.source))}</td><td>{e(str(r.note or ''))}</td></tr>")
        out.append("</table>")
    out.append("<table id='gains'><caption>Gain over scratch</caption><tr><th>method</th><th>labels</th>"
               "<th>pairs</th><th>gain</th><th>95% CI</th><th>p (Holm)</th><th>note</th></tr>")
    for r in gains.itertuples():
        ci = "n/a" if _isnan(r.ci95_low) else f"[{_fmt(r.ci95_low, signed=True)}, {_fmt(r.ci95_high, signed=True)}]"
        out.append(f"<tr><td>{e(r.method)}</td><td>{fraction_label(r.fraction)}</td><td>{r.n_pairs}</td>"
                   f"<td>{_fmt(r.mean_gain, signed=True)}</td><td>{ci}</td><td>{_p(r.p_holm)}</td>"
                   f"<td>{e(r.note or '')}</td></tr>")
    out.append(f"</table><p class='note'>{e(GAIN_NOTE)}</p>")
    bad = problems(part)
    if len(bad):
        out.append("<table id='problems'><caption>Failed and missing runs</caption><tr><th>method</th>"
                   "<th>labels</th><th>draw</th><th>seed</th><th>status</th><th>reason</th></tr>")
        for r in bad.itertuples():
            out.append(f"<tr class='bad'><td>{e(r.method)}</td><td>{fraction_label(r.fraction)}</td><td>{r.draw}</td>"
                       f"<td>{r.seed}</td>"
                       f"<td>{e(r.status)}</td><td style='text-align:left'>{e(str(r.reason or ''))}</td></tr>")
        out.append("</table>")
    out.append("</body></html>\n")
    return "\n".join(out)


# --------------------------------------------------------------------------- report.md

def report_markdown(sections: list[dict], df: pd.DataFrame, methods=None, with_plots: bool = True,
                    config: dict | None = None) -> str:
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    lines = ["# xmbench results", "",
             f"{len(df)} runs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "missing")) + ". "
             "Every run is a row of [leaderboard.csv](leaderboard.csv) (identity, status and reason, every metric, "
             "cost, provenance). Published numbers are shown beside ours, labelled, and never enter our statistics.",
             ""]
    commits = sorted({str(c) for c in df.get("provenance.git_commit", pd.Series(dtype=object)).dropna()})
    if commits:
        dirty = any(v is not None and v == v and bool(v) for v in df.get("provenance.git_dirty", pd.Series(dtype=object)).tolist())
        lines += [f"Code: git {', '.join(c[:12] for c in commits)}" + (" (some runs from a dirty tree)" if dirty else ""),
                  ""]
    lines += ["## Contents", ""]
    for s in sections:
        i = s["info"]
        anchor = f"{i['dataset']}-{i['task']}-{i['engine']}".lower().replace("_", "-")
        lines.append(f"- [{i['dataset']} · {i['task']} · {i['engine']}](#{anchor})")
    lines.append("")
    for s in sections:
        i, name = s["info"], s["info"]["name"]
        lines += [f"## {i['dataset']} {i['task']} {i['engine']}", "",
                  markdown_table(s["long"], i, methods), "",
                  f"Files: [CSV](leaderboard_{name}.csv) · [Markdown](leaderboard_{name}.md) · "
                  f"[LaTeX](leaderboard_{name}.tex) · [gains CSV](gains_{name}.csv) · "
                  f"[per-draw CSV](draws_{name}.csv)", ""]
        if _several_draws(s["long"]):
            lines += ["### Spread: seed against draw", "", spread_markdown(s["long"], methods), ""]
        if "draws" in s and len(s["draws"]) and s["draws"]["draw"].nunique() > 1:
            lines += ["### Per draw", "", draws_markdown(s["draws"]), ""]
        bad = problems_markdown(s["part"])
        if bad:
            lines += ["### Failed and missing runs", "", bad, ""]
        lines += ["### Published numbers (not re-run here, not in our statistics)", "",
                  published_markdown(s["published"]), "",
                  "### Gain over scratch", "", gains_markdown(s["gains"]), ""]
        if with_plots and s.get("figures"):
            lines += ["### Plots", ""]
            for kind, caption in (("label_efficiency", "Label efficiency"), ("gains", "Gain over scratch"),
                                  ("per_class", "Per-class scores"), ("gain_vs_cost", "Gain against pretraining cost")):
                if kind in s["figures"]:
                    lines += [f"![{caption}: {name}](plots/{Path(s['figures'][kind]).name})", ""]
    shown = {(s["info"]["task"]) for s in sections}
    pub = load_published()
    rest = pub[~pub["task"].isin(shown)] if len(pub) else pub
    if len(rest):
        lines += ["## Other published figures (no matching task in these results)", "", published_markdown(rest), ""]
    lines += ["## Statistics", "", RANK_NOTE, "", GAIN_NOTE, "", SPREAD_NOTE, "",
              "## Tuning", "", TUNING_RULE, ""]
    tune = ((config or {}).get("split") or {}).get("tune") or {}
    lines += [(f"This run holds out {tune['fraction']:g} of the training scenes as the tune split (seed "
               f"{tune.get('seed', 0)}); no recipe of the benchmark tunes on it yet." if tune.get("fraction") else
               "This run has no tune split (split.tune): no recipe of the benchmark tunes."), ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- results/README.md

RUN_COLUMNS = {
    "dataset": "the dataset's name in the config (`datasets.<name>`)",
    "task": "the finetuning task (`downstream/<task>/`)",
    "engine": "the finetuning engine that ran it (native, openpcdet); a table never mixes engines",
    "method": "the pretraining method (`methods/<name>/`); scratch = no pretraining",
    "fraction": "the labelled share of the training frames (0.01 = 1 %)",
    "draw": "which labelled subset of that fraction (split.draws; 0 = the one a one-draw config has)",
    "seed": "the finetuning seed (initialisation of the new layers, batch order, augmentation)",
    "track": ("the pretraining schedule of the checkpoint: own (the method's own, method.yaml) or budget "
              "(pretrain.budget.frames frames for every method); tables never mix the two, and scratch's own "
              "rows are the baseline of both"),
    "status": "ok, failed (the run raised; see reason) or missing (no metrics.json: the job did not run)",
    "reason": "why a run failed or is missing, with what to do",
    "primary_metric": "the task's ranking metric (task.yaml primary_metric, e.g. mIoU, NDS, mAPH L2)",
    "primary_unit": "its unit ('%': scaled by 100)",
    "primary_value": "its value, the number every table and statistic uses (empty unless status is ok)",
    "recipe_hash": "hash of the finetuning recipe; equal across methods of one (dataset, task, fraction)",
    "path": "the run's metrics.json",
    "benchmark.s": "wall seconds of the job as Snakemake's benchmark record measured it",
    "benchmark.max_rss_mb": "peak resident memory of the job (MB), from the same record",
    "pretrain.wall_seconds": "wall seconds of the method's pretraining job (0 for scratch)",
    "pretrain.gpu_hours": "GPU-hours of the method's pretraining job",
}
RUN_PREFIXES = [
    ("metrics.", "a metric exactly as the engine's evaluation returned it (fractions, not %); "
                 "`*_per_class.<class>` per class, empty where the class is absent from val"),
    ("cost.", "what the run cost: wall_seconds, peak_memory_mb, gpu_hours, and source (engine or Snakemake)"),
    ("provenance.", "where the number comes from: git commit and dirty flag, config hash, split_sha256 "
                    "(the labelled subset's file hash), checkpoint_sha256, package versions"),
    ("init.", "per model module, how many tensors were loaded from the pretrained checkpoint out of how many"),
    ("recipe.", "the finetuning recipe the run used (iterations, batch size, optimizer, augmentation)"),
]
TABLE_COLUMNS = {
    "method": "the pretraining method",
    "<labels>": "the cell as printed: mean ± std over draws and seeds, or what failed or is missing",
    "n@<labels>": "runs that finished (draws x seeds)",
    "mean@<labels>": "mean (with several draws: the mean of the per-draw means)",
    "std@<labels>": "sd over every finished run (ddof=1)",
    "sd_seed@<labels>": "pooled sd of seeds within a draw (what a new seed moves)",
    "sd_draw@<labels>": "the draw's variance component (what a new labelled subset moves beyond the seeds)",
    "n_draws@<labels>": "draws with a finished run",
    "ci95_low@<labels>, ci95_high@<labels>": "95% Student-t interval of the mean (over seeds; over draw means with several draws)",
    "rank@<labels>": "1 + the number of methods significantly better (ties share the rank)",
    "n_failed@<labels>, n_missing@<labels>": "runs of the cell that failed or never ran",
}
GAIN_DOC = {
    "method, fraction": "the comparison: this method against scratch at this fraction",
    "n_pairs": "runs paired with a scratch run of the same draw, seed and split sha256",
    "n_draws": "draws among the pairs",
    "mean_gain": "mean of method − scratch (with several draws: mean of the per-draw mean gains)",
    "std_gain": "sd of the paired differences",
    "sd_gain_seed, sd_gain_draw": "the gain's spread split into seed and draw parts, as for the values",
    "ci95_low, ci95_high": "95% t-interval of the mean gain",
    "p_value": "two-sided paired t-test (over pairs; over draws' mean gains with several draws)",
    "p_holm, significant_holm": "Holm-corrected over every (method, fraction) of the table, and p_holm < 0.05",
    "baseline_mean, method_mean": "means of the paired scratch and method runs",
    "relative_gain_pct": "100 x mean_gain / baseline_mean",
    "unpaired_runs": "finished runs of the method with no scratch partner",
    "note": "what limits the row (n=1, missing partners, replicates used)",
}
DRAW_DOC = {
    "method, fraction, draw": "one labelled subset",
    "split_sha256": "the subset file's sha256, the same for every method and seed of the draw",
    "n, mean, std, ci95_low, ci95_high": "the primary metric over the seeds of this draw",
    "n_pairs, mean_gain, std_gain, gain_ci95_low, gain_ci95_high": "the gain over scratch paired by seed on this draw",
    "p_value": "paired t-test over those seeds, not corrected for multiplicity",
}


def _column_doc(col: str) -> str:
    if col in RUN_COLUMNS:
        return RUN_COLUMNS[col]
    for prefix, text in RUN_PREFIXES:
        if col.startswith(prefix):
            return text
    return "a field an engine added to metrics.json, kept as written"


def _doc_table(doc: dict) -> list[str]:
    return ["| column | meaning |", "|---|---|"] + [f"| `{k}` | {v} |" for k, v in doc.items()]


def results_readme(df: pd.DataFrame, names: list[str], config: dict | None = None, with_plots: bool = True) -> str:
    """results/README.md: every file of this results folder and every column of its CSVs, so a reader
    of the folder alone (a tarball, a Zenodo record) needs no other page."""
    datasets = sorted({str(d) for d in df.get("dataset", pd.Series(dtype=object)).dropna()})
    lines = ["# What this folder holds", "",
             "Written by the leaderboard step of xmbench (`python -m xmbench.cli leaderboard`) together with the "
             "tables it explains; regenerated on every run. Cite the benchmark and the methods with "
             "`CITATION.cff` of the repository.", "",
             "## Files", "",
             "| file | what it holds |", "|---|---|",
             "| `leaderboard.csv` | one row per run the config expects (ok, failed, missing); columns below |"]
    for n in names:
        lines += [f"| `leaderboard_{n}.csv`, `.md`, `.tex`, `tables/leaderboard_{n}.html` | method x fraction of "
                  f"{n}: mean ± std over draws and seeds, n, spread, 95% CI and rank |",
                  f"| `gains_{n}.csv` | gain over scratch per method and fraction, paired by draw, seed and split |",
                  f"| `draws_{n}.csv` | one row per method, fraction and draw: the numbers behind the pooled ones |"]
        if with_plots:
            lines.append(f"| `plots/{{label_efficiency,gains,per_class,gain_vs_cost}}_{n}.png` | label-efficiency "
                         "curves (95% t-band over runs), gain bars, per-class heatmap, gain against pretraining cost |")
    lines += ["| `report.md`, `report.html` | every table and plot captioned, published numbers beside ours "
              "(labelled, never in our statistics), the statistics, the label protocol and the tuning rule |",
              "| `README.md` | this file |",
              "| `config.resolved.json` | the validated config every job read |",
              "| `<dataset>/index.json`, `labels.json` | the frame index (sensors, calibrations) and the labels, "
              "kept apart so that pretraining never reads labels |",
              "| `<dataset>/splits/<fraction>[-draw<k>].txt`, `.sha256` | one labelled subset: frame tokens, one a "
              "line, and the file's sha256 (in every run's provenance) |",
              "| `<dataset>/pretrain/<method>/checkpoint.pth`, `pretrain.json` | the pretrained backbones "
              "(OpenPCDet's key names) and the pretraining record |",
              "| `<dataset>/<task>/<engine>/<method>/<fraction>[-draw<k>]/seed<s>/metrics.json` | one run, "
              "written atomically, also when it failed (with `traceback.txt`) |",
              "| `benchmarks/<rule>/*.tsv`, `logs/<rule>/*.log` | Snakemake's wall time and memory of every job, "
              "and its log |", "",
              "## Labelled subsets", ""]
    for d in datasets:
        from .results import protocol_text

        lines.append(f"- **{d}**: {protocol_text(config, d)}.")
    if config:
        spec = (config.get("split") or {}).get("draws", [0])
        lines.append(f"- Draws (split.draws): `{spec}`.")
    lines += ["", "## Columns of `leaderboard.csv`", "", "| column | meaning |", "|---|---|"]
    lines += [f"| `{c}` | {_column_doc(c)} |" for c in df.columns]
    lines += ["", "## Columns of `leaderboard_<table>.csv`", "",
              "`<labels>` is a fraction as printed (`1%`); each column repeats per fraction.", ""]
    lines += _doc_table(TABLE_COLUMNS)
    lines += ["", "## Columns of `gains_<table>.csv`", ""] + _doc_table(GAIN_DOC)
    lines += ["", "## Columns of `draws_<table>.csv`", ""] + _doc_table(DRAW_DOC)
    lines += ["", "## Statistics", "", RANK_NOTE, "", GAIN_NOTE, "", SPREAD_NOTE, "", "## Tuning", "", TUNING_RULE, ""]
    return "\n".join(lines)
