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

from .atomic import atomic_path, write_json, write_text
from .attempts import Attempts
from .config import config_hash
from .data.frames import load_json
from .errors import BenchError
from .grid import engine_of
from .models.init_weights import load_pretrained
from .inputs import check_val_lidarseg, pretrained_checkpoint
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


def load_init(modules: dict[str, torch.nn.Module], checkpoint: Path | None) -> dict:
    """Fill a downstream model's modules (OpenPCDet prefix -> module) from a pretrained checkpoint,
    the one way every engine does it (xmbench.models.init_weights.load_pretrained): a module the
    method pretrained is filled completely or the run fails naming what was missed; per module the
    report says loaded / total, and it lands in metrics.json as ``init``."""
    return load_pretrained(modules, checkpoint)


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
                 out_dir: Path, device: str = "cpu", draw: int = 0, track: str = "own") -> dict:
    """Run one cell of the grid and always leave a metrics.json (status ok or failed with the reason).

    The record names its whole cell (xmbench.grid.FIELDS, draw and pretraining track included), which
    the leaderboard checks against the folder it sits in."""
    out_dir = Path(out_dir)
    t0 = time.time()
    recipe = task.recipe(cfg["datasets"][dataset]["recipe_profile"], fraction)
    engine_name = engine or engine_of(cfg, task.name, task.spec, cfg["datasets"][dataset]["format"])
    fmt = cfg["datasets"][dataset]["format"]
    primary = task.primary_metric(fmt)
    record = {"status": "ok", "reason": None, "dataset": dataset, "task": task.name, "engine": engine_name,
              "method": method, "fraction": fraction, "draw": int(draw), "seed": seed, "track": track,
              "primary_metric": {**{k: primary[k] for k in ("name", "unit")}, "value": None},
              "metrics": {}, "recipe": recipe, "recipe_hash": recipe_hash(recipe)}
    prov = {"config_hash": config_hash({"model": cfg["model"], "dataset": cfg["datasets"][dataset]}),
            "split_sha256": None, "checkpoint_sha256": None}
    attempts = None
    try:
        tokens, prov["split_sha256"] = read_split(split_path)
        checkpoint = None
        if pretrain_record is not None:
            pre = load_json(pretrain_record)
            if pre["status"] != "ok":
                raise BenchError(f"pretraining of '{method}' failed: {pre['reason']}")
            checkpoint, prov["checkpoint_sha256"] = pretrained_checkpoint(Path(pretrain_record), pre)
        torch.set_num_threads(cfg.get("threads", 1))
        task.check_format(fmt, dataset)
        index, labels = load_json(index_path), load_json(labels_path)
        if primary["key"] == "miou":  # scored on the val segmentation files: check them now
            check_val_lidarseg(index, labels)
        attempts = Attempts(out_dir, config_hash([record["recipe_hash"], prov, method, seed])).start()
        _, module = task.engine(engine_name)
        waymo_py = None
        if fmt == "waymo":
            from .data.waymo.env import waymo_python

            waymo_py = str(waymo_python(cfg))
        ctx = FinetuneContext(dataset, task.name, method, fraction, seed, recipe, cfg["model"],
                              index, labels, tokens, checkpoint, out_dir,
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
        try:  # on a full disk the traceback may not fit; the record's one line must still be written
            write_text(out_dir / "traceback.txt", traceback.format_exc())
        except OSError as err:
            record["reason"] += f" (traceback not written: {err.strerror or err})"
    finally:
        if attempts is not None:
            attempts.stop()
    wall = time.time() - t0
    total = wall + (attempts.previous_s if attempts else 0.0)
    record["cost"] = {"wall_seconds": total, "peak_memory_mb": _peak_memory_mb(),
                      "gpu_hours": total / 3600 if torch.device(device).type == "cuda" else 0.0,
                      "attempts": attempts.attempts if attempts else 1, "last_attempt_seconds": wall}
    record["provenance"] = {**prov, **provenance()}
    write_json(out_dir / "metrics.json", record)
    if attempts is not None:
        attempts.done()
    return record
