"""The leaderboard's fast paths give what their plain counterparts give.

- flattening by shape (flatten.records_to_columns) equals the section-by-section walk
  (flatten.flatten_generic) on records of many shapes: names, their order and every value;
- columns become a frame with pandas' own inference (load._series against pd.Series);
- the CSV writer writes what pandas' to_csv writes, and the file reader what Path.read_bytes reads.
"""
import copy
import json
import math
import random

import numpy as np
import pandas as pd
import pytest

from xmbench.leaderboard import flatten
from xmbench.leaderboard.csv_writer import write_csv
from xmbench.leaderboard.load import _series

BASE = {"dataset": "nuscenes", "task": "segmentation", "engine": "native", "method": "clap", "fraction": 0.1,
        "draw": 0, "seed": 1, "track": "own", "status": "ok", "reason": None,
        "primary_metric": {"name": "mIoU", "unit": "%", "value": 41.5},
        "metrics": {"miou": 0.415, "iou_per_class": {"car": 0.8, "bus": 0.2}, "num_val_frames": 12},
        "cost": {"wall_seconds": 170.9, "gpu_hours": 0.05},
        "provenance": {"git_commit": "abc", "packages": {"torch": "2.13.0"}, "host": "node1"},
        "init": {"loaded": 142, "total": 142},
        "recipe_hash": "4026",
        "recipe": {"iterations": 6000, "optimizer": {"name": "adamw", "lr": 0.002},
                   "augment": {"scale": [0.95, 1.05], "flip": True}}}


def _mutate(rng: random.Random, rec: dict, conflicts: bool) -> dict:
    """One of the ways real metrics.json files differ: another task's or status's keys, sections
    that are missing, empty, null or not objects, old records without draw/track, extra keys,
    keys in another order, lists where values were; with ``conflicts`` also objects where other
    records hold a value at the same key, which only the generic walk flattens."""
    r = copy.deepcopy(rec)
    try:
        _change(rng, r, conflicts)
    except (KeyError, TypeError, AttributeError):  # a change that does not apply to an earlier one's result
        pass
    return r


def _change(rng: random.Random, r: dict, conflicts: bool) -> None:
    kind = rng.randrange(16)
    if kind == 0:
        r.update(status="failed", reason="RuntimeError: x", metrics={}, primary_metric={"name": "mIoU", "unit": "%",
                                                                                          "value": None})
    elif kind == 1:
        r["metrics"] = {"map": 0.3, "nds": 0.4, "ap_per_class": {"car": 0.5}}
    elif kind == 2:
        r.pop(rng.choice(["draw", "track", "init", "recipe_hash", "reason"]), None)
    elif kind == 3:
        r[rng.choice(["metrics", "cost", "init", "recipe"])] = rng.choice([None, {}, "text", 3, [1, 2]])
    elif kind == 4:
        r["primary_metric"] = rng.choice([None, {}, {"name": "mAP", "value": 1.0}, {"name": "x", "unit": "%",
                                                                                  "value": 2, "extra": 1}])
    elif kind == 5:
        note = rng.choice(["hand-edited", 7, {"a": 1, "b": {"c": [1]}}, [3, 4]])
        r["extra_note" if conflicts else f"extra_{type(note).__name__}"] = note
    elif kind == 6:
        items = list(r.items())
        r.clear()
        r.update(reversed(items))
        r["metrics"] = dict(reversed(list(r["metrics"].items())))
    elif kind == 7:
        r.setdefault("metrics", {})["iou_per_class"] = rng.choice([{}, {"car": 0.1}, {"car": 0.3, "truck": 0.2}]
                                                                  + ([None, 0.5, {"car": {"deep": 1}}] if conflicts else []))
    elif kind == 8:
        r["provenance"] = {**r["provenance"], "packages": {"torch": "2", "numpy": "1.26.4"}}
    elif kind == 9:
        r["recipe"]["augment"]["scale"] = rng.choice([[0.9, 1.1], [[1, 2], [3]], None, "0.9-1.1"])
    elif kind == 10:
        r["metrics"]["miou"] = rng.choice([[0.4], None, "0.4"] + ([{"v": 1}] if conflicts else []))
    elif kind == 11:
        r["seed"] = rng.choice([2, "2", None, 2.0])
    elif kind == 12:
        r["cost"] = {"wall_seconds": 1, "gpu_hours": 0, "peak_memory_mb": 2.5}
    for k in ("seed", "fraction"):
        if k in r and rng.random() < 0.3:
            r[k] = rng.choice([0.01, 0.25, 1.0, 3, 4]) if k == "fraction" else rng.randrange(5)


def _same(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert len(a[k]) == len(b[k]), k
        for x, y in zip(a[k], b[k]):
            assert type(x) is type(y) and (x == y or (x != x and y != y)), (k, x, y)


@pytest.mark.parametrize("conflicts", [False, True], ids=["shapes", "conflicts"])
@pytest.mark.parametrize("seed", range(10))
def test_shape_path_equals_the_generic_walk_on_records_of_mixed_shapes(seed, conflicts):
    rng = random.Random(seed)
    # a few shapes repeated, as a leaderboard has them, each record its own parsed copy
    shapes = [_mutate(rng, BASE, conflicts) for _ in range(rng.randrange(1, 8))]
    records = [json.loads(json.dumps(_mutate(rng, rng.choice(shapes), conflicts) if rng.random() < 0.2
                                     else rng.choice(shapes))) for _ in range(300)]
    paths = [f"/r/{i}/metrics.json" for i in range(len(records))]
    generic = flatten.flatten_generic(records, paths)
    _same(flatten.records_to_columns(records, paths), generic)
    if not conflicts:  # the shapes alone never need the generic walk
        _same(flatten._by_shape(records, paths), generic)


def test_records_of_one_shape_take_the_shape_path():
    records = [json.loads(json.dumps(BASE)) for _ in range(50)] + [
        json.loads(json.dumps({**BASE, "status": "failed", "metrics": {}})) for _ in range(5)]
    paths = [f"/r/{i}" for i in range(len(records))]
    fast = flatten._by_shape(records, paths)
    assert fast is not None
    _same(fast, flatten.flatten_generic(records, paths))
    assert fast["metrics.iou_per_class.car"][-1] is None and fast["recipe.augment.scale"][0] == "[0.95, 1.05]"


def test_an_object_where_its_shape_had_a_value_goes_the_generic_way():
    other = json.loads(json.dumps(BASE))
    other["metrics"]["miou"] = {"mean": 0.4}          # same keys at every level, a value became an object
    records = [json.loads(json.dumps(BASE)), other]
    assert flatten._by_shape(records, ["a", "b"]) is None
    out = flatten.records_to_columns(records, ["a", "b"])
    assert out["metrics.miou.mean"] == [None, 0.4] and "metrics.miou" not in out


CASES = [[1.0, 2.5], [1.0, None], [1, 2.5], [1, 2.5, None], [1, 2], [True, False], ["a", "b"], ["a", None],
         [None, None], [1, None], [True, None], [1, "a"], [2 ** 70, 1], [1.5, "x"], [[1, 2], None], [True, 1],
         [math.nan, None], [1, True], []]


@pytest.mark.parametrize("values", CASES, ids=[repr(c)[:30] for c in CASES])
def test_columns_become_series_as_pandas_infers_them(values):
    ours, theirs = _series(list(values)), pd.Series(list(values))
    assert ours.dtype == theirs.dtype
    assert all(x == y or (x != x and y != y) or (x is None and y is None)
               for x, y in zip(ours.tolist(), theirs.tolist()))


def test_csv_writer_writes_what_pandas_writes(tmp_path):
    n = 40
    rng = np.random.default_rng(0)
    df = pd.DataFrame({
        "f": np.where(rng.random(n) < 0.2, np.nan, rng.random(n)),
        "i": rng.integers(-5, 5, n), "b": rng.random(n) < 0.5,
        "s": rng.choice(["plain", "with,comma", 'with "quote"', "new\nline", "", None], n).tolist(),
        "path": [f"/results/nuscenes/seg/native/m/{k}pct/seed0/metrics.json" for k in range(n)],
        "mixed": [[1, 1.0, True, "1", None, math.nan][k % 6] for k in range(n)],
        "lists": [[1, 2] if k % 3 else None for k in range(n)],
        "const": ["2.13.0"] * n, "const2": ["x"] * n,
    })
    write_csv(df, tmp_path / "ours.csv")
    df.to_csv(tmp_path / "pandas.csv", index=False)
    assert (tmp_path / "ours.csv").read_text() == (tmp_path / "pandas.csv").read_text()


def test_file_reading_returns_every_byte_at_the_chunk_boundaries(tmp_path):
    from xmbench.leaderboard.read import _CHUNK, _read_bytes

    for n in (0, 1, _CHUNK - 1, _CHUNK, _CHUNK + 1, 3 * _CHUNK + 7):
        p = tmp_path / f"{n}.json"
        p.write_bytes(bytes(range(256)) * (n // 256) + bytes(n % 256))
        assert _read_bytes(str(p)) == p.read_bytes(), n
