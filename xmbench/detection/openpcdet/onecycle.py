"""The native engine's schedule in OpenPCDet's terms (adam_onecycle), and its note in the metrics.

Its own module because it is the one claim of equivalence between the two engines' training:
the arithmetic that maps a linear warm-up and cosine onto OpenPCDet's one-cycle sits with the
sentence every cell records about where the two differ.
"""
from __future__ import annotations

from ...errors import BenchError


def warmup_steps(recipe: dict) -> int:
    """The native engine's warm-up length (xmbench.finetune.warmup_cosine): at least one step."""
    return max(1, int(recipe.get("warmup_fraction", 0.0) * recipe["iterations"]))


def schedule(recipe: dict) -> dict:
    """OPTIMIZATION entries that give OpenPCDet the native engine's schedule.

    Native: AdamW (betas 0.9/0.999), lr rising linearly to the recipe's lr over ``w`` warm-up steps
    (lr/w at step 0), then a cosine to 0 at the last step. OpenPCDet's ``adam_onecycle`` with
    DIV_FACTOR w and PCT_START w/iterations starts at the same lr/w, peaks at the same lr at step w
    and follows the same cosine to lr/w/1e4; only the warm-up ramp is a half cosine instead of a
    line. Its weight decay is decoupled (true_wd, also on BatchNorm), as AdamW's; MOMS held at the
    first beta keeps Adam's beta1 fixed, as AdamW's."""
    opt = recipe["optimizer"]
    if opt["name"] != "adamw":
        raise BenchError(f"recipe optimizer '{opt['name']}': the openpcdet engine reproduces adamw only "
                         "(OpenPCDet's adam_onecycle with decoupled weight decay); use adamw in task.yaml")
    total, warm = int(recipe["iterations"]), warmup_steps(recipe)
    betas = [float(b) for b in opt.get("betas", [0.9, 0.999])]
    return {"OPTIMIZER": "adam_onecycle", "LR": float(opt["lr"]), "WEIGHT_DECAY": float(opt["weight_decay"]),
            "BETAS": betas, "MOMS": [betas[0], betas[0]], "DIV_FACTOR": float(warm),
            # OpenPCDet takes int(PCT_START * total) as the peak step; half a step above w keeps it w
            "PCT_START": (warm + 0.5) / total}


def schedule_note(recipe: dict) -> str:
    """The schedule's shape, stated in every OpenPCDet cell's metrics."""
    total, warm, lr = int(recipe["iterations"]), warmup_steps(recipe), float(recipe["optimizer"]["lr"])
    return (f"OpenPCDet adam_onecycle: {total} steps, half-cosine warm-up over {warm} from lr/{warm} to the peak "
            f"{lr:g}, then cosine to lr/{warm}/1e4 (native engine: linear warm-up over {warm}, cosine to 0)")
