"""OpenPCDet's own image-branch modules, imported from the read-only checkout in shared/ for
numerical comparisons in the tests (never used by the project's code).

pcdet's package ``__init__`` files import CUDA extensions, so the few torch-only source files are
loaded into stand-in packages; ``pcdet.ops.bev_pool`` (a CUDA kernel) is replaced by a scatter-add
with the kernel's documented contract: (N, C) features summed into (B, C, Z, X, Y) cells.
"""
from __future__ import annotations

import importlib.util
import sys
import types
from pathlib import Path

import torch


class Cfg(dict):
    """EasyDict's attribute access, which OpenPCDet's modules use on their model_cfg."""

    __getattr__ = dict.__getitem__


def _bev_pool(x, geom, b, nz, nx, ny):
    out = x.new_zeros(b, nz, nx, ny, x.shape[1])
    g = geom.long()
    out.index_put_((g[:, 3], g[:, 2], g[:, 0], g[:, 1]), x, accumulate=True)
    return out.permute(0, 4, 1, 2, 3).contiguous()


def load(openpcdet: Path):
    """Returns the modules ``swin``, ``generalized_lss``, ``depth_lss`` and ``convfuser``."""
    root = openpcdet / "pcdet" / "models"
    # stand-in `pcdet` packages live only while the reference files execute (depth_lss imports
    # pcdet.ops.bev_pool at import time): left in sys.modules, they would shadow the real OpenPCDet
    # that the engine tests import later in the same session
    stubbed = [n for n in ("pcdet", "pcdet.ops", "pcdet.ops.bev_pool") if n not in sys.modules]
    if "pcdet_ref" not in sys.modules:
        for name in ("pcdet_ref", "pcdet_ref.models", "pcdet_ref.models.model_utils",
                     "pcdet_ref.models.backbones_image", "pcdet_ref.models.backbones_image.img_neck",
                     "pcdet_ref.models.view_transforms", "pcdet_ref.models.backbones_2d",
                     "pcdet_ref.models.backbones_2d.fuser"):
            pkg = types.ModuleType(name)
            pkg.__path__ = []
            sys.modules[name] = pkg
    if stubbed:
        ops = types.ModuleType("pcdet.ops.bev_pool")
        ops.bev_pool = _bev_pool
        for name in ("pcdet", "pcdet.ops"):
            sys.modules.setdefault(name, types.ModuleType(name))
        sys.modules.setdefault("pcdet.ops.bev_pool", ops)
    files = {"pcdet_ref.models.model_utils.swin_utils": root / "model_utils" / "swin_utils.py",
             "pcdet_ref.models.model_utils.basic_block_2d": root / "model_utils" / "basic_block_2d.py",
             "pcdet_ref.models.backbones_image.swin": root / "backbones_image" / "swin.py",
             "pcdet_ref.models.backbones_image.img_neck.generalized_lss":
                 root / "backbones_image" / "img_neck" / "generalized_lss.py",
             "pcdet_ref.models.view_transforms.depth_lss": root / "view_transforms" / "depth_lss.py",
             "pcdet_ref.models.backbones_2d.fuser.convfuser": root / "backbones_2d" / "fuser" / "convfuser.py"}
    mods = {}
    for name, path in files.items():
        if name not in sys.modules:
            spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        mods[name.rsplit(".", 1)[1]] = sys.modules[name]
    for name in stubbed:
        sys.modules.pop(name, None)
    return mods


def swin_cfg(settings) -> Cfg:
    return Cfg(EMBED_DIMS=settings.embed_dims, DEPTHS=list(settings.depths), NUM_HEADS=list(settings.num_heads),
               WINDOW_SIZE=settings.window_size, MLP_RATIO=int(settings.mlp_ratio), DROP_RATE=0.0,
               ATTN_DROP_RATE=0.0, DROP_PATH_RATE=settings.drop_path_rate, PATCH_NORM=True,
               OUT_INDICES=list(settings.out_indices), WITH_CP=False, CONVERT_WEIGHTS=False)


@torch.no_grad()
def run_swin(reference_module, images: torch.Tensor) -> list[torch.Tensor]:
    """OpenPCDet's forward reads (B, N, 3, H, W) camera images from its batch dict."""
    return reference_module({"camera_imgs": images.unsqueeze(0)})["image_features"]
