"""The run's OpenPCDet config, written from a template in ``downstream/detection/openpcdet/``.

The templates keep OpenPCDet's own structure and keys; this fills in what varies per run (paths,
geometry, the recipe's profile, augmentations and schedule, BEVFusion's camera branch) and the
info list that makes one OpenPCDet epoch the recipe's run.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import yaml

from ...errors import BenchError
from .onecycle import schedule
from .waymo_data import WAYMO_TAG

TEMPLATE_DIR = Path(__file__).resolve().parents[3] / "downstream" / "detection" / "openpcdet"
PROFILES = TEMPLATE_DIR / "profiles.yaml"
TEMPLATES = {
    "nuscenes_centerpoint": "nuscenes_centerpoint.yaml",   # cfgs/nuscenes_models/cbgs_voxel0075_res3d_centerpoint.yaml
    "nuscenes_bevfusion": "nuscenes_bevfusion.yaml",       # cfgs/nuscenes_models/bevfusion.yaml
    "waymo_centerpoint": "waymo_centerpoint.yaml",         # cfgs/waymo_models/centerpoint.yaml
}
BASE_CONFIGS = {"nuscenes": "cfgs/dataset_configs/nuscenes_dataset.yaml",
                "waymo": "cfgs/dataset_configs/waymo_dataset.yaml"}


def load_template(name: str) -> dict:
    if name not in TEMPLATES:
        raise BenchError(f"openpcdet: no template '{name}' (known: {sorted(TEMPLATES)})")
    return yaml.safe_load((TEMPLATE_DIR / TEMPLATES[name]).read_text())


def _set_processor(cfg: dict, name: str, **fields) -> None:
    for proc in cfg["DATA_CONFIG"]["DATA_PROCESSOR"]:
        if proc["NAME"] == name:
            proc.update(fields)
            return
    raise BenchError(f"openpcdet template: no DATA_PROCESSOR '{name}'")


def _profile_overrides(template: str, profile: str | None) -> dict:
    """The template's model settings for a recipe profile (profiles.yaml): the same widths, heads
    and post-processing the native engine uses at that profile (native.yaml), in OpenPCDet's keys."""
    if profile is None or not PROFILES.is_file():
        return {}
    spec = yaml.safe_load(PROFILES.read_text()) or {}
    return (spec.get(template) or {}).get(profile) or {}


def _deep_update(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _deep_update(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def db_class_counts(db: dict, class_names, min_points: dict[str, int]) -> dict[str, int]:
    """Per configured class, the database entries OpenPCDet's filter_by_min_points keeps."""
    return {c: sum(1 for e in db.get(c, []) if e["num_points_in_gt"] >= min_points.get(c, 0)) for c in class_names}


def _min_points(aug: dict) -> dict[str, int]:
    out = {}
    for item in (aug.get("PREPARE") or {}).get("filter_by_min_points", []):
        name, n = item.split(":")
        out[name] = int(n)
    return out


def _camera_branch(cfg: dict, model_cfg: dict, camera_wh: tuple[int, int] | None) -> None:
    """BEVFusion's camera half from ``model.image`` (the Swin, neck, lift and fuser the benchmark
    pretrains, keyed like OpenPCDet's), so that our image_backbone / neck / vtransform / fuser
    tensors have the shapes OpenPCDet builds. The ImageNet INIT_CFG goes: the init is our checkpoint.

    ``camera_wh``: the dataset's image size; the resize range maps it onto FINAL_DIM as OpenPCDet's
    nuScenes range maps 1600 x 900 onto 704 x 256 (train 0.38-0.55 around 0.44, test 0.48)."""
    from ...models.build import feature_hw, fuser_settings, image_hw, lift_bounds, lift_settings, neck_settings
    from ...models.swin import SwinSettings

    img = model_cfg["image"]
    if img.get("arch", "resnet") != "swin":
        raise BenchError("openpcdet template nuscenes_bevfusion: BEVFusion's image backbone is a Swin; set "
                         "model.image.arch: swin (model.image.swin for its sizes)")
    sw = SwinSettings.from_cfg(img.get("swin"))
    m = cfg["MODEL"]
    ib = m["IMAGE_BACKBONE"]
    ib.update({"EMBED_DIMS": sw.embed_dims, "DEPTHS": list(sw.depths), "NUM_HEADS": list(sw.num_heads),
               "WINDOW_SIZE": sw.window_size, "MLP_RATIO": sw.mlp_ratio, "DROP_PATH_RATE": sw.drop_path_rate,
               "OUT_INDICES": list(sw.out_indices)})
    ib.pop("INIT_CFG", None)
    neck, lift, fuser = neck_settings(model_cfg), lift_settings(model_cfg), fuser_settings(model_cfg)
    m["NECK"].update({"IN_CHANNELS": [sw.embed_dims * 2 ** i for i in sw.out_indices][-3:],
                      "OUT_CHANNELS": neck["channels"]})
    if lift.get("depth_bins") is not None:
        raise BenchError("openpcdet template nuscenes_bevfusion: OpenPCDet's DepthLSSTransform takes its depth bins "
                         "from DBOUND; set model.image.lift.depth_bins: null")
    (h, w), (fh, fw) = image_hw(model_cfg), feature_hw(model_cfg)
    xb, yb, zb = lift_bounds(model_cfg)
    m["VTRANSFORM"].update({"IMAGE_SIZE": [h, w], "FEATURE_SIZE": [fh, fw], "IN_CHANNEL": neck["channels"],
                            "OUT_CHANNEL": lift["channels"], "XBOUND": list(xb), "YBOUND": list(yb),
                            "ZBOUND": list(zb), "DBOUND": list(lift["dbound"]), "DOWNSAMPLE": lift["downsample"]})
    m["FUSER"].update({"IN_CHANNEL": lift["channels"] + 256, "OUT_CHANNEL": fuser["channels"]})
    cam = cfg["DATA_CONFIG"]["CAMERA_CONFIG"]["IMAGE"]
    cam["FINAL_DIM"] = [h, w]
    if camera_wh is not None:
        base = max(w / camera_wh[0], h / camera_wh[1])
        cam["RESIZE_LIM_TRAIN"] = [round(base * 0.38 / 0.44, 4), round(base * 0.55 / 0.44, 4)]
        cam["RESIZE_LIM_TEST"] = [round(base * 0.48 / 0.44, 4)] * 2
        cam["RESIZE_LIM_TRAIN"][0] = max(cam["RESIZE_LIM_TRAIN"][0], round(base + 1e-3, 4))  # never below FINAL_DIM


def make_config(template: str, root, data_path, version: str, model_cfg: dict, info_train: Path, info_val: Path,
                db_info: Path | None, recipe: dict, epochs: int, *, db_counts: dict[str, int] | None = None,
                gpus: int = 1, camera_wh: tuple[int, int] | None = None) -> dict:
    """The run's OpenPCDet config: the template with our paths, geometry, the recipe's profile
    settings and the recipe's schedule filled in.

    ``db_counts`` (per class, after the min-points filter) drops the SAMPLE_GROUPS of classes the
    split's database cannot supply: OpenPCDet's sampler stacks an empty draw otherwise."""
    cfg = copy.deepcopy(load_template(template))
    _deep_update(cfg, _profile_overrides(template, recipe.get("profile")))
    family = template.split("_")[0]
    dc = cfg["DATA_CONFIG"]
    dc["_BASE_CONFIG_"] = str(Path(root) / "tools" / BASE_CONFIGS[family])
    lidar = model_cfg["lidar"]
    dc["POINT_CLOUD_RANGE"] = [float(v) for v in lidar["point_cloud_range"]]
    if family == "nuscenes":
        dc["DATA_PATH"] = str(data_path)
        dc["VERSION"] = version
        dc["MAX_SWEEPS"] = int(lidar["nsweeps"])
        dc["INFO_PATH"] = {"train": [str(info_train)], "test": [str(info_val)]}
        # the base config's CBGS resampling would multiply the split (32 frames became 224) and
        # divide by zero for a class the split lacks; the recipe's step count is met by the infos
        dc["BALANCED_RESAMPLING"] = False
    if family == "waymo":
        dc["DATA_PATH"] = str(data_path)
        dc["PROCESSED_DATA_TAG"] = WAYMO_TAG
        dc["DATA_SPLIT"] = {"train": "train", "test": "val"}
        dc["SAMPLED_INTERVAL"] = {"train": 1, "test": 1}    # the infos are the split (cycled): every entry
    _set_processor(cfg, "transform_points_to_voxels", VOXEL_SIZE=[float(v) for v in lidar["voxel_size"]])
    if "IMAGE_BACKBONE" in cfg["MODEL"]:
        _camera_branch(cfg, model_cfg, camera_wh)
    aug_cfg = recipe.get("augment", {})
    augs = []
    for aug in dc["DATA_AUGMENTOR"]["AUG_CONFIG_LIST"]:
        if aug["NAME"] == "gt_sampling":
            if db_info is None:
                dc["DATA_AUGMENTOR"]["DISABLE_AUG_LIST"] = ["gt_sampling"]
            else:
                aug["DB_INFO_PATH"] = [str(db_info)]
                aug["NUM_POINT_FEATURES"] = 5
                if db_counts is not None:
                    aug["SAMPLE_GROUPS"] = [g for g in aug["SAMPLE_GROUPS"] if db_counts.get(g.split(":")[0], 0) > 0]
        if aug["NAME"] == "random_world_flip":
            if not aug_cfg.get("flip", False):
                continue
            aug["ALONG_AXIS_LIST"] = ["x"]        # the native flip negates y, which is OpenPCDet's flip along x
        if aug["NAME"] == "random_world_translation":
            continue                              # the native recipe has no translation noise
        if aug["NAME"] == "random_world_rotation":
            r = math.radians(aug_cfg.get("rotation_deg", 45.0))
            aug["WORLD_ROT_ANGLE"] = [-r, r]
        if aug["NAME"] == "random_world_scaling":
            aug["WORLD_SCALE_RANGE"] = [float(v) for v in aug_cfg.get("scale", [0.9, 1.1])]
        augs.append(aug)
    dc["DATA_AUGMENTOR"]["AUG_CONFIG_LIST"] = augs
    opt = cfg["OPTIMIZATION"]
    opt["NUM_EPOCHS"] = int(epochs)
    opt["BATCH_SIZE_PER_GPU"] = max(1, int(recipe["batch_size"]) // max(1, int(gpus)))
    if "iterations" in recipe:
        opt.update(schedule(recipe))
    else:
        opt["LR"] = float(recipe["optimizer"]["lr"])
        opt["WEIGHT_DECAY"] = float(recipe["optimizer"]["weight_decay"])
    return cfg


def epochs_for(recipe: dict, n_frames: int) -> int:
    """Our recipe counts iterations at a total batch size; OpenPCDet counts epochs."""
    return max(1, int(round(recipe["iterations"] * recipe["batch_size"] / max(1, n_frames))))


def cycled_infos(infos: list, iterations: int, batch_size: int, seed: int) -> list:
    """The split's frames in epoch-wise reshuffled passes, cut at ``iterations * batch_size``
    entries, as the native engine's batch order: one OpenPCDet epoch over this list is the
    recipe's run. Entries are the same objects, so the pickle holds each frame once."""
    if not infos:
        raise BenchError("openpcdet: the split has no training frame")
    rng = np.random.default_rng(seed)
    order: list[int] = []
    need = int(iterations) * int(batch_size)
    while len(order) < need:
        order += rng.permutation(len(infos)).tolist()
    return [infos[i] for i in order[:need]]


def write_config(cfg: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
