"""The OpenPCDet adapter: configs, subset infos and GT database per split, the command, the results.

OpenPCDet is the user's install (a path): it needs CUDA to build, so nothing here imports it. The
adapter
- writes a config from a template in ``downstream/detection/openpcdet/`` (derived from OpenPCDet's
  own configs) with the data paths, geometry and schedule of the run;
- writes the split's info file in OpenPCDet's ``nuscenes_infos_10sweeps_train.pkl`` format (only
  the split's frames), the val info file, and a ground-truth database cut from the split's frames
  only (``nuscenes_dbinfos_10sweeps_withvelo.pkl`` format);
- gives each cell a unique ``--extra_tag``: OpenPCDet resumes silently from any checkpoint in a
  reused output folder, so a folder may only ever be reused by the very same cell;
- runs ``tools/train.py`` with the configured Python (under ``torchrun`` on several GPUs, which
  hands the rank over in ``LOCAL_RANK``: ``dist_train.sh``'s ``torch.distributed.launch`` passes
  ``--local-rank``, which OpenPCDet's parser does not accept) with ``--pretrained_model`` set to
  our checkpoint, which OpenPCDet loads by name and shape;
- reads back the devkit's ``metrics_summary.json`` and the log's ``==> Done (loaded X/Y)``, and
  fails a pretrained run that loaded no backbone weight instead of letting it train from scratch.

The recipe is the native engine's: the info list OpenPCDet trains on is the split's frames cycled
to ``iterations x batch_size`` entries (one epoch, so OpenPCDet's step count is the recipe's and no
resampling is inherited), and the schedule is OpenPCDet's one-cycle with the recipe's peak learning
rate, warm-up length and AdamW-style decoupled weight decay (see ``schedule``).
"""
from __future__ import annotations

import copy
import math
import os
import pickle
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml

from ..config import config_hash
from ..errors import BenchError
from .boxes import points_in_box

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "downstream" / "detection" / "openpcdet"
PROFILES = TEMPLATE_DIR / "profiles.yaml"
TEMPLATES = {
    "nuscenes_centerpoint": "nuscenes_centerpoint.yaml",   # cfgs/nuscenes_models/cbgs_voxel0075_res3d_centerpoint.yaml
    "nuscenes_bevfusion": "nuscenes_bevfusion.yaml",       # cfgs/nuscenes_models/bevfusion.yaml
    "waymo_centerpoint": "waymo_centerpoint.yaml",         # cfgs/waymo_models/centerpoint.yaml
}
BASE_CONFIGS = {"nuscenes": "cfgs/dataset_configs/nuscenes_dataset.yaml",
                "waymo": "cfgs/dataset_configs/waymo_dataset.yaml"}
# OpenPCDet's map_name_from_general_to_detection: the devkit's detection names, 'ignore' otherwise.
IGNORE = "ignore"


# ------------------------------------------------------------------------------------------------
# The install
# ------------------------------------------------------------------------------------------------

def check_openpcdet(root) -> None:
    """Fail early, in one line, when ``root`` is not an OpenPCDet checkout the engine can run."""
    if root is None or str(root).strip() == "":
        raise BenchError("openpcdet: no install path given; set the OpenPCDet root (a clone of "
                         "https://github.com/open-mmlab/OpenPCDet built with `python setup.py develop`) "
                         "in the config, or select the native engine")
    root = Path(root).expanduser()
    needed = ["tools/train.py", "tools/scripts/dist_train.sh", "pcdet/__init__.py",
              "tools/cfgs/dataset_configs/nuscenes_dataset.yaml"]
    missing = [p for p in needed if not (root / p).is_file()]
    if missing:
        raise BenchError(f"openpcdet: {root} is not an OpenPCDet checkout (missing {missing[0]}); set the "
                         "OpenPCDet root in the config to your clone of https://github.com/open-mmlab/OpenPCDet "
                         "(built with `python setup.py develop`), or select the native engine")


# ------------------------------------------------------------------------------------------------
# Run identity
# ------------------------------------------------------------------------------------------------

def run_tag(dataset: str, method: str, fraction: float, seed: int, recipe: dict, checkpoint_sha256: str | None,
            split_sha256: str | None, template: str) -> str:
    """A tag unique to the cell and to everything its result depends on: a folder is reused only by
    a rerun of the very same cell (where resuming is right), never by another cell."""
    digest = config_hash({"recipe": recipe, "checkpoint": checkpoint_sha256, "split": split_sha256,
                          "template": template})[:10]
    frac = f"{fraction:g}".replace(".", "p")
    return f"xmb_{dataset}_{method}_f{frac}_s{seed}_{digest}"


def output_dir(root, cfg_file, extra_tag: str) -> Path:
    """Where tools/train.py writes: ROOT_DIR/output/<cfg path minus its first part and file>/<stem>/<tag>."""
    cfg_file = str(cfg_file)
    group = "/".join(cfg_file.split("/")[1:-1])
    return Path(root) / "output" / group / Path(cfg_file).stem / extra_tag


# ------------------------------------------------------------------------------------------------
# Configs
# ------------------------------------------------------------------------------------------------

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


def warmup_steps(recipe: dict) -> int:
    """The native engine's warm-up length (xmbench.finetune.warmup_cosine): at least one step."""
    return max(1, int(recipe.get("warmup_fraction", 0.0) * recipe["iterations"]))


def schedule(recipe: dict) -> dict:
    """OPTIMIZATION entries that give OpenPCDet the native engine's schedule.

    Native: AdamW (betas 0.9/0.999), lr rising linearly to the recipe's lr over ``w`` warm-up steps
    (lr/w at step 0), then a cosine to 0 at the last step. OpenPCDet's ``adam_onecycle`` with
    DIV_FACTOR w and PCT_START w/iterations starts at the same lr/w, peaks at the same lr at step w
    and follows the same cosine to lr/w/1e4; only the warm-up ramp is a half cosine instead of a
    line. Its weight decay is decoupled (true_wd, also on BatchNorm), as AdamW's; MOMS held at the
    first beta keeps Adam's beta1 fixed, as AdamW's."""
    opt = recipe["optimizer"]
    if opt["name"] != "adamw":
        raise BenchError(f"recipe optimizer '{opt['name']}': the openpcdet engine reproduces adamw only "
                         "(OpenPCDet's adam_onecycle with decoupled weight decay); use adamw in task.yaml")
    total, warm = int(recipe["iterations"]), warmup_steps(recipe)
    betas = [float(b) for b in opt.get("betas", [0.9, 0.999])]
    return {"OPTIMIZER": "adam_onecycle", "LR": float(opt["lr"]), "WEIGHT_DECAY": float(opt["weight_decay"]),
            "BETAS": betas, "MOMS": [betas[0], betas[0]], "DIV_FACTOR": float(warm),
            # OpenPCDet takes int(PCT_START * total) as the peak step; half a step above w keeps it w
            "PCT_START": (warm + 0.5) / total}


def schedule_note(recipe: dict) -> str:
    """The schedule's shape, stated in every OpenPCDet cell's metrics."""
    total, warm, lr = int(recipe["iterations"]), warmup_steps(recipe), float(recipe["optimizer"]["lr"])
    return (f"OpenPCDet adam_onecycle: {total} steps, half-cosine warm-up over {warm} from lr/{warm} to the peak "
            f"{lr:g}, then cosine to lr/{warm}/1e4 (native engine: linear warm-up over {warm}, cosine to 0)")


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
    from ..models.build import feature_hw, fuser_settings, image_hw, lift_bounds, lift_settings, neck_settings
    from ..models.swin import SwinSettings

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


# ------------------------------------------------------------------------------------------------
# Info files and the GT database
# ------------------------------------------------------------------------------------------------

def subset_infos(infos: list[dict], tokens) -> list[dict]:
    """An existing OpenPCDet info list restricted to the split's frames (in the split's order)."""
    by_token = {info["token"]: info for info in infos}
    missing = [t for t in tokens if t not in by_token]
    if missing:
        raise BenchError(f"openpcdet infos: {len(missing)} split frame(s) not in the info file, e.g. {missing[0]}")
    return [by_token[t] for t in tokens]


def _transform(translation, rotation, inverse: bool = False) -> np.ndarray:
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

    return transform_matrix(translation, Quaternion(rotation), inverse=inverse)


def nuscenes_infos(nusc, tokens, max_sweeps: int = 10, with_cam: bool = False, with_gt: bool = True) -> list[dict]:
    """OpenPCDet's nuScenes info dicts (``create_nuscenes_info``'s format) for the given sample tokens."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    infos = []
    for token in tokens:
        sample = nusc.get("sample", token)
        sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        pose = nusc.get("ego_pose", sd["ego_pose_token"])
        ref_from_car = _transform(cs["translation"], cs["rotation"], inverse=True)
        car_from_global = _transform(pose["translation"], pose["rotation"], inverse=True)
        cam_front = nusc.get("sample_data", sample["data"]["CAM_FRONT"])
        cam_cs = nusc.get("calibrated_sensor", cam_front["calibrated_sensor_token"])
        info = {"lidar_path": sd["filename"], "cam_front_path": cam_front["filename"],
                "cam_intrinsic": np.asarray(cam_cs["camera_intrinsic"]), "token": token, "sweeps": [],
                "ref_from_car": ref_from_car, "car_from_global": car_from_global, "timestamp": 1e-6 * sd["timestamp"]}
        lidar_to_global = np.linalg.inv(car_from_global) @ np.linalg.inv(ref_from_car)
        if with_cam:
            info["cams"] = {}
            for cam in ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT",
                        "CAM_BACK_RIGHT"):
                csd = nusc.get("sample_data", sample["data"][cam])
                ccs = nusc.get("calibrated_sensor", csd["calibrated_sensor_token"])
                cpose = nusc.get("ego_pose", csd["ego_pose_token"])
                cam_to_global = _transform(cpose["translation"], cpose["rotation"]) @ _transform(
                    ccs["translation"], ccs["rotation"])
                cam_to_lidar = np.linalg.inv(lidar_to_global) @ cam_to_global
                info["cams"][cam] = {
                    "data_path": csd["filename"], "type": cam, "sample_data_token": csd["token"],
                    "sensor2ego_translation": ccs["translation"], "sensor2ego_rotation": ccs["rotation"],
                    "ego2global_translation": cpose["translation"], "ego2global_rotation": cpose["rotation"],
                    "timestamp": csd["timestamp"], "sensor2lidar_rotation": cam_to_lidar[:3, :3],
                    "sensor2lidar_translation": cam_to_lidar[:3, 3], "camera_intrinsics": np.asarray(ccs["camera_intrinsic"])}
        sweeps, cur = [], sd
        while len(sweeps) < max_sweeps - 1:
            if not cur["prev"]:
                sweeps.append(sweeps[-1] if sweeps else {"lidar_path": sd["filename"], "sample_data_token": sd["token"],
                                                        "transform_matrix": None, "time_lag": 0})
                continue
            cur = nusc.get("sample_data", cur["prev"])
            p = nusc.get("ego_pose", cur["ego_pose_token"])
            c = nusc.get("calibrated_sensor", cur["calibrated_sensor_token"])
            global_from_car = _transform(p["translation"], p["rotation"])
            car_from_current = _transform(c["translation"], c["rotation"])
            sweeps.append({"lidar_path": cur["filename"], "sample_data_token": cur["token"],
                           "transform_matrix": ref_from_car @ car_from_global @ global_from_car @ car_from_current,
                           "global_from_car": global_from_car, "car_from_current": car_from_current,
                           "time_lag": info["timestamp"] - 1e-6 * cur["timestamp"]})
        info["sweeps"] = sweeps
        if with_gt:
            anns = [nusc.get("sample_annotation", t) for t in sample["anns"]]
            global_to_lidar = np.linalg.inv(lidar_to_global)
            rows, vels, names, toks, nl, nr = [], [], [], [], [], []
            for ann in anns:
                box_to_lidar = global_to_lidar @ _transform(ann["translation"], ann["rotation"])
                heading = box_to_lidar[:3, :3] @ np.array([1.0, 0.0, 0.0])
                vel = global_to_lidar[:3, :3] @ nusc.box_velocity(ann["token"])
                w, l, h = ann["size"]
                rows.append([*box_to_lidar[:3, 3], l, w, h, math.atan2(heading[1], heading[0]), vel[0], vel[1]])
                vels.append(vel)
                names.append(category_to_detection_name(ann["category_name"]) or IGNORE)
                toks.append(ann["token"])
                nl.append(ann["num_lidar_pts"])
                nr.append(ann["num_radar_pts"])
            mask = (np.asarray(nl) + np.asarray(nr)) > 0 if anns else np.zeros(0, dtype=bool)
            info["gt_boxes"] = np.asarray(rows, dtype=np.float64).reshape(-1, 9)[mask]
            info["gt_boxes_velocity"] = np.asarray(vels, dtype=np.float64).reshape(-1, 3)[mask]
            info["gt_names"] = np.asarray(names, dtype="<U20")[mask]
            info["gt_boxes_token"] = np.asarray(toks)[mask]
            info["num_lidar_pts"] = np.asarray(nl, dtype=np.int64)[mask]
            info["num_radar_pts"] = np.asarray(nr, dtype=np.int64)[mask]
        infos.append(info)
    return infos


def write_pickle(obj, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(obj, f)
    tmp.replace(path)
    return path


def _info_points(root: Path, info: dict, max_sweeps: int) -> np.ndarray:
    """The frame's points as OpenPCDet's loader builds them (x, y, z, intensity, time lag), with all
    sweeps of the info (OpenPCDet draws max_sweeps - 1 of them; the info holds exactly that many)."""
    key = np.fromfile(root / info["lidar_path"], dtype=np.float32).reshape(-1, 5)[:, :4]
    parts = [np.concatenate([key, np.zeros((len(key), 1), np.float32)], axis=1)]
    seen = set()
    for sw in info["sweeps"][:max_sweeps - 1]:
        if sw["transform_matrix"] is None or sw["sample_data_token"] in seen:
            continue
        seen.add(sw["sample_data_token"])
        pts = np.fromfile(root / sw["lidar_path"], dtype=np.float32).reshape(-1, 5)[:, :4]
        pts = pts[~((np.abs(pts[:, 0]) < 1.0) & (np.abs(pts[:, 1]) < 1.0))]
        xyz = (sw["transform_matrix"] @ np.vstack([pts[:, :3].T, np.ones(len(pts))]))[:3].T
        parts.append(np.concatenate([xyz.astype(np.float32), pts[:, 3:4],
                                     np.full((len(pts), 1), sw["time_lag"], np.float32)], axis=1))
    return np.concatenate(parts)


def write_gt_database(root, infos: list[dict], out_dir: Path, max_sweeps: int, used_classes=None) -> Path:
    """OpenPCDet's ``create_groundtruth_database`` output for these infos (the split's frames only):
    one .bin of float32 (x, y, z, intensity, time lag) per object, relative to the box centre, and
    ``nuscenes_dbinfos_<n>sweeps_withvelo.pkl``. Paths are absolute (OpenPCDet joins them to its
    root path, which leaves an absolute path unchanged).

    With ``used_classes`` every one of them is a key, empty when the split has no object of it:
    OpenPCDet's DataBaseSampler indexes the database by every configured class."""
    root = Path(root)
    db_dir = out_dir / f"gt_database_{max_sweeps}sweeps_withvelo"
    db_dir.mkdir(parents=True, exist_ok=True)
    all_db: dict[str, list] = {str(c): [] for c in (used_classes or [])}
    for idx, info in enumerate(infos):
        points = _info_points(root, info, max_sweeps)
        for i, (box, name) in enumerate(zip(info["gt_boxes"], info["gt_names"])):
            gt_points = points[points_in_box(points, box)].copy()
            gt_points[:, :3] -= box[:3]
            path = db_dir / f"{idx}_{name}_{i}.bin"
            gt_points.astype(np.float32).tofile(path)
            if used_classes is None or name in used_classes:
                all_db.setdefault(str(name), []).append({
                    "name": str(name), "path": str(path), "image_idx": idx, "gt_idx": i, "box3d_lidar": box,
                    "num_points_in_gt": gt_points.shape[0], "token": info["token"]})
    return write_pickle(all_db, out_dir / f"nuscenes_dbinfos_{max_sweeps}sweeps_withvelo.pkl")


# ------------------------------------------------------------------------------------------------
# Waymo: OpenPCDet's processed-data layout from our converted frames
# ------------------------------------------------------------------------------------------------

WAYMO_TAG = "xmb_processed_data"      # PROCESSED_DATA_TAG: DATA_PATH/<tag>/<sequence>/<sequence>.pkl, %04d.npy


def _waymo_annos(boxes: list[dict]) -> dict:
    """A frame's ``annos`` as OpenPCDet's waymo_utils.generate_labels writes them (vehicle frame;
    gt_boxes_lidar = x, y, z, length, width, height, heading)."""
    n = len(boxes)
    lwh = np.asarray([[b["wlh"][1], b["wlh"][0], b["wlh"][2]] for b in boxes], np.float32).reshape(n, 3)
    loc = np.asarray([b["center"] for b in boxes], np.float32).reshape(n, 3)
    yaw = np.asarray([b["yaw"] for b in boxes], np.float32).reshape(n)
    return {"name": np.asarray([b["name"] or "unknown" for b in boxes], dtype="<U10"),
            "difficulty": np.asarray([b.get("difficulty", 0) for b in boxes], np.int32),
            "dimensions": lwh, "location": loc, "heading_angle": yaw,
            "obj_ids": np.asarray([b.get("token", str(i)) for i, b in enumerate(boxes)]),
            "tracking_difficulty": np.asarray([b.get("tracking_difficulty", 0) for b in boxes], np.int32),
            "num_points_in_gt": np.asarray([b.get("num_lidar_pts", 0) for b in boxes], np.int32),
            "gt_boxes_lidar": np.concatenate([loc, lwh, yaw[:, None]], axis=1).reshape(n, 7)}


def write_waymo_sequence(index: dict, labels: dict | None, tokens, data_path: Path, sequence: str) -> list[dict]:
    """The frames ``tokens`` as one OpenPCDet Waymo sequence: ``<sequence>/%04d.npy`` (x, y, z,
    intensity, elongation, NLZ flag -1; OpenPCDet applies its tanh to the intensity) and the infos
    (returned; the caller writes ``<sequence>.pkl``, possibly cycled). frame_id is our token."""
    from ..atomic import write_npy
    from ..data.sensor_io import read_waymo_points

    root = Path(index["dataroot"])
    frames = {f["token"]: f for f in index["frames"]}
    seq_dir = Path(data_path) / WAYMO_TAG / sequence
    infos = []
    for k, token in enumerate(tokens):
        pts = read_waymo_points(root / frames[token]["lidar_path"])
        out = np.concatenate([pts[:, :5], np.full((len(pts), 1), -1.0, np.float32)], axis=1).astype(np.float32)
        write_npy(seq_dir / f"{k:04d}.npy", out)
        info = {"point_cloud": {"num_features": 6, "lidar_sequence": sequence, "sample_idx": k},
                "frame_id": token, "metadata": {"token": token}, "pose": np.eye(4, dtype=np.float64)}
        if labels is not None:
            info["annos"] = _waymo_annos(labels["frames"][token]["boxes"])
        infos.append(info)
    return infos


def write_waymo_gt_database(data_path: Path, infos: list[dict], out_dir: Path, used_classes) -> Path:
    """OpenPCDet's Waymo ``create_groundtruth_database`` for these infos (the split's frames only):
    per object a float32 .bin of its points (x, y, z relative to the box centre, tanh(intensity),
    elongation) and the dbinfos pickle, keyed by every class in ``used_classes``."""
    from .boxes import points_in_box

    db_dir = Path(out_dir) / "waymo_gt_database"
    db_dir.mkdir(parents=True, exist_ok=True)
    all_db: dict[str, list] = {str(c): [] for c in used_classes}
    for info in infos:
        pc = info["point_cloud"]
        pts = np.load(Path(data_path) / WAYMO_TAG / pc["lidar_sequence"] / f"{pc['sample_idx']:04d}.npy")[:, :5]
        pts[:, 3] = np.tanh(pts[:, 3])
        annos = info["annos"]
        for i, (name, box) in enumerate(zip(annos["name"], annos["gt_boxes_lidar"])):
            if name not in all_db:
                continue
            obj = pts[points_in_box(pts, box)].copy()
            obj[:, :3] -= box[:3]
            path = db_dir / f"{pc['lidar_sequence']}_{pc['sample_idx']:04d}_{name}_{i}.bin"
            obj.astype(np.float32).tofile(path)
            all_db[str(name)].append({"name": str(name), "path": str(path), "sequence_name": pc["lidar_sequence"],
                                      "sample_idx": pc["sample_idx"], "gt_idx": i, "box3d_lidar": box,
                                      "num_points_in_gt": obj.shape[0], "difficulty": int(annos["difficulty"][i])})
    return write_pickle(all_db, Path(out_dir) / f"{WAYMO_TAG}_waymo_dbinfos_train_sampled_1.pkl")


def write_waymo_split(data_path: Path, split: str, sequence: str, infos: list) -> None:
    """ImageSets/<split>.txt naming the sequence, and the sequence's info pickle."""
    sets = Path(data_path) / "ImageSets"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / f"{split}.txt").write_text(f"{sequence}.tfrecord\n")
    write_pickle(infos, Path(data_path) / WAYMO_TAG / sequence / f"{sequence}.pkl")


def waymo_detections(det_annos: list[dict], tokens, class_names) -> list[dict]:
    """OpenPCDet's prediction dicts (result.pkl) as our detections, in the order of ``tokens``."""
    by_token = {str(d["frame_id"]): d for d in det_annos}
    missing = [t for t in tokens if t not in by_token]
    if missing:
        raise BenchError(f"openpcdet result.pkl: no prediction for {len(missing)} val frame(s), e.g. {missing[0]}")
    out = []
    for t in tokens:
        d = by_token[t]
        out.append({"boxes": np.asarray(d["boxes_lidar"], np.float64).reshape(-1, 7),
                    "scores": np.asarray(d["score"], np.float64),
                    "labels": np.asarray([list(class_names).index(n) + 1 for n in d["name"]], np.int64)})
    return out


def find_result_pkl(out_dir: Path) -> Path | None:
    found = sorted(Path(out_dir).glob("eval/eval_with_train/epoch_*/*/result.pkl"), key=lambda p: p.stat().st_mtime)
    return found[-1] if found else None


# ------------------------------------------------------------------------------------------------
# The command and its results
# ------------------------------------------------------------------------------------------------

def train_command(cfg_file: Path, extra_tag: str, batch_size: int, epochs: int, gpus: int = 1,
                  pretrained: Path | None = None, workers: int = 4, python: str | None = None) -> list[str]:
    """The command line, run from OpenPCDet's tools/ folder with ``python`` (the configured
    interpreter; default: the one running the benchmark, never whatever ``python`` the PATH has).

    Several GPUs: ``torchrun`` (``python -m torch.distributed.run``), which passes each process's
    rank in LOCAL_RANK, the variable train.py reads when ``--local_rank`` is absent; OpenPCDet's
    dist_train.sh uses ``torch.distributed.launch``, whose ``--local-rank=N`` train.py rejects."""
    py = python or sys.executable
    args = ["--cfg_file", str(cfg_file), "--extra_tag", extra_tag, "--batch_size", str(batch_size),
            "--epochs", str(epochs), "--workers", str(workers)]
    if pretrained is not None:
        args += ["--pretrained_model", str(pretrained)]
    if gpus > 1:
        return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "train.py",
                "--launcher", "pytorch", *args]
    return [py, "train.py", *args]


def eval_command(cfg_file: Path, extra_tag: str, batch_size: int, ckpt: Path, gpus: int = 1, workers: int = 4,
                 python: str | None = None) -> list[str]:
    """tools/test.py on one checkpoint of the run (a re-evaluation), launched like train_command."""
    py = python or sys.executable
    args = ["--cfg_file", str(cfg_file), "--extra_tag", extra_tag, "--batch_size", str(batch_size),
            "--ckpt", str(ckpt), "--workers", str(workers)]
    if gpus > 1:
        return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "test.py",
                "--launcher", "pytorch", *args]
    return [py, "test.py", *args]


def openpcdet_env(base: dict | None = None) -> dict:
    """The environment OpenPCDet runs in. torch >= 2.6 loads with ``weights_only=True`` unless told
    otherwise; OpenPCDet's own ``torch.load`` calls (its resume, its evaluation's checkpoint load,
    ``--pretrained_model``) predate that and read full pickles, so the run sets torch's documented
    switch TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (its train.py resume otherwise fails silently and
    restarts from scratch). The checkpoints it loads are the run's own and the benchmark's."""
    env = dict(os.environ if base is None else base)
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_LOADING = re.compile(r"==> Loading parameters from checkpoint (\S+) to")
_DONE = re.compile(r"==> Done \(loaded (\d+)/(\d+)\)")
_NOT_UPDATED = re.compile(r"Not updated weight (\S+):")


def parse_load(log_text: str, checkpoint: Path | str | None = None) -> dict | None:
    """The ``load_params_from_file`` record of our checkpoint: loaded X of Y model tensors and the
    backbone_3d tensors OpenPCDet did not update. None when the log shows no such load."""
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        m = _LOADING.search(line)
        if not m or (checkpoint is not None and Path(m.group(1)).name != Path(checkpoint).name):
            continue
        missed = []
        for later in lines[i + 1:]:
            nu = _NOT_UPDATED.search(later)
            if nu:
                missed.append(nu.group(1))
                continue
            done = _DONE.search(later)
            if done:
                bb_missed = [k for k in missed if k.startswith("backbone_3d.")]
                by_prefix: dict[str, int] = {}
                for k in missed:
                    by_prefix[k.split(".", 1)[0]] = by_prefix.get(k.split(".", 1)[0], 0) + 1
                return {"loaded": int(done.group(1)), "total": int(done.group(2)),
                        "backbone_missed": len(bb_missed), "backbone_missed_keys": bb_missed[:20],
                        "not_updated_by_prefix": by_prefix}
    return None


INIT_PREFIXES = {"BACKBONE_3D": "backbone_3d", "IMAGE_BACKBONE": "image_backbone", "NECK": "neck",
                 "VTRANSFORM": "vtransform", "FUSER": "fuser"}


def model_prefixes(cfg: dict) -> list[str]:
    """The state-dict prefixes of the pretrainable modules the config's MODEL builds (OpenPCDet names
    each module after its MODEL key, lower-cased)."""
    return [prefix for key, prefix in INIT_PREFIXES.items() if key in cfg["MODEL"]]


def init_report(load: dict | None, checkpoint: Path | None, prefixes=("backbone_3d",)) -> dict:
    """Per module prefix of the model, what OpenPCDet's ``load_params_from_file`` filled (the native
    engines' ``init`` record), from its log and our checkpoint. OpenPCDet updates a tensor when name
    and shape match, and logs every model tensor it did not update: when its loaded count equals
    the checkpoint's tensors of the model's modules, each module loaded its checkpoint tensors, out
    of those plus the ones logged as not updated. Checkpoint modules the model does not have (a
    LiDAR-only template given an image backbone) are listed as unused."""
    if checkpoint is None or load is None:
        report = {p: {"loaded": 0, "total": None, "pretrained": False} for p in prefixes}
        report["openpcdet"] = None if load is None else {"loaded": load["loaded"], "total": load["total"]}
        return report
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model_state"]
    counts = {p: sum(1 for k in state if k.startswith(p + ".")) for p in INIT_PREFIXES.values()}
    used = {p: n for p, n in counts.items() if n and p in prefixes}
    all_used = load["loaded"] == sum(used.values())
    report = {}
    for p in prefixes:
        missed = load.get("not_updated_by_prefix", {}).get(p, 0)
        if p not in used:
            report[p] = {"loaded": 0, "total": missed or None, "pretrained": False}
            continue
        loaded = used[p] if all_used else (load["loaded"] if len(used) == 1 else None)
        report[p] = {"loaded": loaded, "total": None if loaded is None else loaded + missed, "pretrained": True}
    report["openpcdet"] = {"loaded": load["loaded"], "total": load["total"],
                           "checkpoint_modules_unused": sorted(p for p, n in counts.items() if n and p not in prefixes)}
    return report


def check_load(load: dict | None, pretrained: bool, log_path) -> None:
    if not pretrained:
        return
    if load is None:
        raise BenchError(f"{log_path}: no '==> Done (loaded X/Y)' record of the pretrained checkpoint; "
                         "OpenPCDet did not load --pretrained_model")
    if load["loaded"] == 0:
        raise BenchError(f"{log_path}: OpenPCDet loaded 0/{load['total']} tensors of the pretrained checkpoint; "
                         "the run would train from scratch (check model.lidar against the OpenPCDet template)")
    if load["backbone_missed"]:
        raise BenchError(f"{log_path}: OpenPCDet left {load['backbone_missed']} backbone_3d tensors at their "
                         f"initial values (e.g. {load['backbone_missed_keys'][0]}); the checkpoint does not match "
                         "the template's BACKBONE_3D")


def parse_log_metrics(log_text: str) -> dict:
    """mAP and NDS of the last evaluation printed in the log (format_nuscene_results' lines)."""
    out = {}
    maps = list(re.finditer(r"mAP:\s+([0-9.]+)", log_text))
    nds = list(re.finditer(r"NDS:\s+([0-9.]+)", log_text))
    if maps:
        out["mean_ap"] = float(maps[-1].group(1))
    if nds:
        out["nds"] = float(nds[-1].group(1))
    return out


def find_metrics_summary(out_dir: Path) -> Path | None:
    """eval/eval_with_train/epoch_<N>/<split>/final_result/data/metrics_summary.json of the last epoch."""
    found = list(Path(out_dir).glob("eval/eval_with_train/epoch_*/*/final_result/data/metrics_summary.json"))
    if not found:
        return None

    def epoch(p: Path) -> float:
        try:
            return float(p.parents[3].name.split("_", 1)[1])
        except ValueError:
            return -1.0
    return max(found, key=epoch)


def latest_train_log(out_dir: Path) -> Path | None:
    logs = sorted(Path(out_dir).glob("train_*.log"))
    return logs[-1] if logs else None


def count_predictions(out_dir: Path) -> int | None:
    """Boxes in the last results_nusc.json OpenPCDet wrote for the run (None: it wrote none)."""
    import json

    found = sorted(Path(out_dir).glob("eval/**/results_nusc.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    results = json.loads(found[-1].read_text()).get("results", {})
    return sum(len(v) for v in results.values())


EMPTY_NOTE = ("the model predicted no box on the val frames; scored 0 (the devkit's evaluation cannot take an "
              "empty prediction set)")


def read_results(out_dir: Path, checkpoint: Path | None, class_names=None, allow_empty: bool = False) -> dict:
    """Our metrics (and the load record) from an OpenPCDet output folder. ``allow_empty``: the run's
    evaluation stopped on an empty prediction set, which scores 0 with a note."""
    import json

    from ..data.nuscenes.detection_eval import empty_prediction_metrics, summary_to_metrics

    log = latest_train_log(out_dir)
    if log is None:
        raise BenchError(f"{out_dir}: no train_*.log; OpenPCDet did not start (see openpcdet_stdout.log)")
    text = log.read_text(errors="replace")
    load = parse_load(text, checkpoint) if checkpoint is not None else None
    check_load(load, checkpoint is not None, log)
    summary_path = find_metrics_summary(out_dir)
    if allow_empty and count_predictions(out_dir) == 0:
        metrics = empty_prediction_metrics(class_names or [])
        metrics["note"] = EMPTY_NOTE
    elif summary_path is not None:
        metrics = summary_to_metrics(json.loads(summary_path.read_text()))
        metrics["metrics_summary"] = str(summary_path)
    else:
        metrics = parse_log_metrics(text)
        if "mean_ap" not in metrics:
            raise BenchError(f"{out_dir}: no metrics_summary.json and no 'mAP:' line in {log.name}; "
                             "the evaluation after training did not run")
    metrics["openpcdet_log"] = str(log)
    return {"metrics": metrics, "load": load}


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)|[A-Za-z_][\w.]*\.[A-Z]\w*|Exception)(:.*)?$")


def error_line(text: str) -> str | None:
    """The exception line of the failing process's traceback (e.g. ``KeyError: 'construction_vehicle'``),
    not the output's last line. Under torchrun the child's traceback comes before torchrun's own
    ChildFailedError; the child's is the one that says what went wrong."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip().startswith("Traceback (most recent call last):"):
            indent = len(line) - len(line.lstrip())
            for later in lines[i + 1:]:
                stripped = later[indent:] if later[:indent].strip() == "" else later
                if stripped and not stripped.startswith(" ") and _EXC_LINE.match(stripped.strip()):
                    found.append(stripped.strip())
                    break
    found = [f for f in found if "ChildFailedError" not in f] or found
    return found[-1] if found else None


def run(command: list[str], root, stdout_path: Path, env=None) -> None:
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stdout_path, "w") as out:
        proc = subprocess.run(command, cwd=Path(root) / "tools", stdout=out, stderr=subprocess.STDOUT,
                              env=openpcdet_env(env))
    if proc.returncode != 0:
        text = stdout_path.read_text(errors="replace")
        line = error_line(text) or next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()),
                                        "(no output)")
        script = next((c for c in command if c.endswith(".py")), command[0])
        raise BenchError(f"openpcdet: {script} exited with {proc.returncode}: {line.strip()[:300]} "
                         f"(full output: {stdout_path})")
