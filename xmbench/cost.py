"""GPU-hours of each stage of a configuration, computed from the method and task yamls.

A pretraining job costs its method's `resources.gpus * resources.hours` (or the config's override);
a finetuning cell costs the task's per-profile budget scaled by its iterations at that fraction.
"""
from __future__ import annotations

from .grid import draws_at, pretrained_methods, tracks
from .methods import load_method
from .tasks import load_task

# training frames of the real releases (nuScenes v1.0-trainval train, Waymo v1.4 training), which set
# how many epochs the budget track's frames are; a generated dataset's own size is known only at run time
TRAIN_FRAMES = {("nuscenes", "v1.0-trainval"): 28130, ("waymo", "v1.4.2"): 158081}


def _budget_scale(cfg: dict, ds: dict, spec) -> float:
    """The budget track's share of a method's own pretraining (its yaml's hours are for its own epochs)."""
    frames = TRAIN_FRAMES.get((ds["format"], ds.get("version")))
    if frames is None:
        return 1.0
    from .pretraining.loop import budget_epochs

    own = cfg["pretrain"].get("epochs") or spec.value("schedule", "epochs")
    return budget_epochs(cfg["pretrain"]["budget"]["frames"], frames) / own


def cost_rows(cfg: dict) -> list[dict]:
    rows = []
    for dataset, ds in cfg["datasets"].items():
        for track in tracks(cfg):
            for name in pretrained_methods(cfg):
                spec = load_method(name)
                res = cfg["pretrain"].get("resources") or spec.spec["resources"]
                scale = 1.0 if track == "own" else _budget_scale(cfg, ds, spec)
                rows.append({"stage": "pretrain", "dataset": dataset, "task": "-",
                             "method": name if track == "own" else f"{name} ({track})", "fraction": "-",
                             "jobs": 1, "gpus_per_job": res["gpus"], "gpu_hours": res["gpus"] * res["hours"] * scale})
        for task_name in cfg["tasks"]:
            task = load_task(task_name)
            res = task.spec["resources"][ds["recipe_profile"]]
            full = task.spec["recipes"][ds["recipe_profile"]]["iterations_full"]
            for fraction in cfg["fractions"]:
                iters = task.recipe(ds["recipe_profile"], fraction)["iterations"]
                methods = len(cfg["methods"]) + (len(pretrained_methods(cfg)) if len(tracks(cfg)) > 1 else 0)
                jobs = methods * len(cfg["seeds"]) * len(draws_at(cfg, fraction))  # a cell per draw and track
                rows.append({"stage": "finetune", "dataset": dataset, "task": task_name, "method": "all",
                             "fraction": fraction, "jobs": jobs, "gpus_per_job": res["gpus"],
                             "gpu_hours": jobs * res["gpus"] * res["hours"] * iters / full})
    return rows


def cost_markdown(cfg: dict) -> str:
    rows = cost_rows(cfg)
    lines = ["| stage | dataset | task | method | fraction | jobs | GPUs/job | GPU-hours |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        frac = r["fraction"] if r["fraction"] == "-" else f"{r['fraction'] * 100:g}%"
        lines.append(f"| {r['stage']} | {r['dataset']} | {r['task']} | {r['method']} | {frac} | {r['jobs']} | "
                     f"{r['gpus_per_job']} | {r['gpu_hours']:.1f} |")
    total = sum(r["gpu_hours"] for r in rows)
    by_stage = {s: sum(r["gpu_hours"] for r in rows if r["stage"] == s) for s in ("pretrain", "finetune")}
    lines.append(f"| **total** | | | | | {sum(r['jobs'] for r in rows)} | | **{total:.1f}** |")
    lines.append("")
    lines.append(f"pretraining {by_stage['pretrain']:.1f} GPU-h, finetuning {by_stage['finetune']:.1f} GPU-h")
    lines += ["", cost_summary_markdown(cfg)]
    return "\n".join(lines)


def cost_summary_markdown(cfg: dict) -> str:
    """One row per stage and task, summed over datasets and fractions: the README's table."""
    rows = cost_rows(cfg)
    keys = list(dict.fromkeys((r["stage"], r["task"]) for r in rows))
    lines = ["| stage | jobs | GPU-hours |", "|---|---|---|"]
    for stage, task in keys:
        part = [r for r in rows if (r["stage"], r["task"]) == (stage, task)]
        name = "pretraining (every method)" if stage == "pretrain" else f"finetuning: {task}"
        lines.append(f"| {name} | {sum(r['jobs'] for r in part)} | {sum(r['gpu_hours'] for r in part):,.0f} |")
    lines.append(f"| **total** | {sum(r['jobs'] for r in rows)} | **{sum(r['gpu_hours'] for r in rows):,.0f}** |")
    return "\n".join(lines) + "\n"
