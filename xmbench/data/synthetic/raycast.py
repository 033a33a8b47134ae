"""Nearest-hit ray casting against a :class:`~.scene_model.Snapshot`, and box signed distances.

Why: the LiDAR sweep, the nuScenes visibility probes and the Waymo range images all ask the same
question (what does this ray meet first?), so it is answered once, vectorised over rays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_model import Snapshot
from .scene_sim import NO_ID, Surface


@dataclass
class RayHits:
    """Result of casting N rays. Misses have range inf, kind NONE and id NO_ID."""

    range: np.ndarray  # (N,) float64
    kind: np.ndarray  # (N,) int8 Surface
    obj_id: np.ndarray  # (N,) int32
    exit_range: np.ndarray  # (N,) where a box was hit, where the ray leaves it again (else nan)

    @property
    def hit(self) -> np.ndarray:
        return np.isfinite(self.range)


def _safe_inverse(v: np.ndarray) -> np.ndarray:
    """1/v with exact zeros nudged, so slab tests never produce 0 * inf."""
    v = np.where(np.abs(v) < 1e-12, np.where(v < 0, -1e-12, 1e-12), v)
    return 1.0 / v


def _candidates(o: np.ndarray, d: np.ndarray, centres: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """(M, N) mask of rays that pass within an object's bounding sphere (in front of the origin).

    Computed for all objects at once with matrix products, so the exact (costlier) intersection
    tests only run on the few rays that can hit each object.
    """
    if len(centres) == 0:
        return np.zeros((0, len(d)), dtype=bool)
    t_c = centres @ d.T - np.sum(o * d, axis=1)[None]  # (M, N) ray parameter of the closest approach
    dist2 = (np.sum(centres ** 2, axis=1)[:, None] - 2 * centres @ o.T + np.sum(o ** 2, axis=1)[None]) - t_c ** 2
    return (dist2 <= (radii ** 2)[:, None] + 1e-9) & (t_c > -radii[:, None])


def _cast_boxes(o, d, snap: Snapshot, best: RayHits) -> None:
    """Slab test of rays against oriented boxes; keeps the nearest entry per ray."""
    cand = _candidates(o, d, snap.box_centre, np.linalg.norm(snap.box_size, axis=1) / 2)
    for m in range(len(snap.box_id)):
        idx = np.flatnonzero(cand[m])
        if len(idx) == 0:
            continue
        cy, sy = np.cos(snap.box_yaw[m]), np.sin(snap.box_yaw[m])
        rel = o[idx] - snap.box_centre[m]
        dd = d[idx]
        # Box axes: x along the length (yaw), y along the width, z up; sizes are (w, l, h).
        lo = np.stack([rel[:, 0] * cy + rel[:, 1] * sy, -rel[:, 0] * sy + rel[:, 1] * cy, rel[:, 2]], 1)
        ld = np.stack([dd[:, 0] * cy + dd[:, 1] * sy, -dd[:, 0] * sy + dd[:, 1] * cy, dd[:, 2]], 1)
        w, l, h = snap.box_size[m] / 2.0
        ext = np.array([l, w, h])
        inv = _safe_inverse(ld)
        t1 = (-ext - lo) * inv
        t2 = (ext - lo) * inv
        t_in = np.max(np.minimum(t1, t2), axis=1)
        t_out = np.min(np.maximum(t1, t2), axis=1)
        closer = (t_in > 0) & (t_out > t_in) & (t_in < best.range[idx])
        sel = idx[closer]
        best.range[sel] = t_in[closer]
        best.exit_range[sel] = t_out[closer]
        best.kind[sel] = snap.box_kind[m]
        best.obj_id[sel] = snap.box_id[m]


def _cast_cylinders(o, d, snap: Snapshot, best: RayHits) -> None:
    """Side walls of vertical cylinders z in [0, height] (caps are never seen from a car)."""
    centres = np.concatenate([snap.cyl_xy, snap.cyl_height[:, None] / 2], axis=1)
    cand = _candidates(o, d, centres, np.hypot(snap.cyl_radius, snap.cyl_height / 2))
    for k in range(len(snap.cyl_id)):
        idx = np.flatnonzero(cand[k])
        if len(idx) == 0:
            continue
        oo, dd = o[idx], d[idx]
        rel = oo[:, :2] - snap.cyl_xy[k]
        a = dd[:, 0] ** 2 + dd[:, 1] ** 2
        b = 2.0 * np.sum(rel * dd[:, :2], axis=1)
        c = np.sum(rel ** 2, axis=1) - snap.cyl_radius[k] ** 2
        disc = b * b - 4 * a * c
        ok = (disc >= 0) & (a > 1e-12)
        t = np.full(len(idx), np.inf)
        t[ok] = (-b[ok] - np.sqrt(disc[ok])) / (2 * a[ok])
        z = oo[:, 2] + t * dd[:, 2]
        closer = ok & (t > 0) & (z >= 0) & (z <= snap.cyl_height[k]) & (t < best.range[idx])
        _take(best, idx[closer], t[closer], snap.cyl_kind[k], snap.cyl_id[k])


def _cast_spheres(o, d, snap: Snapshot, best: RayHits) -> None:
    cand = _candidates(o, d, snap.sph_centre, snap.sph_radius)
    for j in range(len(snap.sph_id)):
        idx = np.flatnonzero(cand[j])
        if len(idx) == 0:
            continue
        rel = o[idx] - snap.sph_centre[j]
        b = np.sum(rel * d[idx], axis=1)
        c = np.sum(rel ** 2, axis=1) - snap.sph_radius[j] ** 2
        disc = np.maximum(b * b - c, 0.0)
        t = -b - np.sqrt(disc)
        closer = (t > 0) & (t < best.range[idx])
        _take(best, idx[closer], t[closer], Surface.TREE, snap.sph_id[j])


def _take(best: RayHits, idx, t, kind, obj_id) -> None:
    """Record hits t of the rays idx (indices or a mask) on a non-box surface."""
    best.range[idx] = t
    best.exit_range[idx] = np.nan
    best.kind[idx] = kind
    best.obj_id[idx] = obj_id


def cast_rays(snap: Snapshot, origins: np.ndarray, directions: np.ndarray, max_range: float = 60.0) -> RayHits:
    """Nearest hit of each ray (origins (N,3), unit directions (N,3)) within max_range.

    Vectorised over rays and looped over objects (a few dozen), so ~35k rays take tens of ms.
    Rays that hit nothing closer than max_range are misses (a real LiDAR drops them).
    """
    o = np.broadcast_to(np.asarray(origins, dtype=np.float64), np.shape(directions)).copy()
    d = np.asarray(directions, dtype=np.float64)
    n = len(d)
    best = RayHits(range=np.full(n, np.inf), kind=np.full(n, Surface.NONE, dtype=np.int8),
                   obj_id=np.full(n, NO_ID, dtype=np.int32), exit_range=np.full(n, np.nan))
    with np.errstate(divide='ignore', invalid='ignore'):
        t_ground = np.where(d[:, 2] < -1e-9, -o[:, 2] / d[:, 2], np.inf)
    ground = (t_ground > 0) & np.isfinite(t_ground)
    _take(best, ground, t_ground[ground], Surface.GROUND, NO_ID)
    _cast_boxes(o, d, snap, best)
    _cast_cylinders(o, d, snap, best)
    _cast_spheres(o, d, snap, best)
    miss = best.range > max_range
    best.range[miss] = np.inf
    best.kind[miss] = Surface.NONE
    best.obj_id[miss] = NO_ID
    best.exit_range[miss] = np.nan
    return best


def box_signed_distance(points: np.ndarray, centre, size, yaw: float) -> np.ndarray:
    """Chebyshev-style signed distance of points (N,3) to a yaw-rotated box (< 0 inside).

    Writers use it to keep no point within a hair of a box surface, so that inside/outside
    decisions cannot flip under float32 storage or another library's transform.
    """
    rel = np.asarray(points, dtype=np.float64) - np.asarray(centre, dtype=np.float64)
    c, s = np.cos(yaw), np.sin(yaw)
    lx = rel[:, 0] * c + rel[:, 1] * s
    ly = -rel[:, 0] * s + rel[:, 1] * c
    w, l, h = size
    return np.max(np.stack([np.abs(lx) - l / 2, np.abs(ly) - w / 2, np.abs(rel[:, 2]) - h / 2]), axis=0)
