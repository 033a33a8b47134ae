"""A native finetuning step of each default task beside what it cannot do without, same frames, same run.

- **Step vs backbone**: the engines' own ``train_step`` (targets, GT sampling, augmentation, forward,
  losses, backward, clipping, optimiser) against the backbones alone forward and backward on the same
  batch (the LiDAR encoder; for fusion also the image backbone). Head, neck, lift, fuser, losses,
  targets and augmentation may cost at most 1x the backbones on top (ratio <= 2).
- **Loading vs step**: loading the step's frames from disk (``FrameDataset``) costs at most a quarter
  of the step it feeds, so a loop without workers is never loader-bound on a CPU.

The model is the embedded default's (config/default.yaml) with the ``small`` recipe and settings;
frames come from the tests' generated dataset. Process CPU time, the median of interleaved repeats
(the machine is shared: ratios, never seconds).
"""
import json
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from xmbench.data.frames import FrameDataset
from xmbench.finetune import make_optimizer
from xmbench.models.voxel_backbone import to_bev
from xmbench.models.voxelize import voxelize
from xmbench.tasks import load_task

REPO = Path(__file__).resolve().parents[2]
REPEATS = 7


def _default_model() -> dict:
    return yaml.safe_load((REPO / "config" / "default.yaml").read_text())["model"]


def _frames(tiny_index, with_images: bool, labels: bool = True):
    index = json.loads(Path(tiny_index["index"]).read_text())
    lab = json.loads(Path(tiny_index["labels"]).read_text())
    tokens = [f["token"] for f in index["frames"] if f["split"] == "train"][:2]
    size = tuple(_default_model()["image"]["size"])
    return index, lab, FrameDataset(index, tokens, size, labels=lab if labels else None, with_images=with_images)


def _interleaved(fns: dict) -> dict:
    times = {k: [] for k in fns}
    for _ in range(REPEATS):
        for k, fn in fns.items():
            t = time.process_time()
            fn()
            times[k].append(time.process_time() - t)
    return {k: statistics.median(v) for k, v in times.items()}


def _lidar_backbone(encoder, batch):
    vox = voxelize(batch["points"], batch["batch_idx"], batch["batch_size"], encoder.grid)
    out = encoder(vox.features, vox.coords, batch["batch_size"])
    return to_bev(out["encoded"]).square().mean() + sum(out[k].features.square().mean() for k in out if k != "encoded")


def _report(benchmark, name, t):
    ratio, load = t["step"] / t["backbone"], t["load"] / t["step"]
    benchmark.extra_info.update(step_over_backbone=ratio, load_over_step=load, **{f"{k}_cpu_s": v for k, v in t.items()})
    print(f"\n{name}: step {t['step']:.3f} s, backbone {t['backbone']:.3f} s (step/backbone {ratio:.2f}), "
          f"loading {t['load']:.3f} s (load/step {load:.2f})")
    return ratio, load


@pytest.mark.parametrize("task", ["detection", "fusion_detection"])
def test_detection_step_against_its_backbones(task, tiny_index, benchmark):
    _, det = load_task("detection").engine("native")
    overlay = None if task == "detection" else REPO / "downstream" / task / "native.yaml"
    settings = det.load_settings("small", "nuscenes", overlay=overlay)
    recipe = load_task(task).recipe("small", 1.0)
    torch.manual_seed(0)
    model = det.DetectionModel(_default_model(), settings)
    model.train()
    cameras = "camera" in model.modalities
    index, labels, data = _frames(tiny_index, cameras)
    db = None
    if settings["gt_sampling"]["enabled"]:
        from xmbench.detection.gt_sampling import build_database
        db = build_database(index, labels, data.tokens, settings["class_names"], settings["gt_sampling"]["min_points"])
    items = [data[0], data[1]]
    optimizer = make_optimizer(recipe, model.parameters())
    plain = det.plain_batch(items)
    step = iter(range(10 ** 6))

    def backbone():
        loss = _lidar_backbone(model.encoder, plain)
        if cameras:
            loss = loss + sum(f.square().mean() for f in model.camera.image(plain["images"].flatten(0, 1)))
        loss.backward()

    t = {}
    benchmark.pedantic(lambda: t.update(_interleaved({
        "step": lambda: det.train_step(model, optimizer, items, settings, recipe, 0, next(step), "cpu", db),
        "backbone": backbone,
        "load": lambda: [data[0], data[1]]})), rounds=1, iterations=1)
    ratio, load = _report(benchmark, task, t)
    assert ratio <= 2.0, t
    assert load <= 0.25, t


def test_segmentation_step_against_its_backbone(tiny_index, benchmark):
    _, seg = load_task("segmentation").engine("native")
    recipe = load_task("segmentation").recipe("small", 1.0)
    torch.manual_seed(0)
    _, labels, data = _frames(tiny_index, False)
    model = seg.SegmentationModel(_default_model(), len(labels["lidarseg_coarse_names"]))
    model.train()
    items = [data[0], data[1]]
    optimizer = make_optimizer(recipe, model.parameters())
    from xmbench.data.frames import collate
    batch = collate(items)
    step = iter(range(10 ** 6))
    t = {}
    benchmark.pedantic(lambda: t.update(_interleaved({
        "step": lambda: seg.train_step(model, optimizer, items, recipe, 0, next(step), "cpu"),
        "backbone": lambda: _lidar_backbone(model.encoder, batch).backward(),
        "load": lambda: [data[0], data[1]]})), rounds=1, iterations=1)
    ratio, load = _report(benchmark, "segmentation", t)
    assert ratio <= 2.0, t
    assert load <= 0.25, t
