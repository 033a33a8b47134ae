"""What every finetuning engine shares: the context it gets, init loading, optimiser, batches,
and the wrapper that turns any outcome, including a crash, into a metrics.json."""
from __future__ import annotations

import json
import math
import resource
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

import torch

from .atomic import atomic_path, sha256_file, write_json, write_text
from .config import config_hash
from .data.frames import load_json
from .errors import BenchError
from .grid import engine_of
from .provenance import provenance
from .splits import read_split
from .tasks import TaskSpec, recipe_hash


@dataclass
class FinetuneContext:
    dataset: str
    task: str
    method: str
    fraction: float
    seed: int
    recipe: dict
    model_cfg: dict
    index: dict
    labels: dict
    train_tokens: list[str]
    init_checkpoint: Path | None
    out_dir: Path
    device: torch.device
    threads: int = 1
    engine_cfg: dict | None = None       # the config's section named after the engine (e.g. `openpcdet`)
    split_sha256: str | None = None
    checkpoint_sha256: str | None = None
    waymo_python: str | None = None      # the Waymo environment's interpreter, for Waymo's metric ops

    def fingerprint(self) -> str:
        """What a saved training state must match to be resumed by this run."""
        return config_hash({"recipe": self.recipe, "model": self.model_cfg, "seed": self.seed, "task": self.task,
                            "split": self.split_sha256, "init": self.checkpoint_sha256})


def _checkpoint_tensors(state: dict) -> dict[str, torch.Tensor]:
    """``model_state`` under OpenPCDet's prefixes; checkpoints written before the image half kept
    the image backbone beside it as ``image_backbone``, which reads as ``image_backbone.*``."""
    tensors = dict(state["model_state"])
    legacy = state.get("image_backbone")
    if isinstance(legacy, dict) and not any(k.startswith("image_backbone.") for k in tensors):
        tensors.update({f"image_backbone.{k}": v for k, v in legacy.items()})
    return tensors


def _names(keys, n: int = 6) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def load_init(modules: dict[str, torch.nn.Module], checkpoint: Path | None) -> dict:
    """Fill a downstream model's modules from a pretrained checkpoint, by OpenPCDet's prefixes
    (``backbone_3d``, ``image_backbone``, ``neck``, ``vtransform``, ``fuser``), name and shape, the way
    OpenPCDet's --pretrained_model does, and report per module what was loaded out of what.

    OpenPCDet loads partially and only logs; here a module the method pretrained must be filled
    completely (every tensor of the module found with its shape, every pretrained tensor used),
    or the run fails naming what was missed: a silent miss would finetune random weights under the
    method's name. A module may list ``ignored_init_keys`` (key prefixes it knowingly lacks, e.g. a
    cameras-only lift has no LiDAR-depth branch). Modules the method did not pretrain keep their
    seeded initialisation and say so (``loaded: 0``).
    """
    report = {p: {"loaded": 0, "total": len(m.state_dict()), "pretrained": False} for p, m in modules.items()}
    if checkpoint is None:
        return report
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    if "model_state" not in state:
        raise BenchError(f"{checkpoint}: not a pretrained checkpoint (no 'model_state')")
    tensors = _checkpoint_tensors(state)
    problems = []
    for prefix, module in modules.items():
        theirs = {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
        if not theirs:
            continue
        own = module.state_dict()
        ignored = tuple(getattr(module, "ignored_init_keys", ()))
        matched = {k: v for k, v in theirs.items() if k in own and own[k].shape == v.shape}
        unfilled = [k for k in own if k not in matched and not k.startswith(ignored)]
        unused = [k for k in theirs if k not in matched and not k.startswith(ignored)]
        if unfilled or unused:
            what = "; ".join(x for x in (f"not in the checkpoint or of another shape: {_names(unfilled)}" if unfilled else "",
                                         f"pretrained but unused: {_names(unused)}" if unused else "") if x)
            problems.append(f"{prefix}: loaded {len(matched)}/{len(own)} ({what})")
            continue
        module.load_state_dict(matched, strict=not ignored)
        report[prefix] = {"loaded": len(matched), "total": len(own), "pretrained": True}
    if problems:
        raise BenchError(f"{checkpoint}: " + " | ".join(problems) + "; the checkpoint was pretrained with another "
                         "model config (model.lidar / model.image / model.camera_bev) than this run's")
    if not any(r["pretrained"] for r in report.values()):
        raise BenchError(f"{checkpoint}: none of {', '.join(modules)} is in the checkpoint; it cannot initialise "
                         "this task's model")
    return report


def build_optimizer(name: str, params, lr: float, weight_decay: float = 0.0, momentum: float = 0.9,
                    betas: tuple[float, float] | None = None) -> torch.optim.Optimizer:
    """The one place optimizers are built, for pretraining (method.yaml) and finetuning (task.yaml)."""
    extra = {"betas": tuple(betas)} if betas is not None else {}
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay, **extra)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay, **extra)
    return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)


def make_optimizer(recipe: dict, params) -> torch.optim.Optimizer:
    opt = recipe["optimizer"]
    return build_optimizer(opt["name"], params, opt["lr"], opt["weight_decay"])


def warmup_cosine(optimizer, recipe: dict):
    total = recipe["iterations"]
    warm = max(1, int(recipe.get("warmup_fraction", 0.0) * total))

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (step - warm) / max(1, total - warm)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def batch_order(n_items: int, batch_size: int, iterations: int, seed: int) -> list[list[int]]:
    """Epoch-wise reshuffled batches, deterministic from the seed; small subsets are cycled."""
    g = torch.Generator().manual_seed(seed)
    order: list[int] = []
    while len(order) < iterations * batch_size:
        order += torch.randperm(n_items, generator=g).tolist()
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(iterations)]


class TrainState:
    """Periodic, atomic training checkpoints for finetuning engines, and the resume from them.

    The log is cut back to the checkpointed step on resume, so it never holds a step twice.
    """

    def __init__(self, path: Path, log_path: Path, fingerprint: str):
        self.path, self.log_path, self.fingerprint = Path(path), Path(log_path), fingerprint

    def save(self, next_step: int, model, optimizer, schedule) -> None:
        state = {"next_step": next_step, "fingerprint": self.fingerprint, "model": model.state_dict(),
                 "optimizer": optimizer.state_dict(),
                 "schedule": schedule.state_dict()}
        with atomic_path(self.path) as tmp:
            torch.save(state, tmp)

    def resume(self, model, optimizer, schedule) -> int:
        if not self.path.exists():
            self.log_path.unlink(missing_ok=True)
            return 0
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            print(f"ignoring {self.path}: it was saved by a run with another recipe, init or split", file=sys.stderr)
            self.log_path.unlink(missing_ok=True)
            return 0
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step = state["next_step"]
        if self.log_path.exists():
            rows = [ln for ln in self.log_path.read_text().splitlines() if ln and json.loads(ln)["step"] < step]
            write_text(self.log_path, "".join(r + "\n" for r in rows))
        print(f"resuming finetuning from step {step} ({self.path})", file=sys.stderr)
        return step


def _peak_memory_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_finetune(task: TaskSpec, engine: str | None, cfg: dict, dataset: str, method: str, fraction: float,
                 seed: int, index_path: Path, labels_path: Path, split_path: Path, pretrain_record: Path | None,
                 out_dir: Path, device: str = "cpu") -> dict:
    """Run one cell of the grid and always leave a metrics.json (status ok or failed with the reason)."""
    out_dir = Path(out_dir)
    t0 = time.time()
    recipe = task.recipe(cfg["datasets"][dataset]["recipe_profile"], fraction)
    engine_name = engine or engine_of(cfg, task.name, task.spec)
    fmt = cfg["datasets"][dataset]["format"]
    primary = task.primary_metric(fmt)
    record = {"status": "ok", "reason": None, "dataset": dataset, "task": task.name, "engine": engine_name,
              "method": method, "fraction": fraction, "seed": seed,
              "primary_metric": {**{k: primary[k] for k in ("name", "unit")}, "value": None},
              "metrics": {}, "recipe": recipe, "recipe_hash": recipe_hash(recipe)}
    prov = {"config_hash": config_hash({"model": cfg["model"], "dataset": cfg["datasets"][dataset]}),
            "split_sha256": None, "checkpoint_sha256": None}
    try:
        tokens, prov["split_sha256"] = read_split(split_path)
        checkpoint = None
        if pretrain_record is not None:
            pre = load_json(pretrain_record)
            if pre["status"] != "ok":
                raise BenchError(f"pretraining of '{method}' failed: {pre['reason']}")
            checkpoint = Path(pre["checkpoint"])
            prov["checkpoint_sha256"] = sha256_file(checkpoint)
        torch.set_num_threads(cfg.get("threads", 1))
        task.check_format(fmt, dataset)
        _, module = task.engine(engine_name)
        waymo_py = None
        if fmt == "waymo":
            from .data.waymo_env import waymo_python

            waymo_py = str(waymo_python(cfg))
        ctx = FinetuneContext(dataset, task.name, method, fraction, seed, recipe, cfg["model"],
                              load_json(index_path), load_json(labels_path), tokens, checkpoint, out_dir,
                              torch.device(device), cfg.get("threads", 1), cfg.get(engine_name),
                              prov["split_sha256"], prov["checkpoint_sha256"], waymo_py)
        result = module.finetune(ctx)
        record["metrics"] = result["metrics"]
        record["init"] = result.get("init")
        value = result["metrics"][primary["key"]]
        if value is None:
            raise BenchError(f"{primary['name']} is undefined: the val split of '{dataset}' has no ground truth "
                             f"of the classes {task.name} scores")
        record["primary_metric"]["value"] = value * primary["scale"]
    except Exception as exc:  # a crash of one cell must not hide the other cells' results
        record["status"] = "failed"
        record["reason"] = f"{type(exc).__name__}: {exc}"
        (out_dir).mkdir(parents=True, exist_ok=True)
        (out_dir / "traceback.txt").write_text(traceback.format_exc())
    wall = time.time() - t0
    record["cost"] = {"wall_seconds": wall, "peak_memory_mb": _peak_memory_mb(),
                      "gpu_hours": wall / 3600 if torch.device(device).type == "cuda" else 0.0}
    record["provenance"] = {**prov, **provenance()}
    write_json(out_dir / "metrics.json", record)
    return record
