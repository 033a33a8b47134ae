"""A throwaway copy of the repository, for tests that edit code or run the DAG.

Tests never write into the source tree; a copy also lets a test edit `method.py` or a backbone and
see what Snakemake plans. The copy holds the working tree's contents (uncommitted edits included),
and the files git does not ignore but nobody committed yet; its own `xmbench` is what runs there
(`python -m` puts the working directory first on the path).
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def copy_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                           capture_output=True, check=True).stdout
    for rel in filter(None, files.decode().split("\0")):
        src = REPO / rel
        if not src.is_file():  # deleted in the working tree, or a submodule
            continue
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / rel)
    for env in (".venv", ".venv-waymo"):  # environments are found beside the repo (e.g. the Waymo python)
        if (REPO / env).is_dir() and not (dest / env).exists():
            (dest / env).symlink_to(REPO / env)
    shared = REPO.parent / "shared"
    if shared.is_dir() and not (dest.parent / "shared").exists():
        (dest.parent / "shared").symlink_to(shared)  # read-only reference data some code looks up beside the repo
    return dest
