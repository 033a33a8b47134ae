"""Contrastive losses shared by methods, written to match the official implementations' maths."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's NT-Xent: for each of the 2N embeddings the pair is the positive and the other 2N-2
    are negatives; symmetric, averaged over all 2N anchors (lightly's NTXentLoss without memory bank,
    which CrossPoint's train_crosspoint.py uses)."""
    n = a.shape[0]
    z = F.normalize(torch.cat([a, b]), dim=1)
    logits = z @ z.t() / temperature
    logits = logits.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


def info_nce(query: torch.Tensor, key: torch.Tensor, temperature: float) -> torch.Tensor:
    """One-directional InfoNCE: query i's positive is key i, every other key a negative."""
    q, k = F.normalize(query, dim=1), F.normalize(key, dim=1)
    logits = q @ k.t() / temperature
    return F.cross_entropy(logits, torch.arange(len(q), device=q.device))
