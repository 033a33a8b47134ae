"""What a Waymo frame sees beyond the shared simulator: sign plates on poles, and the per-frame
context all of a frame's sensors share.

Why: Waymo labels signs (TYPE_SIGN) and the simulator has no notion of them, so they are added
here as thin boxes on the simulator's own poles, without touching the scenes the nuScenes writer
also draws from.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .scene_model import Scene, Snapshot, Tree
from .scene_sim import Surface


@dataclass(frozen=True)
class Sign:
    """A sign plate on a pole: a thin box facing along the road (Waymo labels signs as TYPE_SIGN)."""

    id: int
    centre: tuple[float, float, float]
    size: tuple[float, float, float]  # w, l, h as scene_model's boxes: l is the plate's thickness
    yaw: float


SIGN_ID_BASE = 10_000_000  # above every simulator id
SIGN_COLOUR = (235, 235, 228)
SIGN_REFLECTIVITY = 0.9  # retro-reflective


def draw_signs(rng: np.random.Generator, scene: Scene) -> tuple[Sign, ...]:
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


def with_signs(snap: Snapshot, signs: tuple[Sign, ...]) -> Snapshot:
    for s in signs:
        snap = snap.with_box(s.centre, s.size, s.yaw, s.id, Surface.POLE)
    return snap


@dataclass
class FrameContext:
    """Everything one frame's sensors share."""

    scene: Scene
    plain: Snapshot  # the simulator's own geometry (what its renderer knows)
    snap: Snapshot  # plain plus the sign boxes
    signs: dict[int, Sign]
    trees: dict[int, Tree]
    t: float
    pose: np.ndarray  # vehicle-to-global at the frame time
    labelled_boxes: np.ndarray  # snapshot indices of agent and sign boxes (the ones a point may count in)

