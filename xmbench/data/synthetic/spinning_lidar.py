"""A spinning multi-beam LiDAR (the nuScenes rig's HDL-32E by default) and one sweep of it.

Why: the nuScenes writer needs a point cloud with per-point truth (what each point hit, its
ground zone and reflectivity); the ray casting itself is sensor-agnostic and lives in
:mod:`raycast`, this module only lays the beams out and turns hits into returns.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .raycast import cast_rays
from .scene_model import Scene, Snapshot
from .scene_sim import OBJECT_CLASSES, SURFACE_REFLECTIVITY, GroundZone, Surface


HDL32E_ELEVATIONS_DEG = tuple(float(v) for v in np.linspace(-30.67, 10.67, 32))


@dataclass(frozen=True)
class SpinningLidar:
    """A spinning multi-beam LiDAR: one column of beams per azimuth step, ring 0 = lowest beam.

    Rays are ordered like a real spin: azimuth-major, then ring; the spin is clockwise seen from
    above and starts pointing along the sensor's -x axis.
    """

    elevations_deg: Tuple[float, ...] = HDL32E_ELEVATIONS_DEG
    azimuth_steps: int = 1080
    max_range: float = 60.0
    range_noise: float = 0.015

    def rays(self) -> Tuple[np.ndarray, np.ndarray]:
        """Unit directions (N, 3) in the sensor frame and the ring index (N,) of each ray."""
        az = np.pi - 2 * np.pi * np.arange(self.azimuth_steps) / self.azimuth_steps
        el = np.deg2rad(np.asarray(self.elevations_deg))
        az_g, el_g = np.meshgrid(az, el, indexing='ij')
        dirs = np.stack([np.cos(el_g) * np.cos(az_g), np.cos(el_g) * np.sin(az_g), np.sin(el_g)], -1)
        ring = np.broadcast_to(np.arange(len(el)), az_g.shape)
        return dirs.reshape(-1, 3), ring.reshape(-1).astype(np.int32)


@dataclass
class LidarScan:
    """Returns of one sweep: points in the sensor frame, plus what each point hit."""

    points: np.ndarray  # (P, 3) float64, sensor frame
    ring: np.ndarray  # (P,)
    reflectivity: np.ndarray  # (P,) 0..1 before the sensor's noise
    kind: np.ndarray  # (P,) Surface
    obj_id: np.ndarray  # (P,)
    ground_zone: np.ndarray  # (P,) GroundZone for ground hits, -1 otherwise
    world: np.ndarray  # (P, 3) float64 global frame


def scan_lidar(scene: Scene, snap: Snapshot, lidar: SpinningLidar, sensor_to_world: np.ndarray,
               rng: np.random.Generator) -> LidarScan:
    """Ray-cast one sweep at the sensor pose (no motion within the sweep) with range noise.

    Points on an agent box are kept strictly inside it (between where the ray enters and leaves),
    so a box's point count is the same for any point-in-box test; grazing hits thinner than a few
    millimetres are dropped instead.
    """
    dirs_s, ring = lidar.rays()
    rot, origin = sensor_to_world[:3, :3], sensor_to_world[:3, 3]
    dirs_w = dirs_s @ rot.T
    hits = cast_rays(snap, origin[None], dirs_w, lidar.max_range)
    noise = rng.normal(0.0, lidar.range_noise, size=len(dirs_s))
    rng_out = hits.range + noise
    on_box = np.isfinite(hits.exit_range)
    chord = hits.exit_range - hits.range
    inside = hits.range + np.minimum(np.abs(noise) + 0.003, chord / 2.0)
    rng_out = np.where(on_box, inside, rng_out)
    keep = hits.hit & ~(on_box & (chord < 0.01)) & (rng_out > 0.3)
    r = rng_out[keep]
    pts_s = dirs_s[keep] * r[:, None]
    world = origin[None] + dirs_w[keep] * r[:, None]
    kind, obj_id = hits.kind[keep], hits.obj_id[keep]
    zone = np.full(len(r), -1, dtype=np.int8)
    refl = np.zeros(len(r))
    g = kind == Surface.GROUND
    if np.any(g):
        s_g, d_g = scene.road.frenet(world[g, 0], world[g, 1])
        zone[g] = scene.road.ground_zone(d_g)
        refl[g] = _ground_reflectivity(zone[g], scene.road.is_marking(s_g, d_g))
    for k in (Surface.BUILDING, Surface.POLE, Surface.TREE, Surface.EGO):
        refl[kind == k] = SURFACE_REFLECTIVITY[k]
    agent = kind == Surface.AGENT
    refl[agent] = [OBJECT_CLASSES[scene.agents[i].cls].reflectivity for i in obj_id[agent]]
    return LidarScan(points=pts_s, ring=ring[keep], reflectivity=refl, kind=kind, obj_id=obj_id,
                     ground_zone=zone, world=world)


def _ground_reflectivity(zone: np.ndarray, marking: np.ndarray) -> np.ndarray:
    table = np.array([SURFACE_REFLECTIVITY['road'], SURFACE_REFLECTIVITY['sidewalk'],
                      SURFACE_REFLECTIVITY['terrain']])
    refl = table[zone]
    refl[marking & (zone == GroundZone.ROAD)] = SURFACE_REFLECTIVITY['marking']
    return refl
