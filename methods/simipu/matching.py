"""SimIPU's point sampling and correspondence: batched farthest point sampling and Hungarian
matching of two point sets of the same frames.

It sits in SimIPU's folder because no other method uses it; move it back to xmbench/pretraining
when a second method does, so that the harness holds only what methods share."""
from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def _padded(xyz: torch.Tensor, batch_idx: torch.Tensor, batch_size: int):
    """(B, Nmax, 3) copy of ``xyz`` grouped by frame, the row of each slot in ``xyz`` (-1 = padding)
    and the number of points per frame."""
    counts = torch.bincount(batch_idx, minlength=batch_size)
    order = torch.argsort(batch_idx, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.arange(len(order), device=xyz.device) - starts[batch_idx[order]]
    n_max = int(counts.max()) if batch_size and len(xyz) else 0
    rows = torch.full((batch_size, max(n_max, 1)), -1, dtype=torch.long, device=xyz.device)
    rows[batch_idx[order], slot] = order
    padded = xyz.new_zeros(batch_size, max(n_max, 1), 3)
    padded[batch_idx[order], slot] = xyz[order]
    return padded, rows, counts


@torch.no_grad()
def farthest_point_sample(xyz: torch.Tensor, batch_idx: torch.Tensor, batch_size: int, k: int) -> torch.Tensor:
    """Rows of ``xyz`` chosen by farthest point sampling, ``min(k, n_b)`` per frame, frame-major.

    Frames with at most ``k`` points keep all their rows (what FPS would return, in another order).
    The other frames are sampled together in one loop of ``k`` vectorised steps (no per-point
    Python). Each starts from its point farthest from the frame's mean (mmcv's
    ``furthest_point_sample`` starts from row 0, whose meaning depends on the row order); a chosen
    point is marked so it is never chosen again, so the rows of a frame are distinct even when
    coordinates repeat.
    """
    batch_idx = batch_idx.long()
    counts = torch.bincount(batch_idx, minlength=batch_size)
    big = torch.nonzero(counts > k).squeeze(1)
    if len(big) == 0:
        return torch.argsort(batch_idx, stable=True)
    is_big = torch.zeros(batch_size, dtype=torch.bool, device=xyz.device)
    is_big[big] = True
    sub = is_big[batch_idx]
    remap = torch.cumsum(is_big, 0) - 1
    padded, rows, n = _padded(xyz.detach().float()[sub], remap[batch_idx[sub]], len(big))
    rows = torch.where(rows >= 0, torch.nonzero(sub).squeeze(1)[rows.clamp(min=0)], rows)
    valid = rows >= 0
    dist = torch.full(rows.shape, float("inf"), dtype=padded.dtype, device=xyz.device)
    dist[~valid] = -float("inf")                                  # padding is never chosen
    ar = torch.arange(len(big), device=xyz.device)
    mean = padded.sum(1) / n[:, None].to(padded.dtype)
    far = torch.where(valid, (padded - mean[:, None]).square().sum(-1), dist).argmax(1)
    chosen = []
    for _ in range(k):
        chosen.append(far)
        d = (padded - padded[ar, far][:, None]).square().sum(-1)
        dist = torch.minimum(dist, d)
        dist[ar, far] = -1.0                                      # never again
        far = dist.argmax(1)
    picked = rows.gather(1, torch.stack(chosen, 1))               # (len(big), k), all valid
    small = torch.argsort(batch_idx, stable=True)
    small = small[~is_big[batch_idx[small]]]
    # frame-major: a frame's rows are either its FPS samples or all its rows
    out = torch.cat([picked.flatten(), small])
    frame = torch.cat([big.repeat_interleave(k), batch_idx[small]])
    return out[torch.argsort(frame, stable=True)]


def hungarian_match(xyz_a: torch.Tensor, batch_a: torch.Tensor, xyz_b: torch.Tensor, batch_b: torch.Tensor,
                    batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Pairs (row in a, row in b) of a minimum-total-distance one-to-one matching within each frame
    (scipy's ``linear_sum_assignment`` on the detached Euclidean distance matrix, as SimIPU's
    official code does). A frame with unequal counts matches min(n_a, n_b) pairs."""
    out_a, out_b = [], []
    a_cpu, b_cpu = xyz_a.detach().double().cpu(), xyz_b.detach().double().cpu()
    ba, bb = batch_a.cpu(), batch_b.cpu()
    for f in range(batch_size):
        ia = torch.nonzero(ba == f).squeeze(1)
        ib = torch.nonzero(bb == f).squeeze(1)
        if len(ia) == 0 or len(ib) == 0:
            continue
        cost = torch.cdist(a_cpu[ia], b_cpu[ib]).numpy()
        r, c = linear_sum_assignment(cost)
        out_a.append(ia[torch.from_numpy(np.asarray(r, dtype=np.int64))])
        out_b.append(ib[torch.from_numpy(np.asarray(c, dtype=np.int64))])
    if not out_a:
        empty = torch.zeros(0, dtype=torch.long, device=xyz_a.device)
        return empty, empty
    return torch.cat(out_a).to(xyz_a.device), torch.cat(out_b).to(xyz_a.device)
