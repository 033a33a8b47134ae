"""OpenPCDet detection engine (the cluster engine): OpenPCDet trains and evaluates, we prepare and read.

The install is the user's (OpenPCDet cannot be built without CUDA). Its root comes from
``ctx.engine_cfg['root']`` when the harness passes engine settings, else from $OPENPCDET_ROOT;
``check_openpcdet(root)`` is what the DAG calls at start when this engine is selected. Settings:
``template`` (nuscenes_centerpoint | nuscenes_bevfusion | waymo_centerpoint; default: the dataset
format's CenterPoint), ``gpus``, ``workers``,
``python`` (the interpreter OpenPCDet is installed in; default $OPENPCDET_PYTHON, else the one
running this engine).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

from xmbench.atomic import sha256_file
from xmbench.detection.openpcdet import (_min_points, check_openpcdet, count_predictions, cycled_infos,
                                         db_class_counts, init_report, load_template, make_config, model_prefixes,
                                         nuscenes_infos, output_dir, read_results, run, run_tag, schedule_note,
                                         train_command, write_config, write_gt_database, write_pickle,
                                         write_waymo_gt_database as write_gt_waymo, write_waymo_sequence,
                                         write_waymo_split)
from xmbench.data.frames import index_format
from xmbench.errors import BenchError
from xmbench.finetune import FinetuneContext


def engine_settings(ctx: FinetuneContext) -> dict:
    cfg = dict(getattr(ctx, "engine_cfg", None) or {})
    cfg.setdefault("root", os.environ.get("OPENPCDET_ROOT"))
    cfg.setdefault("template", f"{index_format(ctx.index)}_centerpoint")   # the dataset format's CenterPoint
    cfg.setdefault("gpus", 1)
    cfg.setdefault("workers", 4)
    cfg.setdefault("python", os.environ.get("OPENPCDET_PYTHON") or sys.executable)
    return cfg


def _gt_sampling(template_cfg: dict) -> dict | None:
    augs = template_cfg["DATA_CONFIG"].get("DATA_AUGMENTOR", {}).get("AUG_CONFIG_LIST", [])
    return next((a for a in augs if a["NAME"] == "gt_sampling"), None)


def prepare(ctx: FinetuneContext, settings: dict) -> dict:
    """Everything OpenPCDet needs for this cell, under ctx.out_dir/openpcdet; returns the command."""
    from nuscenes.nuscenes import NuScenes

    root = Path(settings["root"]).expanduser().resolve()
    template = settings["template"]
    fmt = index_format(ctx.index)
    if template.split("_")[0] != fmt:
        raise BenchError(f"openpcdet.template '{template}' reads {template.split('_')[0]} datasets, not '{ctx.dataset}' "
                         f"of format {fmt}; set openpcdet.template to a {fmt}_* template")
    tcfg = load_template(template)
    if fmt == "waymo":
        return prepare_waymo(ctx, settings, root, template, tcfg)
    class_names = list(tcfg["CLASS_NAMES"])
    work = ctx.out_dir.resolve() / "openpcdet"
    version = ctx.index["version"]
    data_path = work / "data"
    link = data_path / version                  # OpenPCDet's root path is DATA_PATH/VERSION
    data_path.mkdir(parents=True, exist_ok=True)
    if not link.exists():
        link.symlink_to(Path(ctx.index["dataroot"]).resolve(), target_is_directory=True)
    nsweeps = int(ctx.model_cfg["lidar"]["nsweeps"])
    nusc = NuScenes(version=version, dataroot=str(link), verbose=False)
    with_cam = "bevfusion" in template
    train_infos = nuscenes_infos(nusc, ctx.train_tokens, nsweeps, with_cam=with_cam)
    val_tokens = [f["token"] for f in ctx.index["frames"] if f["split"] == "val"]
    val_infos = nuscenes_infos(nusc, val_tokens, nsweeps, with_cam=with_cam)
    present = {str(n) for info in train_infos for n in info["gt_names"]}
    iterations, batch = int(ctx.recipe["iterations"]), int(ctx.recipe["batch_size"])
    epoch_infos = cycled_infos(train_infos, iterations, batch, ctx.seed)
    info_train = write_pickle(epoch_infos, work / f"nuscenes_infos_{nsweeps}sweeps_train.pkl")
    info_val = write_pickle(val_infos, work / f"nuscenes_infos_{nsweeps}sweeps_val.pkl")
    db_info, counts = None, None
    gts = _gt_sampling(tcfg)
    if gts is not None:
        db_info = write_gt_database(link, train_infos, work, nsweeps, used_classes=class_names)
        import pickle

        counts = db_class_counts(pickle.loads(db_info.read_bytes()), class_names, _min_points(gts))
    gpus = int(settings["gpus"])
    camera_wh = None
    if with_cam:
        from PIL import Image

        with Image.open(link / next(iter(val_infos[0]["cams"].values()))["data_path"]) as im:
            camera_wh = im.size
    cfg = make_config(template, root, data_path, version, ctx.model_cfg, info_train, info_val, db_info,
                      ctx.recipe, 1, db_counts=counts, gpus=gpus, camera_wh=camera_wh)
    return _plan(ctx, settings, root, work, template, cfg, class_names, present, counts)


def _plan(ctx: FinetuneContext, settings: dict, root: Path, work: Path, template: str, cfg: dict, class_names,
          present, counts) -> dict:
    """Both formats' last step: the cell's tag, its written config and the train.py command."""
    ckpt_sha = sha256_file(ctx.init_checkpoint) if ctx.init_checkpoint else None
    tag = run_tag(ctx.dataset, ctx.method, ctx.fraction, ctx.seed, ctx.recipe, ckpt_sha,
                  getattr(ctx, "split_sha256", None) or ",".join(sorted(ctx.train_tokens)), template)
    cfg_file = write_config(cfg, work / "cfgs" / f"{template}.yaml")
    command = train_command(cfg_file, tag, int(ctx.recipe["batch_size"]), 1, int(settings["gpus"]),
                            ctx.init_checkpoint, int(settings["workers"]), python=settings["python"])
    return {"root": root, "work": work, "cfg_file": cfg_file, "tag": tag, "command": command, "epochs": 1,
            "output_dir": output_dir(root, cfg_file, tag), "class_names": class_names,
            "record": _record(ctx, template, tag, class_names, present, counts, cfg), "prefixes": model_prefixes(cfg)}


def _record(ctx, template, tag, class_names, present, counts, cfg) -> dict:
    groups = next((a.get("SAMPLE_GROUPS", []) for a in cfg["DATA_CONFIG"]["DATA_AUGMENTOR"]["AUG_CONFIG_LIST"]
                   if a["NAME"] == "gt_sampling"), [])
    return {"openpcdet_tag": tag, "openpcdet_epochs": 1, "openpcdet_template": template,
            "openpcdet_iterations": int(ctx.recipe["iterations"]), "openpcdet_batch_size": int(ctx.recipe["batch_size"]),
            "openpcdet_schedule": schedule_note(ctx.recipe),
            "split_missing_classes": [c for c in class_names if c not in present], "gt_database": counts,
            "gt_sample_groups": groups}


def prepare_waymo(ctx: FinetuneContext, settings: dict, root: Path, template: str, tcfg: dict) -> dict:
    """OpenPCDet's Waymo layout for the cell, from our converted frames: the split as one sequence
    (its infos cycled to the recipe's steps), the val frames as another, the split's database."""
    import pickle

    class_names = list(tcfg["CLASS_NAMES"])
    work = ctx.out_dir.resolve() / "openpcdet"
    data_path = work / "waymo"
    train_infos = write_waymo_sequence(ctx.index, ctx.labels, ctx.train_tokens, data_path, "xmb_train")
    val_tokens = [f["token"] for f in ctx.index["frames"] if f["split"] == "val"]
    val_infos = write_waymo_sequence(ctx.index, ctx.labels, val_tokens, data_path, "xmb_val")
    iterations, batch = int(ctx.recipe["iterations"]), int(ctx.recipe["batch_size"])
    write_waymo_split(data_path, "train", "xmb_train", cycled_infos(train_infos, iterations, batch, ctx.seed))
    write_waymo_split(data_path, "val", "xmb_val", val_infos)
    present = {str(n) for info in train_infos for n in info["annos"]["name"]}
    db_info, counts = None, None
    gts = _gt_sampling(tcfg)
    if gts is not None:
        db_info = write_gt_waymo(data_path, train_infos, work, class_names)
        counts = db_class_counts(pickle.loads(db_info.read_bytes()), class_names, _min_points(gts))
    gpus = int(settings["gpus"])
    cfg = make_config(template, root, data_path, ctx.index.get("version", ""), ctx.model_cfg, None, None, db_info,
                      ctx.recipe, 1, db_counts=counts, gpus=gpus)
    return {**_plan(ctx, settings, root, work, template, cfg, class_names, present, counts), "format": "waymo",
            "val_tokens": val_tokens}


WAYMO_EVAL_NOTE = ("scored by waymo_open_dataset's metric ops in the Waymo environment from OpenPCDet's predictions "
                   "(result.pkl), as native Waymo cells are")


def _finetune_waymo(ctx: FinetuneContext, plan: dict) -> dict:
    """OpenPCDet trains and predicts; its Waymo evaluation needs TensorFlow and waymo_open_dataset in
    OpenPCDet's environment, which the benchmark's main one cannot hold (TensorFlow 2.13 pins numpy
    1.23), so its predictions are scored by the same metric ops in the Waymo environment."""
    import pickle

    from xmbench.detection.openpcdet import check_load, find_result_pkl, latest_train_log, parse_load, waymo_detections
    from xmbench.data.waymo.detection_eval import evaluate_waymo

    try:
        run(plan["command"], plan["root"], plan["work"] / "openpcdet_stdout.log")
    except BenchError as err:
        if find_result_pkl(plan["output_dir"]) is None or not any(
                m in str(err) for m in ("tensorflow", "waymo_open_dataset")):
            raise
    log = latest_train_log(plan["output_dir"])
    if log is None:
        raise BenchError(f"{plan['output_dir']}: no train_*.log; OpenPCDet did not start (see openpcdet_stdout.log)")
    load = parse_load(log.read_text(errors="replace"), ctx.init_checkpoint) if ctx.init_checkpoint else None
    check_load(load, ctx.init_checkpoint is not None, log)
    result = find_result_pkl(plan["output_dir"])
    if result is None:
        raise BenchError(f"{plan['output_dir']}: no eval/eval_with_train/epoch_*/*/result.pkl; OpenPCDet's "
                         f"evaluation after training did not run (see {log})")
    val_frames = [f for f in ctx.index["frames"] if f["split"] == "val"]
    dets = waymo_detections(pickle.loads(result.read_bytes()), plan["val_tokens"], plan["class_names"])
    metrics = evaluate_waymo(ctx, val_frames, dets, plan["class_names"], plan["work"] / "eval")
    metrics.update({"openpcdet_log": str(log), "openpcdet_result": str(result), "evaluation": WAYMO_EVAL_NOTE})
    metrics.update(plan["record"])
    return {"metrics": metrics, "init": init_report(load, ctx.init_checkpoint, plan["prefixes"])}


def check_camera_collate(settings: dict) -> None:
    """OpenPCDet 0.6.0 (8cacccec) collates a camera item's ``img_process_infos`` with np.stack, which
    numpy >= 1.24 refuses (OpenPCDet issue #1538): with the benchmark's own interpreter (numpy 1.26)
    every BEVFusion cell would fail at its first batch, so the cell stops before it starts."""
    import numpy as np

    template = settings["template"]
    if "IMAGE_BACKBONE" not in load_template(template)["MODEL"]:
        return
    if Path(settings["python"]).resolve() != Path(sys.executable).resolve():
        return                                   # the user's own OpenPCDet environment: its numpy is its own
    if tuple(int(v) for v in np.__version__.split(".")[:2]) >= (1, 24):
        raise BenchError(f"openpcdet.template '{template}': OpenPCDet 0.6.0's camera collate (np.stack of "
                         f"img_process_infos, OpenPCDet issue #1538) fails with numpy {np.__version__}; set "
                         "$OPENPCDET_PYTHON to an OpenPCDet environment with numpy < 1.24 or whose OpenPCDet has "
                         "the fix, or use nuscenes_centerpoint")


def finetune(ctx: FinetuneContext) -> dict:
    settings = engine_settings(ctx)
    check_openpcdet(settings["root"])
    check_camera_collate(settings)
    plan = prepare(ctx, settings)
    (plan["work"] / "command.txt").write_text(f"cd {plan['root'] / 'tools'} && {' '.join(plan['command'])}\n")
    if plan.get("format") == "waymo":
        return _finetune_waymo(ctx, plan)
    empty = False
    try:
        run(plan["command"], plan["root"], plan["work"] / "openpcdet_stdout.log")
    except BenchError as err:
        # OpenPCDet hands an empty prediction set to the devkit, which raises; that run found
        # nothing and scores 0, every other failure is the cell's
        if "Invalid box type: None" not in str(err) or count_predictions(plan["output_dir"]) != 0:
            raise
        empty = True
    res = read_results(plan["output_dir"], ctx.init_checkpoint, plan["class_names"], allow_empty=empty)
    res["metrics"].update(plan["record"])
    return {"metrics": res["metrics"], "init": init_report(res["load"], ctx.init_checkpoint, plan["prefixes"])}
