"""The names every stage of the leaderboard agrees on: a run's identity and the baseline.

Kept apart so that reading, aggregating and rendering share them without importing one another.
"""

ID = ["dataset", "task", "engine", "method", "fraction", "draw", "seed", "track"]
GROUP = ["dataset", "task", "engine", "track"]   # the pretraining tracks never share a table
STATUSES = ("ok", "failed", "missing")
BASELINE = "scratch"
FRONT = ID + ["status", "reason", "primary_metric", "primary_unit", "primary_value"]
