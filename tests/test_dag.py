"""The whole DAG through Snakemake on the tests' tiny config, and its refusals of bad input."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from repo_copy import copy_repo

REPO = Path(__file__).resolve().parent.parent
SNAKEMAKE = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--configfile", ".test/config.yaml"]


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    """A copy of the repository: the tests add method folders, and Snakemake writes .snakemake/ there."""
    return copy_repo(tmp_path_factory.mktemp("dag_repo") / "repo")


def _run(repo, extra, **kw):
    return subprocess.run(SNAKEMAKE + extra, cwd=repo, capture_output=True, text=True, **kw)


METHODS = ["scratch", "crosspoint", "zz_scaffolded", "zz_broken"]
DATASETS = ["synthetic_nuscenes", "synthetic_waymo"]  # Waymo is switched on as a user would, by run_datasets


@pytest.fixture(scope="module")
def dag_results(tmp_path_factory, repo):
    """The DAG with two throwaway method folders: one scaffolded by `new-method` (a working method the
    DAG must pick up by its folder alone) and one whose method.py raises (its cells must fail alone).

    The tests' config is strict, so the broken method makes the exit status 1, and the end-of-run
    summary must name it and nothing else."""
    results = tmp_path_factory.mktemp("dag") / "results"
    for name in METHODS[2:]:
        subprocess.run([sys.executable, "-m", "xmbench.cli", "new-method", name], cwd=repo, check=True,
                       capture_output=True)
    broken = repo / "methods" / "zz_broken" / "method.py"
    broken.write_text(broken.read_text() + "\n\ndef _broken(self, batch):\n"
                      "    raise RuntimeError('deliberately broken for the test')\n\n\nZzBroken.forward = _broken\n")
    res = _run(repo, ["--config", f"results_dir={results}", f"methods=[{', '.join(METHODS)}]",
                      f"run_datasets=[{', '.join(DATASETS)}]"], timeout=1800)
    assert res.returncode == 1, res.stderr[-4000:]
    block = res.stderr[res.stderr.index("xmbench: "):].splitlines()
    failed = [ln for ln in block[1:] if ln.startswith("  ")]
    assert failed and all("zz_broken" in ln for ln in failed), "\n".join(block)
    return results


def test_leaderboard_has_a_row_per_cell_with_devkit_miou(dag_results, test_config):
    everything = pd.read_csv(dag_results / "leaderboard.csv")
    assert len(everything) == (len(METHODS) * len(test_config["fractions"]) * len(test_config["seeds"])
                               * len(test_config["tasks"]) * len(DATASETS))
    assert set(everything["task"]) == set(test_config["tasks"])
    assert set(everything["dataset"]) == set(DATASETS)
    full = everything[(everything["task"] == "segmentation") & (everything["dataset"] == "synthetic_nuscenes")]
    assert set(full["method"]) == set(METHODS)
    broken = full[full["method"] == "zz_broken"]
    assert (broken["status"] == "failed").all()
    assert broken["reason"].str.contains("pretraining of 'zz_broken' failed: RuntimeError: deliberately broken").all()
    board = full[full["method"] != "zz_broken"]
    assert set(board["fraction"]) == set(test_config["fractions"])
    assert (board["status"] == "ok").all(), board[["method", "fraction", "reason"]]
    assert board["primary_metric"].eq("mIoU").all()
    assert board["primary_value"].between(0, 100).all() and board["primary_value"].gt(0).all()
    for col in ("metrics.iou_per_class.car", "metrics.iou_per_class.driveable_surface", "cost.wall_seconds",
                "provenance.split_sha256", "provenance.git_commit", "recipe_hash"):
        assert col in board.columns
    table = pd.read_csv(dag_results / "leaderboard_synthetic_nuscenes_segmentation.csv")
    assert set(table["method"]) == set(METHODS)
    assert {"50%", "100%", "n@50%", "n@100%"} <= set(table.columns)
    png = dag_results / "plots" / "label_efficiency_synthetic_nuscenes_segmentation.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_detection_cells_are_scored_by_the_devkit(dag_results, test_config):
    board = pd.read_csv(dag_results / "leaderboard.csv")
    board = board[board["dataset"] == "synthetic_nuscenes"]
    det = board[(board["task"] == "detection") & (board["method"] != "zz_broken")]
    assert len(det) == 3 * len(test_config["fractions"]) and (det["status"] == "ok").all(), det["reason"]
    assert det["primary_metric"].eq("mAP").all() and det["primary_value"].between(0, 100).all()
    assert det["metrics.nds"].between(0, 1).all()
    for col in ("metrics.ap_per_class.car", "metrics.mATE", "metrics.ap_per_class_per_distance.car.2.0"):
        assert col in det.columns
    table = pd.read_csv(dag_results / "leaderboard_synthetic_nuscenes_detection.csv")
    assert set(table["method"]) == set(METHODS)
    broken = board[(board["task"] == "detection") & (board["method"] == "zz_broken")]
    assert (broken["status"] == "failed").all()


def test_waymo_cells_run_both_tasks_scored_by_waymo_metric_ops(dag_results, test_config):
    board = pd.read_csv(dag_results / "leaderboard.csv")
    wm = board[(board["dataset"] == "synthetic_waymo") & (board["method"] != "zz_broken")]
    assert len(wm) == 3 * len(test_config["fractions"]) * 2 and (wm["status"] == "ok").all(), wm["reason"]
    det, seg = wm[wm["task"] == "detection"], wm[wm["task"] == "segmentation"]
    assert det["primary_metric"].eq("mAPH_L2").all() and seg["primary_metric"].eq("mIoU").all()
    for col in ("metrics.mAP_L1", "metrics.mAPH_L1", "metrics.mAP_L2"):
        assert det[col].between(0, 1).all(), col
    assert ((det["primary_value"] - 100 * det["metrics.mAPH_L2"]).abs() < 1e-9).all()
    assert {"metrics.aph_l2_per_class.Vehicle", "metrics.ap_l1_per_class.Pedestrian"} <= set(det.columns)
    assert det["metrics.num_val_gt_boxes"].gt(0).all()
    # segmentation in Waymo's own 23 classes, scored on the labelled val frames only
    assert {"metrics.iou_per_class.TYPE_CAR", "metrics.iou_per_class.TYPE_ROAD"} <= set(seg.columns)
    assert seg["primary_value"].gt(0).all() and seg["metrics.num_val_frames"].gt(0).all()
    for task in ("segmentation", "detection"):
        table = pd.read_csv(dag_results / f"leaderboard_synthetic_waymo_{task}.csv")
        assert set(table["method"]) == set(METHODS)
    # pretraining ran on the Waymo frames, and its checkpoint initialised the Waymo cells
    rec = json.loads((dag_results / "synthetic_waymo" / "pretrain" / "crosspoint" / "pretrain.json").read_text())
    assert rec["status"] == "ok" and rec["dataset"] == "synthetic_waymo"
    runs = [json.loads(p.read_text()) for p in dag_results.glob("synthetic_waymo/*/*/crosspoint/*/*/metrics.json")]
    assert len(runs) == 4 and all(r["init"]["backbone_3d"]["loaded"] == r["init"]["backbone_3d"]["total"] > 0 for r in runs)
    assert all(r["provenance"]["checkpoint_sha256"] for r in runs)


def test_recipe_and_split_identical_across_methods(dag_results, test_config):
    runs = [json.loads(p.read_text()) for p in dag_results.glob("synthetic_nuscenes/segmentation/*/*/*/*/metrics.json")]
    assert len(runs) == 8
    runs = [r for r in runs if r["status"] == "ok"]
    assert len(runs) == 6
    for frac in test_config["fractions"]:
        cell = [r for r in runs if r["fraction"] == frac]
        assert len({r["recipe_hash"] for r in cell}) == 1
        assert len({json.dumps(r["recipe"], sort_keys=True) for r in cell}) == 1
        assert len({r["provenance"]["split_sha256"] for r in cell}) == 1
    pretrained = [r for r in runs if r["method"] in ("crosspoint", "zz_scaffolded")]
    assert all(r["provenance"]["checkpoint_sha256"] and r["init"]["backbone_3d"]["loaded"] == r["init"]["backbone_3d"]["total"] for r in pretrained)
    assert all(r["provenance"]["checkpoint_sha256"] is None for r in runs if r["method"] == "scratch")


def test_benchmark_records_per_rule(dag_results):
    for rule in ("generate_dataset", "build_index", "label_split", "pretrain", "finetune", "leaderboard"):
        files = list((dag_results / "benchmarks" / rule).glob("*.tsv"))
        assert files, rule
        assert "max_rss" in files[0].read_text().splitlines()[0]


def test_unknown_method_in_config_stops_at_start(tmp_path, repo):
    res = _run(repo, ["-n", "--config", f"results_dir={tmp_path}/r", "methods=[scratch, nosuchmethod]"], timeout=300)
    assert res.returncode != 0
    assert "error: config" in res.stderr and "unknown method 'nosuchmethod'" in res.stderr
    assert not (tmp_path / "r").exists()


def test_invalid_method_yaml_stops_at_start_naming_the_field(tmp_path, repo):
    folder = repo / "methods" / "zz_invalid_for_test"
    folder.mkdir()
    spec = yaml.safe_load((repo / "methods" / "crosspoint" / "method.yaml").read_text())
    spec["name"] = "zz_invalid_for_test"
    spec["optimizer"]["lr"] = {"value": 0.1}
    (folder / "method.yaml").write_text(yaml.safe_dump(spec))
    res = _run(repo, ["-n", "--config", f"results_dir={tmp_path}/r", "methods=[scratch, zz_invalid_for_test]"],
               timeout=300)
    assert res.returncode != 0
    assert "methods/zz_invalid_for_test/method.yaml: field 'optimizer.lr'" in res.stderr
    assert not (tmp_path / "r").exists()


def test_openpcdet_engine_without_openpcdet_stops_at_start(tmp_path, repo):
    res = _run(repo, ["-n", "--config", f"results_dir={tmp_path}/r", "tasks=[segmentation, detection]",
                "engines={detection: openpcdet}", f"openpcdet={{root: {tmp_path}/no-openpcdet}}"], timeout=300)
    assert res.returncode != 0
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert line and "openpcdet" in line[0].lower() and "no-openpcdet" in line[0]
    assert not (tmp_path / "r").exists()


def test_an_engine_without_a_model_for_the_format_stops_at_start(tmp_path, repo):
    """OpenPCDet has no Waymo BEVFusion: fusion_detection's openpcdet engine on a Waymo dataset is
    refused in one line naming the field and the per-format way out."""
    res = _run(repo, ["-n", "--config", f"results_dir={tmp_path}/r", "run_datasets=[synthetic_waymo]",
                "tasks=[fusion_detection]", "engines={fusion_detection: openpcdet}"], timeout=300)
    assert res.returncode != 0
    line = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert line and "'engines.fusion_detection'" in line[0] and "synthetic_waymo" in line[0]
    assert "{fusion_detection: {waymo: native}}" in line[0]
    assert not (tmp_path / "r").exists()
