"""The camera-to-BEV lift of BEVFusion (Lift-Splat-Shoot, Philion and Fidler 2020; BEVFusion, Liu et
al. 2022): per image feature cell, a softmax over depth bins times a context vector, placed at the
3D points of its frustum and summed into the LiDAR's BEV grid.

One implementation for CLAP's pretraining and the downstream fusion and camera detectors. Its
``state_dict`` equals OpenPCDet's ``DepthLSSTransform`` (pcdet/models/view_transforms/depth_lss.py)
in names and shapes (``dx``, ``bx``, ``nx``, ``frustum``, ``dtransform``, ``depthnet``,
``downsample``), and the geometry buffers carry the same values for the same settings, so a
pretrained ``vtransform.*`` seeds BEVFusion's. The splat is a plain-torch scatter-add (OpenPCDet
uses a CUDA ``bev_pool``), so it runs on a CPU.

Without LiDAR depth (a cameras-only detector) the same class is a plain LSS lift: no ``dtransform.*``
keys, and ``depthnet.0.weight`` reads ``in_channels`` instead of ``in_channels + 64``; every other
key and shape stays, so a fusion-pretrained lift seeds all of it but that one tensor.
"""
from __future__ import annotations

import torch
from torch import nn

# OpenPCDet depth_lss.py: the depth-image encoder's widths, and its two strides (4 then 2), which
# bring the full-resolution depth image to the stride-8 feature map
DEPTH_CHANNELS = (8, 32, 64)


def _conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, bias: bool = True) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=bias), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def grid_buffers(xbound, ybound, zbound) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cell size ``dx``, first cell centre ``bx`` and cell count ``nx`` per axis (OpenPCDet gen_dx_bx)."""
    rows = (xbound, ybound, zbound)
    dx = torch.tensor([r[2] for r in rows], dtype=torch.float32)
    bx = torch.tensor([r[0] + r[2] / 2.0 for r in rows], dtype=torch.float32)
    nx = torch.tensor([int(round((r[1] - r[0]) / r[2])) for r in rows], dtype=torch.int64)
    return dx, bx, nx


def depth_values(dbound, depth_bins: int | None) -> torch.Tensor:
    """BEVFusion's bins ``arange(start, stop, step)`` (118 for [1, 60, 0.5]); ``depth_bins`` spreads
    that many bins over [start, stop) instead (a CPU config's coarser lift)."""
    d0, d1, step = dbound
    if depth_bins is None:
        return torch.arange(d0, d1, step, dtype=torch.float32)
    return d0 + torch.arange(depth_bins, dtype=torch.float32) * ((d1 - d0) / depth_bins)


def make_frustum(image_hw: tuple[int, int], feature_hw: tuple[int, int], depths: torch.Tensor) -> torch.Tensor:
    """(D, fh, fw, 3) of (u, v, depth): feature cells spread evenly from pixel 0 to the last pixel,
    as BEVFusion's create_frustum."""
    (ih, iw), (fh, fw) = image_hw, feature_hw
    d = depths.numel()
    xs = torch.linspace(0, iw - 1, fw, dtype=torch.float32).view(1, 1, fw).expand(d, fh, fw)
    ys = torch.linspace(0, ih - 1, fh, dtype=torch.float32).view(1, fh, 1).expand(d, fh, fw)
    ds = depths.view(d, 1, 1).expand(d, fh, fw)
    return torch.stack((xs, ys, ds), -1)


def lidar_depth_image(xyz: torch.Tensor, batch_idx: torch.Tensor, batch_size: int, lidar_to_cam: torch.Tensor,
                      intrinsics: torch.Tensor, image_hw: tuple[int, int],
                      lidar_aug: torch.Tensor | None = None) -> torch.Tensor:
    """(B, K, 1, H, W) depth of the nearest point seen at each pixel, 0 where no point lands.

    DepthLSS feeds this sparse image to its ``dtransform``. OpenPCDet keeps whichever point its
    kernel wrote last; the nearest one is the surface the pixel sees, and does not depend on order.
    ``lidar_aug`` (B, 4, 4) is the augmentation the points went through after calibration; it is
    undone before projecting, as in BEVFusion.
    """
    h, w = image_hw
    n_cam = lidar_to_cam.shape[1]
    out = xyz.new_zeros(batch_size * n_cam * h * w)
    for b in range(batch_size):              # per frame: (K, N, 3) in camera frames, no per-point matrices
        p = xyz[batch_idx == b]
        if lidar_aug is not None:
            inv = torch.linalg.inv(lidar_aug[b])
            p = p @ inv[:3, :3].T + inv[:3, 3]
        cam = torch.einsum("kij,nj->kni", lidar_to_cam[b, :, :3, :3], p) + lidar_to_cam[b, :, None, :3, 3]
        depth = cam[..., 2]
        uv = torch.einsum("kij,knj->kni", intrinsics[b], cam)[..., :2] / depth.clamp(min=1e-6).unsqueeze(-1)
        seen = (depth > 1e-3) & (uv[..., 0] >= 0) & (uv[..., 0] < w) & (uv[..., 1] >= 0) & (uv[..., 1] < h)
        k_i, n_i = seen.nonzero(as_tuple=True)
        pix = ((b * n_cam + k_i) * h + uv[k_i, n_i, 1].long()) * w + uv[k_i, n_i, 0].long()
        out.scatter_reduce_(0, pix, depth[k_i, n_i], reduce="amin", include_self=False)
    return out.view(batch_size, n_cam, 1, h, w)


class LSSTransform(nn.Module):
    """Stride-8 camera features of B x K images -> a (B, out_channels, Y, X) BEV map on the LiDAR grid.

    ``xbound``/``ybound``/``zbound`` are (start, stop, cell) of the splat grid, ``downsample`` times
    finer than the BEV map it returns (BEVFusion: 0.3 m cells, downsample 2, the LiDAR's 0.6 m);
    ``dbound`` (start, stop, step) the depth bins; ``image_hw`` the network input, ``feature_hw``
    the map ``forward`` receives (``ceil(image / 8)``).
    """

    def __init__(self, in_channels: int, out_channels: int, image_hw: tuple[int, int],
                 feature_hw: tuple[int, int], xbound, ybound, zbound, dbound, depth_bins: int | None = None,
                 downsample: int = 2, use_lidar_depth: bool = True):
        super().__init__()
        if downsample not in (1, 2):
            raise ValueError(f"lift downsample must be 1 or 2 (BEVFusion's choices), got {downsample}")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.image_hw, self.feature_hw = tuple(image_hw), tuple(feature_hw)
        self.use_lidar_depth = use_lidar_depth
        # what a fusion-pretrained (DepthLSS) vtransform.* holds that this lift knowingly does not take
        self.ignored_init_keys = () if use_lidar_depth else ("dtransform.", "depthnet.0.weight")
        dx, bx, nx = grid_buffers(xbound, ybound, zbound)
        self.register_buffer("dx", dx)
        self.register_buffer("bx", bx)
        self.register_buffer("nx", nx)
        self.register_buffer("frustum", make_frustum(self.image_hw, self.feature_hw, depth_values(dbound, depth_bins)))
        self.D = self.frustum.shape[0]
        self.grid_shape = tuple(int(v) for v in nx)          # (X, Y, Z) cells of the splat
        if use_lidar_depth:
            c1, c2, c3 = DEPTH_CHANNELS
            self.dtransform = nn.Sequential(*_conv_bn_relu(1, c1, 1), *_conv_bn_relu(c1, c2, 5, stride=4),
                                            *_conv_bn_relu(c2, c3, 5, stride=2))
        extra = DEPTH_CHANNELS[-1] if use_lidar_depth else 0
        self.depthnet = nn.Sequential(*_conv_bn_relu(in_channels + extra, in_channels, 3),
                                      *_conv_bn_relu(in_channels, in_channels, 3),
                                      nn.Conv2d(in_channels, self.D + out_channels, 1))
        c = out_channels
        splat_channels = c * self.grid_shape[2]               # height cells folded into channels
        if downsample == 2:
            self.downsample = nn.Sequential(*_conv_bn_relu(splat_channels, c, 3, bias=False),
                                            *_conv_bn_relu(c, c, 3, stride=2, bias=False),
                                            *_conv_bn_relu(c, c, 3, bias=False))
        elif splat_channels == c:
            self.downsample = nn.Identity()
        else:
            raise ValueError("a lift without downsampling needs one height cell (zbound spanning the range)")

    # ------------------------------------------------------------------ geometry
    def geometry(self, intrinsics: torch.Tensor, lidar_to_cam: torch.Tensor,
                 lidar_aug: torch.Tensor | None = None) -> torch.Tensor:
        """(B, K, D, fh, fw, 3) LiDAR-frame points of the frustum.

        Image-plane augmentation (resize, crop, flip, rotation) is affine in pixels, so callers fold
        it into ``intrinsics`` (K' = A K), which replaces BEVFusion's post_rots / post_trans;
        ``lidar_aug`` (B, 4, 4) is BEVFusion's lidar_aug_matrix (extra_rots / extra_trans).
        """
        cam_to_lidar = torch.linalg.inv(lidar_to_cam.float())
        combine = cam_to_lidar[..., :3, :3] @ torch.linalg.inv(intrinsics.float())      # (B, K, 3, 3)
        f = self.frustum
        pix = torch.cat([f[..., :2] * f[..., 2:3], f[..., 2:3]], -1)                   # (D, fh, fw, 3)
        pts = torch.einsum("bkij,dhwj->bkdhwi", combine, pix) + cam_to_lidar[:, :, None, None, None, :3, 3]
        if lidar_aug is not None:
            a = lidar_aug.float()
            pts = torch.einsum("bij,bkdhwj->bkdhwi", a[:, :3, :3], pts) + a[:, None, None, None, None, :3, 3]
        return pts

    # ------------------------------------------------------------------ depth x context
    def camera_features(self, feats: torch.Tensor, depth_image: torch.Tensor | None):
        """-> depth distribution (BK, D, fh, fw) and context (BK, C, fh, fw)."""
        if tuple(feats.shape[-2:]) != self.feature_hw:
            raise ValueError(f"lift: feature map {tuple(feats.shape[-2:])} but the frustum was built for "
                             f"{self.feature_hw} (image {self.image_hw} at stride 8)")
        x = feats
        if self.use_lidar_depth:
            if depth_image is None:
                raise ValueError("lift: built with use_lidar_depth, so forward needs the LiDAR depth image")
            d = self.dtransform(depth_image.flatten(0, 1).to(feats.dtype))
            if d.shape[-2:] != feats.shape[-2:]:
                raise ValueError(f"lift: depth image {tuple(depth_image.shape[-2:])} encodes to "
                                 f"{tuple(d.shape[-2:])}, not the feature map's {tuple(feats.shape[-2:])}")
            x = torch.cat([d, x], 1)                                  # depth channels first (OpenPCDet)
        x = self.depthnet(x)
        return x[:, :self.D].softmax(1), x[:, self.D:self.D + self.out_channels]

    # ------------------------------------------------------------------ splat
    def splat(self, prob: torch.Tensor, ctx: torch.Tensor, geom: torch.Tensor) -> torch.Tensor:
        """Sum prob x context of every frustum point into its cell: (B, C * Z, X, Y), OpenPCDet's
        bev_pool layout (height cells folded into channels z-major), which its ``downsample`` convs
        expect. Only points inside the grid are expanded to C channels."""
        b, k = geom.shape[:2]
        nx, ny, nz = self.grid_shape
        cell = torch.floor((geom - (self.bx - self.dx / 2.0)) / self.dx).long()      # (B, K, D, fh, fw, 3)
        inside = ((cell >= 0) & (cell < self.nx)).all(-1)
        b_i, k_i, d_i, h_i, w_i = inside.nonzero(as_tuple=True)
        c = cell[b_i, k_i, d_i, h_i, w_i]
        target = ((b_i * nz + c[:, 2]) * nx + c[:, 0]) * ny + c[:, 1]
        img = b_i * k + k_i
        ctx_cells = ctx.permute(0, 2, 3, 1)                                             # (BK, fh, fw, C)
        vals = prob[img, d_i, h_i, w_i].unsqueeze(1) * ctx_cells[img, h_i, w_i]
        out = ctx.new_zeros(b * nz * nx * ny, ctx.shape[1])
        out.index_add_(0, target, vals)
        return out.view(b, nz, nx, ny, -1).permute(0, 1, 4, 2, 3).reshape(b, -1, nx, ny)

    def forward(self, feats: torch.Tensor, intrinsics: torch.Tensor, lidar_to_cam: torch.Tensor,
                depth_image: torch.Tensor | None = None, lidar_aug: torch.Tensor | None = None) -> torch.Tensor:
        """``feats`` (B*K, in_channels, fh, fw), the neck's first map; ``intrinsics`` (B, K, 3, 3) scaled
        to the input; ``lidar_to_cam`` (B, K, 4, 4); ``depth_image`` (B, K, 1, H, W) from
        ``lidar_depth_image`` when built with LiDAR depth -> (B, out_channels, Y, X), the layout of
        the LiDAR BEV map (HeightCompression's)."""
        prob, ctx = self.camera_features(feats, depth_image)
        bev = self.splat(prob, ctx, self.geometry(intrinsics, lidar_to_cam, lidar_aug))
        return self.downsample(bev).permute(0, 1, 3, 2).contiguous()
