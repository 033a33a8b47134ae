"""The OpenPCDet adapter, on everything that runs without OpenPCDet: configs, infos, GT database,
run tags, the command, the loading rule and the results it reads back."""
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from xmbench.detection import openpcdet as opc
from xmbench.errors import BenchError

FIXTURES = Path(__file__).parent / "fixtures" / "openpcdet"
PAPER_MODEL = {"lidar": {"voxel_size": [0.075, 0.075, 0.2], "point_cloud_range": [-54.0, -54.0, -5.0, 54.0, 54.0, 3.0],
                         "nsweeps": 10},
               # config/paper.yaml's image branch: BEVFusion's Swin-T, neck, lift and fuser
               "image": {"arch": "swin", "size": [704, 256],
                         "swin": {"embed_dims": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24],
                                  "window_size": 7, "mlp_ratio": 4, "drop_path_rate": 0.2, "out_indices": [1, 2, 3]},
                         "neck": {"channels": 256},
                         "lift": {"channels": 80, "dbound": [1.0, 60.0, 0.5], "depth_bins": None,
                                  "zbound": [-10.0, 10.0, 20.0], "downsample": 2},
                         "fuser": {"channels": 256}}}
RECIPE = {"iterations": 100, "batch_size": 4, "optimizer": {"name": "adamw", "lr": 0.001, "weight_decay": 0.01},
          "augment": {"rotation_deg": 45.0, "scale": [0.9, 1.1], "flip": True}}

# Key structure of OpenPCDet's own configs (open-mmlab/OpenPCDet, tools/cfgs/...), read from the
# yaml files: nested dicts give the keys of each mapping, lists of names give the NAME entries of
# AUG_CONFIG_LIST / DATA_PROCESSOR in order, and each entry's own keys.
_OPT_ONECYCLE = {"BATCH_SIZE_PER_GPU", "NUM_EPOCHS", "OPTIMIZER", "LR", "WEIGHT_DECAY", "MOMENTUM", "MOMS",
                 "PCT_START", "DIV_FACTOR", "DECAY_STEP_LIST", "LR_DECAY", "LR_CLIP", "LR_WARMUP", "WARMUP_EPOCH",
                 "GRAD_NORM_CLIP"}
_CENTER_HEAD = {"NAME", "CLASS_AGNOSTIC", "CLASS_NAMES_EACH_HEAD", "SHARED_CONV_CHANNEL", "USE_BIAS_BEFORE_NORM",
                "NUM_HM_CONV", "SEPARATE_HEAD_CFG", "TARGET_ASSIGNER_CONFIG", "LOSS_CONFIG", "POST_PROCESSING"}
_GT_SAMPLING_NUS = {"NAME", "DB_INFO_PATH", "PREPARE", "SAMPLE_GROUPS", "NUM_POINT_FEATURES", "DATABASE_WITH_FAKELIDAR",
                    "REMOVE_EXTRA_WIDTH", "LIMIT_WHOLE_SCENE"}
REFERENCE = {
    # cfgs/nuscenes_models/cbgs_voxel0075_res3d_centerpoint.yaml
    "nuscenes_centerpoint": {
        "top": {"CLASS_NAMES", "DATA_CONFIG", "MODEL", "OPTIMIZATION"},
        "DATA_CONFIG": {"_BASE_CONFIG_", "POINT_CLOUD_RANGE", "DATA_AUGMENTOR", "DATA_PROCESSOR"},
        "AUG": [("gt_sampling", _GT_SAMPLING_NUS), ("random_world_flip", {"NAME", "ALONG_AXIS_LIST"}),
                ("random_world_rotation", {"NAME", "WORLD_ROT_ANGLE"}),
                ("random_world_scaling", {"NAME", "WORLD_SCALE_RANGE"}),
                ("random_world_translation", {"NAME", "NOISE_TRANSLATE_STD"})],
        "PROC": ["mask_points_and_boxes_outside_range", "shuffle_points", "transform_points_to_voxels"],
        "MODEL": {"NAME", "VFE", "BACKBONE_3D", "MAP_TO_BEV", "BACKBONE_2D", "DENSE_HEAD", "POST_PROCESSING"},
        "MODEL_NAME": "CenterPoint", "BACKBONE_3D": {"NAME"}, "DENSE_HEAD": _CENTER_HEAD,
        "HEAD_ORDER": ["center", "center_z", "dim", "rot", "vel"],
        "OPTIMIZATION": _OPT_ONECYCLE,
    },
    # cfgs/waymo_models/centerpoint.yaml
    "waymo_centerpoint": {
        "top": {"CLASS_NAMES", "DATA_CONFIG", "MODEL", "OPTIMIZATION"},
        "DATA_CONFIG": {"_BASE_CONFIG_"},
        "MODEL": {"NAME", "VFE", "BACKBONE_3D", "MAP_TO_BEV", "BACKBONE_2D", "DENSE_HEAD", "POST_PROCESSING"},
        "MODEL_NAME": "CenterPoint", "BACKBONE_3D": {"NAME"}, "DENSE_HEAD": _CENTER_HEAD,
        "HEAD_ORDER": ["center", "center_z", "dim", "rot"],
        "OPTIMIZATION": _OPT_ONECYCLE,
    },
    # cfgs/nuscenes_models/bevfusion.yaml
    "nuscenes_bevfusion": {
        "top": {"CLASS_NAMES", "DATA_CONFIG", "MODEL", "OPTIMIZATION"},
        "DATA_CONFIG": {"_BASE_CONFIG_", "POINT_CLOUD_RANGE", "CAMERA_CONFIG", "DATA_AUGMENTOR", "DATA_PROCESSOR"},
        "AUG": [("random_world_flip", {"NAME", "ALONG_AXIS_LIST"}), ("random_world_rotation", {"NAME", "WORLD_ROT_ANGLE"}),
                ("random_world_scaling", {"NAME", "WORLD_SCALE_RANGE"}),
                ("random_world_translation", {"NAME", "NOISE_TRANSLATE_STD"}), ("imgaug", {"NAME", "ROT_LIM", "RAND_FLIP"})],
        "PROC": ["mask_points_and_boxes_outside_range", "shuffle_points", "transform_points_to_voxels",
                 "image_calibrate", "image_normalize"],
        "MODEL": {"NAME", "VFE", "BACKBONE_3D", "MAP_TO_BEV", "IMAGE_BACKBONE", "NECK", "VTRANSFORM", "FUSER",
                  "BACKBONE_2D", "DENSE_HEAD", "POST_PROCESSING"},
        "MODEL_NAME": "BevFusion", "BACKBONE_3D": {"NAME", "USE_BIAS"},
        "DENSE_HEAD": {"CLASS_AGNOSTIC", "NAME", "USE_BIAS_BEFORE_NORM", "NUM_PROPOSALS", "HIDDEN_CHANNEL",
                       "NUM_CLASSES", "NUM_HEADS", "NMS_KERNEL_SIZE", "FFN_CHANNEL", "DROPOUT", "BN_MOMENTUM",
                       "ACTIVATION", "NUM_HM_CONV", "SEPARATE_HEAD_CFG", "TARGET_ASSIGNER_CONFIG", "LOSS_CONFIG",
                       "POST_PROCESSING"},
        "HEAD_ORDER": ["center", "height", "dim", "rot", "vel"],
        "OPTIMIZATION": {"BATCH_SIZE_PER_GPU", "NUM_EPOCHS", "OPTIMIZER", "LR", "WEIGHT_DECAY", "MOMENTUM", "BETAS",
                         "MOMS", "PCT_START", "WARMUP_ITER", "DECAY_STEP_LIST", "LR_WARMUP", "WARMUP_EPOCH",
                         "GRAD_NORM_CLIP", "LOSS_SCALE_FP16"},
    },
}
# Keys the adapter adds to DATA_CONFIG on top of the model config (they exist in OpenPCDet's
# dataset config and are overridden here: paths, version, sweeps).
ADDED_DATA_KEYS = {"nuscenes": {"DATA_PATH", "VERSION", "MAX_SWEEPS", "INFO_PATH", "BALANCED_RESAMPLING"},
                   "waymo": {"POINT_CLOUD_RANGE", "DATA_PROCESSOR", "DATA_AUGMENTOR", "DATA_PATH", "PROCESSED_DATA_TAG",
                             "DATA_SPLIT", "SAMPLED_INTERVAL"}}
# Augmentations the recipe does not have (the native engine adds no translation noise) are left out.
NOT_IN_RECIPE = {"random_world_translation"}


def _fake_openpcdet(root: Path) -> Path:
    for p in ["tools/train.py", "tools/scripts/dist_train.sh", "pcdet/__init__.py",
              "tools/cfgs/dataset_configs/nuscenes_dataset.yaml"]:
        (root / p).parent.mkdir(parents=True, exist_ok=True)
        (root / p).write_text("")
    return root


@pytest.mark.parametrize("template", sorted(REFERENCE))
def test_generated_configs_have_the_real_configs_structure(template, tmp_path):
    ref = REFERENCE[template]
    family = template.split("_")[0]
    cfg = opc.make_config(template, "/opt/OpenPCDet", tmp_path / "data", "v1.0-trainval", PAPER_MODEL,
                          tmp_path / "train.pkl", tmp_path / "val.pkl", tmp_path / "db.pkl", RECIPE, 7)
    assert set(cfg) == ref["top"]
    dc = cfg["DATA_CONFIG"]
    assert set(dc) == ref["DATA_CONFIG"] | ADDED_DATA_KEYS[family]
    assert dc["_BASE_CONFIG_"] == f"/opt/OpenPCDet/tools/cfgs/dataset_configs/{family}_dataset.yaml"
    if "AUG" in ref:
        augs = dc["DATA_AUGMENTOR"]["AUG_CONFIG_LIST"]
        assert [(a["NAME"], set(a)) for a in augs] == [a for a in ref["AUG"] if a[0] not in NOT_IN_RECIPE]
        assert [p["NAME"] for p in dc["DATA_PROCESSOR"]] == ref["PROC"]
    model = cfg["MODEL"]
    assert set(model) == ref["MODEL"] and model["NAME"] == ref["MODEL_NAME"]
    assert set(model["BACKBONE_3D"]) == ref["BACKBONE_3D"] and model["BACKBONE_3D"]["NAME"] == "VoxelResBackBone8x"
    assert model["MAP_TO_BEV"] == {"NAME": "HeightCompression", "NUM_BEV_FEATURES": 256}
    assert set(model["DENSE_HEAD"]) == ref["DENSE_HEAD"]
    assert model["DENSE_HEAD"]["SEPARATE_HEAD_CFG"]["HEAD_ORDER"] == ref["HEAD_ORDER"]
    assert set(cfg["OPTIMIZATION"]) == ref["OPTIMIZATION"] | set(opc.schedule(RECIPE))   # the recipe's schedule
    assert cfg["OPTIMIZATION"]["OPTIMIZER"] == "adam_onecycle"
    assert cfg["OPTIMIZATION"]["NUM_EPOCHS"] == 7 and cfg["OPTIMIZATION"]["LR"] == 0.001
    voxel = next(p for p in dc["DATA_PROCESSOR"] if p["NAME"] == "transform_points_to_voxels")
    assert voxel["VOXEL_SIZE"] == PAPER_MODEL["lidar"]["voxel_size"]
    if family == "nuscenes":
        assert dc["INFO_PATH"] == {"train": [str(tmp_path / "train.pkl")], "test": [str(tmp_path / "val.pkl")]}
        assert dc["MAX_SWEEPS"] == 10 and dc["DATA_PATH"] == str(tmp_path / "data")
        if template == "nuscenes_centerpoint":
            gt = dc["DATA_AUGMENTOR"]["AUG_CONFIG_LIST"][0]
            assert gt["DB_INFO_PATH"] == [str(tmp_path / "db.pkl")]
    if template == "nuscenes_bevfusion":
        # the camera half derived from the paper's model.image is OpenPCDet's own bevfusion.yaml
        assert model["IMAGE_BACKBONE"]["EMBED_DIMS"] == 96 and "INIT_CFG" not in model["IMAGE_BACKBONE"]
        assert model["NECK"]["IN_CHANNELS"] == [192, 384, 768] and model["NECK"]["OUT_CHANNELS"] == 256
        vt = model["VTRANSFORM"]
        assert vt["IMAGE_SIZE"] == [256, 704] and vt["FEATURE_SIZE"] == [32, 88]
        assert vt["XBOUND"] == [-54.0, 54.0, 0.3] and vt["YBOUND"] == [-54.0, 54.0, 0.3]
        assert vt["DBOUND"] == [1.0, 60.0, 0.5] and vt["OUT_CHANNEL"] == 80 and vt["DOWNSAMPLE"] == 2
        assert model["FUSER"] == {"NAME": "ConvFuser", "IN_CHANNEL": 336, "OUT_CHANNEL": 256}
        assert dc["CAMERA_CONFIG"]["IMAGE"]["FINAL_DIM"] == [256, 704]


def test_check_openpcdet_names_the_path_and_the_fix(tmp_path):
    with pytest.raises(BenchError) as err:
        opc.check_openpcdet(tmp_path / "nowhere")
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "OpenPCDet" in msg and "\n" not in msg
    with pytest.raises(BenchError):
        opc.check_openpcdet(None)
    opc.check_openpcdet(_fake_openpcdet(tmp_path / "OpenPCDet"))


def test_run_tags_are_unique_per_cell_and_output_dir_follows_train_py():
    tags = {opc.run_tag("ds", m, f, s, RECIPE, "abc", "split", "nuscenes_centerpoint")
            for m in ("scratch", "crosspoint") for f in (0.01, 0.1, 1.0) for s in (0, 1)}
    assert len(tags) == 12
    assert opc.run_tag("ds", "a", 0.1, 0, RECIPE, "abc", "s", "t") != opc.run_tag("ds", "a", 0.1, 0, RECIPE, "abd", "s", "t")
    assert opc.run_tag("ds", "a", 0.1, 0, RECIPE, "abc", "s", "t") == opc.run_tag("ds", "a", 0.1, 0, RECIPE, "abc", "s", "t")
    out = opc.output_dir("/opt/OpenPCDet", "/res/cell/openpcdet/cfgs/nuscenes_centerpoint.yaml", "tag")
    assert out == Path("/opt/OpenPCDet/output/res/cell/openpcdet/cfgs/nuscenes_centerpoint/tag")


def test_train_command():
    import sys

    cmd = opc.train_command(Path("/c/cfg.yaml"), "tag1", 32, 20, gpus=1, pretrained=Path("/ck/checkpoint.pth"))
    assert cmd[:2] == [sys.executable, "train.py"]
    assert opc.train_command(Path("/c/cfg.yaml"), "t", 2, 1, python="/envs/pcdet/bin/python")[0] == "/envs/pcdet/bin/python"
    for flag, value in [("--cfg_file", "/c/cfg.yaml"), ("--extra_tag", "tag1"), ("--pretrained_model", "/ck/checkpoint.pth"),
                        ("--batch_size", "32"), ("--epochs", "20")]:
        assert cmd[cmd.index(flag) + 1] == value
    multi = opc.train_command(Path("/c/cfg.yaml"), "tag1", 32, 20, gpus=8, pretrained=None, python="/py")
    # torchrun hands the rank over in LOCAL_RANK; dist_train.sh's launcher passes --local-rank, which train.py rejects
    assert multi[:7] == ["/py", "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=8", "train.py",
                         "--launcher"] and multi[7] == "pytorch" and "--pretrained_model" not in multi
    assert not any(a.startswith("--local") for a in multi)
    assert opc.epochs_for({"iterations": 100, "batch_size": 4}, 64) == 6


def _tokens(tiny_index):
    index = json.loads(tiny_index["index"].read_text())
    train = [f["token"] for f in index["frames"] if f["split"] == "train"]
    return index, json.loads(tiny_index["labels"].read_text()), train


def test_subset_infos_hold_exactly_the_split(tiny_index, tmp_path):
    from nuscenes.nuscenes import NuScenes

    index, labels, train = _tokens(tiny_index)
    split = train[::3]
    nusc = NuScenes(version=index["version"], dataroot=str(tiny_index["dataroot"]), verbose=False)
    infos = opc.nuscenes_infos(nusc, split, max_sweeps=10)
    path = opc.write_pickle(infos, tmp_path / "nuscenes_infos_10sweeps_train.pkl")
    loaded = pickle.loads(path.read_bytes())
    assert [i["token"] for i in loaded] == split
    for info in loaded:
        assert {"lidar_path", "cam_front_path", "cam_intrinsic", "token", "sweeps", "ref_from_car", "car_from_global",
                "timestamp", "gt_boxes", "gt_boxes_velocity", "gt_names", "gt_boxes_token", "num_lidar_pts",
                "num_radar_pts"} <= set(info)
        assert len(info["sweeps"]) == 9 and (Path(nusc.dataroot) / info["lidar_path"]).is_file()
        assert info["gt_boxes"].shape[1] == 9
        ours = [b for b in labels["frames"][info["token"]]["boxes"] if b["num_lidar_pts"] > 0]
        assert len(info["gt_boxes"]) == len(ours)
        by_token = {b["token"]: b for b in ours}
        for box, tok, name in zip(info["gt_boxes"], info["gt_boxes_token"], info["gt_names"]):
            b = by_token[tok]
            np.testing.assert_allclose(box[:3], b["center"], atol=1e-6)
            np.testing.assert_allclose(box[3:6], np.asarray(b["wlh"])[[1, 0, 2]], atol=1e-9)
            assert name == (b["name"] or "ignore")
    full = opc.nuscenes_infos(nusc, train, max_sweeps=10)
    assert [i["token"] for i in opc.subset_infos(full, split)] == split
    with pytest.raises(BenchError):
        opc.subset_infos(full[1:], train[:1])


def test_gt_database_is_cut_from_the_split_only(tiny_index, tmp_path):
    from nuscenes.nuscenes import NuScenes

    index, _, train = _tokens(tiny_index)
    split = train[:4]
    nusc = NuScenes(version=index["version"], dataroot=str(tiny_index["dataroot"]), verbose=False)
    infos = opc.nuscenes_infos(nusc, split, max_sweeps=10)
    db_path = opc.write_gt_database(tiny_index["dataroot"], infos, tmp_path, max_sweeps=10)
    assert db_path.name == "nuscenes_dbinfos_10sweeps_withvelo.pkl"
    db = pickle.loads(db_path.read_bytes())
    entries = [e for es in db.values() for e in es]
    assert entries and {e["token"] for e in entries} <= set(split)
    assert len(entries) == sum(len(i["gt_boxes"]) for i in infos)
    for e in entries[:20]:
        assert set(e) >= {"name", "path", "image_idx", "gt_idx", "box3d_lidar", "num_points_in_gt"}
        pts = np.fromfile(e["path"], dtype=np.float32).reshape(-1, 5)
        assert len(pts) == e["num_points_in_gt"]


def _openpcdet_reference(shared_dir):
    keys = {}
    for line in (shared_dir / "openpcdet" / "backbone_3d_nuscenes_models_cbgs_voxel0075_res3d_centerpoint.txt").read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, _ = re.match(r"(\S+) \(([^)]*)\) (\S+)", line).groups()
        keys[name] = tuple(int(v) for v in shape.replace(",", " ").split())
    return keys


def test_our_checkpoint_passes_openpcdets_loading_rule(shared_dir, tmp_path):
    """OpenPCDet's load_params_from_file updates a model tensor when the checkpoint has the same
    name with the same shape; the backbone_3d tensors of the model must all be updated."""
    from xmbench.models.build import build_lidar_backbone

    backbone = build_lidar_backbone(PAPER_MODEL)
    ckpt = {"model_state": {f"backbone_3d.{k}": v for k, v in backbone.state_dict().items()},
            "image_backbone": {}, "meta": {"method": "test"}}
    torch.save(ckpt, tmp_path / "checkpoint.pth")
    state = torch.load(tmp_path / "checkpoint.pth", map_location="cpu", weights_only=False)["model_state"]
    model = _openpcdet_reference(shared_dir)
    updated = {k for k, v in state.items() if k in model and tuple(v.shape) == model[k]}
    missed = [k for k in model if k.startswith("backbone_3d.") and k not in updated]
    assert missed == [] and len(updated) == len(model) == 142


def test_results_are_read_from_openpcdets_output(tmp_path):
    out = tmp_path / "output" / "cell" / "nuscenes_centerpoint" / "tag"
    data = out / "eval" / "eval_with_train" / "epoch_20" / "val" / "final_result" / "data"
    data.mkdir(parents=True)
    shutil.copy(FIXTURES / "metrics_summary.json", data / "metrics_summary.json")
    shutil.copy(FIXTURES / "train_20240501-101500.log", out / "train_20240501-101500.log")
    summary = json.loads((FIXTURES / "metrics_summary.json").read_text())
    res = opc.read_results(out, Path("/results/synthetic_nuscenes/pretrain/crosspoint/checkpoint.pth"))
    m = res["metrics"]
    assert m["mean_ap"] == pytest.approx(summary["mean_ap"]) and m["nds"] == pytest.approx(summary["nd_score"])
    assert m["ap_per_class"]["car"] == pytest.approx(summary["mean_dist_aps"]["car"])
    assert m["mATE"] == pytest.approx(summary["tp_errors"]["trans_err"])
    load = res["load"]
    assert {k: load[k] for k in ("loaded", "total", "backbone_missed", "backbone_missed_keys")} == {
        "loaded": 142, "total": 355, "backbone_missed": 0, "backbone_missed_keys": []}
    assert "backbone_3d" not in load["not_updated_by_prefix"] and sum(load["not_updated_by_prefix"].values()) > 0
    # the log alone (no metrics_summary.json) still gives mAP and NDS
    log_metrics = opc.parse_log_metrics((FIXTURES / "train_20240501-101500.log").read_text())
    assert log_metrics["mean_ap"] == pytest.approx(summary["mean_ap"], abs=5e-5)
    assert log_metrics["nds"] == pytest.approx(summary["nd_score"], abs=5e-5)


def test_a_pretrained_run_that_loaded_nothing_fails(tmp_path):
    text = (FIXTURES / "train_20240501-101500.log").read_text()
    bad = re.sub(r"==> Done \(loaded 142/355\)", "==> Done (loaded 0/355)", text)
    load = opc.parse_load(bad, "checkpoint.pth")
    assert load["loaded"] == 0
    with pytest.raises(BenchError, match="loaded 0/355"):
        opc.check_load(load, True, "train.log")
    missed = text.replace("Not updated weight backbone_2d.blocks.0.1.weight",
                          "Not updated weight backbone_3d.conv1.0.conv1.weight")
    with pytest.raises(BenchError, match="backbone_3d"):
        opc.check_load(opc.parse_load(missed, "checkpoint.pth"), True, "train.log")
    with pytest.raises(BenchError, match="no '==> Done"):
        opc.check_load(opc.parse_load("nothing here", "checkpoint.pth"), True, "train.log")
    opc.check_load(None, False, "train.log")  # scratch: nothing to load
