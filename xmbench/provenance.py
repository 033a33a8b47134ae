"""Where a result came from: code version, packages, machine and scheduler job."""
from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata

from .config import REPO

PACKAGES = ("torch", "spconv-cu120", "nuscenes-devkit", "numpy", "snakemake", "pandas")


def git_state() -> dict:
    def run(*args):
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = run("rev-parse", "HEAD") or None
    dirty = bool(run("status", "--porcelain", "--untracked-files=no")) if commit else None
    return {"git_commit": commit, "git_dirty": dirty}


def package_versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def provenance() -> dict:
    return {**git_state(), "packages": package_versions(), "python": platform.python_version(),
            "host": platform.node(), "slurm_job_id": os.environ.get("SLURM_JOB_ID")}
