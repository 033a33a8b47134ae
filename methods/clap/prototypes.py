"""Cross-modal prototypes (CLAP, Chen et al., arXiv 2412.03059 v1, Sec. 3): SwAV-style codes.

E (B, D) are L2-normalised embeddings of one modality, K (P, D) the L2-normalised prototypes;
S = E K^T are the similarities. Codes Q come from Sinkhorn-Knopp on the detached S (SwAV: Caron et
al., NeurIPS 2020, ``distributed_sinkhorn`` in facebookresearch/swav main_swav.py: epsilon 0.05,
3 iterations). Losses:

- swapped prediction: L_swap = 1/2 [CE(Q_c, softmax(S_l / T)) + CE(Q_l, softmax(S_c / T))], CE averaged
  over the rows (the camera code supervises the LiDAR assignment and vice versa);
- entropy minimisation: L_EM = 1/2 [H(softmax(S_l)) + H(softmax(S_c))], H the mean row entropy;
- Gram regularisation: L_gram = mean of the off-diagonal entries of G = K K^T.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, iterations: int = 3) -> torch.Tensor:
    """Codes (B, P) for similarities (B, P): equipartition over prototypes, each row sums to 1.

    As SwAV: Q = exp(S / eps)^T normalised to sum 1, then alternately rows (prototypes) to 1/P and
    columns (samples) to 1/B; finally scaled by B so that every sample's code sums to 1 and every
    prototype receives B/P in total.
    """
    s = scores.detach()
    if s.dtype in (torch.float16, torch.bfloat16):     # AMP: normalise in float32
        s = s.float()
    q = torch.exp((s - s.max()) / epsilon).t()          # (P, B); the shift cancels in the normalisation
    n_proto, n = q.shape
    q /= q.sum()
    for _ in range(iterations):
        q /= q.sum(dim=1, keepdim=True)
        q /= n_proto
        q /= q.sum(dim=0, keepdim=True)
        q /= n
    return (q * n).t().to(scores.dtype)


def swapped_prediction(s_a: torch.Tensor, s_b: torch.Tensor, q_a: torch.Tensor, q_b: torch.Tensor,
                       temperature: float = 1.0) -> torch.Tensor:
    """1/2 [ -mean sum q_b log softmax(s_a/T) - mean sum q_a log softmax(s_b/T) ]."""
    la = F.log_softmax(s_a / temperature, dim=1)
    lb = F.log_softmax(s_b / temperature, dim=1)
    return 0.5 * (-(q_b * la).sum(1).mean() - (q_a * lb).sum(1).mean())


def entropy_minimisation(s_a: torch.Tensor, s_b: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Mean row entropy of the softmax assignments, averaged over the two modalities."""
    def ent(s):
        logp = F.log_softmax(s / temperature, dim=1)
        return -(logp.exp() * logp).sum(1).mean()
    return 0.5 * (ent(s_a) + ent(s_b))


def gram_offdiagonal(k: torch.Tensor) -> torch.Tensor:
    """Mean of the off-diagonal entries of K K^T."""
    g = k @ k.t()
    n = g.shape[0]
    return (g.sum() - g.diagonal().sum()) / (n * (n - 1))


class Prototypes(nn.Module):
    """P learnable prototypes of dimension D, L2-normalised in place before every use (as SwAV)."""

    def __init__(self, n: int, dim: int):
        super().__init__()
        self.weight = nn.Parameter(F.normalize(torch.randn(n, dim), dim=1))

    def forward(self) -> torch.Tensor:
        with torch.no_grad():
            self.weight.copy_(F.normalize(self.weight, dim=1))
        return self.weight


def projection_head(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """Linear-BN-ReLU-Linear (SwAV's projection head shape); its output is L2-normalised by the caller."""
    return nn.Sequential(nn.Linear(c_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, c_out))


def prototype_losses(e_lidar: torch.Tensor, e_cam: torch.Tensor, k: torch.Tensor, *, epsilon: float,
                     iterations: int, temperature: float) -> dict[str, torch.Tensor]:
    """Unweighted swap / EM / Gram terms for paired, L2-normalised embeddings (B, D) and prototypes (P, D)."""
    s_l, s_c = e_lidar @ k.t(), e_cam @ k.t()
    q_l, q_c = sinkhorn(s_l, epsilon, iterations), sinkhorn(s_c, epsilon, iterations)
    return {"swap": swapped_prediction(s_l, s_c, q_l, q_c, temperature),
            "em": entropy_minimisation(s_l, s_c),
            "gram": gram_offdiagonal(k)}
