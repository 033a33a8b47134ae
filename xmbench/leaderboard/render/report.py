"""report.md: every table with its files, spread, draws, problems, published numbers, gains and plots."""
from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

from .notes import GAIN_NOTE, RANK_NOTE, SPREAD_NOTE, TUNING_RULE
from .tables import (draws_markdown, gains_markdown, markdown_table, problems_markdown, published_markdown,
                     several_draws, spread_markdown)

if TYPE_CHECKING:
    from ..aggregate import Table


def _any_dirty(col: pd.Series) -> bool:
    """Whether some run came from a dirty tree; a bool column answers without a loop over every run."""
    if col.dtype == bool:
        return bool(col.to_numpy().any())
    return any(v is not None and v == v and bool(v) for v in col.tolist())


def report_markdown(sections: list[Table], df: pd.DataFrame, published: pd.DataFrame, methods=None,
                    plots=(), config: dict | None = None) -> str:
    """``published``: every published number the build loaded (those of no table's task get their own
    section); ``plots``: (kind, caption) pairs in the order to show each table's figures."""
    counts = Counter(df["status"].tolist()) if len(df) else {}
    lines = ["# xmbench results", "",
             f"{len(df)} runs: " + ", ".join(f"{counts.get(s, 0)} {s}" for s in ("ok", "failed", "missing")) + ". "
             "Every run is a row of [leaderboard.csv](leaderboard.csv) (identity, status and reason, every metric, "
             "cost, provenance). Published numbers are shown beside ours, labelled, and never enter our statistics.",
             ""]
    commits = sorted(set(map(str, df.get("provenance.git_commit", pd.Series(dtype=object)).dropna().tolist())))
    if commits:
        dirty = _any_dirty(df.get("provenance.git_dirty", pd.Series(dtype=object)))
        lines += [f"Code: git {', '.join(c[:12] for c in commits)}" + (" (some runs from a dirty tree)" if dirty else ""),
                  ""]
    lines += ["## Contents", ""]
    for s in sections:
        i = s.info
        anchor = f"{i['dataset']}-{i['task']}-{i['engine']}".lower().replace("_", "-")
        lines.append(f"- [{i['dataset']} · {i['task']} · {i['engine']}](#{anchor})")
    lines.append("")
    for s in sections:
        i, name = s.info, s.info["name"]
        lines += [f"## {i['dataset']} {i['task']} {i['engine']}", "",
                  markdown_table(s.long, i, methods), "",
                  f"Files: [CSV](leaderboard_{name}.csv) · [Markdown](leaderboard_{name}.md) · "
                  f"[LaTeX](leaderboard_{name}.tex) · [gains CSV](gains_{name}.csv) · "
                  f"[per-draw CSV](draws_{name}.csv)", ""]
        if several_draws(s.long):
            lines += ["### Spread: seed against draw", "", spread_markdown(s.long, methods), ""]
        if len(s.draws) and s.draws["draw"].nunique() > 1:
            lines += ["### Per draw", "", draws_markdown(s.draws), ""]
        bad = problems_markdown(s.part)
        if bad:
            lines += ["### Failed and missing runs", "", bad, ""]
        lines += ["### Published numbers (not re-run here, not in our statistics)", "",
                  published_markdown(s.published), "",
                  "### Gain over scratch", "", gains_markdown(s.gains), ""]
        if s.figures:
            lines += ["### Plots", ""]
            for kind, caption in plots:
                if kind in s.figures:
                    lines += [f"![{caption}: {name}](plots/{Path(s.figures[kind]).name})", ""]
    shown = {s.info["task"] for s in sections}
    pub = published
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
