"""Waymo's sensor rig as released calibrations describe it (five lidars, five cameras), the
generator's knobs, and the pose conventions of its frames.

Why apart: this is plain numpy, the facts every Waymo-side module builds on (mountings, beam
angles, range-image pixel directions, vehicle poses rounded as float32 storage rounds them), with
no proto in sight, so the geometry can be read without the encoding.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_model import Scene

FRAME_INTERVAL_US = 100_000  # Waymo records at 10 Hz
SPIN_SECONDS = 0.1  # one TOP revolution per frame
LABEL_RANGE = 75.0  # Waymo labels objects within 75 m of the vehicle
SEG_EVERY = 2  # Waymo labels segmentation on a subset of frames; by default every second frame here


@dataclass(frozen=True)
class LaserSpec:
    """A lidar of Waymo's rig (mounting as in the released calibrations) and its range-image size."""

    name: str
    translation: tuple[float, float, float]
    yaw_deg: float
    rows: int
    cols: int
    inclination_min: float
    inclination_max: float
    max_range: float
    explicit_inclinations: bool  # TOP stores its non-uniform beam angles; the others only min/max


@dataclass(frozen=True)
class CameraSpec:
    """A camera as in the released calibrations, at its native resolution."""

    name: str
    translation: tuple[float, float, float]
    yaw_deg: float
    focal: float
    cx: float
    cy: float
    width: int
    height: int


def laser_rig(top_width: int, short_width: int) -> tuple[LaserSpec, ...]:
    short_rows = max(8, short_width // 3)  # Waymo's short-range images are 200 x 600
    short = dict(rows=short_rows, cols=short_width, inclination_min=-np.pi / 2, inclination_max=np.pi / 6,
                 max_range=20.0, explicit_inclinations=False)
    return (
        LaserSpec("TOP", (1.43, 0.0, 2.184), 148.5, 64, top_width, -0.3128, 0.0423, LABEL_RANGE, True),
        LaserSpec("FRONT", (4.07, 0.0, 0.691), -1.3, **short),
        LaserSpec("SIDE_LEFT", (3.245, 1.025, 0.981), 88.5, **short),
        LaserSpec("SIDE_RIGHT", (3.245, -1.025, 0.981), -90.4, **short),
        LaserSpec("REAR", (-1.154, 0.0, 0.466), 179.6, **short),
    )


CAMERAS = (
    CameraSpec("FRONT", (1.544, -0.023, 2.116), 0.3, 2070.5, 958.3, 642.6, 1920, 1280),
    CameraSpec("FRONT_LEFT", (1.497, 0.095, 2.115), 45.2, 2079.4, 979.6, 635.8, 1920, 1280),
    CameraSpec("FRONT_RIGHT", (1.495, -0.097, 2.116), -44.6, 2082.4, 954.3, 668.6, 1920, 1280),
    CameraSpec("SIDE_LEFT", (1.432, 0.116, 2.115), 90.3, 2074.2, 974.5, 231.8, 1920, 886),
    CameraSpec("SIDE_RIGHT", (1.430, -0.116, 2.116), -90.4, 2072.2, 1002.1, 227.2, 1920, 886),
)


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    segments: int = 2
    frames: int = 4
    val_segments: int = 1
    top_width: int = 512  # Waymo's TOP range image is 64 x 2650
    short_width: int = 120
    image_scale: float = 0.25
    jpeg_quality: int = 85
    seg_every: int = SEG_EVERY  # frames k with k % seg_every == 0 carry segmentation labels


def _rotation(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """z-y-x (yaw, pitch, roll) rotation, the convention of Waymo's pixel poses."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    return rz @ ry @ rx


def _transform(rotation: np.ndarray, translation) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = rotation
    m[:3, 3] = translation
    return m


def mount(rng: np.random.Generator, translation, yaw_deg: float, tilt_std_deg: float = 0.3) -> np.ndarray:
    """Sensor-to-vehicle transform: the nominal yaw plus a small random mounting tilt."""
    roll, pitch = np.deg2rad(rng.normal(0.0, tilt_std_deg, size=2))
    return _transform(_rotation(roll, pitch, np.deg2rad(yaw_deg)), translation)


def ego_pose(scene: Scene, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Vehicle-to-global at time t, and its (roll, pitch, yaw, x, y, z) rounded as float32 storage does."""
    translation, yaw = scene.ego_pose(t)
    six = np.array([0.0, 0.0, yaw, *translation], dtype=np.float32).astype(np.float64)
    return _transform(_rotation(*six[:3]), six[3:]), six


def beam_inclinations(spec: LaserSpec) -> np.ndarray:
    """Ascending beam pitch angles (bottom beam first), as LaserCalibration stores or implies them."""
    if spec.explicit_inclinations:
        u = np.linspace(0.0, 1.0, spec.rows)
        # Denser towards the horizon, like the real TOP lidar.
        return spec.inclination_min + (spec.inclination_max - spec.inclination_min) * (1 - (1 - u) ** 1.6)
    k = np.arange(spec.rows)
    return spec.inclination_min + (k + 0.5) / spec.rows * (spec.inclination_max - spec.inclination_min)


def sensor_directions(spec: LaserSpec, extrinsic: np.ndarray, inclinations: np.ndarray) -> np.ndarray:
    """(H, W, 3) unit ray directions in the sensor frame, pixel by pixel as Waymo decodes them.

    Row 0 is the top beam; column j's azimuth runs clockwise from the rear, offset by the mounting yaw.
    """
    incl = np.asarray(inclinations, dtype=np.float32)[::-1].astype(np.float64)
    az_correction = np.arctan2(extrinsic[1, 0], extrinsic[0, 0])
    ratios = (np.arange(spec.cols, 0, -1) - 0.5) / spec.cols
    az = (ratios * 2.0 - 1.0) * np.pi - az_correction
    az_g, incl_g = np.meshgrid(az, incl)
    return np.stack([np.cos(az_g) * np.cos(incl_g), np.sin(az_g) * np.cos(incl_g), np.sin(incl_g)], -1)
