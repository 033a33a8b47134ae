"""Synthetic Waymo TFRecords: generate -> convert gives back what was simulated, bit for bit where it can."""
from __future__ import annotations

import hashlib
import json
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from test_waymo_env import run_waymo, waymo_python  # noqa: F401  (waymo_python is a fixture)

SEED = 1  # its two segments hold all four Waymo box types (seed 0 happens to have no cyclist)

# Waymo's own reference path: frame_utils parses and converts the first frame. Its parser hands
# protobuf a bytearray, which protobuf 4's upb backend rejects, so this runs on the pure-Python backend.
OFFICIAL = """
import sys
import numpy as np
import tensorflow as tf
from waymo_open_dataset import dataset_pb2
from waymo_open_dataset.utils import frame_utils
frame = dataset_pb2.Frame.FromString(next(iter(tf.data.TFRecordDataset(sys.argv[1]))).numpy())
ri, cp, seg, top = frame_utils.parse_range_image_and_camera_projection(frame)
names = sorted(c.name for c in frame.context.laser_calibrations)
parts = {}
for r in (0, 1):
    pts, _ = frame_utils.convert_range_image_to_point_cloud(frame, ri, cp, top, ri_index=r, keep_polar_features=True)
    for name, p in zip(names, pts):
        parts[name, r] = np.concatenate([p[:, 3:6], p[:, 1:3], np.full((len(p), 1), r), np.full((len(p), 1), name)], 1)
np.save(sys.argv[2], np.concatenate([parts[k] for k in sorted(parts)]).astype(np.float32))
"""


@pytest.fixture(scope="module")
def dataset(waymo_python, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("waymo_synth")
    gen = json.loads(run_waymo(["-m", "xmbench.data.synthetic.waymo_writer", "--out", str(root / "records"), "--seed",
                                str(SEED), "--truth", str(root / "truth")]).stdout)
    run_waymo(["-m", "xmbench.data.waymo.tf.convert", "--tfrecords", str(root / "records"), "--out", str(root / "conv")])
    index = json.loads((root / "conv" / "index.json").read_text())
    labels = json.loads((root / "conv" / "labels.json").read_text())
    return {"root": root, "records": gen["tfrecords"], "index": index, "labels": labels,
            "truth_boxes": json.loads((root / "truth" / "boxes.json").read_text())}


def test_layout_splits_and_index_without_labels(dataset):
    index, labels = dataset["index"], dataset["labels"]
    frames = index["frames"]
    assert len(dataset["records"]) == 2 and len(frames) == 8  # 2 segments x 4 frames by default
    assert Counter(f["split"] for f in frames) == {"train": 4, "val": 4}  # from training/ and validation/
    assert set(labels["frames"]) == {f["token"] for f in frames} == set(dataset["truth_boxes"])
    assert index["point_columns"] == ["x", "y", "z", "intensity", "elongation", "return_index", "lidar_id"]
    for f in frames:
        assert not {"boxes", "lidarseg_path"} & set(f)
        assert sorted(f["cams"]) == ["FRONT", "FRONT_LEFT", "FRONT_RIGHT", "SIDE_LEFT", "SIDE_RIGHT"]
        assert sorted(f["lidars"]) == ["FRONT", "REAR", "SIDE_LEFT", "SIDE_RIGHT", "TOP"]
        assert all((index_root(dataset) / c["path"]).is_file() for c in f["cams"].values())
    assert [f["frame_index"] for f in frames if f["scene"] == frames[0]["scene"]] == [0, 1, 2, 3]
    assert labels["seg_class_names"][0] == "TYPE_UNDEFINED" and len(labels["seg_class_names"]) == 23


def index_root(dataset):
    return dataset["root"] / "conv"


def test_points_come_back(dataset):
    root = index_root(dataset)
    for f in dataset["index"]["frames"]:
        got = np.load(root / f["lidar_path"])
        want = np.load(dataset["root"] / "truth" / f"{f['token']}.npy")
        assert got.shape == want.shape and got.dtype == np.float32 and len(got) > 20000
        assert np.array_equal(got[:, 3:], want[:, 3:])  # intensity, elongation, return, lidar: exact
        err = np.abs(got[:, :3] - want[:, :3]).max(axis=1)
        top = got[:, 6] == 1
        # TOP goes through its float32 per-pixel poses at global coordinates of ~3 km; the others do not.
        assert err[top].max() < 2e-3 and err[~top].max() < 1e-4
        assert set(np.unique(got[:, 6])) == {1, 2, 3, 4, 5} and set(np.unique(got[:, 5])) == {0, 1}


def test_points_equal_waymo_frame_utils(dataset, tmp_path):
    """The converter's decoding equals Waymo's own parse + convert, bit for bit."""
    record = next(p for p in dataset["records"] if "/training/" in p)
    run_waymo(["-c", OFFICIAL, record, str(tmp_path / "official.npy")],
              env={"PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION": "python"})
    first = next(f for f in dataset["index"]["frames"] if f["split"] == "train" and f["frame_index"] == 0)
    assert np.array_equal(np.load(tmp_path / "official.npy"), np.load(index_root(dataset) / first["lidar_path"]))


def _inside(points: np.ndarray, box: dict) -> np.ndarray:
    c, s = np.cos(box["yaw"]), np.sin(box["yaw"])
    rel = points[:, :3].astype(np.float64) - box["center"]
    w, l, h = box["wlh"]
    lx, ly = rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c
    return (np.abs(lx) < l / 2) & (np.abs(ly) < w / 2) & (np.abs(rel[:, 2]) < h / 2)


def test_boxes_come_back_and_count_their_points(dataset):
    root = index_root(dataset)
    types = Counter()
    for f in dataset["index"]["frames"]:
        boxes = dataset["labels"]["frames"][f["token"]]["boxes"]
        truth = dataset["truth_boxes"][f["token"]]
        assert len(boxes) == len(truth) > 10
        points = np.load(root / f["lidar_path"])
        for box, ref in zip(boxes, truth):
            assert (box["track_id"], box["type"]) == (ref["track_id"], ref["type"])
            assert box["center"] == ref["center"] and box["yaw"] == ref["heading"]
            assert [box["wlh"][1], box["wlh"][0], box["wlh"][2]] == ref["lwh"]
            assert box["velocity"] == ref["speed"] and box["difficulty"] == ref["difficulty"]
            assert box["num_lidar_pts"] == ref["num_lidar_points_in_box"] > 0
            # Counted independently on the converted points (no point lies within 5 mm of a box face).
            inside = _inside(points, box)
            assert int(inside.sum()) == box["num_lidar_pts"]
            assert int((inside & (points[:, 6] == 1)).sum()) == box["num_top_lidar_pts"]
            assert box["difficulty"] == (2 if box["num_lidar_pts"] <= 5 else 1)
            types[box["name"]] += 1
    assert set(types) == {"Vehicle", "Pedestrian", "Cyclist", "Sign"}
    # Tracking ids persist across a segment's frames.
    first, second = (dataset["labels"]["frames"][f["token"]]["boxes"] for f in dataset["index"]["frames"][:2])
    assert len({b["track_id"] for b in first} & {b["track_id"] for b in second}) > 10


def test_segmentation_labels_on_every_second_frame(dataset):
    root = index_root(dataset)
    seen = Counter()
    for f in dataset["index"]["frames"]:
        path = dataset["labels"]["frames"][f["token"]]["lidarseg_path"]
        assert (path is not None) == (f["frame_index"] % 2 == 0)
        if path is None:
            continue
        seg = np.load(root / path)
        points = np.load(root / f["lidar_path"])
        assert np.array_equal(seg, np.load(dataset["root"] / "truth" / f"{f['token']}.seg.npy"))
        assert seg.shape == (len(points), 2) and seg.dtype == np.int32
        top = points[:, 6] == 1
        assert np.all(seg[~top] == 0) and np.all(seg[top, 1] > 0)  # TOP only, every TOP point labelled
        seen.update(dataset["labels"]["seg_class_names"][c] for c in seg[top, 1])
    assert {"TYPE_CAR", "TYPE_PEDESTRIAN", "TYPE_ROAD", "TYPE_SIDEWALK", "TYPE_BUILDING", "TYPE_VEGETATION",
            "TYPE_SIGN", "TYPE_POLE", "TYPE_LANE_MARKER"} <= set(seen)


def test_cameras_see_what_the_lidar_sees(dataset):
    """Car points projected with the index's intrinsic and lidar_to_cam land on the cars' blue."""
    root = index_root(dataset)
    hits = 0
    for f in dataset["index"]["frames"]:
        path = dataset["labels"]["frames"][f["token"]]["lidarseg_path"]
        if path is None:
            continue
        points, seg = np.load(root / f["lidar_path"]), np.load(root / path)
        cars = points[seg[:, 1] == 1, :3].astype(np.float64)
        for cam in f["cams"].values():
            img = np.asarray(Image.open(root / cam["path"]).convert("RGB")).astype(int)
            t = np.asarray(cam["lidar_to_cam"])
            p = cars @ t[:3, :3].T + t[:3, 3]
            uv = p @ np.asarray(cam["intrinsic"]).T
            uv = uv[:, :2] / np.maximum(p[:, 2:3], 1e-6)
            ok = (p[:, 2] > 1) & (uv[:, 0] >= 1) & (uv[:, 0] < cam["width"] - 1) & (uv[:, 1] >= 1) \
                & (uv[:, 1] < cam["height"] - 1)
            colours = img[uv[ok, 1].astype(int), uv[ok, 0].astype(int)]
            hits += len(colours)
            if len(colours):
                assert np.mean(colours[:, 2] > colours[:, 0] + 40) > 0.9
    assert hits > 100


def test_generator_is_deterministic(waymo_python, tmp_path):  # noqa: F811
    digests = []
    for name in ("a", "b"):
        args = ["-m", "xmbench.data.synthetic.waymo_writer", "--out", str(tmp_path / name), "--seed", "3", "--segments", "1",
                "--frames", "1", "--val-segments", "0", "--top-width", "128"]
        (path,) = json.loads(run_waymo(args).stdout)["tfrecords"]
        digests.append(hashlib.sha256(open(path, "rb").read()).hexdigest())
    assert digests[0] == digests[1]
