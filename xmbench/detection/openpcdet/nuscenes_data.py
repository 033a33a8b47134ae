"""OpenPCDet's nuScenes inputs cut to the split: the info files and the ground-truth database.

OpenPCDet's own ``create_nuscenes_info`` and ``create_groundtruth_database`` cover the whole
dataset; a split's run must see its frames only (a database from other frames would leak labels
into a low-label split), so both are rebuilt here in OpenPCDet's formats from the split's tokens.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ...errors import BenchError
from ..boxes import points_in_box
from .pickles import write_pickle

# OpenPCDet's map_name_from_general_to_detection: the devkit's detection names, 'ignore' otherwise.
IGNORE = "ignore"


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
