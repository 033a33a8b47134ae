"""BEVFusion's ConvFuser: the camera and LiDAR BEV maps concatenated (camera first) and one 3x3
conv-BN-ReLU. Named and ordered as OpenPCDet's (pcdet/models/backbones_2d/fuser/convfuser.py,
``conv.0`` / ``conv.1``), so a pretrained ``fuser.*`` seeds BEVFusion's fuser with the same meaning
for each input channel."""
from __future__ import annotations

import torch
from torch import nn


class ConvFuser(nn.Module):
    def __init__(self, camera_channels: int, lidar_channels: int, out_channels: int):
        super().__init__()
        self.camera_channels, self.lidar_channels, self.out_channels = camera_channels, lidar_channels, out_channels
        self.conv = nn.Sequential(nn.Conv2d(camera_channels + lidar_channels, out_channels, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))

    def forward(self, camera_bev: torch.Tensor, lidar_bev: torch.Tensor) -> torch.Tensor:
        """(B, C_cam, Y, X) and (B, C_lidar, Y, X) on the same grid -> (B, out_channels, Y, X)."""
        return self.conv(torch.cat([camera_bev, lidar_bev], 1))
