"""Finding, for each stride-1 voxel, the voxel of a backbone output whose window holds it: x_conv4
(stride 8) or the encoder's final output ``encoded`` (conv_out: stride 8 in x/y, 16 in z), which is
what the checkpoint exports and detection reads, so a method pretraining from it trains every layer."""
from __future__ import annotations

import spconv.pytorch as spconv
import torch

# (padding in z, padding in y and x) of the three strided k=3 convs of VoxelResBackBone8x
_STRIDED = ((1, 1), (1, 1), (0, 1))


def _down(i: torch.Tensor, n: int, padding: int) -> tuple[torch.Tensor, int]:
    """Output index of a k=3, s=2 conv whose window contains input ``i``, and the output size.

    The natural choice can fall one past the end; the previous output's window then holds ``i``.
    """
    size = (n + 2 * padding - 3) // 2 + 1
    o = torch.div(i + padding, 2, rounding_mode="floor")
    return torch.where(o > size - 1, o - 1, o), size


def stride8_coords(voxel_coords: torch.Tensor, sparse_shape: list[int]) -> torch.Tensor:
    """(b, z, y, x) of the input voxels mapped through conv2, conv3 and conv4 (to x_conv4's grid)."""
    b, z, y, x = voxel_coords.long().unbind(1)
    d, h, w = sparse_shape
    for pz, pxy in _STRIDED:
        z, d = _down(z, d, pz)
        y, h = _down(y, h, pxy)
        x, w = _down(x, w, pxy)
    return torch.stack([b, z, y, x], 1)


def _window(i: torch.Tensor, n: int, kernel: int, padding: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Output index of a stride-2 conv whose window holds input ``i``, whether one does, and the
    output size. A sparse conv only has an output site whose window holds an active input, so an
    input outside every window (the last row of an even-sized, unpadded axis) has no output at all."""
    size = (n + 2 * padding - kernel) // 2 + 1
    o = torch.div(i + padding, 2, rounding_mode="floor")
    o = torch.where(o > size - 1, o - 1, o)
    start = 2 * o - padding
    return o, (i >= start) & (i < start + kernel) & (o >= 0), size


def encoded_coords(voxel_coords: torch.Tensor, sparse_shape: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, z, y, x) of the input voxels in the grid of ``encoded`` (conv2, conv3, conv4, then conv_out:
    kernel (3, 1, 1), stride (2, 1, 1), no padding), and whether the voxel reaches that output."""
    b, z, y, x = voxel_coords.long().unbind(1)
    d, h, w = sparse_shape
    ok = torch.ones_like(z, dtype=torch.bool)
    for pz, pxy in _STRIDED:
        z, cz, d = _window(z, d, 3, pz)
        y, cy, h = _window(y, h, 3, pxy)
        x, cx, w = _window(x, w, 3, pxy)
        ok &= cz & cy & cx
    z, cz, d = _window(z, d, 3, 0)
    return torch.stack([b, z, y, x], 1), ok & cz


def point_rows(tensor: spconv.SparseConvTensor, voxel_coords: torch.Tensor, point_to_voxel: torch.Tensor,
               sparse_shape: list[int]) -> torch.Tensor:
    """Row of ``tensor`` (the backbone's ``encoded`` output) holding each input point, -1 where none
    does (the point fell outside the grid, or its voxel reaches no output site)."""
    coords, ok = encoded_coords(voxel_coords, sparse_shape)
    rows, found = lookup_rows(tensor, coords)
    voxel_row = torch.where(ok & found, rows, torch.full_like(rows, -1))
    valid = point_to_voxel >= 0
    return torch.where(valid, voxel_row[point_to_voxel.clamp(min=0)], torch.full_like(point_to_voxel, -1))


def lookup_rows(tensor: spconv.SparseConvTensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row of ``tensor.indices`` equal to each (b, z, y, x) of ``coords``, and a found mask."""
    d, h, w = tensor.spatial_shape

    def key(c: torch.Tensor) -> torch.Tensor:
        c = c.long()
        return ((c[:, 0] * d + c[:, 1]) * h + c[:, 2]) * w + c[:, 3]

    keys = key(tensor.indices)
    order = torch.argsort(keys)
    sorted_keys = keys[order]
    q = key(coords)
    pos = torch.searchsorted(sorted_keys, q).clamp(max=len(sorted_keys) - 1)
    return order[pos], sorted_keys[pos] == q
