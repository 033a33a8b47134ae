"""Make an unbuilt OpenPCDet checkout run on a CPU-only torch, for the tests only.

A user's OpenPCDet is built with CUDA; here it cannot be. ``install()`` puts in place, before
``pcdet`` is imported:
- the compiled extension modules OpenPCDet imports (``pcdet.ops.*.*_cuda``, ``bev_pool_ext``) as
  modules holding the stand-ins of ``cpu_ops`` for the ops the CenterPoint and BEVFusion paths
  call, every other attribute a function that raises naming itself;
- CUDA placement as a no-op (``.cuda()`` on tensors and modules, ``torch.cuda.FloatTensor``),
  since OpenPCDet moves everything to the GPU unconditionally;
- ``algo=ConvAlgo.Native`` as the default of every spconv convolution, the only algorithm spconv 2
  runs on a CPU (OpenPCDet leaves it unset, which picks a GPU-only one), and a biased convolution's
  bias added after it at inference too (spconv's CPU kernels cannot fuse it: "bias and act don't
  support cpu"; the benchmark's own backbone does the same);
- when torchvision cannot be imported (PyPI's wheels need a CUDA torch), a ``torchvision`` with the
  three transforms OpenPCDet's image normalisation uses;
- when av2 (the Argoverse 2 API, which ``pcdet.datasets`` imports for its Argoverse loader) is not
  installed, an ``av2.utils.io`` whose ``read_feather`` raises: the nuScenes and Waymo paths never
  call it, and av2 cannot share the main environment (it needs opencv-python beside the devkit's
  opencv-python-headless).
It changes nothing on disk and nothing in the user's OpenPCDet. ``sitecustomize.py`` beside this
file calls it in a subprocess (PYTHONPATH), the in-process tests call it directly.

``XMB_OPC_CPU_DIST=1`` additionally lets ``--launcher pytorch`` start on a CPU (gloo instead of
nccl, one "device" per process) so that a torchrun test can reach OpenPCDet's argument parsing and
process-group set-up.
"""
from __future__ import annotations

import importlib.util
import os
import sys
import types

STUBBED = {
    "pcdet.ops.iou3d_nms.iou3d_nms_cuda": "iou3d_nms_cuda",
    "pcdet.ops.roiaware_pool3d.roiaware_pool3d_cuda": "roiaware_pool3d_cuda",
    "pcdet.ops.bev_pool.bev_pool_ext": "bev_pool_ext",
    "pcdet.ops.roipoint_pool3d.roipoint_pool3d_cuda": None,
    "pcdet.ops.pointnet2.pointnet2_stack.pointnet2_stack_cuda": None,
    "pcdet.ops.pointnet2.pointnet2_batch.pointnet2_batch_cuda": None,
    "pcdet.ops.ingroup_inds.ingroup_inds_cuda": None,
}
_done = False


class NoStandIn(NotImplementedError):
    pass


def _extension(name: str, impl) -> types.ModuleType:
    mod = types.ModuleType(name, f"CPU stand-in for OpenPCDet's compiled {name} (tests only)")
    if impl is not None:
        for attr, fn in vars(impl).items():
            if not attr.startswith("_"):
                setattr(mod, attr, fn.__func__ if isinstance(fn, staticmethod) else fn)

    def __getattr__(attr):  # noqa: N807
        if attr.startswith("__"):
            raise AttributeError(attr)

        def missing(*args, **kwargs):
            raise NoStandIn(f"{name}.{attr}: this compiled OpenPCDet op has no CPU stand-in in "
                            "tests/openpcdet_cpu/cpu_ops.py; the path under test calls an op outside "
                            "CenterPoint/BEVFusion")
        return missing
    mod.__getattr__ = __getattr__
    return mod


def _torchvision_stub() -> types.ModuleType:
    import torch

    tv = types.ModuleType("torchvision", "tests-only stand-in: the transforms OpenPCDet's image_normalize uses")
    tr = types.ModuleType("torchvision.transforms")

    class Compose:
        def __init__(self, transforms):
            self.transforms = list(transforms)

        def __call__(self, x):
            for t in self.transforms:
                x = t(x)
            return x

    class ToTensor:
        """PIL image or HxWxC uint8 array -> CxHxW float in [0, 1]."""

        def __call__(self, img):
            import numpy as np

            arr = np.asarray(img)
            if arr.ndim == 2:
                arr = arr[:, :, None]
            t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1)
            return t.float().div(255.0) if arr.dtype == np.uint8 else t.float()

    class Normalize:
        def __init__(self, mean, std):
            self.mean, self.std = torch.tensor(mean).view(-1, 1, 1), torch.tensor(std).view(-1, 1, 1)

        def __call__(self, t):
            return (t - self.mean) / self.std

    tr.Compose, tr.ToTensor, tr.Normalize = Compose, ToTensor, Normalize
    tv.transforms = tr
    tv.__version__ = "0.0-xmbench-test-stub"
    return tv


def _av2_stub() -> dict:
    mods = {n: types.ModuleType(n, "tests-only stand-in: imported by pcdet.datasets' Argoverse 2 loader")
            for n in ("av2", "av2.utils", "av2.utils.io")}

    def read_feather(*args, **kwargs):
        raise NoStandIn("av2.utils.io.read_feather: av2 is not installed (tests stand-in); the Argoverse 2 "
                        "loader needs the real av2")
    mods["av2"].utils, mods["av2.utils"].io = mods["av2.utils"], mods["av2.utils.io"]
    mods["av2.utils.io"].read_feather = read_feather
    return mods


def _cpu_placement() -> None:
    import torch

    torch.Tensor.cuda = lambda self, *a, **k: self
    torch.nn.Module.cuda = lambda self, *a, **k: self
    torch.cuda.FloatTensor = lambda *size: torch.FloatTensor(*size)
    torch.cuda.synchronize = lambda *a, **k: None


def _built_by_openpcdet() -> bool:
    frame = sys._getframe(2)
    while frame is not None:
        if frame.f_globals.get("__name__", "").startswith("pcdet."):
            return True
        frame = frame.f_back
    return False


def _native_spconv() -> None:
    """Only convolutions that OpenPCDet's code constructs are changed, so that the benchmark's own
    backbone (which sets both itself) is never tested through these patches."""
    import spconv.pytorch as sp
    from spconv.core import ConvAlgo

    init = sp.conv.SparseConvolution.__init__
    if getattr(init, "_xmb_native", False):
        return
    forward = sp.conv.SparseConvolution.forward

    def native_init(self, *args, **kwargs):
        ours = _built_by_openpcdet()
        if ours and kwargs.get("algo") is None:
            kwargs["algo"] = ConvAlgo.Native
        init(self, *args, **kwargs)
        self._xmb_cpu = ours
    native_init._xmb_native = True
    sp.conv.SparseConvolution.__init__ = native_init

    def cpu_forward(self, input, add_input=None):
        if not getattr(self, "_xmb_cpu", False):
            return forward(self, input, add_input)
        return self._conv_forward(self.training or input.features.is_cpu, input, self.weight, self.bias, add_input,
                                  name=self.name, sparse_unique_name=self._sparse_unique_name,
                                  act_type=self.act_type, act_alpha=self.act_alpha, act_beta=self.act_beta)
    sp.conv.SparseConvolution.forward = cpu_forward


def _cpu_dist() -> None:
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    torch.cuda.device_count = lambda: world
    torch.cuda.set_device = lambda *a, **k: None
    real_init = dist.init_process_group

    def init_process_group(backend=None, *args, **kwargs):
        return real_init("gloo", *args, **kwargs)
    dist.init_process_group = init_process_group
    real_ddp = torch.nn.parallel.DistributedDataParallel.__init__

    def ddp_init(self, module, device_ids=None, *args, **kwargs):
        real_ddp(self, module, None, *args, **kwargs)
    torch.nn.parallel.DistributedDataParallel.__init__ = ddp_init


def install() -> None:
    global _done
    if _done:
        return
    from . import cpu_ops
    for name, impl in STUBBED.items():
        if name not in sys.modules:
            sys.modules[name] = _extension(name, getattr(cpu_ops, impl) if impl else None)
    _cpu_placement()
    _native_spconv()
    try:
        spec = importlib.util.find_spec("torchvision")
        if spec is not None:
            import torchvision  # noqa: F401
    except Exception:
        spec = None
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            del sys.modules[k]
    if spec is None:
        tv = _torchvision_stub()
        sys.modules["torchvision"], sys.modules["torchvision.transforms"] = tv, tv.transforms
    if importlib.util.find_spec("av2") is None:
        sys.modules.update(_av2_stub())
    if os.environ.get("XMB_OPC_CPU_DIST") == "1":
        _cpu_dist()
    _done = True
