"""Native engine of `fusion_detection`: the detection task's native engine with this folder's native.yaml
over its settings (the inputs that reach the BEV backbone, and what they change), so the head,
targets, losses, post-processing and evaluation are the detection task's, line for line."""
from __future__ import annotations

from pathlib import Path

from xmbench.finetune import FinetuneContext
from xmbench.tasks import load_task

SETTINGS = Path(__file__).with_name("native.yaml")


def finetune(ctx: FinetuneContext) -> dict:
    _, detection = load_task("detection").engine("native")
    return detection.finetune(ctx, overlay=SETTINGS)
