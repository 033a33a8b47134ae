"""Loading and validating the benchmark config; unknown methods and tasks are caught here, at start."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import yaml

from .atomic import sha256_text
from .errors import BenchError

REPO = Path(__file__).resolve().parent.parent
SCHEMA = REPO / "config" / "schema.yaml"


def _field(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "<top level>"


def _types(node: dict) -> set[str]:
    t = node.get("type", [])
    out = {t} if isinstance(t, str) else set(t)
    for v in node.get("enum", []):
        out.add({bool: "boolean", int: "integer", float: "number", type(None): "null"}.get(type(v), "string"))
    return out


def _branches(node: dict, root: dict) -> list[dict]:
    """The node and every schema it defers to ($ref, allOf, if/then), which all describe the value."""
    out, todo = [], [node]
    while todo:
        n = todo.pop()
        if not isinstance(n, dict):
            continue
        out.append(n)
        if "$ref" in n:
            todo.append(root["$defs"][n["$ref"].rsplit("/", 1)[-1]])
        todo += n.get("allOf", [])
        if "then" in n:
            todo.append(n["then"])
    return out


_INT, _NUM = re.compile(r"[-+]?\d+"), re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


def _scalar(text: str, types: set[str]):
    if "null" in types and text in ("null", "~"):
        return None
    if "string" in types:
        return text
    if "boolean" in types and text.lower() in ("true", "false"):
        return text.lower() == "true"
    if "integer" in types and _INT.fullmatch(text):
        return int(text)
    if "number" in types and _NUM.fullmatch(text):
        return float(text)
    return text


def coerce(obj, node: dict, root: dict | None = None):
    """Strings where the schema wants a number, boolean or null, converted.

    Snakemake parses ``--config key=value`` values with YAML's base loader, which makes every scalar
    a string (`fractions=[0.5]` arrives as ['0.5']); converting by the schema makes every field
    settable from the command line as the README promises, without guessing for string fields.
    """
    root = root if root is not None else node
    branches = _branches(node, root)
    if isinstance(obj, str):
        return _scalar(obj, set().union(*(_types(b) for b in branches)))
    if isinstance(obj, list):
        items = [b["items"] for b in branches if isinstance(b.get("items"), dict)]
        return [coerce(v, {"allOf": items}, root) for v in obj] if items else obj
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            subs = [b["properties"][k] for b in branches if k in b.get("properties", {})]
            subs += [b["additionalProperties"] for b in branches
                     if k not in b.get("properties", {}) and isinstance(b.get("additionalProperties"), dict)]
            out[k] = coerce(v, {"allOf": subs}, root) if subs else v
        return out
    return obj


def fill_defaults(obj: dict, node: dict) -> dict:
    """Absent optional fields get the schema's ``default`` (one place for every default)."""
    out = dict(obj)
    for key, sub in node.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        elif isinstance(out.get(key), dict) and sub.get("type") == "object":
            out[key] = fill_defaults(out[key], sub)
    return out


def validate(obj, schema_path: Path, source: str | Path) -> None:
    """Raise one BenchError naming the file and the first bad field."""
    schema = yaml.safe_load(Path(schema_path).read_text())
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(obj),
                    key=lambda e: list(e.absolute_path))
    if errors:
        e = errors[0]
        raise BenchError(f"{source}: field '{_field(e)}': {e.message} (schema: {schema_path.name})")


class _UniqueKeyLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word; a config must not lose a field so."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key '{key}' (lines {seen[key] + 1} and {key_node.start_mark.line + 1}); "
                    "keep one", key_node.start_mark)
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def load_yaml(path: str | Path):
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: file not found")
    try:
        return yaml.load(path.read_text(), Loader=_UniqueKeyLoader)
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise BenchError(f"{path}: not valid YAML ({problem})") from None


def check_config(cfg: dict, source: str | Path = "config") -> dict:
    """Validate against config/schema.yaml and check every named method and task has a folder.

    Returns the config with only the datasets ``run_datasets`` names (all when it is absent), so
    that nothing downstream (the DAG, the leaderboard's grid, the resolved config) sees the others.
    """
    schema = yaml.safe_load(SCHEMA.read_text())
    cfg = fill_defaults(coerce(cfg, schema), schema)
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
