"""sample_annotation and instance records: boxes with attributes, visibility and true point counts.

Why apart: which agents get a box (range, at least one point), their nuScenes attributes and the
visibility bins are labelling policy, independent of how clouds and images are written.
"""
from __future__ import annotations

from typing import Dict, List, Sequence

import numpy as np

from .nuscenes_lidar import LidarFrame, agent_distances
from .nuscenes_records import SceneContext, static_token
from .nuscenes_rig import LIDAR_CHANNEL
from .nuscenes_vocab import CLASS_TO_CATEGORY
from .raycast import cast_rays
from .scene_model import Agent, Snapshot

ANNOTATION_RANGE = 50.0


def _attribute_names(agent: Agent) -> List[str]:
    if agent.cls in ('car', 'truck', 'bus'):
        return [f'vehicle.{agent.state}']
    if agent.cls in ('bicycle', 'motorcycle'):
        return ['cycle.without_rider' if agent.state == 'parked' else 'cycle.with_rider']
    if agent.cls == 'pedestrian':
        return ['pedestrian.moving' if agent.state == 'moving' else 'pedestrian.standing']
    return []


def _visibility_tokens(snap: Snapshot, origin: np.ndarray, box_indices: Sequence[int]) -> List[str]:
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
    hits = cast_rays(snap, origin[None], dirs, max_range=200.0)
    seen = hits.obj_id == snap.box_id[owner]
    tokens = []
    for m in box_indices:
        frac = float(np.mean(seen[owner == m]))
        tokens.append('1' if frac < 0.4 else '2' if frac < 0.6 else '3' if frac < 0.8 else '4')
    return tokens


def annotate(ctx: SceneContext, k: int, t: float, sample_token: str, snap: Snapshot, frame: LidarFrame,
             ego_to_world: np.ndarray, annotations: Dict[int, List[dict]]) -> None:
    """sample_annotation records for agents within range that have at least one LiDAR point."""
    scene = ctx.scene
    ego_xy = ego_to_world[:2, 3]
    chosen, counts = [], []
    for m, (_, sd) in agent_distances(snap, len(scene.agents), frame.world).items():
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
            'attribute_tokens': [static_token('attribute', a) for a in _attribute_names(agent)],
            'translation': [float(v) for v in snap.box_centre[m]], 'size': [float(v) for v in agent.size],
            'rotation': [float(np.cos(yaw / 2)), 0.0, 0.0, float(np.sin(yaw / 2))],
            'prev': '', 'next': '', 'num_lidar_pts': n, 'num_radar_pts': 0}
        chain = annotations.setdefault(agent.id, [])
        if chain:
            chain[-1]['next'] = record['token']
            record['prev'] = chain[-1]['token']
        chain.append(record)
        ctx.tables.add('sample_annotation', record)


def write_instances(ctx: SceneContext, annotations: Dict[int, List[dict]]) -> None:
    for agent_id in sorted(annotations):
        chain = annotations[agent_id]
        category = CLASS_TO_CATEGORY[ctx.scene.agents[agent_id].cls]
        ctx.tables.add('instance', {'token': ctx.token('instance', agent_id),
                                    'category_token': static_token('category', category),
                                    'nbr_annotations': len(chain), 'first_annotation_token': chain[0]['token'],
                                    'last_annotation_token': chain[-1]['token']})
