"""Ground-truth sampling (SECOND/OpenPCDet's ``gt_sampling``) from the run's labelled split only.

The database is built from the frames of ``train_tokens`` (the split file's tokens) and nothing
else: a 1% run never pastes an object whose label belongs to the other 99%. Every entry records
the token of the frame it was cut from, so a test can check it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.frames import index_format, load_points
from .boxes import frame_boxes, points_in_box


@dataclass
class GTDatabase:
    class_names: tuple[str, ...]
    entries: dict[str, list[dict]] = field(default_factory=dict)  # name -> [{box, label, points, token}]

    @property
    def source_tokens(self) -> set[str]:
        return {e["token"] for es in self.entries.values() for e in es}

    def counts(self) -> dict[str, int]:
        return {k: len(v) for k, v in self.entries.items()}


def build_database(index: dict, labels: dict, train_tokens: list[str], class_names, min_points: int = 5
                   ) -> GTDatabase:
    """Cut every labelled object of the split's frames out of its cloud (points relative to the
    box centre), keeping objects with at least ``min_points`` points (OpenPCDet's
    ``filter_by_min_points``)."""
    db = GTDatabase(tuple(class_names))
    frames = {f["token"]: f for f in index["frames"]}
    root = Path(index["dataroot"])
    for token in train_tokens:
        points, _ = load_points(root, frames[token], index_format(index))
        boxes, labs = frame_boxes(labels["frames"][token]["boxes"], list(class_names))
        for box, lab in zip(boxes, labs):
            inside = points_in_box(points, box)
            if inside.sum() < min_points:
                continue
            pts = points[inside].copy()
            pts[:, :3] -= box[:3]
            name = class_names[lab - 1]
            db.entries.setdefault(name, []).append({"box": box, "label": int(lab), "points": pts, "token": token})
    return db


def _collides(box: np.ndarray, others: np.ndarray) -> bool:
    """Conservative BEV overlap test on the boxes' circumscribed circles."""
    if len(others) == 0:
        return False
    r = np.hypot(box[3], box[4]) / 2
    ro = np.hypot(others[:, 3], others[:, 4]) / 2
    return bool((np.hypot(others[:, 0] - box[0], others[:, 1] - box[1]) < r + ro).any())


def paste(db: GTDatabase, points: np.ndarray, boxes: np.ndarray, labels: np.ndarray, sample_groups: dict,
          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Add sampled objects to a frame: up to ``sample_groups[name]`` objects of a class in the frame
    (LIMIT_WHOLE_SCENE), each placed where it was recorded, skipped if it would overlap a box;
    scene points inside a pasted box are removed first."""
    new_boxes, new_labels, new_points = [], [], []
    all_boxes = boxes.copy()
    for name, limit in sample_groups.items():
        entries = db.entries.get(name, [])
        if not entries or name not in db.class_names:
            continue
        want = int(limit) - int((labels == db.class_names.index(name) + 1).sum())
        if want <= 0:
            continue
        for j in rng.choice(len(entries), size=min(want, len(entries)), replace=False):
            e = entries[j]
            if _collides(e["box"], all_boxes):
                continue
            all_boxes = np.concatenate([all_boxes, e["box"][None]])
            new_boxes.append(e["box"])
            new_labels.append(e["label"])
            pts = e["points"].copy()
            pts[:, :3] += e["box"][:3]
            new_points.append(pts)
    if not new_boxes:
        return points, boxes, labels
    keep = np.ones(len(points), dtype=bool)
    for b in new_boxes:
        keep &= ~points_in_box(points, b)
    points = np.concatenate([points[keep], *new_points]).astype(np.float32)
    boxes = np.concatenate([boxes, np.stack(new_boxes)]).astype(np.float32)
    labels = np.concatenate([labels, np.asarray(new_labels, dtype=np.int64)])
    return points, boxes, labels
