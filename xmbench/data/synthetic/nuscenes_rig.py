"""The nuScenes sensor rig (six cameras, LIDAR_TOP, the ego body the LiDAR sees) and the
quaternion conventions its calibrations are written in.

Why: calibrations, LiDAR sweeps and images all mount sensors on the same rig, and nuScenes' w-x-y-z
quaternions with w >= 0 must be produced in one place so the devkit reads back exactly our geometry.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from pyquaternion import Quaternion


@dataclass(frozen=True)
class CameraMount:
    """A camera's mounting on the ego vehicle and its intrinsics at 1600x900 (as in nuScenes)."""

    channel: str
    translation: Tuple[float, float, float]
    yaw_deg: float  # direction of the optical axis in the ego frame, counter-clockwise from forward
    fx: float
    cx: float
    cy: float


CAMERAS: Tuple[CameraMount, ...] = (
    CameraMount('CAM_FRONT', (1.70, 0.016, 1.511), 0.0, 1266.4, 816.3, 491.5),
    CameraMount('CAM_FRONT_RIGHT', (1.551, -0.493, 1.496), -55.6, 1260.8, 808.0, 495.3),
    CameraMount('CAM_FRONT_LEFT', (1.524, 0.495, 1.509), 55.4, 1272.6, 826.6, 479.8),
    CameraMount('CAM_BACK', (0.028, 0.003, 1.579), 180.0, 809.2, 829.2, 481.8),
    CameraMount('CAM_BACK_LEFT', (1.036, 0.485, 1.591), 109.8, 1256.7, 792.1, 492.8),
    CameraMount('CAM_BACK_RIGHT', (1.015, -0.481, 1.562), -110.2, 1259.5, 807.3, 501.2),
)
LIDAR_CHANNEL = 'LIDAR_TOP'
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
# The ego body as the LiDAR sees it (a Renault Zoe-sized box, rear axle at the ego origin).
EGO_BODY_CENTRE = (1.2, 0.0, 0.5)
EGO_BODY_SIZE = (1.73, 3.6, 1.0)
NATIVE_IMAGE_SIZE = (1600, 900)


def _rotation_matrix_q(q: Sequence[float]) -> np.ndarray:
    return Quaternion(q).rotation_matrix


def quaternion(matrix: np.ndarray) -> List[float]:
    """w, x, y, z with w >= 0 (nuScenes' convention for its calibrations)."""
    q = Quaternion(matrix=matrix, atol=1e-9, rtol=1e-9).elements
    if q[0] < 0:
        q = -q
    return [float(v) for v in q]


def small_rotation(rng: np.random.Generator, std_deg: float) -> np.ndarray:
    """Mounting imperfection: a random rotation of a fraction of a degree."""
    rx, ry, rz = np.deg2rad(rng.normal(0.0, std_deg, size=3))
    return (Quaternion(axis=[0, 0, 1], angle=rz) * Quaternion(axis=[0, 1, 0], angle=ry)
            * Quaternion(axis=[1, 0, 0], angle=rx)).rotation_matrix


def camera_rotation(yaw_deg: float) -> np.ndarray:
    """Camera-to-ego rotation for a level camera: z forward along yaw, x right, y down."""
    p = np.deg2rad(yaw_deg)
    return np.array([[np.sin(p), 0.0, np.cos(p)], [-np.cos(p), 0.0, np.sin(p)], [0.0, -1.0, 0.0]])


def transform(translation: Sequence[float], rotation_q: Sequence[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _rotation_matrix_q(rotation_q)
    m[:3, 3] = translation
    return m
