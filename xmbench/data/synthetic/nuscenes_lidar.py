"""LIDAR_TOP clouds as nuScenes stores them (float32 x, y, z, intensity, ring) and their lidarseg labels.

Why: a box's ``num_lidar_pts`` must be the true number of points in it for any point-in-box test,
so points too close to a box surface are dropped here, once, before the cloud is written or counted.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np
from scipy.spatial import cKDTree

from .nuscenes_records import SceneContext
from .nuscenes_rig import EGO_BODY_CENTRE, EGO_BODY_SIZE, LIDAR_CHANNEL
from .nuscenes_vocab import CATEGORY_INDEX, CLASS_TO_CATEGORY, LIDARSEG_OF_GROUND, LIDARSEG_OF_SURFACE
from .raycast import box_signed_distance
from .scene_model import Scene, Snapshot
from .scene_sim import EGO_ID, Surface
from .spinning_lidar import LidarScan, scan_lidar

# No point may lie closer than this to an annotated box's surface: keeps inside/outside decisions
# stable under float32 storage and under the devkit's own transforms.
BOX_SURFACE_MARGIN = 1e-3


@dataclass
class LidarFrame:
    """One written cloud: float32 sensor-frame points, the scan it came from, and world points."""

    cloud: np.ndarray  # (P, 5) float32 as written
    scan: LidarScan
    world: np.ndarray  # (P, 3) float64, from the float32 points through the written transforms


def lidar_frame(ctx: SceneContext, t: float, ego_to_world: np.ndarray, key: tuple) -> Tuple[Snapshot, LidarFrame]:
    """Ray-cast the LiDAR at time t and drop points within a hair of any agent box surface."""
    snap = ctx.scene.snapshot(t)
    yaw = float(np.arctan2(ego_to_world[1, 0], ego_to_world[0, 0]))
    body_centre = ego_to_world[:3, :3] @ np.array(EGO_BODY_CENTRE) + ego_to_world[:3, 3]
    with_ego = snap.with_box(body_centre, EGO_BODY_SIZE, yaw, EGO_ID, Surface.EGO)
    lidar_to_world = ego_to_world @ ctx.calib[LIDAR_CHANNEL].sensor_to_ego
    rng = ctx.rng(*key)
    scan = scan_lidar(ctx.scene, with_ego, ctx.lidar, lidar_to_world, rng)
    intensity = np.clip(np.round(scan.reflectivity * 255 * rng.uniform(0.8, 1.2, len(scan.ring))
                                 + rng.normal(0, 1.0, len(scan.ring))), 0, 255)
    cloud = np.concatenate([scan.points, intensity[:, None], scan.ring[:, None]], axis=1).astype(np.float32)
    world = cloud[:, :3].astype(np.float64) @ lidar_to_world[:3, :3].T + lidar_to_world[:3, 3]
    keep = _unambiguous(ctx.scene, snap, scan, world)
    frame = LidarFrame(cloud=cloud[keep], scan=_subset(scan, keep), world=world[keep])
    return snap, frame


def agent_distances(snap: Snapshot, n_agents: int, world: np.ndarray) -> Dict[int, Tuple[np.ndarray, np.ndarray]]:
    """For each agent box, the indices of nearby points and their signed distances to the box.

    A k-d tree on the points keeps this to the few points around each box.
    """
    tree = cKDTree(world)
    result = {}
    for m in range(n_agents):
        radius = float(np.linalg.norm(snap.box_size[m]) / 2 + 0.05)
        idx = np.asarray(tree.query_ball_point(snap.box_centre[m], radius), dtype=np.int64)
        idx.sort()
        sd = box_signed_distance(world[idx], snap.box_centre[m], snap.box_size[m], snap.box_yaw[m])
        result[m] = (idx, sd)
    return result


def _unambiguous(scene: Scene, snap: Snapshot, scan: LidarScan, world: np.ndarray) -> np.ndarray:
    """Points that are clearly inside their own agent box or clearly outside every agent box."""
    keep = np.ones(len(world), dtype=bool)
    for m, (idx, sd) in agent_distances(snap, len(scene.agents), world).items():
        own = (scan.kind[idx] == Surface.AGENT) & (scan.obj_id[idx] == snap.box_id[m])
        bad = (np.abs(sd) < BOX_SURFACE_MARGIN) | ((sd < 0) & ~own)
        keep[idx[bad]] = False
    return keep


def _subset(scan: LidarScan, keep: np.ndarray) -> LidarScan:
    return LidarScan(points=scan.points[keep], ring=scan.ring[keep], reflectivity=scan.reflectivity[keep],
                     kind=scan.kind[keep], obj_id=scan.obj_id[keep], ground_zone=scan.ground_zone[keep],
                     world=scan.world[keep])


def lidarseg_labels(scene: Scene, scan: LidarScan) -> np.ndarray:
    labels = np.zeros(len(scan.kind), dtype=np.uint8)  # 0 = noise, never left over in practice
    for kind, index in LIDARSEG_OF_SURFACE.items():
        labels[scan.kind == kind] = index
    ground = scan.kind == Surface.GROUND
    for zone, index in LIDARSEG_OF_GROUND.items():
        labels[ground & (scan.ground_zone == zone)] = index
    agent = scan.kind == Surface.AGENT
    labels[agent] = [CATEGORY_INDEX[CLASS_TO_CATEGORY[scene.agents[i].cls]] for i in scan.obj_id[agent]]
    return labels
