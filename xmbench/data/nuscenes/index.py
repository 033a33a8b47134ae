"""The frame index every later rule reads, built with nuscenes-devkit.

Sensor data (index.json) and labels (labels.json) are written to separate files on purpose: the
pretraining rule takes only the first as input, so pretraining cannot see a label even by mistake.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...atomic import write_json
from ...errors import BenchError
from ..geometry import transform, yaw_of
from .tables import diagnose

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")


def _open_nuscenes(dataroot: Path, version: str):
    from nuscenes.nuscenes import NuScenes

    if not (Path(dataroot) / version).is_dir():
        raise BenchError(f"{Path(dataroot) / version}: nuScenes tables not found "
                         f"(set datasets.<name>.root to the folder holding {version}/)")
    try:
        return NuScenes(version=version, dataroot=str(dataroot), verbose=False)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, AssertionError, IndexError) as exc:
        raise diagnose(Path(dataroot) / version, exc) from None


def _sensor_to_global(nusc, sd: dict) -> np.ndarray:
    cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
    pose = nusc.get("ego_pose", sd["ego_pose_token"])
    return transform(pose["translation"], pose["rotation"]) @ transform(cs["translation"], cs["rotation"])


def _sweeps(nusc, lidar_sd: dict, key_to_global: np.ndarray, nsweeps: int) -> list[dict]:
    """Previous LiDAR sweeps, as OpenPCDet's nuScenes infos hold them: path, time lag, transform."""
    out, sd = [], lidar_sd
    global_to_key = np.linalg.inv(key_to_global)
    while len(out) < nsweeps - 1 and sd["prev"]:
        sd = nusc.get("sample_data", sd["prev"])
        out.append({
            "path": sd["filename"],
            "time_lag": (lidar_sd["timestamp"] - sd["timestamp"]) * 1e-6,
            "to_key_lidar": (global_to_key @ _sensor_to_global(nusc, sd)).tolist(),
        })
    return out


def _frame(nusc, sample: dict, scene_name: str, split: str, nsweeps: int) -> dict:
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    lidar_to_global = _sensor_to_global(nusc, lidar_sd)
    cams = {}
    for cam in CAMERAS:
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        lidar_to_cam = np.linalg.inv(_sensor_to_global(nusc, sd)) @ lidar_to_global
        cams[cam] = {"path": sd["filename"], "intrinsic": cs["camera_intrinsic"],
                     "lidar_to_cam": lidar_to_cam.tolist(), "width": sd["width"], "height": sd["height"]}
    return {
        "token": sample["token"], "scene": scene_name, "split": split, "timestamp": sample["timestamp"],
        "lidar_token": lidar_sd["token"], "lidar_path": lidar_sd["filename"],
        "lidar_to_global": lidar_to_global.tolist(),
        "sweeps": _sweeps(nusc, lidar_sd, lidar_to_global, nsweeps), "cams": cams,
    }


def _labels(nusc, sample: dict, lidar_to_global: np.ndarray) -> dict:
    """Boxes in the keyframe LiDAR frame, with detection names and velocities, plus the lidarseg file."""
    from nuscenes.eval.detection.utils import category_to_detection_name

    global_to_lidar = np.linalg.inv(lidar_to_global)
    boxes = []
    for ann_token in sample["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        g = transform(ann["translation"], ann["rotation"])
        local = global_to_lidar @ g
        vel = nusc.box_velocity(ann_token)[:2]
        vel_local = global_to_lidar[:2, :2] @ np.nan_to_num(vel)
        boxes.append({
            "token": ann_token, "category": ann["category_name"],
            "name": category_to_detection_name(ann["category_name"]),
            "center": local[:3, 3].tolist(), "wlh": ann["size"], "yaw": yaw_of(local[:3, :3]),
            "velocity": vel_local.tolist(), "num_lidar_pts": ann["num_lidar_pts"],
            "attributes": [nusc.get("attribute", a)["name"] for a in ann["attribute_tokens"]],
        })
    lidarseg = None
    if getattr(nusc, "lidarseg", None):
        rec = nusc.get("lidarseg", sample["data"]["LIDAR_TOP"])
        lidarseg = rec["filename"]
    return {"boxes": boxes, "lidarseg_path": lidarseg}


def _class_maps(nusc) -> dict:
    """The devkit's 32 -> 16 lidarseg mapping, stored so finetuning needs no devkit to read labels."""
    if not getattr(nusc, "lidarseg", None):
        return {"lidarseg_fine_to_coarse": [], "lidarseg_coarse_names": []}
    from nuscenes.eval.lidarseg.utils import LidarsegClassMapper

    mapper = LidarsegClassMapper(nusc)
    fine2coarse = mapper.get_fine_idx_2_coarse_idx()
    lut = [int(fine2coarse[i]) for i in range(max(fine2coarse) + 1)]
    names = sorted(mapper.coarse_name_2_coarse_idx_mapping, key=mapper.coarse_name_2_coarse_idx_mapping.get)
    return {"lidarseg_fine_to_coarse": lut, "lidarseg_coarse_names": names}


def build_index(dataroot: str | Path, version: str, splits: dict[str, str], nsweeps: int,
                dataset: str) -> tuple[dict, dict]:
    """``splits`` maps our split names ('train', 'val') to the devkit's (e.g. 'mini_train')."""
    from nuscenes.utils.splits import create_splits_scenes

    nusc = _open_nuscenes(Path(dataroot), version)
    devkit_splits = create_splits_scenes(verbose=False)
    scene_split = {}
    for ours, theirs in splits.items():
        if theirs not in devkit_splits:
            raise BenchError(f"split '{theirs}' is not a nuscenes-devkit split (known: {sorted(devkit_splits)})")
        scene_split.update({name: ours for name in devkit_splits[theirs]})
    frames, labels = [], {}
    for scene in nusc.scene:
        split = scene_split.get(scene["name"])
        if split is None:
            continue
        token = scene["first_sample_token"]
        while token:
            try:   # the devkit's own index holds, but a record the walk reads may still be broken
                sample = nusc.get("sample", token)
                frame = _frame(nusc, sample, scene["name"], split, nsweeps)
                frames.append(frame)
                labels[sample["token"]] = _labels(nusc, sample, np.asarray(frame["lidar_to_global"]))
            except (KeyError, TypeError, ValueError, IndexError) as exc:
                raise diagnose(Path(dataroot) / version, exc) from None
            token = sample["next"]
    if not frames:
        raise BenchError(f"{dataroot}: no sample of splits {sorted(splits.values())} found in {version}")
    index = {"dataset": dataset, "format": "nuscenes", "version": version,
             "dataroot": str(Path(dataroot).resolve()), "nsweeps": nsweeps,
             "eval_sets": dict(splits), "frames": frames}
    return index, {"dataset": dataset, **_class_maps(nusc), "frames": labels}


def write_index(index: dict, labels: dict, index_path: Path, labels_path: Path) -> None:
    write_json(labels_path, labels, indent=None)
    write_json(index_path, index, indent=None)
