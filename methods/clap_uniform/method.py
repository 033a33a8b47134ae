"""CLAP ablation: uniform ray sampling throughout (no curvature sampling), prototypes kept.

The implementation is CLAP's (methods/clap/method.py, loaded by path); only the sampling differs.
"""
from __future__ import annotations

from xmbench.methods import method_module


class CLAPUniform(method_module("clap").CLAP):
    RAY_SAMPLING = "uniform"
