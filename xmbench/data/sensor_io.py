"""Reading the raw files of a frame, with one clear error naming the file when one is bad."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..errors import BenchError

PCD_COLUMNS = 5  # x, y, z, intensity, ring index (nuScenes .pcd.bin)
WAYMO_COLUMNS = 7  # x, y, z, intensity, elongation, return index, lidar id (xmbench.data.waymo.tf.convert)


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


def _read_npy(path: Path, what: str) -> np.ndarray:
    if not path.is_file():
        raise BenchError(f"{path}: {what} file missing (re-run the build_index rule, which converts Waymo frames)")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise BenchError(f"{path}: unreadable .npy ({exc}); re-run the build_index rule") from None


def read_waymo_points(path: str | Path) -> np.ndarray:
    path = Path(path)
    pts = _read_npy(path, "LiDAR")
    if pts.ndim != 2 or pts.shape[1] != WAYMO_COLUMNS or pts.dtype != np.float32:
        raise BenchError(f"{path}: expected float32 (N, {WAYMO_COLUMNS}) Waymo points, got {pts.dtype} {pts.shape}; "
                         "re-run the build_index rule")
    if not np.isfinite(pts).all():
        raise BenchError(f"{path}: Waymo points hold non-finite values; re-run the build_index rule")
    return pts


def read_waymo_seg(path: str | Path, n_points: int) -> np.ndarray:
    """The class column of a converted Waymo segmentation file (instance, class per point)."""
    path = Path(path)
    seg = _read_npy(path, "segmentation label")
    if seg.ndim != 2 or seg.shape[1] != 2 or not np.issubdtype(seg.dtype, np.integer) or len(seg) != n_points:
        raise BenchError(f"{path}: expected integer (N, 2) labels for a cloud of {n_points} points, got "
                         f"{seg.dtype} {seg.shape}; the label file does not belong to this cloud")
    return seg[:, 1].astype(np.int64)


def read_lidarseg(path: str | Path, n_points: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: lidarseg label file missing")
    labels = np.fromfile(path, dtype=np.uint8)
    if labels.size != n_points:
        raise BenchError(f"{path}: {labels.size} labels for a cloud of {n_points} points; "
                         "the label file does not belong to this cloud or is truncated")
    return labels


def read_image(path: str | Path, at_least: tuple[int, int] | None = None) -> Image.Image:
    """The image in RGB. ``at_least`` (w, h): a JPEG may be decoded at 1/2, 1/4 or 1/8 scale in the
    DCT domain (PIL's draft mode) as long as it stays at least that large: a 1600 x 900 camera bound
    for a 704 x 256 network input decodes at half size, about three times faster. ``.info["full_size"]``
    keeps the stored size, which the intrinsics refer to."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: camera image missing (re-generate or re-download the dataset)")
    try:
        with Image.open(path) as im:
            full = im.size
            if at_least is not None and im.format == "JPEG":
                im.draft("RGB", tuple(int(v) for v in at_least))
            out = im.convert("RGB")
            out.info["full_size"] = full
            return out
    except (UnidentifiedImageError, OSError) as exc:
        raise BenchError(f"{path}: unreadable image ({exc}); re-generate or re-download it") from None
