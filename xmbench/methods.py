"""Method discovery: a folder under methods/ with a valid method.yaml is a method. Nothing else to register."""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass
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
        module_spec = importlib.util.spec_from_file_location(f"xmbench_method_{self.name}", path)
        module = importlib.util.module_from_spec(module_spec)
        module_spec.loader.exec_module(module)
        cls = getattr(module, self.spec["entry"], None)
        if cls is None:
            raise BenchError(f"{path}: no class '{self.spec['entry']}' (field 'entry' of {self.folder / 'method.yaml'})")
        return cls


def load_method(name: str, methods_dir: Path = METHODS_DIR) -> MethodSpec:
    path = methods_dir / name / "method.yaml"
    spec = load_yaml(path)
    validate(spec, SCHEMA, path)
    if spec["name"] != name:
        raise BenchError(f"{path}: field 'name': '{spec['name']}' differs from its folder name '{name}'")
    return MethodSpec(name, path.parent, spec)


def discover(methods_dir: Path = METHODS_DIR) -> list[str]:
    return sorted(p.parent.name for p in methods_dir.glob("*/method.yaml"))


def method_module(name: str, methods_dir: Path = METHODS_DIR):
    """Another method's method.py as a module, loaded once: how ablation folders reuse a method."""
    key = f"xmbench_method_{name}_shared"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, methods_dir / name / "method.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
