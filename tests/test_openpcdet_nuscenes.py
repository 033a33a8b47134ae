"""OpenPCDet's own code (the shared, unmodified copy, CPU stand-ins for its compiled ops) run on
what the adapter writes for a nuScenes-format split: config, infos, ground-truth database, our
checkpoint; through its dataset, network, checkpoint loading, training steps, predictions and
nuScenes evaluation, in this process."""
import json
import math
import pickle

import numpy as np
import pytest
import torch

from openpcdet_cpu.harness import import_openpcdet, openpcdet_root, write_checkpoint

CLASSES = ["car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle", "bicycle",
           "pedestrian", "traffic_cone"]


def make_context(tiny_index, test_config, out_dir, checkpoint, fraction=0.5, seed=0):
    from xmbench.finetune import FinetuneContext
    from xmbench.splits import select
    from xmbench.tasks import load_task

    index = json.loads(tiny_index["index"].read_text())
    labels = json.loads(tiny_index["labels"].read_text())
    tokens = select([f for f in index["frames"] if f["split"] == "train"], fraction, seed)
    recipe = load_task("detection").recipe(test_config["datasets"]["synthetic_nuscenes"]["recipe_profile"], fraction)
    return FinetuneContext("synthetic_nuscenes", "detection", "crosspoint", fraction, seed, recipe,
                           test_config["model"], index, labels, tokens, checkpoint, out_dir, torch.device("cpu"))


@pytest.fixture(scope="module")
def cell(tmp_path_factory, tiny_index, test_config):
    """The engine's prepared cell (prepare() writes config, infos and database) and the install."""
    from xmbench.tasks import load_task

    tmp = tmp_path_factory.mktemp("opc_nus")
    root = openpcdet_root(tmp / "OpenPCDet")
    ckpt = write_checkpoint(tmp / "checkpoint.pth", test_config["model"])
    ctx = make_context(tiny_index, test_config, tmp / "cell", ckpt)
    _, engine = load_task("detection").engine("openpcdet")
    plan = engine.prepare(ctx, {**engine.engine_settings(ctx), "root": str(root), "workers": 0})
    import_openpcdet(root)
    return {"root": root, "ckpt": ckpt, "ctx": ctx, "plan": plan, "tmp": tmp}


def _cfg(path):
    from easydict import EasyDict
    from pcdet.config import cfg_from_yaml_file

    cfg = EasyDict()
    cfg_from_yaml_file(str(path), cfg)
    cfg.LOCAL_RANK = 0
    return cfg


def _logger(path):
    from pcdet.utils import common_utils

    return common_utils.create_logger(path, rank=0)


@pytest.fixture(scope="module")
def trained(cell):
    """OpenPCDet's dataloader, network, checkpoint load and a few training steps, once."""
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, model_fn_decorator
    from train_utils.optimization import build_optimizer, build_scheduler

    cfg = _cfg(cell["plan"]["cfg_file"])
    log_path = cell["tmp"] / "inprocess.log"
    logger = _logger(log_path)
    recipe = cell["ctx"].recipe
    train_set, train_loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=recipe["batch_size"],
                                                  dist=False, workers=0, logger=logger, training=True,
                                                  total_epochs=1, seed=0)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    model.load_params_from_file(filename=str(cell["ckpt"]), logger=logger, to_cpu=True)
    after_load = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("backbone_3d.")}
    optimizer = build_optimizer(model, cfg.OPTIMIZATION)
    scheduler, warm = build_scheduler(optimizer, total_iters_each_epoch=len(train_loader), total_epochs=1,
                                      last_epoch=-1, optim_cfg=cfg.OPTIMIZATION)
    model_fn = model_fn_decorator()
    losses, lrs = [], []
    model.train()
    for step, batch in enumerate(train_loader):
        if step == 3:
            break
        scheduler.step(step, 0)
        lrs.append(float(optimizer.lr))
        optimizer.zero_grad()
        loss, tb_dict, _ = model_fn(model, batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.OPTIMIZATION.GRAD_NORM_CLIP)
        optimizer.step()
        losses.append(float(loss.detach()))
    return {"cfg": cfg, "train_set": train_set, "train_loader": train_loader, "model": model, "losses": losses,
            "lrs": lrs, "log": log_path, "after_load": after_load, "optimizer": optimizer, "scheduler": scheduler, "warm": warm,
            "logger": logger}


def test_config_merges_and_the_split_lacking_classes_builds_openpcdets_sampler(cell, trained):
    """The split has no construction_vehicle and no trailer: OpenPCDet's DataBaseSampler still builds
    (every class is a database key) and samples only the classes the database holds."""
    from pcdet.datasets.augmentor.database_sampler import DataBaseSampler

    rec = cell["plan"]["record"]
    assert {"construction_vehicle", "trailer"} <= set(rec["split_missing_classes"])
    cfg = trained["cfg"]
    assert list(cfg.CLASS_NAMES) == CLASSES and cfg.DATA_CONFIG.BALANCED_RESAMPLING is False
    db = pickle.loads(open(cfg.DATA_CONFIG.DATA_AUGMENTOR.AUG_CONFIG_LIST[0].DB_INFO_PATH[0], "rb").read())
    assert set(db) == set(CLASSES) and db["construction_vehicle"] == [] and db["trailer"] == []
    samplers = [a for a in trained["train_set"].data_augmentor.data_augmentor_queue
                if isinstance(getattr(a, "__self__", a), DataBaseSampler)]
    sampler = getattr(samplers[0], "__self__", samplers[0])
    assert set(sampler.db_infos) == set(CLASSES)
    assert set(sampler.sample_groups) == {c for c, n in rec["gt_database"].items() if n > 0}
    assert "construction_vehicle" not in sampler.sample_groups and "car" in sampler.sample_groups
    assert {g.split(":")[0] for g in rec["gt_sample_groups"]} == set(sampler.sample_groups)


def test_openpcdets_batches_hold_voxels_and_pasted_objects(trained):
    ds = trained["train_set"]
    infos = ds.infos
    grew = 0
    for i in range(4):
        item = ds[i]
        assert item["voxels"].shape[1:] == (10, 5) and len(item["voxel_coords"]) > 100
        assert item["gt_boxes"].shape[1] == 10   # 7 + vx, vy + class
        own = int(((infos[i]["num_lidar_pts"] > 0)).sum())
        grew += int(len(item["gt_boxes"]) > own)
        assert set(item["gt_boxes"][:, -1].astype(int)) <= set(range(1, 11))
    assert grew > 0   # gt-sampling pasted objects into some frame
    batch = next(iter(trained["train_loader"]))
    assert batch["batch_size"] == 2 and batch["voxel_coords"][:, 0].max() == 1


def test_our_checkpoint_loads_every_backbone_tensor_as_our_parser_reads_it(cell, trained):
    from xmbench.detection.openpcdet import check_load, parse_load

    load = parse_load(trained["log"].read_text(), cell["ckpt"])
    assert load is not None and load["loaded"] == 142 and load["backbone_missed"] == 0
    assert load["total"] == len(trained["model"].state_dict())
    check_load(load, True, trained["log"])
    ours = torch.load(cell["ckpt"], weights_only=False)["model_state"]
    assert set(trained["after_load"]) == set(ours)
    assert all(torch.equal(trained["after_load"][k], v) for k, v in ours.items())


def test_training_steps_have_finite_loss(trained):
    assert len(trained["losses"]) == 3 and all(math.isfinite(v) and v > 0 for v in trained["losses"])


def test_openpcdets_dataloader_and_scheduler_follow_the_native_recipe(cell, trained):
    """One epoch of OpenPCDet's loader is the recipe's step count at its batch, with no
    resampling; the one-cycle schedule starts where the native warm-up starts, peaks at the
    recipe's lr at the native peak step and decays to ~0 like the native cosine."""
    from xmbench.detection.openpcdet import warmup_steps

    recipe = cell["ctx"].recipe
    loader = trained["train_loader"]
    assert len(loader) == recipe["iterations"] and loader.batch_size == recipe["batch_size"]
    assert len(loader.dataset) == recipe["iterations"] * recipe["batch_size"]
    n = len(cell["ctx"].train_tokens)
    counts = np.bincount([cell["ctx"].train_tokens.index(i["token"]) for i in loader.dataset.infos], minlength=n)
    assert counts.max() - counts.min() <= 1   # every split frame equally often, as the native batch order
    assert trained["warm"] is None
    cfg = trained["cfg"]
    for r in (recipe, {**recipe, "iterations": 354, "warmup_fraction": 0.05}):
        ours, theirs = _openpcdet_lrs(trained["model"], cfg, r), _native_lrs(r)
        w, lr = warmup_steps(r), r["optimizer"]["lr"]
        assert ours[0] == pytest.approx(theirs[0]) == pytest.approx(lr / w)
        assert max(ours) == pytest.approx(lr) == pytest.approx(max(theirs))
        assert ours[w] == pytest.approx(lr) and theirs[w] == pytest.approx(lr)
        np.testing.assert_allclose(ours[w:], theirs[w:], rtol=1e-3, atol=lr * 1e-4)
        assert max(abs(a - b) for a, b in zip(ours[:w], theirs[:w])) < 0.25 * lr   # half-cosine vs linear ramp
    from train_utils.optimization import build_optimizer

    opt = build_optimizer(trained["model"], cfg.OPTIMIZATION)
    assert opt.wd == recipe["optimizer"]["weight_decay"] and opt.true_wd
    assert cfg.OPTIMIZATION.BETAS == [0.9, 0.999] and cfg.OPTIMIZATION.MOMS == [0.9, 0.9]
    ours = _openpcdet_lrs(trained["model"], cfg, recipe)
    assert trained["lrs"] == pytest.approx(ours[:3])


def _openpcdet_lrs(model, cfg, recipe):
    """The lr of every step of OpenPCDet's own optimizer and scheduler for the schedule the adapter
    writes for this recipe."""
    import copy

    from train_utils.optimization import build_optimizer, build_scheduler

    from xmbench.detection.openpcdet import schedule

    optim_cfg = copy.deepcopy(cfg.OPTIMIZATION)
    optim_cfg.update(schedule(recipe))
    opt = build_optimizer(model, optim_cfg)
    sched, _ = build_scheduler(opt, total_iters_each_epoch=recipe["iterations"], total_epochs=1, last_epoch=-1,
                               optim_cfg=optim_cfg)
    out = []
    for s in range(recipe["iterations"]):
        sched.step(s, 0)
        out.append(float(opt.lr))
    return out


def _native_lrs(recipe):
    from xmbench.finetune import warmup_cosine

    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=recipe["optimizer"]["lr"])
    sched = warmup_cosine(opt, recipe)
    out = []
    for _ in range(recipe["iterations"]):
        out.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    return out


def _evaluate(cell, trained, out, score_thresh=None):
    import argparse

    from eval_utils import eval_utils
    from pcdet.datasets import build_dataloader

    cfg = trained["cfg"]
    if score_thresh is not None:
        cfg.MODEL.DENSE_HEAD.POST_PROCESSING.SCORE_THRESH = score_thresh
    test_set, test_loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False,
                                                workers=0, logger=trained["logger"], training=False)
    args = argparse.Namespace(save_to_file=False, infer_time=False)
    try:
        return test_set, eval_utils.eval_one_epoch(cfg, args, trained["model"], test_loader, 1, trained["logger"],
                                                   dist_test=False, result_dir=out)
    finally:
        cfg.MODEL.DENSE_HEAD.POST_PROCESSING.SCORE_THRESH = 0.05


def test_predictions_on_val_frames_scored_by_openpcdets_nuscenes_evaluation(cell, trained):
    from xmbench.data.nuscenes.detection_eval import summary_to_metrics

    out = cell["tmp"] / "eval_run"
    test_set, ret = _evaluate(cell, trained, out)
    val = [f["token"] for f in cell["ctx"].index["frames"] if f["split"] == "val"]
    assert [i["token"] for i in test_set.infos] == val
    det = pickle.loads((out / "result.pkl").read_bytes())
    assert len(det) == len(val) and sum(len(d["name"]) for d in det) > 0
    summary = json.loads((out / "final_result" / "data" / "metrics_summary.json").read_text())
    m = summary_to_metrics(summary)
    assert 0.0 <= m["mean_ap"] <= 1.0 and set(m["ap_per_class"]) == set(CLASSES)
    assert ret["mAP"] == pytest.approx(summary["mean_ap"], abs=1e-6) if "mAP" in ret else True


def test_a_model_that_predicts_nothing_scores_zero_with_a_note(cell, trained, tmp_path):
    """OpenPCDet's nuScenes evaluation hands the devkit an empty set, which raises; the adapter
    reads that run as 0 with a note, as the native engine's evaluation does."""
    from xmbench.detection import openpcdet as opc
    from xmbench.data.nuscenes.detection_eval import evaluate, submission

    out = tmp_path / "output" / "eval" / "eval_with_train" / "epoch_1" / "val"
    with pytest.raises(Exception, match="Invalid box type: None"):
        _evaluate(cell, trained, out, score_thresh=1.01)
    assert opc.count_predictions(tmp_path / "output") == 0
    (tmp_path / "output" / "train_1.log").write_text(trained["log"].read_text())
    res = opc.read_results(tmp_path / "output", cell["ckpt"], CLASSES, allow_empty=True)
    m = res["metrics"]
    assert m["mean_ap"] == 0.0 and m["nds"] == 0.0 and "no box" in m["note"] and m["prediction_empty"]
    assert set(m["ap_per_class"]) == set(CLASSES) and m["mATE"] == 1.0
    # the native engine's evaluation of the same nothing
    index = cell["ctx"].index
    val = [f for f in index["frames"] if f["split"] == "val"]
    empty = [{"boxes": np.zeros((0, 9)), "scores": np.zeros(0), "labels": np.zeros(0, int)} for _ in val]
    native = evaluate(index, submission(val, empty, CLASSES, {}), tmp_path / "native")
    assert native["mean_ap"] == 0.0 and native["nds"] == 0.0 and "no box" in native["note"]
    assert native["num_val_gt_boxes"] > 0 and native["classes_in_val_gt"]
