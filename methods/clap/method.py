"""CLAP (Chen et al., arXiv 2412.03059 v1): curvature sampling and learnable prototypes on top of
UniPAD-style masked rendering, with the LiDAR and camera branches pretrained jointly.

One step, per batch of frames:
1. Masked inputs (UniPAD): LiDAR voxels are dropped in blocks of 8 x 8 x 8 voxels (ratio 0.9 of the
   blocks of each frame); images are masked in 32 x 32 patches (ratio 0.9), on the input and on the
   stage features the camera neck reads.
2. Encoders (BEVFusion's, the benchmark's shared modules of xmbench.models, sized by model.image):
   the shared VoxelResBackBone8x -> HeightCompression (256-channel BEV at stride 8); the shared image
   encoder (ResNet or Swin-T) -> GeneralizedLSSFPN neck at stride 8 -> DepthLSS lift (depth-bin
   softmax x 80 context channels, the depthnet also reading the depth image of the masked LiDAR
   input) -> scatter-add splat onto the LiDAR BEV grid.
3. Fusion: BEVFusion's ConvFuser (concat(camera BEV, LiDAR BEV) -> 3x3 conv, 256 channels at the
   paper's sizes); the fused channels are unfolded into (C / Z) channels x Z height bins and a 3x3x3
   conv gives the rendering volume (UniPAD's render_conv, 32 channels). The checkpoint carries the
   encoders, neck, lift and fuser under OpenPCDet's names (``pretrained_modules``).
4. Rays: LiDAR rays from the sensor origin through observed points (target: range), pixel rays from
   each camera centre through pixels (target: the pixel's colour in [0, 1]). From epoch
   ``uniform_epochs`` on, LiDAR rays are drawn with torch.multinomial on the curvature weights of the
   points and pixel rays on the weights projected into each image and spread by a Gaussian blur.
5. NeuS rendering (methods/clap/rendering.py) and L_rend = 2.0 |depth err| + 0.1 |SDF(point)|
   (means over LiDAR rays) + 0.1 |colour err| (mean over pixel rays).
6. Prototypes (methods/clap/prototypes.py) on the BEV cells of the LiDAR (256) and camera (80)
   embeddings: L_proto = 1.0 L_swap + 0.1 L_EM + 0.1 L_gram; L = L_rend + 1.0 L_proto.

Every size that sets the cost (rays, samples, depth bins, candidate points, prototype cells) is a
hyper-parameter with the paper's value; ``model_cfg["render"]`` may override these counts (a small
CPU config). All randomness comes from ``batch["generator"]``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from methods.clap.prototypes import Prototypes, projection_head, prototype_losses
from methods.clap.rendering import (SDFField, curvature_weights, draw, gaussian_blur, render_rays,
                                   splat_point_weights)
from xmbench.data.frames import IMAGE_MEAN, IMAGE_STD
from xmbench.models.build import build_fuser, build_image_neck, build_lift
from xmbench.models.lss import lidar_depth_image
from xmbench.models.voxel_backbone import to_bev
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.contract import PretrainMethod
from xmbench.pretraining.projection import project_to_cameras

# hparams that model_cfg["render"] may override (counts only), under the same names
RENDER_KEYS = ("lidar_rays", "pixel_rays", "samples_uniform", "samples_importance", "depth_bins",
               "curvature_pool", "proto_cells")


def _conv_bn_relu(cin: int, cout: int, k: int, dims: int = 2) -> nn.Sequential:
    conv, bn = (nn.Conv2d, nn.BatchNorm2d) if dims == 2 else (nn.Conv3d, nn.BatchNorm3d)
    return nn.Sequential(conv(cin, cout, k, padding=k // 2, bias=False), bn(cout), nn.ReLU(inplace=True))


def block_mask(coords: torch.Tensor, batch_size: int, block: int, ratio: float, g: torch.Generator) -> torch.Tensor:
    """Keep mask of voxels (V, 4: b, z, y, x): per frame, a fraction ``1 - ratio`` of the occupied
    ``block``^3 blocks survives (at least one), chosen at random (UniPAD mask_sparse_encoder_hd.py)."""
    c = coords.long()
    bz, by, bx = (torch.div(c[:, i], block, rounding_mode="floor") for i in (1, 2, 3))
    span = int(c[:, 1:].max()) // block + 1 if len(c) else 1
    key = ((c[:, 0] * span + bz) * span + by) * span + bx
    uniq, inverse = torch.unique(key, return_inverse=True)
    frame = torch.div(uniq, span ** 3, rounding_mode="floor")
    n_per = torch.bincount(frame, minlength=batch_size)
    n_keep = torch.clamp(torch.round(n_per.double() * (1 - ratio)).long(), min=1)
    r = torch.rand(len(uniq), generator=g, dtype=torch.float64).to(coords.device)
    order = torch.argsort(frame.double() * 2 + r)                 # by frame, random within a frame
    start = torch.cumsum(n_per, 0) - n_per
    rank = torch.empty_like(order)
    rank[order] = torch.arange(len(order), device=coords.device)
    rank = rank - start[frame]
    return (rank < n_keep[frame])[inverse]


def patch_mask(n: int, hw: tuple[int, int], patch: int, ratio: float, g: torch.Generator) -> torch.Tensor:
    """(n, 1, ceil(H/patch), ceil(W/patch)) keep mask with round((1 - ratio) * patches) ones per image."""
    gh, gw = math.ceil(hw[0] / patch), math.ceil(hw[1] / patch)
    keep = max(1, round(gh * gw * (1 - ratio)))
    rank = torch.argsort(torch.rand(n, gh * gw, generator=g), dim=1).argsort(dim=1)
    return (rank < keep).float().view(n, 1, gh, gw)


class CLAP(PretrainMethod):
    RAY_SAMPLING = "curvature"     # clap_uniform: "uniform"
    USE_PROTOTYPES = True          # clap_noproto: False
    # BEVFusion's lift reads the LiDAR depth image (OpenPCDet bevfusion.yaml VTRANSFORM DepthLSSTransform),
    # here the masked LiDAR input's, so that the pretrained vtransform.* is BEVFusion's
    LIFT_LIDAR_DEPTH = True

    def __init__(self, lidar_backbone, image_backbone, hparams: dict, model_cfg: dict):
        super().__init__(lidar_backbone, image_backbone, hparams, model_cfg)
        self.lidar = lidar_backbone
        self.image = image_backbone
        hp = dict(hparams)
        for k, v in (model_cfg.get("render") or {}).items():
            if k not in RENDER_KEYS:
                raise ValueError(f"model.render.{k}: unknown key (known: {', '.join(RENDER_KEYS)})")
            hp[k] = v
        self.hp = hp
        grid = lidar_backbone.grid
        self.pcr = tuple(float(v) for v in grid.point_cloud_range)
        self.cell = (grid.voxel_size[0] * 8, grid.voxel_size[1] * 8)
        self.scale = 1.0 / max(abs(v) for v in self.pcr)
        # BEVFusion's camera branch and fuser, the benchmark's shared modules sized by model.image
        # (neck / lift / fuser), under the names OpenPCDet loads: the checkpoint carries them
        self.neck = build_image_neck(model_cfg, image_backbone)
        self.vtransform = build_lift(model_cfg, use_lidar_depth=self.LIFT_LIDAR_DEPTH)
        self.fuser = build_fuser(model_cfg, lidar_backbone.num_bev_features)
        c_cam, c_lidar, fused = self.vtransform.out_channels, lidar_backbone.num_bev_features, self.fuser.out_channels
        z_bins = hp["volume_z_bins"]
        if fused % z_bins:
            raise ValueError(f"model.image.fuser.channels {fused} must be divisible by CLAP's volume_z_bins {z_bins}")
        self.render_conv = _conv_bn_relu(fused // z_bins, hp["volume_channels"], 3, dims=3)
        self.field = SDFField(hp["volume_channels"], self.pcr, self.scale, sdf_hidden=hp["sdf_hidden"],
                              sdf_blocks=hp["sdf_blocks"], geo_dim=hp["geo_feature_dim"],
                              rgb_hidden=hp["rgb_hidden"], rgb_blocks=hp["rgb_blocks"],
                              variance_init=hp["variance_init"])
        if self.USE_PROTOTYPES:
            d = hp["proto_dim"]
            self.lidar_head = projection_head(c_lidar, hp["proto_head_hidden"], d)
            self.camera_head = projection_head(c_cam, hp["proto_head_hidden"], d)
            self.prototypes = Prototypes(hp["num_prototypes"], d)

    # ------------------------------------------------------------------ encoders
    def _lidar_bev(self, batch: dict, g: torch.Generator):
        """LiDAR BEV map of the block-masked voxels, and the mask of the points those voxels hold
        (the LiDAR input the camera lift's depth image may see)."""
        bsz = batch["batch_size"]
        vox = voxelize(batch["points"], batch["batch_idx"], bsz, self.lidar.grid)
        keep = block_mask(vox.coords, bsz, self.hp["lidar_mask_block"], self.hp["mask_ratio"], g)
        out = self.lidar(vox.features[keep], vox.coords[keep], bsz)
        kept_points = (vox.point_to_voxel >= 0) & keep[vox.point_to_voxel.clamp(min=0)]
        return to_bev(out["encoded"]), kept_points

    def _camera_bev(self, batch: dict, g: torch.Generator, kept_points: torch.Tensor):
        """Patch-masked images -> shared image encoder -> neck -> lift onto the LiDAR BEV grid."""
        images = batch["images"]
        bsz, n_cam, _, h, w = images.shape
        x = images.flatten(0, 1)
        mask = patch_mask(x.shape[0], (h, w), self.hp["image_mask_patch"], self.hp["mask_ratio"], g).to(x)
        x = x * F.interpolate(mask, scale_factor=self.hp["image_mask_patch"], mode="nearest")[..., :h, :w]
        # masked patches stay zero on every map the neck reads
        feats = [f * F.interpolate(mask, size=f.shape[-2:], mode="nearest") for f in self.image(x)]
        depth = None
        if self.vtransform.use_lidar_depth:
            depth = lidar_depth_image(batch["points"][kept_points, :3], batch["batch_idx"][kept_points], bsz,
                                      batch["lidar_to_cam"], batch["intrinsics"], (h, w))
        return self.vtransform(self.neck(feats)[0], batch["intrinsics"], batch["lidar_to_cam"], depth)

    def _volume(self, lidar_bev: torch.Tensor, cam_bev: torch.Tensor) -> torch.Tensor:
        fused = self.fuser(cam_bev, lidar_bev)
        b, c, h, w = fused.shape
        z = self.hp["volume_z_bins"]
        return self.render_conv(fused.view(b, c // z, z, h, w))            # (B, C_vol, Z, Y, X)

    def pretrained_modules(self) -> dict[str, nn.Module]:
        """What the checkpoint carries, under OpenPCDet's BEVFusion prefixes."""
        return {"backbone_3d": self.lidar, "image_backbone": self.image, "neck": self.neck,
                "vtransform": self.vtransform, "fuser": self.fuser}

    # ------------------------------------------------------------------ rays
    def _lidar_candidates(self, batch: dict):
        """Padded keyframe points (B, N, 3) inside the box and beyond ``close_radius``, and a mask."""
        pts, bidx, bsz = batch["points"], batch["batch_idx"], batch["batch_size"]
        x0, y0, z0, x1, y1, z1 = self.pcr
        xyz = pts[:, :3]
        ok = ((pts[:, 4] == 0) & (xyz[:, :2].norm(dim=1) > self.hp["close_radius"])
              & (xyz[:, 0] > x0) & (xyz[:, 0] < x1) & (xyz[:, 1] > y0) & (xyz[:, 1] < y1)
              & (xyz[:, 2] > z0) & (xyz[:, 2] < z1))
        xyz, bidx = xyz[ok], bidx[ok]
        counts = torch.bincount(bidx, minlength=bsz)
        if int(counts.min()) == 0:
            raise ValueError("CLAP: a frame has no LiDAR point inside the range to render")
        n = int(counts.max())
        start = torch.cumsum(counts, 0) - counts
        slot = torch.arange(len(bidx), device=xyz.device) - start[bidx]
        padded = xyz.new_zeros(bsz, n, 3)
        valid = torch.zeros(bsz, n, dtype=torch.bool, device=xyz.device)
        padded[bidx, slot] = xyz
        valid[bidx, slot] = True
        return padded, valid

    def _sample_rays(self, batch: dict, volume: torch.Tensor, g: torch.Generator):
        """LiDAR ray targets (B, L, 3) in metres and drawn pixel indices (B*K, P), flat in H*W."""
        hp = self.hp
        bsz, n_cam, _, h, w = batch["images"].shape
        cand, valid = self._lidar_candidates(batch)
        sky = torch.arange(h, device=cand.device) >= int(hp["sky_region"] * h)
        uniform_pix = sky.view(1, h, 1).expand(bsz * n_cam, h, w).float()
        # the warm-up is 4 of the paper's 12 epochs; a benchmark-shortened schedule keeps its proportion
        curvature = self.RAY_SAMPLING == "curvature" and batch.get("epoch", 0) >= (
            hp["uniform_epochs"] * batch.get("epochs", 1) / batch.get("method_epochs", 1))
        if not curvature:
            rows = draw(valid.float(), hp["lidar_rays"], g)
            pix = draw(uniform_pix.flatten(1), hp["pixel_rays"], g)
            return cand.gather(1, rows.unsqueeze(-1).expand(-1, -1, 3)), pix
        pool_n = hp.get("curvature_pool")
        if pool_n and pool_n < cand.shape[1]:
            pool = draw(valid.float(), pool_n, g)                              # uniform candidate pool
            pool_pts = cand.gather(1, pool.unsqueeze(-1).expand(-1, -1, 3))
            pool_valid = valid.gather(1, pool)
        else:
            pool_pts, pool_valid = cand, valid
        vol = volume.detach()
        bsz_ = vol.shape[0]

        def sdf_fn(q):
            return self.field.sdf(vol, q.reshape(bsz_, -1, 3))[0].view(q.shape[:-1])

        step = hp["curvature_step"] * min(self.cell) * self.scale
        wts = curvature_weights(sdf_fn, pool_pts * self.scale, step, hp["curvature_eps"]) * pool_valid
        rows = draw(wts, hp["lidar_rays"], g)
        lidar = pool_pts.gather(1, rows.unsqueeze(-1).expand(-1, -1, 3))
        # pixel weights: the pool's weights projected into each image, blurred, drawn per camera
        frame = torch.arange(bsz, device=cand.device).view(-1, 1).expand_as(pool_valid)[pool_valid]
        uv, _, vis = project_to_cameras(pool_pts[pool_valid], frame, batch["lidar_to_cam"],
                                        batch["intrinsics"], (h, w))
        maps = splat_point_weights(uv, vis, wts[pool_valid], frame, bsz * n_cam, (h, w))
        maps = gaussian_blur(maps, hp["pixel_blur_sigma"])
        peak = maps.flatten(1).amax(1).clamp(min=1e-12).view(-1, 1, 1)
        maps = (maps / peak + hp["pixel_weight_floor"]) * uniform_pix
        pix = draw(maps.flatten(1), hp["pixel_rays"], g)
        return lidar, pix

    def _pixel_rays(self, batch: dict, pix: torch.Tensor):
        """Origins, unit directions (B, K*P, 3) in metres and colours (B, K*P, 3) of drawn pixels."""
        images = batch["images"]
        bsz, n_cam, _, h, w = images.shape
        u, v = (pix % w).to(images.dtype), torch.div(pix, w, rounding_mode="floor").to(images.dtype)
        uv1 = torch.stack([u, v, torch.ones_like(u)], -1).view(bsz, n_cam, -1, 3)
        l2c = batch["lidar_to_cam"]
        rot_t = l2c[..., :3, :3].transpose(-1, -2)
        centre = -(rot_t @ l2c[..., :3, 3:]).squeeze(-1)
        dirs = torch.einsum("bkij,bkjl,bkpl->bkpi", rot_t, torch.linalg.inv(batch["intrinsics"]), uv1)
        dirs = F.normalize(dirs, dim=-1)
        origins = centre.unsqueeze(2).expand_as(dirs)
        mean = torch.as_tensor(IMAGE_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1)
        std = torch.as_tensor(IMAGE_STD, dtype=images.dtype, device=images.device).view(1, 3, 1)
        flat = images.flatten(0, 1).flatten(2)                                # (BK, 3, H*W)
        colour = flat.gather(2, pix.unsqueeze(1).expand(-1, 3, -1)) * std + mean
        colour = colour.clamp(0, 1).transpose(1, 2).reshape(bsz, -1, 3)
        return origins.reshape(bsz, -1, 3), dirs.reshape(bsz, -1, 3), colour

    # ------------------------------------------------------------------ losses
    def _render_losses(self, batch: dict, volume: torch.Tensor, g: torch.Generator) -> dict:
        hp, s = self.hp, self.scale
        lidar_pts, pix = self._sample_rays(batch, volume, g)
        rng = lidar_pts.norm(dim=-1)
        l_dirs = lidar_pts / rng.unsqueeze(-1)
        p_orig, p_dirs, colour = self._pixel_rays(batch, pix)
        origins = torch.cat([torch.zeros_like(lidar_pts), p_orig], 1) * s
        dirs = torch.cat([l_dirs, p_dirs], 1)
        n_l = lidar_pts.shape[1]
        colour_rays = torch.zeros(dirs.shape[1], dtype=torch.bool, device=dirs.device)
        colour_rays[n_l:] = True
        out = render_rays(self.field, volume, origins, dirs, hp["samples_uniform"], hp["samples_importance"], g,
                          near_plane=hp["near_plane"] * s, colour_rays=colour_rays, extra_points=lidar_pts * s,
                          base_inv_s=hp["importance_inv_s"])
        return {"render_depth": hp["w_depth"] * (out["depth"][:, :n_l] - rng * s).abs().mean(),
                "render_sdf": hp["w_sdf"] * out["extra_sdf"].abs().mean(),
                "render_rgb": hp["w_rgb"] * F.l1_loss(out["colour"], colour)}

    def _proto_losses(self, lidar_bev: torch.Tensor, cam_bev: torch.Tensor, g: torch.Generator) -> dict:
        """Swap / EM / Gram on the BEV cells (CLAP v1 eqs. 15-20: all N_3D cells of the embeddings),
        a random subset of ``proto_cells`` of them when that is set."""
        hp = self.hp
        e_l = lidar_bev.permute(0, 2, 3, 1).flatten(0, 2)
        e_c = cam_bev.permute(0, 2, 3, 1).flatten(0, 2)
        cap = hp.get("proto_cells")
        if cap and e_l.shape[0] > cap:
            pick = torch.randperm(e_l.shape[0], generator=g)[:cap].to(e_l.device)
            e_l, e_c = e_l[pick], e_c[pick]
        w = {k: hp["w_proto"] * hp[f"w_{k}"] for k in ("swap", "em", "gram")}
        k_norm = self.prototypes()
        e_l = F.normalize(self.lidar_head(e_l), dim=1)
        e_c = F.normalize(self.camera_head(e_c), dim=1)
        terms = prototype_losses(e_l, e_c, k_norm, epsilon=hp["sinkhorn_epsilon"],
                                 iterations=hp["sinkhorn_iterations"], temperature=hp["swap_temperature"])
        return {k: w[k] * v for k, v in terms.items()}

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        g = batch["generator"]
        lidar_bev, kept_points = self._lidar_bev(batch, g)
        cam_bev = self._camera_bev(batch, g, kept_points)
        volume = self._volume(lidar_bev, cam_bev)
        terms = self._render_losses(batch, volume, g)
        if self.USE_PROTOTYPES:
            terms.update(self._proto_losses(lidar_bev, cam_bev, g))
        return terms
