"""Waymo detection mAP / mAPH at LEVEL_1 and LEVEL_2 with waymo_open_dataset's own metric op, and 3D seg mIoU.

Why a wrapper: Waymo numbers are only comparable to published ones when Waymo's C++ matcher and
AP integration compute them, and that op lives in the Waymo environment (``.venv-waymo``); JSON
in and out keeps the finetuning engines free of TensorFlow.

    .venv-waymo/bin/python -m xmbench.data.waymo.tf.metrics --gt gt.json --pred pred.json --out metrics.json
    .venv-waymo/bin/python -m xmbench.data.waymo.tf.metrics --seg seg.json --out metrics.json

``gt.json`` has the layout of the converter's ``labels.json`` (which can be passed as it is):
``{"frames": {token: {"boxes": [{"center": [x, y, z], "wlh": [w, l, h], "yaw": r, "name": "Vehicle"
| "Pedestrian" | "Cyclist" (or "type": "TYPE_VEHICLE" ...), "difficulty": 0|1|2, "num_lidar_pts": n}]}}}``
(difficulty, num_lidar_pts and "velocity" optional). ``pred.json`` is the same with a "score"
in [0, 1] per box. Either may instead be a serialized ``metrics_pb2.Objects`` (``.bin``), the
format of Waymo's own tools. Other classes (signs, unknown) are ignored.

Ground truth difficulty follows Waymo's rule: a box is LEVEL_2 when labelled so or when it has
at most 5 LiDAR points, LEVEL_1 otherwise; boxes without any LiDAR point are not evaluated
(as OpenPCDet's Waymo evaluation does). IoU thresholds are Waymo's: 0.7 Vehicle, 0.5 others.

``seg.json``: ``{"dataroot": optional folder, "frames": {token: {"gt": path, "pred": path}}}``; gt
files are the converter's lidarseg ``.npy`` ((N, 2) instance, class) or (N,) classes, predictions
(N,) classes in Waymo's 23-class index; points whose ground truth is TYPE_UNDEFINED are ignored.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off stderr

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from waymo_open_dataset import label_pb2  # noqa: E402
from waymo_open_dataset.metrics.ops import py_metrics_ops  # noqa: E402
from waymo_open_dataset.metrics.python import config_util_py  # noqa: E402
from waymo_open_dataset.protos import breakdown_pb2, metrics_pb2, segmentation_pb2  # noqa: E402

from ....atomic import write_json  # noqa: E402
from ....errors import BenchError  # noqa: E402
from .convert import seg_class_names  # noqa: E402

Label = label_pb2.Label
CLASSES = {"Vehicle": Label.TYPE_VEHICLE, "Pedestrian": Label.TYPE_PEDESTRIAN, "Cyclist": Label.TYPE_CYCLIST}
IOU_THRESHOLDS = {Label.TYPE_VEHICLE: 0.7, Label.TYPE_PEDESTRIAN: 0.5, Label.TYPE_CYCLIST: 0.5}
LEVELS = {"LEVEL_1": Label.LEVEL_1, "LEVEL_2": Label.LEVEL_2}
MAX_LEVEL_2_POINTS = 5


def detection_config() -> metrics_pb2.Config:
    """Waymo's 3D detection protocol, broken down by object type only (no range breakdown)."""
    config = metrics_pb2.Config()
    config.breakdown_generator_ids.append(breakdown_pb2.Breakdown.OBJECT_TYPE)
    config.difficulties.add().levels.extend([Label.LEVEL_1, Label.LEVEL_2])
    config.matcher_type = metrics_pb2.MatcherProto.TYPE_HUNGARIAN
    # One threshold per Label.Type value, in enum order (UNKNOWN and SIGN are never evaluated here).
    config.iou_thresholds.extend([IOU_THRESHOLDS.get(v, 0.0) for v in range(max(Label.Type.values()) + 1)])
    config.box_type = Label.Box.TYPE_3D
    config.score_cutoffs.extend([i / 100 for i in range(100)] + [1.0])
    return config


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def _objects_to_frames(objects: metrics_pb2.Objects) -> dict:
    frames: dict = {}
    for o in objects.objects:
        b = o.object.box
        frames.setdefault(f"{o.context_name}_{o.frame_timestamp_micros}", {"boxes": []})["boxes"].append({
            "center": [b.center_x, b.center_y, b.center_z], "wlh": [b.width, b.length, b.height],
            "yaw": b.heading, "type": Label.Type.Name(o.object.type), "score": o.score,
            "difficulty": o.object.detection_difficulty_level,
            "num_lidar_pts": o.object.num_lidar_points_in_box or None,
            "velocity": [o.object.metadata.speed_x, o.object.metadata.speed_y]})
    return frames


def load_frames(path: str | Path) -> dict:
    """{token: {"boxes": [...]}} from our JSON layout or a serialized metrics_pb2.Objects."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    if path.suffix == ".bin":
        try:
            return _objects_to_frames(metrics_pb2.Objects.FromString(path.read_bytes()))
        except DecodeError as exc:
            raise BenchError(f"{path}: not a serialized metrics_pb2.Objects ({exc})") from None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BenchError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("frames"), dict):
        raise BenchError(f"{path}: expected an object with 'frames': {{token: {{'boxes': [...]}}}}")
    return data["frames"]


def _class_of(box: dict) -> int | None:
    if box.get("type") is not None:
        return Label.Type.Value(box["type"]) if box["type"] in Label.Type.keys() else None
    return CLASSES.get(box.get("name"))


def _box_row(box: dict, where: str) -> list[float]:
    """Waymo's 7-DoF box: centre, length, width, height, heading."""
    try:
        (x, y, z), (w, l, h), yaw = box["center"], box["wlh"], box["yaw"]
        row = [float(v) for v in (x, y, z, l, w, h, yaw)]
    except (KeyError, TypeError, ValueError) as exc:
        raise BenchError(f"{where}: needs center [x, y, z], wlh [w, l, h] and yaw ({exc!r})") from None
    if not np.all(np.isfinite(row)) or min(l, w, h) <= 0:
        raise BenchError(f"{where}: box values must be finite with positive sizes, got {row}")
    return row


def _difficulty(box: dict) -> int | None:
    """LEVEL_1 / LEVEL_2 by Waymo's rule, None for a box without points (not evaluated)."""
    points = box.get("num_lidar_pts")
    if points is not None and int(points) == 0:
        return None
    if int(box.get("difficulty") or 0) == Label.LEVEL_2 or (points is not None and int(points) <= MAX_LEVEL_2_POINTS):
        return Label.LEVEL_2
    return Label.LEVEL_1


def gather(frames: dict, frame_ids: dict[str, int], source: str, is_gt: bool) -> dict[str, np.ndarray]:
    """Flat arrays of the evaluated classes, as the metric op takes them."""
    ids, rows, types, extra, speeds = [], [], [], [], []
    for token, record in frames.items():
        boxes = record.get("boxes") if isinstance(record, dict) else None
        if not isinstance(boxes, list):
            raise BenchError(f"{source}: frame {token}: expected {{'boxes': [...]}}")
        for i, box in enumerate(boxes):
            where = f"{source}: frame {token} box {i}"
            cls = _class_of(box)
            if cls not in IOU_THRESHOLDS:
                continue
            if is_gt:
                level = _difficulty(box)
                if level is None:
                    continue
                extra.append(level)
                speeds.append([float(v) for v in (box.get("velocity") or [0.0, 0.0])[:2]])
            else:
                score = box.get("score")
                if not isinstance(score, (int, float)) or not 0.0 <= score <= 1.0:
                    raise BenchError(f"{where}: score must be a number in [0, 1], got {score!r}")
                extra.append(float(score))
            ids.append(frame_ids[token])
            rows.append(_box_row(box, where))
            types.append(cls)
    out = {"frame_id": np.asarray(ids, np.int64), "bbox": np.asarray(rows, np.float32).reshape(-1, 7),
           "type": np.asarray(types, np.uint8)}
    if is_gt:
        out["difficulty"] = np.asarray(extra, np.uint8)
        out["speed"] = np.asarray(speeds, np.float32).reshape(-1, 2)
    else:
        out["score"] = np.asarray(extra, np.float32)
    return out


# --------------------------------------------------------------------------------------------
# Metrics
# --------------------------------------------------------------------------------------------

def detection_metrics(gt_frames: dict, pred_frames: dict, gt_source: str = "gt", pred_source: str = "pred") -> dict:
    """AP and APH per class and level from Waymo's op; mAP(H) averages the classes with ground truth."""
    unknown = sorted(set(pred_frames) - set(gt_frames))
    if unknown:
        raise BenchError(f"{pred_source}: {len(unknown)} frame(s) not in {gt_source}, e.g. {unknown[0]}")
    frame_ids = {token: i for i, token in enumerate(sorted(gt_frames))}
    gt = gather(gt_frames, frame_ids, gt_source, is_gt=True)
    pred = gather(pred_frames, frame_ids, pred_source, is_gt=False)
    config = detection_config()
    ap, aph, *_ = py_metrics_ops.detection_metrics(
        prediction_bbox=tf.constant(pred["bbox"]), prediction_type=tf.constant(pred["type"]),
        prediction_score=tf.constant(pred["score"]), prediction_frame_id=tf.constant(pred["frame_id"]),
        prediction_overlap_nlz=tf.zeros(len(pred["score"]), tf.bool),
        ground_truth_bbox=tf.constant(gt["bbox"]), ground_truth_type=tf.constant(gt["type"]),
        ground_truth_frame_id=tf.constant(gt["frame_id"]), ground_truth_difficulty=tf.constant(gt["difficulty"]),
        ground_truth_speed=tf.constant(gt["speed"]), config=config.SerializeToString())
    names = config_util_py.get_breakdown_names_from_config(config)
    raw = {name: {"AP": float(a), "APH": float(h)} for name, a, h in zip(names, ap.numpy(), aph.numpy())}
    per_class, summary = {}, {}
    for cls_name, cls in CLASSES.items():
        per_class[cls_name] = {}
        for level_name, level in LEVELS.items():
            # LEVEL_2 includes LEVEL_1 boxes, as Waymo defines it.
            n_gt = int(np.sum((gt["type"] == cls) & (gt["difficulty"] <= level)))
            key = f"OBJECT_TYPE_{Label.Type.Name(cls)}_{level_name}"
            ok = n_gt > 0
            per_class[cls_name][level_name] = {"AP": raw[key]["AP"] if ok else None,
                                               "APH": raw[key]["APH"] if ok else None, "num_gt": n_gt}
    for level_name, short in (("LEVEL_1", "L1"), ("LEVEL_2", "L2")):
        present = [c for c in CLASSES if per_class[c][level_name]["num_gt"] > 0]
        for metric in ("AP", "APH"):
            values = [per_class[c][level_name][metric] for c in present]
            summary[f"m{metric}_{short}"] = float(np.mean(values)) if values else None
        summary[f"classes_{short}"] = present
    return {**summary, "per_class": per_class, "breakdowns": raw, "num_frames": len(gt_frames),
            "num_gt_boxes": int(len(gt["type"])), "num_pred_boxes": int(len(pred["type"])),
            "iou_thresholds": {c: IOU_THRESHOLDS[v] for c, v in CLASSES.items()}}


def _load_labels(path: Path, column: int) -> np.ndarray:
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise BenchError(f"{path}: not a readable .npy file ({exc})") from None
    if arr.ndim == 2:
        arr = arr[:, column]
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise BenchError(f"{path}: expected integer class labels, (N,) or (N, 2), got {arr.dtype} {arr.shape}")
    return arr.astype(np.int64)


def segmentation_miou(pairs: list[tuple[Path, Path]]) -> dict:
    """IoU per Waymo seg class over all points of all frames; the mean covers classes seen in gt or prediction."""
    names = seg_class_names()
    k = len(names)
    confusion = np.zeros((k, k), dtype=np.int64)
    for gt_path, pred_path in pairs:
        gt, pred = _load_labels(gt_path, 1), _load_labels(pred_path, 1)
        if len(gt) != len(pred):
            raise BenchError(f"{pred_path}: {len(pred)} predictions for the {len(gt)} points of {gt_path}")
        if gt.size and (gt.min() < 0 or gt.max() >= k or pred.min() < 0 or pred.max() >= k):
            raise BenchError(f"{pred_path}: class index outside Waymo's 0..{k - 1}")
        keep = gt != segmentation_pb2.Segmentation.TYPE_UNDEFINED
        confusion += np.bincount(gt[keep] * k + pred[keep], minlength=k * k).reshape(k, k)
    tp = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - tp
    per_class = {names[c]: (float(tp[c] / union[c]) if union[c] else None) for c in range(1, k)}
    values = [v for v in per_class.values() if v is not None]
    return {"mIoU": float(np.mean(values)) if values else None, "per_class": per_class,
            "num_points": int(confusion.sum())}


def _seg_pairs(path: Path) -> list[tuple[Path, Path]]:
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        data = json.loads(path.read_text())
        root = Path(data.get("dataroot") or path.parent)
        return [(root / rec["gt"], root / rec["pred"]) for rec in data["frames"].values()]
    except (json.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise BenchError(f"{path}: expected {{'frames': {{token: {{'gt': path, 'pred': path}}}}}} ({exc!r})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xmbench.data.waymo.tf.metrics",
                                     description="Waymo detection mAP/mAPH (L1, L2) and segmentation mIoU.")
    parser.add_argument("--gt", help="ground-truth boxes: labels.json layout or metrics_pb2.Objects .bin")
    parser.add_argument("--pred", help="predicted boxes with scores, same layouts")
    parser.add_argument("--seg", help="segmentation pairs: {'frames': {token: {'gt': path, 'pred': path}}}")
    parser.add_argument("--out", required=True, help="metrics JSON to write")
    args = parser.parse_args(argv)
    if bool(args.gt) != bool(args.pred) or not (args.gt or args.seg):
        parser.error("give --gt and --pred (detection), --seg (segmentation), or both")
    try:
        result = {}
        if args.gt:
            result["detection"] = detection_metrics(load_frames(args.gt), load_frames(args.pred), args.gt, args.pred)
        if args.seg:
            result["segmentation"] = segmentation_miou(_seg_pairs(Path(args.seg)))
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    write_json(args.out, result)
    det = result.get("detection")
    if det:
        print(f"mAP L1 {det['mAP_L1']}, mAPH L1 {det['mAPH_L1']}, mAP L2 {det['mAP_L2']}, mAPH L2 {det['mAPH_L2']}")
    if "segmentation" in result:
        print(f"mIoU {result['segmentation']['mIoU']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
