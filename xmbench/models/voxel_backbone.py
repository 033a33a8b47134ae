"""The LiDAR sparse encoder every method pretrains and every engine finetunes.

Its parameter names and shapes equal OpenPCDet's ``VoxelResBackBone8x`` (spconv 2 layout), so a
checkpoint's ``backbone_3d.*`` keys load into OpenPCDet with ``--pretrained_model`` unchanged. The
indice keys are OpenPCDet's too, which lets a decoder invert the strided convolutions.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
import spconv.pytorch as spconv
import torch
from torch import nn

BN = partial(nn.BatchNorm1d, eps=1e-3, momentum=0.01)


class SubMConv3d(spconv.SubMConv3d):
    """spconv 2's CPU kernels cannot fuse a bias at inference (``bias and act don't support cpu``);
    on the CPU the bias is added after the convolution, which is spconv's own training path."""

    def forward(self, input, add_input=None):
        return self._conv_forward(self.training or input.features.is_cpu, input, self.weight, self.bias,
                                  add_input, name=self.name, sparse_unique_name=self._sparse_unique_name,
                                  act_type=self.act_type, act_alpha=self.act_alpha, act_beta=self.act_beta)



def post_act_block(cin, cout, kernel_size, indice_key, stride=1, padding=0, conv_type="subm"):
    if conv_type == "subm":
        conv = SubMConv3d(cin, cout, kernel_size, bias=False, indice_key=indice_key,
                                 algo=spconv.ConvAlgo.Native)
    elif conv_type == "spconv":
        conv = spconv.SparseConv3d(cin, cout, kernel_size, stride=stride, padding=padding,
                                   bias=False, indice_key=indice_key, algo=spconv.ConvAlgo.Native)
    elif conv_type == "inverseconv":
        conv = spconv.SparseInverseConv3d(cin, cout, kernel_size, indice_key=indice_key, bias=False,
                                          algo=spconv.ConvAlgo.Native)
    else:
        raise ValueError(f"unknown conv_type {conv_type!r}")
    return spconv.SparseSequential(conv, BN(cout), nn.ReLU())


class SparseBasicBlock(spconv.SparseModule):
    """OpenPCDet's residual block: biased submanifold convs (bias=True because a norm follows)."""

    def __init__(self, planes: int, indice_key: str):
        super().__init__()
        self.conv1 = SubMConv3d(planes, planes, 3, padding=1, bias=True, indice_key=indice_key,
                                       algo=spconv.ConvAlgo.Native)
        self.bn1 = BN(planes)
        self.relu = nn.ReLU()
        self.conv2 = SubMConv3d(planes, planes, 3, padding=1, bias=True, indice_key=indice_key,
                                       algo=spconv.ConvAlgo.Native)
        self.bn2 = BN(planes)

    def forward(self, x):
        identity = x.features
        out = self.conv1(x)
        out = out.replace_feature(self.relu(self.bn1(out.features)))
        out = self.conv2(out)
        out = out.replace_feature(self.relu(self.bn2(out.features) + identity))
        return out


@dataclass(frozen=True)
class VoxelGrid:
    """Voxelisation geometry; OpenPCDet derives the sparse shape the same way (grid + 1 in z)."""

    voxel_size: tuple[float, float, float]
    point_cloud_range: tuple[float, float, float, float, float, float]

    @property
    def grid_size(self) -> tuple[int, int, int]:
        pcr = np.asarray(self.point_cloud_range, dtype=np.float64)
        vs = np.asarray(self.voxel_size, dtype=np.float64)
        return tuple(int(v) for v in np.round((pcr[3:] - pcr[:3]) / vs))

    @property
    def sparse_shape(self) -> list[int]:
        gx, gy, gz = self.grid_size
        return [gz + 1, gy, gx]


def bev_height(grid_z: int) -> int:
    """z size of the stride-8 output: conv2/conv3 pad z, conv4 and conv_out do not (as OpenPCDet)."""
    z = grid_z + 1
    z = (z - 1) // 2 + 1      # conv2: k3 s2 p1
    z = (z - 1) // 2 + 1      # conv3: k3 s2 p1
    z = (z - 3) // 2 + 1      # conv4: k3 s2 p(0,1,1)
    return (z - 3) // 2 + 1   # conv_out: k(3,1,1) s(2,1,1) p0


class VoxelResBackBone8x(nn.Module):
    """Returns the stride-8 sparse tensor plus the multi-scale tensors a U-Net decoder needs."""

    def __init__(self, input_channels: int, grid: VoxelGrid):
        super().__init__()
        self.grid = grid
        self.sparse_shape = grid.sparse_shape
        self.conv_input = spconv.SparseSequential(
            SubMConv3d(input_channels, 16, 3, padding=1, bias=False, indice_key="subm1",
                              algo=spconv.ConvAlgo.Native),
            BN(16), nn.ReLU())
        self.conv1 = spconv.SparseSequential(SparseBasicBlock(16, "res1"), SparseBasicBlock(16, "res1"))
        self.conv2 = spconv.SparseSequential(
            post_act_block(16, 32, 3, "spconv2", stride=2, padding=1, conv_type="spconv"),
            SparseBasicBlock(32, "res2"), SparseBasicBlock(32, "res2"))
        self.conv3 = spconv.SparseSequential(
            post_act_block(32, 64, 3, "spconv3", stride=2, padding=1, conv_type="spconv"),
            SparseBasicBlock(64, "res3"), SparseBasicBlock(64, "res3"))
        self.conv4 = spconv.SparseSequential(
            post_act_block(64, 128, 3, "spconv4", stride=2, padding=(0, 1, 1), conv_type="spconv"),
            SparseBasicBlock(128, "res4"), SparseBasicBlock(128, "res4"))
        self.conv_out = spconv.SparseSequential(
            spconv.SparseConv3d(128, 128, (3, 1, 1), stride=(2, 1, 1), padding=0, bias=False,
                                indice_key="spconv_down2", algo=spconv.ConvAlgo.Native),
            BN(128), nn.ReLU())
        self.num_point_features = 128
        self.num_bev_features = 128 * self.bev_height

    @property
    def bev_height(self) -> int:
        return bev_height(self.grid.grid_size[2])

    def forward(self, voxel_features: torch.Tensor, voxel_coords: torch.Tensor, batch_size: int) -> dict:
        x = spconv.SparseConvTensor(voxel_features, voxel_coords.int(), self.sparse_shape, batch_size)
        x = self.conv_input(x)
        x_conv1 = self.conv1(x)
        x_conv2 = self.conv2(x_conv1)
        x_conv3 = self.conv3(x_conv2)
        x_conv4 = self.conv4(x_conv3)
        out = self.conv_out(x_conv4)
        return {"encoded": out, "x_conv1": x_conv1, "x_conv2": x_conv2, "x_conv3": x_conv3,
                "x_conv4": x_conv4}


def to_bev(encoded: spconv.SparseConvTensor) -> torch.Tensor:
    """OpenPCDet's HeightCompression: fold z into channels, giving a (B, C*D, H, W) BEV map."""
    dense = encoded.dense()
    b, c, d, h, w = dense.shape
    return dense.view(b, c * d, h, w)
