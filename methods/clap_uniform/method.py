"""CLAP ablation: uniform ray sampling throughout (no curvature sampling), prototypes kept.

The implementation is CLAP's (methods/clap/method.py, imported); only the sampling differs.
"""
from __future__ import annotations

from methods.clap.method import CLAP


class CLAPUniform(CLAP):
    RAY_SAMPLING = "uniform"
