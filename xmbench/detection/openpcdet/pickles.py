"""OpenPCDet's info and database pickles, written whole or not at all.

Shared by the nuScenes and Waymo layouts: a run interrupted mid-write must not leave a truncated
pickle that OpenPCDet would load on the rerun.
"""
from __future__ import annotations

import pickle
from pathlib import Path


def write_pickle(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
    tmp.replace(path)
    return path
