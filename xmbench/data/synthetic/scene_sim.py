"""What every part of the scene simulator and both dataset writers must agree on: hit kinds, ground
zones, participant classes and their reflectivity.

The simulator draws sensor-agnostic street scenes that the nuScenes and the Waymo writers both
turn into their own formats, so that neither path needs a real dataset. It is split by concern:
:mod:`road` (the road and its Frenet frame), :mod:`scene_model` (scene content and its geometry
at an instant), :mod:`scene_gen` (drawing a scene from a seeded generator), :mod:`raycast`,
:mod:`spinning_lidar` and :mod:`camera_render` (the sensors). This module holds only the shared
vocabulary, so a writer can map it onto its own label space without importing any sensor.

A scene is a road (straight or a constant-curvature arc) on the ground plane z = 0 of a global
frame, with sidewalks, buildings set back behind a terrain strip (with gaps), poles, trees and
oriented 3D boxes of traffic participants. Some participants move at constant speed along the
road, so one object keeps one identity and one velocity across frames. An ego vehicle drives
along its lane.

Nothing here knows a dataset format: each writer maps the generic hit kinds, object classes and
ground zones onto its own label spaces and file layouts. Everything random is drawn from a
``numpy.random.Generator`` the caller seeds, so a scene is a pure function of the generator state.

Frames: global x, y on the ground, z up. The ego frame is x forward, y left, z up, with its origin
on the ground (like nuScenes' rear-axle frame). Camera frames are x right, y down, z forward.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Dict, Tuple


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
