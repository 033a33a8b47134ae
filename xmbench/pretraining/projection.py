"""LiDAR points into the cameras (six on nuScenes, five on Waymo), with the calibrations of the index (scaled to the input size)."""
from __future__ import annotations

import torch


def project_to_cameras(xyz: torch.Tensor, batch_idx: torch.Tensor, lidar_to_cam: torch.Tensor,
                       intrinsics: torch.Tensor, image_hw: tuple[int, int], min_depth: float = 1.0):
    """Returns uv (M, K, 2), depth (M, K) and visible (M, K) for each point and each of K cameras.

    ``min_depth`` of 1 m matches the devkit's `map_pointcloud_to_image`, which drops nearer points.
    """
    t = lidar_to_cam[batch_idx]                       # (M, K, 4, 4)
    cam = torch.einsum("mkij,mj->mki", t[..., :3, :3], xyz) + t[..., :3, 3]
    depth = cam[..., 2]
    uvw = torch.einsum("mkij,mkj->mki", intrinsics[batch_idx], cam)
    uv = uvw[..., :2] / depth.clamp(min=1e-6).unsqueeze(-1)
    h, w = image_hw
    visible = (depth > min_depth) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
    return uv, depth, visible
