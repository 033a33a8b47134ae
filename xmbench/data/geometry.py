"""Rigid transforms as 4x4 matrices, built from nuScenes' (w, x, y, z) quaternions."""
from __future__ import annotations

import numpy as np
from pyquaternion import Quaternion


def transform(translation, rotation_wxyz) -> np.ndarray:
    t = np.eye(4)
    t[:3, :3] = Quaternion(rotation_wxyz).rotation_matrix
    t[:3, 3] = np.asarray(translation, dtype=np.float64)
    return t


def apply(t: np.ndarray, xyz: np.ndarray) -> np.ndarray:
    return xyz @ t[:3, :3].T + t[:3, 3]


def yaw_of(rotation: np.ndarray) -> float:
    """Heading about z of a rotation matrix (the box's length axis is its local x, as in the devkit)."""
    v = rotation @ np.array([1.0, 0.0, 0.0])
    return float(np.arctan2(v[1], v[0]))


def project(xyz_cam: np.ndarray, intrinsic: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Pinhole projection of camera-frame points; returns pixel coords and depth (z forward)."""
    depth = xyz_cam[:, 2]
    uvw = xyz_cam @ np.asarray(intrinsic).T
    uv = uvw[:, :2] / np.maximum(depth, 1e-6)[:, None]
    return uv, depth
