"""Drawing a street scene from a seeded generator.

Why: the placement rules (which keep every pair of solids disjoint at all times) are the one
random part of the simulator; keeping them here leaves the scene model and the sensors pure
functions of a scene.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Sequence, Tuple

import numpy as np

from .road import Road
from .scene_model import Agent, Building, EgoPlan, Pole, Scene, Tree
from .scene_sim import OBJECT_CLASSES

BUILDING_PALETTE = [(178, 164, 146), (150, 150, 158), (190, 182, 166), (140, 126, 118),
                    (168, 168, 168), (122, 118, 112), (196, 190, 180)]


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
