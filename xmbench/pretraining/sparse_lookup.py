"""Finding, for each stride-1 voxel, the stride-8 voxel of the backbone whose window holds it."""
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
