"""OpenPCDet's BEVFusion (the nuscenes_bevfusion template) in this process on what the adapter
writes: camera infos, the config whose camera half follows model.image, and a checkpoint whose
image_backbone / neck / vtransform / fuser tensors come from the benchmark's own Swin, neck, lift
and fuser; through OpenPCDet's camera dataset, network, checkpoint loading, training steps,
predictions and nuScenes evaluation."""
import copy
import json
import math

import pytest
import torch

from openpcdet_cpu.harness import import_openpcdet, openpcdet_root

# A Swin small enough for a CPU, built by the same code as the paper's Swin-T
IMAGE = {"arch": "swin", "size": [128, 72],
         "swin": {"embed_dims": 24, "depths": [1, 1, 1, 1], "num_heads": [1, 2, 4, 8], "window_size": 7,
                  "mlp_ratio": 2, "drop_path_rate": 0.0, "out_indices": [1, 2, 3]},
         "neck": {"channels": 32},
         "lift": {"channels": 16, "dbound": [1.0, 60.0, 2.0], "depth_bins": None, "zbound": [-10.0, 10.0, 20.0],
                  "downsample": 2},
         "fuser": {"channels": 32}}
PREFIXES = ("backbone_3d", "image_backbone", "neck", "vtransform", "fuser")


def _checkpoint(path, model_cfg):
    from xmbench.models.build import build_fuser, build_image_backbone, build_image_neck, build_lidar_backbone, build_lift

    torch.manual_seed(0)
    lidar = build_lidar_backbone(model_cfg)
    image = build_image_backbone(model_cfg)
    mods = {"backbone_3d": lidar, "image_backbone": image, "neck": build_image_neck(model_cfg, image),
            "vtransform": build_lift(model_cfg, use_lidar_depth=True),
            "fuser": build_fuser(model_cfg, lidar.num_bev_features)}
    state = {f"{p}.{k}": v for p, m in mods.items() for k, v in m.state_dict().items()}
    torch.save({"model_state": state, "meta": {"method": "test"}}, path)
    return state


def _batch(dataset, indices):
    """OpenPCDet's own items and collate_batch, less ``img_process_infos``: at commit 8cacccec its
    collate np.stack-s that ragged list, which numpy >= 1.24 refuses (OpenPCDet issue #1538; the
    benchmark pins numpy 1.26). The key is consumed inside the item pipeline (image_calibrate) and
    skipped by load_data_to_gpu; the network never reads it. test_openpcdet_collate_... pins the bug."""
    items = [dataset[i] for i in indices]
    for it in items:
        it.pop("img_process_infos")
    return dataset.collate_batch(items)


@pytest.fixture(scope="module")
def fusion(tmp_path_factory, tiny_index, test_config):
    from easydict import EasyDict
    from xmbench.finetune import FinetuneContext
    from xmbench.splits import select
    from xmbench.tasks import load_task

    tmp = tmp_path_factory.mktemp("opc_bevfusion")
    root = openpcdet_root(tmp / "OpenPCDet")
    model_cfg = copy.deepcopy(test_config["model"])
    model_cfg["image"] = IMAGE
    ckpt = tmp / "checkpoint.pth"
    state = _checkpoint(ckpt, model_cfg)
    index = json.loads(tiny_index["index"].read_text())
    labels = json.loads(tiny_index["labels"].read_text())
    tokens = select([f for f in index["frames"] if f["split"] == "train"], 0.5, 0)
    recipe = load_task("detection").recipe("tiny", 0.5)
    ctx = FinetuneContext("synthetic_nuscenes", "detection", "clap", 0.5, 0, recipe, model_cfg, index, labels,
                          tokens, ckpt, tmp / "cell", torch.device("cpu"))
    _, engine = load_task("detection").engine("openpcdet")
    plan = engine.prepare(ctx, {**engine.engine_settings(ctx), "root": str(root), "workers": 0,
                                "template": "nuscenes_bevfusion"})
    import_openpcdet(root)
    from pcdet.config import cfg_from_yaml_file
    from pcdet.datasets import build_dataloader
    from pcdet.models import build_network, model_fn_decorator
    from pcdet.utils import common_utils
    from train_utils.optimization import build_optimizer, build_scheduler

    cfg = EasyDict()
    cfg_from_yaml_file(str(plan["cfg_file"]), cfg)
    cfg.LOCAL_RANK = 0
    log = tmp / "bevfusion.log"
    logger = common_utils.create_logger(log, rank=0)
    train_set, loader, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=recipe["batch_size"],
                                            dist=False, workers=0, logger=logger, training=True, total_epochs=1)
    model = build_network(model_cfg=cfg.MODEL, num_class=len(cfg.CLASS_NAMES), dataset=train_set)
    model.load_params_from_file(filename=str(ckpt), logger=logger, to_cpu=True)
    own = {k: v.shape for k, v in model.state_dict().items()}
    expected = {p: sum(1 for k, v in state.items() if k.startswith(p + ".") and own.get(k) == v.shape)
                for p in PREFIXES}
    opt = build_optimizer(model, cfg.OPTIMIZATION)
    sched, _ = build_scheduler(opt, total_iters_each_epoch=len(loader), total_epochs=1, last_epoch=-1,
                               optim_cfg=cfg.OPTIMIZATION)
    fn, losses = model_fn_decorator(), []
    model.train()
    first = None
    for step in range(2):
        batch = _batch(train_set, [2 * step, 2 * step + 1])
        first = first or {"camera_imgs": batch["camera_imgs"]}
        sched.step(step, 0)
        opt.zero_grad()
        loss, _, _ = fn(model, batch)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return {"cfg": cfg, "ctx": ctx, "plan": plan, "ckpt": ckpt, "log": log, "logger": logger, "model": model,
            "losses": losses, "expected": expected, "own": own, "first": first, "tmp": tmp}


def test_bevfusion_loads_every_pretrained_module_of_ours(fusion):
    """OpenPCDet fills its image_backbone, neck, vtransform and fuser completely from our tensors
    (same names, same shapes), and backbone_3d but the conv biases its USE_BIAS: False lacks."""
    from xmbench.detection.openpcdet import parse_load

    load = parse_load(fusion["log"].read_text(), fusion["ckpt"])
    exp, own = fusion["expected"], fusion["own"]
    assert load["loaded"] == sum(exp.values())
    for p in ("image_backbone", "neck", "vtransform", "fuser"):
        assert exp[p] == sum(1 for k in own if k.startswith(p + ".")) > 0, p
        assert load["not_updated_by_prefix"].get(p, 0) == 0, p
    assert load["backbone_missed"] == 0 and 0 < exp["backbone_3d"] < 142
    assert fusion["first"]["camera_imgs"].shape[1:] == (6, 3, 72, 128)


def test_openpcdets_bevfusion_collate_fails_under_numpy_1_24_and_the_engine_says_so(fusion, tmp_path):
    """The upstream bug, pinned: OpenPCDet's own collate_batch of two camera items raises; the engine
    refuses the template with its own interpreter's numpy instead of failing every cell mid-run."""
    from xmbench.errors import BenchError
    from xmbench.tasks import load_task

    from pcdet.datasets import build_dataloader

    cfg = fusion["cfg"]
    train_set, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                       logger=fusion["logger"], training=True, total_epochs=1)
    with pytest.raises(TypeError):
        train_set.collate_batch([train_set[0], train_set[1]])
    _, engine = load_task("detection").engine("openpcdet")
    import dataclasses

    ctx = dataclasses.replace(fusion["ctx"], out_dir=tmp_path / "cell")
    with pytest.raises(BenchError, match="1538.*numpy"):
        engine.finetune(dataclasses.replace(ctx, engine_cfg={"root": str(fusion["plan"]["root"]),
                                                             "template": "nuscenes_bevfusion"}))


def test_bevfusion_trains_and_openpcdets_evaluation_scores_it(fusion):
    from eval_utils import eval_utils  # noqa: F401  (its statistics_info is what eval_one_epoch runs per batch)
    from pcdet.datasets import build_dataloader
    from pcdet.models import load_data_to_gpu

    assert len(fusion["losses"]) == 2 and all(math.isfinite(v) and v > 0 for v in fusion["losses"])
    cfg, model = fusion["cfg"], fusion["model"]
    test_set, _, _ = build_dataloader(cfg.DATA_CONFIG, cfg.CLASS_NAMES, batch_size=2, dist=False, workers=0,
                                      logger=fusion["logger"], training=False)
    model.eval()
    det_annos = []
    for start in range(0, len(test_set), 2):   # eval_one_epoch's loop, on batches collated as above
        batch = _batch(test_set, list(range(start, min(start + 2, len(test_set)))))
        load_data_to_gpu(batch)
        with torch.no_grad():
            pred_dicts, _ = model(batch)
        det_annos += test_set.generate_prediction_dicts(batch, pred_dicts, test_set.class_names)
    assert len(det_annos) == len(test_set) and sum(len(a["name"]) for a in det_annos) > 0
    out = fusion["tmp"] / "eval"
    result_str, _ = test_set.evaluation(det_annos, test_set.class_names, eval_metric="kitti", output_path=out)
    summary = json.loads((out / "metrics_summary.json").read_text())
    assert 0.0 <= summary["mean_ap"] <= 1.0 and len(summary["mean_dist_aps"]) == 10 and "mAP" in result_str
