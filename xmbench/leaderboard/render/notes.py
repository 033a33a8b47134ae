"""The statistics and the tuning rule in words: shown under every table, in report.md and in README.md."""
from __future__ import annotations

from ... import stats

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
