"""The camera neck of BEVFusion: GeneralizedLSSFPN, which brings the deeper stages of the image
encoder down to the stride of the shallowest one so that the LSS lift reads one map.

Its names and shapes equal OpenPCDet's (pcdet/models/backbones_image/img_neck/generalized_lss.py):
``lateral_convs.i`` and ``fpn_convs.i``, each a ``conv`` without bias then ``bn`` and ReLU, so a
pretrained checkpoint's ``neck.*`` seeds BEVFusion's neck.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ConvBNReLU(nn.Module):
    """OpenPCDet's BasicBlock2D (attribute names ``conv``, ``bn``) with the conv's bias off."""

    def __init__(self, cin: int, cout: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, padding=kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class GeneralizedLSSFPN(nn.Module):
    """Top-down: the deepest map is upsampled and concatenated with the one above it, a 1x1 lateral
    conv and a 3x3 conv give ``out_channels``, and so on up to the first map.

    ``in_channels`` are those of the maps it reads (BEVFusion: Swin-T's [192, 384, 768] at strides
    8, 16, 32); ``forward`` takes the encoder's list and reads its last ``len(in_channels)`` maps, so
    a ResNet's four maps (strides 4 to 32) and Swin-T's three give the same stride-8 output.
    """

    def __init__(self, in_channels: list[int], out_channels: int):
        super().__init__()
        if len(in_channels) < 2:
            raise ValueError(f"the camera neck needs at least two input maps, got channels {in_channels}")
        self.in_channels, self.out_channels = list(in_channels), out_channels
        n = len(in_channels)
        self.lateral_convs = nn.ModuleList()
        self.fpn_convs = nn.ModuleList()
        for i in range(n - 1):
            below = in_channels[i + 1] if i == n - 2 else out_channels
            self.lateral_convs.append(ConvBNReLU(in_channels[i] + below, out_channels, 1))
            self.fpn_convs.append(ConvBNReLU(out_channels, out_channels, 3))

    def forward(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        """-> ``len(in_channels) - 1`` maps of ``out_channels``; the first is at the first input's size."""
        x = list(feats[-len(self.in_channels):])
        for i in range(len(x) - 2, -1, -1):
            up = F.interpolate(x[i + 1], size=x[i].shape[-2:], mode="bilinear", align_corners=False)
            x[i] = self.fpn_convs[i](self.lateral_convs[i](torch.cat([x[i], up], 1)))
        return x[:-1]
