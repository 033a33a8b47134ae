"""Scene content (participants, buildings, street furniture, the ego plan) and its solid geometry
at one instant.

Why: every sensor and both writers read the same scene, so what a scene *is* stays apart from how
it is drawn (:mod:`scene_gen`) and how it is sensed (:mod:`raycast`, :mod:`spinning_lidar`,
:mod:`camera_render`). A :class:`Snapshot` flattens the scene at time t into arrays, which is what
makes ray casting vectorised.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Optional, Tuple

import numpy as np

from .road import Road
from .scene_sim import Surface


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
