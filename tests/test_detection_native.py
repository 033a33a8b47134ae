"""Native detection engine: targets, decoding, NMS, focal loss, GT sampling, and a short finetune."""
import json
import math

import numpy as np
import pytest
import torch

from xmbench.detection.boxes import (boxes_to_global, frame_boxes, matrix_to_quaternion, points_in_box, rot_z,
                                     transform_boxes)
from xmbench.models.centerpoint import (CODE_SIZE, HEAD_ORDER, NUSCENES_CLASSES, NUSCENES_HEADS, HeadGeometry,
                                        TargetConfig, circle_nms, decode, encode_targets, focal_loss_centernet,
                                        gaussian_radius)

GEO = HeadGeometry((-51.2, -51.2, -5.0, 51.2, 51.2, 3.0), (0.4, 0.4, 0.2), 4, (64, 64))
CFG = TargetConfig(NUSCENES_CLASSES, NUSCENES_HEADS)


def _boxes():
    # x, y, z, dx (length), dy (width), dz, heading, vx, vy
    boxes = np.array([[10.3, -4.1, -0.8, 4.6, 1.9, 1.7, 0.3, 2.0, -1.0],      # car
                      [-20.7, 15.2, -0.5, 11.0, 2.9, 3.5, -2.8, 0.0, 0.0],    # bus
                      [5.1, 30.9, -1.0, 0.7, 0.7, 1.75, 1.2, 0.5, 0.4],       # pedestrian
                      [-33.3, -40.6, -1.2, 0.4, 0.4, 1.0, 0.0, 0.0, 0.0],     # traffic_cone
                      [44.0, 2.2, -1.1, 2.1, 0.8, 1.5, 3.0, -3.0, 0.2]],      # motorcycle
                     dtype=np.float32)
    names = ["car", "bus", "pedestrian", "traffic_cone", "motorcycle"]
    return boxes, np.array([NUSCENES_CLASSES.index(n) + 1 for n in names])


def _perfect_predictions(targets):
    """Heatmaps equal to the targets (as probabilities) and every regression map holding the
    target code at the object's cell."""
    preds = []
    w, h = GEO.map_size
    for t in targets:
        p = {"hm": torch.from_numpy(t["heatmap"])[None]}
        maps = torch.zeros(1, CODE_SIZE, h * w)
        for k in np.nonzero(t["mask"])[0]:
            maps[0, :, t["inds"][k]] = torch.from_numpy(t["boxes"][k])
        maps = maps.view(1, CODE_SIZE, h, w)
        start = 0
        for name, c in zip(HEAD_ORDER, (2, 1, 3, 2, 2)):
            p[name] = maps[:, start:start + c]
            start += c
        preds.append(p)
    return preds


def test_targets_decode_back_to_the_same_boxes():
    boxes, labels = _boxes()
    targets = encode_targets(boxes, labels, CFG, GEO)
    assert sum(int(t["mask"].sum()) for t in targets) == len(boxes)
    for t in targets:  # every object's centre cell is a heatmap peak of exactly 1
        for k in np.nonzero(t["mask"])[0]:
            assert t["heatmap"].max(axis=0).reshape(-1)[t["inds"][k]] == 1.0
    out = decode(_perfect_predictions(targets), CFG, GEO, k=50, score_thresh=0.999, nms=True, logits=False)[0]
    assert sorted(out["labels"].tolist()) == sorted(labels.tolist())
    for box, lab in zip(boxes, labels):
        j = int(np.argmin(np.linalg.norm(out["boxes"][:, :2] - box[:2], axis=1)))
        assert out["labels"][j] == lab
        got = out["boxes"][j]
        np.testing.assert_allclose(got[[0, 1, 2, 3, 4, 5, 7, 8]], box[[0, 1, 2, 3, 4, 5, 7, 8]], atol=1e-4)
        assert abs(math.remainder(got[6] - box[6], 2 * math.pi)) < 1e-5


def test_gaussian_radius_follows_centerpoint_and_min_radius_applies():
    # CenterPoint's three-case rule at overlap 0.1 for a 1.44 x 0.59 cell car (4.6 m x 1.9 m at 3.2 m cells)
    r = gaussian_radius(np.array([4.6 / 3.2]), np.array([1.9 / 3.2]), 0.1)[0]
    s, p, o = 4.6 / 3.2 + 1.9 / 3.2, 4.6 / 3.2 * 1.9 / 3.2, 0.1
    r3 = (-2 * o * s + math.sqrt((2 * o * s) ** 2 - 16 * o * (o - 1) * p)) / 2
    assert r == pytest.approx(min(r3, (s + math.sqrt(s * s - 4 * p * (1 - o) / (1 + o))) / 2,
                                  (2 * s + math.sqrt(4 * s * s - 16 * (1 - o) * p)) / 2))
    boxes, labels = _boxes()
    heat = encode_targets(boxes[:1], labels[:1], CFG, GEO)[0]["heatmap"][0]
    assert (heat > 0).sum() == 25  # radius clamped to 2: a 5 x 5 Gaussian


def test_circle_nms_suppresses_within_squared_radius():
    centers = np.array([[0.0, 0.0], [1.5, 0.0], [3.0, 0.0], [0.0, 0.5]])
    scores = np.array([0.9, 0.8, 0.7, 0.95])
    keep = circle_nms(centers, scores, min_radius=4.0)  # squared distance <= 4: within 2 m
    assert keep.tolist() == [3, 2]
    assert circle_nms(centers, scores, min_radius=0.1).tolist() == [3, 0, 1, 2]
    assert circle_nms(centers, scores, min_radius=100.0, post_max_size=1).tolist() == [3]


def _focal_numpy(pred, gt):
    pos = gt == 1
    pos_loss = (np.log(pred) * (1 - pred) ** 2)[pos].sum()
    neg_loss = (np.log(1 - pred) * pred ** 2 * (1 - gt) ** 4)[~pos].sum()
    n = pos.sum()
    return -neg_loss if n == 0 else -(pos_loss + neg_loss) / n


def test_focal_loss_matches_numpy():
    rng = np.random.default_rng(0)
    pred = rng.uniform(0.01, 0.99, (2, 3, 8, 8))
    gt = rng.uniform(0, 0.9, (2, 3, 8, 8))
    gt[0, 1, 2, 3] = gt[1, 2, 5, 5] = gt[1, 0, 0, 0] = 1.0
    ours = focal_loss_centernet(torch.from_numpy(pred), torch.from_numpy(gt)).item()
    assert ours == pytest.approx(_focal_numpy(pred, gt), rel=1e-9)
    gt_neg = np.minimum(gt, 0.9)
    assert focal_loss_centernet(torch.from_numpy(pred), torch.from_numpy(gt_neg)).item() == pytest.approx(
        _focal_numpy(pred, gt_neg), rel=1e-9)


def test_box_augmentation_keeps_points_inside_their_box():
    from xmbench.pretraining.augment import random_view

    boxes, _ = _boxes()
    rng = np.random.default_rng(1)
    pts = np.concatenate([b[:3] + (rng.uniform(-0.45, 0.45, (50, 3)) * b[3:6]) @ rot_z(b[6]).T for b in boxes])
    pts = np.concatenate([pts, np.zeros((len(pts), 2))], axis=1).astype(np.float32)
    g = torch.Generator().manual_seed(3)
    view = random_view(torch.from_numpy(pts), torch.zeros(len(pts), dtype=torch.long), 1, g,
                       rotation_deg=180, scale=(0.9, 1.1), flip=True)
    moved = transform_boxes(boxes, view.matrix[0].numpy(), view.translation[0].numpy())
    new_pts = view.points.numpy()
    for i, b in enumerate(moved):
        inside = points_in_box(new_pts, b, margin=1e-4)
        assert inside[i * 50:(i + 1) * 50].all()


def test_boxes_to_global_and_quaternion():
    t = np.eye(4)
    t[:3, :3] = rot_z(0.5)
    t[:3, 3] = [100.0, 200.0, 1.0]
    box = np.array([[1.0, 0.0, 0.0, 4.0, 2.0, 1.5, 0.25, 1.0, 0.0]])
    g = boxes_to_global(box, t)[0]
    np.testing.assert_allclose(g["translation"], [100 + math.cos(0.5), 200 + math.sin(0.5), 1.0])
    assert g["size"] == [2.0, 4.0, 1.5]
    w, x, y, z = g["rotation"]
    assert 2 * math.atan2(z, w) == pytest.approx(0.75)
    np.testing.assert_allclose(g["velocity"], [math.cos(0.5), math.sin(0.5)])
    q = matrix_to_quaternion(rot_z(-3.0))
    assert 2 * math.atan2(q[3], q[0]) == pytest.approx(-3.0)


def _split(tiny_index, fraction):
    index = json.loads(tiny_index["index"].read_text())
    train = [f["token"] for f in index["frames"] if f["split"] == "train"]
    return index, json.loads(tiny_index["labels"].read_text()), train, train[:max(1, int(len(train) * fraction))]


def test_gt_sampling_draws_only_from_the_split(tiny_index):
    from xmbench.detection.gt_sampling import build_database, paste

    index, labels, train, split = _split(tiny_index, 0.3)
    db = build_database(index, labels, split, NUSCENES_CLASSES, min_points=5)
    assert db.entries, "the split holds objects"
    assert db.source_tokens <= set(split)
    assert not db.source_tokens & (set(train) - set(split))
    full = build_database(index, labels, train, NUSCENES_CLASSES, min_points=5)
    assert sum(full.counts().values()) > sum(db.counts().values())
    # pasted objects are database objects, i.e. objects of the split's frames
    other = next(t for t in train if t not in split)
    from xmbench.data.frames import load_points
    from pathlib import Path
    frame = next(f for f in index["frames"] if f["token"] == other)
    pts, _ = load_points(Path(index["dataroot"]), frame)
    boxes, labs = frame_boxes(labels["frames"][other]["boxes"], list(NUSCENES_CLASSES))
    new_pts, new_boxes, new_labs = paste(db, pts, boxes, labs, {n: 20 for n in NUSCENES_CLASSES},
                                         np.random.default_rng(0))
    db_boxes = np.stack([e["box"] for es in db.entries.values() for e in es])
    added = new_boxes[len(boxes):]
    assert len(added) > 0
    for b in added:
        assert np.isclose(db_boxes, b).all(axis=1).any()


def test_task_yaml_and_native_settings(tiny_index):
    from xmbench.tasks import load_task

    task = load_task("detection")
    assert task.spec["primary_metric"]["key"] == "mean_ap"
    _, native = task.engine("native")
    for profile in task.spec["recipes"]:
        s = native.load_settings(profile)
        assert list(s["class_names"]) == list(NUSCENES_CLASSES)
    r1, r2 = task.recipe("small", 0.1), task.recipe("small", 1.0)
    assert r1["iterations"] == max(r1["iterations_min"], round(r1["iterations_full"] * 0.1 ** 0.5))
    assert r2["iterations"] == r2["iterations_full"]


def test_short_finetune_of_scratch_gives_a_devkit_result(tiny_index, test_config, tmp_path):
    from xmbench.finetune import run_finetune
    from xmbench.splits import write_split
    from xmbench.tasks import load_task

    _, _, train, split = _split(tiny_index, 0.5)
    split_path = tmp_path / "split.txt"
    write_split(split_path, split)
    cfg = dict(test_config)
    rec = run_finetune(load_task("detection"), "native", cfg, "synthetic_nuscenes", "scratch", 0.5, 0,
                       tiny_index["index"], tiny_index["labels"], split_path, None, tmp_path / "cell")
    assert rec["status"] == "ok", rec["reason"]
    m = rec["metrics"]
    assert 0.0 <= m["mean_ap"] <= 1.0 and math.isfinite(m["mean_ap"])
    assert 0.0 <= m["nds"] <= 1.0
    assert set(m["ap_per_class"]) == set(NUSCENES_CLASSES)
    assert {"mATE", "mASE", "mAOE", "mAVE", "mAAE"} <= set(m)
    assert set(m["classes_in_val_gt"]) <= set(NUSCENES_CLASSES) and m["classes_in_val_gt"]
    assert rec["primary_metric"]["value"] == pytest.approx(100 * m["mean_ap"])
    assert rec["init"]["backbone_3d"] == {"loaded": 0, "total": 142, "pretrained": False, "missed": [], "ignored": []}
    summary = json.loads((tmp_path / "cell" / "eval" / "metrics_summary.json").read_text())
    assert summary["mean_ap"] == pytest.approx(m["mean_ap"])
    sub = json.loads((tmp_path / "cell" / "eval" / "results_nusc.json").read_text())
    assert sub["meta"]["use_lidar"] is True
    index = json.loads(tiny_index["index"].read_text())
    assert set(sub["results"]) == {f["token"] for f in index["frames"] if f["split"] == "val"}


def test_ground_truth_submission_scores_ap_one_on_present_classes(tiny_index, tmp_path):
    """The submission path (LiDAR frame -> global, sizes, quaternions, attributes) is exact: the
    val ground truth submitted as detections gets AP 1 on every class present in it."""
    from xmbench.data.nuscenes.detection_eval import attributes_from_labels, evaluate, submission

    index, labels, train, _ = _split(tiny_index, 1.0)
    val = [f for f in index["frames"] if f["split"] == "val"]
    dets = []
    for f in val:
        b, lab = frame_boxes(labels["frames"][f["token"]]["boxes"], list(NUSCENES_CLASSES))
        dets.append({"boxes": b, "scores": np.ones(len(b)), "labels": lab})
    m = evaluate(index, submission(val, dets, NUSCENES_CLASSES, attributes_from_labels(labels, train)), tmp_path)
    present = m["classes_in_val_gt"]
    assert present
    for c in NUSCENES_CLASSES:
        assert m["ap_per_class"][c] == pytest.approx(1.0 if c in present else 0.0)
    assert m["mean_ap"] == pytest.approx(len(present) / 10)
    for c in present:
        assert m["tp_errors_per_class"][c]["mATE"] == pytest.approx(0.0, abs=1e-4)
        assert m["tp_errors_per_class"][c]["mASE"] == pytest.approx(0.0, abs=1e-4)
