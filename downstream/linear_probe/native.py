"""Linear-probe engine: the LiDAR encoder frozen, one linear layer on per-point features.

Per-point feature: the hypercolumn of the frozen encoder, i.e. for each point the features of the
voxel that contains it at every scale (x_conv1..x_conv4: 16 + 32 + 64 + 128 = 240 channels),
standardised by a batch norm without learnable parameters (as in MAE's linear probing), then one
``nn.Linear(240, classes)``. The encoder stays in eval mode (its batch-norm statistics do not move)
and receives no gradient; the run fails if its weights changed.

Data loading, augmentation, the training loop, prediction of every val point and the devkit's
LidarSegEval are the segmentation task's native engine's, loaded from its file (not copied), so
both tasks train and score identically apart from what is trainable.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from torch import nn

from xmbench.errors import BenchError
from xmbench.finetune import FinetuneContext, load_init
from xmbench.models.build import build_lidar_backbone
from xmbench.models.voxelize import voxelize
from xmbench.tasks import load_task

LEVELS = ("x_conv1", "x_conv2", "x_conv3", "x_conv4")
_SEGMENTATION = None


def segmentation_engine():
    """downstream/segmentation/native.py, loaded once through the task registry."""
    global _SEGMENTATION
    if _SEGMENTATION is None:
        _, _SEGMENTATION = load_task("segmentation", Path(__file__).resolve().parent.parent).engine("native")
    return _SEGMENTATION


def _downsampling_conv(block):
    """The strided sparse conv that opens an encoder stage (post_act_block's first module)."""
    for m in block.modules():
        if hasattr(m, "stride") and hasattr(m, "padding") and hasattr(m, "kernel_size") \
                and any(s > 1 for s in np.atleast_1d(m.stride)):
            return m
    raise BenchError("linear_probe: encoder stage without a strided conv; the backbone changed")


def _keys(indices: torch.Tensor, shape) -> torch.Tensor:
    b, z, y, x = (indices[:, i].long() for i in range(4))
    return ((b * shape[0] + z) * shape[1] + y) * shape[2] + x


def _parent_rows(child: torch.Tensor, parent, conv) -> tuple[torch.Tensor, torch.Tensor]:
    """Coordinates of the coarser voxel whose receptive field holds each finer voxel, and its row."""
    stride = torch.as_tensor(np.broadcast_to(conv.stride, 3).copy(), device=child.device)
    pad = torch.as_tensor(np.broadcast_to(conv.padding, 3).copy(), device=child.device)
    shape = torch.as_tensor(parent.spatial_shape, device=child.device)
    coords = child.clone()
    coords[:, 1:] = torch.minimum(torch.div(child[:, 1:] + pad, stride, rounding_mode="floor"), shape - 1)
    pkeys = _keys(parent.indices, parent.spatial_shape)
    order = torch.argsort(pkeys)
    sorted_keys = pkeys[order]
    q = _keys(coords, parent.spatial_shape)
    pos = torch.searchsorted(sorted_keys, q).clamp(max=len(sorted_keys) - 1)
    if not torch.equal(sorted_keys[pos], q):
        raise BenchError("linear_probe: a voxel has no parent at the next encoder scale; the backbone changed")
    return coords, order[pos]


class LinearProbeModel(nn.Module):
    def __init__(self, model_cfg: dict, num_classes: int):
        super().__init__()
        self.encoder = build_lidar_backbone(model_cfg)
        for p in self.encoder.parameters():
            p.requires_grad_(False)
        self.stages = [self.encoder.conv2, self.encoder.conv3, self.encoder.conv4]
        self.channels = 16 + 32 + 64 + 128
        self.norm = nn.BatchNorm1d(self.channels, affine=False)
        self.head = nn.Linear(self.channels, num_classes)

    def train(self, mode: bool = True):
        super().train(mode)
        self.encoder.eval()  # frozen: batch-norm statistics included
        return self

    def point_features(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> torch.Tensor:
        pcr = self.encoder.grid.point_cloud_range
        lo = torch.tensor(pcr[:3], dtype=points.dtype, device=points.device)
        hi = torch.tensor(pcr[3:], dtype=points.dtype, device=points.device) - 1e-3
        pts = points.clone()
        pts[:, :3] = torch.maximum(torch.minimum(pts[:, :3], hi), lo)  # as the segmentation engine
        vox = voxelize(pts, batch_idx, batch_size, self.encoder.grid)
        with torch.no_grad():
            enc = self.encoder(vox.features, vox.coords, batch_size)
            coords = enc["x_conv1"].indices
            feats = [enc["x_conv1"].features]
            for level, stage in zip(LEVELS[1:], self.stages):
                coords, rows = _parent_rows(coords, enc[level], _downsampling_conv(stage))
                feats.append(enc[level].features[rows])
            hyper = torch.cat(feats, dim=1)
        return hyper[vox.point_to_voxel]

    def forward(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> torch.Tensor:
        return self.head(self.norm(self.point_features(points, batch_idx, batch_size)))


def _digest(module: nn.Module) -> str:
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def finetune(ctx: FinetuneContext) -> dict:
    seg = segmentation_engine()
    torch.manual_seed(ctx.seed)
    model = LinearProbeModel(ctx.model_cfg, len(seg.class_names(ctx))).to(ctx.device)
    init = load_init({"backbone_3d": model.encoder}, ctx.init_checkpoint)
    frozen = _digest(model.encoder)
    metrics = seg.run(ctx, model)
    if _digest(model.encoder) != frozen:
        raise BenchError("linear_probe: the frozen encoder changed during training")
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return {"metrics": metrics,
            "init": {**init, "encoder_frozen": True, "encoder_sha256": frozen, "trainable_parameters": trainable}}
