"""results/README.md: what every file of a results folder and every column of its CSVs means."""
from __future__ import annotations

import pandas as pd

from .notes import GAIN_NOTE, RANK_NOTE, SPREAD_NOTE, TUNING_RULE

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


def results_readme(df: pd.DataFrame, names: list[str], protocols: dict[str, str], draws=None, plots=()) -> str:
    """results/README.md: every file of this results folder and every column of its CSVs, so a reader
    of the folder alone (a tarball, a Zenodo record) needs no other page. ``protocols``: dataset ->
    how its labelled subsets were made; ``draws``: the config's split.draws (None: no config);
    ``plots``: (kind, what it shows) of every plot drawn, none when the build drew none."""
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
        if plots:
            lines.append(f"| `plots/{{{','.join(k for k, _ in plots)}}}_{n}.png` | "
                         f"{', '.join(text for _, text in plots)} |")
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
        lines.append(f"- **{d}**: {protocols[d]}.")
    if draws is not None:
        lines.append(f"- Draws (split.draws): `{draws}`.")
    lines += ["", "## Columns of `leaderboard.csv`", "", "| column | meaning |", "|---|---|"]
    lines += [f"| `{c}` | {_column_doc(c)} |" for c in df.columns]
    lines += ["", "## Columns of `leaderboard_<table>.csv`", "",
              "`<labels>` is a fraction as printed (`1%`); each column repeats per fraction.", ""]
    lines += _doc_table(TABLE_COLUMNS)
    lines += ["", "## Columns of `gains_<table>.csv`", ""] + _doc_table(GAIN_DOC)
    lines += ["", "## Columns of `draws_<table>.csv`", ""] + _doc_table(DRAW_DOC)
    lines += ["", "## Statistics", "", RANK_NOTE, "", GAIN_NOTE, "", SPREAD_NOTE, "", "## Tuning", "", TUNING_RULE, ""]
    return "\n".join(lines)
