"""OpenPCDet's Waymo processed-data layout from our converted frames, and its predictions read back.

OpenPCDet reads Waymo as its own per-sequence npy/pkl layout, not the tfrecords; the split's
frames are written as one sequence in that layout (with a ground-truth database from those frames
only), and its result.pkl maps back to our tokens.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import BenchError
from .pickles import write_pickle

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
    from ...atomic import write_npy
    from ...data.sensor_io import read_waymo_points

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
    from ..boxes import points_in_box

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
