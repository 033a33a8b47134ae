"""The benchmark's two backbones, built from config so that every method gets identical ones."""
from __future__ import annotations

from .resnet import ResNet
from .voxel_backbone import VoxelGrid, VoxelResBackBone8x, bev_height

POINT_FEATURES = 5  # x, y, z, intensity, time lag (OpenPCDet's nuScenes NUM_POINT_FEATURES)


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


def build_image_backbone(model_cfg: dict) -> ResNet:
    img = model_cfg["image"]
    return ResNet(depth=img["resnet_depth"], width=img["width"])
