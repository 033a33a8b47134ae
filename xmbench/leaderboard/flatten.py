"""metrics.json records to flat columns (``metrics.miou``, ``cost.wall_seconds``, ...).

Two paths, one result. ``flatten_generic`` walks the records section by section and accepts any
mix of keys. ``records_to_columns`` first sorts the records by shape (their key sets, nested, and
which values are objects): a leaderboard holds a handful of shapes (one per task and status), and
for each a generated function reads every field of a record in one call, so 10,000 records cost a
fraction of the section-by-section walk (tests/benchmarks/test_harness_scale.py). Column names,
their order and every value are the generic path's, which also takes over for anything the shapes
do not cover; tests/test_leaderboard_flatten.py compares the two on records of mixed shapes.
"""
from __future__ import annotations

import json
from operator import itemgetter

from .schema import ID

_SECTIONS = ("metrics", "cost", "provenance", "init")
_KNOWN = frozenset(("primary_metric", "recipe", "recipe_hash", "status", "reason") + _SECTIONS + tuple(ID))
_PRIMARY = (("name", "primary_metric"), ("unit", "primary_unit"), ("value", "primary_value"))
# columns taken from a record as they are; every other column has its lists written as JSON text
_RAW = frozenset(tuple(ID) + ("status", "reason", "recipe_hash", "path") + tuple(n for _, n in _PRIMARY))
MAX_SHAPES = 32


def _json_lists(col: list) -> list:
    memo: dict = {}
    out = []
    for v in col:
        if isinstance(v, list):
            try:
                key = tuple(v)
                text = memo.get(key)
                if text is None:
                    text = memo[key] = json.dumps(v)
            except TypeError:  # nested lists are not hashable
                text = json.dumps(v)
            out.append(text)
        else:
            out.append(v)
    return out


def _columns(dicts: list, prefix: str, out: dict) -> None:
    """Flatten aligned records column by column (``a.b.c`` names); one C-level ``itemgetter``
    call per record reads a section whose records share their keys."""
    sigs: dict = {}
    for d in dicts:
        if d:
            sigs.setdefault(tuple(d), None)
    if not sigs:
        return
    if len(sigs) == 1 and len(next(iter(sigs))) > 1:
        keys = next(iter(sigs))
        get, none = itemgetter(*keys), (None,) * len(keys)
        cols = dict(zip(keys, map(list, zip(*[get(d) if d else none for d in dicts]))))
    else:
        keys = dict.fromkeys(k for sig in sigs for k in sig)
        cols = {k: [d.get(k) if d else None for d in dicts] for k in keys}
    for k, col in cols.items():
        types = set(map(type, col))
        if dict in types:
            _columns([v if isinstance(v, dict) else None for v in col], f"{prefix}{k}.", out)
        elif list in types:
            out[f"{prefix}{k}"] = _json_lists(col)
        else:
            out[f"{prefix}{k}"] = col


def flatten_generic(records: list[dict], paths: list[str]) -> dict[str, list]:
    """Any records, section by section: the reference the shape path must equal."""
    out: dict[str, list] = {k: [r.get(k) for r in records] for k in ID + ["status", "reason"]}
    pms = [r.get("primary_metric") or {} for r in records]
    for key, name in _PRIMARY:
        out[name] = [pm.get(key) for pm in pms]
    for section in _SECTIONS:
        _columns([r.get(section) if isinstance(r.get(section), dict) else None for r in records], section + ".", out)
    out["recipe_hash"] = [r.get("recipe_hash") for r in records]
    _columns([r.get("recipe") if isinstance(r.get("recipe"), dict) else None for r in records], "recipe.", out)
    extra = {k: None for r in records for k in r.keys() - _KNOWN}
    if extra:
        _columns([{k: r[k] for k in r.keys() - _KNOWN} for r in records], "", out)
    out["path"] = list(paths)
    return out


class _OtherShape(Exception):
    pass


def _shape_of(rec: dict) -> tuple[list[str], list[str], list[str]] | None:
    """The shape of ``rec`` as code: (column names, the expression of each name's value, the
    statements that raise where a record ``r`` has another shape). They read every key of ``rec``
    with ``[]`` and compare the size of every object, so a record that passes has exactly rec's
    keys at every level. None where the generic path must decide (a primary_metric that is not an
    object)."""
    names: list[str] = []
    values: list[str] = []
    body: list[str] = [f"if len(r) != {len(rec)}: raise Other"]
    counter = iter(range(1 << 30))

    def obj(expr: str, node: dict, prefix: str) -> None:
        """Every field under the object ``expr`` (shaped like ``node``), named under ``prefix``."""
        var = f"v{next(counter)}"
        body.append(f"{var} = {expr}")
        body.append(f"if type({var}) is not dict or len({var}) != {len(node)}: raise Other")
        fields(var, node, prefix)

    def fields(var: str, node: dict, prefix: str) -> None:
        for k, v in node.items():
            if type(v) is dict and v:
                obj(f"{var}[{k!r}]", v, f"{prefix}{k}.")
            elif type(v) is dict:   # an empty object adds no column (as in _columns)
                body.append(f"if {var}[{k!r}] != {{}} or type({var}[{k!r}]) is not dict: raise Other")
            else:
                names.append(prefix + k)
                values.append(f"{var}[{k!r}]")

    for k in (*ID, "status", "reason"):
        names.append(k)
        values.append(f"r[{k!r}]" if k in rec else "None")
    pm = rec.get("primary_metric")
    if type(pm) is dict and pm:
        var = f"v{next(counter)}"
        body += [f"{var} = r['primary_metric']",
                 f"if type({var}) is not dict or len({var}) != {len(pm)}: raise Other"]
        for key, name in _PRIMARY:
            names.append(name)
            values.append(f"{var}[{key!r}]" if key in pm else "None")
    elif pm:                        # the generic path's error, not a shape of ours
        return None
    else:
        if "primary_metric" in rec:
            body.append("if r['primary_metric']: raise Other")
        for _, name in _PRIMARY:
            names.append(name)
            values.append("None")
    for section in (*_SECTIONS, "recipe"):
        if section not in rec:
            continue
        v = rec[section]
        if type(v) is dict and v:
            obj(f"r[{section!r}]", v, section + ".")
        else:                       # not an object, or an empty one: no column, as in the generic path
            body.append(f"if type(r[{section!r}]) is dict and r[{section!r}]: raise Other")
    names.append("recipe_hash")
    values.append("r['recipe_hash']" if "recipe_hash" in rec else "None")
    fields("r", {k: v for k, v in rec.items() if k not in _KNOWN}, "")
    if len(set(names)) != len(names) or "path" in names:
        return None
    return names, values, body


def _function(body: list[str], values: list[str] | None):
    """``body`` then ``return (values)`` (or nothing) as a function of one record ``r``."""
    ret = "return" if values is None else f"return ({', '.join(values)}{',' if len(values) == 1 else ''})"
    source = "def read(r):\n" + "".join(f"    {line}\n" for line in body) + f"    {ret}\n"
    scope = {"Other": _OtherShape}
    exec(compile(source, "<metrics.json shape>", "exec"), scope)  # noqa: S102 - built from JSON keys by repr
    return scope["read"]


def _by_shape(records: list[dict], paths: list[str]) -> dict[str, list] | None:
    """The shape path; None where the generic path must flatten the records instead. Each record
    is read by the reader of its shape (found by trying them, the last one first)."""
    shapes: list[tuple] = []         # (shape, reader, index of its first record)
    of: list[int] = []               # each record's shape
    rows: list[tuple] = []
    current = -1
    for i, r in enumerate(records):
        for k in ([current] if current >= 0 else []) + list(range(len(shapes))):
            try:
                row = shapes[k][1](r)
            except (_OtherShape, KeyError, TypeError):
                continue
            current = k
            break
        else:
            shape = _shape_of(r) if len(shapes) < MAX_SHAPES else None
            if shape is None:
                return None
            shapes.append((shape, _function(shape[2], shape[1]), i))
            current = len(shapes) - 1
            row = shapes[current][1](r)
        of.append(current)
        rows.append(row)
    if not shapes:
        return None
    order = list(flatten_generic([records[s[2]] for s in shapes], [paths[s[2]] for s in shapes]))[:-1]
    if {n for (names, _, _), _, _ in shapes for n in names} != set(order):
        return None
    columns = _interleave(shapes, of, rows, order)
    out = {}
    for name, col in zip(order, columns):
        if name not in _RAW:
            types = set(map(type, col))
            if dict in types:       # an object where the first record of its shape had a value
                return None
            if list in types:
                col = _json_lists(col)
        out[name] = col
    out["path"] = list(paths)
    return out


def _interleave(shapes: list[tuple], of: list[int], rows: list[tuple], order: list[str]) -> list[list]:
    """Each column in record order from the rows of every shape: a shape's rows become its columns
    in one transposition, and a column is the concatenation of the runs of consecutive records of
    one shape (a leaderboard's records come in long runs: a task's ok runs, with failures between)."""
    n_shapes = len(shapes)
    if n_shapes == 1:
        by_name = dict(zip(shapes[0][0][0], map(list, zip(*rows))))
        return [by_name[n] for n in order]
    runs: list[list[int]] = []       # [shape, first of its rows, count]
    taken = [0] * n_shapes
    for k in of:
        if runs and runs[-1][0] == k:
            runs[-1][2] += 1
        else:
            runs.append([k, taken[k], 1])
        taken[k] += 1
    per_shape: list[list] = [[] for _ in range(n_shapes)]
    for k, row in zip(of, rows):
        per_shape[k].append(row)
    by_name = [dict(zip(shape[0][0], zip(*part))) for shape, part in zip(shapes, per_shape)]
    nones = (None,) * max(taken)
    columns = []
    for name in order:
        parts = [b.get(name) for b in by_name]
        col: list = []
        for k, start, count in runs:
            part = parts[k]
            col.extend(nones[:count] if part is None else part[start:start + count])
        columns.append(col)
    return columns


def records_to_columns(records: list[dict], paths: list[str]) -> dict[str, list]:
    """The leaderboard's columns from metrics.json records: by shape, or section by section."""
    return _by_shape(records, paths) or flatten_generic(records, paths)
