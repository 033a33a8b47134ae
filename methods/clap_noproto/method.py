"""CLAP ablation: no prototype terms (L = L_rend), curvature sampling kept.

The implementation is CLAP's (methods/clap/method.py, loaded by path); the prototype heads and
prototypes are not built, so they take no optimizer state either.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def _load_clap():
    name = "xmbench_method_clap_shared"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, Path(__file__).resolve().parent.parent / "clap" / "method.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


class CLAPNoProto(_load_clap().CLAP):
    USE_PROTOTYPES = False
