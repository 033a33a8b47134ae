"""Checkpoints carry both modalities under OpenPCDet's BEVFusion names (backbone_3d, image_backbone,
and CLAP's neck, vtransform, fuser), and xmbench.models.init_weights fills a downstream model from
them by name and shape, failing with the list of what was missed."""
import copy
import json

import pytest
import torch

from test_image_backbone import openpcdet_keys
from xmbench.config import load_config
from xmbench.errors import BenchError
from xmbench.methods import load_method
from xmbench.models.build import (build_fuser, build_image_backbone, build_image_neck, build_lidar_backbone,
                                  build_lift)
from xmbench.models.init_weights import load_pretrained
from xmbench.pretraining.loop import Pretrainer
from conftest import REPO

PREFIXES = ("backbone_3d", "image_backbone", "neck", "vtransform", "fuser")
# Swin-T's depths and heads at a quarter of its width: every image_backbone.* name of BEVFusion's
# list, at CPU cost
TINY_SWIN = {"embed_dims": 24, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}
SMALL_RENDER = {"lidar_rays": 128, "pixel_rays": 16, "samples_uniform": 8, "samples_importance": 4,
                "depth_bins": 12, "curvature_pool": 256, "proto_cells": 256}


def _bevfusion_state(shared_dir) -> dict[str, tuple]:
    """The parameters and buffers of OpenPCDet's BEVFusion encoders, from its key lists."""
    keys = {}
    for prefix, cfg in (("backbone_3d", "cbgs_voxel0075_res3d_centerpoint"),) + tuple(
            (p, "bevfusion") for p in PREFIXES[1:]):
        listed = openpcdet_keys(shared_dir / "openpcdet" / f"{prefix}_nuscenes_models_{cfg}.txt")
        keys.update({k: v[0] for k, v in listed.items()})
    return keys


def _openpcdet_load(bevfusion: dict[str, tuple], state: dict[str, torch.Tensor]) -> dict[str, dict]:
    """What OpenPCDet's load_params_from_file takes: keys of the model found with the same shape."""
    out = {}
    for prefix in PREFIXES:
        own = {k: s for k, s in bevfusion.items() if k.startswith(prefix + ".")}
        out[prefix] = {"names": sum(k in state for k in own),
                       "shapes": sum(k in state and tuple(state[k].shape) == s for k, s in own.items()),
                       "total": len(own)}
    return out


@pytest.fixture(scope="module")
def swin_cfg(test_config):
    cfg = copy.deepcopy(test_config)
    cfg["model"]["image"] = {"arch": "swin", "size": cfg["model"]["image"]["size"], "swin": TINY_SWIN}
    cfg["model"]["render"] = dict(SMALL_RENDER)
    cfg["pretrain"].update({"epochs": 1, "batch_size": 2, "max_steps_per_epoch": 1})
    return cfg


@pytest.fixture(scope="module")
def clap_checkpoint(swin_cfg, tiny_index, tmp_path_factory):
    """One step of CLAP's pretraining with a Swin image backbone, through the harness."""
    out = tmp_path_factory.mktemp("clap_swin")
    path = Pretrainer(load_method("clap"), swin_cfg, tiny_index["index"], out).run()
    return path, out


def _downstream(model_cfg, use_lidar_depth=True) -> dict[str, torch.nn.Module]:
    torch.manual_seed(123)
    lidar, image = build_lidar_backbone(model_cfg), build_image_backbone(model_cfg)
    mods = {"backbone_3d": lidar, "image_backbone": image, "neck": build_image_neck(model_cfg, image),
            "vtransform": build_lift(model_cfg, use_lidar_depth=use_lidar_depth)}
    if use_lidar_depth:
        mods["fuser"] = build_fuser(model_cfg, lidar.num_bev_features)
    return mods


def test_paper_sized_clap_checkpoint_fills_openpcdet_bevfusion(shared_dir, tiny_index, tmp_path):
    """The writer of CLAP's pretraining, with config/paper.yaml's model (Swin-T at 704 x 256, 0.075 m
    voxels): every tensor of BEVFusion's backbone_3d, image_backbone, neck, vtransform and fuser is in
    the checkpoint with its name and shape, and nothing else is."""
    cfg = json.loads(json.dumps(load_config(REPO / "config" / "paper.yaml")))
    cfg["pretrain"] = {"epochs": 1, "batch_size": 1}
    trainer = Pretrainer(load_method("clap"), cfg, tiny_index["index"], tmp_path)
    ckpt = torch.load(trainer._write_checkpoint(0.0), weights_only=False)
    bevfusion = _bevfusion_state(shared_dir)
    loaded = _openpcdet_load(bevfusion, ckpt["model_state"])
    assert {p: (r["shapes"], r["total"]) for p, r in loaded.items()} == {
        "backbone_3d": (142, 142), "image_backbone": (187, 187), "neck": (24, 24), "vtransform": (59, 59),
        "fuser": (6, 6)}
    assert set(ckpt["model_state"]) == set(bevfusion)
    assert ckpt["meta"]["pretrained_modules"] == sorted(PREFIXES)


def test_clap_run_checkpoint_has_bevfusions_names_and_loads_by_name_and_shape(shared_dir, clap_checkpoint, swin_cfg):
    path, out = clap_checkpoint
    ckpt = torch.load(path, weights_only=False)
    state = ckpt["model_state"]
    bevfusion = _bevfusion_state(shared_dir)
    loaded = _openpcdet_load(bevfusion, state)
    # the LiDAR encoder's shapes do not depend on the voxel grid: all 142 load into BEVFusion as they are
    assert loaded["backbone_3d"] == {"names": 142, "shapes": 142, "total": 142}
    # the tiny Swin has every name of BEVFusion's (its widths are a quarter: shapes match at paper
    # size, test_paper_sized_clap_checkpoint_fills_openpcdet_bevfusion)
    assert {k for k in state if k.startswith("image_backbone.")} == {k for k in bevfusion
                                                                     if k.startswith("image_backbone.")}
    for prefix in ("neck", "vtransform", "fuser"):
        assert {k for k in state if k.startswith(prefix + ".")} == {k for k in bevfusion if k.startswith(prefix + ".")}
    # the checkpoint holds the trained weights (the harness' last state), not the initialisation
    trained = torch.load(out / "last.pth", weights_only=False)["model"]
    for k in ("image_backbone.stages.2.blocks.5.ffn.layers.1.weight", "vtransform.depthnet.0.weight",
              "backbone_3d.conv_out.0.weight", "fuser.conv.0.weight"):
        assert torch.equal(state[k], trained[k.replace("backbone_3d.", "lidar.", 1).replace(
            "image_backbone.", "image.", 1)]), k

    mods = _downstream(swin_cfg["model"])
    init = {p: {k: v.clone() for k, v in m.state_dict().items()} for p, m in mods.items()}
    report = load_pretrained(mods, path)
    for prefix, module in mods.items():
        own = module.state_dict()
        assert report[prefix] == {"loaded": len(own), "total": len(own), "pretrained": True, "missed": [],
                                  "ignored": []}
        for k, v in own.items():
            assert torch.equal(v, state[f"{prefix}.{k}"]), f"{prefix}.{k}"
    assert not torch.equal(init["image_backbone"]["patch_embed.projection.weight"],
                           mods["image_backbone"].state_dict()["patch_embed.projection.weight"])


def test_cameras_only_model_takes_all_but_the_depth_branch(clap_checkpoint, swin_cfg):
    path, _ = clap_checkpoint
    mods = _downstream(swin_cfg["model"], use_lidar_depth=False)
    report = load_pretrained({p: mods[p] for p in ("image_backbone", "neck", "vtransform")}, path)
    lift = report["vtransform"]
    assert lift["pretrained"] and lift["ignored"] == ["depthnet.0.weight"]
    assert lift["loaded"] == lift["total"] - 1 == 59 - 21 - 1       # no dtransform.* (21 tensors)
    state = torch.load(path, weights_only=False)["model_state"]
    assert torch.equal(mods["vtransform"].state_dict()["depthnet.3.weight"], state["vtransform.depthnet.3.weight"])


def test_a_miss_fails_naming_the_tensor(clap_checkpoint, swin_cfg, tmp_path):
    path, _ = clap_checkpoint
    ckpt = torch.load(path, weights_only=False)
    del ckpt["model_state"]["image_backbone.norm3.weight"]
    torch.save(ckpt, tmp_path / "partial.pth")
    with pytest.raises(BenchError, match=r"image_backbone 186/187 loaded \(missed norm3.weight\)") as err:
        load_pretrained(_downstream(swin_cfg["model"]), tmp_path / "partial.pth")
    assert "\n" not in str(err.value)
    other = copy.deepcopy(swin_cfg["model"])
    other["image"]["lift"] = {"channels": 16}                        # another camera BEV width
    with pytest.raises(BenchError, match=r"vtransform .*missed .*depthnet.6.weight.*fuser .*missed conv.0.weight"):
        load_pretrained(_downstream(other), path)


def test_modules_the_method_did_not_pretrain_keep_their_initialisation(clap_checkpoint, swin_cfg, tmp_path):
    """A method that pretrains only the backbones (CrossPoint, SimIPU) says so in meta: the fuser stays
    as seeded, and a checkpoint that claims a module without holding it fails."""
    path, _ = clap_checkpoint
    ckpt = torch.load(path, weights_only=False)
    ckpt["meta"]["pretrained_modules"] = ["backbone_3d", "image_backbone"]
    torch.save(ckpt, tmp_path / "backbones.pth")
    mods = _downstream(swin_cfg["model"])
    before = mods["fuser"].state_dict()["conv.0.weight"].clone()
    report = load_pretrained(mods, tmp_path / "backbones.pth")
    assert report["fuser"] == {"loaded": 0, "total": 6, "pretrained": False, "missed": [], "ignored": []}
    assert report["backbone_3d"]["loaded"] == report["backbone_3d"]["total"] == 142
    assert torch.equal(mods["fuser"].state_dict()["conv.0.weight"], before)
    ckpt["meta"]["pretrained_modules"] = list(PREFIXES)
    ckpt["model_state"] = {k: v for k, v in ckpt["model_state"].items() if not k.startswith("neck.")}
    torch.save(ckpt, tmp_path / "no_neck.pth")
    with pytest.raises(BenchError, match=r"neck 0/24 loaded"):
        load_pretrained(_downstream(swin_cfg["model"]), tmp_path / "no_neck.pth")
    assert load_pretrained(mods, None)["image_backbone"]["loaded"] == 0


def test_crosspoint_checkpoint_declares_its_two_backbones(test_config, tiny_index, tmp_path):
    cfg = copy.deepcopy(test_config)
    cfg["pretrain"].update({"epochs": 1, "max_steps_per_epoch": 1})
    ckpt = torch.load(Pretrainer(load_method("crosspoint"), cfg, tiny_index["index"], tmp_path).run(),
                      weights_only=False)
    assert ckpt["meta"]["pretrained_modules"] == ["backbone_3d", "image_backbone"]
    assert {k.split(".", 1)[0] for k in ckpt["model_state"]} == {"backbone_3d", "image_backbone"}
    assert "image_backbone.layer1.0.conv1.weight" in ckpt["model_state"]
