"""Frames as the networks see them: points, images and calibrations, and labels only on request.

``FrameDataset(index, tokens, ...)`` with ``labels=None`` is what pretraining uses; it has no path
to a label. Finetuning passes the labels table and gets per-point classes and boxes too.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import BenchError
from .geometry import apply
from .sensor_io import read_image, read_lidarseg, read_pcd_bin, read_waymo_points, read_waymo_seg

IMAGE_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGE_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)
# the same normalisation in one multiply-add on 0..255 values (one pass over the image, not three)
IMAGE_MEAN_255 = IMAGE_MEAN * 255.0
IMAGE_INV_STD_255 = 1.0 / (IMAGE_STD * 255.0)
LABEL_KEYS = ("seg_labels", "boxes")


def load_json(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found (run the rule that builds it first)")
    return json.loads(path.read_text())


def index_format(index: dict) -> str:
    """The dataset format of an index: Waymo's converter records it; a nuScenes index (built by
    xmbench.data.nuscenes.index) has no such key."""
    return index.get("format", "nuscenes")


def load_points(dataroot: Path, frame: dict, fmt: str = "nuscenes") -> tuple[np.ndarray, int]:
    """(N, 5) point features and how many of them are the keyframe's (they come first).

    nuScenes: x, y, z, intensity, time lag, in the keyframe LiDAR frame (OpenPCDet's nuScenes
    features). Waymo: x, y, z, tanh(intensity), elongation, in the vehicle frame, all five lidars
    and both returns: OpenPCDet's Waymo ``used_feature_list`` with its tanh on intensity
    (pcdet/datasets/waymo/waymo_dataset.py).
    """
    if fmt == "waymo":
        pts = read_waymo_points(dataroot / frame["lidar_path"])
        out = pts[:, :5].copy()
        out[:, 3] = np.tanh(out[:, 3])
        return out, len(out)
    key = read_pcd_bin(dataroot / frame["lidar_path"])
    parts = [np.concatenate([key[:, :4], np.zeros((len(key), 1), np.float32)], axis=1)]
    for sweep in frame["sweeps"]:
        pts = read_pcd_bin(dataroot / sweep["path"])
        xyz = apply(np.asarray(sweep["to_key_lidar"]), pts[:, :3].astype(np.float64))
        lag = np.full((len(pts), 1), sweep["time_lag"], np.float32)
        parts.append(np.concatenate([xyz.astype(np.float32), pts[:, 3:4], lag], axis=1))
    return np.concatenate(parts, axis=0), len(key)


def load_camera(dataroot: Path, cam: dict, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Image resized to ``size`` (w, h) and normalised, with the intrinsic scaled to match."""
    if not cam.get("path"):
        raise BenchError(f"{dataroot}: a camera of the index has no image (its TFRecord frame holds none); "
                         "methods that read images need TFRecords with camera images")
    img = read_image(dataroot / cam["path"], at_least=size)
    full_w, full_h = img.info["full_size"]
    sx, sy = size[0] / full_w, size[1] / full_h
    if img.size != tuple(size):
        img = img.resize(size, Image.BILINEAR)
    arr = np.asarray(img, dtype=np.float32)
    arr = ((arr - IMAGE_MEAN_255) * IMAGE_INV_STD_255).transpose(2, 0, 1)
    k = np.asarray(cam["intrinsic"], dtype=np.float64).copy()
    k[0] *= sx
    k[1] *= sy
    return arr, k


@dataclass
class FrameDataset(torch.utils.data.Dataset):
    index: dict
    tokens: list[str]
    image_size: tuple[int, int]
    labels: dict | None = None
    with_images: bool = True

    def __post_init__(self):
        self.dataroot = Path(self.index["dataroot"])
        self.format = index_format(self.index)
        by_token = {f["token"]: f for f in self.index["frames"]}
        missing = [t for t in self.tokens if t not in by_token]
        if missing:
            raise BenchError(f"{len(missing)} frame token(s) not in the index, e.g. {missing[0]}; "
                             "the split file does not belong to this dataset")
        self.frames = [by_token[t] for t in self.tokens]
        if self.labels is not None:
            self.fine_to_coarse = np.asarray(self.labels["lidarseg_fine_to_coarse"], dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict:
        frame = self.frames[i]
        points, n_key = load_points(self.dataroot, frame, self.format)
        item = {"token": frame["token"], "points": torch.from_numpy(points), "n_key_points": n_key}
        if self.with_images:
            imgs, ks, l2c = [], [], []
            for cam in frame["cams"].values():
                arr, k = load_camera(self.dataroot, cam, tuple(self.image_size))
                imgs.append(arr)
                ks.append(k)
                l2c.append(cam["lidar_to_cam"])
            item["images"] = torch.from_numpy(np.stack(imgs))
            item["intrinsics"] = torch.tensor(np.stack(ks), dtype=torch.float32)
            item["lidar_to_cam"] = torch.tensor(np.asarray(l2c), dtype=torch.float32)
        if self.labels is not None:
            item.update(self._labels(frame, points, n_key))
        return item

    def _labels(self, frame: dict, points: np.ndarray, n_key: int) -> dict:
        rec = self.labels["frames"][frame["token"]]
        seg = np.zeros(len(points), dtype=np.int64)  # sweep points carry no label: ignore (0)
        if rec["lidarseg_path"] and self.format == "waymo":  # Waymo's 23 classes: no mapping; 0 is ignored
            seg[:n_key] = read_waymo_seg(self.dataroot / rec["lidarseg_path"], n_key)
        elif rec["lidarseg_path"]:
            fine = read_lidarseg(self.dataroot / rec["lidarseg_path"], n_key)
            seg[:n_key] = self.fine_to_coarse[fine]
        return {"seg_labels": torch.from_numpy(seg), "boxes": rec["boxes"]}


def collate(items: list[dict]) -> dict:
    """Points of all frames in one (N, 5) tensor with a batch index, OpenPCDet's batch layout."""
    batch = {"tokens": [it["token"] for it in items], "batch_size": len(items),
             "points": torch.cat([it["points"] for it in items]),
             "batch_idx": torch.cat([torch.full((len(it["points"]),), b, dtype=torch.long)
                                     for b, it in enumerate(items)]),
             "n_key_points": [it["n_key_points"] for it in items]}
    for key in ("images", "intrinsics", "lidar_to_cam"):
        if key in items[0]:
            batch[key] = torch.stack([it[key] for it in items])
    if "seg_labels" in items[0]:
        batch["seg_labels"] = torch.cat([it["seg_labels"] for it in items])
        batch["boxes"] = [it["boxes"] for it in items]
    return batch
