"""The nuScenes tables being built, their tokens, and the per-scene context every record writer shares.

Why: tokens must be deterministic hashes of (seed, record identity), and sample_data and ego_pose
records must link into chains; keeping the bookkeeping here leaves the LiDAR, annotation and image
writers to say only what a record holds.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
from pyquaternion import Quaternion

from .nuscenes_rig import (CAMERAS, LIDAR_CHANNEL, LIDAR_TRANSLATION, NATIVE_IMAGE_SIZE, camera_rotation, quaternion,
                           small_rotation, transform)
from .nuscenes_vocab import SceneSpec
from .scene_model import Scene
from .spinning_lidar import SpinningLidar

VERSION = 'v1.0-mini'
FORMAT_VERSION = 1


def make_token(*parts) -> str:
    """32-hex token: a hash of the parts (seed first where the record depends on the seed)."""
    return hashlib.md5('|'.join(str(p) for p in parts).encode()).hexdigest()


def static_token(table: str, name: str) -> str:
    """Vocabulary tokens (categories, attributes, sensors) do not depend on the seed, as in nuScenes."""
    return make_token('xmbench-synthetic-nuscenes', table, name)


@dataclass
class Tables:
    """The nuScenes tables being built, by name."""

    rows: Dict[str, List[dict]] = field(default_factory=lambda: {name: [] for name in TABLE_NAMES})

    def add(self, table: str, record: dict) -> dict:
        self.rows[table].append(record)
        return record


TABLE_NAMES = ('attribute', 'calibrated_sensor', 'category', 'ego_pose', 'instance', 'log', 'map', 'sample',
               'sample_annotation', 'sample_data', 'scene', 'sensor', 'visibility', 'lidarseg')


@dataclass(frozen=True)
class GeneratorConfig:
    seed: int = 0
    keyframes_per_scene: int = 8
    image_size: Tuple[int, int] = NATIVE_IMAGE_SIZE
    azimuth_steps: int = 1080
    sweeps_per_keyframe: int = 0
    jpeg_quality: int = 85

    def marker(self) -> dict:
        return {'generator': 'xmbench.data.synthetic.nuscenes_writer', 'format_version': FORMAT_VERSION,
                'version': VERSION, 'seed': self.seed, 'keyframes_per_scene': self.keyframes_per_scene,
                'image_size': list(self.image_size), 'azimuth_steps': self.azimuth_steps,
                'sweeps_per_keyframe': self.sweeps_per_keyframe, 'jpeg_quality': self.jpeg_quality}


@dataclass
class Calibration:
    """A calibrated_sensor record and its sensor-to-ego transform."""

    token: str
    sensor_to_ego: np.ndarray
    intrinsic: Optional[np.ndarray] = None


@dataclass
class SceneContext:
    """Per-scene state shared by the keyframe and sweep writers."""

    cfg: GeneratorConfig
    out: Path
    tables: Tables
    spec: SceneSpec
    index: int
    scene: Scene
    log_token: str
    t0_us: int
    calib: Dict[str, Calibration]
    lidar: SpinningLidar
    last_sd: Dict[str, dict] = field(default_factory=dict)  # channel -> previous sample_data record

    @property
    def log_name(self) -> str:
        return f'{self.spec.vehicle}-{self.spec.log_start}'

    def rng(self, *key: int) -> np.random.Generator:
        """An independent generator per (seed, scene, purpose...) so frames do not share draws."""
        return np.random.default_rng([self.cfg.seed, self.index, *key])

    def token(self, *parts) -> str:
        return make_token(self.cfg.seed, self.spec.name, *parts)


def calibrations(tables: Tables, cfg: GeneratorConfig, spec: SceneSpec, rng) -> Dict[str, Calibration]:
    """One calibrated_sensor record per sensor for this log, with small mounting variations."""
    calib = {}
    lidar_rot = Quaternion(axis=[0, 0, 1], angle=-np.pi / 2).rotation_matrix @ small_rotation(rng, 0.4)
    records = [(LIDAR_CHANNEL, np.array(LIDAR_TRANSLATION), lidar_rot, None)]
    sx = cfg.image_size[0] / NATIVE_IMAGE_SIZE[0]
    sy = cfg.image_size[1] / NATIVE_IMAGE_SIZE[1]
    for cam in CAMERAS:
        rot = camera_rotation(cam.yaw_deg) @ small_rotation(rng, 0.3)
        fx = cam.fx * (1 + rng.normal(0, 0.003))
        k = np.array([[fx * sx, 0.0, (cam.cx + rng.normal(0, 2)) * sx],
                      [0.0, fx * sy, (cam.cy + rng.normal(0, 2)) * sy],
                      [0.0, 0.0, 1.0]])
        trans = np.array(cam.translation) + rng.normal(0, 0.005, size=3)
        records.append((cam.channel, trans, rot, k))
    for channel, trans, rot, k in records:
        token = make_token(cfg.seed, 'calibrated_sensor', spec.name, channel)
        q = quaternion(rot)
        translation = [round(float(v), 6) for v in trans]
        intrinsic = [] if k is None else [[round(float(v), 6) for v in row] for row in k]
        tables.add('calibrated_sensor', {'token': token, 'sensor_token': static_token('sensor', channel),
                                         'translation': translation, 'rotation': q, 'camera_intrinsic': intrinsic})
        # Use exactly what the table says, so our geometry equals the devkit's.
        calib[channel] = Calibration(token, transform(translation, q), None if k is None else np.array(intrinsic))
    return calib


def ego_pose(ctx: SceneContext, t: float, ts: int, token: str) -> np.ndarray:
    """Add the ego_pose record (same token as its sample_data, as in nuScenes); return ego-to-world."""
    translation, yaw = ctx.scene.ego_pose(t)
    q = [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]
    trans = [float(v) for v in translation]
    ctx.tables.add('ego_pose', {'token': token, 'timestamp': ts, 'rotation': q, 'translation': trans})
    return transform(trans, q)


def add_sample_data(ctx: SceneContext, channel: str, token: str, sample_token: str, ts: int, filename: str,
                    key_frame: bool, width: int = 0, height: int = 0) -> dict:
    """Append a sample_data record and link it into its channel's prev/next chain."""
    prev = ctx.last_sd.get(channel)
    record = {'token': token, 'sample_token': sample_token, 'ego_pose_token': token,
              'calibrated_sensor_token': ctx.calib[channel].token, 'timestamp': ts,
              'fileformat': 'pcd' if channel == LIDAR_CHANNEL else 'jpg', 'is_key_frame': key_frame,
              'height': height, 'width': width, 'filename': filename, 'prev': prev['token'] if prev else '',
              'next': ''}
    if prev is not None:
        prev['next'] = token
    ctx.last_sd[channel] = record
    return ctx.tables.add('sample_data', record)


def lidar_filename(ctx: SceneContext, folder: str, ts: int) -> str:
    return f'{folder}/{LIDAR_CHANNEL}/{ctx.log_name}__{LIDAR_CHANNEL}__{ts}.pcd.bin'
