"""The image encoder: a Swin Transformer that OpenPCDet's BEVFusion loads as is (same keys and shapes,
same outputs for the same weights), beside the default ResNet, chosen by model.image.arch."""
import copy
import re

import pytest
import torch
import torch.nn.functional as F

import openpcdet_reference as ref
from xmbench.config import check_config, load_config
from xmbench.models.build import build_image_backbone
from xmbench.models.swin import PatchMerging, SwinSettings, SwinTransformer, relative_position_index
from conftest import REPO

SMALL = SwinSettings(embed_dims=24, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4), window_size=7, drop_path_rate=0.0)


def openpcdet_keys(path):
    keys = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, dtype = re.match(r"(\S+) \(([^)]*)\) (\S+)", line).groups()
        keys[name] = (tuple(int(v) for v in shape.replace(",", " ").split()), dtype)
    return keys


def state_keys(prefix, module):
    return {f"{prefix}.{k}": (tuple(v.shape), str(v.dtype).removeprefix("torch."))
            for k, v in module.state_dict().items()}


def test_paper_config_swin_equals_openpcdet_bevfusion_image_backbone(shared_dir):
    """config/paper.yaml builds the image_backbone.* of OpenPCDet's BEVFusion: every key, shape, dtype."""
    expected = openpcdet_keys(shared_dir / "openpcdet" / "image_backbone_nuscenes_models_bevfusion.txt")
    net = build_image_backbone(load_config(REPO / "config" / "paper.yaml")["model"])
    assert isinstance(net, SwinTransformer)
    ours = state_keys("image_backbone", net)
    assert len(expected) == 187
    assert ours.keys() == expected.keys()
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}
    assert net.out_channels == [192, 384, 768] and net.out_strides == [8, 16, 32]


def test_swin_outputs_equal_openpcdet_for_the_same_weights(shared_dir):
    """Our weights in OpenPCDet's own SwinTransformer give the same maps, also for sizes that are no
    multiple of the patch, merge or window size (padding) and with shifted-window blocks."""
    mods = ref.load(shared_dir / "OpenPCDet")
    ours = SwinTransformer(SMALL).eval()
    theirs = mods["swin"].SwinTransformer(ref.swin_cfg(SMALL))
    theirs.eval()
    for name, buf in theirs.state_dict().items():     # the index buffers are built, not loaded
        if name.endswith("relative_position_index"):
            assert torch.equal(buf, ours.state_dict()[name]), name
    theirs.load_state_dict(ours.state_dict(), strict=True)
    g = torch.Generator().manual_seed(0)
    for hw in [(64, 112), (61, 83)]:
        x = torch.randn(6, 3, *hw, generator=g)
        with torch.no_grad():
            a = ours(x)
        b = ref.run_swin(theirs, x)
        assert [t.shape for t in a] == [t.shape for t in b]
        for p, q in zip(a, b):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def test_swin_any_input_size_gives_ceil_strided_maps_and_trains():
    torch.manual_seed(0)
    net = SwinTransformer(SwinSettings(embed_dims=16, depths=(1, 2, 1, 1), num_heads=(1, 2, 2, 4), window_size=3,
                                       drop_path_rate=0.0))     # no block dropped, so every one gets a gradient
    x = torch.randn(2, 3, 50, 77)
    feats = net(x)
    assert [tuple(f.shape) for f in feats] == [(2, 32, 7, 10), (2, 64, 4, 5), (2, 128, 2, 3)]
    sum(f.square().mean() for f in feats).backward()
    assert net.patch_embed.projection.weight.grad.abs().sum() > 0
    assert net.stages[1].blocks[1].attn.w_msa.relative_position_bias_table.grad.abs().sum() > 0


def test_drop_path_drops_whole_residual_branches_in_training_only():
    net = SwinTransformer(SwinSettings(embed_dims=16, depths=(2, 2), num_heads=(1, 2), window_size=3,
                                       drop_path_rate=0.9, out_indices=(0, 1)))
    x = torch.randn(4, 3, 24, 24)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x)[1], net(x)[1])                # deterministic at evaluation
    net.train()
    torch.manual_seed(0)
    with torch.no_grad():
        a = net(x)[1]
    torch.manual_seed(1)
    with torch.no_grad():
        b = net(x)[1]
    assert not torch.allclose(a, b)                             # stochastic depth draws in training


def test_patch_merging_concatenates_like_unfold():
    """The reduction weight of a checkpoint assumes nn.Unfold's channel order (c * 4 + 2 * dy + dx)."""
    merge = PatchMerging(5)
    torch.nn.init.ones_(merge.norm.weight)
    x = torch.randn(2, 6 * 8, 5)
    seen = {}
    merge.norm.register_forward_hook(lambda m, inp, out: seen.setdefault("in", inp[0]))
    _, hw = merge(x, (6, 8))
    unfold = F.unfold(x.view(2, 6, 8, 5).permute(0, 3, 1, 2), 2, stride=2).transpose(1, 2)
    assert hw == (3, 4)
    torch.testing.assert_close(seen["in"], unfold)


def test_relative_position_index_is_swins():
    idx = relative_position_index(3)
    assert idx.shape == (9, 9) and idx.dtype == torch.int64
    # query (0, 0), key (2, 1): offset (-2, -1) -> row (-2 + 2) * 5 + (-1 + 2)
    assert idx[0, 2 * 3 + 1] == 1
    assert idx[4, 4] == (2 * 3 - 1) ** 2 // 2        # zero offset: the table's centre
    assert sorted(set(idx.flatten().tolist())) == list(range(25))


def test_resnet_stays_the_default_with_its_keys(test_config):
    """Configs without model.image.arch keep the ResNet and its torchvision names."""
    net = build_image_backbone(test_config["model"])
    assert "layer1.0.conv1.weight" in net.state_dict() and net.out_strides == [4, 8, 16, 32]
    named = build_image_backbone({**test_config["model"], "image": {**test_config["model"]["image"], "arch": "resnet"}})
    assert {k: v.shape for k, v in named.state_dict().items()} == {k: v.shape for k, v in net.state_dict().items()}


def test_config_validation_of_the_image_fields(test_config):
    cfg = copy.deepcopy(test_config)
    cfg["model"]["image"] = {"arch": "swin", "size": [128, 72], "swin": {"embed_dims": 16, "num_heads": [1, 2, 4, 8]}}
    check_config(cfg)                                           # no resnet_depth/width needed for a Swin
    assert build_image_backbone(cfg["model"]).out_channels == [32, 64, 128]
    cfg["model"]["image"]["swin"]["window"] = 7
    with pytest.raises(Exception, match="model.image.swin"):
        check_config(cfg)
    bad = copy.deepcopy(test_config)
    del bad["model"]["image"]["resnet_depth"]
    with pytest.raises(Exception, match="resnet_depth"):
        check_config(bad)
    heads = {"arch": "swin", "size": [64, 64], "swin": {"embed_dims": 20, "num_heads": [3, 6, 12, 24]}}
    with pytest.raises(ValueError, match="not divisible"):
        build_image_backbone({"lidar": {}, "image": heads})
