"""OpenPCDet detection engine (the cluster engine): OpenPCDet trains and evaluates, we prepare and read.

The install is the user's (OpenPCDet cannot be built without CUDA). Its root comes from
``ctx.engine_cfg['root']`` when the harness passes engine settings, else from $OPENPCDET_ROOT;
``check_openpcdet(root)`` is what the DAG calls at start when this engine is selected. Settings:
``template`` (nuscenes_centerpoint | nuscenes_bevfusion | waymo_centerpoint), ``gpus``, ``workers``,
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
                                         train_command, write_config, write_gt_database, write_pickle)
from xmbench.errors import BenchError
from xmbench.finetune import FinetuneContext


def engine_settings(ctx: FinetuneContext) -> dict:
    cfg = dict(getattr(ctx, "engine_cfg", None) or {})
    cfg.setdefault("root", os.environ.get("OPENPCDET_ROOT"))
    cfg.setdefault("template", "nuscenes_centerpoint")
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
    if not template.startswith("nuscenes"):
        raise BenchError(f"openpcdet: template '{template}' needs Waymo subset infos, which the adapter does not "
                         "write yet; use a nuscenes_* template")
    tcfg = load_template(template)
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
    missing = [c for c in class_names if c not in present]
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
    cfg = make_config(template, root, data_path, version, ctx.model_cfg, info_train, info_val, db_info,
                      ctx.recipe, 1, db_counts=counts, gpus=gpus)
    ckpt_sha = sha256_file(ctx.init_checkpoint) if ctx.init_checkpoint else None
    tag = run_tag(ctx.dataset, ctx.method, ctx.fraction, ctx.seed, ctx.recipe, ckpt_sha,
                  getattr(ctx, "split_sha256", None) or ",".join(sorted(ctx.train_tokens)), template)
    cfg_file = write_config(cfg, work / "cfgs" / f"{template}.yaml")
    command = train_command(cfg_file, tag, batch, 1, gpus, ctx.init_checkpoint, int(settings["workers"]),
                            python=settings["python"])
    groups = next((a.get("SAMPLE_GROUPS", []) for a in cfg["DATA_CONFIG"]["DATA_AUGMENTOR"]["AUG_CONFIG_LIST"]
                   if a["NAME"] == "gt_sampling"), [])
    record = {"openpcdet_tag": tag, "openpcdet_epochs": 1, "openpcdet_template": template,
              "openpcdet_iterations": iterations, "openpcdet_batch_size": batch,
              "openpcdet_schedule": schedule_note(ctx.recipe),
              "split_missing_classes": missing, "gt_database": counts, "gt_sample_groups": groups}
    return {"root": root, "work": work, "cfg_file": cfg_file, "tag": tag, "command": command, "epochs": 1,
            "output_dir": output_dir(root, cfg_file, tag), "class_names": class_names, "record": record,
            "prefixes": model_prefixes(cfg)}


def finetune(ctx: FinetuneContext) -> dict:
    settings = engine_settings(ctx)
    check_openpcdet(settings["root"])
    plan = prepare(ctx, settings)
    (plan["work"] / "command.txt").write_text(f"cd {plan['root'] / 'tools'} && {' '.join(plan['command'])}\n")
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
