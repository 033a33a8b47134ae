"""CenterPoint on the shared LiDAR backbone: BEV backbone, center head, targets, losses, decoding.

The layout follows OpenPCDet's ``CenterPoint`` (``BaseBEVBackbone`` + ``CenterHead``) so that the
native engine and the OpenPCDet engine train the same kind of detector:

- boxes are ``(N, 9)`` arrays ``x, y, z, dx, dy, dz, heading, vx, vy`` in the LiDAR frame
  (``dx`` along the heading: nuScenes' length; ``dy``: width; ``dz``: height), labels are
  1-based indices into the run's class names;
- one heatmap per class, grouped into heads (``class_names_each_head``), each head also
  regressing ``center`` (sub-cell offset, 2), ``center_z`` (1), ``dim`` (log size, 3),
  ``rot`` (cos, sin) and ``vel`` (2), trained with CenterNet's focal loss on the heatmaps and
  an L1 loss on the positives (OpenPCDet's ``FocalLossCenterNet`` and ``RegLossCenterNet``);
- heatmap targets are Gaussians whose radius follows CenterPoint's rule (``gaussian_radius``
  with ``min_overlap`` 0.1, clamped to ``min_radius`` 2);
- decoding takes the top-K heatmap peaks, keeps those above a score threshold inside the
  post-centre range, and applies CenterPoint's circle NMS per head (suppress a box whose squared
  BEV centre distance to a kept box is at most ``min_radius`` of that head).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

# OpenPCDet's head grouping for nuScenes (cbgs_voxel0075_res3d_centerpoint.yaml) and
# CenterPoint's circle-NMS radii for the same six tasks (min_radius in its nuScenes test_cfg).
NUSCENES_CLASSES = ("car", "truck", "construction_vehicle", "bus", "trailer", "barrier", "motorcycle",
                    "bicycle", "pedestrian", "traffic_cone")
NUSCENES_HEADS = (("car",), ("truck", "construction_vehicle"), ("bus", "trailer"), ("barrier",),
                  ("motorcycle", "bicycle"), ("pedestrian", "traffic_cone"))
NUSCENES_NMS_RADIUS = (4.0, 12.0, 10.0, 1.0, 0.85, 0.175)
HEAD_ORDER = ("center", "center_z", "dim", "rot", "vel")
HEAD_CHANNELS = {"center": 2, "center_z": 1, "dim": 3, "rot": 2, "vel": 2}
CODE_SIZE = 10  # dx_off, dy_off, z, log dx, log dy, log dz, cos, sin, vx, vy


def _bn2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class BEVBackbone(nn.Module):
    """OpenPCDet's ``BaseBEVBackbone`` structure: strided conv blocks, each upsampled (or
    downsampled) to a common resolution by a deconvolution, outputs concatenated."""

    def __init__(self, in_channels: int, layer_nums, layer_strides, num_filters, upsample_strides,
                 num_upsample_filters):
        super().__init__()
        n = len(layer_nums)
        if not (len(layer_strides) == len(num_filters) == len(upsample_strides) == len(num_upsample_filters) == n):
            raise ValueError("bev_backbone: layer_nums, layer_strides, num_filters, upsample_strides and "
                             "num_upsample_filters must have the same length")
        self.blocks, self.deblocks = nn.ModuleList(), nn.ModuleList()
        c_in, cum = in_channels, 1
        scales = []
        for i in range(n):
            layers = [nn.ZeroPad2d(1), nn.Conv2d(c_in, num_filters[i], 3, stride=layer_strides[i], bias=False),
                      _bn2d(num_filters[i]), nn.ReLU()]
            for _ in range(layer_nums[i]):
                layers += [nn.Conv2d(num_filters[i], num_filters[i], 3, padding=1, bias=False),
                           _bn2d(num_filters[i]), nn.ReLU()]
            self.blocks.append(nn.Sequential(*layers))
            cum *= layer_strides[i]
            up = upsample_strides[i]
            if up >= 1:
                up = int(round(up))
                self.deblocks.append(nn.Sequential(
                    nn.ConvTranspose2d(num_filters[i], num_upsample_filters[i], up, stride=up, bias=False),
                    _bn2d(num_upsample_filters[i]), nn.ReLU()))
            else:
                down = int(round(1 / up))
                self.deblocks.append(nn.Sequential(
                    nn.Conv2d(num_filters[i], num_upsample_filters[i], down, stride=down, bias=False),
                    _bn2d(num_upsample_filters[i]), nn.ReLU()))
            scales.append(cum / up)
            c_in = num_filters[i]
        if len(set(scales)) != 1:
            raise ValueError(f"bev_backbone: the upsampled outputs have different strides {scales}")
        self.stride = scales[0]  # relative to the input map
        self.out_channels = sum(num_upsample_filters)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for block, deblock in zip(self.blocks, self.deblocks):
            x = block(x)
            outs.append(deblock(x))
        return torch.cat(outs, dim=1) if len(outs) > 1 else outs[0]


class SeparateHead(nn.Module):
    """One branch per output (``hm`` and the regression heads), as OpenPCDet's SeparateHead."""

    def __init__(self, channels: int, outputs: dict[str, int], num_conv: int = 2, init_bias: float = -2.19):
        super().__init__()
        self.names = list(outputs)
        for name, c_out in outputs.items():
            layers = []
            for _ in range(num_conv - 1):
                layers += [nn.Conv2d(channels, channels, 3, padding=1, bias=True), nn.BatchNorm2d(channels), nn.ReLU()]
            layers.append(nn.Conv2d(channels, c_out, 3, padding=1, bias=True))
            branch = nn.Sequential(*layers)
            if name == "hm":
                branch[-1].bias.data.fill_(init_bias)
            else:
                for m in branch.modules():
                    if isinstance(m, nn.Conv2d):
                        nn.init.kaiming_normal_(m.weight)
                        nn.init.zeros_(m.bias)
            setattr(self, name, branch)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: getattr(self, name)(x) for name in self.names}


class CenterHead(nn.Module):
    def __init__(self, in_channels: int, class_names_each_head, shared_channels: int = 64, num_conv: int = 2,
                 with_velocity: bool = True):
        super().__init__()
        self.shared_conv = nn.Sequential(nn.Conv2d(in_channels, shared_channels, 3, padding=1, bias=True),
                                         nn.BatchNorm2d(shared_channels), nn.ReLU())
        regs = {k: HEAD_CHANNELS[k] for k in HEAD_ORDER if with_velocity or k != "vel"}
        self.heads = nn.ModuleList(SeparateHead(shared_channels, {**regs, "hm": len(names)}, num_conv)
                                   for names in class_names_each_head)

    def forward(self, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        x = self.shared_conv(x)
        return [head(x) for head in self.heads]


# ------------------------------------------------------------------------------------------------
# Geometry of the output map
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeadGeometry:
    point_cloud_range: tuple[float, ...]
    voxel_size: tuple[float, ...]
    stride: float                      # output cell = stride voxels
    map_size: tuple[int, int]          # (W, H) = (x cells, y cells)

    @property
    def cell(self) -> tuple[float, float]:
        return self.voxel_size[0] * self.stride, self.voxel_size[1] * self.stride


@dataclass(frozen=True)
class TargetConfig:
    class_names: tuple[str, ...]
    class_names_each_head: tuple[tuple[str, ...], ...]
    gaussian_overlap: float = 0.1
    min_radius: int = 2
    num_max_objs: int = 500
    code_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.2, 0.2)
    nms_radius: tuple[float, ...] = field(default=NUSCENES_NMS_RADIUS)


# ------------------------------------------------------------------------------------------------
# Targets
# ------------------------------------------------------------------------------------------------

def gaussian_radius(dx: np.ndarray, dy: np.ndarray, min_overlap: float = 0.1) -> np.ndarray:
    """CornerNet/CenterPoint's radius rule: the smallest of the three radii at which a box
    shifted by it still overlaps the true box by ``min_overlap`` (sizes in cells)."""
    dx, dy = np.asarray(dx, dtype=np.float64), np.asarray(dy, dtype=np.float64)
    s, p = dx + dy, dx * dy
    r1 = (s + np.sqrt(s ** 2 - 4 * p * (1 - min_overlap) / (1 + min_overlap))) / 2
    r2 = (2 * s + np.sqrt((2 * s) ** 2 - 16 * (1 - min_overlap) * p)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * s, (min_overlap - 1) * p
    r3 = (b3 + np.sqrt(b3 ** 2 - 4 * a3 * c3)) / 2  # CenterPoint's (and CornerNet's) form, kept as is
    return np.minimum(np.minimum(r1, r2), r3)


def gaussian_kernel(radius: int) -> np.ndarray:
    d = 2 * radius + 1
    sigma = d / 6.0
    y, x = np.ogrid[-radius:radius + 1, -radius:radius + 1]
    g = np.exp(-(x * x + y * y) / (2 * sigma * sigma))
    g[g < np.finfo(g.dtype).eps * g.max()] = 0
    return g


def draw_gaussian(heatmap: np.ndarray, cx: int, cy: int, radius: int) -> None:
    """Element-wise max of a Gaussian of ``radius`` centred on cell (cx, cy) into ``heatmap`` (H, W)."""
    g = gaussian_kernel(radius)
    h, w = heatmap.shape
    left, right = min(cx, radius), min(w - cx, radius + 1)
    top, bottom = min(cy, radius), min(h - cy, radius + 1)
    if min(left + right, top + bottom) <= 0:
        return
    region = heatmap[cy - top:cy + bottom, cx - left:cx + right]
    np.maximum(region, g[radius - top:radius + bottom, radius - left:radius + right], out=region)


def encode_targets(boxes: np.ndarray, labels: np.ndarray, cfg: TargetConfig, geo: HeadGeometry) -> list[dict]:
    """Targets of one frame, per head: ``heatmap`` (C, H, W), ``boxes`` (M, 10), ``inds`` (M,), ``mask`` (M,).

    ``boxes`` (N, 9) in the LiDAR frame, ``labels`` (N,) 1-based into ``cfg.class_names``.
    """
    w, h = geo.map_size
    cell_x, cell_y = geo.cell
    out = []
    for names in cfg.class_names_each_head:
        heat = np.zeros((len(names), h, w), dtype=np.float32)
        tb = np.zeros((cfg.num_max_objs, CODE_SIZE), dtype=np.float32)
        inds = np.zeros(cfg.num_max_objs, dtype=np.int64)
        mask = np.zeros(cfg.num_max_objs, dtype=np.float32)
        k = 0
        for box, lab in zip(boxes, labels):
            name = cfg.class_names[int(lab) - 1]
            if name not in names or k >= cfg.num_max_objs:
                continue
            if box[3] <= 0 or box[4] <= 0:
                continue
            fx = (box[0] - geo.point_cloud_range[0]) / cell_x
            fy = (box[1] - geo.point_cloud_range[1]) / cell_y
            if not (0 <= fx < w and 0 <= fy < h):
                continue
            cx, cy = int(fx), int(fy)
            radius = max(cfg.min_radius, int(gaussian_radius(box[3] / cell_x, box[4] / cell_y,
                                                             cfg.gaussian_overlap)))
            draw_gaussian(heat[names.index(name)], cx, cy, radius)
            inds[k] = cy * w + cx
            mask[k] = 1.0
            tb[k] = [fx - cx, fy - cy, box[2], math.log(box[3]), math.log(box[4]), math.log(box[5]),
                     math.cos(box[6]), math.sin(box[6]), box[7], box[8]]
            k += 1
        out.append({"heatmap": heat, "boxes": tb, "inds": inds, "mask": mask})
    return out


def collate_targets(per_frame: list[list[dict]], device=None) -> list[dict]:
    """Stack per-frame targets into per-head batch tensors."""
    heads = []
    for i in range(len(per_frame[0])):
        heads.append({k: torch.from_numpy(np.stack([f[i][k] for f in per_frame])).to(device)
                      for k in ("heatmap", "boxes", "inds", "mask")})
    return heads


# ------------------------------------------------------------------------------------------------
# Losses
# ------------------------------------------------------------------------------------------------

def clamped_sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.clamp(x.sigmoid(), min=1e-4, max=1 - 1e-4)


def focal_loss_centernet(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """CenterNet's penalty-reduced focal loss (alpha 2, beta 4) on probabilities ``pred``."""
    pos = target.eq(1).float()
    neg = 1.0 - pos
    pos_loss = (torch.log(pred) * (1 - pred) ** 2 * pos).sum()
    neg_loss = (torch.log(1 - pred) * pred ** 2 * (1 - target) ** 4 * neg).sum()
    num_pos = pos.sum()
    if num_pos == 0:
        return -neg_loss
    return -(pos_loss + neg_loss) / num_pos


def gather_map(feat: torch.Tensor, inds: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) map, (B, M) flat indices -> (B, M, C)."""
    b, c = feat.shape[:2]
    flat = feat.view(b, c, -1).permute(0, 2, 1)
    return flat.gather(1, inds.unsqueeze(2).expand(-1, -1, c))


def reg_l1_loss(pred: torch.Tensor, mask: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """L1 on the positives, per code dimension, normalised by the number of positives."""
    num = mask.sum().clamp(min=1.0)
    m = mask.unsqueeze(2).expand_as(target) * (~torch.isnan(target)).float()
    return (torch.abs(pred * m - torch.nan_to_num(target) * m)).sum(dim=(0, 1)) / num


def center_loss(preds: list[dict], targets: list[dict], code_weights, cls_weight: float = 1.0,
                loc_weight: float = 0.25, with_velocity: bool = True) -> tuple[torch.Tensor, dict]:
    total, terms = 0.0, {}
    w = torch.as_tensor(code_weights[:CODE_SIZE if with_velocity else CODE_SIZE - 2], dtype=torch.float32)
    for i, (p, t) in enumerate(zip(preds, targets)):
        hm = focal_loss_centernet(clamped_sigmoid(p["hm"]), t["heatmap"]) * cls_weight
        order = [k for k in HEAD_ORDER if with_velocity or k != "vel"]
        reg = torch.cat([p[k] for k in order], dim=1)
        tgt = t["boxes"] if with_velocity else t["boxes"][..., :CODE_SIZE - 2]
        loc = (reg_l1_loss(gather_map(reg, t["inds"]), t["mask"], tgt) * w.to(reg.device)).sum() * loc_weight
        total = total + hm + loc
        terms[f"hm_{i}"] = float(hm.detach())
        terms[f"loc_{i}"] = float(loc.detach())
    return total, terms


# ------------------------------------------------------------------------------------------------
# Decoding
# ------------------------------------------------------------------------------------------------

def circle_nms(centers: np.ndarray, scores: np.ndarray, min_radius: float, post_max_size: int | None = None
               ) -> np.ndarray:
    """CenterPoint's circle NMS: greedy by score; a box is suppressed when its squared BEV centre
    distance to an already kept box is at most ``min_radius`` (CenterPoint compares the squared
    distance with the configured value). Returns kept indices, highest score first."""
    order = np.argsort(-scores, kind="stable")
    suppressed = np.zeros(len(scores), dtype=bool)
    keep = []
    for a, i in enumerate(order):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = order[a + 1:]
        d2 = ((centers[rest] - centers[i]) ** 2).sum(axis=1)
        suppressed[rest[d2 <= min_radius]] = True
    keep = np.asarray(keep, dtype=np.int64)
    return keep[:post_max_size] if post_max_size is not None else keep


@torch.no_grad()
def decode(preds: list[dict], cfg: TargetConfig, geo: HeadGeometry, *, k: int = 500, score_thresh: float = 0.1,
           post_center_range=None, nms: bool = True, post_max_size: int = 83, logits: bool = True) -> list[dict]:
    """Per frame: ``boxes`` (N, 9) numpy, ``scores`` (N,), ``labels`` (N,) 1-based into cfg.class_names.

    ``logits``: the heatmaps are raw logits (sigmoid applied here); False when they are probabilities.
    """
    b = preds[0]["hm"].shape[0]
    cell_x, cell_y = geo.cell
    results = [{"boxes": [], "scores": [], "labels": []} for _ in range(b)]
    for head_i, (p, names) in enumerate(zip(preds, cfg.class_names_each_head)):
        hm = p["hm"].sigmoid() if logits else p["hm"]
        nc, h, w = hm.shape[1:]
        kk = min(k, nc * h * w)
        scores, idx = hm.reshape(b, -1).topk(kk, dim=1)
        cls = idx // (h * w)
        pix = idx % (h * w)
        ys, xs = (pix // w).float(), (pix % w).float()
        center = gather_map(p["center"], pix)
        z = gather_map(p["center_z"], pix)
        dim = gather_map(p["dim"], pix).exp()
        rot = gather_map(p["rot"], pix)
        yaw = torch.atan2(rot[..., 1:2], rot[..., 0:1])
        x = (xs[..., None] + center[..., 0:1]) * cell_x + geo.point_cloud_range[0]
        y = (ys[..., None] + center[..., 1:2]) * cell_y + geo.point_cloud_range[1]
        parts = [x, y, z, dim, yaw]
        parts.append(gather_map(p["vel"], pix) if "vel" in p else torch.zeros_like(x).repeat(1, 1, 2))
        boxes = torch.cat(parts, dim=-1).cpu().numpy()
        scores, cls = scores.cpu().numpy(), cls.cpu().numpy()
        global_labels = np.asarray([cfg.class_names.index(n) + 1 for n in names])
        for i in range(b):
            keep = scores[i] > score_thresh
            if post_center_range is not None:
                r = np.asarray(post_center_range)
                keep &= (boxes[i, :, :3] >= r[:3]).all(1) & (boxes[i, :, :3] <= r[3:]).all(1)
            bx, sc, lb = boxes[i][keep], scores[i][keep], cls[i][keep]
            if nms and len(sc):
                sel = circle_nms(bx[:, :2], sc, cfg.nms_radius[head_i], post_max_size)
                bx, sc, lb = bx[sel], sc[sel], lb[sel]
            results[i]["boxes"].append(bx)
            results[i]["scores"].append(sc)
            results[i]["labels"].append(global_labels[lb] if len(lb) else lb.astype(np.int64))
    for r in results:
        r["boxes"] = np.concatenate(r["boxes"]).reshape(-1, 9)
        r["scores"] = np.concatenate(r["scores"])
        r["labels"] = np.concatenate(r["labels"]).astype(np.int64)
        order = np.argsort(-r["scores"], kind="stable")
        for key in ("boxes", "scores", "labels"):
            r[key] = r[key][order]
    return results
