"""Augmentations methods ask for; each returns its parameters so a view can be mapped back exactly.

All randomness comes from the torch.Generator the harness passes in the batch, which is seeded by
(seed, epoch, step): a resumed run draws exactly what the uninterrupted run drew.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass
class PointView:
    points: torch.Tensor      # (M, C) augmented points
    batch_idx: torch.Tensor   # (M,)
    keep: torch.Tensor        # (M,) row of each kept point in the input cloud
    matrix: torch.Tensor      # (B, 3, 3) linear part applied to xyz (rotation @ scale @ flip)
    translation: torch.Tensor  # (B, 3)

    def unaugment(self, xyz: torch.Tensor, batch_idx: torch.Tensor) -> torch.Tensor:
        """Map augmented coordinates back to the input frame through the inverse transform."""
        inv = torch.linalg.inv(self.matrix)[batch_idx]
        return torch.einsum("nij,nj->ni", inv, xyz - self.translation[batch_idx])


def _uniform(g: torch.Generator, n: int, lo: float, hi: float) -> torch.Tensor:
    return lo + (hi - lo) * torch.rand(n, generator=g)


def random_view(points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int, g: torch.Generator, *,
                rotation_deg: float = 180.0, scale: tuple[float, float] = (1.0, 1.0), flip: bool = True,
                translation: float = 0.0, jitter_std: float = 0.0, jitter_clip: float = float("inf"),
                max_dropout: float = 0.0) -> PointView:
    """Per frame: rotation about z, isotropic scale, flip of y, uniform translation in
    [-translation, translation] per axis, and a dropout ratio drawn in [0, max_dropout]
    (Pointnet2_PyTorch's RandomInputDropout, which CrossPoint uses); per point: clipped jitter."""
    angle = _uniform(g, batch_size, -rotation_deg, rotation_deg) * math.pi / 180.0
    s = _uniform(g, batch_size, *scale)
    f = torch.where(torch.rand(batch_size, generator=g) < 0.5, -1.0, 1.0) if flip else torch.ones(batch_size)
    c, si = torch.cos(angle), torch.sin(angle)
    rot = torch.zeros(batch_size, 3, 3)
    rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1], rot[:, 2, 2] = c, -si, si, c, 1.0
    flip_m = torch.diag_embed(torch.stack([torch.ones(batch_size), f, torch.ones(batch_size)], dim=1))
    # drawn on the CPU from the harness' generator (the same numbers on any device), then moved
    dev = points.device
    matrix = (rot @ flip_m * s[:, None, None]).to(dev)
    trans = ((torch.rand(batch_size, 3, generator=g) * 2 - 1) * translation).to(dev)
    ratio = (torch.rand(batch_size, generator=g) * max_dropout).to(dev)
    keep = torch.nonzero(torch.rand(len(points), generator=g).to(dev) >= ratio[batch_idx]).squeeze(1)
    pts = points[keep].clone()
    b = batch_idx[keep]
    xyz = torch.einsum("nij,nj->ni", matrix[b].to(pts.dtype), pts[:, :3]) + trans[b].to(pts.dtype)
    if jitter_std > 0:
        noise = (torch.randn(xyz.shape, generator=g) * jitter_std).clamp(-jitter_clip, jitter_clip)
        xyz = xyz + noise.to(pts)
    pts[:, :3] = xyz
    return PointView(pts, b, keep, matrix, trans)


def color_jitter(images: torch.Tensor, g: torch.Generator, mean: torch.Tensor, std: torch.Tensor,
                 brightness: float, contrast: float, saturation: float) -> torch.Tensor:
    """torchvision's ColorJitter (brightness, contrast, saturation; no hue) on normalised images."""
    n = images.shape[0]
    x = images * std.view(1, 3, 1, 1) + mean.view(1, 3, 1, 1)
    bf = _uniform(g, n, 1 - brightness, 1 + brightness).view(n, 1, 1, 1).to(images)
    cf = _uniform(g, n, 1 - contrast, 1 + contrast).view(n, 1, 1, 1).to(images)
    sf = _uniform(g, n, 1 - saturation, 1 + saturation).view(n, 1, 1, 1).to(images)
    weights = torch.tensor([0.299, 0.587, 0.114], device=images.device, dtype=images.dtype).view(1, 3, 1, 1)
    x = (x * bf).clamp(0, 1)
    gray_mean = (x * weights).sum(1, keepdim=True).mean(dim=(2, 3), keepdim=True)
    x = ((x - gray_mean) * cf + gray_mean).clamp(0, 1)
    gray = (x * weights).sum(1, keepdim=True)
    x = ((x - gray) * sf + gray).clamp(0, 1)
    return (x - mean.view(1, 3, 1, 1)) / std.view(1, 3, 1, 1)


def random_hflip(images: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    flip = (torch.rand(images.shape[0], generator=g) < 0.5).to(images.device)
    out = images.clone()
    out[flip] = out[flip].flip(-1)
    return out, flip
