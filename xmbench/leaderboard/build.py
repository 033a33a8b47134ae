"""Every results file from the metrics.json paths: the one entry point of the leaderboard.

``build_results`` loads the frame once, hands each table's numbers to the plots and the renderers,
and writes (atomically, under ``out_dir``):

- ``leaderboard.csv``: one row per run, every field of metrics.json flattened, costs completed from
  Snakemake's benchmark TSVs and the pretraining job's record (load.py).
- per (dataset, task, engine, track), named by ``aggregate.group_names``: ``leaderboard_<name>.csv|.md|.tex``,
  ``gains_<name>.csv``, ``draws_<name>.csv``, ``tables/leaderboard_<name>.html`` and
  ``plots/<kind>_<name>.png`` for every kind in plots.PLOTS.
- ``report.md`` and ``README.md`` (render/).

``run`` is ``python -m xmbench.cli leaderboard`` (the Snakefile's leaderboard rule).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from ..atomic import write_text
from ..grid import metrics_glob
from .aggregate import names_of, table, table_rows
from .csv_writer import write_csv, write_csv_in_child
from . import plots as figures  # by module: PLOTS is read when the build runs, so an added kind counts
from .load import expected_grid, load_runs
from .published import load_published, published_for
from .read import NoGC
from .render.html_page import html_tables
from .render.readme import results_readme
from .render.report import report_markdown
from .render.tables import latex_table, markdown_table
from .schema import FRONT

# the frame's columns a table needs: identity and status, the split, per-class scores, the costs
_TABLE_COLUMNS = ("provenance.split_sha256", "path", "pretrain.wall_seconds", "pretrain.gpu_hours")


def build_results(metric_paths, out_dir, expected: list[dict] | None = None, config: dict | None = None,
                  published: str | Path | None = None, plots: bool = True, report: bool = True) -> pd.DataFrame:
    """Write every results file from the metrics.json paths (and the expected grid, if given).

    ``config`` (the resolved config) gives the expected grid when ``expected`` is None, the method
    order of the tables and the label protocol; ``published``: the published numbers' CSV (default
    config/published_results.csv). Returns the run-level leaderboard.
    """
    with NoGC():
        out_dir = Path(out_dir)
        if expected is None and config is not None:
            expected = expected_grid(config, out_dir)
        df = load_runs(metric_paths, expected, out_dir)
        wait_board = write_csv_in_child(df, out_dir / "leaderboard.csv")
        try:
            names = _write_tables(df, out_dir, config, load_published(published), plots, report)
            if report:
                datasets = sorted({str(d) for d in df["dataset"].dropna()}) if "dataset" in df else []
                draws = (config.get("split") or {}).get("draws", [0]) if config else None
                write_text(out_dir / "README.md", results_readme(
                    df, names, {d: protocol_text(config, d) for d in datasets}, draws,
                    [(p.name, p.readme) for p in figures.PLOTS] if plots else []))
        finally:
            wait_board()
        return df


def protocol_text(config: dict | None, dataset: str) -> str:
    """Which protocol made a dataset's labelled subsets, for the report and README."""
    if not config or "split" not in config:
        return "not known (the leaderboard was built without the run's config)"
    from ..splits import describe

    return describe(config["split"], dataset)


def display_names(methods) -> dict[str, str]:
    """Each method's own ``display_name`` from its method.yaml, for the tables a reader sees (the
    CSVs keep the folder names); a method not in methods/, or an ablation that names none (its
    base's name would show two rows alike), is shown by its folder name.
    Read with the C YAML loader and no validation: the job that ran the method validated it, and
    the full compose-and-validate costs 35 ms a method, more than a 10,000-run table."""
    import yaml

    from ..methods import METHODS_DIR

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

    def name_of(m: str) -> str | None:
        try:
            spec = yaml.load((METHODS_DIR / m / "method.yaml").read_bytes(), Loader=loader)
        except (OSError, yaml.YAMLError):
            return None
        return str(spec["display_name"]) if isinstance(spec, dict) and spec.get("display_name") else None

    return {m: name_of(m) or m for m in sorted({m for m in methods if isinstance(m, str)})}


def _filled(values: np.ndarray, rows: np.ndarray) -> bool:
    """Whether any of the rows holds a value (pd.isna's idea of one); the first few usually decide."""
    return not pd.isna(values[rows[:16]]).all() or not pd.isna(values[rows]).all()


def _parts(df: pd.DataFrame, keep: list[str], tables: dict):
    """Each table's runs (aggregate.table_rows), less the columns that no run of the table fills
    (FRONT stays): taken once by row position (copying the frame, grouping it and testing every
    column of every part cost more than the tables' statistics)."""
    frame = df[keep]
    values = {c: frame[c].to_numpy() for c in keep}
    for key, rows in tables.items():
        at = np.asarray(rows)
        cols = [c for c in keep if c in FRONT or _filled(values[c], at)]
        part = frame.take(at) if len(cols) == len(keep) else frame.take(at)[cols]
        yield key, (part if key[3] == "own" else part.assign(track=key[3]))


def _write_tables(df: pd.DataFrame, out_dir: Path, config, pub: pd.DataFrame, plots: bool, report: bool) -> list[str]:
    """Per (dataset, task, engine, track): tables, gains, draws, plots; then report.md. Returns the table names."""
    methods_pref = list(config["methods"]) if config else None
    shown = display_names(df["method"].dropna().unique()) if "method" in df else {}
    sections = []
    tables = table_rows(df)
    names = names_of(tables)
    keep = [c for c in df.columns if c in FRONT or c in _TABLE_COLUMNS
            or (c.startswith("metrics.") and "per_class" in c)]
    published: dict = {}
    for (d, t, e, tr), part in _parts(df, keep, tables):
        name = names[(d, t, e, tr)]
        metric = part["primary_metric"].dropna()
        unit = part["primary_unit"].dropna() if "primary_unit" in part else pd.Series(dtype=object)
        # the track is named wherever the task is shown, so a budget table never reads as the own one
        info = {"dataset": d, "task": t if tr == "own" else f"{t} ({tr} track)", "engine": e, "track": tr, "name": name,
                "metric": metric.iloc[0] if len(metric) else "primary metric",
                "unit": unit.iloc[0] if len(unit) else "", "protocol": protocol_text(config, d),
                "display_names": shown}
        if (t, info["metric"]) not in published:
            published[(t, info["metric"])] = published_for(pub, t, info["metric"])
        s = table(part, info, methods_pref, published[(t, info["metric"])])
        write_csv(s.wide, out_dir / f"leaderboard_{name}.csv")
        write_csv(s.gains, out_dir / f"gains_{name}.csv")
        write_csv(s.draws, out_dir / f"draws_{name}.csv")
        write_text(out_dir / f"leaderboard_{name}.md", markdown_table(s.long, info, methods_pref) + "\n")
        write_text(out_dir / f"leaderboard_{name}.tex", latex_table(s.long, info, methods_pref))
        write_text(out_dir / "tables" / f"leaderboard_{name}.html",
                   html_tables(s.long, s.gains, s.published, part, info, methods_pref))
        if plots:
            s.figures = figures.make_plots(s, out_dir / "plots")
        sections.append(s)
    if report:
        write_text(out_dir / "report.md", report_markdown(sections, df, pub, methods_pref,
                                                          [(p.name, p.caption) for p in figures.PLOTS], config))
    return [s.info["name"] for s in sections]


def run(a) -> pd.DataFrame:
    """``xmbench.cli leaderboard``: the config's grid gives the expected cells (absent ones become
    'missing' rows) and, without --metrics, the paths; without a config every metrics.json under
    --out-dir is read."""
    cfg = None
    if a.config:
        from ..config import check_config, load_yaml

        raw = json.loads(Path(a.config).read_text()) if a.config.endswith(".json") else load_yaml(a.config)
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
    counts = df["status"].value_counts().to_dict() if len(df) else {}
    print(f"leaderboard: {len(df)} rows ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}) "
          f"-> {Path(a.out_dir) / 'leaderboard.csv'}")
    return df
