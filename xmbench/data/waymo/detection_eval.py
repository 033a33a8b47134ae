"""Detections -> Waymo's metric ops (in the Waymo environment) -> metrics.

Boxes stay in the vehicle frame, which is the "lidar" frame of a converted Waymo index, as the
ground truth in labels.json is; the official evaluation compares boxes per frame in that frame.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ...atomic import write_json
from .env import run_module

LEVELS = {"l1": "LEVEL_1", "l2": "LEVEL_2"}


def prediction_frames(frames: list[dict], detections: list[dict], class_names) -> dict:
    """waymo.tf.metrics' input: every val frame (also those without a detection), boxes as Waymo
    takes them (centre, width/length/height, heading) with a score in [0, 1]."""
    out = {}
    for frame, det in zip(frames, detections):
        rows = []
        for box, score, label in zip(det["boxes"].astype(np.float64), det["scores"], det["labels"]):
            rows.append({"center": box[:3].tolist(), "wlh": [box[4], box[3], box[5]], "yaw": float(box[6]),
                         "name": class_names[int(label) - 1], "score": float(np.clip(score, 0.0, 1.0))})
        out[frame["token"]] = {"boxes": rows}
    return out


def summary_to_metrics(det: dict) -> dict:
    """Our metrics dict from waymo.tf.metrics' detection result: the four headline numbers and, per
    class, AP and APH at both levels (None for a class without ground truth at that level)."""
    m = {k: det[k] for k in ("mAP_L1", "mAPH_L1", "mAP_L2", "mAPH_L2")}
    for short, level in LEVELS.items():
        for metric in ("AP", "APH"):
            m[f"{metric.lower()}_{short}_per_class"] = {c: det["per_class"][c][level][metric] for c in det["per_class"]}
    m["num_gt_per_class_l2"] = {c: det["per_class"][c]["LEVEL_2"]["num_gt"] for c in det["per_class"]}
    m["classes_in_val_gt"] = det["classes_L2"]
    m["num_val_gt_boxes"] = det["num_gt_boxes"]
    m["num_pred_boxes"] = det["num_pred_boxes"]
    m["iou_thresholds"] = det["iou_thresholds"]
    return m


def evaluate_waymo(ctx, frames: list[dict], detections: list[dict], class_names, out_dir: Path) -> dict:
    """Write ground truth (val frames only) and predictions, run Waymo's metric ops, read them back."""
    out_dir = Path(out_dir)
    gt = {"frames": {f["token"]: {"boxes": ctx.labels["frames"][f["token"]]["boxes"]} for f in frames}}
    write_json(out_dir / "gt.json", gt, indent=None)
    write_json(out_dir / "pred.json", {"frames": prediction_frames(frames, detections, class_names)}, indent=None)
    run_module(ctx.waymo_python, "waymo.tf.metrics", ["--gt", out_dir / "gt.json", "--pred", out_dir / "pred.json",
                                                   "--out", out_dir / "waymo_detection.json"])
    return summary_to_metrics(json.loads((out_dir / "waymo_detection.json").read_text())["detection"])
