"""CLAP ablation: no prototype terms (L = L_rend), curvature sampling kept.

The implementation is CLAP's (methods/clap/method.py, loaded by path); the prototype heads and
prototypes are not built, so they take no optimizer state either.
"""
from __future__ import annotations

from xmbench.methods import method_module


class CLAPNoProto(method_module("clap").CLAP):
    USE_PROTOTYPES = False
