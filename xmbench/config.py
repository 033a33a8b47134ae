"""Loading and validating the benchmark config; unknown methods and tasks are caught here, at start."""
from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from .atomic import sha256_text
from .errors import BenchError

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "config" / "schema.yaml"


def _field(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def validate(obj, schema_path: Path, source: str | Path) -> None:
    """Raise one BenchError naming the file and the first bad field."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise BenchError(f"{source}: field '{_field(e)}': {e.message} (schema: {schema_path.name})")


def load_yaml(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise BenchError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None


def check_config(cfg: dict, source: str | Path = "config") -> dict:
    """Validate against config/schema.yaml and check every named method and task has a folder.

    Returns the config with only the datasets ``run_datasets`` names (all when it is absent), so
    that nothing downstream (the DAG, the leaderboard's grid, the resolved config) sees the others.
    """
    validate(cfg, SCHEMA, source)
    run = cfg.get("run_datasets", list(cfg["datasets"]))
    unknown = [d for d in run if d not in cfg["datasets"]]
    if unknown:
        raise BenchError(f"{source}: field 'run_datasets': unknown dataset '{unknown[0]}' "
                         f"(datasets of this config: {', '.join(cfg['datasets'])})")
    cfg = {**cfg, "datasets": {k: v for k, v in cfg["datasets"].items() if k in run}, "run_datasets": list(run)}
    for name in cfg["methods"]:
        if not (REPO / "methods" / name / "method.yaml").is_file():
            known = ", ".join(sorted(p.parent.name for p in (REPO / "methods").glob("*/method.yaml")))
            raise BenchError(f"{source}: field 'methods': unknown method '{name}' "
                             f"(no methods/{name}/method.yaml; known: {known})")
    for task in cfg["tasks"]:
        if not (REPO / "downstream" / task / "task.yaml").is_file():
            known = ", ".join(sorted(p.parent.name for p in (REPO / "downstream").glob("*/task.yaml")))
            raise BenchError(f"{source}: field 'tasks': unknown task '{task}' "
                             f"(no downstream/{task}/task.yaml; known: {known})")
    for name, ds in cfg["datasets"].items():
        if ds["source"] == "path" and "root" not in ds:
            raise BenchError(f"{source}: field 'datasets.{name}.root': required when source is 'path'")
    return cfg


def load_config(path: str | Path) -> dict:
    return check_config(load_yaml(path), path)


def config_hash(obj) -> str:
    """Short, order-independent hash of a config section, recorded in every output's provenance."""
    return sha256_text(json.dumps(obj, sort_keys=True, default=str))[:16]


def dataset_root(cfg: dict, dataset: str) -> Path:
    ds = cfg["datasets"][dataset]
    if ds["source"] == "synthetic":
        return Path(cfg["results_dir"]) / "data" / dataset
    return Path(ds["root"])
