"""Labelled subsets: deterministic, nested and hashed.

Every training frame (or scene) gets a rank from sha256(seed:token); a fraction takes the lowest
ranks. The same ranking serves every fraction, so the 1% set lies inside the 5% set, and the file's
sha256 goes into each run's provenance so two results can be checked to share their labels.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from .atomic import sha256_file, write_text
from .errors import BenchError


def _rank(seed: int, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def select(frames: list[dict], fraction: float, seed: int, level: str = "frame") -> list[str]:
    """Tokens of the labelled subset of the training frames, in index order."""
    if not 0 < fraction <= 1:
        raise BenchError(f"fraction must be in (0, 1], got {fraction}")
    train = [f for f in frames if f["split"] == "train"]
    if not train:
        raise BenchError("the index has no training frame")
    if level == "frame":
        n = max(1, math.ceil(fraction * len(train) - 1e-9))
        chosen = set(sorted((f["token"] for f in train), key=lambda t: _rank(seed, t))[:n])
    elif level == "scene":
        scenes = sorted({f["scene"] for f in train}, key=lambda s: _rank(seed, s))
        per_scene = {s: sum(f["scene"] == s for f in train) for s in scenes}
        target, picked, count = fraction * len(train), [], 0
        for s in scenes:
            if picked and count >= target - 1e-9:
                break
            picked.append(s)
            count += per_scene[s]
        chosen = {f["token"] for f in train if f["scene"] in set(picked)}
    else:
        raise BenchError(f"split level must be 'frame' or 'scene', got {level!r}")
    return [f["token"] for f in train if f["token"] in chosen]


def write_split(path: str | Path, tokens: list[str]) -> str:
    """One token per line; returns the file's sha256 (also written beside it as <file>.sha256)."""
    path = Path(path)
    write_text(path, "".join(t + "\n" for t in tokens))
    digest = sha256_file(path)
    write_text(path.with_suffix(path.suffix + ".sha256"), f"{digest}  {path.name}\n")
    return digest


def read_split(path: str | Path) -> tuple[list[str], str]:
    """Tokens and sha256, refusing a file whose recorded hash no longer matches."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: split file missing (run the label_split rule)")
    digest = sha256_file(path)
    side = path.with_suffix(path.suffix + ".sha256")
    if side.is_file() and side.read_text().split()[0] != digest:
        raise BenchError(f"{path}: contents changed since it was written (sha256 mismatch with {side.name}); "
                         "delete both files and re-run")
    tokens = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return tokens, digest
