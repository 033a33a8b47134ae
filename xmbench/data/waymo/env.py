"""Calling the Waymo environment from the main one.

waymo-open-dataset pins TensorFlow 2.13 and numpy 1.23, which cannot share an environment with
torch and the devkit, so everything that needs it (generation, conversion, Waymo's metric ops)
runs as ``<waymo python> -m xmbench.data.<module>`` with files in and out. This module is the
one place that finds that interpreter and turns its failure into one error line.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

from ...config import REPO
from ...errors import BenchError

DEFAULT_PYTHON = REPO / ".venv-waymo" / "bin" / "python"


def waymo_python(cfg: dict) -> Path:
    """The interpreter of the config's field ``waymo.python`` (default ``.venv-waymo/bin/python``)."""
    given = (cfg.get("waymo") or {}).get("python")
    path = Path(given) if given else DEFAULT_PYTHON
    if not path.is_absolute():
        path = REPO / path
    if not path.is_file():
        field = "config field 'waymo.python'" if given else "the default Waymo environment"
        raise BenchError(f"{field}: {path} not found; run `bash envs/setup_waymo.sh` (creates .venv-waymo) "
                         "or set waymo.python to the python of an environment made from envs/waymo.yaml")
    return path


def uses_waymo(cfg: dict) -> bool:
    return any(ds["format"] == "waymo" for ds in cfg["datasets"].values())


def run_module(python: str | Path, module: str, args: list[str]) -> str:
    """Run ``python -m xmbench.data.<module> args`` from the repository; return its stdout.

    Its stderr is captured, not shown (TensorFlow's start-up warnings would bury the job log); on
    failure the BenchError carries the module's own ``error:`` line, which names the bad file or field.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([str(python), "-m", f"xmbench.data.{module}", *map(str, args)], cwd=REPO, env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        errors = [ln for ln in lines if ln.startswith("error:")]
        last = (errors or lines or [f"exit status {proc.returncode}"])[-1]
        raise BenchError(f"{module} (in the Waymo environment {python}) failed: {last.removeprefix('error: ')}")
    return proc.stdout
