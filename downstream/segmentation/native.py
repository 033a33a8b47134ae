"""Native segmentation engine: encoder + sparse U-Net decoder, scored by the dataset's own
evaluation: nuscenes-devkit's LidarSegEval (16 classes) or, on Waymo, the 23 Waymo segmentation
classes' IoU over the labelled val frames (xmbench.data.waymo.tf.metrics, in the Waymo environment).

Points beyond the voxel range are clamped onto its border, so every point of every val cloud gets
a prediction, as the devkit's evaluation requires (it scores all points of every sample).

Training uses the frames of the labelled split that carry segmentation labels: all of them on
nuScenes-lidarseg, a subset on Waymo (which labels segmentation on some frames only).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from xmbench.atomic import write_json, write_npy
from xmbench.data.frames import FrameDataset, collate, index_format
from xmbench.data.nuscenes.lidarseg_eval import evaluate
from xmbench.errors import BenchError
from xmbench.finetune import (FinetuneContext, TrainState, batch_order, load_init, make_optimizer,
                              warmup_cosine)
from xmbench.models.build import build_lidar_backbone
from xmbench.models.unet_decoder import SparseUNetDecoder
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.augment import random_view

IGNORE = 0  # the ignore class: the devkit's 'ignore' (16-class index), Waymo's TYPE_UNDEFINED


class SegmentationModel(nn.Module):
    def __init__(self, model_cfg: dict, num_classes: int):
        super().__init__()
        self.encoder = build_lidar_backbone(model_cfg)
        self.decoder = SparseUNetDecoder(num_classes)

    def forward(self, points: torch.Tensor, batch_idx: torch.Tensor, batch_size: int) -> torch.Tensor:
        """Per-point logits (N, classes)."""
        pcr = self.encoder.grid.point_cloud_range
        lo = torch.tensor(pcr[:3], dtype=points.dtype, device=points.device)
        hi = torch.tensor(pcr[3:], dtype=points.dtype, device=points.device) - 1e-3
        pts = points.clone()
        pts[:, :3] = torch.maximum(torch.minimum(pts[:, :3], hi), lo)
        vox = voxelize(pts, batch_idx, batch_size, self.encoder.grid)
        enc = self.encoder(vox.features, vox.coords, batch_size)
        return self.decoder(enc)[vox.point_to_voxel]


def _augment(batch: dict, recipe: dict, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    aug = recipe["augment"]
    view = random_view(batch["points"], batch["batch_idx"], batch["batch_size"], g,
                       rotation_deg=aug.get("rotation_deg", 0.0), scale=tuple(aug.get("scale", (1.0, 1.0))),
                       flip=aug.get("flip", False))
    return view.points, view.batch_idx, batch["seg_labels"][view.keep]


def train(model: SegmentationModel, data: FrameDataset, recipe: dict, seed: int, device, out_dir: Path,
          fingerprint: str = "") -> None:
    """Every step's batch and augmentation derive from (seed, step), and the state is saved every
    `checkpoint_every` steps, so a killed job resumes to the same weights it would have reached."""
    optimizer = make_optimizer(recipe, model.parameters())
    schedule = warmup_cosine(optimizer, recipe)
    state = TrainState(out_dir / "train_state.pth", out_dir / "train_log.jsonl", fingerprint)
    start = state.resume(model, optimizer, schedule)
    every = recipe.get("checkpoint_every", 50)
    model.train()
    with open(state.log_path, "a") as log:
        for step, idx in enumerate(batch_order(len(data), recipe["batch_size"], recipe["iterations"], seed)):
            if step < start:
                continue
            loss = train_step(model, optimizer, [data[i] for i in idx], recipe, seed, step, device)
            schedule.step()
            log.write(json.dumps({"step": step, "loss": loss, "lr": optimizer.param_groups[0]["lr"]}) + "\n")
            if (step + 1) % every == 0 and step + 1 < recipe["iterations"]:
                log.flush()
                state.save(step + 1, model, optimizer, schedule)


def train_step(model: SegmentationModel, optimizer, items: list[dict], recipe: dict, seed: int, step: int,
               device) -> float:
    """One optimisation step on loaded frames, its augmentation from (seed, step) only (so a resumed
    run repeats it); the step benchmark times exactly this beside the backbone alone."""
    batch = collate(items)
    g = torch.Generator().manual_seed(seed * 1000003 + step)
    points, bidx, labels = _augment(batch, recipe, g)
    logits = model(points.to(device), bidx.to(device), batch["batch_size"])
    labels = labels.to(device)
    loss = F.cross_entropy(logits, labels, ignore_index=IGNORE) if (labels != IGNORE).any() \
        else logits.sum() * 0.0
    if not torch.isfinite(loss):
        raise FloatingPointError(f"non-finite segmentation loss at step {step}")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def point_classes(model: SegmentationModel, item: dict, device) -> torch.Tensor:
    """The predicted class of each keyframe point of one frame; the ignore class is never predicted."""
    pts = item["points"].to(device)
    logits = model(pts, torch.zeros(len(pts), dtype=torch.long, device=device), 1)[:item["n_key_points"]]
    logits[:, IGNORE] = -float("inf")
    return logits.argmax(1).cpu()


@torch.no_grad()
def predict_val(model: SegmentationModel, data: FrameDataset, folder: Path, device) -> None:
    """One uint8 file per val cloud in the devkit's 16-class index, named <lidar token>_lidarseg.bin."""
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(len(data)):
        pred = point_classes(model, data[i], device).to(torch.uint8).numpy()
        pred.tofile(folder / f"{data.frames[i]['lidar_token']}_lidarseg.bin")


@torch.no_grad()
def evaluate_waymo(ctx: FinetuneContext, model: SegmentationModel, image_size) -> dict:
    """Predict every point of each labelled val frame (one (N,) int32 .npy each) and score them
    against the converted labels with waymo.tf.metrics --seg, which reads the ground truth itself."""
    from xmbench.data.waymo.env import run_module

    gt = {f["token"]: ctx.labels["frames"][f["token"]]["lidarseg_path"] for f in ctx.index["frames"]
          if f["split"] == "val" and ctx.labels["frames"][f["token"]]["lidarseg_path"]}
    if not gt:
        raise BenchError(f"dataset '{ctx.dataset}': no val frame has segmentation labels; nothing to score")
    val_set = FrameDataset(ctx.index, list(gt), image_size, labels=None, with_images=False)
    results = ctx.out_dir / "eval"
    model.eval()
    pairs = {}
    for i, token in enumerate(val_set.tokens):
        pred = results / "pred" / f"{token}.npy"
        write_npy(pred, point_classes(model, val_set[i], ctx.device).to(torch.int32).numpy())
        pairs[token] = {"gt": str(val_set.dataroot / gt[token]), "pred": str(pred)}
    write_json(results / "seg_pairs.json", {"frames": pairs})
    run_module(ctx.waymo_python, "waymo.tf.metrics", ["--seg", results / "seg_pairs.json", "--out", results / "waymo_seg.json"])
    res = json.loads((results / "waymo_seg.json").read_text())["segmentation"]
    return {"miou": res["mIoU"], "iou_per_class": res["per_class"], "num_val_points": res["num_points"],
            "num_val_frames": len(pairs)}


def class_names(ctx: FinetuneContext) -> list[str]:
    names = ctx.labels["lidarseg_coarse_names"]
    if not names:
        raise BenchError(f"dataset '{ctx.dataset}' has no lidarseg labels; {ctx.task} needs them")
    return names


def run(ctx: FinetuneContext, model: nn.Module) -> dict:
    """Train ``model`` (its encoder already initialised) on the labelled split, predict the val split
    and score it with the devkit. Shared by every lidarseg protocol (full finetuning here, the linear
    probe), so they differ only in the model they pass."""
    image_size = tuple(ctx.model_cfg["image"]["size"])
    labelled = [t for t in ctx.train_tokens if ctx.labels["frames"][t]["lidarseg_path"]]
    if not labelled:
        raise BenchError(f"none of the {len(ctx.train_tokens)} frames of the {ctx.fraction:g} split of "
                         f"'{ctx.dataset}' has segmentation labels; use a larger fraction or more labelled frames")
    train_set = FrameDataset(ctx.index, labelled, image_size, labels=ctx.labels, with_images=False)
    ctx.out_dir.mkdir(parents=True, exist_ok=True)
    train(model, train_set, ctx.recipe, ctx.seed, ctx.device, ctx.out_dir, ctx.fingerprint())
    if index_format(ctx.index) == "waymo":
        metrics = evaluate_waymo(ctx, model, image_size)
        metrics["num_train_frames_labelled"] = len(labelled)
        return metrics
    val_tokens = [f["token"] for f in ctx.index["frames"] if f["split"] == "val"]
    val_set = FrameDataset(ctx.index, val_tokens, image_size, labels=None, with_images=False)
    results = ctx.out_dir / "eval"
    predict_val(model, val_set, results / "lidarseg" / ctx.index["eval_sets"]["val"], ctx.device)
    res = evaluate(ctx.index, results)
    iou = {k: (None if v is None or np.isnan(v) else float(v)) for k, v in res["iou_per_class"].items()
           if k != "ignore"}
    return {"miou": float(res["miou"]), "freq_weighted_iou": float(res["freq_weighted_iou"]),
            "iou_per_class": iou}


def finetune(ctx: FinetuneContext) -> dict:
    torch.manual_seed(ctx.seed)
    model = SegmentationModel(ctx.model_cfg, len(class_names(ctx))).to(ctx.device)
    init = load_init({"backbone_3d": model.encoder}, ctx.init_checkpoint)
    return {"metrics": run(ctx, model), "init": init}
