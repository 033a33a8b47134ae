"""The road a scene is built around, with a closed-form Frenet frame.

Why a module of its own: the generator places everything by (arc length, lateral offset), the
LiDAR labels ground hits by the same offsets, and the renderer and the nuScenes map draw its
strips; all of them need the one parametrisation, and none of them needs the others.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Tuple

import numpy as np

from .scene_sim import GroundZone


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
