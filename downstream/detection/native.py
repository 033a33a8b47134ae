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
from xmbench.data.nuscenes.detection_eval import attributes_from_labels, evaluate, submission
from xmbench.data.waymo.detection_eval import evaluate_waymo
from xmbench.errors import BenchError
from xmbench.finetune import FinetuneContext, batch_order, load_init, make_optimizer, warmup_cosine
from xmbench.models.build import (build_fuser, build_image_backbone, build_image_neck, build_lidar_backbone, build_lift,
                                  image_hw, voxel_grid)
from xmbench.models.lss import lidar_depth_image
from xmbench.models.centerpoint import (BEVBackbone, CenterHead, HeadGeometry, TargetConfig, center_loss,
                                        collate_targets, decode, encode_targets)
from xmbench.models.voxel_backbone import to_bev
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.augment import random_view

SETTINGS = Path(__file__).with_name("native.yaml")


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def load_settings(profile: str, fmt: str = "nuscenes", path: Path = SETTINGS, overlay: Path | None = None) -> dict:
    """The profile's engine settings with the dataset format's classes, heads, NMS radii, output
    range and GT-sampling groups merged in (keys as OpenPCDet names them).

    ``overlay`` is a task's own native.yaml when the task reuses this engine with other inputs
    (fusion_detection, camera_detection): its ``common`` and ``profiles.<profile>`` are merged over
    these, so the head, targets, losses and post-processing stay this task's unless it says why not.
    """
    spec = yaml.safe_load(Path(path).read_text())
    if overlay is not None:
        extra = yaml.safe_load(Path(overlay).read_text()) or {}
        if profile not in extra.get("profiles", {}):
            raise BenchError(f"{overlay}: no profile '{profile}' (known: {sorted(extra.get('profiles', {}))}); "
                             "add it beside the task.yaml recipe of the same name")
        spec["profiles"] = {profile: _merge(_merge(spec["profiles"][profile], extra.get("common", {})),
                                            extra["profiles"][profile])} if profile in spec["profiles"] else {}
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


MODALITIES = ({"lidar"}, {"lidar", "camera"}, {"camera"})


class CameraBEV(nn.Module):
    """The camera branch of BEVFusion: image backbone -> neck (stride 8) -> LSS lift onto the LiDAR
    BEV grid. With ``use_lidar_depth`` (fusion) the lift also reads the LiDAR depth image, as
    BEVFusion's DepthLSSTransform does; without it (cameras only) no LiDAR point is read at all."""

    def __init__(self, model_cfg: dict, use_lidar_depth: bool):
        super().__init__()
        self.image = build_image_backbone(model_cfg)
        self.neck = build_image_neck(model_cfg, self.image)
        self.lift = build_lift(model_cfg, use_lidar_depth=use_lidar_depth)
        if not use_lidar_depth:
            # a cameras-only lift has no depth-image branch, and its first depthnet conv reads the
            # image features alone: those tensors of a fusion-pretrained lift are knowingly left out
            self.lift.ignored_init_keys = ("dtransform.", "depthnet.0.weight")
        self.out_channels = self.lift.out_channels
        self.image_hw = image_hw(model_cfg)

    def init_modules(self) -> dict[str, nn.Module]:
        return {"image_backbone": self.image, "neck": self.neck, "vtransform": self.lift}

    def forward(self, batch: dict) -> torch.Tensor:
        images = batch["images"]
        b, k = images.shape[:2]
        feats = self.neck(self.image(images.flatten(0, 1)))[0]
        depth = None
        if self.lift.use_lidar_depth:
            depth = lidar_depth_image(batch["points"][:, :3], batch["batch_idx"], b, batch["lidar_to_cam"],
                                      batch["intrinsics"], self.image_hw)
        return self.lift(feats, batch["intrinsics"], batch["lidar_to_cam"], depth)


class DetectionModel(nn.Module):
    """LiDAR BEV, camera BEV (lifted onto the same grid), or both fused, then one BEV backbone and
    CenterPoint head: the three detection tasks differ only in what reaches the BEV backbone."""

    def __init__(self, model_cfg: dict, settings: dict):
        super().__init__()
        self.modalities = set(settings.get("modalities", ["lidar"]))
        if self.modalities not in MODALITIES:
            raise BenchError(f"native.yaml modalities: {sorted(self.modalities)} is not one of "
                             f"{[sorted(m) for m in MODALITIES]}")
        grid = voxel_grid(model_cfg)
        self.grid = grid
        channels = 0
        if "lidar" in self.modalities:
            self.encoder = build_lidar_backbone(model_cfg)
            channels = self.encoder.num_bev_features
        if "camera" in self.modalities:
            self.camera = CameraBEV(model_cfg, use_lidar_depth="lidar" in self.modalities)
            channels = self.camera.out_channels
        if self.modalities == {"lidar", "camera"}:
            self.fuser = build_fuser(model_cfg, self.encoder.num_bev_features)
            channels = self.fuser.out_channels
        self.bev = BEVBackbone(channels, **settings["bev_backbone"])
        self.head = CenterHead(self.bev.out_channels, settings["class_names_each_head"],
                               settings["head"]["shared_conv_channel"], settings["head"]["num_conv"])
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

    def init_modules(self) -> dict[str, nn.Module]:
        """The modules a pretrained checkpoint may fill, under OpenPCDet's prefixes."""
        mods = {}
        if "lidar" in self.modalities:
            mods["backbone_3d"] = self.encoder
        if "camera" in self.modalities:
            mods.update(self.camera.init_modules())
        if hasattr(self, "fuser"):
            mods["fuser"] = self.fuser
        return mods

    def forward(self, batch: dict) -> list[dict]:
        lidar = camera = None
        if "lidar" in self.modalities:
            vox = voxelize(batch["points"], batch["batch_idx"], batch["batch_size"], self.encoder.grid)
            enc = self.encoder(vox.features, vox.coords, batch["batch_size"])
            lidar = to_bev(enc["encoded"])
        if "camera" in self.modalities:
            camera = self.camera(batch)
        x = self.fuser(camera, lidar) if lidar is not None and camera is not None else (
            lidar if lidar is not None else camera)
        return self.head(self.bev(x))


def _frame_arrays(item: dict, class_names, min_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    boxes, labels = frame_boxes(item["boxes"], list(class_names), min_points)
    return item["points"].numpy(), boxes, labels


def _augmented_lidar_to_cam(lidar_to_cam: torch.Tensor, matrix: torch.Tensor, translation: torch.Tensor):
    """Cameras of the augmented frame: p_aug = M p + t, so cam = L2C p = L2C A^-1 p_aug. The images
    stay as they are, and the lift lands on the augmented BEV grid the boxes were moved to."""
    b = matrix.shape[0]
    aug = torch.eye(4).repeat(b, 1, 1)
    aug[:, :3, :3], aug[:, :3, 3] = matrix, translation
    return lidar_to_cam @ torch.linalg.inv(aug)[:, None]


def camera_inputs(items: list[dict]) -> dict:
    return {k: torch.stack([it[k] for it in items]) for k in ("images", "intrinsics", "lidar_to_cam")
            if k in items[0]}


def make_batch(items: list[dict], model: DetectionModel, settings: dict, recipe: dict, g: torch.Generator,
               db=None, rng: np.random.Generator | None = None):
    """The inputs (GT-sampled, then augmented) and the per-head targets of one training batch."""
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
    batch = {"points": view.points, "batch_idx": view.batch_idx, "batch_size": len(items), **camera_inputs(items)}
    if "lidar_to_cam" in batch:
        batch["lidar_to_cam"] = _augmented_lidar_to_cam(batch["lidar_to_cam"], view.matrix, view.translation)
    return batch, collate_targets(targets)


def plain_batch(items: list[dict]) -> dict:
    """Un-augmented inputs (BN recalibration, prediction)."""
    return {"points": torch.cat([it["points"] for it in items]),
            "batch_idx": torch.cat([torch.full((len(it["points"]),), b, dtype=torch.long) for b, it in enumerate(items)]),
            "batch_size": len(items), **camera_inputs(items)}


def to_device(batch: dict, device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def train(model: DetectionModel, data: FrameDataset, settings: dict, recipe: dict, seed: int, device,
          log_path: Path, db=None) -> None:
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = warmup_cosine(optimizer, recipe)
    model.train()
    with open(log_path, "w", buffering=1) as log:  # line-buffered: progress is visible
        for step, idx in enumerate(batch_order(len(data), recipe["batch_size"], recipe["iterations"], seed)):
            loss, terms = train_step(model, optimizer, [data[i] for i in idx], settings, recipe, seed, step,
                                     device, db)
            schedule.step()
            log.write(json.dumps({"step": step, "loss": loss, **terms,
                                  "lr": optimizer.param_groups[0]["lr"]}) + "\n")


def train_step(model: DetectionModel, optimizer, items: list[dict], settings: dict, recipe: dict, seed: int,
               step: int, device, db=None) -> tuple[float, dict]:
    """One optimisation step on loaded frames, its randomness from (seed, step) only; the step
    benchmark (tests/benchmarks/test_engine_steps.py) times exactly this beside the backbone alone."""
    g = torch.Generator().manual_seed(seed * 1000003 + step)
    rng = np.random.default_rng(seed * 1000003 + step)
    loss_cfg = settings["loss"]
    batch, targets = make_batch(items, model, settings, recipe, g, db, rng)
    targets = [{k: v.to(device) for k, v in t.items()} for t in targets]
    preds = model(to_device(batch, device))
    loss, terms = center_loss(preds, targets, loss_cfg["code_weights"], loss_cfg["cls_weight"],
                              loss_cfg["loc_weight"])
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite detection loss at step {step}: {terms}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    nn.utils.clip_grad_norm_(model.parameters(), settings["grad_norm_clip"])
    optimizer.step()
    return loss.item(), terms


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
        model(to_device(plain_batch(items), device))
    for m, mom in zip(bns, saved):
        m.momentum = mom


@torch.no_grad()
def predict(model: DetectionModel, data: FrameDataset, settings: dict, device) -> list[dict]:
    model.eval()
    pp = settings["post_processing"]
    out = []
    for i in range(len(data)):
        preds = model(to_device(plain_batch([data[i]]), device))
        out += decode(preds, model.target_cfg, model.geometry, k=pp["max_obj_per_sample"],
                      score_thresh=pp["score_thresh"], post_center_range=pp["post_center_limit_range"],
                      nms=True, post_max_size=pp["post_max_size"])
    return out


def finetune(ctx: FinetuneContext, overlay: Path | None = None) -> dict:
    """One detection cell. ``overlay``: the native.yaml of a task that reuses this engine with
    other inputs (fusion_detection, camera_detection)."""
    fmt = index_format(ctx.index)
    settings = load_settings(ctx.recipe["profile"], fmt, overlay=overlay)
    torch.manual_seed(ctx.seed)  # scratch: every branch from its default initialisation, seeded
    model = DetectionModel(ctx.model_cfg, settings)
    init = load_init(model.init_modules(), ctx.init_checkpoint)
    model = model.to(ctx.device)
    image_size = tuple(ctx.model_cfg["image"]["size"])
    images = "camera" in model.modalities
    train_set = FrameDataset(ctx.index, ctx.train_tokens, image_size, labels=ctx.labels, with_images=images)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    db = None
    if settings["gt_sampling"]["enabled"]:
        db = build_database(ctx.index, ctx.labels, ctx.train_tokens, settings["class_names"],
                            settings["gt_sampling"]["min_points"])
    train(model, train_set, settings, ctx.recipe, ctx.seed, ctx.device, ctx.out_dir / "train_log.jsonl", db)
    recalibrate_bn(model, train_set, settings["bn_recalibration_batches"], ctx.recipe["batch_size"], ctx.device)
    val_frames = [f for f in ctx.index["frames"] if f["split"] == "val"]
    val_set = FrameDataset(ctx.index, [f["token"] for f in val_frames], image_size, labels=None, with_images=images)
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
    metrics["modalities"] = sorted(model.modalities)
    return {"metrics": metrics, "init": init}
