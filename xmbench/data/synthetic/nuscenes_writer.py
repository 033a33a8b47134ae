"""Write generated scenes in the exact nuScenes v1.0-mini on-disk layout (tables, files, lidarseg).

The point is that every line of the real nuScenes path (devkit loading, splits, evaluation,
converters) runs unchanged on a laptop with no dataset: ten scenes named like the mini split,
each with its own log, keyframes every 0.5 s, a 32-beam LIDAR_TOP cloud with lidarseg labels,
six camera images and 3D box annotations whose ``num_lidar_pts`` is the true number of points in
the box. Geometry and rendering live in :mod:`scene_sim`; this module only maps them onto
nuScenes' conventions (frames, quaternions w-x-y-z, tokens, file names, label indices).

Deterministic: every token is a hash of the seed and the record's identity, every random draw
comes from a generator seeded by (seed, scene index, ...), so one seed gives byte-identical files.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw
from pyquaternion import Quaternion
from scipy.spatial import cKDTree

from . import scene_sim as sim

VERSION = 'v1.0-mini'
KEYFRAME_INTERVAL_US = 500_000
ANNOTATION_RANGE = 50.0
# No point may lie closer than this to an annotated box's surface: keeps inside/outside decisions
# stable under float32 storage and under the devkit's own transforms.
BOX_SURFACE_MARGIN = 1e-3
MARKER_NAME = '.xmbench_synthetic.json'
FORMAT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Static nuScenes vocabularies
# --------------------------------------------------------------------------------------------

# The 32 nuScenes-lidarseg categories in their official index order (index = position).
CATEGORIES: Tuple[Tuple[str, str], ...] = (
    ('noise', 'Any lidar return that does not correspond to a physical object.'),
    ('animal', 'All animals, e.g. cats, rats, dogs, deer, birds.'),
    ('human.pedestrian.adult', 'Adult subcategory.'),
    ('human.pedestrian.child', 'Child subcategory.'),
    ('human.pedestrian.construction_worker', 'Construction worker.'),
    ('human.pedestrian.personal_mobility', 'A small electric or self-propelled vehicle ridden by a person.'),
    ('human.pedestrian.police_officer', 'Police officer.'),
    ('human.pedestrian.stroller', 'Strollers.'),
    ('human.pedestrian.wheelchair', 'Wheelchairs.'),
    ('movable_object.barrier', 'Temporary road barrier placed to redirect traffic.'),
    ('movable_object.debris', 'Movable object that is left on the driveable surface.'),
    ('movable_object.pushable_pullable', 'Objects that a pedestrian may push or pull.'),
    ('movable_object.trafficcone', 'All types of traffic cone.'),
    ('static_object.bicycle_rack', 'Area or device intended to park or secure bicycles.'),
    ('vehicle.bicycle', 'Human or electric powered 2-wheeled vehicle designed to travel at lower speeds.'),
    ('vehicle.bus.bendy', 'Bendy bus subcategory.'),
    ('vehicle.bus.rigid', 'Rigid bus subcategory.'),
    ('vehicle.car', 'Vehicle designed primarily for personal use.'),
    ('vehicle.construction', 'Vehicles primarily designed for construction.'),
    ('vehicle.emergency.ambulance', 'All types of ambulances.'),
    ('vehicle.emergency.police', 'All types of police vehicles.'),
    ('vehicle.motorcycle', 'Gasoline or electric powered 2-wheeled vehicle designed to move rapidly.'),
    ('vehicle.trailer', 'Any vehicle trailer.'),
    ('vehicle.truck', 'Vehicles primarily designed to haul cargo.'),
    ('flat.driveable_surface', 'Surfaces should be regarded with no concern of traffic rules.'),
    ('flat.other', 'All other forms of horizontal ground-level structures that do not belong to any other flat class.'),
    ('flat.sidewalk', 'Sidewalk, pedestrian walkways, bike paths, etc.'),
    ('flat.terrain', 'Natural horizontal surfaces such as ground level horizontal vegetation (< 20 cm tall), grass, '
                     'rolling hills, soil, sand and gravel.'),
    ('static.manmade', 'Includes man-made structures but not limited to: buildings, walls, guard rails, fences, '
                       'poles, drainages, hydrants, flags, banners, street signs, electric circuit boxes, traffic '
                       'lights, parking meters and stairs.'),
    ('static.other', 'Points in the background that are not distinguishable, or objects that do not match any of '
                     'the above labels.'),
    ('static.vegetation', 'Any vegetation in the frame that is higher than the ground, including bushes, plants, '
                          'potted plants, trees, etc.'),
    ('vehicle.ego', 'The vehicle on which the cameras, radar and lidar are mounted, that is sometimes visible at '
                    'the bottom of the image.'),
)
CATEGORY_INDEX = {name: i for i, (name, _) in enumerate(CATEGORIES)}

# Simulator class -> nuScenes category.
CLASS_TO_CATEGORY = {
    'car': 'vehicle.car', 'truck': 'vehicle.truck', 'bus': 'vehicle.bus.rigid',
    'pedestrian': 'human.pedestrian.adult', 'bicycle': 'vehicle.bicycle', 'motorcycle': 'vehicle.motorcycle',
    'barrier': 'movable_object.barrier', 'traffic_cone': 'movable_object.trafficcone',
}

ATTRIBUTES: Tuple[Tuple[str, str], ...] = (
    ('vehicle.moving', 'Vehicle is moving.'),
    ('vehicle.stopped', 'Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move.'),
    ('vehicle.parked', 'Vehicle is stationary (usually for longer duration) with no immediate intent to move.'),
    ('cycle.with_rider', 'There is a rider on the bicycle or motorcycle.'),
    ('cycle.without_rider', 'There is NO rider on the bicycle or motorcycle.'),
    ('pedestrian.sitting_lying_down', 'The human is sitting or lying down.'),
    ('pedestrian.standing', 'The human is standing.'),
    ('pedestrian.moving', 'The human is moving.'),
)

VISIBILITY: Tuple[Tuple[str, str, str], ...] = (
    ('1', 'v0-40', 'visibility of whole object is between 0 and 40%'),
    ('2', 'v40-60', 'visibility of whole object is between 40 and 60%'),
    ('3', 'v60-80', 'visibility of whole object is between 60 and 80%'),
    ('4', 'v80-100', 'visibility of whole object is between 80 and 100%'),
)

LIDARSEG_OF_SURFACE = {
    sim.Surface.BUILDING: CATEGORY_INDEX['static.manmade'],
    sim.Surface.POLE: CATEGORY_INDEX['static.other'],
    sim.Surface.TREE: CATEGORY_INDEX['static.vegetation'],
    sim.Surface.EGO: CATEGORY_INDEX['vehicle.ego'],
}
LIDARSEG_OF_GROUND = {
    sim.GroundZone.ROAD: CATEGORY_INDEX['flat.driveable_surface'],
    sim.GroundZone.SIDEWALK: CATEGORY_INDEX['flat.sidewalk'],
    sim.GroundZone.TERRAIN: CATEGORY_INDEX['flat.terrain'],
}


@dataclass(frozen=True)
class SceneSpec:
    """One of the ten mini scenes: its name, where its log was 'recorded', and when."""

    name: str
    location: str
    vehicle: str
    log_start: str  # nuScenes log name suffix: YYYY-mm-dd-HH-MM-SS+zzzz


SCENES: Tuple[SceneSpec, ...] = (
    SceneSpec('scene-0061', 'singapore-onenorth', 'n015', '2018-07-24-11-22-45+0800'),
    SceneSpec('scene-0103', 'boston-seaport', 'n008', '2018-08-01-15-16-36-0400'),
    SceneSpec('scene-0553', 'boston-seaport', 'n008', '2018-08-28-16-43-51-0400'),
    SceneSpec('scene-0655', 'boston-seaport', 'n008', '2018-08-27-15-51-32-0400'),
    SceneSpec('scene-0757', 'boston-seaport', 'n008', '2018-08-30-15-16-55-0400'),
    SceneSpec('scene-0796', 'singapore-queenstown', 'n015', '2018-10-02-10-50-40+0800'),
    SceneSpec('scene-0916', 'singapore-queenstown', 'n015', '2018-10-08-15-36-50+0800'),
    SceneSpec('scene-1077', 'singapore-hollandvillage', 'n015', '2018-11-21-19-38-26+0800'),
    SceneSpec('scene-1094', 'singapore-hollandvillage', 'n015', '2018-11-21-19-58-31+0800'),
    SceneSpec('scene-1100', 'singapore-hollandvillage', 'n015', '2018-11-21-19-21-35+0800'),
)
# Scenes of one location share a map; they are placed around this point of the global frame.
# The map png starts at the global origin (nuScenes' map transform), so this stays small.
SCENE_AREA_CENTRE = (170.0, 170.0)
MAP_SIZE_M = 340.0


# --------------------------------------------------------------------------------------------
# Sensor rig
# --------------------------------------------------------------------------------------------

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


def _quaternion(matrix: np.ndarray) -> List[float]:
    """w, x, y, z with w >= 0 (nuScenes' convention for its calibrations)."""
    q = Quaternion(matrix=matrix, atol=1e-9, rtol=1e-9).elements
    if q[0] < 0:
        q = -q
    return [float(v) for v in q]


def _small_rotation(rng: np.random.Generator, std_deg: float) -> np.ndarray:
    """Mounting imperfection: a random rotation of a fraction of a degree."""
    rx, ry, rz = np.deg2rad(rng.normal(0.0, std_deg, size=3))
    return (Quaternion(axis=[0, 0, 1], angle=rz) * Quaternion(axis=[0, 1, 0], angle=ry)
            * Quaternion(axis=[1, 0, 0], angle=rx)).rotation_matrix


def _camera_rotation(yaw_deg: float) -> np.ndarray:
    """Camera-to-ego rotation for a level camera: z forward along yaw, x right, y down."""
    p = np.deg2rad(yaw_deg)
    return np.array([[np.sin(p), 0.0, np.cos(p)], [-np.cos(p), 0.0, np.sin(p)], [0.0, -1.0, 0.0]])


def _transform(translation: Sequence[float], rotation_q: Sequence[float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = _rotation_matrix_q(rotation_q)
    m[:3, 3] = translation
    return m


# --------------------------------------------------------------------------------------------
# Tokens and tables
# --------------------------------------------------------------------------------------------

def make_token(*parts) -> str:
    """32-hex token: a hash of the parts (seed first where the record depends on the seed)."""
    return hashlib.md5('|'.join(str(p) for p in parts).encode()).hexdigest()


def _static_token(table: str, name: str) -> str:
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


def _vocabulary(tables: Tables) -> None:
    for index, (name, description) in enumerate(CATEGORIES):
        tables.add('category', {'token': _static_token('category', name), 'name': name,
                                'description': description, 'index': index})
    for name, description in ATTRIBUTES:
        tables.add('attribute', {'token': _static_token('attribute', name), 'name': name,
                                 'description': description})
    for token, level, description in VISIBILITY:
        tables.add('visibility', {'description': description, 'token': token, 'level': level})
    for channel in [LIDAR_CHANNEL] + [c.channel for c in CAMERAS]:
        tables.add('sensor', {'token': _static_token('sensor', channel), 'channel': channel,
                              'modality': 'lidar' if channel == LIDAR_CHANNEL else 'camera'})


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------

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
    scene: sim.Scene
    log_token: str
    t0_us: int
    calib: Dict[str, Calibration]
    lidar: sim.SpinningLidar
    last_sd: Dict[str, dict] = field(default_factory=dict)  # channel -> previous sample_data record

    @property
    def log_name(self) -> str:
        return f'{self.spec.vehicle}-{self.spec.log_start}'

    def rng(self, *key: int) -> np.random.Generator:
        """An independent generator per (seed, scene, purpose...) so frames do not share draws."""
        return np.random.default_rng([self.cfg.seed, self.index, *key])

    def token(self, *parts) -> str:
        return make_token(self.cfg.seed, self.spec.name, *parts)


def generate_nuscenes(root, seed: int = 0, keyframes_per_scene: int = 8, image_size: Tuple[int, int] = (1600, 900),
                      azimuth_steps: int = 1080, sweeps_per_keyframe: int = 0) -> Path:
    """Generate the synthetic dataset at ``root`` (the devkit's dataroot) and return its path.

    Writes into a temporary sibling folder and renames it into place at the end, so ``root`` never
    holds a half-written dataset. An existing ``root`` is replaced only if it is a previous output
    of this generator (it carries the marker file); anything else is refused.
    """
    if keyframes_per_scene < 2:
        raise ValueError('keyframes_per_scene must be at least 2 (velocities need two keyframes)')
    cfg = GeneratorConfig(seed=int(seed), keyframes_per_scene=int(keyframes_per_scene),
                          image_size=(int(image_size[0]), int(image_size[1])), azimuth_steps=int(azimuth_steps),
                          sweeps_per_keyframe=int(sweeps_per_keyframe))
    root = Path(root).absolute()
    if root.exists() and not (root / MARKER_NAME).is_file():
        raise FileExistsError(f'{root} exists and is not a synthetic nuScenes dataset written by xmbench; '
                              'refusing to replace it')
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f'.{root.name}.partial-{os.getpid()}'
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_dataset(tmp, cfg)
        _swap_into_place(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _swap_into_place(tmp: Path, root: Path) -> None:
    if root.exists():
        old = root.parent / f'.{root.name}.old-{os.getpid()}'
        root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old)
    else:
        tmp.rename(root)


def _write_dataset(out: Path, cfg: GeneratorConfig) -> None:
    for sub in ['maps', f'lidarseg/{VERSION}', VERSION, f'samples/{LIDAR_CHANNEL}',
                *[f'samples/{c.channel}' for c in CAMERAS]] + ([f'sweeps/{LIDAR_CHANNEL}']
                                                              if cfg.sweeps_per_keyframe else []):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tables = Tables()
    _vocabulary(tables)
    scenes_by_location: Dict[str, List[Tuple[sim.Scene, str]]] = {}
    for index, spec in enumerate(SCENES):
        scene, log_token = _write_scene(out, tables, cfg, index, spec)
        scenes_by_location.setdefault(spec.location, []).append((scene, log_token))
    for location, members in sorted(scenes_by_location.items()):
        _write_map(out, tables, cfg, location, members)
    for name, rows in tables.rows.items():
        with open(out / VERSION / f'{name}.json', 'w') as f:
            json.dump(rows, f, indent=0)
    (out / MARKER_NAME).write_text(json.dumps(cfg.marker(), indent=1, sort_keys=True) + '\n')


def _log_start_us(spec: SceneSpec) -> int:
    stamp = datetime.strptime(spec.log_start, '%Y-%m-%d-%H-%M-%S%z')
    return int(round(stamp.timestamp())) * 1_000_000


def _write_scene(out: Path, tables: Tables, cfg: GeneratorConfig, index: int, spec: SceneSpec):
    rng = np.random.default_rng([cfg.seed, index])
    duration = (cfg.keyframes_per_scene - 1) * KEYFRAME_INTERVAL_US / 1e6
    config = sim.SceneConfig(duration=duration, left_hand_traffic=spec.location.startswith('singapore'))
    origin = (SCENE_AREA_CENTRE[0] + rng.uniform(-15, 15), SCENE_AREA_CENTRE[1] + rng.uniform(-15, 15))
    scene = sim.generate_scene(rng, config, origin=origin, heading=float(rng.uniform(-np.pi, np.pi)))
    log_token = make_token(cfg.seed, 'log', spec.name)
    tables.add('log', {'token': log_token, 'logfile': f'{spec.vehicle}-{spec.log_start}', 'vehicle': spec.vehicle,
                       'date_captured': spec.log_start[:10], 'location': spec.location})
    ctx = SceneContext(cfg=cfg, out=out, tables=tables, spec=spec, index=index, scene=scene, log_token=log_token,
                       t0_us=_log_start_us(spec) + int(rng.integers(20, 900)) * 1_000_000 + int(rng.integers(0, 10**6)),
                       calib=_calibrations(tables, cfg, spec, rng), lidar=sim.SpinningLidar(azimuth_steps=cfg.azimuth_steps))
    sample_tokens = [ctx.token('sample', k) for k in range(cfg.keyframes_per_scene)]
    scene_token = ctx.token('scene')
    annotations: Dict[int, List[dict]] = {}
    for k, sample_token in enumerate(sample_tokens):
        if k > 0:
            _write_sweeps(ctx, k, sample_token)
        ts = ctx.t0_us + k * KEYFRAME_INTERVAL_US
        tables.add('sample', {'token': sample_token, 'timestamp': ts,
                              'prev': sample_tokens[k - 1] if k > 0 else '',
                              'next': sample_tokens[k + 1] if k + 1 < len(sample_tokens) else '',
                              'scene_token': scene_token})
        _write_keyframe(ctx, k, ts, sample_token, annotations)
    _write_instances(ctx, annotations)
    tables.add('scene', {'token': scene_token, 'log_token': log_token, 'nbr_samples': len(sample_tokens),
                         'first_sample_token': sample_tokens[0], 'last_sample_token': sample_tokens[-1],
                         'name': spec.name, 'description': sim.describe(scene)})
    return scene, log_token


def _calibrations(tables: Tables, cfg: GeneratorConfig, spec: SceneSpec, rng) -> Dict[str, Calibration]:
    """One calibrated_sensor record per sensor for this log, with small mounting variations."""
    calib = {}
    lidar_rot = Quaternion(axis=[0, 0, 1], angle=-np.pi / 2).rotation_matrix @ _small_rotation(rng, 0.4)
    records = [(LIDAR_CHANNEL, np.array(LIDAR_TRANSLATION), lidar_rot, None)]
    sx = cfg.image_size[0] / NATIVE_IMAGE_SIZE[0]
    sy = cfg.image_size[1] / NATIVE_IMAGE_SIZE[1]
    for cam in CAMERAS:
        rot = _camera_rotation(cam.yaw_deg) @ _small_rotation(rng, 0.3)
        fx = cam.fx * (1 + rng.normal(0, 0.003))
        k = np.array([[fx * sx, 0.0, (cam.cx + rng.normal(0, 2)) * sx],
                      [0.0, fx * sy, (cam.cy + rng.normal(0, 2)) * sy],
                      [0.0, 0.0, 1.0]])
        trans = np.array(cam.translation) + rng.normal(0, 0.005, size=3)
        records.append((cam.channel, trans, rot, k))
    for channel, trans, rot, k in records:
        token = make_token(cfg.seed, 'calibrated_sensor', spec.name, channel)
        q = _quaternion(rot)
        translation = [round(float(v), 6) for v in trans]
        intrinsic = [] if k is None else [[round(float(v), 6) for v in row] for row in k]
        tables.add('calibrated_sensor', {'token': token, 'sensor_token': _static_token('sensor', channel),
                                         'translation': translation, 'rotation': q, 'camera_intrinsic': intrinsic})
        # Use exactly what the table says, so our geometry equals the devkit's.
        calib[channel] = Calibration(token, _transform(translation, q), None if k is None else np.array(intrinsic))
    return calib


def _ego_pose(ctx: SceneContext, t: float, ts: int, token: str) -> np.ndarray:
    """Add the ego_pose record (same token as its sample_data, as in nuScenes); return ego-to-world."""
    translation, yaw = ctx.scene.ego_pose(t)
    q = [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))]
    trans = [float(v) for v in translation]
    ctx.tables.add('ego_pose', {'token': token, 'timestamp': ts, 'rotation': q, 'translation': trans})
    return _transform(trans, q)


def _add_sample_data(ctx: SceneContext, channel: str, token: str, sample_token: str, ts: int, filename: str,
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


def _lidar_filename(ctx: SceneContext, folder: str, ts: int) -> str:
    return f'{folder}/{LIDAR_CHANNEL}/{ctx.log_name}__{LIDAR_CHANNEL}__{ts}.pcd.bin'


@dataclass
class LidarFrame:
    """One written cloud: float32 sensor-frame points, the scan it came from, and world points."""

    cloud: np.ndarray  # (P, 5) float32 as written
    scan: sim.LidarScan
    world: np.ndarray  # (P, 3) float64, from the float32 points through the written transforms


def _scan(ctx: SceneContext, t: float, ego_to_world: np.ndarray, key: tuple) -> Tuple[sim.Snapshot, LidarFrame]:
    """Ray-cast the LiDAR at time t and drop points within a hair of any agent box surface."""
    snap = ctx.scene.snapshot(t)
    yaw = float(np.arctan2(ego_to_world[1, 0], ego_to_world[0, 0]))
    body_centre = ego_to_world[:3, :3] @ np.array(EGO_BODY_CENTRE) + ego_to_world[:3, 3]
    with_ego = snap.with_box(body_centre, EGO_BODY_SIZE, yaw, sim.EGO_ID, sim.Surface.EGO)
    lidar_to_world = ego_to_world @ ctx.calib[LIDAR_CHANNEL].sensor_to_ego
    rng = ctx.rng(*key)
    scan = sim.scan_lidar(ctx.scene, with_ego, ctx.lidar, lidar_to_world, rng)
    intensity = np.clip(np.round(scan.reflectivity * 255 * rng.uniform(0.8, 1.2, len(scan.ring))
                                 + rng.normal(0, 1.0, len(scan.ring))), 0, 255)
    cloud = np.concatenate([scan.points, intensity[:, None], scan.ring[:, None]], axis=1).astype(np.float32)
    world = cloud[:, :3].astype(np.float64) @ lidar_to_world[:3, :3].T + lidar_to_world[:3, 3]
    keep = _unambiguous(ctx.scene, snap, scan, world)
    frame = LidarFrame(cloud=cloud[keep], scan=_subset(scan, keep), world=world[keep])
    return snap, frame


def _agent_distances(snap: sim.Snapshot, n_agents: int, world: np.ndarray) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """For each agent box, the indices of nearby points and their signed distances to the box.

    A k-d tree on the points keeps this to the few points around each box.
    """
    tree = cKDTree(world)
    result = {}
    for m in range(n_agents):
        radius = float(np.linalg.norm(snap.box_size[m]) / 2 + 0.05)
        idx = np.asarray(tree.query_ball_point(snap.box_centre[m], radius), dtype=np.int64)
        idx.sort()
        sd = sim.box_signed_distance(world[idx], snap.box_centre[m], snap.box_size[m], snap.box_yaw[m])
        result[m] = (idx, sd)
    return result


def _unambiguous(scene: sim.Scene, snap: sim.Snapshot, scan: sim.LidarScan, world: np.ndarray) -> np.ndarray:
    """Points that are clearly inside their own agent box or clearly outside every agent box."""
    keep = np.ones(len(world), dtype=bool)
    for m, (idx, sd) in _agent_distances(snap, len(scene.agents), world).items():
        own = (scan.kind[idx] == sim.Surface.AGENT) & (scan.obj_id[idx] == snap.box_id[m])
        bad = (np.abs(sd) < BOX_SURFACE_MARGIN) | ((sd < 0) & ~own)
        keep[idx[bad]] = False
    return keep


def _subset(scan: sim.LidarScan, keep: np.ndarray) -> sim.LidarScan:
    return sim.LidarScan(points=scan.points[keep], ring=scan.ring[keep], reflectivity=scan.reflectivity[keep],
                         kind=scan.kind[keep], obj_id=scan.obj_id[keep], ground_zone=scan.ground_zone[keep],
                         world=scan.world[keep])


def _lidarseg_labels(scene: sim.Scene, scan: sim.LidarScan) -> np.ndarray:
    labels = np.zeros(len(scan.kind), dtype=np.uint8)  # 0 = noise, never left over in practice
    for kind, index in LIDARSEG_OF_SURFACE.items():
        labels[scan.kind == kind] = index
    ground = scan.kind == sim.Surface.GROUND
    for zone, index in LIDARSEG_OF_GROUND.items():
        labels[ground & (scan.ground_zone == zone)] = index
    agent = scan.kind == sim.Surface.AGENT
    labels[agent] = [CATEGORY_INDEX[CLASS_TO_CATEGORY[scene.agents[i].cls]] for i in scan.obj_id[agent]]
    return labels


def _write_keyframe(ctx: SceneContext, k: int, ts: int, sample_token: str, annotations: Dict[int, List[dict]]):
    t = (ts - ctx.t0_us) / 1e6
    lidar_token = ctx.token('sample_data', LIDAR_CHANNEL, ts)
    ego_to_world = _ego_pose(ctx, t, ts, lidar_token)
    snap, frame = _scan(ctx, t, ego_to_world, (0, k))
    filename = _lidar_filename(ctx, 'samples', ts)
    frame.cloud.tofile(ctx.out / filename)
    _add_sample_data(ctx, LIDAR_CHANNEL, lidar_token, sample_token, ts, filename, True)
    seg_name = f'lidarseg/{VERSION}/{lidar_token}_lidarseg.bin'
    _lidarseg_labels(ctx.scene, frame.scan).tofile(ctx.out / seg_name)
    ctx.tables.add('lidarseg', {'token': lidar_token, 'sample_data_token': lidar_token, 'filename': seg_name})
    _annotate(ctx, k, t, sample_token, snap, frame, ego_to_world, annotations)
    _write_images(ctx, t, ts, sample_token, snap, ego_to_world)


def _write_sweeps(ctx: SceneContext, k: int, next_sample_token: str) -> None:
    """Non-keyframe LiDAR sweeps between keyframes k-1 and k, owned by the next sample as in nuScenes."""
    n = ctx.cfg.sweeps_per_keyframe
    for j in range(1, n + 1):
        ts = ctx.t0_us + (k - 1) * KEYFRAME_INTERVAL_US + round(j * KEYFRAME_INTERVAL_US / (n + 1))
        t = (ts - ctx.t0_us) / 1e6
        token = ctx.token('sample_data', LIDAR_CHANNEL, ts)
        ego_to_world = _ego_pose(ctx, t, ts, token)
        _, frame = _scan(ctx, t, ego_to_world, (1, k, j))
        filename = _lidar_filename(ctx, 'sweeps', ts)
        frame.cloud.tofile(ctx.out / filename)
        _add_sample_data(ctx, LIDAR_CHANNEL, token, next_sample_token, ts, filename, False)


# --------------------------------------------------------------------------------------------
# Annotations
# --------------------------------------------------------------------------------------------

def _attribute_names(agent: sim.Agent) -> List[str]:
    if agent.cls in ('car', 'truck', 'bus'):
        return [f'vehicle.{agent.state}']
    if agent.cls in ('bicycle', 'motorcycle'):
        return ['cycle.without_rider' if agent.state == 'parked' else 'cycle.with_rider']
    if agent.cls == 'pedestrian':
        return ['pedestrian.moving' if agent.state == 'moving' else 'pedestrian.standing']
    return []


def _visibility_tokens(snap: sim.Snapshot, origin: np.ndarray, box_indices: Sequence[int]) -> List[str]:
    """nuScenes visibility bin from the fraction of probe points on each box not hidden by others.

    Probes are the box centre, its shrunk corners and side-face centres; a probe counts as seen
    when the ray from the sensor towards it first meets that same box.
    """
    signs = np.array([[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)] +
                     [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 0]], dtype=np.float64)
    probes, owner = [], []
    for m in box_indices:
        w, l, h = snap.box_size[m]
        c, s = np.cos(snap.box_yaw[m]), np.sin(snap.box_yaw[m])
        local = signs * 0.8 * np.array([l / 2, w / 2, h / 2])
        world = np.stack([local[:, 0] * c - local[:, 1] * s, local[:, 0] * s + local[:, 1] * c, local[:, 2]], 1)
        probes.append(world + snap.box_centre[m])
        owner.append(np.full(len(signs), m))
    if not probes:
        return []
    probes, owner = np.concatenate(probes), np.concatenate(owner)
    dirs = probes - origin
    dirs /= np.linalg.norm(dirs, axis=1, keepdims=True)
    hits = sim.cast_rays(snap, origin[None], dirs, max_range=200.0)
    seen = hits.obj_id == snap.box_id[owner]
    tokens = []
    for m in box_indices:
        frac = float(np.mean(seen[owner == m]))
        tokens.append('1' if frac < 0.4 else '2' if frac < 0.6 else '3' if frac < 0.8 else '4')
    return tokens


def _annotate(ctx: SceneContext, k: int, t: float, sample_token: str, snap: sim.Snapshot, frame: LidarFrame,
              ego_to_world: np.ndarray, annotations: Dict[int, List[dict]]) -> None:
    """sample_annotation records for agents within range that have at least one LiDAR point."""
    scene = ctx.scene
    ego_xy = ego_to_world[:2, 3]
    chosen, counts = [], []
    for m, (_, sd) in _agent_distances(snap, len(scene.agents), frame.world).items():
        if np.linalg.norm(snap.box_centre[m, :2] - ego_xy) > ANNOTATION_RANGE:
            continue
        n = int(np.count_nonzero(sd < 0))
        if n > 0:
            chosen.append(m)
            counts.append(n)
    lidar_origin = (ego_to_world @ ctx.calib[LIDAR_CHANNEL].sensor_to_ego)[:3, 3]
    visibility = _visibility_tokens(snap, lidar_origin, chosen)
    for m, n, vis in zip(chosen, counts, visibility):
        agent = scene.agents[m]
        yaw = float(snap.box_yaw[m])
        record = {
            'token': ctx.token('sample_annotation', agent.id, k), 'sample_token': sample_token,
            'instance_token': ctx.token('instance', agent.id), 'visibility_token': vis,
            'attribute_tokens': [_static_token('attribute', a) for a in _attribute_names(agent)],
            'translation': [float(v) for v in snap.box_centre[m]], 'size': [float(v) for v in agent.size],
            'rotation': [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))],
            'prev': '', 'next': '', 'num_lidar_pts': n, 'num_radar_pts': 0}
        chain = annotations.setdefault(agent.id, [])
        if chain:
            chain[-1]['next'] = record['token']
            record['prev'] = chain[-1]['token']
        chain.append(record)
        ctx.tables.add('sample_annotation', record)


def _write_instances(ctx: SceneContext, annotations: Dict[int, List[dict]]) -> None:
    for agent_id in sorted(annotations):
        chain = annotations[agent_id]
        category = CLASS_TO_CATEGORY[ctx.scene.agents[agent_id].cls]
        ctx.tables.add('instance', {'token': ctx.token('instance', agent_id),
                                    'category_token': _static_token('category', category),
                                    'nbr_annotations': len(chain), 'first_annotation_token': chain[0]['token'],
                                    'last_annotation_token': chain[-1]['token']})


# --------------------------------------------------------------------------------------------
# Images and maps
# --------------------------------------------------------------------------------------------

def _write_images(ctx: SceneContext, t: float, ts: int, sample_token: str, snap: sim.Snapshot,
                  ego_to_world: np.ndarray) -> None:
    """Six camera images at the keyframe time (cameras share the LiDAR's timestamp and ego pose)."""
    ego_s = ctx.scene.ego.s0 + ctx.scene.ego.speed * t
    render_scene = sim.build_render_scene(ctx.scene, snap, ego_s)
    width, height = ctx.cfg.image_size
    for cam in CAMERAS:
        calib = ctx.calib[cam.channel]
        camera = sim.PinholeCamera(intrinsic=calib.intrinsic, width=width, height=height,
                                   cam_to_world=ego_to_world @ calib.sensor_to_ego)
        token = ctx.token('sample_data', cam.channel, ts)
        _ego_pose(ctx, t, ts, token)
        filename = f'samples/{cam.channel}/{ctx.log_name}__{cam.channel}__{ts}.jpg'
        sim.render_camera(render_scene, camera).save(ctx.out / filename, 'JPEG', quality=ctx.cfg.jpeg_quality)
        _add_sample_data(ctx, cam.channel, token, sample_token, ts, filename, True, width, height)


def _write_map(out: Path, tables: Tables, cfg: GeneratorConfig, location: str,
               members: List[Tuple[sim.Scene, str]]) -> None:
    """A semantic-prior mask (drivable surface and sidewalks = 255) at nuScenes' 0.1 m per pixel."""
    size_px = int(MAP_SIZE_M * 10)
    img = Image.new('L', (size_px, size_px), 0)
    draw = ImageDraw.Draw(img)
    for scene, _ in members:
        road = scene.road
        half = road.half_width + road.sidewalk_width
        s_hi = scene.ego.speed * scene.duration + 110.0
        poly = road.strip_polygon(-110.0, s_hi, -half, half, step=4.0)
        draw.polygon([(float(x) * 10, size_px - float(y) * 10) for x, y in poly], fill=255)
    token = make_token(cfg.seed, 'map', location)
    filename = f'maps/{token}.png'
    img.save(out / filename, 'PNG', optimize=False)
    tables.add('map', {'category': 'semantic_prior', 'token': token, 'filename': filename,
                       'log_tokens': [log_token for _, log_token in members]})
