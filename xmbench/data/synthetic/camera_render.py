"""Camera images of a scene: a pinhole camera and a painter's-algorithm renderer.

Why: both writers need plausible RGB images whose pixels tell the class of what they show, and
the ground truth must match the geometry the LiDAR sees; so images are drawn from the same
:class:`~.scene_model.Snapshot`, with PIL polygons rather than a rendering engine.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Sequence, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .road import DASH_LENGTH, DASH_PERIOD, EDGE_LINE_OFFSET, MARKING_WIDTH, Road
from .scene_model import Scene, Snapshot
from .scene_sim import OBJECT_CLASSES, Surface

SKY_TOP = np.array([70, 125, 200], dtype=np.float64)
SKY_HORIZON = np.array([200, 218, 232], dtype=np.float64)
TERRAIN_COLOUR = (92, 98, 78)
ROAD_COLOUR = (88, 88, 92)
SIDEWALK_COLOUR = (150, 148, 142)
MARKING_COLOUR = (235, 235, 225)
POLE_COLOUR = (110, 110, 115)
TRUNK_COLOUR = (90, 70, 55)
CROWN_COLOUR = (52, 96, 50)
SUN_DIRECTION = np.array([0.35, 0.25, 0.9]) / np.linalg.norm([0.35, 0.25, 0.9])


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
class Polygons:
    """World-space quads to draw, with colour, whether to back-face cull, and their normals."""

    quads: np.ndarray  # (P, 4, 3)
    colour: np.ndarray  # (P, 3) uint8 after shading
    normal: np.ndarray  # (P, 3); zero normal = never culled

    @staticmethod
    def concat(parts: Sequence['Polygons']) -> 'Polygons':
        parts = [p for p in parts if len(p.quads)]
        if not parts:
            return Polygons(np.zeros((0, 4, 3)), np.zeros((0, 3), np.uint8), np.zeros((0, 3)))
        return Polygons(np.concatenate([p.quads for p in parts]), np.concatenate([p.colour for p in parts]),
                        np.concatenate([p.normal for p in parts]))


NEAR_PLANE = 0.3
MAX_TILE = 4.0  # long faces are cut into tiles so painter's sorting stays right locally


def box_faces(centre, size, yaw, colour) -> Polygons:
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
    return Polygons(np.array(quads), colours, normals)


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
    solids: Polygons
    poles: List[Tuple[np.ndarray, float, float, tuple]]  # base xy, radius, height, colour
    crowns: List[Tuple[np.ndarray, float, tuple]]  # centre, radius, colour


def build_render_scene(scene: Scene, snap: Snapshot, centre_s: float, reach: float = 100.0) -> RenderScene:
    """Collect drawable geometry within `reach` metres (along the road) of arc length centre_s."""
    road = scene.road
    ground = _ground_polygons(road, centre_s - reach, centre_s + reach)
    colour_of = {a.id: OBJECT_CLASSES[a.cls].colour for a in scene.agents}
    colour_of.update({b.id: b.colour for b in scene.buildings})
    s_box, _ = road.frenet(snap.box_centre[:, 0], snap.box_centre[:, 1])
    parts = [box_faces(snap.box_centre[m], snap.box_size[m], snap.box_yaw[m], colour_of[int(snap.box_id[m])])
             for m in range(len(snap.box_id)) if abs(s_box[m] - centre_s) < reach + 20]
    poles = [(snap.cyl_xy[k], float(snap.cyl_radius[k]), float(snap.cyl_height[k]),
              POLE_COLOUR if snap.cyl_kind[k] == Surface.POLE else TRUNK_COLOUR)
             for k in range(len(snap.cyl_id))]
    crowns = [(snap.sph_centre[j], float(snap.sph_radius[j]), CROWN_COLOUR) for j in range(len(snap.sph_id))]
    return RenderScene(ground=ground, solids=Polygons.concat(parts), poles=poles, crowns=crowns)


def _pole_quads(rs: RenderScene, cam_pos: np.ndarray) -> Polygons:
    """Cylinders drawn as camera-facing rectangles (billboards) of their diameter."""
    if not rs.poles:
        return Polygons.concat([])
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
    return Polygons(np.array(quads, dtype=np.float64).reshape(n, 4, 3), np.array(colours, np.uint8).reshape(n, 3),
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
    polys = Polygons.concat([rs.solids, _pole_quads(rs, cam_pos)])
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
