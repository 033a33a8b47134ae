"""Both sides of the pretrained checkpoint's ``model_state``: what a pretraining run writes and how a
downstream model is filled from it, by OpenPCDet's BEVFusion prefixes (``backbone_3d``,
``image_backbone``, ``neck``, ``vtransform``, ``fuser``), tensor name and shape.

OpenPCDet's --pretrained_model loads whatever matches and only logs the rest, so a model that was
pretrained with another config would silently finetune random weights under the method's name.
Here the checkpoint's ``meta["pretrained_modules"]`` says which prefixes the method pretrained, and
a downstream module under one of them must be filled completely, or loading fails with one line
naming what was missed.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..errors import BenchError

PREFIXES = ("backbone_3d", "image_backbone", "neck", "vtransform", "fuser")


def pretrained_modules(method: nn.Module) -> dict[str, nn.Module]:
    """The shared modules a method trains, by prefix: its ``pretrained_modules()`` when it defines one
    (CLAP adds its neck, lift and fuser), else the two backbones every method receives."""
    own = getattr(method, "pretrained_modules", None)
    mods = dict(own()) if callable(own) else {"backbone_3d": method.lidar, "image_backbone": method.image}
    unknown = set(mods) - set(PREFIXES)
    if unknown:
        raise ValueError(f"pretrained_modules(): unknown prefix(es) {sorted(unknown)} (known: {', '.join(PREFIXES)})")
    return mods


def model_state(modules: dict[str, nn.Module]) -> dict[str, torch.Tensor]:
    """``prefix.name`` -> tensor on the CPU, the layout OpenPCDet's --pretrained_model reads."""
    return {f"{prefix}.{k}": v.detach().cpu() for prefix, m in modules.items() for k, v in m.state_dict().items()}


def _names(keys, n: int = 5) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def checkpoint_tensors(state: dict) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The checkpoint's tensors by full name, and the prefixes its method pretrained (``meta``; for
    checkpoints older than that field, the prefixes present). Checkpoints written before
    ``image_backbone.*`` moved into ``model_state`` kept it beside it, which reads the same."""
    if "model_state" not in state:
        raise BenchError("not a pretrained checkpoint (no 'model_state')")
    tensors = dict(state["model_state"])
    legacy = state.get("image_backbone")
    if isinstance(legacy, dict) and not any(k.startswith("image_backbone.") for k in tensors):
        tensors.update({f"image_backbone.{k}": v for k, v in legacy.items()})
    declared = (state.get("meta") or {}).get("pretrained_modules")
    if declared is None:
        declared = sorted({k.split(".", 1)[0] for k in tensors} & set(PREFIXES))
    return tensors, list(declared)


def load_pretrained(modules: dict[str, nn.Module], checkpoint: str | Path | None) -> dict[str, dict]:
    """Fill ``modules`` (prefix -> module of a downstream model) from ``checkpoint`` (None: scratch).

    Returns per prefix ``{"loaded": n, "total": m, "pretrained": bool, "missed": [...], "ignored":
    [...]}``. A module whose prefix the method pretrained must have every tensor filled by name and
    shape, and must use every tensor the checkpoint holds for it; keys a module lists in its
    ``ignored_init_keys`` (name prefixes it knowingly lacks or reshapes, e.g. the cameras-only
    lift's ``dtransform.`` and ``depthnet.0.weight``) are exempt and keep their initialisation.
    Anything else raises one BenchError line listing, per module, what was missed. Modules of
    prefixes the method did not pretrain keep their initialisation (``loaded: 0``).
    """
    report = {p: {"loaded": 0, "total": len(m.state_dict()), "pretrained": False, "missed": [], "ignored": []}
              for p, m in modules.items()}
    if checkpoint is None:
        return report
    try:
        tensors, declared = checkpoint_tensors(torch.load(checkpoint, map_location="cpu", weights_only=False))
    except BenchError as e:
        raise BenchError(f"{checkpoint}: {e}") from None
    problems = []
    for prefix, module in modules.items():
        if prefix not in declared:
            continue
        theirs = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        own = module.state_dict()
        ignored = tuple(getattr(module, "ignored_init_keys", ()))
        matched = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        missed = [k for k in own if k not in matched and not k.startswith(ignored)]
        unused = [k for k in theirs if k not in matched and not k.startswith(ignored)]
        if missed or unused:
            parts = [f"missed {_names(missed)}" if missed else "", f"unused {_names(unused)}" if unused else ""]
            problems.append(f"{prefix} {len(matched)}/{len(own)} loaded ({'; '.join(p for p in parts if p)})")
            continue
        module.load_state_dict({**own, **matched})
        report[prefix] = {"loaded": len(matched), "total": len(own), "pretrained": True, "missed": [],
                          "ignored": sorted(k for k in own if k not in matched)}
    if problems:
        raise BenchError(f"{checkpoint}: the method pretrained more than this model takes: {' | '.join(problems)}; "
                         "it was pretrained with another model config (model.lidar / model.image) than this run's")
    if not any(r["pretrained"] for r in report.values()):
        raise BenchError(f"{checkpoint}: its method pretrained {', '.join(declared) or 'nothing'}, none of this "
                         f"model's {', '.join(modules)}; it cannot initialise this task's model")
    return report
