"""spconv 2 without its CUDA kernel tables on a machine without CUDA.

``import spconv.pytorch`` runs ``spconv.algo``, which turns every prebuilt CUDA GEMM and implicit-GEMM
kernel description into Python objects at import: about 8.5 s of CPU per process, ten times the
rest of the import, paid by every job of the DAG (about 60 in the embedded default) and used by none
of them when no GPU is there. On the CPU, spconv's C++ convolution path takes the tuner objects as
arguments and computes with ``torch.mm`` without consulting them, so empty tuners give bit-identical
outputs and gradients (tests/benchmarks/test_startup.py checks both, and the import's cost).

``install()`` puts a finder on ``sys.meta_path`` that answers ``spconv.algo`` only when torch sees no
CUDA device at that moment (spconv has imported torch by then, so asking costs nothing); with a GPU
the real module loads as always. Anything else a caller takes from the light module (the quantized
convolutions import ``SimpleConv``) loads the real module on first use.
"""
from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
import types

NAME = "spconv.algo"
# set to 1 to always import spconv's own spconv.algo (the benchmark compares the two)
DISABLE_ENV = "XMBENCH_SPCONV_FULL_IMPORT"
_CPU_ATTRS = ("GEMM_CPP", "CONV_CPP")


def _cuda_available() -> bool:
    torch = sys.modules.get("torch")
    if torch is None:
        return True  # unknown: import the real module
    try:
        return bool(torch.cuda.is_available())
    except Exception:
        return True


class _CpuAlgo(importlib.abc.Loader):
    def create_module(self, spec):
        return None

    def exec_module(self, module: types.ModuleType) -> None:
        from spconv.core_cc.csrc.sparse.convops.convops import ConvTunerSimple
        from spconv.core_cc.csrc.sparse.convops.gemmops import GemmTunerSimple

        module.GEMM_CPP = GemmTunerSimple([])
        module.CONV_CPP = ConvTunerSimple([])
        module.GEMM = module.CONV = None  # CUDA tensors only; none exist without CUDA
        module.__getattr__ = _real_attr


def _real_attr(name: str):
    """What the light module lacks comes from spconv's own file, loaded under another name."""
    if name.startswith("__"):  # the import machinery probes __path__ and the like: not a request
        raise AttributeError(name)
    real = sys.modules.get("_xmbench_spconv_algo_full")
    if real is None:
        origin = importlib.machinery.PathFinder.find_spec(NAME, sys.modules["spconv"].__path__).origin
        spec = importlib.util.spec_from_file_location("_xmbench_spconv_algo_full", origin)
        real = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = real
        spec.loader.exec_module(real)
    return getattr(real, name)


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname != NAME or os.environ.get(DISABLE_ENV) == "1" or _cuda_available():
            return None
        return importlib.machinery.ModuleSpec(NAME, _CpuAlgo(), origin="xmbench.spconv_cpu")


def install() -> None:
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
