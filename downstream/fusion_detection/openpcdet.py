"""OpenPCDet engine of `fusion_detection`: the detection task's OpenPCDet adapter with OpenPCDet's own
BEVFusion (tools/cfgs/nuscenes_models/bevfusion.yaml, the `nuscenes_bevfusion` template), whose
camera branch is the shared Swin, neck, DepthLSS lift and ConvFuser under the same names, so a
checkpoint fills both branches through --pretrained_model. OpenPCDet has no Waymo BEVFusion:
task.yaml's engine_formats keeps this engine to nuScenes datasets."""
from __future__ import annotations

import dataclasses

from xmbench.finetune import FinetuneContext
from xmbench.tasks import load_task

TEMPLATE = "nuscenes_bevfusion"


def finetune(ctx: FinetuneContext) -> dict:
    _, adapter = load_task("detection").engine("openpcdet")
    ctx = dataclasses.replace(ctx, engine_cfg={**(ctx.engine_cfg or {}), "template": TEMPLATE})
    return adapter.finetune(ctx)
