"""Points to voxels, as OpenPCDet's MeanVFE sees them: the mean of each voxel's points.

OpenPCDet caps a voxel at 10 points (``MAX_POINTS_PER_VOXEL``) before averaging; we average every
point. On 0.075 m voxels almost no voxel holds more than 10 points, so the two agree in practice.
The point-to-voxel index is kept because segmentation labels and predictions live on points.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .voxel_backbone import VoxelGrid


@dataclass
class Voxels:
    features: torch.Tensor      # (V, C) mean point features
    coords: torch.Tensor        # (V, 4) int32 (batch, z, y, x), OpenPCDet's order
    point_to_voxel: torch.Tensor  # (N,) voxel row of each input point, -1 when out of range
    batch_size: int


def voxelize(points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int, grid: VoxelGrid) -> Voxels:
    """``points`` is (N, C) with x, y, z first; ``batch_idx`` says which frame each point is from."""
    pcr = torch.tensor(grid.point_cloud_range, dtype=points.dtype, device=points.device)
    vs = torch.tensor(grid.voxel_size, dtype=points.dtype, device=points.device)
    gx, gy, gz = grid.grid_size
    ijk = torch.floor((points[:, :3] - pcr[:3]) / vs).long()
    inside = ((ijk >= 0) & (ijk < torch.tensor([gx, gy, gz], device=points.device))).all(dim=1)
    lin = ((batch_idx.long() * gz + ijk[:, 2]) * gy + ijk[:, 1]) * gx + ijk[:, 0]
    lin = torch.where(inside, lin, torch.full_like(lin, -1))
    keys, inverse = torch.unique(lin[inside], return_inverse=True)
    n_vox = keys.numel()
    feats = torch.zeros(n_vox, points.shape[1], dtype=points.dtype, device=points.device)
    feats.index_add_(0, inverse, points[inside])
    counts = torch.bincount(inverse, minlength=n_vox).clamp(min=1).to(points.dtype)
    feats = feats / counts[:, None]
    x = keys % gx
    y = (keys // gx) % gy
    z = (keys // (gx * gy)) % gz
    b = keys // (gx * gy * gz)
    coords = torch.stack([b, z, y, x], dim=1).int()
    p2v = torch.full((points.shape[0],), -1, dtype=torch.long, device=points.device)
    p2v[inside] = inverse
    return Voxels(feats, coords, p2v, batch_size)
