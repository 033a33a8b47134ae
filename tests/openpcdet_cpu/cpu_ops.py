"""CPU stand-ins, written for these tests, for the compiled OpenPCDet ops that the CenterPoint and
BEVFusion paths call, with the call signatures of OpenPCDet's extension modules.

OpenPCDet's ops are CUDA extensions built by its ``setup.py``; this machine has no CUDA, so the
tests put these in their place to run OpenPCDet's own Python code. Each is checked against a
brute-force reference in tests/test_openpcdet_cpu_ops.py. Only these ops are stood in: any other
attribute of an extension module is a function that raises, so a path that needs an op nobody
wrote fails loudly instead of running on a guess. Never imported by the benchmark itself.
"""
from __future__ import annotations

import numpy as np
import torch

# ------------------------------------------------------------------------------------------------
# Rotated boxes in the bird's-eye view: (x, y, z, dx, dy, dz, heading), centre-based
# ------------------------------------------------------------------------------------------------


def bev_corners(boxes: torch.Tensor) -> torch.Tensor:
    """(N, 4, 2) corners, counter-clockwise."""
    b = boxes.double()
    hx, hy = b[:, 3] / 2, b[:, 4] / 2
    local = torch.stack([torch.stack([hx, hy], -1), torch.stack([-hx, hy], -1),
                         torch.stack([-hx, -hy], -1), torch.stack([hx, -hy], -1)], 1)
    c, s = torch.cos(b[:, 6]), torch.sin(b[:, 6])
    rot = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], 1)   # (N, 2, 2)
    return torch.einsum("nij,nkj->nki", rot, local) + b[:, None, :2]


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _inside(points: torch.Tensor, poly: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    """points (P, K, 2) inside the convex CCW polygons poly (P, 4, 2): (P, K)."""
    edges = torch.roll(poly, -1, 1) - poly                                  # (P, 4, 2)
    rel = points[:, :, None, :] - poly[:, None, :, :]                        # (P, K, 4, 2)
    return (_cross(edges[:, None], rel) >= -eps).all(-1)


def pair_overlap(ca: torch.Tensor, cb: torch.Tensor) -> torch.Tensor:
    """Intersection area of corresponding convex quadrilaterals ca[i], cb[i] (P, 4, 2) -> (P,):
    the hull of the vertices of each inside the other and the edge-edge crossings, ordered by
    angle around their mean, by the shoelace formula."""
    p = ca.shape[0]
    if p == 0:
        return ca.new_zeros(0)
    a_in_b, b_in_a = _inside(ca, cb), _inside(cb, ca)
    pa, ra = ca, torch.roll(ca, -1, 1) - ca                                  # edges of a: pa + t ra
    pb, rb = cb, torch.roll(cb, -1, 1) - cb
    denom = _cross(ra[:, :, None], rb[:, None, :])                           # (P, 4, 4)
    qp = pb[:, None, :, :] - pa[:, :, None, :]
    safe = torch.where(denom.abs() < 1e-12, torch.ones_like(denom), denom)
    t = _cross(qp, rb[:, None, :]) / safe
    u = _cross(qp, ra[:, :, None]) / safe
    hit = (denom.abs() >= 1e-12) & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)
    cross_pts = pa[:, :, None, :] + t[..., None] * ra[:, :, None, :]
    pts = torch.cat([ca, cb, cross_pts.reshape(p, 16, 2)], 1)               # (P, 24, 2)
    valid = torch.cat([a_in_b, b_in_a, hit.reshape(p, 16)], 1)
    n = valid.sum(1).clamp(min=1)
    centre = (pts * valid[..., None]).sum(1) / n[:, None]
    ang = torch.atan2(pts[..., 1] - centre[:, None, 1], pts[..., 0] - centre[:, None, 0])
    ang = torch.where(valid, ang, torch.full_like(ang, 10.0))               # invalid ones sort last
    order = ang.argsort(1)
    pts = torch.gather(pts, 1, order[..., None].expand(-1, -1, 2))
    valid = torch.gather(valid, 1, order)
    first = pts[:, :1].expand_as(pts)
    pts = torch.where(valid[..., None], pts, first)                          # pad with the first point
    area = 0.5 * _cross(pts, torch.roll(pts, -1, 1)).sum(1)
    return torch.where(valid.sum(1) >= 3, area.abs(), torch.zeros_like(area))


def overlap_matrix(boxes_a: torch.Tensor, boxes_b: torch.Tensor, chunk: int = 65536) -> torch.Tensor:
    """(N, M) BEV intersection areas; pairs whose bounding circles are apart are 0 without clipping."""
    n, m = boxes_a.shape[0], boxes_b.shape[0]
    out = torch.zeros((n, m), dtype=torch.float64)
    if n == 0 or m == 0:
        return out
    a, b = boxes_a.detach().cpu().double(), boxes_b.detach().cpu().double()
    ra = torch.hypot(a[:, 3], a[:, 4]) / 2
    rb = torch.hypot(b[:, 3], b[:, 4]) / 2
    near = torch.cdist(a[:, :2], b[:, :2]) <= (ra[:, None] + rb[None, :]) + 1e-6
    ii, jj = near.nonzero(as_tuple=True)
    ca, cb = bev_corners(a), bev_corners(b)
    for s in range(0, len(ii), chunk):
        i, j = ii[s:s + chunk], jj[s:s + chunk]
        out[i, j] = pair_overlap(ca[i], cb[j])
    return out


def iou_matrix(boxes_a: torch.Tensor, boxes_b: torch.Tensor) -> torch.Tensor:
    ov = overlap_matrix(boxes_a, boxes_b)
    area_a = (boxes_a[:, 3] * boxes_a[:, 4]).detach().cpu().double()
    area_b = (boxes_b[:, 3] * boxes_b[:, 4]).detach().cpu().double()
    return ov / torch.clamp(area_a[:, None] + area_b[None, :] - ov, min=1e-8)


def _greedy_nms(iou: torch.Tensor, thresh: float) -> list[int]:
    """Greedy suppression over boxes already sorted by score: a box is dropped when its IoU with
    a kept, higher-scored box is above thresh."""
    iou = iou.numpy()
    suppressed = np.zeros(iou.shape[0], dtype=bool)
    keep = []
    for i in range(iou.shape[0]):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= iou[i] > thresh
    return keep


# ------------------------------------------------------------------------------------------------
# iou3d_nms_cuda
# ------------------------------------------------------------------------------------------------

class iou3d_nms_cuda:  # noqa: N801 - named like the extension module it stands in for
    @staticmethod
    def boxes_iou_bev_cpu(boxes_a, boxes_b, ans_iou):
        ans_iou.copy_(iou_matrix(boxes_a, boxes_b).to(ans_iou.dtype))

    @staticmethod
    def boxes_iou_bev_gpu(boxes_a, boxes_b, ans_iou):
        ans_iou.copy_(iou_matrix(boxes_a, boxes_b).to(ans_iou.dtype))

    @staticmethod
    def boxes_overlap_bev_gpu(boxes_a, boxes_b, ans_overlap):
        ans_overlap.copy_(overlap_matrix(boxes_a, boxes_b).to(ans_overlap.dtype))

    @staticmethod
    def nms_gpu(boxes, keep, thresh):
        kept = _greedy_nms(iou_matrix(boxes, boxes), float(thresh))
        keep[:len(kept)] = torch.as_tensor(kept, dtype=keep.dtype)
        return len(kept)

    @staticmethod
    def nms_normal_gpu(boxes, keep, thresh):
        axis_aligned = boxes.clone()
        axis_aligned[:, 6] = 0
        return iou3d_nms_cuda.nms_gpu(axis_aligned, keep, thresh)


# ------------------------------------------------------------------------------------------------
# roiaware_pool3d_cuda
# ------------------------------------------------------------------------------------------------

def points_in_boxes_mask(boxes: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """(N boxes, M points) bool: inside the box's height span and strictly inside its footprint."""
    b, p = boxes.double(), points.double()
    shift = p[None, :, :3] - b[:, None, :3]                                  # (N, M, 3)
    c, s = torch.cos(b[:, 6])[:, None], torch.sin(b[:, 6])[:, None]
    lx = shift[..., 0] * c + shift[..., 1] * s                               # rotate by -heading
    ly = -shift[..., 0] * s + shift[..., 1] * c
    return ((shift[..., 2].abs() <= b[:, None, 5] / 2) & (lx.abs() < b[:, None, 3] / 2)
            & (ly.abs() < b[:, None, 4] / 2))


class roiaware_pool3d_cuda:  # noqa: N801
    @staticmethod
    def points_in_boxes_cpu(boxes, points, point_indices):
        point_indices.copy_(points_in_boxes_mask(boxes, points).to(point_indices.dtype))

    @staticmethod
    def points_in_boxes_gpu(boxes, points, box_idxs_of_pts):
        """(B, T, 7), (B, M, 3) -> (B, M): the first box holding each point, -1 for none."""
        for k in range(boxes.shape[0]):
            inside = points_in_boxes_mask(boxes[k], points[k])               # (T, M)
            any_box = inside.any(0)
            first = inside.to(torch.int8).argmax(0)
            box_idxs_of_pts[k] = torch.where(any_box, first, torch.full_like(first, -1)).to(box_idxs_of_pts.dtype)


# ------------------------------------------------------------------------------------------------
# bev_pool_ext (BEVFusion's camera-to-BEV pooling)
# ------------------------------------------------------------------------------------------------

def _interval_voxels(geom_feats, interval_lengths, interval_starts, B, D, H, W):
    """Per point, the flat (b, z, x, y) voxel of its interval (geom columns are x, y, z, b)."""
    lengths = interval_lengths.long()
    g = geom_feats[interval_starts.long()].long()
    flat = ((g[:, 3] * D + g[:, 2]) * H + g[:, 0]) * W + g[:, 1]
    point_rows = torch.repeat_interleave(interval_starts.long(), lengths) + (
        torch.arange(int(lengths.sum())) - torch.repeat_interleave(torch.cumsum(lengths, 0) - lengths, lengths))
    return point_rows, torch.repeat_interleave(flat, lengths)


class bev_pool_ext:  # noqa: N801
    @staticmethod
    def bev_pool_forward(x, geom_feats, interval_lengths, interval_starts, B, D, H, W):
        """(N, C) features summed per interval into (B, D, H, W, C) at the interval's voxel."""
        rows, flat = _interval_voxels(geom_feats, interval_lengths, interval_starts, B, D, H, W)
        out = x.new_zeros((B * D * H * W, x.shape[1]))
        out.index_add_(0, flat, x[rows])
        return out.view(B, D, H, W, x.shape[1])

    @staticmethod
    def bev_pool_backward(out_grad, geom_feats, interval_lengths, interval_starts, B, D, H, W):
        rows, flat = _interval_voxels(geom_feats, interval_lengths, interval_starts, B, D, H, W)
        c = out_grad.shape[-1]
        x_grad = out_grad.new_zeros((geom_feats.shape[0], c))
        x_grad[rows] = out_grad.reshape(-1, c)[flat]
        return x_grad
