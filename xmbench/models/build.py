"""The benchmark's shared modules, built from config so that every method and every downstream model
gets identical ones: the two backbones, and the camera branch's neck, lift and fuser.

The camera-branch sizes live under ``model.image`` (``neck``, ``lift``, ``fuser``); absent keys take
BEVFusion's values (OpenPCDet tools/cfgs/nuscenes_models/bevfusion.yaml), so a checkpoint that
pretrains them seeds OpenPCDet's BEVFusion. The splat grid is always the LiDAR BEV grid at stride 8
(``downsample`` times finer before the lift's last convs), so camera and LiDAR maps align cell by cell.
"""
from __future__ import annotations

import math

from torch import nn

from .fuser import ConvFuser
from .image_neck import GeneralizedLSSFPN
from .lss import LSSTransform
from .resnet import ResNet
from .swin import SwinSettings, SwinTransformer
from .voxel_backbone import VoxelGrid, VoxelResBackBone8x, bev_height

POINT_FEATURES = 5  # x, y, z, intensity, time lag (OpenPCDet's nuScenes NUM_POINT_FEATURES)
BEV_STRIDE = 8      # VoxelResBackBone8x's output stride, which the camera BEV map shares

# OpenPCDet tools/cfgs/nuscenes_models/bevfusion.yaml: NECK OUT_CHANNELS; VTRANSFORM OUT_CHANNEL,
# DBOUND, ZBOUND, DOWNSAMPLE; FUSER OUT_CHANNEL. depth_bins None = DBOUND's 118 bins.
NECK_DEFAULTS = {"channels": 256}
LIFT_DEFAULTS = {"channels": 80, "dbound": [1.0, 60.0, 0.5], "depth_bins": None, "zbound": [-10.0, 10.0, 20.0],
                 "downsample": 2}
FUSER_DEFAULTS = {"channels": 256}


def voxel_grid(model_cfg: dict) -> VoxelGrid:
    lidar = model_cfg["lidar"]
    grid = VoxelGrid(tuple(lidar["voxel_size"]), tuple(lidar["point_cloud_range"]))
    gx, gy, gz = grid.grid_size
    if gx % 8 or gy % 8:
        raise ValueError(f"model.lidar: the x/y grid {gx}x{gy} must be divisible by 8 (stride of the backbone)")
    if bev_height(gz) < 1:
        raise ValueError(f"model.lidar: {gz} voxels in z are too few for four z-downsamplings; use >= 24")
    return grid


def build_lidar_backbone(model_cfg: dict) -> VoxelResBackBone8x:
    return VoxelResBackBone8x(POINT_FEATURES, voxel_grid(model_cfg))


def build_image_backbone(model_cfg: dict) -> ResNet | SwinTransformer:
    """``model.image.arch``: ``resnet`` (the default) or ``swin`` (BEVFusion's; ``model.image.swin``)."""
    img = model_cfg["image"]
    arch = img.get("arch", "resnet")
    if arch == "swin":
        return SwinTransformer(SwinSettings.from_cfg(img.get("swin")))
    if arch != "resnet":
        raise ValueError(f"model.image.arch: unknown architecture {arch!r} (known: resnet, swin)")
    missing = [k for k in ("resnet_depth", "width") if k not in img]
    if missing:
        raise ValueError(f"model.image: arch resnet needs {', '.join(missing)}")
    return ResNet(depth=img["resnet_depth"], width=img["width"])


def _section(model_cfg: dict, name: str, defaults: dict) -> dict:
    given = model_cfg["image"].get(name) or {}
    unknown = set(given) - set(defaults)
    if unknown:
        raise ValueError(f"model.image.{name}: unknown key(s) {sorted(unknown)} (known: {', '.join(defaults)})")
    return {**defaults, **given}


def neck_settings(model_cfg: dict) -> dict:
    return _section(model_cfg, "neck", NECK_DEFAULTS)


def lift_settings(model_cfg: dict) -> dict:
    """``depth_bins`` absent from ``model.image.lift`` falls back to ``model.render.depth_bins``, where
    the CPU configs have kept CLAP's coarser depth bins, so that pretraining and finetuning read one value."""
    lift = _section(model_cfg, "lift", LIFT_DEFAULTS)
    if "depth_bins" not in (model_cfg["image"].get("lift") or {}):
        lift["depth_bins"] = (model_cfg.get("render") or {}).get("depth_bins")
    return lift


def fuser_settings(model_cfg: dict) -> dict:
    return _section(model_cfg, "fuser", FUSER_DEFAULTS)


def image_hw(model_cfg: dict) -> tuple[int, int]:
    w, h = model_cfg["image"]["size"]
    return h, w


def feature_hw(model_cfg: dict) -> tuple[int, int]:
    """Size of the stride-8 maps of either encoder: each stride-2 step rounds up (padding)."""
    h, w = image_hw(model_cfg)
    return math.ceil(h / 8), math.ceil(w / 8)


def build_image_neck(model_cfg: dict, image_backbone: nn.Module) -> GeneralizedLSSFPN:
    """Reads the encoder's last three maps (strides 8, 16, 32), as BEVFusion's neck reads Swin-T's."""
    strides = list(image_backbone.out_strides[-3:])
    if len(strides) < 2 or strides[0] != 8:
        raise ValueError(f"the camera neck needs the image encoder's maps from stride 8 on; it gives strides "
                         f"{list(image_backbone.out_strides)} (model.image.swin.out_indices)")
    return GeneralizedLSSFPN(list(image_backbone.out_channels[-3:]), neck_settings(model_cfg)["channels"])


def lift_bounds(model_cfg: dict) -> tuple[tuple, tuple, tuple]:
    """x, y bounds (start, stop, cell) of the splat grid: the LiDAR BEV grid, ``downsample`` times finer
    (paper config: 0.075 m voxels x 8 / 2 = 0.3 m over +-54 m, BEVFusion's XBOUND / YBOUND)."""
    grid = voxel_grid(model_cfg)
    lift = lift_settings(model_cfg)
    pcr, vs = grid.point_cloud_range, grid.voxel_size
    cell = [round(vs[i] * BEV_STRIDE / lift["downsample"], 9) for i in (0, 1)]
    return (pcr[0], pcr[3], cell[0]), (pcr[1], pcr[4], cell[1]), tuple(lift["zbound"])


def build_lift(model_cfg: dict, use_lidar_depth: bool = True) -> LSSTransform:
    """BEVFusion's DepthLSSTransform (``use_lidar_depth``) or, for a cameras-only model, plain LSS."""
    lift = lift_settings(model_cfg)
    xb, yb, zb = lift_bounds(model_cfg)
    return LSSTransform(neck_settings(model_cfg)["channels"], lift["channels"], image_hw(model_cfg),
                        feature_hw(model_cfg), xb, yb, zb, lift["dbound"], depth_bins=lift["depth_bins"],
                        downsample=lift["downsample"], use_lidar_depth=use_lidar_depth)


def build_fuser(model_cfg: dict, lidar_channels: int) -> ConvFuser:
    """``lidar_channels``: the LiDAR BEV map's (``VoxelResBackBone8x.num_bev_features``, 256 on nuScenes)."""
    return ConvFuser(lift_settings(model_cfg)["channels"], lidar_channels, fuser_settings(model_cfg)["channels"])
