"""CLAP ablation: no prototype terms (L = L_rend), curvature sampling kept.

The implementation is CLAP's (methods/clap/method.py, imported); the prototype heads and
prototypes are not built, so they take no optimizer state either.
"""
from __future__ import annotations

from methods.clap.method import CLAP


class CLAPNoProto(CLAP):
    USE_PROTOTYPES = False
