"""The harness-owned pretraining loop: one implementation for every method.

The method only turns a batch into named loss terms. Everything that must be identical across
methods (data, backbones, optimiser plumbing, schedule, checkpoints, resume, logging) lives here.
Determinism: the data order of epoch e and the augmentation draws of step s come from generators
seeded by (seed, e) and (seed, e, s), so a run resumed from epoch e's checkpoint takes exactly the
path the uninterrupted run took.
"""
from __future__ import annotations

import json
import math
import os
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..atomic import atomic_path, sha256_file, write_text
from ..config import config_hash
from ..data.frames import FrameDataset, collate, load_json
from ..errors import BenchError
from ..finetune import build_optimizer
from ..methods import MethodSpec
from ..models.build import build_image_backbone, build_lidar_backbone
from ..models.init_weights import model_state, pretrained_modules
from ..provenance import provenance


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite: the run stops, naming the step and the term."""


@dataclass(frozen=True)
class PretrainSettings:
    epochs: int
    batch_size: int
    max_steps_per_epoch: int | None
    seed: int = 0


def budget_epochs(frames: int, train_frames: int) -> int:
    """Epochs that show every method the same number of frames (``pretrain.budget.frames``): each
    epoch sees every training frame once, whatever the method's batch size."""
    return max(1, math.ceil(frames / max(1, train_frames)))


def settings_for(spec: MethodSpec, cfg: dict, track: str = "own", train_frames: int | None = None) -> PretrainSettings:
    """The method's own schedule unless the config overrides it for every method alike; on the
    ``budget`` track, the epochs that see ``pretrain.budget.frames`` frames (``train_frames`` per epoch)."""
    over = cfg.get("pretrain", {})
    epochs = over.get("epochs") or spec.value("schedule", "epochs")
    if track == "budget":
        if not over.get("budget") or train_frames is None:
            raise BenchError("the budget track needs pretrain.budget.frames in the config and the training "
                             "frames of the dataset")
        epochs = budget_epochs(over["budget"]["frames"], train_frames)
    elif track != "own":
        raise BenchError(f"unknown pretraining track '{track}' (known: own, budget)")
    return PretrainSettings(
        epochs=epochs,
        batch_size=over.get("batch_size") or spec.value("schedule", "batch_size"),
        max_steps_per_epoch=over.get("max_steps_per_epoch"))


def job_resources(spec: MethodSpec, cfg: dict) -> dict:
    """What the pretraining job of this method asks the cluster for (the Snakefile's pretrain rule):
    the config's `pretrain.resources` for every method alike, else the method's own paper-scale ones."""
    return cfg.get("pretrain", {}).get("resources") or spec.spec["resources"]


def job_world(resources: dict) -> int:
    """Processes of a job holding these resources: one per GPU under torchrun (cli._relaunch_per_gpu),
    one on a CPU or a single GPU."""
    return max(1, int(resources["gpus"]))


def check_settings(spec: MethodSpec, settings: PretrainSettings, world: int, n_frames: int | None = None,
                   where: str = "") -> None:
    """Refuse, before any training, a schedule the job cannot run: the same checks for a real job
    (Pretrainer) and for the paper-scale configurations the tests build without training."""
    yaml_path = spec.folder / "method.yaml"
    if settings.epochs < 1:
        raise BenchError(f"{yaml_path}: {settings.epochs} epochs; at least one is needed")
    if settings.batch_size % world:
        raise BenchError(f"{yaml_path}: batch size {settings.batch_size} is not divisible by the {world} "
                         "processes of this job; change the batch size or the job's GPUs "
                         "(resources.gpus, or pretrain.resources in the config)")
    if n_frames is not None and n_frames // settings.batch_size == 0:
        raise BenchError(f"{where or 'the index'}: {n_frames} training frames are fewer than one batch "
                         f"of {settings.batch_size}")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _optimizer(opt: dict, params) -> torch.optim.Optimizer:
    """method.yaml's optimizer entry, whose every value is cited as {value, source}."""
    value = {k: v["value"] for k, v in opt.items() if isinstance(v, dict)}
    return build_optimizer(opt["name"], params, value["lr"], value.get("weight_decay", 0.0),
                           value.get("momentum", 0.9), value.get("betas"))


def make_optimizers(spec: MethodSpec, model: torch.nn.Module) -> dict[str, torch.optim.Optimizer]:
    """One optimizer over everything, or one per group the method names (method.yaml `optimizers`)."""
    if "optimizer" in spec.spec:
        return {"all": _optimizer(spec.spec["optimizer"], model.parameters())}
    groups = {k: list(v) for k, v in model.optimizer_groups().items()}
    wanted = set(spec.spec["optimizers"])
    if set(groups) != wanted:
        raise BenchError(f"{spec.folder / 'method.yaml'}: field 'optimizers' names {sorted(wanted)} but "
                         f"optimizer_groups() of method.py returns {sorted(groups)}")
    seen = {id(p) for ps in groups.values() for p in ps}
    missing = [n for n, p in model.named_parameters() if id(p) not in seen and p.requires_grad]
    if missing:
        raise BenchError(f"{spec.folder / 'method.py'}: optimizer_groups() leaves parameters out, e.g. {missing[0]}")
    return {k: _optimizer(spec.spec["optimizers"][k], groups[k]) for k in spec.spec["optimizers"]}


def make_schedule(spec: MethodSpec, optimizer, total_steps: int, steps_per_epoch: int):
    sched = spec.spec["schedule"]
    if sched["name"] == "constant":
        factor = lambda s: 1.0  # noqa: E731
    elif sched["name"] == "exponential":
        gamma = sched["gamma"]["value"]
        factor = lambda s: gamma ** (s // steps_per_epoch)  # noqa: E731
    else:
        factor = lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total_steps) / max(1, total_steps)))  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _check_finite(terms: dict, epoch: int, step: int) -> None:
    for name, value in terms.items():
        if not torch.isfinite(value).all():
            raise NonFiniteLoss(f"non-finite loss at epoch {epoch} step {step}: term '{name}' = {value.item()}")


def _trim_log(log_path: Path, start_epoch: int) -> None:
    """Drop log lines of an epoch that was interrupted: they are re-run after the resume."""
    if not log_path.exists():
        return
    keep = [ln for ln in log_path.read_text().splitlines() if ln and json.loads(ln)["epoch"] < start_epoch]
    write_text(log_path, "".join(ln + "\n" for ln in keep))


@dataclass(frozen=True)
class Dist:
    """Where this process sits in a torchrun job; one process on a CPU is rank 0 of 1."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str) -> tuple[Dist, torch.device]:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; the job's GPUs decide the world size."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return Dist(), torch.device(device)
    import torch.distributed as tdist

    local = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and device != "cpu":
        torch.cuda.set_device(local)
        dev, backend = torch.device("cuda", local), "nccl"
    else:
        dev, backend = torch.device("cpu"), "gloo"
    if not tdist.is_initialized():
        tdist.init_process_group(backend)
    return Dist(tdist.get_rank(), world, local), dev


class Pretrainer:
    def __init__(self, spec: MethodSpec, cfg: dict, index_path: Path, out_dir: Path,
                 device: str = "cpu", track: str = "own"):
        self.spec, self.cfg, self.out_dir, self.track = spec, cfg, Path(out_dir), track
        self.dist, self.device = init_distributed(device)
        self.index_path = Path(index_path)
        index = load_json(index_path)
        tokens = [f["token"] for f in index["frames"] if f["split"] == "train"]
        self.settings = settings_for(spec, cfg, track, len(tokens))
        self.dataset = FrameDataset(index, tokens, tuple(cfg["model"]["image"]["size"]), labels=None)
        check_settings(spec, self.settings, self.dist.world, len(self.dataset), str(index_path))
        seed_everything(self.settings.seed)
        lidar, image = build_lidar_backbone(cfg["model"]), build_image_backbone(cfg["model"])
        self.module = spec.load_class()(lidar, image, spec.hparams(), cfg["model"]).to(self.device)
        self.model = self.module
        if self.dist.world > 1:
            self.model = torch.nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=True)
        n = len(self.dataset) // self.settings.batch_size
        self.steps_per_epoch = min(n, self.settings.max_steps_per_epoch or n)
        self.optimizers = make_optimizers(spec, self.module)
        total = self.steps_per_epoch * self.settings.epochs
        self.schedules = {k: make_schedule(spec, o, total, self.steps_per_epoch) for k, o in self.optimizers.items()}
        self.state_path = self.out_dir / "last.pth"
        self.log_path = self.out_dir / "loss_log.jsonl"
        # what a saved state must match to be resumed: a state of another config is never continued
        self.fingerprint = config_hash({"method": spec.spec, "model": cfg["model"], "settings": self.settings,
                                        "index": sha256_file(self.index_path), "world": self.dist.world})

    def _resume(self) -> int:
        if not self.state_path.exists():
            return 0
        state = torch.load(self.state_path, map_location=self.device, weights_only=False)
        if state.get("fingerprint") != self.fingerprint:
            print(f"ignoring {self.state_path}: it was saved by a run with another method, config or index",
                  file=sys.stderr)
            self.log_path.unlink(missing_ok=True)
            return 0
        self.module.load_state_dict(state["model"])
        for k in self.optimizers:
            self.optimizers[k].load_state_dict(state["optimizers"][k])
            self.schedules[k].load_state_dict(state["schedules"][k])
        torch.set_rng_state(state["torch_rng"])
        print(f"resuming {self.spec.name} from epoch {state['epoch'] + 1} ({self.state_path})", file=sys.stderr)
        return state["epoch"] + 1

    def _save_state(self, epoch: int) -> None:
        if not self.dist.main:
            return
        state = {"epoch": epoch, "fingerprint": self.fingerprint, "model": self.module.state_dict(),
                 "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
                 "schedules": {k: s.state_dict() for k, s in self.schedules.items()},
                 "torch_rng": torch.get_rng_state()}
        with atomic_path(self.state_path) as tmp:
            torch.save(state, tmp)

    def _batches(self, epoch: int):
        order = torch.randperm(len(self.dataset), generator=torch.Generator().manual_seed(
            self.settings.seed * 100003 + epoch)).tolist()
        bs = self.settings.batch_size
        for step in range(self.steps_per_epoch):
            mine = order[step * bs:(step + 1) * bs][self.dist.rank::self.dist.world]  # this rank's share
            yield step, collate([self.dataset[i] for i in mine])

    def run(self) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        start = self._resume()
        if self.dist.main:
            _trim_log(self.log_path, start)
        self.model.train()
        t0 = time.time()
        for epoch in range(start, self.settings.epochs):
            bar = tqdm(self._batches(epoch), total=self.steps_per_epoch, file=sys.stderr, mininterval=5,
                       desc=f"{self.spec.name} epoch {epoch + 1}/{self.settings.epochs}",
                       disable=not self.dist.main)
            with open(self.log_path if self.dist.main else os.devnull, "a") as log:
                for step, batch in bar:
                    batch = self._to_device(batch)
                    batch["generator"] = torch.Generator().manual_seed(
                        ((self.settings.seed * 100003 + epoch) * 100003 + step) * 64 + self.dist.rank)
                    batch["epoch"], batch["step"] = epoch, epoch * self.steps_per_epoch + step
                    batch["epochs"] = self.settings.epochs
                    batch["method_epochs"] = self.spec.value("schedule", "epochs")
                    terms = self.model(batch)
                    _check_finite(terms, epoch, epoch * self.steps_per_epoch + step)
                    loss = sum(terms.values())
                    for opt in self.optimizers.values():
                        opt.zero_grad(set_to_none=True)
                    loss.backward()
                    for opt, sched in zip(self.optimizers.values(), self.schedules.values()):
                        opt.step()
                        sched.step()
                    row = {"epoch": epoch, "step": epoch * self.steps_per_epoch + step,
                           **{f"lr_{k}": o.param_groups[0]["lr"] for k, o in self.optimizers.items()},
                           "loss": loss.item(),
                           **{k: v.item() for k, v in terms.items()}}
                    log.write(json.dumps(row) + "\n")
                    bar.set_postfix(loss=f"{row['loss']:.4f}")
            self._save_state(epoch)
            self._barrier()
        if not self.dist.main:
            return self.out_dir / "checkpoint.pth"
        return self._write_checkpoint(time.time() - t0)

    def _barrier(self) -> None:
        if self.dist.world > 1:
            import torch.distributed as tdist

            tdist.barrier()

    def _to_device(self, batch: dict) -> dict:
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}

    def _write_checkpoint(self, seconds: float) -> Path:
        """DESIGN.md's format: ``model_state`` under OpenPCDet's BEVFusion prefixes (backbone_3d.*,
        image_backbone.*, and neck.* / vtransform.* / fuser.* where the method trains them), which
        --pretrained_model loads as they are; ``meta["pretrained_modules"]`` names those prefixes so
        that a downstream load can tell a miss from a module the method never trained."""
        modules = pretrained_modules(self.module)
        state = model_state(modules)
        meta = {"method": self.spec.name, "track": self.track, "pretrained_modules": sorted(modules),
                "epochs": self.settings.epochs, "batch_size": self.settings.batch_size,
                "steps_per_epoch": self.steps_per_epoch, "seed": self.settings.seed,
                "world_size": self.dist.world,
                "config_hash": config_hash({"model": self.cfg["model"], "pretrain": self.cfg.get("pretrain")}),
                "method_hash": config_hash(self.spec.spec), "index_sha256": sha256_file(self.index_path),
                "train_seconds": seconds, **provenance()}
        ckpt = {"model_state": state, "meta": meta}
        path = self.out_dir / "checkpoint.pth"
        with atomic_path(path) as tmp:
            torch.save(ckpt, tmp)
        return path
