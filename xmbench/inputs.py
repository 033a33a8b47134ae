"""Checks of a finetuning cell's inputs before any training, so a bad file costs seconds, not a run.

Each names the file and the fix in one line (a BenchError): a checkpoint that changed after its
pretraining (its sha256 no longer the one pretrain.json recorded), and val label files that do not
match their clouds (which the devkit would only report, unnamed, after the whole training).
"""
from __future__ import annotations

from pathlib import Path

from .atomic import sha256_file
from .errors import BenchError

PCD_BYTES_PER_POINT = 5 * 4  # nuScenes .pcd.bin: 5 float32 per point


def pretrained_checkpoint(record_path: Path, record: dict) -> tuple[Path, str]:
    """The checkpoint a pretrain.json names and its sha256, refused when it is not the one recorded.

    A relative path is relative to the record's folder, so a copied results folder finetunes from
    its own checkpoint; an absolute one (records written before) is taken as it is.
    """
    record_path = Path(record_path)
    given = record.get("checkpoint")
    if not given:
        raise BenchError(f"{record_path}: field 'checkpoint' is empty though status is ok; delete the file to "
                         "re-run the pretraining")
    path = Path(given) if Path(given).is_absolute() else record_path.parent / given
    if not path.is_file():
        raise BenchError(f"{path}: checkpoint missing (named by {record_path}); delete {record_path} to re-run "
                         "the pretraining")
    digest, recorded = sha256_file(path), record.get("checkpoint_sha256")
    if recorded is None:
        raise BenchError(f"{record_path}: no 'checkpoint_sha256' to check {path} against; delete it to re-run "
                         "the pretraining")
    if digest != recorded:
        raise BenchError(f"{path}: changed since pretraining (sha256 {digest[:12]}..., {record_path.name} "
                         f"recorded {recorded[:12]}...); restore it, or delete {record_path} to pretrain again")
    return path, digest


def _npy_shape(path: Path, what: str) -> tuple[int, ...]:
    """A .npy file's shape from its header alone (no data read)."""
    import numpy as np

    try:
        with open(path, "rb") as f:
            fmt = np.lib.format
            version = fmt.read_magic(f)
            read_header = fmt.read_array_header_1_0 if version == (1, 0) else fmt.read_array_header_2_0
            shape, _, _ = read_header(f)
        return tuple(shape)
    except FileNotFoundError:
        raise BenchError(f"{path}: val {what} file missing; re-run the build_index rule (or re-convert "
                         "the Waymo validation segments)") from None
    except (OSError, ValueError) as exc:
        raise BenchError(f"{path}: not a .npy {what} file ({exc}); re-run the build_index rule") from None


def _check_val_waymo_seg(index: dict, labels: dict) -> int:
    """Waymo: every val segmentation file is (N, 2), N the points of its converted cloud (headers only)."""
    root = Path(index["dataroot"])
    checked = 0
    for frame in index["frames"]:
        rel = (labels["frames"].get(frame["token"]) or {}).get("lidarseg_path")
        if frame["split"] != "val" or not rel:
            continue
        seg, cloud = root / rel, root / frame["lidar_path"]
        seg_shape, cloud_shape = _npy_shape(seg, "segmentation label"), _npy_shape(cloud, "LiDAR")
        if len(seg_shape) != 2 or seg_shape[1] != 2 or not cloud_shape or seg_shape[0] != cloud_shape[0]:
            raise BenchError(f"{seg}: labels of shape {seg_shape} for the {cloud_shape[:1]} points of "
                             f"{cloud.name}; the label file does not belong to this cloud or is truncated: "
                             "re-run the build_index rule")
        checked += 1
    return checked


def check_val_lidarseg(index: dict, labels: dict) -> int:
    """Every val segmentation label file holds one label per point of its keyframe cloud, so a bad
    file is refused before training instead of failing the scoring after it.

    Returns how many files were checked. Sizes only (one stat per nuScenes file, one .npy header per
    Waymo file): cheap enough for every cell.
    """
    if index.get("format") == "waymo":
        return _check_val_waymo_seg(index, labels)
    root = Path(index["dataroot"])
    checked = 0
    for frame in index["frames"]:
        if frame["split"] != "val":
            continue
        rel = (labels["frames"].get(frame["token"]) or {}).get("lidarseg_path")
        if not rel:
            continue
        seg, cloud = root / rel, root / frame["lidar_path"]
        if not seg.is_file():
            raise BenchError(f"{seg}: val lidarseg file missing (frame {frame['token']}); re-generate or "
                             "re-download the dataset's lidarseg folder")
        if not cloud.is_file():
            raise BenchError(f"{cloud}: val LiDAR file missing (frame {frame['token']}); re-generate or "
                             "re-download the dataset")
        n_points = cloud.stat().st_size // PCD_BYTES_PER_POINT
        if seg.stat().st_size != n_points:
            raise BenchError(f"{seg}: {seg.stat().st_size} labels for the {n_points} points of {cloud.name}; "
                             "the label file does not belong to this cloud or is truncated: re-generate or "
                             "re-download it")
        checked += 1
    return checked
