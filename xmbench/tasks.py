"""Downstream tasks: a folder under downstream/ with a valid task.yaml and its engines' code."""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

from .config import REPO, config_hash, load_yaml, validate
from .errors import BenchError

DOWNSTREAM_DIR = REPO / "downstream"
SCHEMA = DOWNSTREAM_DIR / "task.schema.yaml"


@dataclass(frozen=True)
class TaskSpec:
    name: str
    folder: Path
    spec: dict

    def recipe(self, profile: str, fraction: float) -> dict:
        """The finetuning recipe. Its inputs are the dataset's profile and the fraction: no method."""
        recipes = self.spec["recipes"]
        if profile not in recipes:
            raise BenchError(f"{self.folder / 'task.yaml'}: no recipe '{profile}' (known: {sorted(recipes)}); "
                             "fix datasets.<name>.recipe_profile in the config")
        r = dict(recipes[profile])
        iters = max(r["iterations_min"], round(r["iterations_full"] * fraction ** r["iterations_exponent"]))
        return {"task": self.name, "profile": profile, "fraction": fraction, "iterations": int(iters), **r}

    def primary_metric(self, fmt: str) -> dict:
        """The headline metric on a dataset of format ``fmt`` (Waymo's own for Waymo detection)."""
        return self.spec.get("primary_metric_by_format", {}).get(fmt, self.spec["primary_metric"])

    def check_format(self, fmt: str, dataset: str) -> None:
        formats = self.spec.get("formats", ["nuscenes"])
        if fmt not in formats:
            raise BenchError(f"{self.folder / 'task.yaml'}: task '{self.name}' reads {'/'.join(formats)} datasets, "
                             f"not dataset '{dataset}' of format {fmt}; drop one of them from the config")

    def check_engine_format(self, engine: str, fmt: str, dataset: str) -> None:
        """An engine may read fewer formats than its task (OpenPCDet has no BEVFusion for Waymo)."""
        formats = (self.spec.get("engine_formats") or {}).get(engine)
        if formats is not None and fmt not in formats:
            raise BenchError(f"config field 'engines.{self.name}': the {engine} engine of {self.name} reads "
                             f"{'/'.join(formats)} datasets, not dataset '{dataset}' of format {fmt}; select another "
                             f"engine for that format (engines: {{{self.name}: {{{fmt}: native}}}}) or disable the dataset")

    def engine(self, name: str | None = None):
        name = name or self.spec["default_engine"]
        if name not in self.spec["engines"]:
            raise BenchError(f"{self.folder / 'task.yaml'}: no engine '{name}' (known: {sorted(self.spec['engines'])})")
        path = self.folder / self.spec["engines"][name]
        module_spec = importlib.util.spec_from_file_location(f"xmbench_engine_{self.name}_{name}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        return name, module


    def settings_hash(self) -> str:
        """Hash of every settings file of the task (task.yaml, native.yaml, engine templates), and of
        the task it builds on: the finetuning rule carries it as a param so that editing one re-runs
        the cells it affects."""
        import hashlib

        h = hashlib.sha256()
        folders = [self.folder] + ([self.folder.parent / self.spec["builds_on"]] if self.spec.get("builds_on") else [])
        for folder in folders:
            for path in sorted(p for ext in ("*.yaml", "*.yml", "*.json") for p in folder.rglob(ext)):
                h.update(str(path.relative_to(folder.parent)).encode() + b"\0" + path.read_bytes() + b"\0")
        return h.hexdigest()[:16]


def recipe_hash(recipe: dict) -> str:
    return config_hash(recipe)


def load_task(name: str, downstream_dir: Path = DOWNSTREAM_DIR) -> TaskSpec:
    path = downstream_dir / name / "task.yaml"
    spec = load_yaml(path)
    validate(spec, SCHEMA, path)
    return TaskSpec(name, path.parent, spec)
