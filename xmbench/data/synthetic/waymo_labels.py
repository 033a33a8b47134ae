"""Waymo's 3D laser labels of a frame, and the plain record of each that the tests compare against.

Why apart: which boxes Waymo labels (classes, range, at least one point) and how difficult they
are is labelling policy, independent of how the lidars and cameras are encoded.
"""
from __future__ import annotations

import base64
import hashlib

import numpy as np
from waymo_open_dataset import label_pb2

from .waymo_rig import LABEL_RANGE
from .waymo_scene import FrameContext


def _track_id(seed: int, segment: str, obj_id: int) -> str:
    """A 22-character id like Waymo's, stable across the frames of a segment."""
    digest = hashlib.sha256(f"{seed}:{segment}:{obj_id}".encode()).digest()
    return base64.urlsafe_b64encode(digest).decode()[:22]


def _label_type(ctx: FrameContext, m: int) -> int | None:
    """Waymo's box classes; parked bicycles, cones and barriers get no 3D box in Waymo."""
    box_id = int(ctx.snap.box_id[m])
    if box_id in ctx.signs:
        return label_pb2.Label.TYPE_SIGN
    agent = ctx.scene.agents[box_id]
    if agent.cls in ('car', 'truck', 'bus', 'motorcycle'):
        return label_pb2.Label.TYPE_VEHICLE
    if agent.cls == 'pedestrian':
        return label_pb2.Label.TYPE_PEDESTRIAN
    if agent.cls == 'bicycle' and agent.state != 'parked':
        return label_pb2.Label.TYPE_CYCLIST
    return None


def laser_labels(ctx: FrameContext, counts: np.ndarray, top_counts: np.ndarray, seed: int,
                 segment: str) -> list[label_pb2.Label]:
    """Boxes within LABEL_RANGE with at least one point, in the vehicle frame at the frame time.

    ``counts`` are the points (all lidars, both returns) inside each snapshot box; at most 5 makes
    a box LEVEL_2, as Waymo's difficulty rule does.
    """
    labels = []
    world_to_vehicle = np.linalg.inv(ctx.pose)
    ego_yaw = float(np.arctan2(ctx.pose[1, 0], ctx.pose[0, 0]))
    for m in ctx.labelled_boxes:
        label_type = _label_type(ctx, m)
        centre = world_to_vehicle[:3, :3] @ ctx.snap.box_centre[m] + world_to_vehicle[:3, 3]
        if label_type is None or counts[m] == 0 or np.hypot(*centre[:2]) > LABEL_RANGE:
            continue
        box_id = int(ctx.snap.box_id[m])
        velocity = np.zeros(3) if box_id in ctx.signs else ctx.scene.agent_state(ctx.scene.agents[box_id], ctx.t)[2]
        v = world_to_vehicle[:3, :3] @ velocity
        label = label_pb2.Label()
        w, l, h = ctx.snap.box_size[m]
        b = label.box
        b.center_x, b.center_y, b.center_z = (float(c) for c in centre)
        b.length, b.width, b.height = float(l), float(w), float(h)
        b.heading = float(np.angle(np.exp(1j * (ctx.snap.box_yaw[m] - ego_yaw))))
        label.metadata.speed_x, label.metadata.speed_y = float(v[0]), float(v[1])
        label.type = label_type
        label.id = _track_id(seed, segment, box_id)
        label.num_lidar_points_in_box = int(counts[m])
        label.num_top_lidar_points_in_box = int(top_counts[m])
        level = label_pb2.Label.LEVEL_2 if counts[m] <= 5 else label_pb2.Label.LEVEL_1
        label.detection_difficulty_level = label.tracking_difficulty_level = level
        labels.append(label)
    return labels


def truth_box(label: label_pb2.Label) -> dict:
    b = label.box
    return {"track_id": label.id, "type": label_pb2.Label.Type.Name(label.type),
            "center": [b.center_x, b.center_y, b.center_z], "lwh": [b.length, b.width, b.height],
            "heading": b.heading, "speed": [label.metadata.speed_x, label.metadata.speed_y],
            "num_lidar_points_in_box": label.num_lidar_points_in_box,
            "num_top_lidar_points_in_box": label.num_top_lidar_points_in_box,
            "difficulty": label.detection_difficulty_level}
