"""OpenPCDet detection engine (the cluster engine): OpenPCDet trains and evaluates, we prepare and read.

The install is the user's (OpenPCDet cannot be built without CUDA). Its root comes from
``ctx.engine_cfg['root']`` when the harness passes engine settings, else from $OPENPCDET_ROOT;
``check_openpcdet(root)`` is what the DAG calls at start when this engine is selected. Settings:
``template`` (nuscenes_centerpoint | nuscenes_bevfusion | waymo_centerpoint), ``gpus``, ``workers``.
"""
from __future__ import annotations

import os
from pathlib import Path

from xmbench.atomic import sha256_file
from xmbench.detection.openpcdet import (check_openpcdet, epochs_for, make_config, nuscenes_infos, output_dir,
                                         read_results, run, run_tag, train_command, write_config,
                                         write_gt_database, write_pickle)
from xmbench.errors import BenchError
from xmbench.finetune import FinetuneContext


def engine_settings(ctx: FinetuneContext) -> dict:
    cfg = dict(getattr(ctx, "engine_cfg", None) or {})
    cfg.setdefault("root", os.environ.get("OPENPCDET_ROOT"))
    cfg.setdefault("template", "nuscenes_centerpoint")
    cfg.setdefault("gpus", 1)
    cfg.setdefault("workers", 4)
    return cfg


def prepare(ctx: FinetuneContext, settings: dict) -> dict:
    """Everything OpenPCDet needs for this cell, under ctx.out_dir/openpcdet; returns the command."""
    from nuscenes.nuscenes import NuScenes

    root = Path(settings["root"]).expanduser().resolve()
    template = settings["template"]
    if not template.startswith("nuscenes"):
        raise BenchError(f"openpcdet: template '{template}' needs Waymo subset infos, which the adapter does not "
                         "write yet; use a nuscenes_* template")
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
    info_train = write_pickle(train_infos, work / f"nuscenes_infos_{nsweeps}sweeps_train.pkl")
    info_val = write_pickle(val_infos, work / f"nuscenes_infos_{nsweeps}sweeps_val.pkl")
    db_info = None if with_cam else write_gt_database(link, train_infos, work, nsweeps)
    epochs = epochs_for(ctx.recipe, len(train_infos))
    cfg = make_config(template, root, data_path, version, ctx.model_cfg, info_train, info_val, db_info,
                      ctx.recipe, epochs)
    ckpt_sha = sha256_file(ctx.init_checkpoint) if ctx.init_checkpoint else None
    tag = run_tag(ctx.dataset, ctx.method, ctx.fraction, ctx.seed, ctx.recipe, ckpt_sha,
                  getattr(ctx, "split_sha256", None) or ",".join(sorted(ctx.train_tokens)), template)
    cfg_file = write_config(cfg, work / "cfgs" / f"{template}.yaml")
    command = train_command(cfg_file, tag, ctx.recipe["batch_size"], epochs, int(settings["gpus"]),
                            ctx.init_checkpoint, int(settings["workers"]))
    return {"root": root, "work": work, "cfg_file": cfg_file, "tag": tag, "command": command, "epochs": epochs,
            "output_dir": output_dir(root, cfg_file, tag)}


def finetune(ctx: FinetuneContext) -> dict:
    settings = engine_settings(ctx)
    check_openpcdet(settings["root"])
    plan = prepare(ctx, settings)
    (plan["work"] / "command.txt").write_text(f"cd {plan['root'] / 'tools'} && {' '.join(plan['command'])}\n")
    run(plan["command"], plan["root"], plan["work"] / "openpcdet_stdout.log")
    res = read_results(plan["output_dir"], ctx.init_checkpoint)
    load = res["load"]
    init = ({"loaded": 0, "total": None} if load is None else
            {"loaded": load["loaded"], "total": load["total"], "backbone_missed": load["backbone_missed"]})
    res["metrics"].update({"openpcdet_tag": plan["tag"], "openpcdet_epochs": plan["epochs"],
                           "openpcdet_template": settings["template"]})
    return {"metrics": res["metrics"], "init": init}
