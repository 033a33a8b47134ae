"""Compatibility names for code written before the leaderboard became a package (xmbench/leaderboard/).

Nothing is defined here but ``read_columns``'s hook: import from the stage you need instead
(``xmbench.leaderboard.build.build_results``, ``xmbench.leaderboard.load.load_runs``, ...).
"""
from __future__ import annotations

from .leaderboard import read as _read
from .leaderboard.aggregate import (cell_text, draws_table, gains_table, group_names, method_order,  # noqa: F401
                                    per_class_columns, summary_long, summary_table, table_rows)
from .leaderboard.build import build_results, protocol_text  # noqa: F401
from .leaderboard.load import expected_grid, finetune_benchmarks, load_runs, pretrain_costs  # noqa: F401
from .leaderboard.read import read_records, records_to_columns  # noqa: F401
from .leaderboard.schema import BASELINE, FRONT, GROUP, ID, STATUSES  # noqa: F401

PARALLEL_MIN_FILES = _read.PARALLEL_MIN_FILES


def read_columns(paths, workers=None):
    """leaderboard.read.read_columns with this module's PARALLEL_MIN_FILES, which older tests set."""
    return _read.read_columns(paths, workers, min_files=PARALLEL_MIN_FILES)
