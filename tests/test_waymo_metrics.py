"""The Waymo metric wrapper: Waymo's own detection op behind JSON in / JSON out, and seg mIoU."""
from __future__ import annotations

import json

import numpy as np
import pytest

from test_waymo_env import SHARED, run_waymo, waymo_python  # noqa: F401  (waymo_python is a fixture)


def _ground_truth() -> dict:
    """Three frames with boxes of every evaluated class, LEVEL_1 and LEVEL_2, plus signs (not evaluated)."""
    rng = np.random.default_rng(0)
    sizes = {"Vehicle": (2.0, 4.6, 1.7), "Pedestrian": (0.7, 0.7, 1.8), "Cyclist": (0.7, 1.8, 1.7),
             "Sign": (0.6, 0.1, 0.6)}
    frames = {}
    for f in range(3):
        boxes = []
        for i, (name, wlh) in enumerate(sizes.items()):
            for j in range(3):
                boxes.append({"name": name, "center": [8.0 * i + 2.0, 6.0 * j - 6.0 + 20 * f, wlh[2] / 2],
                              "wlh": list(wlh), "yaw": float(rng.uniform(-np.pi, np.pi)),
                              "num_lidar_pts": [50, 4, 30][j], "difficulty": [0, 0, 2][j]})
        frames[f"seg_{1000 + f}"] = {"boxes": boxes, "lidarseg_path": None}
    return {"frames": frames}


def _predictions(gt: dict, shift: float = 0.0, flip: bool = False) -> dict:
    frames = {}
    for token, rec in gt["frames"].items():
        boxes = []
        for k, b in enumerate(rec["boxes"]):
            b = dict(b, score=0.5 + 0.01 * k)
            b["center"] = [b["center"][0] + shift, b["center"][1], b["center"][2]]
            if flip:
                b["yaw"] = b["yaw"] + np.pi
            boxes.append(b)
        frames[token] = {"boxes": boxes}
    return {"frames": frames}


def _metrics(tmp_path, gt: dict, pred: dict, name: str) -> dict:
    (tmp_path / f"{name}_gt.json").write_text(json.dumps(gt))
    (tmp_path / f"{name}_pred.json").write_text(json.dumps(pred))
    out = tmp_path / f"{name}_metrics.json"
    run_waymo(["-m", "xmbench.data.waymo.tf.metrics", "--gt", str(tmp_path / f"{name}_gt.json"), "--pred",
               str(tmp_path / f"{name}_pred.json"), "--out", str(out)])
    return json.loads(out.read_text())["detection"]


def test_perfect_predictions_score_one_and_worse_ones_less(waymo_python, tmp_path):  # noqa: F811
    gt = _ground_truth()
    perfect = _metrics(tmp_path, gt, _predictions(gt), "perfect")
    for key in ("mAP_L1", "mAPH_L1", "mAP_L2", "mAPH_L2"):
        assert perfect[key] == pytest.approx(1.0, abs=1e-5)
    assert perfect["classes_L1"] == ["Vehicle", "Pedestrian", "Cyclist"]
    # Waymo's difficulty rule: <= 5 points or labelled LEVEL_2 -> LEVEL_2; LEVEL_2 includes LEVEL_1.
    assert perfect["per_class"]["Vehicle"]["LEVEL_1"]["num_gt"] == 3 and perfect["num_gt_boxes"] == 27
    assert perfect["per_class"]["Vehicle"]["LEVEL_2"]["num_gt"] == 9
    assert perfect["iou_thresholds"] == {"Vehicle": 0.7, "Pedestrian": 0.5, "Cyclist": 0.5}

    shifted = _metrics(tmp_path, gt, _predictions(gt, shift=0.5), "shifted")
    assert shifted["per_class"]["Pedestrian"]["LEVEL_1"]["AP"] < 0.01  # a 0.7 m box moved 0.5 m: IoU < 0.5
    assert shifted["mAP_L1"] < 0.7 and shifted["mAP_L2"] < 0.7

    flipped = _metrics(tmp_path, gt, _predictions(gt, flip=True), "flipped")
    assert flipped["mAP_L1"] == pytest.approx(1.0, abs=1e-5)  # heading-agnostic IoU ...
    assert flipped["mAPH_L1"] < 0.01  # ... but APH charges the 180 degree heading error


def test_waymo_objects_bin_and_labels_json_are_accepted(waymo_python, tmp_path):  # noqa: F811
    gt_bin = SHARED / "real-samples" / "waymo" / "gt.bin"
    out = tmp_path / "m.json"
    run_waymo(["-m", "xmbench.data.waymo.tf.metrics", "--gt", str(gt_bin), "--pred", str(gt_bin), "--out", str(out)])
    det = json.loads(out.read_text())["detection"]
    assert det["classes_L1"] == ["Vehicle"] and det["mAP_L1"] == pytest.approx(1.0, abs=1e-5)
    assert det["per_class"]["Pedestrian"]["LEVEL_1"]["AP"] is None  # no ground truth: not in the mean


def test_segmentation_miou(waymo_python, tmp_path):  # noqa: F811
    gt = np.array([[0, 18], [0, 18], [3, 1], [3, 1], [0, 0], [0, 22]], dtype=np.int32)  # road, car, undefined, sidewalk
    np.save(tmp_path / "gt.npy", gt)
    np.save(tmp_path / "same.npy", gt[:, 1].astype(np.int64))
    np.save(tmp_path / "off.npy", np.array([18, 1, 1, 1, 7, 22]))  # one road point called car
    seg = {"frames": {"a": {"gt": "gt.npy", "pred": "same.npy"}}}
    (tmp_path / "same.json").write_text(json.dumps(seg))
    seg["frames"]["a"]["pred"] = "off.npy"
    (tmp_path / "off.json").write_text(json.dumps(seg))
    for name in ("same", "off"):
        run_waymo(["-m", "xmbench.data.waymo.tf.metrics", "--seg", str(tmp_path / f"{name}.json"),
                   "--out", str(tmp_path / f"{name}_m.json")])
    same = json.loads((tmp_path / "same_m.json").read_text())["segmentation"]
    off = json.loads((tmp_path / "off_m.json").read_text())["segmentation"]
    assert same["mIoU"] == pytest.approx(1.0) and same["num_points"] == 5  # TYPE_UNDEFINED is ignored
    assert off["per_class"]["TYPE_ROAD"] == pytest.approx(0.5)
    assert off["per_class"]["TYPE_CAR"] == pytest.approx(2 / 3)
    assert off["mIoU"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)


def test_bad_predictions_give_one_error_line(waymo_python, tmp_path):  # noqa: F811
    gt = _ground_truth()
    pred = _predictions(gt)
    pred["frames"]["seg_1001"]["boxes"][2]["score"] = 1.7
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "pred.json").write_text(json.dumps(pred))
    proc = run_waymo(["-m", "xmbench.data.waymo.tf.metrics", "--gt", str(tmp_path / "gt.json"), "--pred",
                      str(tmp_path / "pred.json"), "--out", str(tmp_path / "m.json")], check=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'pred.json'}: frame seg_1001 box 2: score must be a number in [0, 1], got 1.7"]
    assert not (tmp_path / "m.json").exists()
