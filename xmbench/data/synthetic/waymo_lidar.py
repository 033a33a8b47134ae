"""Waymo's lidar returns: rays laid out as range images, two echoes each, and per-point attributes.

Why: the range images must decode to points exactly as Waymo's converter decodes them (TOP fires
each column from its own pose during the spin, foliage gives a second echo), and every point must
be unambiguously inside one box or outside all, so point counts survive the float32 round trip.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from waymo_open_dataset.protos import segmentation_pb2

from .raycast import box_signed_distance, cast_rays
from .scene_model import Agent
from .scene_sim import NO_ID, OBJECT_CLASSES, SURFACE_REFLECTIVITY, GroundZone, Surface
from .waymo_rig import SPIN_SECONDS, LaserSpec, ego_pose, sensor_directions
from .waymo_scene import SIGN_REFLECTIVITY, FrameContext

# Points closer than this to a box surface are dropped: the converter computes in float32 with
# global coordinates of thousands of metres, so inside/outside must not hinge on the last millimetres.
BOX_SURFACE_MARGIN = 5e-3
BOX_HIT_DEPTH = 0.01  # a ray that meets a box is returned this far inside it (as spinning_lidar does)
SHORT_RANGE_FOV_DEG = 100.0  # half field of view of a short-range lidar; the car body hides the rest
FOLIAGE_DEPTH = 0.5  # foliage is half transparent: a second echo comes from behind it
SEG = segmentation_pb2.Segmentation


@dataclass
class Returns:
    """One lidar's two returns as (H, W) arrays; range <= 0 where there is no return."""

    range: np.ndarray  # (2, H, W)
    intensity: np.ndarray
    elongation: np.ndarray
    vehicle: np.ndarray  # (2, H, W, 3) point in the vehicle frame at the frame time (float64)
    seg: np.ndarray  # (2, H, W, 2) instance id, Waymo seg class
    box: np.ndarray  # (2, H, W) index of the snapshot box the point lies in, -1 for none


def _cast(ctx: FrameContext, origins: np.ndarray, dirs: np.ndarray, max_range: float):
    hits = cast_rays(ctx.snap, origins, dirs, max_range)
    on_box = np.isfinite(hits.exit_range)
    r = hits.range.copy()
    chord = hits.exit_range - hits.range
    r[on_box] = hits.range[on_box] + np.minimum(BOX_HIT_DEPTH, chord[on_box] / 2)
    return hits, r


def _properties(ctx: FrameContext, kind: np.ndarray, obj_id: np.ndarray, world: np.ndarray):
    """Reflectivity, Waymo seg class and instance id of each hit."""
    n = len(kind)
    refl, seg_class, instance = np.zeros(n), np.zeros(n, np.int32), np.zeros(n, np.int32)
    ground = kind == Surface.GROUND
    if np.any(ground):
        s, d = ctx.scene.road.frenet(world[ground, 0], world[ground, 1])
        zone = ctx.scene.road.ground_zone(d)
        marking = ctx.scene.road.is_marking(s, d) & (zone == GroundZone.ROAD)
        refl[ground] = np.select([marking, zone == GroundZone.ROAD, zone == GroundZone.SIDEWALK],
                                 [SURFACE_REFLECTIVITY['marking'], SURFACE_REFLECTIVITY['road'],
                                  SURFACE_REFLECTIVITY['sidewalk']], SURFACE_REFLECTIVITY['terrain'])
        seg_class[ground] = np.select([marking, zone == GroundZone.ROAD, zone == GroundZone.SIDEWALK],
                                      [SEG.TYPE_LANE_MARKER, SEG.TYPE_ROAD, SEG.TYPE_SIDEWALK], SEG.TYPE_WALKABLE)
    building = kind == Surface.BUILDING
    refl[building], seg_class[building] = SURFACE_REFLECTIVITY[Surface.BUILDING], SEG.TYPE_BUILDING
    for i in np.flatnonzero(kind == Surface.POLE):
        sign = ctx.signs.get(int(obj_id[i]))
        refl[i] = SIGN_REFLECTIVITY if sign else SURFACE_REFLECTIVITY[Surface.POLE]
        seg_class[i] = SEG.TYPE_SIGN if sign else SEG.TYPE_POLE
    for i in np.flatnonzero(kind == Surface.TREE):
        tree = ctx.trees[int(obj_id[i])]
        xy = np.array(ctx.scene.road.pose_at(tree.s, tree.d)[:2])
        trunk = np.hypot(*(world[i, :2] - xy)) <= tree.trunk_radius + 1e-3
        refl[i] = SURFACE_REFLECTIVITY[Surface.TREE]
        seg_class[i] = SEG.TYPE_TREE_TRUNK if trunk else SEG.TYPE_VEGETATION
    for i in np.flatnonzero(kind == Surface.AGENT):
        agent = ctx.scene.agents[int(obj_id[i])]
        refl[i] = OBJECT_CLASSES[agent.cls].reflectivity
        seg_class[i] = _seg_class_of_agent(agent)
        instance[i] = agent.id + 1
    return refl, seg_class, instance


def _seg_class_of_agent(agent: Agent) -> int:
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
        poses, six = zip(*(ego_pose(ctx.scene, float(t)) for t in times))
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
    kind2, obj2, r2 = np.full(n, Surface.NONE, np.int8), np.full(n, NO_ID, np.int32), np.full(n, np.inf)
    idx = np.flatnonzero(hits.kind == Surface.TREE)
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
        on_box = (kind == Surface.AGENT) | np.isin(obj_id, list(ctx.signs))
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
        sd = box_signed_distance(world[near], snap.box_centre[m], snap.box_size[m], snap.box_yaw[m])
        own = (obj_id[near] == snap.box_id[m]) & (kind[near] != Surface.GROUND)
        keep[near[(np.abs(sd) < BOX_SURFACE_MARGIN) | ((sd < 0) & ~own)]] = False
        box[near[sd < 0]] = m
    return keep, box

