"""Native detection engine: encoder -> BEV (HeightCompression) -> BEV backbone -> CenterPoint head,
scored on the dataset's val split by its own evaluation: nuscenes-devkit's DetectionEval
(detection_cvpr_2019), or waymo_open_dataset's metric ops (mAP / mAPH at LEVEL_1 and LEVEL_2).

Engine settings (head grouping, BEV backbone widths, losses, post-processing, GT sampling) come
from native.yaml under the recipe's profile: a function of the profile only, as the recipe is.
Ground-truth sampling draws only from the run's labelled split (``ctx.train_tokens``).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import yaml
from torch import nn

from xmbench.config import config_hash
from xmbench.data.frames import FrameDataset, index_format
from xmbench.detection.boxes import frame_boxes, in_range, transform_boxes
from xmbench.detection.gt_sampling import build_database, paste
from xmbench.detection.nuscenes_eval import attributes_from_labels, evaluate, submission
from xmbench.detection.waymo_eval import evaluate_waymo
from xmbench.errors import BenchError
from xmbench.finetune import FinetuneContext, batch_order, load_backbone_init, make_optimizer, warmup_cosine
from xmbench.models.build import build_lidar_backbone
from xmbench.models.centerpoint import (BEVBackbone, CenterHead, HeadGeometry, TargetConfig, center_loss,
                                        collate_targets, decode, encode_targets)
from xmbench.models.voxel_backbone import to_bev
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.augment import random_view

SETTINGS = Path(__file__).with_name("native.yaml")


def load_settings(profile: str, fmt: str = "nuscenes", path: Path = SETTINGS) -> dict:
    """The profile's engine settings with the dataset format's classes, heads, NMS radii, output
    range and GT-sampling groups merged in (keys as OpenPCDet names them)."""
    spec = yaml.safe_load(Path(path).read_text())
    if profile not in spec["profiles"]:
        raise BenchError(f"{path}: no profile '{profile}' (known: {sorted(spec['profiles'])}); "
                         "add it beside the task.yaml recipe of the same name")
    if fmt not in spec["formats"]:
        raise BenchError(f"{path}: no settings for dataset format '{fmt}' (known: {sorted(spec['formats'])})")
    s, f = dict(spec["profiles"][profile]), spec["formats"][fmt]
    s["class_names"], s["class_names_each_head"] = f["class_names"], f["class_names_each_head"]
    s["post_processing"] = {**s["post_processing"], "circle_nms_min_radius": f["circle_nms_min_radius"],
                            "post_center_limit_range": f["post_center_limit_range"]}
    s["gt_sampling"] = {**s["gt_sampling"], "sample_groups": f["sample_groups"]}
    heads = [n for names in s["class_names_each_head"] for n in names]
    if sorted(heads) != sorted(s["class_names"]):
        raise BenchError(f"{path}: formats.{fmt}: class_names_each_head must hold each class once")
    if len(s["post_processing"]["circle_nms_min_radius"]) != len(s["class_names_each_head"]):
        raise BenchError(f"{path}: formats.{fmt}: one circle_nms_min_radius per head")
    return s


class DetectionModel(nn.Module):
    def __init__(self, model_cfg: dict, settings: dict):
        super().__init__()
        self.encoder = build_lidar_backbone(model_cfg)
        self.bev = BEVBackbone(self.encoder.num_bev_features, **settings["bev_backbone"])
        self.head = CenterHead(self.bev.out_channels, settings["class_names_each_head"],
                               settings["head"]["shared_conv_channel"], settings["head"]["num_conv"])
        grid = self.encoder.grid
        stride = 8 * self.bev.stride
        gx, gy, _ = grid.grid_size
        if gx % stride or gy % stride:
            raise BenchError(f"native.yaml bev_backbone: the {gx}x{gy} grid is not divisible by the output "
                             f"stride {stride}")
        self.geometry = HeadGeometry(tuple(grid.point_cloud_range), tuple(grid.voxel_size), stride,
                                     (int(gx // stride), int(gy // stride)))
        t = settings["target"]
        self.target_cfg = TargetConfig(tuple(settings["class_names"]),
                                       tuple(tuple(n) for n in settings["class_names_each_head"]),
                                       t["gaussian_overlap"], t["min_radius"], t["num_max_objs"],
                                       tuple(settings["loss"]["code_weights"]),
                                       tuple(settings["post_processing"]["circle_nms_min_radius"]))

    def forward(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> list[dict]:
        vox = voxelize(points, batch_idx, batch_size, self.encoder.grid)
        enc = self.encoder(vox.features, vox.coords, batch_size)
        return self.head(self.bev(to_bev(enc["encoded"])))


def _frame_arrays(item: dict, class_names, min_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, labels = frame_boxes(item["boxes"], list(class_names), min_points)
    return item["points"].numpy(), boxes, labels


def make_batch(items: list[dict], model: DetectionModel, settings: dict, recipe: dict, g: torch.Generator,
               db=None, rng: np.random.Generator | None = None):
    """Points (GT-sampled, then augmented) and the per-head targets of one training batch."""
    cfg = model.target_cfg
    pts_list, box_list, lab_list = [], [], []
    for it in items:
        pts, boxes, labels = _frame_arrays(it, cfg.class_names, settings["target"]["min_points_in_gt"])
        if db is not None:
            pts, boxes, labels = paste(db, pts, boxes, labels, settings["gt_sampling"]["sample_groups"], rng)
        pts_list.append(torch.from_numpy(np.ascontiguousarray(pts, dtype=np.float32)))
        box_list.append(boxes)
        lab_list.append(labels)
    points = torch.cat(pts_list)
    bidx = torch.cat([torch.full((len(p),), b, dtype=torch.long) for b, p in enumerate(pts_list)])
    aug = recipe["augment"]
    view = random_view(points, bidx, len(items), g, rotation_deg=aug.get("rotation_deg", 0.0),
                       scale=tuple(aug.get("scale", (1.0, 1.0))), flip=aug.get("flip", False))
    targets = []
    for b in range(len(items)):
        boxes = transform_boxes(box_list[b], view.matrix[b].numpy(), view.translation[b].numpy())
        keep = in_range(boxes, model.geometry.point_cloud_range)
        targets.append(encode_targets(boxes[keep], lab_list[b][keep], cfg, model.geometry))
    return view.points, view.batch_idx, collate_targets(targets)


def train(model: DetectionModel, data: FrameDataset, settings: dict, recipe: dict, seed: int, device,
          log_path: Path, db=None) -> None:
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = warmup_cosine(optimizer, recipe)
    loss_cfg = settings["loss"]
    model.train()
    with open(log_path, "w", buffering=1) as log:  # line-buffered: progress is visible
        for step, idx in enumerate(batch_order(len(data), recipe["batch_size"], recipe["iterations"], seed)):
            g = torch.Generator().manual_seed(seed * 1000003 + step)
            rng = np.random.default_rng(seed * 1000003 + step)
            points, bidx, targets = make_batch([data[i] for i in idx], model, settings, recipe, g, db, rng)
            targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
            preds = model(points.to(device), bidx.to(device), len(idx))
            loss, terms = center_loss(preds, targets, loss_cfg["code_weights"], loss_cfg["cls_weight"],
                                      loss_cfg["loc_weight"])
            if not torch.isfinite(loss):
                raise FloatingPointError(f"non-finite detection loss at step {step}: {terms}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), settings["grad_norm_clip"])
            optimizer.step()
            schedule.step()
            log.write(json.dumps({"step": step, "loss": loss.item(), **terms,
                                  "lr": optimizer.param_groups[0]["lr"]}) + "\n")


@torch.no_grad()
def recalibrate_bn(model: DetectionModel, data: FrameDataset, batches: int, batch_size: int, device) -> None:
    """Re-estimate every BatchNorm's running statistics on un-augmented labelled-split frames."""
    if batches <= 0:
        return
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    model.train()
    order = list(range(len(data)))
    for i in range(min(batches, max(1, len(order) // batch_size))):
        items = [data[j] for j in order[i * batch_size:(i + 1) * batch_size]] or [data[0]]
        points = torch.cat([it["points"] for it in items])
        bidx = torch.cat([torch.full((len(it["points"]),), b, dtype=torch.long) for b, it in enumerate(items)])
        model(points.to(device), bidx.to(device), len(items))
    for m, mom in zip(bns, saved):
        m.momentum = mom


@torch.no_grad()
def predict(model: DetectionModel, data: FrameDataset, settings: dict, device) -> list[dict]:
    model.eval()
    pp = settings["post_processing"]
    out = []
    for i in range(len(data)):
        pts = data[i]["points"].to(device)
        preds = model(pts, torch.zeros(len(pts), dtype=torch.long, device=device), 1)
        out += decode(preds, model.target_cfg, model.geometry, k=pp["max_obj_per_sample"],
                      score_thresh=pp["score_thresh"], post_center_range=pp["post_center_limit_range"],
                      nms=True, post_max_size=pp["post_max_size"])
    return out


def finetune(ctx: FinetuneContext) -> dict:
    fmt = index_format(ctx.index)
    settings = load_settings(ctx.recipe["profile"], fmt)
    torch.manual_seed(ctx.seed)
    model = DetectionModel(ctx.model_cfg, settings).to(ctx.device)
    init = load_backbone_init(model.encoder, ctx.init_checkpoint)
    image_size = tuple(ctx.model_cfg["image"]["size"])
    train_set = FrameDataset(ctx.index, ctx.train_tokens, image_size, labels=ctx.labels, with_images=False)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    db = None
    if settings["gt_sampling"]["enabled"]:
        db = build_database(ctx.index, ctx.labels, ctx.train_tokens, settings["class_names"],
                            settings["gt_sampling"]["min_points"])
    train(model, train_set, settings, ctx.recipe, ctx.seed, ctx.device, ctx.out_dir / "train_log.jsonl", db)
    recalibrate_bn(model, train_set, settings["bn_recalibration_batches"], ctx.recipe["batch_size"], ctx.device)
    val_frames = [f for f in ctx.index["frames"] if f["split"] == "val"]
    val_set = FrameDataset(ctx.index, [f["token"] for f in val_frames], image_size, labels=None, with_images=False)
    detections = predict(model, val_set, settings, ctx.device)
    if fmt == "waymo":
        metrics = evaluate_waymo(ctx, val_frames, detections, settings["class_names"], ctx.out_dir / "eval")
    else:
        attributes = attributes_from_labels(ctx.labels, ctx.train_tokens)
        result = submission(val_frames, detections, settings["class_names"], attributes)
        metrics = evaluate(ctx.index, result, ctx.out_dir / "eval")
    train_classes = sorted({b["name"] for t in ctx.train_tokens for b in ctx.labels["frames"][t]["boxes"]
                            if b["name"] in settings["class_names"]})
    metrics["classes_in_train_split"] = train_classes
    metrics["gt_database"] = db.counts() if db is not None else None
    metrics["engine_settings_hash"] = config_hash(settings)
    return {"metrics": metrics, "init": init}
