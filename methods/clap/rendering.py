"""NeuS-style differentiable rendering of depth and colour from a feature volume (UniPAD, CLAP).

CLAP's maths for the rendering pretext task (here, not in xmbench/pretraining, because no other
method renders; move it back when one does); every function is vectorised over rays and frames and
draws its randomness from a ``torch.Generator``. Conventions (UniPAD's, Nightmare-n/UniPAD,
projects/mmdet3d_plugin/models/dense_heads/render_utils/):

- Rays live in *scaled* scene units: metric coordinates times ``1 / max|point_cloud_range|``
  (models/base_surface_model.py, ``norm_scene=True``); depths and SDF values are in the same units.
- Samples along a ray are points ``t_0 < ... < t_{S-1}``; the SDF and colour are evaluated at each
  of them (``get_start_positions`` in models/neus.py).
- NeuS opacity of the interval [t_n, t_{n+1}]: ``alpha_n = max((Phi(s_n) - Phi(s_{n+1})) / Phi(s_n), 0)``
  with ``Phi(x) = sigmoid(inv_s * x)``; the last sample has no successor and gets ``alpha = 0``.
  Weights ``w_n = T_n alpha_n`` with ``T_n = prod_{j<n} (1 - alpha_j)``.
- Depth = ``sum_n w_n d_n`` and colour = ``sum_n w_n c(d_n)`` (CLAP v1 eq. 10; UniPAD's DepthRenderer
  divides by ``sum_n w_n``, its RGBRenderer is the same sum on a black background), where ``d_n`` is
  where interval n's weight sits (``interval_depths``): the mean of NeuS' continuous weight density
  over [t_n, t_{n+1}] with the SDF linear between the two samples. Putting it at the start t_n, as
  eq. 10 read literally does, renders every surface short by about half an interval (7 cm on a wall
  with the paper's samples); the interval's midpoint is unbiased only on average over jitters, while
  the density's mean is the zero crossing at high sharpness, exact on a plane.
- Samples: ``n_uniform`` stratified samples with one jitter per ray between the near and far
  planes of the scene box (ray_samplers.py ``UniformSampler``, ``single_jitter=True``;
  scene_colliders.py ``AABBBoxCollider``), then ``n_importance`` samples drawn from the weights of a
  fixed sharpness (``base_variance`` 64, ray_samplers.py ``NeuSSampler``) by inverse CDF, merged and
  sorted.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# ---------------------------------------------------------------------------------------------
# NeuS opacity, weights, and compositing


def neus_alpha(sdf: torch.Tensor, inv_s: torch.Tensor | float) -> torch.Tensor:
    """(..., S) SDF at the samples -> (..., S) opacity; the last sample's opacity is 0.

    (Phi(s_n) - Phi(s_n+1)) / Phi(s_n) = 1 - exp(log Phi(s_n+1) - log Phi(s_n)), computed in log space
    so that it stays exact where Phi underflows (deep behind a surface)."""
    log_phi = F.logsigmoid(sdf * inv_s)
    alpha = (-torch.expm1(log_phi[..., 1:] - log_phi[..., :-1])).clamp(min=0.0)
    return torch.cat([alpha, torch.zeros_like(alpha[..., :1])], dim=-1)


def weights_from_alpha(alpha: torch.Tensor) -> torch.Tensor:
    """w_n = T_n alpha_n with T_n = prod_{j<n}(1 - alpha_j) (exclusive cumulative product)."""
    trans = torch.cumprod(torch.cat([torch.ones_like(alpha[..., :1]), 1.0 - alpha[..., :-1] + 1e-10], -1), -1)
    return trans * alpha


def render_depth(t: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_n w_n t_n (CLAP v1 eq. 10), t the positions of the weights (``interval_depths``)."""
    return (weights * t).sum(-1)


def _phi_moment(s: torch.Tensor, k: torch.Tensor | float) -> torch.Tensor:
    """F(s) = s Phi(s) - softplus(k s) / k, an antiderivative of s dPhi/ds for Phi = sigmoid(k s).

    Written per sign so that neither form subtracts two numbers of the size of s (for s > 0 the
    textbook form cancels to ~1e-7 s in float32); both forms are finite everywhere, so the
    gradient through torch.where stays finite too."""
    ks = k * s
    pos = -s * torch.sigmoid(-ks) - F.softplus(-ks) / k
    neg = s * torch.sigmoid(ks) - F.softplus(ks) / k
    return torch.where(s >= 0, pos, neg)


def interval_depths(t: torch.Tensor, sdf: torch.Tensor, inv_s: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Where each interval's weight sits, (..., S), and its fraction of the way to the next sample.

    Within [t_n, t_{n+1}], NeuS' weight density is -dPhi(s(t))/dt for a single surface; with s linear
    between s_n and s_{n+1}, its mean position has the closed form
        s_bar = (F(s_n) - F(s_{n+1})) / (Phi(s_n) - Phi(s_{n+1})),
        d_n = t_n + (s_n - s_bar) / (s_n - s_{n+1}) (t_{n+1} - t_n),
    which tends to the linear zero crossing as the sharpness grows. Intervals that carry no weight
    (no decrease of Phi, or equal SDFs) take their midpoint; the last sample has no interval."""
    s0, s1 = sdf[..., :-1], sdf[..., 1:]
    phi0, phi1 = torch.sigmoid(s0 * inv_s), torch.sigmoid(s1 * inv_s)
    mass = phi0 - phi1
    ds = s0 - s1
    ok = (mass > 1e-6) & (ds > 1e-9)
    s_bar = (_phi_moment(s0, inv_s) - _phi_moment(s1, inv_s)) / torch.where(ok, mass, torch.ones_like(mass))
    frac = (s0 - s_bar) / torch.where(ok, ds, torch.ones_like(ds))
    frac = torch.where(ok, frac.clamp(0.0, 1.0), torch.full_like(frac, 0.5))
    pos = t[..., :-1] + frac * (t[..., 1:] - t[..., :-1])
    return torch.cat([pos, t[..., -1:]], -1), torch.cat([frac, torch.zeros_like(frac[..., :1])], -1)


def render_colour(rgb: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """rgb (..., S, 3), weights (..., S) -> (..., 3), black background."""
    return (weights.unsqueeze(-1) * rgb).sum(-2)


# ---------------------------------------------------------------------------------------------
# Rays and samples


def aabb_near_far(origins: torch.Tensor, dirs: torch.Tensor, box_min: torch.Tensor, box_max: torch.Tensor,
                  near_plane: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Entry/exit distances of rays with an axis-aligned box, the entry clamped to ``near_plane``."""
    inv = 1.0 / torch.where(dirs.abs() < 1e-9, torch.full_like(dirs, 1e-9), dirs)
    t1, t2 = (box_min - origins) * inv, (box_max - origins) * inv
    near = torch.minimum(t1, t2).amax(-1).clamp(min=near_plane)
    far = torch.maximum(t1, t2).amin(-1)
    return near, torch.maximum(far, near + 1e-4)


def stratified_samples(near: torch.Tensor, far: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """n samples per ray, evenly spaced in [near, far) with one random jitter per ray."""
    u = torch.rand(near.shape + (1,), generator=g).to(near)
    steps = (torch.arange(n, dtype=near.dtype, device=near.device) + u) / n
    return near.unsqueeze(-1) + (far - near).unsqueeze(-1) * steps


def importance_samples(t: torch.Tensor, far: torch.Tensor, weights: torch.Tensor, n: int,
                       g: torch.Generator) -> torch.Tensor:
    """Inverse-CDF samples over the intervals [t_k, t_{k+1}] (the last one ends at ``far``), weighted by
    ``weights`` (..., S); stratified with one jitter per ray. No gradient flows through them."""
    with torch.no_grad():
        edges = torch.cat([t, far.unsqueeze(-1)], -1)                                   # (..., S+1)
        w = weights + 1e-5 / weights.shape[-1]
        pdf = w / w.sum(-1, keepdim=True)
        cdf = torch.cat([torch.zeros_like(pdf[..., :1]), torch.cumsum(pdf, -1).clamp(max=1.0)], -1)
        u = (torch.arange(n, dtype=t.dtype, device=t.device)
             + torch.rand(t.shape[:-1] + (1,), generator=g).to(t)) / n                  # (..., n)
        idx = torch.searchsorted(cdf.contiguous(), u.contiguous(), right=True)
        lo = (idx - 1).clamp(0, edges.shape[-1] - 1)
        hi = idx.clamp(0, edges.shape[-1] - 1)
        c0, c1 = cdf.gather(-1, lo), cdf.gather(-1, hi)
        e0, e1 = edges.gather(-1, lo), edges.gather(-1, hi)
        denom = torch.where(c1 - c0 < 1e-8, torch.ones_like(c0), c1 - c0)
        return e0 + ((u - c0) / denom).clamp(0, 1) * (e1 - e0)


# ---------------------------------------------------------------------------------------------
# The field: trilinear features from the volume, MLPs for SDF and colour


class SmoothReLU(nn.Module):
    """silu(beta x) / beta: a smooth ReLU like UniPAD's Softplus(beta=100) (both within 0.3 / beta of
    ReLU, both C^1 so that SDF normals vary continuously), but ~20x faster on CPU, whose softplus and
    log1p kernels are not vectorised and hit denormals at beta = 100."""

    def __init__(self, beta: float = 100.0):
        super().__init__()
        self.beta = beta

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x * self.beta) / self.beta


class ConditionedMLP(nn.Module):
    """x_0 = A p; x_{l+1} = act(L_l(x_l + C_l f)); the feature enters every layer (UniPAD's
    SDFDecoder/RGBDecoder layout, fields/sdf_field.py), hidden width and depth from the config."""

    def __init__(self, feat_dim: int, out_dim: int, hidden: int, n_blocks: int, act: nn.Module):
        super().__init__()
        self.n_layers = n_blocks + 1
        self.hidden = hidden
        self.fc_p = nn.Linear(3, hidden)
        self.fc_c = nn.Linear(feat_dim, hidden * self.n_layers)    # all layers' feature projections at once
        self.lins = nn.ModuleList([nn.Linear(hidden, hidden) for _ in range(n_blocks)] + [nn.Linear(hidden, out_dim)])
        self.act = act

    def forward(self, p: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
        x = self.fc_p(p)
        c = self.fc_c(f).split(self.hidden, dim=-1)
        for i, lin in enumerate(self.lins):
            x = lin(x + c[i])
            if i < self.n_layers - 1:
                x = self.act(x)
        return x


class SDFField(nn.Module):
    """SDF and colour from a feature volume (B, C, Z, Y, X) that spans ``box`` (metric, xyz min/max).

    CLAP v1 eqs. 5-7: f = trilinear(volume, p); f_geo = MLP([p, f]); s = f_SDF(f_geo); c = f_RGB(f_geo).
    As UniPAD (fields/sdf_field.py), one MLP gives the SDF and the geometry features together (its
    last linear layer is f_SDF) and the colour MLP reads the geometry features (and p).
    Points are given in scaled units; ``inv_s`` = exp(10 * variance) is NeuS' learnable sharpness
    (``SingleVarianceNetwork``, initial variance 0.3).
    """

    def __init__(self, feat_dim: int, box: tuple[float, ...], scale: float, sdf_hidden: int = 16,
                 sdf_blocks: int = 5, geo_dim: int = 16, rgb_hidden: int = 16, rgb_blocks: int = 3,
                 variance_init: float = 0.3):
        super().__init__()
        self.scale = scale
        self.geo_dim = geo_dim
        self.register_buffer("box_min", torch.tensor(box[:3], dtype=torch.float32) * scale, persistent=False)
        self.register_buffer("box_max", torch.tensor(box[3:], dtype=torch.float32) * scale, persistent=False)
        self.sdf_net = ConditionedMLP(feat_dim, 1 + geo_dim, sdf_hidden, sdf_blocks, SmoothReLU(100.0))
        self.rgb_net = ConditionedMLP(geo_dim, 3, rgb_hidden, rgb_blocks, nn.ReLU())
        self.variance = nn.Parameter(torch.tensor(float(variance_init)))

    @property
    def inv_s(self) -> torch.Tensor:
        return torch.exp(self.variance * 10.0).clamp(1e-6, 1e6)

    def interpolate(self, volume: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
        """Trilinear features (B, M, C) at points (B, M, 3) in scaled units (zeros outside)."""
        norm = (pts - self.box_min) / (self.box_max - self.box_min) * 2 - 1
        out = F.grid_sample(volume, norm.view(norm.shape[0], 1, 1, -1, 3), mode="bilinear",
                            padding_mode="zeros", align_corners=False)
        return out.view(volume.shape[0], volume.shape[1], -1).transpose(1, 2)

    def sdf(self, volume: torch.Tensor, pts: torch.Tensor):
        """SDF (B, M), geometry feature (B, M, geo_dim) and the interpolated feature (B, M, C)."""
        feats = self.interpolate(volume, pts)
        h = self.sdf_net(pts, feats)
        return h[..., 0], h[..., 1:], feats

    def rgb(self, pts: torch.Tensor, geo: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.rgb_net(pts, geo))


def render_rays(field: SDFField, volume: torch.Tensor, origins: torch.Tensor, dirs: torch.Tensor,
                n_uniform: int, n_importance: int, g: torch.Generator, near_plane: float,
                colour_rays: torch.Tensor | None = None, extra_points: torch.Tensor | None = None,
                base_inv_s: float = 64.0) -> dict:
    """Render rays (B, R, 3) (scaled units, unit directions) through ``volume``.

    ``colour_rays`` (R,) bool says which rays need a colour (the MLP is run on their samples only);
    ``extra_points`` (B, E, 3) get their SDF evaluated in the same pass (the SDF-at-observed-point
    term). Returns depth (B, R), colour (B, Rc, 3) for the colour rays, weights, t, and extra_sdf.
    """
    b, r = origins.shape[:2]
    near, far = aabb_near_far(origins, dirs, field.box_min, field.box_max, near_plane)
    t = stratified_samples(near, far, n_uniform, g)                                       # (B, R, Su)
    if n_importance > 0:
        with torch.no_grad():
            pts = origins.unsqueeze(2) + dirs.unsqueeze(2) * t.unsqueeze(-1)
            s0, _, _ = field.sdf(volume.detach(), pts.view(b, -1, 3))
            w0 = weights_from_alpha(neus_alpha(s0.view(b, r, -1), base_inv_s))
        t_new = importance_samples(t, far, w0, n_importance, g)
        t, _ = torch.sort(torch.cat([t, t_new], -1), dim=-1)
    t = t.detach()
    n_s = t.shape[-1]
    pts = (origins.unsqueeze(2) + dirs.unsqueeze(2) * t.unsqueeze(-1)).view(b, -1, 3)
    n_extra = 0 if extra_points is None else extra_points.shape[1]
    query = pts if extra_points is None else torch.cat([pts, extra_points], 1)
    sdf, geo, feats = field.sdf(volume, query)
    ray_sdf = sdf[:, : r * n_s].view(b, r, n_s)
    weights = weights_from_alpha(neus_alpha(ray_sdf, field.inv_s))
    pos, frac = interval_depths(t, ray_sdf, field.inv_s)
    out = {"depth": render_depth(pos, weights), "weights": weights, "t": t, "sdf": ray_sdf,
           "extra_sdf": sdf[:, r * n_s:] if n_extra else None}
    if colour_rays is not None and bool(colour_rays.any()):
        sel = colour_rays.nonzero().squeeze(1)
        rc = sel.numel()
        def pick(x):   # (B, R*S, C) -> samples of the colour rays (B, Rc*S, C)
            return x[:, : r * n_s].view(b, r, n_s, -1)[:, sel].reshape(b, rc * n_s, -1)
        rgb = field.rgb(pick(query), pick(geo)).view(b, rc, n_s, 3)
        lam = frac[:, sel].unsqueeze(-1)            # colour where the weight sits, between the samples
        rgb = torch.cat([rgb[:, :, :-1] + lam[:, :, :-1] * (rgb[:, :, 1:] - rgb[:, :, :-1]), rgb[:, :, -1:]], 2)
        out["colour"] = render_colour(rgb, weights[:, sel])
    return out


# ---------------------------------------------------------------------------------------------
# Curvature of the SDF's level sets, and its spread into the images

# vertices of a regular tetrahedron on the unit sphere: sum_k v_k = 0, sum_k v_k v_k^T = 4/3 I
_TETRA = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, -1.0], [-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]) / math.sqrt(3.0)


def sdf_normals(sdf_fn, pts: torch.Tensor) -> torch.Tensor:
    """Unit normals: the autograd gradient of the SDF with respect to the point, normalised."""
    with torch.enable_grad():
        p = pts.detach().requires_grad_(True)
        grad, = torch.autograd.grad(sdf_fn(p).sum(), p)
    return F.normalize(grad, dim=-1, eps=1e-12)


def curvature_weights(sdf_fn, pts: torch.Tensor, h: float, eps: float = 1e-4) -> torch.Tensor:
    """|mean of the diagonal of the Jacobian of the unit normal| + eps at points (..., 3).

    The diagonal's mean is div(n) / 3 (mean curvature up to sign and scale). It is estimated from
    the normals at the four vertices x + h v_k of a regular tetrahedron: by the divergence theorem,
    sum_k n(x + h v_k) . v_k = (4/3) h tr(J) + O(h^2), so mean diag = sum_k n(x + h v_k) . v_k / (4h).
    Four normal evaluations (one batched autograd pass) instead of a double backward through the
    trilinear interpolation, whose second derivatives vanish inside each cell.
    ``sdf_fn`` maps (..., 3) points to (...) SDF values; no gradient flows out of the result.
    """
    v = _TETRA.to(pts)
    q = pts.detach().unsqueeze(-2) + h * v                                                 # (..., 4, 3)
    n = sdf_normals(sdf_fn, q)
    return ((n * v).sum(-1).sum(-1) / (4.0 * h)).abs() + eps


def gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of (N, H, W), kernel radius ceil(3 sigma), zero padding."""
    if sigma <= 0:
        return img
    rad = max(1, int(math.ceil(3 * sigma)))
    x = torch.arange(-rad, rad + 1, dtype=img.dtype, device=img.device)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    out = F.conv2d(img.unsqueeze(1), k.view(1, 1, 1, -1), padding=(0, rad))
    return F.conv2d(out, k.view(1, 1, -1, 1), padding=(rad, 0)).squeeze(1)


def splat_point_weights(uv: torch.Tensor, visible: torch.Tensor, weights: torch.Tensor, rows: torch.Tensor,
                        n_images: int, image_hw: tuple[int, int]) -> torch.Tensor:
    """Sum point weights into per-image pixel maps.

    uv (M, K, 2) pixel coordinates of M points in K cameras, visible (M, K), weights (M,), rows (M,)
    the frame of each point -> (n_images = frames * K, H, W), image index = frame * K + camera.
    """
    h, w = image_hw
    m, k = visible.shape
    pi, ci = visible.nonzero(as_tuple=True)
    u = uv[pi, ci, 0].long().clamp(0, w - 1)
    v = uv[pi, ci, 1].long().clamp(0, h - 1)
    flat = ((rows[pi] * k + ci) * h + v) * w + u
    out = torch.zeros(n_images * h * w, dtype=weights.dtype, device=weights.device)
    out.index_add_(0, flat, weights[pi])
    return out.view(n_images, h, w)


def draw(weights: torch.Tensor, n: int, g: torch.Generator) -> torch.Tensor:
    """torch.multinomial on rows of (R, M) weights, without replacement when every row allows it."""
    w = weights.detach().float().cpu()          # the harness' generator is a CPU generator
    enough = bool(((w > 0).sum(-1) >= n).all())
    return torch.multinomial(w, n, replacement=not enough, generator=g).to(weights.device)
