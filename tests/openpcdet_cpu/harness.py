"""What the OpenPCDet tests share: the user's install laid into a temporary root, our checkpoint,
a split and the engine's prepared cell.

shared/OpenPCDet is read-only and OpenPCDet writes under its root (``output/``, and its config
resolves ROOT_DIR from pcdet's own file, through links), so each session copies ``pcdet/`` and
``tools/`` (3 MB) into a temporary root and writes ``pcdet/version.py`` as OpenPCDet's
``setup.py develop`` would. Its compiled ops are the CPU stand-ins of this folder.
"""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
SHARED_OPENPCDET = REPO.parent / "shared" / "OpenPCDet"
PROVENANCE_COMMIT = "8cacccec"


def openpcdet_root(dest: Path) -> Path:
    """A writable copy of the shared OpenPCDet at ``dest``; fails (never skips) when it is missing."""
    import pytest

    if not (SHARED_OPENPCDET / "pcdet" / "__init__.py").is_file():
        pytest.fail(f"{SHARED_OPENPCDET} is missing: the OpenPCDet tests run the shared, unmodified copy of "
                    "OpenPCDet's pcdet/ and tools/ (shared/OpenPCDet, commit 8cacccec)")
    dest = Path(dest)
    for part in ("pcdet", "tools"):
        shutil.copytree(SHARED_OPENPCDET / part, dest / part, copy_function=shutil.copy)
    for p in dest.rglob("*"):
        p.chmod(p.stat().st_mode | 0o200)
    (dest / "pcdet" / "version.py").write_text(f"__version__ = '0.6.0+{PROVENANCE_COMMIT}'\n")
    return dest


def import_openpcdet(root: Path) -> None:
    """Make ``pcdet`` and tools' ``train_utils`` / ``eval_utils`` importable in this process, with the
    CPU stand-ins in place."""
    from openpcdet_cpu import standin

    standin.install()
    for p in (str(root), str(root / "tools")):
        if p not in sys.path:
            sys.path.insert(0, p)


def subprocess_env(extra: dict | None = None) -> dict:
    """PYTHONPATH that makes OpenPCDet's own scripts load the stand-ins (sitecustomize.py)."""
    import os

    env = {"PYTHONPATH": str(HERE) + (os.pathsep + os.environ["PYTHONPATH"] if os.environ.get("PYTHONPATH") else "")}
    env.update(extra or {})
    return env


def write_checkpoint(path: Path, model_cfg: dict) -> Path:
    """A benchmark pretraining checkpoint (model_state with backbone_3d.*, image_backbone, meta)."""
    import torch

    from xmbench.models.build import build_lidar_backbone

    torch.manual_seed(0)
    backbone = build_lidar_backbone(model_cfg)
    state = {f"backbone_3d.{k}": v for k, v in backbone.state_dict().items()}
    torch.save({"model_state": state, "image_backbone": {}, "meta": {"method": "test", "epochs": 0}}, path)
    return path


def pretrain_record(path: Path, checkpoint: Path) -> Path:
    from xmbench.atomic import sha256_file

    path.write_text(json.dumps({"status": "ok", "checkpoint": str(checkpoint),
                                "checkpoint_sha256": sha256_file(checkpoint)}))
    return path
