"""Swin Transformer image encoder (Liu et al., ICCV 2021), laid out as OpenPCDet's BEVFusion one.

CLAP pretrains BEVFusion's encoders, so the benchmark's Swin must hand its weights to OpenPCDet's
``SwinTransformer`` (pcdet/models/backbones_image/swin.py, mmdet's layout) unchanged: the module
tree below gives the same ``state_dict`` names and shapes (``patch_embed.projection``,
``stages.i.blocks.j.attn.w_msa.*``, ``ffn.layers.0.0`` / ``ffn.layers.1``, ``stages.i.downsample``,
one ``norm{i}`` per output stage), and the maths a checkpoint relies on is the same too: patch
merging concatenates each 2 x 2 neighbourhood channel-major (as ``nn.Unfold`` does), inputs and
stage maps are zero-padded at the bottom/right to patch, merge and window multiples, and padded
tokens take part in the window attention as they do there. Plain torch, so it runs on a CPU, and
nothing is downloaded: every method trains it from its initialisation.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

SHIFT_MASK = -100.0   # mmdet's value for token pairs that a cyclic shift brought into one window


@dataclass(frozen=True)
class SwinSettings:
    """Defaults: BEVFusion's Swin-T, OpenPCDet tools/cfgs/nuscenes_models/bevfusion.yaml IMAGE_BACKBONE."""

    embed_dims: int = 96
    depths: tuple[int, ...] = (2, 2, 6, 2)
    num_heads: tuple[int, ...] = (3, 6, 12, 24)
    window_size: int = 7
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.2
    out_indices: tuple[int, ...] = (1, 2, 3)
    patch_size: int = 4          # OpenPCDet swin.py default PATCH_SIZE / STRIDES[0]

    @classmethod
    def from_cfg(cls, cfg: dict | None) -> "SwinSettings":
        cfg = dict(cfg or {})
        unknown = set(cfg) - {f.name for f in fields(cls)}
        if unknown:
            raise ValueError(f"model.image.swin: unknown key(s) {sorted(unknown)}")
        for key in ("depths", "num_heads", "out_indices"):
            if key in cfg:
                cfg[key] = tuple(cfg[key])
        s = cls(**cfg)
        if len(s.depths) != len(s.num_heads):
            raise ValueError(f"model.image.swin: {len(s.depths)} depths but {len(s.num_heads)} num_heads")
        for i, h in enumerate(s.num_heads):
            if (s.embed_dims * 2 ** i) % h:
                raise ValueError(f"model.image.swin: stage {i} width {s.embed_dims * 2 ** i} is not divisible "
                                 f"by its {h} heads")
        if not set(s.out_indices) <= set(range(len(s.depths))):
            raise ValueError(f"model.image.swin: out_indices {list(s.out_indices)} outside 0..{len(s.depths) - 1}")
        return s


def relative_position_index(window: int) -> torch.Tensor:
    """(w*w, w*w) row into the (2w-1)^2 bias table for each (query, key) pair of a window."""
    ys, xs = torch.meshgrid(torch.arange(window), torch.arange(window), indexing="ij")
    ys, xs = ys.flatten(), xs.flatten()
    dy = ys[:, None] - ys[None, :] + window - 1
    dx = xs[:, None] - xs[None, :] + window - 1
    return dy * (2 * window - 1) + dx


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Stochastic depth: drop a sample's whole residual branch, rescaling the kept ones."""
    if p == 0.0 or not training:
        return x
    keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1.0 - p)
    return x * keep / (1.0 - p)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative position bias."""

    def __init__(self, dims: int, heads: int, window: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window - 1) ** 2, heads))
        self.register_buffer("relative_position_index", relative_position_index(window))
        self.qkv = nn.Linear(dims, dims * 3)
        self.proj = nn.Linear(dims, dims)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, n_windows: int, mask: torch.Tensor | None) -> torch.Tensor:
        """``x`` (B * n_windows, N, C); ``mask`` (n_windows, N, N) of 0 / SHIFT_MASK or None."""
        bw, n, c = x.shape
        qkv = self.qkv(x).view(bw // n_windows, n_windows, n, 3, self.heads, c // self.heads)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5).unbind(0)                  # (B, nW, heads, N, hd)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.heads).permute(2, 0, 1)                 # (heads, N, N)
        attn_mask = bias if mask is None else bias + mask[:, None]         # (nW, heads, N, N)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask.to(q.dtype))
        return self.proj(out.permute(0, 1, 3, 2, 4).reshape(bw, n, c))


def _windows(x: torch.Tensor, w: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * H/w * W/w, w*w, C), windows in row-major order."""
    b, h, wd, c = x.shape
    return x.view(b, h // w, w, wd // w, w, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, w * w, c)


def _unwindows(x: torch.Tensor, w: int, h: int, wd: int) -> torch.Tensor:
    b = x.shape[0] // ((h // w) * (wd // w))
    return x.view(b, h // w, wd // w, w, w, -1).permute(0, 1, 3, 2, 4, 5).reshape(b, h, wd, -1)


def shift_mask(h: int, w: int, window: int, shift: int, device) -> torch.Tensor:
    """(nW, N, N): after the cyclic shift, a window may join regions that are not neighbours in the
    image; pairs from different regions get SHIFT_MASK."""
    region = torch.zeros(h, w, device=device)
    cuts = (slice(0, -window), slice(-window, -shift), slice(-shift, None))
    for i, hs in enumerate(cuts):
        for j, ws in enumerate(cuts):
            region[hs, ws] = i * 3 + j
    ids = _windows(region.view(1, h, w, 1), window).squeeze(-1)            # (nW, N)
    return (ids[:, None, :] != ids[:, :, None]).float() * SHIFT_MASK


class ShiftedWindowAttention(nn.Module):
    """Pads the map to window multiples, shifts it by half a window in odd blocks, attends per window."""

    def __init__(self, dims: int, heads: int, window: int, shift: int, drop_path_rate: float):
        super().__init__()
        self.window, self.shift, self.drop_path_rate = window, shift, drop_path_rate
        self.w_msa = WindowAttention(dims, heads, window)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        b, _, c = x.shape
        h, w = hw
        ws = self.window
        x = x.view(b, h, w, c)
        x = F.pad(x, (0, 0, 0, (ws - w % ws) % ws, 0, (ws - h % ws) % ws))
        hp, wp = x.shape[1:3]
        mask = None
        if self.shift:
            x = torch.roll(x, (-self.shift, -self.shift), dims=(1, 2))
            mask = shift_mask(hp, wp, ws, self.shift, x.device)
        y = self.w_msa(_windows(x, ws), (hp // ws) * (wp // ws), mask)
        y = _unwindows(y, ws, hp, wp)
        if self.shift:
            y = torch.roll(y, (self.shift, self.shift), dims=(1, 2))
        y = y[:, :h, :w].reshape(b, h * w, c)
        return drop_path(y, self.drop_path_rate, self.training)


class FeedForward(nn.Module):
    """Linear-GELU-Linear; the nesting gives mmdet's names ``layers.0.0`` and ``layers.1``."""

    def __init__(self, dims: int, hidden: int, drop_path_rate: float):
        super().__init__()
        self.drop_path_rate = drop_path_rate
        self.layers = nn.Sequential(nn.Sequential(nn.Linear(dims, hidden), nn.GELU()), nn.Linear(hidden, dims))

    def forward(self, x: torch.Tensor, identity: torch.Tensor) -> torch.Tensor:
        return identity + drop_path(self.layers(x), self.drop_path_rate, self.training)


class SwinBlock(nn.Module):
    def __init__(self, dims: int, heads: int, window: int, shift: bool, mlp_ratio: float, drop_path_rate: float):
        super().__init__()
        self.norm1 = nn.LayerNorm(dims)
        self.attn = ShiftedWindowAttention(dims, heads, window, window // 2 if shift else 0, drop_path_rate)
        self.norm2 = nn.LayerNorm(dims)
        self.ffn = FeedForward(dims, int(mlp_ratio * dims), drop_path_rate)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), hw)
        return self.ffn(self.norm2(x), identity=x)


class PatchEmbed(nn.Module):
    """Non-overlapping patch x patch convolution; the image is zero-padded at the bottom/right first."""

    def __init__(self, dims: int, patch: int):
        super().__init__()
        self.patch = patch
        self.projection = nn.Conv2d(3, dims, patch, stride=patch)
        self.norm = nn.LayerNorm(dims)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        p = self.patch
        x = F.pad(x, (0, (p - x.shape[-1] % p) % p, 0, (p - x.shape[-2] % p) % p))
        x = self.projection(x)
        hw = (x.shape[2], x.shape[3])
        return self.norm(x.flatten(2).transpose(1, 2)), hw


class PatchMerging(nn.Module):
    """2 x 2 neighbourhoods concatenated channel-major (index c * 4 + 2 * dy + dx, nn.Unfold's order,
    which the checkpoint's ``reduction`` weight assumes), normalised, then a linear map to 2C."""

    def __init__(self, dims: int):
        super().__init__()
        self.norm = nn.LayerNorm(4 * dims)
        self.reduction = nn.Linear(4 * dims, 2 * dims, bias=False)

    def forward(self, x: torch.Tensor, hw: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        b, _, c = x.shape
        h, w = hw
        x = F.pad(x.view(b, h, w, c), (0, 0, 0, w % 2, 0, h % 2))
        h2, w2 = x.shape[1] // 2, x.shape[2] // 2
        x = x.view(b, h2, 2, w2, 2, c).permute(0, 1, 3, 5, 2, 4).reshape(b, h2 * w2, 4 * c)
        return self.reduction(self.norm(x)), (h2, w2)


class SwinStage(nn.Module):
    def __init__(self, dims: int, depth: int, heads: int, window: int, mlp_ratio: float, rates: list[float],
                 downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList([SwinBlock(dims, heads, window, i % 2 == 1, mlp_ratio, rates[i])
                                     for i in range(depth)])
        self.downsample = PatchMerging(dims) if downsample else None

    def forward(self, x: torch.Tensor, hw: tuple[int, int]):
        """Returns the stage's own map (what an output reads) and the merged map the next stage reads."""
        for block in self.blocks:
            x = block(x, hw)
        if self.downsample is None:
            return x, hw, x, hw
        down, down_hw = self.downsample(x, hw)
        return x, hw, down, down_hw


class SwinTransformer(nn.Module):
    """Maps of the stages in ``out_indices`` (Swin-T: strides 8, 16, 32 with 192, 384, 768 channels)."""

    def __init__(self, settings: SwinSettings = SwinSettings()):
        super().__init__()
        s = self.settings = settings
        self.patch_embed = PatchEmbed(s.embed_dims, s.patch_size)
        # stochastic depth grows linearly over all blocks (Swin, and OpenPCDet's swin.py)
        rates = torch.linspace(0, s.drop_path_rate, sum(s.depths)).tolist()
        n = len(s.depths)
        self.stages = nn.ModuleList()
        for i, (depth, heads) in enumerate(zip(s.depths, s.num_heads)):
            first = sum(s.depths[:i])
            self.stages.append(SwinStage(s.embed_dims * 2 ** i, depth, heads, s.window_size, s.mlp_ratio,
                                         rates[first:first + depth], downsample=i < n - 1))
        self.out_indices = tuple(s.out_indices)
        for i in self.out_indices:
            self.add_module(f"norm{i}", nn.LayerNorm(s.embed_dims * 2 ** i))
        self.out_channels = [s.embed_dims * 2 ** i for i in self.out_indices]
        self.out_strides = [s.patch_size * 2 ** i for i in self.out_indices]
        for m in self.modules():           # Swin's initialisation (OpenPCDet swin.py init_weights)
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``x`` (N, 3, H, W) of any size -> [(N, C_i, ceil(H / s_i), ceil(W / s_i))] for the out stages."""
        x, hw = self.patch_embed(x)
        outs = []
        for i, stage in enumerate(self.stages):
            out, out_hw, x, hw = stage(x, hw)
            if i in self.out_indices:
                out = getattr(self, f"norm{i}")(out)
                outs.append(out.view(out.shape[0], *out_hw, -1).permute(0, 3, 1, 2).contiguous())
        return outs
