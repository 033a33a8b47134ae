"""Sparse U-Net decoder over VoxelResBackBone8x, in the style of OpenPCDet's UNetV2 decoder.

Inverse convolutions reuse the encoder's indice keys, so every stride-1 voxel gets a feature and
every point a prediction; lateral encoder features are concatenated at each scale.
"""
from __future__ import annotations

import spconv.pytorch as spconv
import torch
from torch import nn

from .voxel_backbone import BN, post_act_block


class SparseUNetDecoder(nn.Module):
    def __init__(self, num_classes: int):
        super().__init__()
        self.up4 = post_act_block(128, 64, 3, "spconv4", conv_type="inverseconv")
        self.merge3 = post_act_block(128, 64, 3, "res3")
        self.up3 = post_act_block(64, 32, 3, "spconv3", conv_type="inverseconv")
        self.merge2 = post_act_block(64, 32, 3, "res2")
        self.up2 = post_act_block(32, 16, 3, "spconv2", conv_type="inverseconv")
        self.merge1 = post_act_block(32, 16, 3, "res1")
        self.head = nn.Sequential(nn.Linear(16, 16, bias=False), BN(16), nn.ReLU(), nn.Linear(16, num_classes))

    @staticmethod
    def _merge(up: spconv.SparseConvTensor, lateral: spconv.SparseConvTensor, block) -> spconv.SparseConvTensor:
        return block(up.replace_feature(torch.cat([up.features, lateral.features], dim=1)))

    def forward(self, enc: dict) -> torch.Tensor:
        """Logits for each stride-1 voxel, in the row order of the encoder's input voxels."""
        x = self._merge(self.up4(enc["x_conv4"]), enc["x_conv3"], self.merge3)
        x = self._merge(self.up3(x), enc["x_conv2"], self.merge2)
        x = self._merge(self.up2(x), enc["x_conv1"], self.merge1)
        return self.head(x.features)
