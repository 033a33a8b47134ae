"""Waymo datasets inside the benchmark: the CLI's generate/index rules, the loader, and the
Waymo-metric evaluations the finetuning engines call (the whole DAG is run in test_dag.py)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

from xmbench.errors import BenchError

from test_waymo_env import waymo_python  # noqa: F401  (a fixture: fails when .venv-waymo is missing)

REPO = Path(__file__).resolve().parent.parent


def _cli(*args):
    return subprocess.run([sys.executable, "-m", "xmbench.cli", *map(str, args)], cwd=REPO, capture_output=True,
                          text=True)


@pytest.fixture(scope="module")
def waymo_set(waymo_python, tmp_path_factory):  # noqa: F811
    """The tests' synthetic_waymo dataset, made by the same CLI commands the DAG's rules run."""
    root = tmp_path_factory.mktemp("waymo_dag")
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    cfg.update(results_dir=str(root), run_datasets=["synthetic_waymo"])
    cfg["datasets"]["synthetic_waymo"]["generator"]["seg_every"] = 3  # not the generator's default (2)
    (root / "config.json").write_text(json.dumps(cfg))
    data, out = root / "data" / "synthetic_waymo", root / "synthetic_waymo"
    for args in (["generate", "--config", root / "config.json", "--dataset", "synthetic_waymo", "--out", data],
                 ["index", "--config", root / "config.json", "--dataset", "synthetic_waymo", "--root", data,
                  "--index", out / "index.json", "--labels", out / "labels.json"]):
        res = _cli(*args)
        assert res.returncode == 0, res.stderr[-3000:]
    return {"root": root, "config": root / "config.json", "index": json.loads((out / "index.json").read_text()),
            "labels": json.loads((out / "labels.json").read_text()), "index_path": out / "index.json",
            "labels_path": out / "labels.json", "cfg": cfg}


def test_index_rule_converts_the_generated_tfrecords(waymo_set):
    index, labels = waymo_set["index"], waymo_set["labels"]
    gen = waymo_set["cfg"]["datasets"]["synthetic_waymo"]["generator"]
    assert index["format"] == "waymo" and index["dataset"] == "synthetic_waymo"
    assert len(index["frames"]) == gen["segments"] * gen["frames"]
    assert sum(f["split"] == "val" for f in index["frames"]) == gen["val_segments"] * gen["frames"]
    assert Path(index["dataroot"]) == waymo_set["root"] / "synthetic_waymo" / "frames"
    # seg_every: 3 reaches the generator through the config: frames 0 and 3 of each segment are labelled
    seg = sorted(f["frame_index"] for f in index["frames"] if labels["frames"][f["token"]]["lidarseg_path"])
    assert seg == sorted([0, 3] * gen["segments"])


def test_loader_gives_openpcdet_waymo_features_and_waymo_classes(waymo_set):
    from xmbench.data.frames import FrameDataset

    index, labels = waymo_set["index"], waymo_set["labels"]
    token = next(f["token"] for f in index["frames"] if labels["frames"][f["token"]]["lidarseg_path"])
    frame = next(f for f in index["frames"] if f["token"] == token)
    item = FrameDataset(index, [token], (64, 48), labels=labels)[0]
    raw = np.load(Path(index["dataroot"]) / frame["lidar_path"])
    pts = item["points"].numpy()
    assert pts.shape == (len(raw), 5) and item["n_key_points"] == len(raw)
    np.testing.assert_array_equal(pts[:, :3], raw[:, :3])
    np.testing.assert_allclose(pts[:, 3], np.tanh(raw[:, 3]), rtol=1e-6)
    np.testing.assert_array_equal(pts[:, 4], raw[:, 4])  # elongation
    seg = item["seg_labels"].numpy()
    top = raw[:, 6] == 1
    assert (seg[~top] == 0).all() and (seg[top] > 0).mean() > 0.9  # only TOP is labelled; 0 is ignored
    assert seg.max() < len(labels["lidarseg_coarse_names"]) == 23
    assert item["images"].shape == (5, 3, 48, 64)  # Waymo's five cameras


def _ctx(waymo_set, python):
    return SimpleNamespace(labels=waymo_set["labels"], waymo_python=str(python))


def test_ground_truth_as_detections_scores_one_with_waymo_metric_ops(waymo_set, waymo_python, tmp_path):  # noqa: F811
    """Boxes go through the engines' 9-column layout and back to Waymo's: a length/width or
    heading mix-up would miss Waymo's 0.7 IoU for vehicles."""
    from xmbench.detection.boxes import frame_boxes
    from xmbench.data.waymo.detection_eval import evaluate_waymo

    names = ["Vehicle", "Pedestrian", "Cyclist"]
    frames = [f for f in waymo_set["index"]["frames"] if f["split"] == "val"]
    dets = []
    for f in frames:
        boxes, labs = frame_boxes(waymo_set["labels"]["frames"][f["token"]]["boxes"], names, min_points=1)
        dets.append({"boxes": boxes, "scores": np.full(len(boxes), 0.9, np.float32), "labels": labs})
    m = evaluate_waymo(_ctx(waymo_set, waymo_python), frames, dets, names, tmp_path)
    assert m["classes_in_val_gt"] and m["num_val_gt_boxes"] > 0
    for key in ("mAP_L1", "mAPH_L1", "mAP_L2", "mAPH_L2"):
        assert m[key] == pytest.approx(1.0, abs=1e-4), key
    # and a wrong box is scored as one: swap every box's length and width
    for d in dets:
        d["boxes"][:, [3, 4]] = d["boxes"][:, [4, 3]]
    swapped = evaluate_waymo(_ctx(waymo_set, waymo_python), frames, dets, names, tmp_path / "swapped")
    assert swapped["ap_l1_per_class"]["Vehicle"] < 0.5


def test_segmentation_split_without_labelled_frames_fails_with_the_reason(waymo_set, tmp_path):
    from xmbench.finetune import run_finetune
    from xmbench.tasks import load_task

    unlabelled = [f["token"] for f in waymo_set["index"]["frames"]
                  if f["split"] == "train" and not waymo_set["labels"]["frames"][f["token"]]["lidarseg_path"]]
    split = tmp_path / "split.txt"
    from xmbench.splits import write_split

    write_split(split, unlabelled[:2])   # hashed, as the label_split rule writes it
    from xmbench.config import check_config

    rec = run_finetune(load_task("segmentation"), "native", check_config(waymo_set["cfg"]), "synthetic_waymo",
                       "scratch", 0.1, 0, waymo_set["index_path"], waymo_set["labels_path"], split, None,
                       tmp_path / "cell")
    assert rec["status"] == "failed" and "has segmentation labels" in rec["reason"]
    assert json.loads((tmp_path / "cell" / "metrics.json").read_text())["status"] == "failed"


def test_a_bad_val_segmentation_file_is_refused_before_training(waymo_set, tmp_path, monkeypatch):
    """A Waymo val label file that does not match its cloud is named before any training (headers
    only), not after the whole run by the scoring."""
    import shutil

    from xmbench.config import check_config
    from xmbench.finetune import run_finetune
    from xmbench.inputs import check_val_lidarseg
    from xmbench.splits import write_split
    from xmbench.tasks import TaskSpec, load_task

    index, labels = waymo_set["index"], waymo_set["labels"]
    assert check_val_lidarseg(index, labels) == sum(
        1 for f in index["frames"] if f["split"] == "val" and labels["frames"][f["token"]]["lidarseg_path"]) > 0
    frames = tmp_path / "frames"
    shutil.copytree(index["dataroot"], frames)
    val = next(f for f in index["frames"] if f["split"] == "val" and labels["frames"][f["token"]]["lidarseg_path"])
    seg = frames / labels["frames"][val["token"]]["lidarseg_path"]
    np.save(seg, np.load(seg)[:-3])    # three labels short of its cloud
    (tmp_path / "index.json").write_text(json.dumps({**index, "dataroot": str(frames)}))
    split = tmp_path / "split.txt"
    write_split(split, [f["token"] for f in index["frames"] if f["split"] == "train"])
    monkeypatch.setattr(TaskSpec, "engine", lambda self, name=None: pytest.fail("the engine must not start"))
    rec = run_finetune(load_task("segmentation"), "native", check_config(waymo_set["cfg"]), "synthetic_waymo",
                       "scratch", 1.0, 0, tmp_path / "index.json", waymo_set["labels_path"], split, None,
                       tmp_path / "cell")
    assert rec["status"] == "failed" and str(seg) in rec["reason"] and "\n" not in rec["reason"]
    assert "does not belong to this cloud" in rec["reason"]
    seg.unlink()
    with pytest.raises(BenchError, match="val segmentation label file missing"):
        check_val_lidarseg({**index, "dataroot": str(frames)}, labels)


def test_a_failing_waymo_tool_gives_its_own_error_line(waymo_python, tmp_path):  # noqa: F811
    from xmbench.data.waymo.env import run_module
    from xmbench.errors import BenchError

    with pytest.raises(BenchError, match=r"waymo\.tf\.metrics .* failed: .*no-such-gt\.json: file not found"):
        run_module(waymo_python, "waymo.tf.metrics", ["--gt", tmp_path / "no-such-gt.json", "--pred",
                                                   tmp_path / "p.json", "--out", tmp_path / "m.json"])
    assert not (tmp_path / "m.json").exists()


def test_missing_waymo_environment_names_the_field_and_the_fix(tmp_path):
    from xmbench.data.waymo.env import waymo_python as find
    from xmbench.errors import BenchError

    with pytest.raises(BenchError, match=r"'waymo\.python': .*nope/python not found; run `bash envs/setup_waymo.sh`"):
        find({"waymo": {"python": str(tmp_path / "nope" / "python")}})


def test_run_datasets_is_the_switch_and_rejects_unknown_names():
    from xmbench.config import check_config
    from xmbench.errors import BenchError

    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    assert list(check_config(cfg)["datasets"]) == ["synthetic_nuscenes"]
    on = check_config({**cfg, "run_datasets": ["synthetic_nuscenes", "synthetic_waymo"]})
    assert list(on["datasets"]) == ["synthetic_nuscenes", "synthetic_waymo"]
    with pytest.raises(BenchError, match=r"field 'run_datasets': unknown dataset 'waymo'"):
        check_config({**cfg, "run_datasets": ["waymo"]})
    bad = {**cfg, "datasets": {**cfg["datasets"], "synthetic_waymo": {
        **cfg["datasets"]["synthetic_waymo"], "generator": {"keyframes_per_scene": 3}}}}
    with pytest.raises(BenchError, match=r"datasets\.synthetic_waymo\.generator"):
        check_config(bad)


@pytest.mark.parametrize("task", ["fusion_detection", "camera_detection"])
def test_image_half_tasks_on_waymo_lift_five_cameras_and_score_with_waymo_ops(task, waymo_set, waymo_python,
                                                                            tmp_path):  # noqa: F811
    """The image-half tasks read Waymo's five cameras through the same lift and are ranked by Waymo's
    own metric (mAPH at LEVEL_2), as LiDAR detection is."""
    from xmbench.finetune import run_finetune
    from xmbench.splits import write_split
    from xmbench.tasks import load_task

    train = sorted(f["token"] for f in waymo_set["index"]["frames"] if f["split"] == "train")
    write_split(tmp_path / "split.txt", train)
    cfg = {**waymo_set["cfg"], "waymo": {"python": str(waymo_python)}}
    rec = run_finetune(load_task(task), "native", cfg, "synthetic_waymo", "scratch", 1.0, 0,
                       waymo_set["index_path"], waymo_set["labels_path"], tmp_path / "split.txt", None,
                       tmp_path / "cell")
    assert rec["status"] == "ok", rec["reason"]
    assert rec["primary_metric"]["name"] == "mAPH_L2" and 0 <= rec["primary_metric"]["value"] <= 100
    assert "camera" in rec["metrics"]["modalities"]
    assert ("lidar" in rec["metrics"]["modalities"]) == (task == "fusion_detection")
