"""Reading the raw files of a frame, with one clear error naming the file when one is bad."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BenchError

PCD_COLUMNS = 5  # x, y, z, intensity, ring index (nuScenes .pcd.bin)


def read_pcd_bin(path: str | Path) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: LiDAR file missing (re-generate or re-download the dataset)")
    size = path.stat().st_size
    if size == 0 or size % (4 * PCD_COLUMNS):
        raise BenchError(f"{path}: truncated .pcd.bin ({size} bytes is not a positive multiple of "
                         f"{4 * PCD_COLUMNS}, i.e. 5 float32 per point); re-generate or re-download it")
    pts = np.fromfile(path, dtype=np.float32).reshape(-1, PCD_COLUMNS)
    if not np.isfinite(pts).all():
        raise BenchError(f"{path}: .pcd.bin holds non-finite values; re-generate or re-download it")
    return pts


def read_lidarseg(path: str | Path, n_points: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: lidarseg label file missing")
    labels = np.fromfile(path, dtype=np.uint8)
    if labels.size != n_points:
        raise BenchError(f"{path}: {labels.size} labels for a cloud of {n_points} points; "
                         "the label file does not belong to this cloud or is truncated")
    return labels


def read_image(path: str | Path) -> Image.Image:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: camera image missing (re-generate or re-download the dataset)")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchError(f"{path}: unreadable image ({exc}); re-generate or re-download it") from None
