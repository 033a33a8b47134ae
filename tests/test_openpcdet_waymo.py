"""OpenPCDet's own Waymo code (WaymoDataset, its database sampler, CenterPoint with the
waymo_centerpoint template) run in this process on what the adapter writes from our converted Waymo
frames: the processed-data layout, infos and ground-truth database of the split; then our
checkpoint loaded, training steps, its predictions on the val frames (result.pkl through its own
eval_one_epoch) scored by waymo_open_dataset's metric ops in the Waymo environment."""
import json
import math
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from openpcdet_cpu.harness import import_openpcdet, openpcdet_root, write_checkpoint
from test_waymo_env import waymo_python  # noqa: F401  (a fixture: fails when .venv-waymo is missing)

REPO = Path(__file__).resolve().parent.parent
CLASSES = ["Vehicle", "Pedestrian", "Cyclist"]


@pytest.fixture(scope="module")
def waymo_cell(waymo_python, tmp_path_factory, test_config):  # noqa: F811
    from xmbench.finetune import FinetuneContext
    from xmbench.splits import select
    from xmbench.tasks import load_task

    tmp = tmp_path_factory.mktemp("opc_waymo")
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    cfg.update(results_dir=str(tmp), run_datasets=["synthetic_waymo"])
    (tmp / "config.json").write_text(json.dumps(cfg))
    data, out = tmp / "data" / "synthetic_waymo", tmp / "synthetic_waymo"
    for args in (["generate", "--config", tmp / "config.json", "--dataset", "synthetic_waymo", "--out", data],
                 ["index", "--config", tmp / "config.json", "--dataset", "synthetic_waymo", "--root", data,
                  "--index", out / "index.json", "--labels", out / "labels.json"]):
        res = subprocess.run([sys.executable, "-m", "xmbench.cli", *map(str, args)], cwd=REPO, capture_output=True,
                             text=True)
        assert res.returncode == 0, res.stderr[-3000:]
    index = json.loads((out / "index.json").read_text())
    labels = json.loads((out / "labels.json").read_text())
    root = openpcdet_root(tmp / "OpenPCDet")
    ckpt = write_checkpoint(tmp / "checkpoint.pth", test_config["model"])
    tokens = select([f for f in index["frames"] if f["split"] == "train"], 1.0, 0)
    recipe = load_task("detection").recipe("tiny", 1.0)
    ctx = FinetuneContext("synthetic_waymo", "detection", "crosspoint", 1.0, 0, recipe, test_config["model"], index,
                          labels, tokens, ckpt, tmp / "cell", torch.device("cpu"), waymo_python=str(waymo_python))
    _, engine = load_task("detection").engine("openpcdet")
    plan = engine.prepare(ctx, {**engine.engine_settings(ctx), "root": str(root), "workers": 0,
                                "template": "waymo_centerpoint"})
    import_openpcdet(root)
    return {"ctx": ctx, "plan": plan, "ckpt": ckpt, "tmp": tmp}


@pytest.fixture(scope="module")
def waymo_run(waymo_cell):
    from easydict import EasyDict
    from pcdet.config import cfg_from_yaml_file
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, model_fn_decorator
    from pcdet.utils import common_utils
    from train_utils.optimization import build_optimizer, build_scheduler

    cfg = EasyDict()
    cfg_from_yaml_file(str(waymo_cell["plan"]["cfg_file"]), cfg)
    cfg.LOCAL_RANK = 0
    log = waymo_cell["tmp"] / "waymo.log"
    logger = common_utils.create_logger(log, rank=0)
    recipe = waymo_cell["ctx"].recipe
    train_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=recipe["batch_size"],
                                            dist=False, workers=0, logger=logger, training=True, total_epochs=1)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    model.load_params_from_file(filename=str(waymo_cell["ckpt"]), logger=logger, to_cpu=True)
    opt = build_optimizer(model, cfg.OPTIMIZATION)
    sched, _ = build_scheduler(opt, total_iters_each_epoch=len(loader), total_epochs=1, last_epoch=-1,
                               optim_cfg=cfg.OPTIMIZATION)
    fn, losses = model_fn_decorator(), []
    model.train()
    for step, batch in enumerate(loader):
        if step == 2:
            break
        sched.step(step, 0)
        opt.zero_grad()
        loss, _, _ = fn(model, batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"cfg": cfg, "train_set": train_set, "loader": loader, "model": model, "losses": losses, "log": log,
            "logger": logger}


def test_waymo_dataset_and_sampler_read_the_adapters_layout(waymo_cell, waymo_run):
    ds, ctx = waymo_run["train_set"], waymo_cell["ctx"]
    assert type(ds).__name__ == "WaymoDataset"
    assert len(waymo_run["loader"]) == ctx.recipe["iterations"]
    assert {i["frame_id"] for i in ds.infos} == set(ctx.train_tokens)
    item = ds[0]
    assert item["voxels"].shape[-1] == 5 and item["gt_boxes"].shape[1] == 8   # 7 + class
    # the points OpenPCDet reads are our converted frame's, with its tanh on the intensity
    from xmbench.data.frames import load_points

    frame = next(f for f in ctx.index["frames"] if f["token"] == ds.infos[0]["frame_id"])
    ours, _ = load_points(Path(ctx.index["dataroot"]), frame, "waymo")
    theirs = ds.get_lidar(ds.infos[0]["point_cloud"]["lidar_sequence"], ds.infos[0]["point_cloud"]["sample_idx"])
    np.testing.assert_allclose(theirs, ours, atol=1e-6)
    sampler = ds.data_augmentor.data_augmentor_queue[0]
    assert set(sampler.db_infos) == set(CLASSES)
    assert set(sampler.sample_groups) == {c for c, n in waymo_cell["plan"]["record"]["gt_database"].items() if n > 0}
    assert sampler.sample_groups   # the database holds objects to paste


def test_waymo_checkpoint_load_and_training_steps(waymo_cell, waymo_run):
    from xmbench.detection.openpcdet import init_report, parse_load

    load = parse_load(waymo_run["log"].read_text(), waymo_cell["ckpt"])
    assert load["loaded"] == 142 and load["backbone_missed"] == 0
    assert init_report(load, waymo_cell["ckpt"])["backbone_3d"] == {"loaded": 142, "total": 142, "pretrained": True}
    assert len(waymo_run["losses"]) == 2 and all(math.isfinite(v) and v > 0 for v in waymo_run["losses"])


def test_waymo_predictions_scored_by_waymo_metric_ops(waymo_cell, waymo_run):
    """OpenPCDet's eval_one_epoch writes result.pkl, then its Waymo evaluation needs TensorFlow,
    which this environment cannot hold; the adapter scores result.pkl with Waymo's own ops."""
    import argparse

    from eval_utils import eval_utils
    from pcdet.datasets import build_dataloader

    from xmbench.detection.openpcdet import find_result_pkl, waymo_detections
    from xmbench.data.waymo.detection_eval import evaluate_waymo

    cfg = waymo_run["cfg"]
    test_set, test_loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False,
                                                workers=0, logger=waymo_run["logger"], training=False)
    out = waymo_cell["tmp"] / "output" / "eval" / "eval_with_train" / "epoch_1" / "val"
    args = argparse.Namespace(save_to_file=False, infer_time=False)
    with pytest.raises(ImportError, match="tensorflow|waymo_open_dataset"):
        eval_utils.eval_one_epoch(cfg, args, waymo_run["model"], test_loader, 1, waymo_run["logger"], result_dir=out)
    result = find_result_pkl(waymo_cell["tmp"] / "output")
    assert result is not None
    ctx, plan = waymo_cell["ctx"], waymo_cell["plan"]
    dets = waymo_detections(pickle.loads(result.read_bytes()), plan["val_tokens"], CLASSES)
    assert len(dets) == len(plan["val_tokens"]) and sum(len(d["boxes"]) for d in dets) > 0
    val = [f for f in ctx.index["frames"] if f["split"] == "val"]
    m = evaluate_waymo(ctx, val, dets, CLASSES, waymo_cell["tmp"] / "eval")
    assert 0.0 <= m["mAPH_L2"] <= 1.0 and m["num_val_gt_boxes"] > 0
    assert m["num_pred_boxes"] == sum(len(d["boxes"]) for d in dets)
    # ground truth as predictions through the same conversion scores 1 (the box convention is exact)
    gt_annos = [{"frame_id": i["frame_id"], "name": i["annos"]["name"], "score": np.ones(len(i["annos"]["name"])),
                 "boxes_lidar": i["annos"]["gt_boxes_lidar"]} for i in test_set.infos]
    keep = [{**a, "name": a["name"][np.isin(a["name"], CLASSES)], "score": a["score"][np.isin(a["name"], CLASSES)],
             "boxes_lidar": a["boxes_lidar"][np.isin(a["name"], CLASSES)]} for a in gt_annos]
    perfect = evaluate_waymo(ctx, val, waymo_detections(keep, plan["val_tokens"], CLASSES), CLASSES,
                             waymo_cell["tmp"] / "eval_gt")
    assert perfect["mAP_L1"] == pytest.approx(1.0, abs=1e-6)


def test_waymo_cell_through_train_py(waymo_cell, tmp_path):
    """The engine's Waymo path end to end: train.py trains and predicts, its own evaluation stops at
    the missing TensorFlow, and the cell is scored from its result.pkl by Waymo's metric ops."""
    import os

    from openpcdet_cpu.harness import subprocess_env
    from xmbench.tasks import load_task

    import dataclasses

    _, engine = load_task("detection").engine("openpcdet")
    ctx = dataclasses.replace(waymo_cell["ctx"], out_dir=tmp_path / "cell", engine_cfg={
        "root": str(waymo_cell["plan"]["root"]), "workers": 0, "template": "waymo_centerpoint"})
    old = dict(os.environ)
    os.environ.update(subprocess_env())
    try:
        res = engine.finetune(ctx)
    finally:
        os.environ.clear()
        os.environ.update(old)
    m = res["metrics"]
    assert res["init"]["backbone_3d"] == {"loaded": 142, "total": 142, "pretrained": True}
    assert 0.0 <= m["mAPH_L2"] <= 1.0 and "metric ops" in m["evaluation"]
    assert m["openpcdet_iterations"] == ctx.recipe["iterations"] and m["openpcdet_template"] == "waymo_centerpoint"
    log = open(m["openpcdet_log"]).read()
    assert f"[   {ctx.recipe['iterations'] - 1}/{ctx.recipe['iterations']}" in log
    # the real traceback of OpenPCDet's stopped Waymo evaluation, read as the engine reads failures
    from xmbench.detection.openpcdet import error_line

    out = (tmp_path / "cell" / "openpcdet" / "openpcdet_stdout.log").read_text()
    assert error_line(out) == "ModuleNotFoundError: No module named 'tensorflow'"
