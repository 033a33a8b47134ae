"""Convert Waymo Open Dataset TFRecords into per-frame files plus the benchmark's frame index.

Runs only in the Waymo environment (``.venv-waymo``, see ``envs/setup_waymo.sh``): range images
become points through waymo_open_dataset's own ``frame_utils.convert_range_image_to_point_cloud``,
so the geometry (beam layout, TOP's per-pixel pose, extrinsics) is Waymo's, not a
re-implementation (the tests check the result equals frame_utils' own parse + convert bit for
bit). Nothing here needs torch.

    .venv-waymo/bin/python -m xmbench.data.waymo.tf.convert --tfrecords DIR_OR_FILES... --out DIR

Writes, under ``--out`` (paths in the JSON files are relative to it):
- ``lidar/<segment>/<timestamp>.npy``: float32 (N, 7) = x, y, z, intensity, elongation,
  return index (0/1), lidar id (Waymo's LaserName: 1 TOP .. 5 REAR); vehicle frame at the frame
  time; ordered by lidar, then return, then range-image pixel (row-major).
- ``camera/<segment>/<timestamp>_<CAMERA>.jpg``: the JPEG bytes as stored.
- ``lidarseg/<segment>/<timestamp>.npy``: int32 (N, 2) = instance id, Waymo segmentation class,
  one row per point of the LiDAR file (points of lidars other than TOP are TYPE_UNDEFINED = 0).
- ``index.json`` (sensors and calibrations, no labels) and ``labels.json`` (boxes, lidarseg
  paths), split as in :mod:`xmbench.data.nuscenes.index` so pretraining cannot read a label.
"""
from __future__ import annotations

import argparse
import os
import re
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

# TensorFlow prints several lines of start-up chatter to stderr; a failed run must end in one line.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from google.protobuf.message import DecodeError  # noqa: E402
from waymo_open_dataset import dataset_pb2, label_pb2  # noqa: E402
from waymo_open_dataset.protos import segmentation_pb2  # noqa: E402
from waymo_open_dataset.utils import frame_utils  # noqa: E402

from ....atomic import write_bytes, write_json, write_npy  # noqa: E402
from ....errors import BenchError  # noqa: E402

POINT_COLUMNS = ("x", "y", "z", "intensity", "elongation", "return_index", "lidar_id")
# Waymo's camera frame is x forward, y left, z up; the benchmark's lidar_to_cam (as for nuScenes)
# ends in the optical frame x right, y down, z forward that a 3x3 pinhole intrinsic expects.
WAYMO_CAM_TO_OPTICAL = np.array([[0.0, -1.0, 0.0, 0.0],
                                 [0.0, 0.0, -1.0, 0.0],
                                 [1.0, 0.0, 0.0, 0.0],
                                 [0.0, 0.0, 0.0, 1.0]])
# Waymo's distribution keeps each split in its own folder (training/, validation/, testing/ or
# their sharded *_0000 variants); those names are the only trustworthy split marker in a path.
SPLIT_OF_FOLDER = {"training": "train", "validation": "val", "testing": "test"}
# Detection class names as OpenPCDet's Waymo configs spell them.
CLASS_NAME_OF_TYPE = {"TYPE_VEHICLE": "Vehicle", "TYPE_PEDESTRIAN": "Pedestrian", "TYPE_CYCLIST": "Cyclist",
                      "TYPE_SIGN": "Sign", "TYPE_UNKNOWN": None}


def seg_class_names() -> list[str]:
    """The 23 Waymo 3D segmentation classes in index order (index 0 = TYPE_UNDEFINED)."""
    items = sorted(segmentation_pb2.Segmentation.Type.items(), key=lambda kv: kv[1])
    assert [v for _, v in items] == list(range(len(items)))
    return [name for name, _ in items]


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

def tfrecord_files(inputs: list[str]) -> list[Path]:
    """Every TFRecord named, or found (sorted) in a named folder; a missing path is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and ".tfrecord" in p.name)
            if not found:
                raise BenchError(f"{path}: no *.tfrecord file in this folder")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise BenchError(f"{path}: file not found (pass Waymo .tfrecord files or folders holding them)")
    return files


def split_of(path: Path, override: str | None) -> str:
    if override:
        return override
    for part in reversed(path.resolve().parts[:-1]):
        for folder, split in SPLIT_OF_FOLDER.items():
            if part == folder or part.startswith(folder + "_"):
                return split
    raise BenchError(f"{path}: cannot tell its split (it is not under training/, validation/ or testing/); "
                     "pass --split")


def read_frames(path: Path):
    """Yield the Frame protos of one TFRecord; a corrupt file or a non-Frame record is one BenchError."""
    try:
        for i, record in enumerate(tf.data.TFRecordDataset(str(path), compression_type="")):
            frame = dataset_pb2.Frame()
            try:
                frame.ParseFromString(record.numpy())
            except DecodeError as exc:
                raise BenchError(f"{path}: record {i} is not a Waymo Frame proto ({exc})") from None
            if not frame.context.name or not frame.timestamp_micros:
                raise BenchError(f"{path}: record {i} is not a Waymo Frame (no context name or timestamp)")
            yield frame
    except tf.errors.OpError as exc:
        raise BenchError(f"{path}: not a readable TFRecord file ({_op_reason(exc)})") from None


def _op_reason(exc: tf.errors.OpError) -> str:
    """TensorFlow's message without its op and device decorations."""
    text = (exc.message or type(exc).__name__).splitlines()[0]
    text = re.sub(r"\{\{function_node [^}]*\}\}\s*", "", text)
    return re.sub(r"\s*\[Op:[^\]]*\].*$", "", text).strip()


# --------------------------------------------------------------------------------------------
# Points and segmentation labels
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _Shape:
    dims: tuple


@dataclass(frozen=True)
class Matrix:
    """A decoded MatrixFloat / MatrixInt32 with numpy data.

    frame_utils reads only ``.data`` and ``.shape.dims``; numpy data spares TensorFlow converting
    the ~700k-element repeated fields of a real TOP image element by element.
    """

    data: np.ndarray
    shape: _Shape

    def array(self) -> np.ndarray:
        return self.data.reshape(self.shape.dims)


def decode_matrix(blob: bytes, proto_type) -> Matrix:
    """A zlib-compressed serialized matrix, as the dataset stores range images and their companions."""
    try:
        m = proto_type.FromString(zlib.decompress(blob))
    except (zlib.error, DecodeError) as exc:
        raise BenchError(f"corrupt compressed {proto_type.DESCRIPTOR.name} ({exc})") from None
    dtype = np.float32 if proto_type is dataset_pb2.MatrixFloat else np.int32
    data = np.asarray(m.data, dtype=dtype)
    if data.size != int(np.prod(m.shape.dims)):
        raise BenchError(f"{proto_type.DESCRIPTOR.name} holds {data.size} values for shape {list(m.shape.dims)}")
    return Matrix(data, _Shape(tuple(m.shape.dims)))


def decode_lasers(frame: dataset_pb2.Frame):
    """Range images, camera projections and seg labels per lidar ([first, second] return), and TOP's pixel pose.

    The same result as frame_utils.parse_range_image_and_camera_projection, which cannot run on
    protobuf 4 (it parses from a bytearray, which protobuf's upb backend rejects: waymo-open-dataset
    issues 885 and 954); protobuf 3 would run it ten times slower in pure Python.
    """
    range_images, projections, seg_labels, top_pose = {}, {}, {}, None
    for laser in frame.lasers:
        for ret in (laser.ri_return1, laser.ri_return2):
            if not ret.range_image_compressed:
                break
            range_images.setdefault(laser.name, []).append(decode_matrix(ret.range_image_compressed,
                                                                         dataset_pb2.MatrixFloat))
            projections.setdefault(laser.name, []).append(
                decode_matrix(ret.camera_projection_compressed, dataset_pb2.MatrixInt32)
                if ret.camera_projection_compressed else None)
            if ret.segmentation_label_compressed:
                seg_labels.setdefault(laser.name, []).append(decode_matrix(ret.segmentation_label_compressed,
                                                                           dataset_pb2.MatrixInt32))
        if laser.name == dataset_pb2.LaserName.TOP and laser.ri_return1.range_image_pose_compressed:
            top_pose = decode_matrix(laser.ri_return1.range_image_pose_compressed, dataset_pb2.MatrixFloat)
    return range_images, projections, seg_labels, top_pose


def _calibration_subset(frame: dataset_pb2.Frame, laser: int) -> dataset_pb2.Frame:
    """A frame holding only the pose and the calibration of one lidar.

    frame_utils converts every calibrated lidar and fails on one without a range image; the
    released sample (and some tooling outputs) strip range images, so only present ones are passed.
    """
    sub = dataset_pb2.Frame()
    sub.pose.CopyFrom(frame.pose)
    sub.context.laser_calibrations.extend(c for c in frame.context.laser_calibrations if c.name == laser)
    if not sub.context.laser_calibrations:
        raise BenchError(f"lidar {dataset_pb2.LaserName.Name.Name(laser)} has range images but no calibration")
    return sub


# frame_utils reshapes the TOP pixel pose even for other lidars; this identity pose stands in when
# a frame has no TOP range image.
_NO_TOP_POSE = Matrix(np.zeros(6, np.float32), _Shape((1, 1, 6)))


def frame_points(frame: dataset_pb2.Frame) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 7) float32 points of all lidars and both returns, and the (N, 2) seg labels or None.

    Seg labels come from TOP only, as Waymo labels only TOP's returns; other points get 0.
    """
    range_images, projections, seg_labels, top_pose = decode_lasers(frame)
    if dataset_pb2.LaserName.TOP in range_images and top_pose is None:
        raise BenchError("TOP has a range image but no range_image_pose_compressed")
    parts, seg_parts, has_seg = [], [], False
    for laser in sorted(range_images):
        sub = _calibration_subset(frame, laser)
        for ri_index, ri in enumerate(range_images[laser]):
            if projections[laser][ri_index] is None:  # frame_utils needs one; its values do not matter here
                projections[laser][ri_index] = Matrix(np.zeros(ri.data.size // ri.shape.dims[-1] * 6, np.int32),
                                                      _Shape(ri.shape.dims[:2] + (6,)))
            (pts,), _ = frame_utils.convert_range_image_to_point_cloud(
                sub, range_images, projections, top_pose or _NO_TOP_POSE, ri_index=ri_index, keep_polar_features=True)
            # keep_polar_features puts (range, intensity, elongation) before (x, y, z).
            n = len(pts)
            cols = np.concatenate([pts[:, 3:6], pts[:, 1:3], np.full((n, 1), ri_index), np.full((n, 1), laser)], 1)
            parts.append(cols.astype(np.float32))
            seg = np.zeros((n, 2), dtype=np.int32)
            labels = seg_labels.get(laser, [])
            if laser == dataset_pb2.LaserName.TOP and ri_index < len(labels):
                seg = labels[ri_index].array()[ri.array()[..., 0] > 0]  # frame_utils' mask, row-major
                has_seg = True
            seg_parts.append(seg)
    if not parts:
        return np.zeros((0, len(POINT_COLUMNS)), np.float32), None
    points = np.concatenate(parts)
    return points, (np.concatenate(seg_parts) if has_seg else None)


# --------------------------------------------------------------------------------------------
# Calibrations, labels, index records
# --------------------------------------------------------------------------------------------

def _matrix(transform) -> list[list[float]]:
    return np.asarray(transform.transform, dtype=np.float64).reshape(4, 4).tolist()


def lidar_calibrations(frame: dataset_pb2.Frame) -> dict:
    """Extrinsics (lidar to vehicle) and the beam inclinations frame_utils would use, per lidar."""
    out = {}
    for c in sorted(frame.context.laser_calibrations, key=lambda c: c.name):
        record = {"id": int(c.name), "extrinsic": _matrix(c.extrinsic),
                  "beam_inclination_min": c.beam_inclination_min, "beam_inclination_max": c.beam_inclination_max,
                  "beam_inclinations": list(c.beam_inclinations)}
        out[dataset_pb2.LaserName.Name.Name(c.name)] = record
    return out


def camera_calibrations(frame: dataset_pb2.Frame, image_paths: dict[int, str]) -> dict:
    """Per camera: pinhole K and vehicle-to-optical transform (as the nuScenes index), plus Waymo's raw values."""
    cams = {}
    for c in sorted(frame.context.camera_calibrations, key=lambda c: c.name):
        f_u, f_v, c_u, c_v, *distortion = list(c.intrinsic) + [0.0] * max(0, 9 - len(c.intrinsic))
        cam_to_vehicle = np.asarray(c.extrinsic.transform, dtype=np.float64).reshape(4, 4)
        lidar_to_cam = WAYMO_CAM_TO_OPTICAL @ np.linalg.inv(cam_to_vehicle)
        cams[dataset_pb2.CameraName.Name.Name(c.name)] = {
            "path": image_paths.get(c.name),
            "intrinsic": [[f_u, 0.0, c_u], [0.0, f_v, c_v], [0.0, 0.0, 1.0]],
            "lidar_to_cam": lidar_to_cam.tolist(), "width": int(c.width), "height": int(c.height),
            "distortion": distortion[:5], "cam_to_vehicle": cam_to_vehicle.tolist(),
            "rolling_shutter_direction": dataset_pb2.CameraCalibration.RollingShutterReadOutDirection.Name(
                c.rolling_shutter_direction),
        }
    return cams


def box_record(label: label_pb2.Label, frame_token: str) -> dict:
    """One 3D box in the vehicle frame, with the nuScenes index's field names where they mean the same."""
    b, m = label.box, label.metadata
    type_name = label_pb2.Label.Type.Name(label.type)
    return {
        "token": f"{frame_token}_{label.id}", "track_id": label.id,
        "name": CLASS_NAME_OF_TYPE.get(type_name), "type": type_name,
        "center": [b.center_x, b.center_y, b.center_z], "wlh": [b.width, b.length, b.height], "yaw": b.heading,
        "velocity": [m.speed_x, m.speed_y], "acceleration": [m.accel_x, m.accel_y],
        "num_lidar_pts": int(label.num_lidar_points_in_box),
        "num_top_lidar_pts": int(label.num_top_lidar_points_in_box),
        "difficulty": int(label.detection_difficulty_level),
        "tracking_difficulty": int(label.tracking_difficulty_level),
    }


def convert_frame(frame: dataset_pb2.Frame, out: Path, split: str, frame_index: int) -> tuple[dict, dict]:
    """Write one frame's files; return its index record and its labels record."""
    scene, ts = frame.context.name, int(frame.timestamp_micros)
    token = f"{scene}_{ts}"
    points, seg = frame_points(frame)
    lidar_path = f"lidar/{scene}/{ts}.npy"
    write_npy(out / lidar_path, points)
    image_paths = {}
    for image in frame.images:
        if image.image:
            rel = f"camera/{scene}/{ts}_{dataset_pb2.CameraName.Name.Name(image.name)}.jpg"
            write_bytes(out / rel, image.image)
            image_paths[image.name] = rel
    seg_path = None
    if seg is not None:
        seg_path = f"lidarseg/{scene}/{ts}.npy"
        write_npy(out / seg_path, seg)
    pose = _matrix(frame.pose)
    stats = frame.context.stats
    record = {
        "token": token, "scene": scene, "split": split, "timestamp": ts, "frame_index": frame_index,
        "lidar_path": lidar_path, "num_points": int(len(points)),
        # Points are stored in the vehicle frame, so the "lidar" frame of this index is the vehicle frame.
        "lidar_to_global": pose, "ego_pose": pose, "sweeps": [],
        "lidars": lidar_calibrations(frame), "cams": camera_calibrations(frame, image_paths),
        "context": {"time_of_day": stats.time_of_day, "location": stats.location, "weather": stats.weather},
    }
    labels = {"boxes": [box_record(label, token) for label in frame.laser_labels], "lidarseg_path": seg_path}
    return record, labels


def convert(inputs: list[str], out: str | Path, split: str | None = None, dataset: str = "waymo",
            index_path: str | Path | None = None, labels_path: str | Path | None = None) -> tuple[dict, dict]:
    """Convert every frame of ``inputs`` into ``out``; index.json and labels.json (in ``out`` unless
    given elsewhere) are written last, so an index never names a frame file that is not there."""
    out = Path(out).resolve()
    files = tfrecord_files(inputs)
    splits = {f: split_of(f, split) for f in files}  # fail on an unknown split before writing anything
    frames, labels, seen = [], {}, set()
    for path in files:
        counts: dict[str, int] = {}
        for frame in read_frames(path):
            k = counts.get(frame.context.name, 0)
            counts[frame.context.name] = k + 1
            try:
                record, frame_labels = convert_frame(frame, out, splits[path], k)
            except BenchError as exc:
                raise BenchError(f"{path}: frame {frame.context.name}_{frame.timestamp_micros}: {exc}") from None
            if record["token"] in seen:
                raise BenchError(f"{path}: frame {record['token']} appears twice in the input")
            seen.add(record["token"])
            frames.append(record)
            labels[record["token"]] = frame_labels
    if not frames:
        raise BenchError(f"{', '.join(map(str, files))}: no frame found")
    names = seg_class_names()
    present = sorted({f["split"] for f in frames})
    folder_of = {v: k for k, v in SPLIT_OF_FOLDER.items()}
    index = {"dataset": dataset, "format": "waymo", "dataroot": str(out), "nsweeps": 1,
             "point_columns": list(POINT_COLUMNS), "eval_sets": {s: folder_of.get(s, s) for s in present},
             "frames": frames}
    label_table = {"dataset": dataset, "format": "waymo", "seg_class_names": names,
                   # The same keys as the nuScenes labels: Waymo's classes map to themselves.
                   "lidarseg_fine_to_coarse": list(range(len(names))), "lidarseg_coarse_names": names,
                   "frames": labels}
    write_json(labels_path or out / "labels.json", label_table, indent=None)
    write_json(index_path or out / "index.json", index, indent=None)
    return index, label_table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xmbench.data.waymo.tf.convert", description=__doc__.split("\n")[0])
    parser.add_argument("--tfrecords", nargs="+", required=True, help="Waymo .tfrecord files or folders of them")
    parser.add_argument("--out", required=True, help="output folder (index.json, labels.json, per-frame files)")
    parser.add_argument("--split", help="split of every input (default: from a training/validation/testing folder)")
    parser.add_argument("--dataset", default="waymo", help="dataset name recorded in the index")
    parser.add_argument("--index", help="where to write index.json (default: in --out)")
    parser.add_argument("--labels", help="where to write labels.json (default: in --out)")
    args = parser.parse_args(argv)
    try:
        index, _ = convert(args.tfrecords, args.out, args.split, args.dataset, args.index, args.labels)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    n_points = sum(f["num_points"] for f in index["frames"])
    print(f"converted {len(index['frames'])} frames ({n_points} points) into {index['dataroot']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
