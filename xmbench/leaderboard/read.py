"""metrics.json files to flat columns (``a.b.c`` names), fast enough for 10,000 files.

The speed work lives here and in flatten.py (orjson, flattening by shape, no cyclic GC, forked readers):
tests/benchmarks/test_harness_scale.py holds the leaderboard build to a ratio of the bare reading.
"""
from __future__ import annotations

import json
import os

import orjson

from .flatten import records_to_columns


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


_CHUNK = 1 << 16


def _read_bytes(path: str) -> bytes:
    """A whole file by os.open/os.read: a third of the cost of a buffered ``open`` for the
    10,000 small files of a leaderboard (no file object, no buffer, no codec machinery). A read
    shorter than asked for is the end of a regular file, so a small file costs one read, not two."""
    fd = os.open(path, os.O_RDONLY)
    try:
        chunk = os.read(fd, _CHUNK)
        if len(chunk) < _CHUNK:
            return chunk
        chunks = [chunk]
        while chunk := os.read(fd, _CHUNK):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


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
