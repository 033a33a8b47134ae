"""CrossPoint (Afham et al., CVPR 2022) carried over to driving scenes.

An instance is one camera frustum of one frame: the voxel features of the encoder's final output
(``encoded``, the tensor the checkpoint exports and detection reads, so that every layer of the
transferred backbone is pretrained) whose centres project into that camera are max- and mean-pooled
(CrossPoint's DGCNN pools max and mean) and go through the point head; that camera's image goes
through the image encoder and head. IMID contrasts the two augmented views of each instance, CMID
the mean of the two point projections with the image. As train_crosspoint.py, both views go through
the point head in one call (its BatchNorm normalises the 2N rows together, which is part of the loss).
"""
from __future__ import annotations

import torch
from torch import nn

from xmbench.data.frames import IMAGE_MEAN, IMAGE_STD
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.augment import color_jitter, random_hflip, random_view
from xmbench.pretraining.contract import PretrainMethod
from xmbench.pretraining.losses import nt_xent
from xmbench.pretraining.projection import project_to_cameras
from xmbench.pretraining.sparse_lookup import point_rows


def _scatter(src: torch.Tensor, index: torch.Tensor, n: int, reduce: str) -> torch.Tensor:
    out = src.new_zeros(n, src.shape[1])
    return out.scatter_reduce(0, index[:, None].expand_as(src), src, reduce=reduce, include_self=False)


class CrossPoint(PretrainMethod):
    lidar_views = 2  # both augmented views go through the LiDAR backbone with gradients (IMID is symmetric)

    def __init__(self, lidar_backbone, image_backbone, hparams: dict, model_cfg: dict):
        super().__init__(lidar_backbone, image_backbone, hparams, model_cfg)
        c_pts = 2 * lidar_backbone.num_point_features      # max ++ mean pooled
        c_img = image_backbone.out_channels[-1]
        d, hp = hparams["embed_dim"], hparams
        self.point_head = nn.Sequential(nn.Linear(c_pts, hp["point_head_hidden"]), nn.BatchNorm1d(hp["point_head_hidden"]),
                                        nn.ReLU(inplace=True), nn.Linear(hp["point_head_hidden"], d))
        self.image_head = nn.Sequential(nn.Linear(c_img, hp["image_head_hidden"], bias=False),
                                        nn.BatchNorm1d(hp["image_head_hidden"]), nn.ReLU(inplace=True),
                                        nn.Linear(hp["image_head_hidden"], d, bias=False))

    def _view(self, batch: dict, g: torch.Generator):
        hp = self.hp
        return random_view(batch["points"], batch["batch_idx"], batch["batch_size"], g,
                           rotation_deg=hp["rotation_deg"], scale=tuple(hp["scale"]), flip=hp["flip"],
                           translation=hp["translation"], jitter_std=hp["jitter_std"],
                           jitter_clip=hp["jitter_clip"], max_dropout=hp["max_dropout"])

    def _frustum_features(self, batch: dict, views) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (2, B*K, C) per view and instance, and which instances hold any voxel."""
        bsz, n_cam = batch["batch_size"], batch["images"].shape[1]
        pts = torch.cat([v.points for v in views])
        bidx = torch.cat([v.batch_idx + i * bsz for i, v in enumerate(views)])
        orig_xyz = torch.cat([batch["points"][v.keep, :3] for v in views])
        vox = voxelize(pts, bidx, 2 * bsz, self.lidar.grid)
        enc = self.lidar(vox.features, vox.coords, 2 * bsz)["encoded"]
        point_row = point_rows(enc, vox.coords, vox.point_to_voxel, self.lidar.sparse_shape)
        ok = point_row >= 0
        # voxel centre in the un-augmented frame: the mean of its points' original coordinates
        n_rows = enc.features.shape[0]
        centre = _scatter(orig_xyz[ok], point_row[ok], n_rows, "mean")
        has_pts = torch.bincount(point_row[ok], minlength=n_rows) > 0
        row_batch = enc.indices[:, 0].long()
        frame = row_batch % bsz
        h, w = batch["images"].shape[-2:]
        _, _, visible = project_to_cameras(centre, frame, batch["lidar_to_cam"], batch["intrinsics"], (h, w))
        visible &= has_pts[:, None]
        r, k = torch.nonzero(visible, as_tuple=True)
        inst = row_batch[r] * n_cam + k                     # view-major: (view * B + frame) * K + cam
        feats = enc.features[r]
        n_inst = 2 * bsz * n_cam
        pooled = torch.cat([_scatter(feats, inst, n_inst, "amax"), _scatter(feats, inst, n_inst, "mean")], 1)
        count = torch.bincount(inst, minlength=n_inst).view(2, bsz * n_cam)
        return pooled.view(2, bsz * n_cam, -1), (count > 0).all(0)

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        g = batch["generator"]
        views = [self._view(batch, g), self._view(batch, g)]
        pooled, valid = self._frustum_features(batch, views)
        if valid.sum() < 2:
            raise ValueError("CrossPoint needs at least two camera frusta holding points in a batch")
        n = int(valid.sum())
        z1, z2 = self.point_head(torch.cat([pooled[0][valid], pooled[1][valid]])).split(n)
        images = batch["images"].flatten(0, 1)[valid]
        mean, std = torch.from_numpy(IMAGE_MEAN), torch.from_numpy(IMAGE_STD)
        images = color_jitter(images, g, mean.to(images), std.to(images), **self.hp["color_jitter"])
        images, _ = random_hflip(images, g)
        img = self.image(images)[-1].mean(dim=(2, 3))
        e = self.image_head(img)
        t = self.hp["temperature"]
        return {"imid": nt_xent(z1, z2, t), "cmid": nt_xent((z1 + z2) / 2, e, t)}
