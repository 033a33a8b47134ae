"""Sensor-agnostic procedural street scenes: geometry, LiDAR ray casting and camera rendering.

A scene is a road (straight or a constant-curvature arc) on the ground plane z = 0 of a global
frame, with sidewalks, buildings set back behind a terrain strip (with gaps), poles, trees and
oriented 3D boxes of traffic participants. Some participants move at constant speed along the
road, so one object keeps one identity and one velocity across frames. An ego vehicle drives
along its lane.

Nothing here knows a dataset format: the nuScenes writer (and later a Waymo writer) maps the
generic hit kinds, object classes and ground zones returned here onto its own label spaces and
file layouts. Everything random is drawn from a ``numpy.random.Generator`` the caller seeds, so a
scene is a pure function of the generator state.

Frames: global x, y on the ground, z up. The ego frame is x forward, y left, z up, with its origin
on the ground (like nuScenes' rear-axle frame). Camera frames are x right, y down, z forward.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from enum import IntEnum
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw


# --------------------------------------------------------------------------------------------
# Object classes and surfaces
# --------------------------------------------------------------------------------------------

class Surface(IntEnum):
    """What a ray hit. Kept as small ints so hit arrays stay compact (int8)."""

    NONE = -1
    GROUND = 0
    BUILDING = 1
    POLE = 2
    TREE = 3
    AGENT = 4
    EGO = 5


class GroundZone(IntEnum):
    """Where on the ground a point lies, from its lateral offset to the road centre line."""

    ROAD = 0
    SIDEWALK = 1
    TERRAIN = 2


NO_ID = -1
EGO_ID = -2


@dataclass(frozen=True)
class ObjectClass:
    """Static description of a participant class: typical size, look and LiDAR reflectivity."""

    name: str
    size: Tuple[float, float, float]  # width, length, height (metres), nuScenes order
    jitter: float  # relative std of the size
    colour: Tuple[int, int, int]  # saturated RGB: each class has its own hue in the images
    reflectivity: float  # 0..1, scaled to an intensity by the sensor model


# Hues are spread so a pixel's hue alone tells the class (see tests); buildings, ground and sky
# are kept desaturated so they never look like a participant.
OBJECT_CLASSES: Dict[str, ObjectClass] = {c.name: c for c in [
    ObjectClass('car', (1.9, 4.6, 1.7), 0.06, (40, 90, 230), 0.12),
    ObjectClass('truck', (2.5, 7.0, 3.0), 0.08, (40, 180, 60), 0.14),
    ObjectClass('bus', (2.9, 11.0, 3.5), 0.04, (240, 200, 20), 0.16),
    ObjectClass('pedestrian', (0.7, 0.7, 1.75), 0.06, (220, 30, 30), 0.05),
    ObjectClass('bicycle', (0.6, 1.7, 1.3), 0.05, (200, 40, 200), 0.09),
    ObjectClass('motorcycle', (0.8, 2.1, 1.5), 0.05, (20, 200, 210), 0.10),
    ObjectClass('barrier', (2.5, 0.5, 1.0), 0.04, (120, 40, 170), 0.28),
    ObjectClass('traffic_cone', (0.4, 0.4, 1.0), 0.05, (255, 120, 0), 0.55),
]}

# Reflectivity of the static world (0..1).
SURFACE_REFLECTIVITY = {
    'road': 0.035, 'marking': 0.25, 'sidewalk': 0.07, 'terrain': 0.03,
    Surface.BUILDING: 0.14, Surface.POLE: 0.2, Surface.TREE: 0.05, Surface.EGO: 0.02,
}

SKY_TOP = np.array([70, 125, 200], dtype=np.float64)
SKY_HORIZON = np.array([200, 218, 232], dtype=np.float64)
TERRAIN_COLOUR = (92, 98, 78)
ROAD_COLOUR = (88, 88, 92)
SIDEWALK_COLOUR = (150, 148, 142)
MARKING_COLOUR = (235, 235, 225)
POLE_COLOUR = (110, 110, 115)
TRUNK_COLOUR = (90, 70, 55)
CROWN_COLOUR = (52, 96, 50)
BUILDING_PALETTE = [(178, 164, 146), (150, 150, 158), (190, 182, 166), (140, 126, 118),
                    (168, 168, 168), (122, 118, 112), (196, 190, 180)]
SUN_DIRECTION = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


# --------------------------------------------------------------------------------------------
# Road
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Road:
    """A road centre line parametrised by arc length s, with signed lateral offset d (left > 0).

    Straight when curvature is ~0, otherwise a circular arc: this keeps both the forward map
    (s, d) -> (x, y) and its inverse closed-form, so ground labels of 30k points are vectorised.
    """

    origin: Tuple[float, float]
    heading: float
    curvature: float = 0.0
    half_width: float = 7.0
    sidewalk_width: float = 3.0

    @property
    def straight(self) -> bool:
        return abs(self.curvature) < 1e-9

    def heading_at(self, s):
        return self.heading + self.curvature * np.asarray(s, dtype=np.float64)

    def pose_at(self, s, d=0.0) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Global x, y and heading of the point at arc length s and lateral offset d."""
        s = np.asarray(s, dtype=np.float64)
        d = np.asarray(d, dtype=np.float64)
        ox, oy = self.origin
        h = self.heading_at(s)
        if self.straight:
            x = ox + s * np.cos(self.heading) - d * np.sin(self.heading)
            y = oy + s * np.sin(self.heading) + d * np.cos(self.heading)
        else:
            r = 1.0 / self.curvature
            cx, cy = ox - r * np.sin(self.heading), oy + r * np.cos(self.heading)
            x = cx + (r - d) * np.sin(h)
            y = cy - (r - d) * np.cos(h)
        return x, y, h

    def frenet(self, x, y) -> Tuple[np.ndarray, np.ndarray]:
        """Inverse of pose_at: arc length and lateral offset of global points."""
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        ox, oy = self.origin
        if self.straight:
            dx, dy = x - ox, y - oy
            s = dx * np.cos(self.heading) + dy * np.sin(self.heading)
            d = -dx * np.sin(self.heading) + dy * np.cos(self.heading)
            return s, d
        r = 1.0 / self.curvature
        cx, cy = ox - r * np.sin(self.heading), oy + r * np.cos(self.heading)
        vx, vy = x - cx, y - cy
        rho = np.hypot(vx, vy)
        k_sign = np.sign(self.curvature)
        d = r - k_sign * rho
        # (sin h, -cos h) points from the centre to the curve for k > 0 (flipped for k < 0).
        h = np.arctan2(k_sign * vx, -k_sign * vy)
        dh = np.angle(np.exp(1j * (h - self.heading)))
        return dh / self.curvature, d

    def ground_zone(self, d) -> np.ndarray:
        """Road, sidewalk or terrain, from the lateral offset."""
        ad = np.abs(np.asarray(d))
        zone = np.full(ad.shape, GroundZone.TERRAIN, dtype=np.int8)
        zone[ad <= self.half_width + self.sidewalk_width] = GroundZone.SIDEWALK
        zone[ad <= self.half_width] = GroundZone.ROAD
        return zone

    def is_marking(self, s, d) -> np.ndarray:
        """Painted lines: a dashed centre line and solid edge lines (bright in LiDAR and images)."""
        s = np.asarray(s)
        ad = np.abs(np.asarray(d))
        centre = (ad < MARKING_WIDTH / 2) & (np.mod(s, DASH_PERIOD) < DASH_LENGTH)
        edge = np.abs(ad - (self.half_width - EDGE_LINE_OFFSET)) < MARKING_WIDTH / 2
        return centre | edge

    def strip_polygon(self, s0: float, s1: float, d0: float, d1: float, step: float = 6.0) -> np.ndarray:
        """Closed outline (n, 2) of the region s0..s1 x d0..d1, following the curve."""
        n = max(2, int(np.ceil((s1 - s0) / step)) + 1)
        s = np.linspace(s0, s1, n)
        xa, ya, _ = self.pose_at(s, d0)
        xb, yb, _ = self.pose_at(s[::-1], d1)
        return np.stack([np.concatenate([xa, xb]), np.concatenate([ya, yb])], axis=1)


MARKING_WIDTH = 0.15
DASH_PERIOD = 9.0
DASH_LENGTH = 3.0
EDGE_LINE_OFFSET = 0.3


# --------------------------------------------------------------------------------------------
# Scene content
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Agent:
    """A traffic participant: an oriented box moving at a constant speed along the road.

    ``speed`` is signed along s; ``yaw_offset`` turns the box relative to the road heading (pi for
    oncoming traffic, pi/2 for a barrier lying along the kerb). ``state`` is a generic motion state
    ('moving', 'stopped', 'parked', 'standing', 'static') that writers map to their attributes.
    """

    id: int
    cls: str
    size: Tuple[float, float, float]
    s0: float
    d: float
    speed: float
    yaw_offset: float
    state: str


@dataclass(frozen=True)
class Building:
    """A box-shaped building whose road-facing wall lies at lateral offset d_inner."""

    id: int
    s: float
    d_inner: float  # signed; the building extends away from the road
    length: float
    depth: float
    height: float
    colour: Tuple[int, int, int]


@dataclass(frozen=True)
class Pole:
    id: int
    s: float
    d: float
    radius: float
    height: float


@dataclass(frozen=True)
class Tree:
    """A trunk (vertical cylinder) with a spherical crown on top."""

    id: int
    s: float
    d: float
    trunk_radius: float
    trunk_height: float
    crown_radius: float


@dataclass(frozen=True)
class EgoPlan:
    """The ego vehicle's motion: its lane offset and constant speed along the road."""

    d: float
    speed: float
    s0: float = 0.0


@dataclass(frozen=True)
class Scene:
    road: Road
    ego: EgoPlan
    agents: Tuple[Agent, ...]
    buildings: Tuple[Building, ...]
    poles: Tuple[Pole, ...]
    trees: Tuple[Tree, ...]
    left_hand_traffic: bool
    duration: float

    def ego_pose(self, t: float) -> Tuple[np.ndarray, float]:
        """Ego translation (x, y, 0) and yaw at time t."""
        x, y, h = self.road.pose_at(self.ego.s0 + self.ego.speed * t, self.ego.d)
        return np.array([float(x), float(y), 0.0]), float(h)

    def agent_state(self, agent: Agent, t: float) -> Tuple[np.ndarray, float, np.ndarray]:
        """Box centre, yaw and velocity (3,) of an agent at time t."""
        s = agent.s0 + agent.speed * t
        x, y, h = self.road.pose_at(s, agent.d)
        centre = np.array([float(x), float(y), agent.size[2] / 2.0])
        # Along an arc a lateral offset d scales the ground speed by (1 - k d).
        ground_speed = agent.speed * (1.0 - self.road.curvature * agent.d)
        velocity = np.array([ground_speed * np.cos(h), ground_speed * np.sin(h), 0.0])
        return centre, float(h + agent.yaw_offset), velocity

    def snapshot(self, t: float) -> 'Snapshot':
        """All solid geometry at time t, as flat arrays for vectorised ray casting."""
        boxes = [self._agent_box(a, t) for a in self.agents] + [self._building_box(b) for b in self.buildings]
        centres = np.array([b[0] for b in boxes], dtype=np.float64).reshape(-1, 3)
        sizes = np.array([b[1] for b in boxes], dtype=np.float64).reshape(-1, 3)
        yaws = np.array([b[2] for b in boxes], dtype=np.float64)
        ids = np.array([a.id for a in self.agents] + [b.id for b in self.buildings], dtype=np.int32)
        kinds = np.array([Surface.AGENT] * len(self.agents) + [Surface.BUILDING] * len(self.buildings),
                         dtype=np.int8)
        cyl, sph = self._round_shapes()
        return Snapshot(time=t, box_centre=centres, box_size=sizes, box_yaw=yaws, box_id=ids, box_kind=kinds,
                        **cyl, **sph)

    def _agent_box(self, agent: Agent, t: float):
        centre, yaw, _ = self.agent_state(agent, t)
        return centre, agent.size, yaw

    def _building_box(self, b: Building):
        side = np.sign(b.d_inner)
        x, y, h = self.road.pose_at(b.s, b.d_inner + side * b.depth / 2.0)
        # Along the road the building is `length` long: that is its box length (l), depth is width.
        return np.array([float(x), float(y), b.height / 2.0]), (b.depth, b.length, b.height), float(h)

    def _round_shapes(self):
        px, py, _ = self.road.pose_at([p.s for p in self.poles], [p.d for p in self.poles])
        tx, ty, _ = self.road.pose_at([t.s for t in self.trees], [t.d for t in self.trees])
        cyl = dict(
            cyl_xy=np.concatenate([np.stack([px, py], 1).reshape(-1, 2), np.stack([tx, ty], 1).reshape(-1, 2)]),
            cyl_radius=np.array([p.radius for p in self.poles] + [t.trunk_radius for t in self.trees]),
            cyl_height=np.array([p.height for p in self.poles] + [t.trunk_height for t in self.trees]),
            cyl_id=np.array([p.id for p in self.poles] + [t.id for t in self.trees], dtype=np.int32),
            cyl_kind=np.array([Surface.POLE] * len(self.poles) + [Surface.TREE] * len(self.trees), dtype=np.int8))
        crown_z = [t.trunk_height + 0.9 * t.crown_radius for t in self.trees]
        sph = dict(
            sph_centre=np.concatenate([np.stack([tx, ty], 1).reshape(-1, 2),
                                       np.array(crown_z, dtype=np.float64).reshape(-1, 1)], axis=1),
            sph_radius=np.array([t.crown_radius for t in self.trees], dtype=np.float64),
            sph_id=np.array([t.id for t in self.trees], dtype=np.int32))
        return cyl, sph

    def object_class(self, obj_id: int) -> Optional[str]:
        """Class name of an agent id (None for anything else)."""
        return self.agents[obj_id].cls if 0 <= obj_id < len(self.agents) else None


# --------------------------------------------------------------------------------------------
# Geometry snapshot and ray casting
# --------------------------------------------------------------------------------------------

@dataclass
class Snapshot:
    """Solid geometry at one instant. Boxes rest on z = 0 (their centre z is half their height)."""

    time: float
    box_centre: np.ndarray  # (M, 3)
    box_size: np.ndarray  # (M, 3) width, length, height; length runs along the box yaw
    box_yaw: np.ndarray  # (M,)
    box_id: np.ndarray  # (M,)
    box_kind: np.ndarray  # (M,) Surface
    cyl_xy: np.ndarray  # (K, 2) vertical cylinders standing on the ground
    cyl_radius: np.ndarray
    cyl_height: np.ndarray
    cyl_id: np.ndarray
    cyl_kind: np.ndarray
    sph_centre: np.ndarray  # (J, 3)
    sph_radius: np.ndarray
    sph_id: np.ndarray

    def with_box(self, centre, size, yaw, obj_id: int, kind: Surface) -> 'Snapshot':
        """A copy with one more box (e.g. the ego body, which only the LiDAR sees)."""
        return replace(self,
                       box_centre=np.vstack([self.box_centre, np.asarray(centre, dtype=np.float64)[None]]),
                       box_size=np.vstack([self.box_size, np.asarray(size, dtype=np.float64)[None]]),
                       box_yaw=np.append(self.box_yaw, yaw),
                       box_id=np.append(self.box_id, np.int32(obj_id)).astype(np.int32),
                       box_kind=np.append(self.box_kind, np.int8(kind)).astype(np.int8))


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


# --------------------------------------------------------------------------------------------
# LiDAR model
# --------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------
# Camera rendering
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class PinholeCamera:
    """Pinhole camera: intrinsics K (3x3), image size, and its pose as a 4x4 camera-to-world."""

    intrinsic: np.ndarray
    width: int
    height: int
    cam_to_world: np.ndarray

    @property
    def position(self) -> np.ndarray:
        return self.cam_to_world[:3, 3]

    def to_camera(self, pts_world: np.ndarray) -> np.ndarray:
        rot, t = self.cam_to_world[:3, :3], self.cam_to_world[:3, 3]
        return (pts_world - t) @ rot

    def project(self, pts_cam: np.ndarray) -> np.ndarray:
        uvw = pts_cam @ self.intrinsic.T
        return uvw[..., :2] / uvw[..., 2:3]


@dataclass
class _Polygons:
    """World-space quads to draw, with colour, whether to back-face cull, and their normals."""

    quads: np.ndarray  # (P, 4, 3)
    colour: np.ndarray  # (P, 3) uint8 after shading
    normal: np.ndarray  # (P, 3); zero normal = never culled

    @staticmethod
    def concat(parts: Sequence['_Polygons']) -> '_Polygons':
        parts = [p for p in parts if len(p.quads)]
        if not parts:
            return _Polygons(np.zeros((0, 4, 3)), np.zeros((0, 3), np.uint8), np.zeros((0, 3)))
        return _Polygons(np.concatenate([p.quads for p in parts]), np.concatenate([p.colour for p in parts]),
                         np.concatenate([p.normal for p in parts]))


NEAR_PLANE = 0.3
MAX_TILE = 4.0  # long faces are cut into tiles so painter's sorting stays right locally


def _box_faces(centre, size, yaw, colour) -> _Polygons:
    """Six faces of a box as outward-facing quads, long faces tiled, shaded by the sun."""
    w, l, h = size
    c, s = np.cos(yaw), np.sin(yaw)
    ax_l = np.array([c, s, 0.0])
    ax_w = np.array([-s, c, 0.0])
    ax_h = np.array([0.0, 0.0, 1.0])
    quads, normals = [], []
    for normal_axis, half_n, (ua, ul), (va, vl) in (
            (ax_l, l / 2, (ax_w, w), (ax_h, h)), (-ax_l, l / 2, (ax_w, w), (ax_h, h)),
            (ax_w, w / 2, (ax_l, l), (ax_h, h)), (-ax_w, w / 2, (ax_l, l), (ax_h, h)),
            (ax_h, h / 2, (ax_l, l), (ax_w, w))):
        nu = max(1, int(np.ceil(ul / MAX_TILE)))
        nv = max(1, int(np.ceil(vl / MAX_TILE)))
        face_centre = np.asarray(centre) + normal_axis * half_n
        for i in range(nu):
            for j in range(nv):
                u0, u1 = -ul / 2 + ul * i / nu, -ul / 2 + ul * (i + 1) / nu
                v0, v1 = -vl / 2 + vl * j / nv, -vl / 2 + vl * (j + 1) / nv
                quads.append([face_centre + ua * u0 + va * v0, face_centre + ua * u1 + va * v0,
                              face_centre + ua * u1 + va * v1, face_centre + ua * u0 + va * v1])
                normals.append(normal_axis)
    # The bottom face is never visible from above the ground, so it is not drawn.
    normals = np.array(normals)
    shade = 0.55 + 0.45 * np.clip(normals @ SUN_DIRECTION, 0, 1)
    colours = np.clip(np.asarray(colour)[None] * shade[:, None], 0, 255).astype(np.uint8)
    return _Polygons(np.array(quads), colours, normals)


def _ground_polygons(road: Road, s_lo: float, s_hi: float, step: float = 5.0) -> List[Tuple[np.ndarray, tuple]]:
    """Road, sidewalks and painted lines as flat polygons (n, 3), drawn in this order."""
    hw, sw = road.half_width, road.sidewalk_width
    polys = [(road.strip_polygon(s_lo, s_hi, -hw, hw, step), ROAD_COLOUR),
             (road.strip_polygon(s_lo, s_hi, hw, hw + sw, step), SIDEWALK_COLOUR),
             (road.strip_polygon(s_lo, s_hi, -hw - sw, -hw, step), SIDEWALK_COLOUR)]
    for side in (-1, 1):
        d = side * (hw - EDGE_LINE_OFFSET)
        polys.append((road.strip_polygon(s_lo, s_hi, d - MARKING_WIDTH / 2, d + MARKING_WIDTH / 2, step),
                      MARKING_COLOUR))
    first = np.floor(s_lo / DASH_PERIOD) * DASH_PERIOD
    for s0 in np.arange(first, s_hi, DASH_PERIOD):
        polys.append((road.strip_polygon(s0, s0 + DASH_LENGTH, -MARKING_WIDTH / 2, MARKING_WIDTH / 2, DASH_LENGTH),
                      MARKING_COLOUR))
    return [(np.concatenate([p, np.zeros((len(p), 1))], axis=1), c) for p, c in polys]


def _clip_near(poly_cam: np.ndarray, near: float = NEAR_PLANE) -> np.ndarray:
    """Sutherland-Hodgman clip of a camera-frame polygon against the plane z = near."""
    out = []
    n = len(poly_cam)
    for i in range(n):
        a, b = poly_cam[i], poly_cam[(i + 1) % n]
        a_in, b_in = a[2] >= near, b[2] >= near
        if a_in:
            out.append(a)
        if a_in != b_in:
            t = (near - a[2]) / (b[2] - a[2])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 3)


@dataclass
class RenderScene:
    """Everything a camera draws at one instant, precomputed once and shared by all cameras."""

    ground: List[Tuple[np.ndarray, tuple]]
    solids: _Polygons
    poles: List[Tuple[np.ndarray, float, float, tuple]]  # base xy, radius, height, colour
    crowns: List[Tuple[np.ndarray, float, tuple]]  # centre, radius, colour


def build_render_scene(scene: Scene, snap: Snapshot, centre_s: float, reach: float = 100.0) -> RenderScene:
    """Collect drawable geometry within `reach` metres (along the road) of arc length centre_s."""
    road = scene.road
    ground = _ground_polygons(road, centre_s - reach, centre_s + reach)
    colour_of = {a.id: OBJECT_CLASSES[a.cls].colour for a in scene.agents}
    colour_of.update({b.id: b.colour for b in scene.buildings})
    s_box, _ = road.frenet(snap.box_centre[:, 0], snap.box_centre[:, 1])
    parts = [_box_faces(snap.box_centre[m], snap.box_size[m], snap.box_yaw[m], colour_of[int(snap.box_id[m])])
             for m in range(len(snap.box_id)) if abs(s_box[m] - centre_s) < reach + 20]
    poles = [(snap.cyl_xy[k], float(snap.cyl_radius[k]), float(snap.cyl_height[k]),
              POLE_COLOUR if snap.cyl_kind[k] == Surface.POLE else TRUNK_COLOUR)
             for k in range(len(snap.cyl_id))]
    crowns = [(snap.sph_centre[j], float(snap.sph_radius[j]), CROWN_COLOUR) for j in range(len(snap.sph_id))]
    return RenderScene(ground=ground, solids=_Polygons.concat(parts), poles=poles, crowns=crowns)


def _pole_quads(rs: RenderScene, cam_pos: np.ndarray) -> _Polygons:
    """Cylinders drawn as camera-facing rectangles (billboards) of their diameter."""
    if not rs.poles:
        return _Polygons.concat([])
    quads, colours = [], []
    for xy, radius, height, colour in rs.poles:
        view = np.array([xy[0] - cam_pos[0], xy[1] - cam_pos[1]])
        norm = np.linalg.norm(view)
        if norm < 1e-6:
            continue
        side = np.array([-view[1], view[0]]) / norm * radius
        a, b = xy - side, xy + side
        quads.append([[a[0], a[1], 0], [b[0], b[1], 0], [b[0], b[1], height], [a[0], a[1], height]])
        colours.append(colour)
    n = len(quads)
    return _Polygons(np.array(quads, dtype=np.float64).reshape(n, 4, 3), np.array(colours, np.uint8).reshape(n, 3),
                     np.zeros((n, 3)))


def _sky_and_terrain(camera: PinholeCamera) -> Image.Image:
    """Background: a sky gradient above the horizon and terrain colour below it."""
    rot = camera.cam_to_world[:3, :3]
    forward = rot[:, 2].copy()
    forward[2] = 0.0
    forward /= max(np.linalg.norm(forward), 1e-9)
    far = camera.to_camera(camera.position[None] + forward[None] * 1e4)
    horizon = float(camera.project(far)[0, 1]) if far[0, 2] > 0 else camera.height / 2
    rows = np.arange(camera.height, dtype=np.float64)
    frac = np.clip(rows / max(horizon, 1.0), 0.0, 1.0)[:, None]
    colours = SKY_TOP[None] * (1 - frac) + SKY_HORIZON[None] * frac
    colours[rows > horizon] = TERRAIN_COLOUR
    column = Image.fromarray(np.ascontiguousarray(colours.astype(np.uint8)[:, None, :]))
    return column.resize((camera.width, camera.height), Image.NEAREST)


def _draw_polygon(draw: ImageDraw.ImageDraw, camera: PinholeCamera, poly_cam: np.ndarray, colour) -> None:
    if np.any(poly_cam[:, 2] < NEAR_PLANE):
        poly_cam = _clip_near(poly_cam)
        if len(poly_cam) < 3:
            return
    uv = camera.project(poly_cam)
    if (uv[:, 0].max() < 0 or uv[:, 0].min() > camera.width or uv[:, 1].max() < 0
            or uv[:, 1].min() > camera.height):
        return
    draw.polygon([tuple(p) for p in np.round(uv, 2).tolist()], fill=tuple(int(c) for c in colour))


def render_camera(rs: RenderScene, camera: PinholeCamera) -> Image.Image:
    """Render an RGB image with the painter's algorithm.

    The ground is drawn first (nothing can hide under it from a camera above it); every other
    polygon is back-face culled, clipped at the near plane (so nothing behind the camera is
    drawn) and drawn far to near by the distance of its centroid.
    """
    img = _sky_and_terrain(camera)
    draw = ImageDraw.Draw(img)
    cam_pos = camera.position
    for poly, colour in rs.ground:
        _draw_polygon(draw, camera, camera.to_camera(poly), colour)
    polys = _Polygons.concat([rs.solids, _pole_quads(rs, cam_pos)])
    centroids = polys.quads.mean(axis=1)
    facing = np.einsum('ij,ij->i', centroids - cam_pos, polys.normal) < 0
    facing |= ~np.any(polys.normal != 0, axis=1)
    quads_cam = camera.to_camera(polys.quads.reshape(-1, 3)).reshape(-1, 4, 3)
    in_front = np.any(quads_cam[:, :, 2] > NEAR_PLANE, axis=1)
    items = [(float(np.linalg.norm(centroids[i] - cam_pos)), 0, i) for i in np.flatnonzero(facing & in_front)]
    for j, (centre, radius, _) in enumerate(rs.crowns):
        items.append((float(np.linalg.norm(centre - cam_pos)), 1, j))
    for _, typ, i in sorted(items, key=lambda it: -it[0]):
        if typ == 0:
            _draw_polygon(draw, camera, quads_cam[i], polys.colour[i])
        else:
            _draw_crown(draw, camera, *rs.crowns[i])
    return img


def _draw_crown(draw: ImageDraw.ImageDraw, camera: PinholeCamera, centre, radius, colour) -> None:
    """A sphere seen by a pinhole camera, drawn as a disc (exact enough away from the edges)."""
    c = camera.to_camera(np.asarray(centre)[None])[0]
    if c[2] < radius + NEAR_PLANE:
        return
    uv = camera.project(c[None])[0]
    r_px = camera.intrinsic[0, 0] * radius / c[2]
    if uv[0] + r_px < 0 or uv[0] - r_px > camera.width or uv[1] + r_px < 0 or uv[1] - r_px > camera.height:
        return
    draw.ellipse([uv[0] - r_px, uv[1] - r_px, uv[0] + r_px, uv[1] + r_px], fill=colour)


# --------------------------------------------------------------------------------------------
# Scene generation
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SceneConfig:
    """Knobs of the procedural scene. Distances in metres, speeds in m/s."""

    duration: float = 4.0
    ego_speed: Tuple[float, float] = (5.0, 8.0)
    left_hand_traffic: bool = False
    max_curvature: float = 1.0 / 250.0
    straight_probability: float = 0.4
    half_width: float = 7.0
    sidewalk_width: float = 3.0
    margin: float = 70.0  # how far beyond the ego path objects are placed
    lane_offset: float = 1.9


@dataclass
class _IdSource:
    next_id: int = 0

    def __call__(self) -> int:
        self.next_id += 1
        return self.next_id - 1


def _jittered_size(rng: np.random.Generator, cls: str) -> Tuple[float, float, float]:
    oc = OBJECT_CLASSES[cls]
    f = np.clip(rng.normal(1.0, oc.jitter, size=3), 1 - 2.5 * oc.jitter, 1 + 2.5 * oc.jitter)
    return tuple(round(float(v), 3) for v in np.asarray(oc.size) * f)


def _along_strip(rng: np.random.Generator, s_lo: float, s_hi: float, lengths: Sequence[float],
                 gap: Tuple[float, float]) -> List[float]:
    """Centres for items laid one after another along s with random gaps (never overlapping)."""
    centres, s = [], s_lo + rng.uniform(*gap)
    for length in lengths:
        if s + length > s_hi:
            break
        centres.append(s + length / 2)
        s += length + rng.uniform(*gap)
    return centres


def generate_scene(rng: np.random.Generator, config: SceneConfig = SceneConfig(),
                   origin: Tuple[float, float] = (0.0, 0.0), heading: float = 0.0) -> Scene:
    """Draw a street scene. Placement rules keep every pair of solids disjoint at all times:
    each lane's vehicles share one speed, parked objects sit in their own kerb strip, and each
    sidewalk sub-lane has its own pedestrian speed."""
    curvature = 0.0 if rng.random() < config.straight_probability else \
        float(rng.uniform(-1, 1) * config.max_curvature)
    road = Road(origin=(float(origin[0]), float(origin[1])), heading=float(heading), curvature=curvature,
                half_width=config.half_width, sidewalk_width=config.sidewalk_width)
    ego_side = 1.0 if config.left_hand_traffic else -1.0
    ego = EgoPlan(d=ego_side * config.lane_offset, speed=float(rng.uniform(*config.ego_speed)))
    travel = ego.speed * config.duration
    s_lo, s_hi = -config.margin, travel + config.margin
    new_id = _IdSource()
    agents: List[Agent] = []
    _lane_traffic(rng, agents, new_id, ego, ego_side, config, s_lo, s_hi)
    for side in (-1.0, 1.0):
        _kerb_strip(rng, agents, new_id, road, side, ego_side, s_lo, s_hi)
        _sidewalk(rng, agents, new_id, road, side, s_lo, s_hi)
    # Agents take the first ids, so an agent's id is its index (hit ids index scene.agents).
    assert all(a.id == i for i, a in enumerate(agents))
    buildings, poles, trees = [], [], []
    for side in (-1.0, 1.0):
        setback = float(rng.uniform(2.0, 6.0))
        _street_furniture(rng, poles, trees, new_id, road, side, setback, s_lo - 30, s_hi + 30)
        _buildings(rng, buildings, new_id, road, side, setback, s_lo - 40, s_hi + 40)
    return Scene(road=road, ego=ego, agents=tuple(agents), buildings=tuple(buildings), poles=tuple(poles),
                 trees=tuple(trees), left_hand_traffic=config.left_hand_traffic, duration=config.duration)


def _lane_traffic(rng, agents, new_id, ego: EgoPlan, ego_side: float, config: SceneConfig, s_lo, s_hi) -> None:
    """Vehicles in the two travel lanes: a lead/follower at ego speed and an oncoming platoon."""
    lane_mix = ['car'] * 6 + ['truck', 'bus', 'motorcycle', 'bicycle']
    if rng.random() < 0.8:
        cls = str(rng.choice(lane_mix))
        size = _jittered_size(rng, cls)
        agents.append(Agent(new_id(), cls, size, ego.s0 + rng.uniform(10, 22) + size[1] / 2, ego.d, ego.speed,
                            0.0, 'moving'))
    if rng.random() < 0.5:
        cls = str(rng.choice(lane_mix))
        size = _jittered_size(rng, cls)
        agents.append(Agent(new_id(), cls, size, ego.s0 - rng.uniform(9, 20) - size[1] / 2, ego.d, ego.speed,
                            0.0, 'moving'))
    stopped = rng.random() < 0.2
    speed = 0.0 if stopped else float(rng.uniform(5.0, 11.0))
    classes = [str(rng.choice(lane_mix)) for _ in range(12)]
    sizes = [_jittered_size(rng, c) for c in classes]
    extra = speed * config.duration
    centres = _along_strip(rng, s_lo, s_hi + extra, [s[1] for s in sizes], (4.0, 25.0))
    for cls, size, s in zip(classes, sizes, centres):
        agents.append(Agent(new_id(), cls, size, s, -ego_side * config.lane_offset, -speed, np.pi,
                            'stopped' if stopped else 'moving'))


def _kerb_strip(rng, agents, new_id, road: Road, side: float, ego_side: float, s_lo, s_hi) -> None:
    """Parked vehicles, cones and barriers along one kerb, facing that side's traffic."""
    classes = (['car'] * int(rng.integers(3, 8)) + ['truck'] * int(rng.integers(0, 2))
               + ['bus'] * int(rng.random() < 0.4) + ['motorcycle'] * int(rng.integers(1, 3))
               + ['traffic_cone'] * int(rng.integers(2, 6)) + ['barrier'] * int(rng.integers(1, 4)))
    rng.shuffle(classes)
    sizes = [_jittered_size(rng, c) for c in classes]
    along = [s[0] if c == 'barrier' else s[1] for c, s in zip(classes, sizes)]
    centres = _along_strip(rng, s_lo, s_hi, along, (1.0, 9.0))
    facing = 0.0 if side == ego_side else np.pi
    for cls, size, s in zip(classes, sizes, centres):
        if cls == 'barrier':
            d = side * (road.half_width - 0.15 - size[1] / 2)
            yaw, state = np.pi / 2, 'static'
        elif cls == 'traffic_cone':
            d = side * (road.half_width - 0.5 - float(rng.uniform(0, 0.6)))
            yaw, state = float(rng.uniform(-np.pi, np.pi)), 'static'
        else:
            d = side * (road.half_width - 0.15 - size[0] / 2)
            yaw, state = facing + float(rng.normal(0, 0.02)), 'parked'
        agents.append(Agent(new_id(), cls, size, s, d, 0.0, yaw, state))


def _sidewalk(rng, agents, new_id, road: Road, side: float, s_lo, s_hi) -> None:
    """Walking pedestrians in two sub-lanes (one speed each) and standing people/parked bikes."""
    hw = road.half_width
    for offset, direction in ((1.0, 1.0), (1.9, -1.0)):
        speed = direction * float(rng.uniform(0.9, 1.6))
        sizes = [_jittered_size(rng, 'pedestrian') for _ in range(int(rng.integers(2, 6)))]
        for size, s in zip(sizes, _along_strip(rng, s_lo, s_hi, [z[1] for z in sizes], (3.0, 25.0))):
            yaw = 0.0 if direction > 0 else np.pi
            agents.append(Agent(new_id(), 'pedestrian', size, s, side * (hw + offset), speed, yaw, 'moving'))
    classes = ['pedestrian'] * int(rng.integers(1, 4)) + ['bicycle'] * int(rng.integers(1, 3))
    rng.shuffle(classes)
    sizes = [_jittered_size(rng, c) for c in classes]
    for cls, size, s in zip(classes, sizes, _along_strip(rng, s_lo, s_hi, [z[1] for z in sizes], (2.0, 20.0))):
        yaw = float(rng.uniform(-np.pi, np.pi)) if cls == 'pedestrian' else float(rng.choice([0.0, np.pi]))
        state = 'standing' if cls == 'pedestrian' else 'parked'
        agents.append(Agent(new_id(), cls, size, s, side * (hw + 2.6), 0.0, yaw, state))


def _street_furniture(rng, poles, trees, new_id, road: Road, side, setback, s_lo, s_hi) -> None:
    """Poles on the kerb edge of the sidewalk; trees in the terrain strip when it is wide enough."""
    s = s_lo + rng.uniform(0, 20)
    while s < s_hi:
        poles.append(Pole(new_id(), float(s), side * (road.half_width + 0.3), float(rng.uniform(0.08, 0.15)),
                          float(rng.uniform(5.0, 9.0))))
        s += rng.uniform(15, 35)
    if setback < 2.5:
        return
    edge = road.half_width + road.sidewalk_width
    s = s_lo + rng.uniform(0, 10)
    while s < s_hi:
        trees.append(Tree(new_id(), float(s), side * (edge + setback / 2), float(rng.uniform(0.15, 0.25)),
                          float(rng.uniform(2.6, 3.6)), float(rng.uniform(1.2, 2.2))))
        s += rng.uniform(8, 25)


def _buildings(rng, buildings, new_id, road: Road, side, setback, s_lo, s_hi) -> None:
    """A row of buildings behind the terrain strip, with random gaps between them."""
    d_inner = side * (road.half_width + road.sidewalk_width + setback)
    s = s_lo
    while s < s_hi:
        if rng.random() < 0.3:
            s += rng.uniform(4, 15)
            continue
        length = float(rng.uniform(8, 30))
        colour = BUILDING_PALETTE[int(rng.integers(len(BUILDING_PALETTE)))]
        buildings.append(Building(new_id(), float(s + length / 2), float(d_inner + side * rng.uniform(0, 1.5)),
                                  length, float(rng.uniform(6, 15)), float(rng.uniform(4, 18)), colour))
        s += length + rng.uniform(0.5, 3.0)


def describe(scene: Scene) -> str:
    """A one-line description in the spirit of nuScenes' scene descriptions."""
    counts: Dict[str, int] = {}
    for a in scene.agents:
        counts[a.cls] = counts.get(a.cls, 0) + 1
    shape = 'straight road' if scene.road.straight else 'curved road'
    def label(name: str, n: int) -> str:
        name = name.replace('_', ' ')
        return f'{n} {name}' if n == 1 else f'{n} {name}{"es" if name.endswith("s") else "s"}'

    parts = [label(c, n) for c, n in sorted(counts.items())]
    return f'Synthetic {shape}, ego {scene.ego.speed:.1f} m/s, ' + ', '.join(parts)
