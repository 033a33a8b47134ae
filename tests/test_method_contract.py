"""Every method folder, and the one `new-method` writes, against xmbench.pretraining.contract.

One harness step through the real loop on two tiny frames: the batch holds exactly the documented
keys, the terms are named finite scalars, the checkpoint's backbones load into fresh backbones with
strict key matching, and no tensor is allocated on the default device inside a method's own code
(the first step on a GPU would fail there; this machine has no GPU to try it on).
"""
import inspect
import json
import math
from pathlib import Path

import pytest
import torch
from torch.overrides import TorchFunctionMode

from xmbench.cli import main as cli_main
from xmbench.codehash import closure
from xmbench.methods import METHODS_DIR, discover, load_method
from xmbench.models.build import build_image_backbone, build_lidar_backbone
from xmbench.pretraining.contract import BATCH_KEYS, PretrainMethod
from xmbench.pretraining.loop import Pretrainer

SCAFFOLD = "scaffold_probe"
PRETRAINING = [m for m in discover() if load_method(m).pretrains]
FACTORIES = {torch.zeros, torch.ones, torch.empty, torch.full, torch.arange, torch.tensor, torch.eye,
             torch.linspace, torch.rand, torch.randn, torch.randint, torch.randperm}


@pytest.fixture(scope="module")
def scaffold_dir(tmp_path_factory) -> Path:
    methods_dir = tmp_path_factory.mktemp("methods")
    assert cli_main(["new-method", SCAFFOLD, "--methods-dir", str(methods_dir)]) == 0
    return methods_dir


def _spec(name, scaffold_dir):
    return load_method(name, scaffold_dir) if name == SCAFFOLD else load_method(name)


class DefaultDeviceAllocations(TorchFunctionMode):
    """Factory calls made from a method's own file with neither ``device=`` nor ``generator=``
    (generator draws are the CPU draws the contract asks for, moved afterwards)."""

    def __init__(self, method_files: list[Path]):
        super().__init__()
        self.method_files = {str(p.resolve()) for p in method_files}
        self.found: list[str] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in FACTORIES and kwargs.get("device") is None and kwargs.get("generator") is None:
            caller = inspect.currentframe().f_back
            if caller is not None and str(Path(caller.f_code.co_filename).resolve()) in self.method_files:
                self.found.append(f"{Path(caller.f_code.co_filename).name}:{caller.f_lineno} torch.{func.__name__}")
        return func(*args, **kwargs)


def _own_files(spec) -> list[Path]:
    """A method's own code: its folder's files and the method folders they import (an ablation's
    base, CLAP's rendering.py); the harness and the models are checked by their own tests."""
    files = list(spec.folder.rglob("*.py"))
    if spec.folder.resolve().parent != METHODS_DIR.resolve():
        return files
    return [p for p in closure(files, METHODS_DIR.parent) if p.is_relative_to(METHODS_DIR.resolve())]


@pytest.mark.parametrize("name", PRETRAINING + [SCAFFOLD])
def test_method_keeps_the_contract(name, scaffold_dir, tiny_index, test_config, tmp_path):
    spec = _spec(name, scaffold_dir)
    cls = spec.load_class()
    assert issubclass(cls, PretrainMethod), f"{spec.folder}/method.py: {cls.__name__} must subclass PretrainMethod"
    cfg = json.loads(json.dumps(test_config))
    cfg["pretrain"].update(epochs=1, batch_size=2, max_steps_per_epoch=1)
    pre = Pretrainer(spec, cfg, tiny_index["index"], tmp_path)
    module = pre.module
    assert module.lidar is not None and module.image is not None
    assert isinstance(getattr(module, "lidar_views", 1), int) and module.lidar_views >= 1
    seen = {}
    forward = module.forward

    def spy(batch):
        seen["keys"] = set(batch)
        with DefaultDeviceAllocations(_own_files(spec)) as mode:
            terms = forward(batch)
        seen["bare"] = mode.found
        seen["terms"] = terms
        return terms

    module.forward = spy
    ckpt_path = pre.run()

    assert seen["keys"] == set(BATCH_KEYS), f"batch keys differ from the contract: {seen['keys'] ^ set(BATCH_KEYS)}"
    terms = seen["terms"]
    assert isinstance(terms, dict) and terms and all(isinstance(k, str) and k for k in terms)
    for k, v in terms.items():
        assert isinstance(v, torch.Tensor) and v.dim() == 0, f"term '{k}' must be a scalar tensor"
    assert any(v.requires_grad for v in terms.values())
    assert not seen["bare"], f"allocations on the default device in {name}'s forward: {seen['bare']}"

    rows = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and set(terms) <= set(rows[0])
    assert all(math.isfinite(rows[0][k]) for k in terms)

    ckpt = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    state = ckpt["model_state"]
    lidar = {k[len("backbone_3d."):]: v for k, v in state.items() if k.startswith("backbone_3d.")}
    image = ckpt.get("image_backbone") or {k[len("image_backbone."):]: v for k, v in state.items()
                                           if k.startswith("image_backbone.")}
    build_lidar_backbone(cfg["model"]).load_state_dict(lidar, strict=True)
    build_image_backbone(cfg["model"]).load_state_dict(image, strict=True)
    assert torch.equal(lidar["conv_out.0.weight"], module.lidar.state_dict()["conv_out.0.weight"])


def test_scaffold_declares_what_it_runs(scaffold_dir):
    """The scaffold runs both views through the backbone with gradients, so it says so (issue 14)."""
    cls = load_method(SCAFFOLD, scaffold_dir).load_class()
    assert cls.lidar_views == 2
    assert (scaffold_dir / SCAFFOLD / "method.yaml").read_text().count("step_budget") == 1


def test_the_readmes_point_at_the_contract_instead_of_restating_it():
    text = (METHODS_DIR / "README.md").read_text()
    assert "xmbench/pretraining/contract.py" in text and "PretrainMethod" in text
    for key in ("epochs", "method_epochs", "lidar_views", "optimizer_groups"):
        assert key in PretrainMethod.__doc__, key
    assert set(BATCH_KEYS) <= set(word.strip("`,.():;") for word in PretrainMethod.__doc__.split())
