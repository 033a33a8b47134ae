"""Which nuScenes table is broken, and how, when nuscenes-devkit cannot load a version folder.

The devkit reports a broken table as a bare ``JSONDecodeError``, ``KeyError: 'sample_token'`` or
``KeyError: '<token>'`` naming no file; a user with 1.4 GB of tables cannot tell which one to
re-download. This runs only after the devkit failed, so a good dataset pays nothing for it.
"""
from __future__ import annotations

import json
from pathlib import Path

from ...errors import BenchError

# nuscenes-devkit's NuScenes.__init__ loads these, in this order (nuscenes/nuscenes.py, table_names)
TABLES = ("category", "attribute", "visibility", "instance", "sensor", "calibrated_sensor", "ego_pose", "log",
          "scene", "sample", "sample_data", "sample_annotation", "map")
OPTIONAL = ("lidarseg", "panoptic")

# fields whose table is not their name less ``_token(s)`` (prev/next point into their own table)
_TARGET = {"first_sample_token": "sample", "last_sample_token": "sample",
           "first_annotation_token": "sample_annotation", "last_annotation_token": "sample_annotation"}


def _fix(version_dir: Path) -> str:
    return f"re-generate the dataset or re-download {version_dir.name}/ from nuScenes"


def _load(path: Path, version_dir: Path) -> list[dict]:
    if not path.is_file():
        raise BenchError(f"{path}: nuScenes table missing (a version folder holds {', '.join(TABLES)}); "
                         f"{_fix(version_dir)}")
    try:
        data = json.loads(path.read_bytes())
    except ValueError as exc:
        raise BenchError(f"{path}: not valid JSON ({exc}); {_fix(version_dir)}") from None
    if not isinstance(data, list) or not all(isinstance(r, dict) and "token" in r for r in data):
        raise BenchError(f"{path}: expected a JSON list of records, each with a 'token'; {_fix(version_dir)}")
    return data


def _target(table: str, field: str) -> str | None:
    if field in ("prev", "next"):
        return table
    if field in _TARGET:
        return _TARGET[field]
    for suffix in ("_tokens", "_token"):
        if field.endswith(suffix) and field != "token":
            return field[: -len(suffix)]
    return None


def diagnose(version_dir: Path, exc: BaseException) -> BenchError:
    """The first broken table of ``version_dir`` as one line: missing, not JSON, not a list of
    records, a record lacking a field its table's other records have, or a token that refers to a
    record no table holds. Falls back to the devkit's own message, with the folder."""
    version_dir = Path(version_dir)
    names = list(TABLES) + [t for t in OPTIONAL if (version_dir / f"{t}.json").is_file()]
    tables = {name: _load(version_dir / f"{name}.json", version_dir) for name in names}
    tokens = {name: {r["token"] for r in recs} for name, recs in tables.items()}
    for name, recs in tables.items():
        fields = set().union(*recs) if recs else set()
        for rec in recs:
            lacking = sorted(fields - rec.keys())
            if lacking:
                raise BenchError(f"{version_dir / (name + '.json')}: record {rec['token']} lacks field "
                                 f"'{lacking[0]}' that the table's other records have; {_fix(version_dir)}")
            for field, value in rec.items():
                target = _target(name, field)
                if target not in tokens:
                    continue
                for tok in value if isinstance(value, list) else [value]:
                    if tok and tok not in tokens[target]:
                        raise BenchError(f"{version_dir / (name + '.json')}: record {rec['token']} field '{field}' "
                                         f"refers to {tok}, which {target}.json does not hold; {_fix(version_dir)}")
    text = " ".join(str(exc).split())
    return BenchError(f"{version_dir}: nuscenes-devkit cannot load these tables ({type(exc).__name__}: {text}); "
                      f"{_fix(version_dir)}")
