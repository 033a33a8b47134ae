"""The rig mounted on one segment's vehicle: calibration protos, camera projections of lidar
points, and the camera images.

Why: the calibrations carry a small random mounting tilt per segment, and the same mounting must
serve the calibration proto, the per-pixel camera projections and the rendered JPEGs.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from waymo_open_dataset import dataset_pb2

from ..waymo.tf.convert import WAYMO_CAM_TO_OPTICAL
from .camera_render import PinholeCamera, Polygons, box_faces, build_render_scene, render_camera
from .waymo_rig import CAMERAS, LaserSpec, beam_inclinations, mount
from .waymo_scene import SIGN_COLOUR, FrameContext


@dataclass(frozen=True)
class MountedCamera:
    calibration: dataset_pb2.CameraCalibration
    intrinsic: np.ndarray  # 3x3 pinhole (the synthetic cameras have no distortion)
    cam_to_vehicle: np.ndarray  # Waymo camera axes: x forward, y left, z up

    @property
    def size(self) -> tuple[int, int]:
        return self.calibration.width, self.calibration.height


@dataclass(frozen=True)
class MountedLaser:
    spec: LaserSpec
    calibration: dataset_pb2.LaserCalibration
    extrinsic: np.ndarray  # lidar to vehicle
    inclinations: np.ndarray  # ascending


def mount_cameras(rng: np.random.Generator, scale: float) -> list[MountedCamera]:
    """The five cameras with images scaled by ``scale`` (intrinsics scaled to match)."""
    out = []
    for cam in CAMERAS:
        width, height = round(cam.width * scale), round(cam.height * scale)
        sx, sy = width / cam.width, height / cam.height
        cal = dataset_pb2.CameraCalibration()
        cal.name = dataset_pb2.CameraName.Name.Value(cam.name)
        cal.intrinsic.extend([cam.focal * sx, cam.focal * sy, cam.cx * sx, cam.cy * sy, 0.0, 0.0, 0.0, 0.0, 0.0])
        extrinsic = mount(rng, cam.translation, cam.yaw_deg, 0.2)
        cal.extrinsic.transform.extend(extrinsic.ravel().tolist())
        cal.width, cal.height = width, height
        cal.rolling_shutter_direction = dataset_pb2.CameraCalibration.GLOBAL_SHUTTER
        k = np.array([[cam.focal * sx, 0, cam.cx * sx], [0, cam.focal * sy, cam.cy * sy], [0, 0, 1.0]])
        out.append(MountedCamera(cal, k, extrinsic))
    return out


def mount_lasers(rng: np.random.Generator, rig: tuple[LaserSpec, ...]) -> list[MountedLaser]:
    out = []
    for spec in rig:
        cal = dataset_pb2.LaserCalibration()
        cal.name = dataset_pb2.LaserName.Name.Value(spec.name)
        incl = beam_inclinations(spec)
        if spec.explicit_inclinations:
            cal.beam_inclinations.extend(incl.tolist())
        cal.beam_inclination_min, cal.beam_inclination_max = spec.inclination_min, spec.inclination_max
        extrinsic = mount(rng, spec.translation, spec.yaw_deg)
        cal.extrinsic.transform.extend(extrinsic.ravel().tolist())
        out.append(MountedLaser(spec, cal, extrinsic, incl))
    return out


def camera_projection(vehicle: np.ndarray, valid: np.ndarray, cameras: list[MountedCamera]) -> np.ndarray:
    """(H, W, 6): the first two cameras each point projects into (name, column, row), 0 where none."""
    cp = np.zeros(valid.shape + (6,), dtype=np.int32)
    filled = np.zeros(valid.shape, dtype=np.int32)
    for cam in cameras:
        to_optical = WAYMO_CAM_TO_OPTICAL @ np.linalg.inv(cam.cam_to_vehicle)
        p = vehicle @ to_optical[:3, :3].T + to_optical[:3, 3]
        with np.errstate(divide='ignore', invalid='ignore'):
            uv = (p @ cam.intrinsic.T)[..., :2] / p[..., 2:3]
        width, height = cam.size
        inside = (valid & (p[..., 2] > 0.3) & (uv[..., 0] >= 0) & (uv[..., 0] < width) & (uv[..., 1] >= 0)
                  & (uv[..., 1] < height) & (filled < 2))
        for slot in (0, 1):
            sel = inside & (filled == slot)
            cp[sel, 3 * slot] = cam.calibration.name
            cp[sel, 3 * slot + 1:3 * slot + 3] = uv[sel].astype(np.int32)
        filled += inside
    return cp


def render_images(ctx: FrameContext, cameras: list[MountedCamera], quality: int) -> list[bytes]:
    ego_s = ctx.scene.ego.s0 + ctx.scene.ego.speed * ctx.t
    rs = build_render_scene(ctx.scene, ctx.plain, ego_s)
    # The simulator knows no signs; their plates are drawn with its own box-face helper.
    plates = [box_faces(np.array(s.centre), s.size, s.yaw, SIGN_COLOUR) for s in ctx.signs.values()]
    rs = replace(rs, solids=Polygons.concat([rs.solids] + plates))
    images = []
    for cam in cameras:
        width, height = cam.size
        optical_to_world = ctx.pose @ cam.cam_to_vehicle @ WAYMO_CAM_TO_OPTICAL.T
        camera = PinholeCamera(intrinsic=cam.intrinsic, width=width, height=height, cam_to_world=optical_to_world)
        buf = io.BytesIO()
        render_camera(rs, camera).save(buf, 'JPEG', quality=quality)
        images.append(buf.getvalue())
    return images

