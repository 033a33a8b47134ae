"""Published numbers (config/published_results.csv): always labelled with their source, shown
beside ours, never part of our statistics. Loaded once by the build, from the path it is given."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..config import REPO
from ..errors import BenchError

PUBLISHED_CSV = REPO / "config" / "published_results.csv"
PUBLISHED_COLUMNS = ["dataset", "task", "protocol", "metric", "unit", "method", "fraction", "value",
                     "source_short", "source", "note"]


def load_published(path: str | Path | None = None) -> pd.DataFrame:
    path = Path(path) if path else PUBLISHED_CSV
    if not path.is_file():
        return pd.DataFrame(columns=PUBLISHED_COLUMNS)
    pub = pd.read_csv(path)
    missing = [c for c in PUBLISHED_COLUMNS if c not in pub.columns and c != "note"]
    if missing:
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
