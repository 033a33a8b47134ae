"""metrics.json files to flat columns (``a.b.c`` names), fast enough for 10,000 files.

The speed work lives here alone (orjson, column-wise flattening, no cyclic GC, forked readers):
tests/benchmarks/test_harness_scale.py holds the leaderboard build to a ratio of the bare reading.
"""
from __future__ import annotations

import json
import os
from operator import itemgetter

import orjson

from .schema import ID

_SECTIONS = ("metrics", "cost", "provenance", "init")
_KNOWN = frozenset(("primary_metric", "recipe", "recipe_hash", "status", "reason") + _SECTIONS + tuple(ID))


def _parse(data: bytes, lenient: list | None = None):
    """orjson parses these files 2.3x faster than the json module (the parse is most of the reading
    cost at 10,000 files); NaN/Infinity, which our writer never emits but a hand-edited file may
    hold, fall back to the json module, which accepts them (and ``lenient`` gets a mark)."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        rec = json.loads(data)
        if lenient is not None:
            lenient.append(True)
        return rec


def _read_bytes(path: str) -> bytes:
    """A whole file by os.open/os.read: a third of the cost of a buffered ``open`` for the
    10,000 small files of a leaderboard (no file object, no buffer, no codec machinery)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_records(paths, lenient: list | None = None) -> list[tuple[str, dict | None, str | None]]:
    """(path, record or None, error or None) for each path; a missing or broken file is not fatal.
    ``lenient`` gets one entry per file only the json module could parse (NaN or Infinity in it)."""
    out = []
    for p in paths:
        p = str(p)
        try:
            out.append((p, _parse(_read_bytes(p), lenient), None))
        except FileNotFoundError:
            out.append((p, None, "missing"))
        except (OSError, ValueError) as exc:
            out.append((p, None, f"unreadable metrics.json ({type(exc).__name__}: {exc})"))
    return out


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
    """Flatten aligned records column by column (``a.b.c`` names). Records of one engine share
    their keys, so one C-level ``itemgetter`` call per record reads a whole section: this keeps
    10,000 files cheap (see tests/benchmarks/test_harness_scale.py)."""
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


def records_to_columns(records: list[dict], paths: list[str]) -> dict[str, list]:
    """The leaderboard's columns from metrics.json records (``metrics.miou``, ``cost.wall_seconds``, ...)."""
    out: dict[str, list] = {k: [r.get(k) for r in records] for k in ID + ["status", "reason"]}
    pms = [r.get("primary_metric") or {} for r in records]
    out["primary_metric"] = [pm.get("name") for pm in pms]
    out["primary_unit"] = [pm.get("unit") for pm in pms]
    out["primary_value"] = [pm.get("value") for pm in pms]
    for section in _SECTIONS:
        _columns([r.get(section) if isinstance(r.get(section), dict) else None for r in records], section + ".", out)
    out["recipe_hash"] = [r.get("recipe_hash") for r in records]
    _columns([r.get("recipe") if isinstance(r.get("recipe"), dict) else None for r in records], "recipe.", out)
    extra = {k: None for r in records for k in r.keys() - _KNOWN}
    if extra:
        _columns([{k: r[k] for k in r.keys() - _KNOWN} for r in records], "", out)
    out["path"] = list(paths)
    return out


class NoGC:
    """The loader allocates ~100 containers per file and keeps them all: Python's cyclic collector
    would re-traverse that growing heap again and again (it dominated the time at 10,000 files)."""

    def __enter__(self):
        import gc

        self.was = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self.was:
            gc.enable()


def _read_chunk(paths: list[str], lenient: list | None = None) -> tuple[dict | None, list[tuple[str, str]]]:
    with NoGC():
        records, ok_paths, failures = [], [], []
        for path, rec, err in read_records(paths, lenient):
            if isinstance(rec, dict):
                records.append(rec)
                ok_paths.append(path)
            else:
                failures.append((path, err or "not a JSON object"))
        return (records_to_columns(records, ok_paths) if records else None), failures


PARALLEL_MIN_FILES = 4000


def idle_cores(samples: int = 5) -> int:
    """Cores no other process is running on right now: the least of a few readings, 1 ms apart, of
    /proc/loadavg's count of runnable tasks (this one included; one reading also catches short
    tasks, a shell's or the kernel's, that come and go). Forking readers onto cores that are busy
    costs more than it gains (10,000 files beside one CPU-bound process on 2 cores: 1.09 s serial,
    1.01-1.3 s forked, and worse inside a large process); every core where the file does not exist."""
    import time

    cores = os.cpu_count() or 1
    running = []
    try:
        for i in range(samples):
            if i:
                time.sleep(0.001)
            with open("/proc/loadavg") as f:
                running.append(int(f.read().split()[3].split("/")[0]))
    except (OSError, ValueError, IndexError):
        return cores
    return max(1, cores - max(0, min(running) - 1))


def _merge_columns(parts: list[dict | None]) -> dict | None:
    parts = [p for p in parts if p]
    if len(parts) <= 1:
        return parts[0] if parts else None
    names = list(dict.fromkeys(k for p in parts for k in p))
    out = {}
    for k in names:
        col = []
        for p in parts:
            v = p.get(k)
            col.extend(v if v is not None else [None] * len(p["path"]))
        out[k] = col
    return out


def _forked_chunk(paths: list[str]) -> tuple[int, int]:
    """Fork a child that reads ``paths`` and sends its (columns, failures) through a pipe; (pid, fd).
    Forked before the parent has read anything, the child shares a small heap, and flat columns
    (orjson, or pickle where orjson would lose a NaN) are a fraction of the JSON they came from."""
    import pickle

    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, send, leave without running any cleanup
        code = 1
        try:
            os.close(r)
            lenient: list = []
            columns, failures = _read_chunk(paths, lenient)
            data = None
            if not lenient:  # orjson moves flat columns several times faster than pickle, but writes NaN as null
                try:
                    data = b"J" + orjson.dumps({"columns": columns, "failures": failures})
                except TypeError:   # an int beyond 64 bits
                    pass
            if data is None:
                data = b"P" + pickle.dumps((columns, failures), protocol=pickle.HIGHEST_PROTOCOL)
            with os.fdopen(w, "wb") as f:
                f.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(pid: int, fd: int, paths: list[str]):
    """A forked reader's (columns, failures); the chunk is read here if the child failed."""
    import pickle

    with os.fdopen(fd, "rb") as f:
        data = f.read()
    _, status = os.waitpid(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0 or not data:
        return _read_chunk(paths)
    if data[:1] == b"P":
        return pickle.loads(data[1:])
    got = orjson.loads(data[1:])
    return got["columns"], [tuple(f) for f in got["failures"]]


def read_columns(paths: list[str], workers: int | None = None,
                 min_files: int | None = None) -> tuple[dict | None, list[tuple[str, str]]]:
    """Read and flatten every metrics.json into columns; (columns, [(path, error)]).

    JSON parsing is CPU-bound: above PARALLEL_MIN_FILES files the reading is split over the idle
    cores (at most 8): this process reads the first share while forked children read the others and
    send their columns back through pipes (10,000 files on 2 cores: 0.26 s against 0.32 s serial). One process where there is one core or no fork, or
    for fewer files. ``min_files`` overrides PARALLEL_MIN_FILES (tests fork on fewer)."""
    if workers is None:
        workers = min(8, idle_cores())
    if (workers < 2 or not hasattr(os, "fork")
            or len(paths) < (PARALLEL_MIN_FILES if min_files is None else min_files)):
        return _read_chunk(paths)
    chunks = [paths[i * len(paths) // workers:(i + 1) * len(paths) // workers] for i in range(workers)]
    children = []
    for chunk in chunks[1:]:
        try:
            children.append((chunk, *_forked_chunk(chunk)))
        except OSError:              # no process to spare: this one reads that share too
            children.append((chunk, None, None))
    results = [_read_chunk(chunks[0])]
    for chunk, pid, fd in children:
        results.append(_read_chunk(chunk) if pid is None else _collect(pid, fd, chunk))
    return _merge_columns([r[0] for r in results]), [f for r in results for f in r[1]]
