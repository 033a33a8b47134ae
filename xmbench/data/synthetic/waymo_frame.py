"""One Waymo segment and its frames as ``dataset_pb2.Frame`` protos, laid out as the dataset lays them out.

Why: the bytes must be Waymo's (zlib-compressed serialized matrices per return, TOP's pixel pose
with the first return only, segmentation on a subset of frames), and alongside each frame the
simulated points and boxes must come back unencoded, so a round trip can be checked exactly.
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass

import numpy as np
from waymo_open_dataset import dataset_pb2

from .scene_gen import SceneConfig, generate_scene
from .scene_model import Scene
from .waymo_labels import laser_labels, truth_box
from .waymo_lidar import Returns, scan
from .waymo_rig import FRAME_INTERVAL_US, SPIN_SECONDS, GeneratorConfig, ego_pose, laser_rig
from .waymo_scene import FrameContext, Sign, draw_signs, with_signs
from .waymo_sensors import MountedCamera, MountedLaser, camera_projection, mount_cameras, mount_lasers, render_images


def _matrix_float(arr: np.ndarray) -> dataset_pb2.MatrixFloat:
    m = dataset_pb2.MatrixFloat()
    m.data.extend(np.asarray(arr, dtype=np.float32).ravel().tolist())
    m.shape.dims.extend(arr.shape)
    return m


def _matrix_int32(arr: np.ndarray) -> dataset_pb2.MatrixInt32:
    m = dataset_pb2.MatrixInt32()
    m.data.extend(np.asarray(arr, dtype=np.int32).ravel().tolist())
    m.shape.dims.extend(arr.shape)
    return m


def _compressed(matrix) -> bytes:
    """As the dataset stores matrices: the serialized proto, zlib-compressed."""
    return zlib.compress(matrix.SerializeToString())


@dataclass
class SegmentRig:
    """What stays fixed over a segment: its name, scene, signs, sensor calibrations and start time."""

    name: str
    scene: Scene
    signs: tuple[Sign, ...]
    lasers: list[MountedLaser]
    cameras: list[MountedCamera]
    t0_us: int


def _segment_name(rng: np.random.Generator) -> str:
    """Waymo's context name layout: <19 digits>_<4>_<3>_<4>_<3>."""
    start = int(rng.integers(1000, 9000))
    digits = f"{int(rng.integers(10**9, 10**10))}{int(rng.integers(0, 10**9)):09d}"
    return f"{digits}_{start}_{int(rng.integers(0, 1000)):03d}_{start + 20}_{int(rng.integers(0, 1000)):03d}"


def make_segment(cfg: GeneratorConfig, index: int) -> SegmentRig:
    rng = np.random.default_rng([cfg.seed, index])
    name = _segment_name(rng)
    duration = cfg.frames * FRAME_INTERVAL_US / 1e6 + SPIN_SECONDS
    # Global coordinates of thousands of metres, like the dataset's: float32 pixel poses must cope.
    scene = generate_scene(rng, SceneConfig(duration=duration),
                           origin=(float(rng.uniform(-3000, 3000)), float(rng.uniform(-3000, 3000))),
                           heading=float(rng.uniform(-np.pi, np.pi)))
    signs = draw_signs(rng, scene)
    lasers = mount_lasers(rng, laser_rig(cfg.top_width, cfg.short_width))
    cameras = mount_cameras(rng, cfg.image_scale)
    t0_us = 1_500_000_000_000_000 + int(rng.integers(0, 10**14))
    return SegmentRig(name, scene, signs, lasers, cameras, t0_us)


@dataclass
class SimulatedFrame:
    """A Frame proto and what was simulated, before any encoding (the round trip must give it back)."""

    frame: dataset_pb2.Frame
    points: np.ndarray  # (N, 7) float32, the converter's columns and order
    seg: np.ndarray | None  # (N, 2) int32 where the frame has segmentation labels
    boxes: list[dict]

    @property
    def token(self) -> str:
        return f"{self.frame.context.name}_{self.frame.timestamp_micros}"


def _frame_context(rig: SegmentRig, k: int) -> FrameContext:
    t = SPIN_SECONDS / 2 + k * FRAME_INTERVAL_US / 1e6
    plain = rig.scene.snapshot(t)
    snap = with_signs(plain, rig.signs)
    labelled = np.concatenate([np.arange(len(rig.scene.agents)), np.arange(len(plain.box_id), len(snap.box_id))])
    return FrameContext(scene=rig.scene, plain=plain, snap=snap, signs={s.id: s for s in rig.signs},
                        trees={tr.id: tr for tr in rig.scene.trees}, t=t, pose=ego_pose(rig.scene, t)[0],
                        labelled_boxes=labelled)


def _frame_header(rig: SegmentRig, ts: int, pose: np.ndarray) -> dataset_pb2.Frame:
    frame = dataset_pb2.Frame()
    frame.context.name = rig.name
    frame.context.camera_calibrations.extend(cam.calibration for cam in rig.cameras)
    frame.context.laser_calibrations.extend(laser.calibration for laser in rig.lasers)
    stats = frame.context.stats
    stats.time_of_day, stats.location, stats.weather = "Day", "location_synthetic", "sunny"
    frame.timestamp_micros = ts
    frame.pose.transform.extend(pose.ravel().tolist())
    return frame


def _encode_return(ri: dataset_pb2.RangeImage, returns: Returns, ret: int, cameras: list[MountedCamera],
                   pixel_pose: np.ndarray | None, with_seg: bool) -> None:
    """One return as the dataset stores it: zlib-compressed serialized matrices."""
    valid = returns.range[ret] > 0
    # Channels: range, intensity, elongation, is-in-no-label-zone (-1: no); -1 everywhere without a return.
    image = np.stack([returns.range[ret], returns.intensity[ret], returns.elongation[ret],
                      -np.ones_like(returns.range[ret])], -1)
    image[~valid] = -1.0
    ri.range_image_compressed = _compressed(_matrix_float(image))
    ri.camera_projection_compressed = _compressed(_matrix_int32(camera_projection(returns.vehicle[ret], valid,
                                                                                  cameras)))
    if pixel_pose is not None:
        ri.range_image_pose_compressed = _compressed(_matrix_float(pixel_pose))
    if with_seg:
        ri.segmentation_label_compressed = _compressed(_matrix_int32(returns.seg[ret]))


def make_frame(cfg: GeneratorConfig, seg_index: int, rig: SegmentRig, k: int) -> SimulatedFrame:
    ctx = _frame_context(rig, k)
    frame = _frame_header(rig, rig.t0_us + k * FRAME_INTERVAL_US, ctx.pose)
    with_seg = k % cfg.seg_every == 0
    counts = np.zeros(len(ctx.snap.box_id), dtype=np.int64)
    top_counts = np.zeros_like(counts)
    points, segs = [], []
    for li, laser in enumerate(rig.lasers):
        rng = np.random.default_rng([cfg.seed, seg_index, k, li])
        returns, pixel_pose = scan(ctx, laser.spec, laser.extrinsic, laser.inclinations, rng)
        is_top = laser.spec.name == "TOP"
        proto = frame.lasers.add()
        proto.name = laser.calibration.name
        for ret, ri in enumerate((proto.ri_return1, proto.ri_return2)):
            # Waymo keeps TOP's pixel pose with the first return only, and labels TOP's returns only.
            _encode_return(ri, returns, ret, rig.cameras, pixel_pose if ret == 0 else None, with_seg and is_top)
            valid = returns.range[ret] > 0
            in_box = returns.box[ret][valid]
            np.add.at(counts, in_box[in_box >= 0], 1)
            if is_top:
                np.add.at(top_counts, in_box[in_box >= 0], 1)
            n = int(valid.sum())
            points.append(np.concatenate([returns.vehicle[ret][valid], returns.intensity[ret][valid, None],
                                          returns.elongation[ret][valid, None], np.full((n, 1), ret),
                                          np.full((n, 1), proto.name)], 1).astype(np.float32))
            segs.append(returns.seg[ret][valid] if is_top else np.zeros((n, 2), np.int32))
    frame.laser_labels.extend(laser_labels(ctx, counts, top_counts, cfg.seed, rig.name))
    for cam, jpeg in zip(rig.cameras, render_images(ctx, rig.cameras, cfg.jpeg_quality)):
        image = frame.images.add()
        image.name, image.image = cam.calibration.name, jpeg
        image.pose.CopyFrom(frame.pose)  # the synthetic cameras expose at the frame time
        image.pose_timestamp = image.camera_trigger_time = image.camera_readout_done_time = frame.timestamp_micros / 1e6
    for label_type, n in sorted(Counter(label.type for label in frame.laser_labels).items()):
        entry = frame.context.stats.laser_object_counts.add()
        entry.type, entry.count = label_type, n
    seg = np.concatenate(segs).astype(np.int32) if with_seg else None
    return SimulatedFrame(frame, np.concatenate(points), seg, [truth_box(label) for label in frame.laser_labels])
