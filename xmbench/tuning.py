"""The only door a tuner has to frames: the tune split, checked against the index every time.

A recipe that selects a checkpoint, a learning rate or an epoch by a score must not see the val
split, which is what the leaderboard reports: a number chosen on its own test set is optimistic, and
re-pretrained weights need their learning rates re-tuned (SLidR held train scenes out for that, as
its "parametrizing"/"verifying" splits). The tune split (``split.tune``, xmbench/splits.py) holds out
training scenes by hash, never labelled for finetuning. No recipe of the benchmark tunes yet: every
one trains a fixed schedule and is scored once; this module is what one that does must go through.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, TypeVar

from .errors import BenchError
from .splits import read_split

T = TypeVar("T")


def tune_frames(index: dict, tokens: Iterable[str], source: str = "tune split",
                labelled: Iterable[str] = ()) -> list[dict]:
    """The index frames of the tune tokens; refuses a val frame, a labelled frame or an unknown token."""
    frames = {f["token"]: f for f in index["frames"]}
    labelled = set(labelled)
    out = []
    for t in tokens:
        f = frames.get(t)
        if f is None:
            raise BenchError(f"{source}: '{t}' is no frame of the index; rebuild the tune split (split --tune)")
        if f["split"] != "train":
            raise BenchError(f"{source}: '{t}' is a {f['split']} frame; a tuner never sees the split the "
                             "leaderboard scores (tune on split.tune, held out of train)")
        if t in labelled:
            raise BenchError(f"{source}: '{t}' is also a labelled training frame; the tune split must be held "
                             "out of every labelled subset")
        out.append(f)
    if not out:
        raise BenchError(f"{source}: empty; give split.tune.fraction")
    return out


def read_tune_split(path: str | Path, index: dict, labelled: Iterable[str] = ()) -> list[dict]:
    """The tune split file (hash-checked by read_split), as frames a tuner may score on."""
    tokens, _ = read_split(path)
    return tune_frames(index, tokens, str(path), labelled)


def select_on_tune(candidates: Iterable[T], score: Callable[[T, list[dict]], float], frames: list[dict],
                   higher_is_better: bool = True) -> tuple[T, dict]:
    """The candidate (a checkpoint, an lr, an epoch) with the best score on the tune frames only.

    ``frames`` must come from tune_frames / read_tune_split; they are checked again here, so a caller
    cannot slip val frames in. Returns the winner and every candidate's score, for the run's record.
    """
    bad = [f["token"] for f in frames if f.get("split") != "train"]
    if bad:
        raise BenchError(f"select_on_tune: {len(bad)} frame(s) not from the training split (first {bad[0]}); "
                         "a tuner scores on the tune split only")
    scores: dict = {}
    best, best_score = None, None
    for c in candidates:
        s = float(score(c, list(frames)))
        scores[repr(c)] = s
        if best_score is None or (s > best_score if higher_is_better else s < best_score):
            best, best_score = c, s
    if best_score is None:
        raise BenchError("select_on_tune: no candidate to select from")
    return best, scores
