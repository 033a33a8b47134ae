"""SimIPU (Li et al., AAAI 2022) on the benchmark's voxel and image backbones.

Intra-modal spatial perception: view A is the cloud as loaded, view B the same cloud rotated about
z, scaled and flipped. Each view goes through the LiDAR backbone; the voxels of its final output
(``encoded``: stride 8 in x/y, the tensor the checkpoint exports, so every layer is pretrained) stand
for SimIPU's set-abstraction points, with the mean of their points as their location. Per
frame, farthest point sampling keeps ``num_samples`` voxels of each view; B's locations are mapped
back through the inverse transform and matched one-to-one to A's by the Hungarian algorithm on
distance. A 3-layer head maps both to 128-d and InfoNCE makes A's voxel (query) pick its match in B
(key, under stop-gradient) among all sampled voxels of the batch.

Inter-modal feature interaction: A's sampled voxels are projected into the six cameras (the one
nearer the image centre wins when two see it); the last ResNet stage is sampled bilinearly there.
InfoNCE with the image feature as query and the point feature detached as key, so this term trains
the image encoder (and its head) only, as in the official code.

Equations (q, k L2-normalised, tau the temperature, N pairs over the whole batch):
    L_intra = -1/N sum_i log softmax_j(<g(f_A,i), sg[g(f_B,m(i))]> / tau)_i
    L_inter = -1/M sum_i log softmax_j(<h(I(pi(p_i))), sg[g'(f_A,i)]> / tau)_i
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from methods.simipu.matching import farthest_point_sample, hungarian_match
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.augment import random_view
from xmbench.pretraining.contract import PretrainMethod
from xmbench.pretraining.losses import info_nce
from xmbench.pretraining.projection import project_to_cameras
from xmbench.pretraining.sparse_lookup import point_rows

FEATURE_STRIDE = 32  # ResNet's last stage (xmbench/models/resnet.py: strides 4, 8, 16, 32)


def projection_mlp(c_in: int, hidden: int, c_out: int) -> nn.Sequential:
    """SimIPU's projection_MLP: three Linear layers, BatchNorm after each, ReLU after the first two."""
    return nn.Sequential(nn.Linear(c_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                         nn.Linear(hidden, c_out), nn.BatchNorm1d(c_out))


def sample_feature_map(fmap: torch.Tensor, image_id: torch.Tensor, uv: torch.Tensor, stride: int) -> torch.Tensor:
    """Bilinear samples (M, C) of ``fmap`` (N, C, h, w) at input-pixel coordinates ``uv`` (M, 2) of image
    ``image_id``. Feature cell (j, i) of a stride-s map built by k3/p1 (and k7/p3) stride-2 convs is
    centred on input pixel (s*j, s*i), hence align_corners=True on ``uv / s``; one grid_sample over all
    images, each padded to the largest number of points."""
    n, _, h, w = fmap.shape
    counts = torch.bincount(image_id, minlength=n)
    order = torch.argsort(image_id, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    slot = torch.empty_like(image_id)
    slot[order] = torch.arange(len(order), device=uv.device) - starts[image_id[order]]
    f = uv / stride
    norm = torch.stack([f[:, 0] / max(w - 1, 1), f[:, 1] / max(h - 1, 1)], 1) * 2 - 1
    grid = uv.new_full((n, 1, int(counts.max()), 2), -2.0)
    grid[image_id, 0, slot] = norm.to(grid.dtype)
    out = F.grid_sample(fmap, grid.to(fmap.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    return out[image_id, :, 0, slot]


class SimIPU(PretrainMethod):
    lidar_nograd_views = 1  # view B's backbone pass, under stop-gradient (the step benchmark's reference counts it)
    def __init__(self, lidar_backbone, image_backbone, hparams: dict, model_cfg: dict):
        super().__init__(lidar_backbone, image_backbone, hparams, model_cfg)
        c_pts = lidar_backbone.num_point_features
        c_img = image_backbone.out_channels[-1]
        d, r = hparams["embed_dim"], hparams["head_hidden_ratio"]
        self.mlp_intra_points = projection_mlp(c_pts, round(r * c_pts), d)
        self.mlp_cross_points = projection_mlp(c_pts, round(r * c_pts), d)
        self.mlp_cross_img = projection_mlp(c_img, round(r * c_img), d)

    def optimizer_groups(self) -> dict[str, list[nn.Parameter]]:
        """The official HybridOptimizerConstructor gives pts_backbone.* to AdamW ('pts') and img_backbone.*,
        mlp_cross_img.*, mlp_intro_points.*, mlp_cross_points.* to SGD lr 0.03 ('img' and 'mlp', whose
        settings are identical); here 'image' is that SGD, 'lidar' the AdamW."""
        heads = [*self.mlp_intra_points.parameters(), *self.mlp_cross_points.parameters(),
                 *self.mlp_cross_img.parameters()]
        return {"lidar": list(self.lidar.parameters()), "image": list(self.image.parameters()) + heads}

    def _encoded(self, points: torch.Tensor, batch_idx: torch.Tensor, bsz: int):
        """Features of the encoder's output rows that hold input points, their frame and the mean of
        their points."""
        vox = voxelize(points, batch_idx, bsz, self.lidar.grid)
        enc = self.lidar(vox.features, vox.coords, bsz)["encoded"]
        row = point_rows(enc, vox.coords, vox.point_to_voxel, self.lidar.sparse_shape)
        ok = row >= 0
        row = row[ok]
        n = enc.features.shape[0]
        xyz = points[ok, :3].detach()
        centre = xyz.new_zeros(n, 3).index_add_(0, row, xyz)
        count = torch.bincount(row, minlength=n)
        has = count > 0
        centre = centre[has] / count[has, None].to(xyz.dtype)
        return enc.features[has], enc.indices[has, 0].long(), centre

    def _fps(self, centre: torch.Tensor, frame: torch.Tensor, bsz: int) -> torch.Tensor:
        return farthest_point_sample(centre, frame, bsz, self.hp["num_samples"])

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        hp, g, bsz = self.hp, batch["generator"], batch["batch_size"]
        t = hp["temperature"]
        points, bidx = batch["points"], batch["batch_idx"]
        view_b = random_view(points, bidx, bsz, g, rotation_deg=hp["rotation_deg"], scale=tuple(hp["scale"]),
                             flip=hp["flip"])
        images = batch["images"]
        n_cam, (h, w) = images.shape[1], images.shape[-2:]
        img_flip = torch.rand(bsz * n_cam, generator=g) < hp["image_flip_prob"]

        # ---- intra-modal: A with gradient, B under stop-gradient (no graph is built for it)
        feat_a, frame_a, cen_a = self._encoded(points, bidx, bsz)
        with torch.inference_mode():     # no autograd bookkeeping at all: its outputs are only read without grad
            feat_b, frame_b, cen_b = self._encoded(view_b.points, view_b.batch_idx, bsz)
            cen_b = view_b.unaugment(cen_b, frame_b)
        sel = self._fps(torch.cat([cen_a, cen_b]), torch.cat([frame_a, frame_b + bsz]), 2 * bsz)
        n_a = len(cen_a)
        sel_a, sel_b = sel[sel < n_a], sel[sel >= n_a] - n_a
        ia, ib = hungarian_match(cen_a[sel_a], frame_a[sel_a], cen_b[sel_b], frame_b[sel_b], bsz)
        if len(ia) < 2:
            raise ValueError("SimIPU needs at least two matched stride-8 voxels in a batch")
        q = self.mlp_intra_points(feat_a[sel_a[ia]])
        with torch.no_grad():
            k = self.mlp_intra_points(feat_b[sel_b[ib]])
        intra = info_nce(q, k, t)

        # ---- inter-modal: image feature (query) against the detached point feature (key)
        p_xyz, p_frame = cen_a[sel_a], frame_a[sel_a]
        uv, _, visible = project_to_cameras(p_xyz, p_frame, batch["lidar_to_cam"], batch["intrinsics"], (h, w))
        off_centre = (uv[..., 0] - (w - 1) / 2).square() + (uv[..., 1] - (h - 1) / 2).square()
        cam = torch.where(visible, off_centre, torch.full_like(off_centre, float("inf"))).argmin(1)
        seen = visible.any(1)
        image_id = p_frame[seen] * n_cam + cam[seen]
        uv = uv[seen, cam[seen]]
        flipped = img_flip.to(uv.device)[image_id]
        uv = torch.stack([torch.where(flipped, (w - 1) - uv[:, 0], uv[:, 0]), uv[:, 1]], 1)
        imgs = images.flatten(0, 1)
        imgs = torch.where(img_flip.to(imgs.device)[:, None, None, None], imgs.flip(-1), imgs)
        fmap = self.image(imgs)[-1]
        if int(seen.sum()) < 2:
            return {"intra": intra, "inter": fmap.sum() * 0.0}
        img_feat = sample_feature_map(fmap, image_id, uv, FEATURE_STRIDE)
        q_img = self.mlp_cross_img(img_feat)
        with torch.no_grad():
            k_pts = self.mlp_cross_points(feat_a[sel_a[seen]])
        return {"intra": intra, "inter": info_nce(q_img, k_pts, t)}
