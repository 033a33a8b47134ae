"""Method discovery: a folder under methods/ with a valid method.yaml is a method. Nothing else to register.

An ablation's method.yaml may start from another method's (``base: clap``) and hold only what it
changes, so that the 80 lines it shares with its base cannot drift apart from it. The two are
composed as a JSON Merge Patch (RFC 7386): mappings merge key by key, ``null`` removes a key, and
any other value (a list included) replaces the base's. The composed spec is what the schema
validates, what the job runs and what the pretrain rule hashes, so editing the base re-runs every
method built on it.
"""
from __future__ import annotations

import importlib
import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import REPO, load_yaml, validate
from .errors import BenchError

METHODS_DIR = REPO / "methods"
SCHEMA = METHODS_DIR / "method.schema.yaml"


@dataclass(frozen=True)
class MethodSpec:
    name: str
    folder: Path
    spec: dict
    # the method.yaml files composed into spec, this method's first, then its base, its base's base...
    files: tuple[Path, ...] = field(default=())

    @property
    def pretrains(self) -> bool:
        return bool(self.spec["pretrain"])

    def value(self, section: str, key: str):
        return self.spec[section][key]["value"]

    def hparams(self) -> dict:
        return {k: v["value"] for k, v in self.spec.get("hparams", {}).items()}

    def load_class(self):
        path = self.folder / "method.py"
        if not path.is_file():
            raise BenchError(f"{path}: missing (method.yaml names entry '{self.spec['entry']}')")
        if self.folder.resolve().parent == METHODS_DIR.resolve():
            module = _import_method(self.name)
        else:  # a folder outside the repository's methods/ (a scaffold under test): by path
            module_spec = importlib.util.spec_from_file_location(f"xmbench_method_{self.name}", path)
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
        cls = getattr(module, self.spec["entry"], None)
        if cls is None:
            raise BenchError(f"{path}: no class '{self.spec['entry']}' "
                             f"(field 'entry' of {self.folder / 'method.yaml'})")
        return cls


def _import_method(name: str):
    """methods/<name>/method.py imported as ``methods.<name>.method``.

    By its package name, not by path, so that an ablation's ``from methods.clap.method import CLAP``
    and CLAP's own job share one class object, and codehash follows that import like any other.
    The repository root is put on the path for entry points started outside it.
    """
    if str(REPO) not in sys.path:
        sys.path.append(str(REPO))
    package = importlib.import_module("methods")
    if Path(package.__file__).resolve().parent != METHODS_DIR.resolve():
        raise BenchError(f"'import methods' finds {package.__file__}, not {METHODS_DIR}/__init__.py: "
                         "another package named 'methods' shadows the benchmark's")
    return importlib.import_module(f"methods.{name}.method")


def merge_patch(base, patch):
    """RFC 7386 JSON Merge Patch of ``patch`` onto ``base`` (neither is modified)."""
    if not isinstance(patch, dict):
        return patch
    out = dict(base) if isinstance(base, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def _uncited_overrides(patch, where: str = "") -> list[str]:
    """Fields of a patch that set a ``value`` without a ``source``: merged, they would carry the
    base's citation for a number the base's source never gave."""
    if not isinstance(patch, dict):
        return []
    found = [where or "<top level>"] if "value" in patch and "source" not in patch else []
    for key, value in patch.items():
        found += _uncited_overrides(value, f"{where}.{key}" if where else str(key))
    return found


def _compose(path: Path, methods_dir: Path, chain: tuple[Path, ...] = ()) -> tuple[dict, tuple[Path, ...]]:
    """The method.yaml at ``path`` with its ``base`` (recursively) merged under it, and the files read."""
    if path in chain:
        cycle = " -> ".join(str(p) for p in chain + (path,))
        raise BenchError(f"{path}: field 'base': the bases form a cycle ({cycle})")
    raw = load_yaml(path)
    chain = chain + (path,)
    if not isinstance(raw, dict) or "base" not in raw:
        return raw, chain
    base = raw.pop("base")
    base_path = methods_dir / str(base) / "method.yaml"
    if not isinstance(base, str) or not base_path.is_file():
        raise BenchError(f"{path}: field 'base': no method '{base}' (no {base_path})")
    uncited = _uncited_overrides(raw)
    if uncited:
        raise BenchError(f"{path}: field '{uncited[0]}': an override of the base's value needs its own 'source'")
    merged, chain = _compose(base_path, methods_dir, chain)
    return merge_patch(merged, raw), chain


def load_method(name: str, methods_dir: Path = METHODS_DIR) -> MethodSpec:
    path = methods_dir / name / "method.yaml"
    spec, files = _compose(path, methods_dir)
    validate(spec, SCHEMA, path)
    if spec["name"] != name:
        raise BenchError(f"{path}: field 'name': '{spec['name']}' differs from its folder name '{name}'")
    return MethodSpec(name, path.parent, spec, files)


def discover(methods_dir: Path = METHODS_DIR) -> list[str]:
    """Folders holding a method.yaml; methods/ is also a Python package, so __pycache__ sits there too."""
    return sorted(p.parent.name for p in methods_dir.glob("*/method.yaml"))
