"""The end-of-run summary: every failed job with its reason and where its traceback is.

A job that fails inside (a method that raises, a bad file) still writes its record with status
`failed`, so Snakemake itself sees success; without this block a broken method printed one line and
then "100% done". Under `strict: true` any failure also makes the run's exit status non-zero.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from . import grid
from .records import wrong_cell

MAX_LINES = 40  # beyond this, cells failing for the same reason are counted, not listed


def _read(path: Path) -> tuple[dict | None, str | None]:
    try:
        rec = json.loads(path.read_text())
    except FileNotFoundError:
        return None, "missing"
    except (OSError, ValueError) as exc:
        return None, f"unreadable ({type(exc).__name__}: {exc})"
    return (rec, None) if isinstance(rec, dict) else (None, "not a JSON object")


def _traceback(folder: Path) -> str:
    tb = folder / "traceback.txt"
    return f" (traceback: {tb})" if tb.is_file() else ""


def pretrain_record(results: str | Path, dataset: str, method: str) -> Path:
    """Where a pretraining run's record is (the pretrain rule's output); ``method`` is the folder name,
    the track's tag included (``clap-budget``)."""
    return grid.pretrain_record(results, dataset, method)


def failed_jobs(results: str | Path, cells, pretraining: dict[str, list[str]], log_of=None) -> list[tuple[str, str]]:
    """(what, why) of every failed or missing pretraining run and cell.

    ``pretraining``: dataset -> the methods pretrained on it; ``log_of(kind, **ids)``: a job's log path.
    """
    results, out = Path(results), []
    for dataset, methods in pretraining.items():
        for method in methods:
            record = pretrain_record(results, dataset, method)
            rec, err = _read(record)
            what = f"pretrain {dataset}/{method}"
            if err:
                log = f"; log: {log_of('pretrain', dataset=dataset, method=method)}" if log_of else ""
                out.append((what, f"{record}: {err}{log}"))
            elif rec.get("status") != "ok":
                out.append((what, f"{rec.get('reason')}{_traceback(record.parent)}"))
    for cell in cells:
        path = cell.metrics_path(results)
        rec, err = _read(path)
        what = (f"finetune {cell.dataset}/{cell.task}/{cell.engine}/{cell.method}{grid.track_tag(cell.track)}/"
                f"{cell.split_tag}/seed{cell.seed}")
        if err:
            log = f"; log: {log_of('finetune', cell=cell)}" if log_of else ""
            out.append((what, f"{path}: {err}{log}"))
        elif wrong_cell(rec, path):
            out.append((what, wrong_cell(rec, path)))
        elif rec.get("status") != "ok":
            out.append((what, f"{rec.get('reason')}{_traceback(path.parent)}"))
    return out


def summary_lines(failed: list[tuple[str, str]], total: int) -> list[str]:
    if not failed:
        return [f"xmbench: all {total} jobs ok"]
    lines = [f"xmbench: {len(failed)} of {total} jobs FAILED"]
    if len(failed) <= MAX_LINES:
        return lines + [f"  {what}: {why}" for what, why in failed]
    by_reason: dict[str, list[str]] = {}
    for what, why in failed:
        by_reason.setdefault(why, []).append(what)
    for why, whats in by_reason.items():
        more = f" and {len(whats) - 1} more" if len(whats) > 1 else ""
        lines.append(f"  {whats[0]}{more}: {why}")
    return lines


def report(failed: list[tuple[str, str]], total: int, strict: bool, stream=None) -> None:
    """Print the block; under strict, exit non-zero when anything failed."""
    stream = stream or sys.stderr
    print("\n".join(summary_lines(failed, total)), file=stream, flush=True)
    if failed and strict:
        print("xmbench: strict is set (config field 'strict'): exiting with status 1", file=stream, flush=True)
        raise SystemExit(1)
