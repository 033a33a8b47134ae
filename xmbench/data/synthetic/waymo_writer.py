"""Generate Waymo Open Dataset TFRecords of real ``dataset_pb2.Frame`` protos from simulated scenes.

Why: the Waymo path (conversion, index, metrics) must run without the real dataset, on bytes laid
out exactly as Waymo lays them out: zlib-compressed serialized ``MatrixFloat`` range images (both
returns, five lidars), TOP's per-pixel vehicle pose (the ego moves during a spin), camera
projections, TOP segmentation labels on some frames, five camera calibrations with JPEG images,
and 3D laser labels. The scenes are the same ones the nuScenes generator uses
(:mod:`xmbench.data.synthetic.scene_sim`); only the sensor rig and the encoding are Waymo's.

Runs in the Waymo environment (``.venv-waymo``):

    .venv-waymo/bin/python -m xmbench.data.synthetic.waymo_writer --out DIR [--seed 0] [--segments 2] [--frames 4]

Writes ``DIR/training/segment-<name>_with_camera_labels.tfrecord`` (and ``validation/`` for the
last ``--val-segments`` segments). ``--truth DIR`` also writes what was simulated, before any
encoding: per frame ``<token>.npy`` (float32 (N, 7) points in the converter's column layout and
order), ``<token>.seg.npy`` where the frame has segmentation labels, and ``boxes.json``.
Deterministic: every random draw comes from a generator seeded by (seed, segment, purpose...).
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import os
import sys
import zlib
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off stderr

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from waymo_open_dataset import dataset_pb2, label_pb2  # noqa: E402
from waymo_open_dataset.protos import segmentation_pb2  # noqa: E402

from ...atomic import atomic_path, write_json, write_npy  # noqa: E402
from . import scene_sim as sim  # noqa: E402
from ..waymo.tf.convert import WAYMO_CAM_TO_OPTICAL  # noqa: E402

FRAME_INTERVAL_US = 100_000  # Waymo records at 10 Hz
SPIN_SECONDS = 0.1  # one TOP revolution per frame
LABEL_RANGE = 75.0  # Waymo labels objects within 75 m of the vehicle
SEG_EVERY = 2  # Waymo labels segmentation on a subset of frames; by default every second frame here
# Points closer than this to a box surface are dropped: the converter computes in float32 with
# global coordinates of thousands of metres, so inside/outside must not hinge on the last millimetres.
BOX_SURFACE_MARGIN = 5e-3
BOX_HIT_DEPTH = 0.01  # a ray that meets a box is returned this far inside it (as scene_sim does)
SHORT_RANGE_FOV_DEG = 100.0  # half field of view of a short-range lidar; the car body hides the rest
FOLIAGE_DEPTH = 0.5  # foliage is half transparent: a second echo comes from behind it
SEG = segmentation_pb2.Segmentation


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


# --------------------------------------------------------------------------------------------
# Geometry helpers
# --------------------------------------------------------------------------------------------

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


def _mount(rng: np.random.Generator, translation, yaw_deg: float, tilt_std_deg: float = 0.3) -> np.ndarray:
    """Sensor-to-vehicle transform: the nominal yaw plus a small random mounting tilt."""
    roll, pitch = np.deg2rad(rng.normal(0.0, tilt_std_deg, size=2))
    return _transform(_rotation(roll, pitch, np.deg2rad(yaw_deg)), translation)


def _ego_pose(scene: sim.Scene, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Vehicle-to-global at time t, and its (roll, pitch, yaw, x, y, z) rounded as float32 storage does."""
    translation, yaw = scene.ego_pose(t)
    six = np.array([0.0, 0.0, yaw, *translation], dtype=np.float32).astype(np.float64)
    return _transform(_rotation(*six[:3]), six[3:]), six


def _matrix_float(arr: np.ndarray) -> dataset_pb2.MatrixFloat:
    m = dataset_pb2.MatrixFloat()
    m.data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    m.shape.dims.extend(arr.shape)
    return m


def _matrix_int32(arr: np.ndarray) -> dataset_pb2.MatrixInt32:
    m = dataset_pb2.MatrixInt32()
    m.data.extend(np.asarray(arr, dtype=np.int32).ravel().tolist())
    m.shape.dims.extend(arr.shape)
    return m


def _compressed(matrix) -> bytes:
    """As the dataset stores matrices: the serialized proto, zlib-compressed."""
    return zlib.compress(matrix.SerializeToString())


# --------------------------------------------------------------------------------------------
# Scene content Waymo labels that scene_sim has no notion of: signs on poles
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Sign:
    """A sign plate on a pole: a thin box facing along the road (Waymo labels signs as TYPE_SIGN)."""

    id: int
    centre: tuple[float, float, float]
    size: tuple[float, float, float]  # w, l, h as scene_sim: l is the plate's thickness
    yaw: float


SIGN_ID_BASE = 10_000_000  # above every scene_sim id
SIGN_COLOUR = (235, 235, 228)
SIGN_REFLECTIVITY = 0.9  # retro-reflective


def _signs(rng: np.random.Generator, scene: sim.Scene) -> tuple[Sign, ...]:
    signs = []
    for pole in scene.poles:
        if rng.random() > 0.4:
            continue
        width, height = float(rng.uniform(0.5, 0.9)), float(rng.uniform(0.45, 0.9))
        towards_road = -np.sign(pole.d)
        d = pole.d + towards_road * (pole.radius + width / 2 + 0.03)
        x, y, heading = scene.road.pose_at(pole.s, d)
        z = min(pole.height - 0.3, float(rng.uniform(2.2, 3.2)))
        signs.append(Sign(SIGN_ID_BASE + pole.id, (float(x), float(y), z), (width, 0.06, height), float(heading)))
    return tuple(signs)


def _with_signs(snap: sim.Snapshot, signs: tuple[Sign, ...]) -> sim.Snapshot:
    for s in signs:
        snap = snap.with_box(s.centre, s.size, s.yaw, s.id, sim.Surface.POLE)
    return snap


# --------------------------------------------------------------------------------------------
# LiDAR: rays laid out as Waymo's range images, ray casting, per-point attributes
# --------------------------------------------------------------------------------------------

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


@dataclass
class Returns:
    """One lidar's two returns as (H, W) arrays; range <= 0 where there is no return."""

    range: np.ndarray  # (2, H, W)
    intensity: np.ndarray
    elongation: np.ndarray
    vehicle: np.ndarray  # (2, H, W, 3) point in the vehicle frame at the frame time (float64)
    seg: np.ndarray  # (2, H, W, 2) instance id, Waymo seg class
    box: np.ndarray  # (2, H, W) index of the snapshot box the point lies in, -1 for none


@dataclass
class FrameContext:
    """Everything one frame's sensors share."""

    scene: sim.Scene
    plain: sim.Snapshot  # scene_sim's own geometry (what its renderer knows)
    snap: sim.Snapshot  # plain plus the sign boxes
    signs: dict[int, Sign]
    trees: dict[int, sim.Tree]
    t: float
    pose: np.ndarray  # vehicle-to-global at the frame time
    labelled_boxes: np.ndarray  # snapshot indices of agent and sign boxes (the ones a point may count in)


def _cast(ctx: FrameContext, origins: np.ndarray, dirs: np.ndarray, max_range: float):
    hits = sim.cast_rays(ctx.snap, origins, dirs, max_range)
    on_box = np.isfinite(hits.exit_range)
    r = hits.range.copy()
    chord = hits.exit_range - hits.range
    r[on_box] = hits.range[on_box] + np.minimum(BOX_HIT_DEPTH, chord[on_box] / 2)
    return hits, r


def _properties(ctx: FrameContext, kind: np.ndarray, obj_id: np.ndarray, world: np.ndarray):
    """Reflectivity, Waymo seg class and instance id of each hit."""
    n = len(kind)
    refl, seg_class, instance = np.zeros(n), np.zeros(n, np.int32), np.zeros(n, np.int32)
    ground = kind == sim.Surface.GROUND
    if np.any(ground):
        s, d = ctx.scene.road.frenet(world[ground, 0], world[ground, 1])
        zone = ctx.scene.road.ground_zone(d)
        marking = ctx.scene.road.is_marking(s, d) & (zone == sim.GroundZone.ROAD)
        refl[ground] = np.select([marking, zone == sim.GroundZone.ROAD, zone == sim.GroundZone.SIDEWALK],
                                 [sim.SURFACE_REFLECTIVITY['marking'], sim.SURFACE_REFLECTIVITY['road'],
                                  sim.SURFACE_REFLECTIVITY['sidewalk']], sim.SURFACE_REFLECTIVITY['terrain'])
        seg_class[ground] = np.select([marking, zone == sim.GroundZone.ROAD, zone == sim.GroundZone.SIDEWALK],
                                      [SEG.TYPE_LANE_MARKER, SEG.TYPE_ROAD, SEG.TYPE_SIDEWALK], SEG.TYPE_WALKABLE)
    building = kind == sim.Surface.BUILDING
    refl[building], seg_class[building] = sim.SURFACE_REFLECTIVITY[sim.Surface.BUILDING], SEG.TYPE_BUILDING
    for i in np.flatnonzero(kind == sim.Surface.POLE):
        sign = ctx.signs.get(int(obj_id[i]))
        refl[i] = SIGN_REFLECTIVITY if sign else sim.SURFACE_REFLECTIVITY[sim.Surface.POLE]
        seg_class[i] = SEG.TYPE_SIGN if sign else SEG.TYPE_POLE
    for i in np.flatnonzero(kind == sim.Surface.TREE):
        tree = ctx.trees[int(obj_id[i])]
        xy = np.array(ctx.scene.road.pose_at(tree.s, tree.d)[:2])
        trunk = np.hypot(*(world[i, :2] - xy)) <= tree.trunk_radius + 1e-3
        refl[i] = sim.SURFACE_REFLECTIVITY[sim.Surface.TREE]
        seg_class[i] = SEG.TYPE_TREE_TRUNK if trunk else SEG.TYPE_VEGETATION
    for i in np.flatnonzero(kind == sim.Surface.AGENT):
        agent = ctx.scene.agents[int(obj_id[i])]
        refl[i] = sim.OBJECT_CLASSES[agent.cls].reflectivity
        seg_class[i] = _seg_class_of_agent(agent)
        instance[i] = agent.id + 1
    return refl, seg_class, instance


def _seg_class_of_agent(agent: sim.Agent) -> int:
    """Waymo separates ridden two-wheelers (the rider's class) from parked ones; barriers have no
    class of their own and go with construction cones (temporary traffic control)."""
    moving = agent.state != 'parked'
    return {'car': SEG.TYPE_CAR, 'truck': SEG.TYPE_TRUCK, 'bus': SEG.TYPE_BUS, 'pedestrian': SEG.TYPE_PEDESTRIAN,
            'bicycle': SEG.TYPE_BICYCLIST if moving else SEG.TYPE_BICYCLE,
            'motorcycle': SEG.TYPE_MOTORCYCLIST if moving else SEG.TYPE_MOTORCYCLE,
            'traffic_cone': SEG.TYPE_CONSTRUCTION_CONE, 'barrier': SEG.TYPE_CONSTRUCTION_CONE}[agent.cls]


@dataclass
class Rays:
    """One lidar's rays, pixel by pixel (row-major), in the global frame."""

    origins: np.ndarray  # (H*W, 3)
    dirs: np.ndarray  # (H*W, 3) unit
    visible: np.ndarray  # (H*W,) not hidden by the car body
    pixel_pose: np.ndarray | None  # TOP only: (H, W, 6) roll, pitch, yaw, x, y, z of the firing pose


def lidar_rays(ctx: FrameContext, spec: LaserSpec, extrinsic: np.ndarray, inclinations: np.ndarray) -> Rays:
    """TOP fires each column at its own time of the spin (its pose there is the pixel pose); the
    short-range lidars are taken at the frame pose, as the dataset treats them."""
    h, w = spec.rows, spec.cols
    dirs_s = sensor_directions(spec, extrinsic, inclinations)
    if spec.name == "TOP":
        times = ctx.t + ((np.arange(w) + 0.5) / w - 0.5) * SPIN_SECONDS
        poses, six = zip(*(_ego_pose(ctx.scene, float(t)) for t in times))
        col_pose = np.stack(poses)
        pixel_pose = np.ascontiguousarray(np.broadcast_to(np.stack(six)[None], (h, w, 6)))
        visible = np.ones(h * w, dtype=bool)
    else:
        col_pose = np.broadcast_to(ctx.pose, (w, 4, 4))
        pixel_pose = None
        visible = np.abs(np.arctan2(dirs_s[..., 1], dirs_s[..., 0])).reshape(-1) <= np.deg2rad(SHORT_RANGE_FOV_DEG)
    sensor_to_world = col_pose @ extrinsic  # (W, 4, 4)
    dirs = np.einsum('wij,hwj->hwi', sensor_to_world[:, :3, :3], dirs_s).reshape(-1, 3)
    origins = np.broadcast_to(sensor_to_world[None, :, :3, 3], (h, w, 3)).reshape(-1, 3)
    return Rays(origins, dirs, visible, pixel_pose)


def _echoes(ctx: FrameContext, rays: Rays, max_range: float):
    """(kind, obj_id, true range) of the first and the second echo of every ray (inf: none).

    Foliage is half transparent: a ray that meets a tree continues FOLIAGE_DEPTH behind the hit
    and returns a second echo from whatever it meets there.
    """
    hits, r1 = _cast(ctx, rays.origins, rays.dirs, max_range)
    n = len(r1)
    kind2, obj2, r2 = np.full(n, sim.Surface.NONE, np.int8), np.full(n, sim.NO_ID, np.int32), np.full(n, np.inf)
    idx = np.flatnonzero(hits.kind == sim.Surface.TREE)
    if len(idx):
        start = rays.origins[idx] + rays.dirs[idx] * (r1[idx, None] + FOLIAGE_DEPTH)
        behind, r_behind = _cast(ctx, start, rays.dirs[idx], max_range)
        kind2[idx], obj2[idx] = behind.kind, behind.obj_id
        r2[idx] = r1[idx] + FOLIAGE_DEPTH + r_behind
    return [(hits.kind, hits.obj_id, r1), (kind2, obj2, r2)]


def scan(ctx: FrameContext, spec: LaserSpec, extrinsic: np.ndarray, inclinations: np.ndarray,
         rng: np.random.Generator) -> tuple[Returns, np.ndarray | None]:
    """Both returns of one lidar, and for TOP the (H, W, 6) pixel poses it was fired from."""
    h, w = spec.rows, spec.cols
    rays = lidar_rays(ctx, spec, extrinsic, inclinations)
    world_to_vehicle = np.linalg.inv(ctx.pose)
    out = Returns(range=np.full((2, h * w), -1.0), intensity=np.zeros((2, h * w)), elongation=np.zeros((2, h * w)),
                  vehicle=np.zeros((2, h * w, 3)), seg=np.zeros((2, h * w, 2), np.int32), box=np.full((2, h * w), -1))
    for ret, (kind, obj_id, true_range) in enumerate(_echoes(ctx, rays, spec.max_range)):
        noise = rng.normal(0.0, 0.01, h * w)
        on_box = (kind == sim.Surface.AGENT) | np.isin(obj_id, list(ctx.signs))
        # Box hits already sit just inside their box (_cast); noise could push them out again.
        measured = np.where(on_box, true_range, true_range + noise)
        valid = rays.visible & np.isfinite(measured) & (measured > 0.3) & (measured <= spec.max_range)
        measured = np.where(valid, measured, 0.0).astype(np.float32)  # the range image stores float32
        world = rays.origins + rays.dirs * measured[:, None].astype(np.float64)
        keep, box = _unambiguous(ctx, world, kind, obj_id, valid)
        valid &= keep
        refl, seg_class, instance = _properties(ctx, kind, obj_id, world)
        out.range[ret] = np.where(valid, measured, -1.0)
        out.intensity[ret] = np.where(valid, refl * rng.uniform(0.8, 1.2, h * w), 0.0)
        out.elongation[ret] = np.where(valid, 0.01 * measured + np.abs(rng.normal(0, 0.03, h * w)), 0.0)
        out.vehicle[ret] = np.where(valid[:, None], world @ world_to_vehicle[:3, :3].T + world_to_vehicle[:3, 3], 0)
        out.seg[ret] = np.where(valid[:, None], np.stack([instance, seg_class], 1), 0)
        out.box[ret] = np.where(valid, box, -1)
    shaped = Returns(range=out.range.reshape(2, h, w), intensity=out.intensity.reshape(2, h, w),
                     elongation=out.elongation.reshape(2, h, w), vehicle=out.vehicle.reshape(2, h, w, 3),
                     seg=out.seg.reshape(2, h, w, 2), box=out.box.reshape(2, h, w))
    return shaped, rays.pixel_pose


def _unambiguous(ctx: FrameContext, world: np.ndarray, kind: np.ndarray, obj_id: np.ndarray,
                 valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points clearly inside their own box or clearly outside all (as the nuScenes writer keeps),
    and the box each kept point lies in."""
    keep = np.ones(len(world), dtype=bool)
    box = np.full(len(world), -1)
    snap = ctx.snap
    for m in ctx.labelled_boxes:
        radius = np.linalg.norm(snap.box_size[m]) / 2 + 0.05
        near = np.flatnonzero(valid & (np.sum((world - snap.box_centre[m]) ** 2, axis=1) <= radius ** 2))
        if len(near) == 0:
            continue
        sd = sim.box_signed_distance(world[near], snap.box_centre[m], snap.box_size[m], snap.box_yaw[m])
        own = (obj_id[near] == snap.box_id[m]) & (kind[near] != sim.Surface.GROUND)
        keep[near[(np.abs(sd) < BOX_SURFACE_MARGIN) | ((sd < 0) & ~own)]] = False
        box[near[sd < 0]] = m
    return keep, box


# --------------------------------------------------------------------------------------------
# Frame assembly
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class MountedCamera:
    calibration: dataset_pb2.CameraCalibration
    intrinsic: np.ndarray  # 3x3 pinhole (the synthetic cameras have no distortion)
    cam_to_vehicle: np.ndarray  # Waymo camera axes: x forward, y left, z up

    @property
    def size(self) -> tuple[int, int]:
        return self.calibration.width, self.calibration.height


@dataclass(frozen=True)
class MountedLaser:
    spec: LaserSpec
    calibration: dataset_pb2.LaserCalibration
    extrinsic: np.ndarray  # lidar to vehicle
    inclinations: np.ndarray  # ascending


def _cameras(rng: np.random.Generator, scale: float) -> list[MountedCamera]:
    """The five cameras with images scaled by ``scale`` (intrinsics scaled to match)."""
    out = []
    for cam in CAMERAS:
        width, height = round(cam.width * scale), round(cam.height * scale)
        sx, sy = width / cam.width, height / cam.height
        cal = dataset_pb2.CameraCalibration()
        cal.name = dataset_pb2.CameraName.Name.Value(cam.name)
        cal.intrinsic.extend([cam.focal * sx, cam.focal * sy, cam.cx * sx, cam.cy * sy, 0.0, 0.0, 0.0, 0.0, 0.0])
        extrinsic = _mount(rng, cam.translation, cam.yaw_deg, 0.2)
        cal.extrinsic.transform.extend(extrinsic.ravel().tolist())
        cal.width, cal.height = width, height
        cal.rolling_shutter_direction = dataset_pb2.CameraCalibration.GLOBAL_SHUTTER
        k = np.array([[cam.focal * sx, 0, cam.cx * sx], [0, cam.focal * sy, cam.cy * sy], [0, 0, 1.0]])
        out.append(MountedCamera(cal, k, extrinsic))
    return out


def _lasers(rng: np.random.Generator, rig: tuple[LaserSpec, ...]) -> list[MountedLaser]:
    out = []
    for spec in rig:
        cal = dataset_pb2.LaserCalibration()
        cal.name = dataset_pb2.LaserName.Name.Value(spec.name)
        incl = beam_inclinations(spec)
        if spec.explicit_inclinations:
            cal.beam_inclinations.extend(incl.tolist())
        cal.beam_inclination_min, cal.beam_inclination_max = spec.inclination_min, spec.inclination_max
        extrinsic = _mount(rng, spec.translation, spec.yaw_deg)
        cal.extrinsic.transform.extend(extrinsic.ravel().tolist())
        out.append(MountedLaser(spec, cal, extrinsic, incl))
    return out


def camera_projection(vehicle: np.ndarray, valid: np.ndarray, cameras: list[MountedCamera]) -> np.ndarray:
    """(H, W, 6): the first two cameras each point projects into (name, column, row), 0 where none."""
    cp = np.zeros(valid.shape + (6,), dtype=np.int32)
    filled = np.zeros(valid.shape, dtype=np.int32)
    for cam in cameras:
        to_optical = WAYMO_CAM_TO_OPTICAL @ np.linalg.inv(cam.cam_to_vehicle)
        p = vehicle @ to_optical[:3, :3].T + to_optical[:3, 3]
        with np.errstate(divide='ignore', invalid='ignore'):
            uv = (p @ cam.intrinsic.T)[..., :2] / p[..., 2:3]
        width, height = cam.size
        inside = (valid & (p[..., 2] > 0.3) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0)
                  & (uv[..., 1] < height) & (filled < 2))
        for slot in (0, 1):
            sel = inside & (filled == slot)
            cp[sel, 3 * slot] = cam.calibration.name
            cp[sel, 3 * slot + 1:3 * slot + 3] = uv[sel].astype(np.int32)
        filled += inside
    return cp


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


def _render_images(ctx: FrameContext, cameras: list[MountedCamera], quality: int) -> list[bytes]:
    ego_s = ctx.scene.ego.s0 + ctx.scene.ego.speed * ctx.t
    rs = sim.build_render_scene(ctx.scene, ctx.plain, ego_s)
    # scene_sim knows no signs; their plates are drawn with its own box-face helper.
    plates = [sim._box_faces(np.array(s.centre), s.size, s.yaw, SIGN_COLOUR) for s in ctx.signs.values()]
    rs = replace(rs, solids=sim._Polygons.concat([rs.solids] + plates))
    images = []
    for cam in cameras:
        width, height = cam.size
        optical_to_world = ctx.pose @ cam.cam_to_vehicle @ WAYMO_CAM_TO_OPTICAL.T
        camera = sim.PinholeCamera(intrinsic=cam.intrinsic, width=width, height=height, cam_to_world=optical_to_world)
        buf = io.BytesIO()
        sim.render_camera(rs, camera).save(buf, 'JPEG', quality=quality)
        images.append(buf.getvalue())
    return images


@dataclass
class SegmentRig:
    """What stays fixed over a segment: its name, scene, signs, sensor calibrations and start time."""

    name: str
    scene: sim.Scene
    signs: tuple[Sign, ...]
    lasers: list[MountedLaser]
    cameras: list[MountedCamera]
    t0_us: int


def _segment_name(rng: np.random.Generator) -> str:
    """Waymo's context name layout: <19 digits>_<4>_<3>_<4>_<3>."""
    start = int(rng.integers(1000, 9000))
    digits = f"{int(rng.integers(10**9, 10**10))}{int(rng.integers(0, 10**9)):09d}"
    return f"{digits}_{start}_{int(rng.integers(0, 1000)):03d}_{start + 20}_{int(rng.integers(0, 1000)):03d}"


def make_segment(cfg: GeneratorConfig, index: int) -> SegmentRig:
    rng = np.random.default_rng([cfg.seed, index])
    name = _segment_name(rng)
    duration = cfg.frames * FRAME_INTERVAL_US / 1e6 + SPIN_SECONDS
    # Global coordinates of thousands of metres, like the dataset's: float32 pixel poses must cope.
    scene = sim.generate_scene(rng, sim.SceneConfig(duration=duration),
                               origin=(float(rng.uniform(-3000, 3000)), float(rng.uniform(-3000, 3000))),
                               heading=float(rng.uniform(-np.pi, np.pi)))
    signs = _signs(rng, scene)
    lasers = _lasers(rng, laser_rig(cfg.top_width, cfg.short_width))
    cameras = _cameras(rng, cfg.image_scale)
    t0_us = 1_500_000_000_000_000 + int(rng.integers(0, 10**14))
    return SegmentRig(name, scene, signs, lasers, cameras, t0_us)


@dataclass
class SimulatedFrame:
    """A Frame proto and what was simulated, before any encoding (the round trip must give it back)."""

    frame: dataset_pb2.Frame
    points: np.ndarray  # (N, 7) float32, the converter's columns and order
    seg: np.ndarray | None  # (N, 2) int32 where the frame has segmentation labels
    boxes: list[dict]

    @property
    def token(self) -> str:
        return f"{self.frame.context.name}_{self.frame.timestamp_micros}"


def _frame_context(rig: SegmentRig, k: int) -> FrameContext:
    t = SPIN_SECONDS / 2 + k * FRAME_INTERVAL_US / 1e6
    plain = rig.scene.snapshot(t)
    snap = _with_signs(plain, rig.signs)
    labelled = np.concatenate([np.arange(len(rig.scene.agents)), np.arange(len(plain.box_id), len(snap.box_id))])
    return FrameContext(scene=rig.scene, plain=plain, snap=snap, signs={s.id: s for s in rig.signs},
                        trees={tr.id: tr for tr in rig.scene.trees}, t=t, pose=_ego_pose(rig.scene, t)[0],
                        labelled_boxes=labelled)


def _frame_header(rig: SegmentRig, ts: int, pose: np.ndarray) -> dataset_pb2.Frame:
    frame = dataset_pb2.Frame()
    frame.context.name = rig.name
    frame.context.camera_calibrations.extend(cam.calibration for cam in rig.cameras)
    frame.context.laser_calibrations.extend(laser.calibration for laser in rig.lasers)
    stats = frame.context.stats
    stats.time_of_day, stats.location, stats.weather = "Day", "location_synthetic", "sunny"
    frame.timestamp_micros = ts
    frame.pose.transform.extend(pose.ravel().tolist())
    return frame


def _encode_return(ri: dataset_pb2.RangeImage, returns: Returns, ret: int, cameras: list[MountedCamera],
                   pixel_pose: np.ndarray | None, with_seg: bool) -> None:
    """One return as the dataset stores it: zlib-compressed serialized matrices."""
    valid = returns.range[ret] > 0
    # Channels: range, intensity, elongation, is-in-no-label-zone (-1: no); -1 everywhere without a return.
    image = np.stack([returns.range[ret], returns.intensity[ret], returns.elongation[ret],
                      -np.ones_like(returns.range[ret])], -1)
    image[~valid] = -1.0
    ri.range_image_compressed = _compressed(_matrix_float(image))
    ri.camera_projection_compressed = _compressed(_matrix_int32(camera_projection(returns.vehicle[ret], valid,
                                                                                  cameras)))
    if pixel_pose is not None:
        ri.range_image_pose_compressed = _compressed(_matrix_float(pixel_pose))
    if with_seg:
        ri.segmentation_label_compressed = _compressed(_matrix_int32(returns.seg[ret]))


def make_frame(cfg: GeneratorConfig, seg_index: int, rig: SegmentRig, k: int) -> SimulatedFrame:
    ctx = _frame_context(rig, k)
    frame = _frame_header(rig, rig.t0_us + k * FRAME_INTERVAL_US, ctx.pose)
    with_seg = k % cfg.seg_every == 0
    counts = np.zeros(len(ctx.snap.box_id), dtype=np.int64)
    top_counts = np.zeros_like(counts)
    points, segs = [], []
    for li, laser in enumerate(rig.lasers):
        rng = np.random.default_rng([cfg.seed, seg_index, k, li])
        returns, pixel_pose = scan(ctx, laser.spec, laser.extrinsic, laser.inclinations, rng)
        is_top = laser.spec.name == "TOP"
        proto = frame.lasers.add()
        proto.name = laser.calibration.name
        for ret, ri in enumerate((proto.ri_return1, proto.ri_return2)):
            # Waymo keeps TOP's pixel pose with the first return only, and labels TOP's returns only.
            _encode_return(ri, returns, ret, rig.cameras, pixel_pose if ret == 0 else None, with_seg and is_top)
            valid = returns.range[ret] > 0
            in_box = returns.box[ret][valid]
            np.add.at(counts, in_box[in_box >= 0], 1)
            if is_top:
                np.add.at(top_counts, in_box[in_box >= 0], 1)
            n = int(valid.sum())
            points.append(np.concatenate([returns.vehicle[ret][valid], returns.intensity[ret][valid, None],
                                          returns.elongation[ret][valid, None], np.full((n, 1), ret),
                                          np.full((n, 1), proto.name)], 1).astype(np.float32))
            segs.append(returns.seg[ret][valid] if is_top else np.zeros((n, 2), np.int32))
    frame.laser_labels.extend(laser_labels(ctx, counts, top_counts, cfg.seed, rig.name))
    for cam, jpeg in zip(rig.cameras, _render_images(ctx, rig.cameras, cfg.jpeg_quality)):
        image = frame.images.add()
        image.name, image.image = cam.calibration.name, jpeg
        image.pose.CopyFrom(frame.pose)  # the synthetic cameras expose at the frame time
        image.pose_timestamp = image.camera_trigger_time = image.camera_readout_done_time = frame.timestamp_micros / 1e6
    for label_type, n in sorted(Counter(label.type for label in frame.laser_labels).items()):
        entry = frame.context.stats.laser_object_counts.add()
        entry.type, entry.count = label_type, n
    seg = np.concatenate(segs).astype(np.int32) if with_seg else None
    return SimulatedFrame(frame, np.concatenate(points), seg, [_truth_box(label) for label in frame.laser_labels])


def _truth_box(label: label_pb2.Label) -> dict:
    b = label.box
    return {"track_id": label.id, "type": label_pb2.Label.Type.Name(label.type),
            "center": [b.center_x, b.center_y, b.center_z], "lwh": [b.length, b.width, b.height],
            "heading": b.heading, "speed": [label.metadata.speed_x, label.metadata.speed_y],
            "num_lidar_points_in_box": label.num_lidar_points_in_box,
            "num_top_lidar_points_in_box": label.num_top_lidar_points_in_box,
            "difficulty": label.detection_difficulty_level}


def generate(out: str | Path, cfg: GeneratorConfig = GeneratorConfig(), truth: str | Path | None = None) -> list[Path]:
    """Write one TFRecord per segment (each atomically) and return their paths."""
    if cfg.frames < 1 or cfg.segments < 1 or cfg.seg_every < 1 or not 0 <= cfg.val_segments <= cfg.segments:
        raise ValueError("need frames >= 1, segments >= 1, seg_every >= 1 and 0 <= val_segments <= segments")
    out = Path(out)
    written, truth_boxes = [], {}
    for i in range(cfg.segments):
        rig = make_segment(cfg, i)
        folder = "validation" if i >= cfg.segments - cfg.val_segments else "training"
        path = out / folder / f"segment-{rig.name}_with_camera_labels.tfrecord"
        with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for k in range(cfg.frames):
                sim_frame = make_frame(cfg, i, rig, k)
                writer.write(sim_frame.frame.SerializeToString())
                if truth is not None:
                    write_npy(Path(truth) / f"{sim_frame.token}.npy", sim_frame.points)
                    if sim_frame.seg is not None:
                        write_npy(Path(truth) / f"{sim_frame.token}.seg.npy", sim_frame.seg)
                    truth_boxes[sim_frame.token] = sim_frame.boxes
        written.append(path)
    if truth is not None:
        write_json(Path(truth) / "boxes.json", truth_boxes)
    return written


def main(argv: list[str] | None = None) -> int:
    d = GeneratorConfig()
    parser = argparse.ArgumentParser(prog="python -m xmbench.data.synthetic.waymo_writer",
                                     description="Write synthetic Waymo Open Dataset TFRecords.")
    parser.add_argument("--out", required=True, help="folder for training/ and validation/ TFRecords")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--segments", type=int, default=d.segments)
    parser.add_argument("--frames", type=int, default=d.frames, help="frames per segment (10 Hz)")
    parser.add_argument("--val-segments", type=int, default=d.val_segments, help="how many go to validation/")
    parser.add_argument("--top-width", type=int, default=d.top_width, help="TOP range image width (real: 2650)")
    parser.add_argument("--short-width", type=int, default=d.short_width,
                        help="short-range lidars' range image width (real: 600; height is a third)")
    parser.add_argument("--image-scale", type=float, default=d.image_scale, help="camera size / 1920x1280")
    parser.add_argument("--seg-every", type=int, default=d.seg_every,
                        help="every how many frames carry 3D segmentation labels (Waymo labels a subset)")
    parser.add_argument("--truth", help="also write the simulated points and boxes here (for tests)")
    args = parser.parse_args(argv)
    cfg = GeneratorConfig(seed=args.seed, segments=args.segments, frames=args.frames, val_segments=args.val_segments,
                          top_width=args.top_width, short_width=args.short_width, image_scale=args.image_scale,
                          seg_every=args.seg_every)
    try:
        paths = generate(args.out, cfg, args.truth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"tfrecords": [str(p) for p in paths]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
