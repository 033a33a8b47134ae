"""Waymo conversion on the real validation frame (shared/real-samples/waymo) and on bad input."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_waymo_env import SHARED, run_waymo, waymo_python  # noqa: F401  (waymo_python is a fixture)

REAL = SHARED / "real-samples" / "waymo" / "val.tfrecord"

# Read the frame with waymo_open_dataset alone, independently of the converter.
READ_PROTO = """
import json, sys
import tensorflow as tf
from waymo_open_dataset import dataset_pb2, label_pb2
frames = [dataset_pb2.Frame.FromString(r.numpy()) for r in tf.data.TFRecordDataset(sys.argv[1])]
f = frames[0]
print(json.dumps({
    "n_frames": len(frames), "name": f.context.name, "timestamp": f.timestamp_micros, "pose": list(f.pose.transform),
    "labels": [{"id": l.id, "type": label_pb2.Label.Type.Name(l.type),
                "center": [l.box.center_x, l.box.center_y, l.box.center_z],
                "lwh": [l.box.length, l.box.width, l.box.height], "heading": l.box.heading,
                "speed": [l.metadata.speed_x, l.metadata.speed_y], "points": l.num_lidar_points_in_box,
                "difficulty": l.detection_difficulty_level} for l in f.laser_labels],
    "cameras": {dataset_pb2.CameraName.Name.Name(c.name): {"intrinsic": list(c.intrinsic), "size": [c.width, c.height],
                "extrinsic": list(c.extrinsic.transform)} for c in f.context.camera_calibrations},
    "lasers": {dataset_pb2.LaserName.Name.Name(c.name): list(c.extrinsic.transform)
               for c in f.context.laser_calibrations},
    "n_range_images": len(f.lasers), "n_images": len(f.images)}))
"""


@pytest.fixture(scope="module")
def real(waymo_python, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("waymo_real")
    run_waymo(["-m", "xmbench.data.waymo.tf.convert", "--tfrecords", str(REAL), "--out", str(out), "--split", "val"])
    proto = json.loads(run_waymo(["-c", READ_PROTO, str(REAL)]).stdout)
    return out, proto


def test_real_frame_boxes_equal_waymo_parsing(real):
    out, proto = real
    labels = json.loads((out / "labels.json").read_text())
    frame_id = f"{proto['name']}_{proto['timestamp']}"
    assert proto["n_frames"] == 1 and list(labels["frames"]) == [frame_id]
    boxes = labels["frames"][frame_id]["boxes"]
    assert len(boxes) == len(proto["labels"]) == 18
    for box, ref in zip(boxes, proto["labels"]):
        assert box["track_id"] == ref["id"] and box["type"] == ref["type"]
        assert box["name"] == {"TYPE_VEHICLE": "Vehicle", "TYPE_SIGN": "Sign"}[ref["type"]]
        assert box["center"] == ref["center"]
        assert [box["wlh"][1], box["wlh"][0], box["wlh"][2]] == ref["lwh"]
        assert box["yaw"] == ref["heading"] and box["velocity"] == ref["speed"]
        assert box["num_lidar_pts"] == ref["points"] and box["difficulty"] == ref["difficulty"]
    assert sorted(b["type"] for b in boxes) == ["TYPE_SIGN"] * 17 + ["TYPE_VEHICLE"]
    assert labels["frames"][frame_id]["lidarseg_path"] is None


def test_real_frame_without_range_images_gives_zero_points_and_its_calibrations(real):
    out, proto = real
    index = json.loads((out / "index.json").read_text())
    assert proto["n_range_images"] == 0 and proto["n_images"] == 0  # stripped before publication
    (frame,) = index["frames"]
    assert not {"boxes", "lidarseg_path"} & set(frame)  # the index holds no label
    assert frame["split"] == "val" and frame["num_points"] == 0
    points = np.load(out / frame["lidar_path"])
    assert points.shape == (0, 7) and points.dtype == np.float32
    assert np.allclose(frame["ego_pose"], np.reshape(proto["pose"], (4, 4)))
    assert sorted(frame["lidars"]) == sorted(proto["lasers"]) and len(frame["lidars"]) == 5
    for name, ext in proto["lasers"].items():
        assert np.allclose(frame["lidars"][name]["extrinsic"], np.reshape(ext, (4, 4)))
    assert sorted(frame["cams"]) == sorted(proto["cameras"]) and len(frame["cams"]) == 5
    for name, ref in proto["cameras"].items():
        cam = frame["cams"][name]
        f_u, f_v, c_u, c_v = ref["intrinsic"][:4]
        assert cam["path"] is None and [cam["width"], cam["height"]] == ref["size"]
        assert np.allclose(cam["intrinsic"], [[f_u, 0, c_u], [0, f_v, c_v], [0, 0, 1]])
        assert cam["distortion"] == ref["intrinsic"][4:]
        # lidar_to_cam ends in the optical frame: the camera's viewing axis (its x in Waymo's axes) is +z.
        cam_to_vehicle = np.reshape(ref["extrinsic"], (4, 4))
        ahead = cam_to_vehicle @ np.array([10.0, 0.0, 0.0, 1.0])
        in_cam = np.asarray(cam["lidar_to_cam"]) @ ahead
        assert np.allclose(in_cam[:3], [0.0, 0.0, 10.0], atol=1e-9)


def _single_error_line(proc) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_bad_input_gives_one_error_line_naming_the_file(waymo_python, tmp_path):  # noqa: F811
    garbage = tmp_path / "garbage.tfrecord"
    garbage.write_bytes(bytes(range(256)) * 8)
    cut = tmp_path / "cut.tfrecord"
    cut.write_bytes(REAL.read_bytes()[:-100])
    out = tmp_path / "out"
    cases = [(garbage, "not a readable TFRecord file"), (cut, "not a readable TFRecord file"),
             (tmp_path / "missing.tfrecord", "file not found")]
    for path, reason in cases:
        proc = run_waymo(["-m", "xmbench.data.waymo.tf.convert", "--tfrecords", str(path), "--out", str(out),
                          "--split", "val"], check=False)
        line = _single_error_line(proc)
        assert line.startswith(f"error: {path}: {reason}"), line
    assert not (out / "index.json").exists() and not (out / "labels.json").exists()
    # A file outside training/ validation/ testing/ needs --split; the error says so before any output.
    proc = run_waymo(["-m", "xmbench.data.waymo.tf.convert", "--tfrecords", str(REAL), "--out", str(out)], check=False)
    assert "pass --split" in _single_error_line(proc) and not out.exists()
