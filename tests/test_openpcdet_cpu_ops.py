"""The tests' CPU stand-ins for OpenPCDet's compiled ops, each against a brute-force reference
(shapely polygons, per-point loops), and the rule that every other compiled op raises."""
import numpy as np
import pytest
import torch
from shapely.geometry import Polygon

from openpcdet_cpu import cpu_ops, standin


def _boxes(n, rng, spread=6.0):
    b = np.zeros((n, 7), np.float32)
    b[:, :2] = rng.uniform(-spread, spread, (n, 2))
    b[:, 2] = rng.uniform(-1, 1, n)
    b[:, 3:6] = rng.uniform(0.5, 5.0, (n, 3))
    b[:, 6] = rng.uniform(-np.pi, np.pi, n)
    return torch.from_numpy(b)


def _polygon(box):
    x, y, _, dx, dy, _, h = [float(v) for v in box]
    c, s = np.cos(h), np.sin(h)
    pts = [(x + c * u - s * v, y + s * u + c * v) for u, v in
           [(dx / 2, dy / 2), (-dx / 2, dy / 2), (-dx / 2, -dy / 2), (dx / 2, -dy / 2)]]
    return Polygon(pts)


def _shapely_iou(a, b):
    out = np.zeros((len(a), len(b)))
    for i, p in enumerate(map(_polygon, a)):
        for j, q in enumerate(map(_polygon, b)):
            inter = p.intersection(q).area
            out[i, j] = inter / (p.area + q.area - inter)
    return out


def test_rotated_bev_iou_and_overlap_equal_polygon_clipping():
    rng = np.random.default_rng(0)
    a, b = _boxes(40, rng), _boxes(30, rng)
    iou = torch.zeros(40, 30)
    cpu_ops.iou3d_nms_cuda.boxes_iou_bev_cpu(a, b, iou)
    ref = _shapely_iou(a, b)
    np.testing.assert_allclose(iou.numpy(), ref, atol=1e-5)
    assert (ref > 0.05).sum() > 20   # the draw has many real overlaps, not only zeros
    ov = torch.zeros(40, 30)
    cpu_ops.iou3d_nms_cuda.boxes_overlap_bev_gpu(a, b, ov)
    ref_ov = np.array([[_polygon(p).intersection(_polygon(q)).area for q in b] for p in a])
    np.testing.assert_allclose(ov.numpy(), ref_ov, atol=1e-4)
    same = torch.zeros(40, 40)
    cpu_ops.iou3d_nms_cuda.boxes_iou_bev_gpu(a, a, same)
    np.testing.assert_allclose(np.diag(same.numpy()), 1.0, atol=1e-5)
    # nested and identical-edge cases
    nested = torch.tensor([[0, 0, 0, 4, 2, 1, 0.3], [0, 0, 0, 2, 1, 1, 0.3], [0, 0, 0, 4, 2, 1, 0.3 + np.pi]])
    out = torch.zeros(3, 3)
    cpu_ops.iou3d_nms_cuda.boxes_iou_bev_cpu(nested, nested, out)
    np.testing.assert_allclose(out.numpy(), _shapely_iou(nested, nested), atol=1e-5)


def _greedy_reference(boxes, scores, thresh):
    order = np.argsort(-scores.numpy(), kind="stable")
    iou = _shapely_iou(boxes[order], boxes[order])
    keep, dead = [], set()
    for i in range(len(order)):
        if i in dead:
            continue
        keep.append(i)
        dead |= {j for j in range(i + 1, len(order)) if iou[i, j] > thresh}
    return order[keep]


def test_nms_keeps_what_greedy_suppression_by_polygon_iou_keeps():
    rng = np.random.default_rng(1)
    boxes = _boxes(60, rng, spread=4.0)
    scores = torch.from_numpy(rng.uniform(0, 1, 60).astype(np.float32))
    order = scores.argsort(descending=True)
    keep = torch.zeros(60, dtype=torch.long)
    n = cpu_ops.iou3d_nms_cuda.nms_gpu(boxes[order].contiguous(), keep, 0.2)
    kept = order[keep[:n]].numpy()
    ref = _greedy_reference(boxes, scores, 0.2)
    assert list(kept) == list(ref) and 5 < n < 60
    aligned = boxes.clone()
    aligned[:, 6] = 0
    keep2 = torch.zeros(60, dtype=torch.long)
    n2 = cpu_ops.iou3d_nms_cuda.nms_normal_gpu(boxes[order].contiguous(), keep2, 0.2)
    assert list(order[keep2[:n2]].numpy()) == list(_greedy_reference(aligned, scores, 0.2))


def test_points_in_boxes_equal_a_per_point_check():
    rng = np.random.default_rng(2)
    boxes = _boxes(12, rng)
    pts = torch.from_numpy(rng.uniform(-8, 8, (3000, 3)).astype(np.float32))
    pts[:, 2] = torch.from_numpy(rng.uniform(-3, 3, 3000).astype(np.float32))
    out = torch.zeros(12, 3000, dtype=torch.int)
    cpu_ops.roiaware_pool3d_cuda.points_in_boxes_cpu(boxes, pts, out)
    ref = np.zeros((12, 3000), int)
    for i, (x, y, z, dx, dy, dz, h) in enumerate(boxes.numpy().astype(np.float64)):
        for j, (px, py, pz) in enumerate(pts.numpy().astype(np.float64)):
            u = (px - x) * np.cos(h) + (py - y) * np.sin(h)
            v = -(px - x) * np.sin(h) + (py - y) * np.cos(h)
            ref[i, j] = abs(pz - z) <= dz / 2 and abs(u) < dx / 2 and abs(v) < dy / 2
    assert (out.numpy() == ref).all() and ref.sum() > 50
    idx = torch.zeros(1, 3000, dtype=torch.int)
    cpu_ops.roiaware_pool3d_cuda.points_in_boxes_gpu(boxes[None], pts[None], idx)
    first = np.where(ref.any(0), ref.argmax(0), -1)
    assert (idx[0].numpy() == first).all()


def test_bev_pool_sums_each_interval_into_its_voxel_and_routes_gradients_back():
    rng = np.random.default_rng(3)
    B, D, H, W, C, N = 2, 3, 5, 4, 6, 200
    geom = np.stack([rng.integers(0, H, N), rng.integers(0, W, N), rng.integers(0, D, N), rng.integers(0, B, N)], 1)
    ranks = geom[:, 0] * (W * D * B) + geom[:, 1] * (D * B) + geom[:, 2] * B + geom[:, 3]
    order = np.argsort(ranks, kind="stable")
    geom, ranks = torch.from_numpy(geom[order]).int(), torch.from_numpy(ranks[order])
    x = torch.from_numpy(rng.normal(size=(N, C)).astype(np.float32))
    kept = torch.ones(N, dtype=torch.bool)
    kept[1:] = ranks[1:] != ranks[:-1]
    starts = torch.where(kept)[0].int()
    lengths = torch.zeros_like(starts)
    lengths[:-1] = starts[1:] - starts[:-1]
    lengths[-1] = N - starts[-1]
    out = cpu_ops.bev_pool_ext.bev_pool_forward(x, geom, lengths, starts, B, D, H, W)
    ref = np.zeros((B, D, H, W, C), np.float32)
    for i in range(N):
        gx, gy, gz, gb = geom[i].tolist()
        ref[gb, gz, gx, gy] += x[i].numpy()
    np.testing.assert_allclose(out.numpy(), ref, atol=1e-5)
    grad = torch.from_numpy(rng.normal(size=(B, D, H, W, C)).astype(np.float32))
    xg = cpu_ops.bev_pool_ext.bev_pool_backward(grad, geom, lengths, starts, B, D, H, W)
    ref_g = np.stack([grad[g[3], g[2], g[0], g[1]].numpy() for g in geom.tolist()])
    np.testing.assert_allclose(xg.numpy(), ref_g, atol=1e-6)


def test_every_other_compiled_op_raises_naming_itself():
    standin.install()
    import sys

    ext = sys.modules["pcdet.ops.iou3d_nms.iou3d_nms_cuda"]
    with pytest.raises(standin.NoStandIn, match="iou3d_nms_cuda.boxes_aligned_overlap_bev_gpu"):
        ext.boxes_aligned_overlap_bev_gpu(None, None, None)
    pn = sys.modules["pcdet.ops.pointnet2.pointnet2_stack.pointnet2_stack_cuda"]
    with pytest.raises(standin.NoStandIn, match="no CPU stand-in"):
        pn.ball_query_wrapper(1, 2, 3)
    assert callable(ext.nms_gpu) and ext.nms_gpu is cpu_ops.iou3d_nms_cuda.nms_gpu


def test_spconv_defaults_change_only_convolutions_openpcdet_builds():
    """The stand-in layer never reaches the benchmark's own backbone: a convolution built outside
    pcdet keeps spconv's own algorithm choice and forward."""
    import spconv.pytorch as sp

    standin.install()
    conv = sp.SubMConv3d(4, 8, 3, indice_key="x")
    assert conv.algo != sp.ConvAlgo.Native and conv._xmb_cpu is False
    ns = {"__name__": "pcdet.models.backbones_3d.fake", "sp": sp}
    exec("def build():\n    return sp.SubMConv3d(4, 8, 3, indice_key='y')\n", ns)
    built = ns["build"]()
    assert built.algo == sp.ConvAlgo.Native and built._xmb_cpu is True
