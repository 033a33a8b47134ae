"""Boxes as arrays in OpenPCDet's layout, and the geometry every detection engine shares.

A box is ``x, y, z, dx, dy, dz, heading, vx, vy`` in the keyframe LiDAR frame, ``dx`` along the
heading (nuScenes' length ``l``), ``dy`` the width ``w``, ``dz`` the height ``h``: the layout of
OpenPCDet's ``gt_boxes`` for nuScenes (``wlh -> dx dy dz`` is ``[1, 0, 2]``).
"""
from __future__ import annotations

import math

import numpy as np


def frame_boxes(boxes: list[dict], class_names, min_points: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(N, 9) float32 boxes and (N,) 1-based labels of the boxes of ``class_names`` with at least
    ``min_points`` LiDAR points (OpenPCDet's FILTER_MIN_POINTS_IN_GT); NaN velocities become 0."""
    rows, labels = [], []
    for b in boxes:
        if b["name"] not in class_names or b.get("num_lidar_pts", 1) < min_points:
            continue
        w, l, h = b["wlh"]
        v = [0.0 if (x is None or not math.isfinite(x)) else float(x) for x in b["velocity"][:2]]
        rows.append([*b["center"], l, w, h, b["yaw"], *v])
        labels.append(class_names.index(b["name"]) + 1)
    return np.asarray(rows, dtype=np.float32).reshape(-1, 9), np.asarray(labels, dtype=np.int64)


def rot_z(yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def points_in_box(xyz: np.ndarray, box: np.ndarray, margin: float = 0.0) -> np.ndarray:
    """Mask of the points inside a box (its dx/dy/dz enlarged by ``margin`` on each side)."""
    c, s = math.cos(-box[6]), math.sin(-box[6])
    d = xyz[:, :3] - box[:3]
    lx = d[:, 0] * c - d[:, 1] * s
    ly = d[:, 0] * s + d[:, 1] * c
    return ((np.abs(lx) <= box[3] / 2 + margin) & (np.abs(ly) <= box[4] / 2 + margin)
            & (np.abs(d[:, 2]) <= box[5] / 2 + margin))


def transform_boxes(boxes: np.ndarray, matrix: np.ndarray, translation: np.ndarray) -> np.ndarray:
    """Apply a point augmentation ``p -> matrix @ p + translation`` (rotation about z, flip,
    isotropic scale) to boxes: centres, sizes (scaled), headings and velocities (rotated, flipped
    and scaled, as OpenPCDet's world augmentations treat them)."""
    out = boxes.copy()
    if len(boxes) == 0:
        return out
    m = np.asarray(matrix, dtype=np.float64)
    scale = abs(np.linalg.det(m)) ** (1.0 / 3.0)
    out[:, :3] = boxes[:, :3].astype(np.float64) @ m.T + np.asarray(translation, dtype=np.float64)
    out[:, 3:6] = boxes[:, 3:6] * scale
    head = np.stack([np.cos(boxes[:, 6]), np.sin(boxes[:, 6]), np.zeros(len(boxes))], axis=1) @ m.T
    out[:, 6] = np.arctan2(head[:, 1], head[:, 0])
    vel = np.concatenate([boxes[:, 7:9], np.zeros((len(boxes), 1))], axis=1) @ m.T
    out[:, 7:9] = vel[:, :2]
    return out


def in_range(boxes: np.ndarray, point_cloud_range) -> np.ndarray:
    r = np.asarray(point_cloud_range, dtype=np.float64)
    return ((boxes[:, :3] >= r[:3]) & (boxes[:, :3] < r[3:])).all(axis=1) if len(boxes) else np.zeros(0, bool)


def matrix_to_quaternion(r: np.ndarray) -> list[float]:
    """Rotation matrix -> unit quaternion (w, x, y, z), the devkit's order (Shepperd's method)."""
    r = np.asarray(r, dtype=np.float64)
    t = np.trace(r)
    if t > 0:
        s = math.sqrt(t + 1.0) * 2
        q = [0.25 * s, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = math.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2]) * 2
        q = [(r[2, 1] - r[1, 2]) / s, 0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif r[1, 1] > r[2, 2]:
        s = math.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2]) * 2
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s]
    else:
        s = math.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1]) * 2
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s]
    q = np.asarray(q)
    q = q / np.linalg.norm(q)
    return (q if q[0] >= 0 else -q).tolist()


def boxes_to_global(boxes: np.ndarray, lidar_to_global) -> list[dict]:
    """LiDAR-frame boxes to the devkit's global-frame fields: translation, size (w, l, h),
    rotation (w, x, y, z), velocity (vx, vy)."""
    t = np.asarray(lidar_to_global, dtype=np.float64)
    rot, trans = t[:3, :3], t[:3, 3]
    out = []
    for b in boxes.astype(np.float64):
        vel = rot @ np.array([b[7], b[8], 0.0])
        out.append({"translation": (rot @ b[:3] + trans).tolist(), "size": [b[4], b[3], b[5]],
                    "rotation": matrix_to_quaternion(rot @ rot_z(b[6])), "velocity": vel[:2].tolist()})
    return out
