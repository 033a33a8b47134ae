"""The camera branch's shared modules (neck, LSS lift, fuser): OpenPCDet's BEVFusion keys and shapes
at the paper's sizes, the same outputs as OpenPCDet's own modules for the same weights, and a splat
that lands a world point in the same BEV cell as the LiDAR backbone's map does."""
import copy
import math

import pytest
import torch

import openpcdet_reference as ref
from test_image_backbone import openpcdet_keys, state_keys
from xmbench.config import load_config
from xmbench.models.build import (build_fuser, build_image_backbone, build_image_neck, build_lidar_backbone,
                                  build_lift, feature_hw, lift_bounds)
from xmbench.models.fuser import ConvFuser
from xmbench.models.image_neck import GeneralizedLSSFPN
from xmbench.models.lss import LSSTransform, lidar_depth_image
from conftest import REPO


@pytest.fixture(scope="module")
def paper_model_cfg():
    return load_config(REPO / "config" / "paper.yaml")["model"]


@pytest.mark.parametrize("prefix", ["neck", "vtransform", "fuser"])
def test_paper_config_camera_branch_equals_openpcdet_bevfusion(shared_dir, paper_model_cfg, prefix):
    expected = openpcdet_keys(shared_dir / "openpcdet" / f"{prefix}_nuscenes_models_bevfusion.txt")
    if prefix == "neck":
        module = build_image_neck(paper_model_cfg, build_image_backbone(paper_model_cfg))
    elif prefix == "vtransform":
        module = build_lift(paper_model_cfg, use_lidar_depth=True)
    else:
        module = build_fuser(paper_model_cfg, build_lidar_backbone(paper_model_cfg).num_bev_features)
    ours = state_keys(prefix, module)
    assert ours.keys() == expected.keys()
    assert {k: v for k, v in ours.items() if v != expected[k]} == {}


def test_paper_lift_geometry_buffers_equal_openpcdets_values(shared_dir, paper_model_cfg):
    """OpenPCDet loads dx/bx/nx/frustum from a checkpoint too, so their values must be its own."""
    mods = ref.load(shared_dir / "OpenPCDet")
    theirs = mods["depth_lss"].DepthLSSTransform(ref.Cfg(
        IMAGE_SIZE=[256, 704], IN_CHANNEL=256, OUT_CHANNEL=80, FEATURE_SIZE=[32, 88], XBOUND=[-54.0, 54.0, 0.3],
        YBOUND=[-54.0, 54.0, 0.3], ZBOUND=[-10.0, 10.0, 20.0], DBOUND=[1.0, 60.0, 0.5], DOWNSAMPLE=2))
    ours = build_lift(paper_model_cfg).state_dict()
    for name in ("dx", "bx", "nx", "frustum"):
        assert torch.equal(ours[name], theirs.state_dict()[name]), name
    assert lift_bounds(paper_model_cfg)[0] == (-54.0, 54.0, 0.3)
    assert feature_hw(paper_model_cfg) == (32, 88)


def test_cameras_only_lift_differs_only_in_the_depth_image_branch(paper_model_cfg):
    fusion = {k: tuple(v.shape) for k, v in build_lift(paper_model_cfg, use_lidar_depth=True).state_dict().items()}
    cams = {k: tuple(v.shape) for k, v in build_lift(paper_model_cfg, use_lidar_depth=False).state_dict().items()}
    assert set(fusion) - set(cams) == {k for k in fusion if k.startswith("dtransform.")}
    assert set(cams) <= set(fusion)
    assert {k for k in cams if cams[k] != fusion[k]} == {"depthnet.0.weight"}
    assert cams["depthnet.0.weight"] == (256, 256, 3, 3) and fusion["depthnet.0.weight"] == (256, 320, 3, 3)


def test_neck_and_fuser_equal_openpcdets(shared_dir):
    mods = ref.load(shared_dir / "OpenPCDet")
    g = torch.Generator().manual_seed(0)
    neck = GeneralizedLSSFPN([12, 20, 28], 16).eval()
    for p in neck.parameters():
        p.data.normal_(generator=g)
    theirs = mods["generalized_lss"].GeneralizedLSSFPN(ref.Cfg(IN_CHANNELS=[12, 20, 28], OUT_CHANNELS=16,
                                                               START_LEVEL=0, END_LEVEL=-1, NUM_OUTS=3)).eval()
    theirs.load_state_dict(neck.state_dict(), strict=True)
    feats = [torch.randn(2, c, 9 // s + 1, 22 // s + 1, generator=g) for c, s in ((12, 1), (20, 2), (28, 4))]
    with torch.no_grad():
        a = neck([torch.randn(2, 5, 18, 44)] + feats)           # a ResNet's extra stride-4 map is skipped
        b = theirs({"image_features": feats})["image_fpn"]
    assert len(a) == len(b) == 2 and a[0].shape == (2, 16, 10, 23)
    for p, q in zip(a, b):
        torch.testing.assert_close(p, q)
    fuser = ConvFuser(5, 7, 6).eval()
    theirs = mods["convfuser"].ConvFuser(ref.Cfg(IN_CHANNEL=12, OUT_CHANNEL=6)).eval()
    theirs.load_state_dict(fuser.state_dict(), strict=True)
    cam, lid = torch.randn(2, 5, 8, 8, generator=g), torch.randn(2, 7, 8, 8, generator=g)
    with torch.no_grad():
        torch.testing.assert_close(fuser(cam, lid), theirs({"spatial_features_img": cam, "spatial_features": lid})
                                   ["spatial_features"])


def _ring_of_cameras(b: int, k: int, focal: float, hw: tuple[int, int]):
    """K cameras 1.5 m above the LiDAR, looking out horizontally at yaw 0, 360/K, ..."""
    l2c = torch.zeros(b, k, 4, 4)
    for i in range(k):
        yaw = 2 * math.pi * i / k
        fwd = torch.tensor([math.cos(yaw), math.sin(yaw), 0.0])
        right = torch.tensor([math.sin(yaw), -math.cos(yaw), 0.0])
        down = torch.tensor([0.0, 0.0, -1.0])
        rot = torch.stack([right, down, fwd])
        l2c[:, i, :3, :3] = rot
        l2c[:, i, :3, 3] = -rot @ torch.tensor([0.0, 0.0, 1.5])
        l2c[:, i, 3, 3] = 1.0
    intr = torch.tensor([[focal, 0, hw[1] / 2], [0, focal, hw[0] / 2], [0, 0, 1.0]]).expand(b, k, 3, 3).clone()
    return intr, l2c


def test_depth_lss_equals_openpcdets_for_the_same_weights(shared_dir):
    """Depth image from the points, dtransform, depthnet, frustum geometry with a LiDAR augmentation,
    splat and downsample: the same BEV map as OpenPCDet's DepthLSSTransform (bev_pool as a
    scatter-add), away from the grid's first cells, where OpenPCDet truncates -0.5 to cell 0 and we
    floor it out of the grid."""
    mods = ref.load(shared_dir / "OpenPCDet")
    hw, fhw = (64, 176), (8, 22)
    kw = dict(image_hw=hw, feature_hw=fhw, xbound=(-54.0, 54.0, 0.3), ybound=(-54.0, 54.0, 0.3),
              zbound=(-10.0, 10.0, 20.0), dbound=(1.0, 60.0, 0.5), downsample=2)
    torch.manual_seed(0)
    ours = LSSTransform(16, 8, **kw).eval()
    theirs = mods["depth_lss"].DepthLSSTransform(ref.Cfg(
        IMAGE_SIZE=list(hw), IN_CHANNEL=16, OUT_CHANNEL=8, FEATURE_SIZE=list(fhw), XBOUND=[-54.0, 54.0, 0.3],
        YBOUND=[-54.0, 54.0, 0.3], ZBOUND=[-10.0, 10.0, 20.0], DBOUND=[1.0, 60.0, 0.5], DOWNSAMPLE=2)).eval()
    for m in ours.modules():                       # non-trivial batch-norm statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    theirs.load_state_dict(ours.state_dict(), strict=True)
    b, k = 2, 6
    intr, l2c = _ring_of_cameras(b, k, 200.0, hw)
    yaw = torch.tensor([0.3, -0.5])
    aug = torch.eye(4).repeat(b, 1, 1)
    aug[:, 0, 0], aug[:, 0, 1], aug[:, 1, 0], aug[:, 1, 1] = yaw.cos(), -yaw.sin(), yaw.sin(), yaw.cos()
    aug[:, :3, 3] = torch.tensor([[1.0, -2.0, 0.3], [-0.5, 0.7, 0.0]])
    g = torch.Generator().manual_seed(1)
    xyz = torch.cat([torch.rand(60, 2, generator=g) * 60 - 30, torch.rand(60, 1, generator=g) * 2 - 1], 1)
    bidx = torch.arange(60) % 2
    xyz_aug = torch.einsum("nij,nj->ni", aug[bidx, :3, :3], xyz) + aug[bidx, :3, 3]
    feats = torch.randn(b * k, 16, *fhw, generator=g)
    depth = lidar_depth_image(xyz_aug, bidx, b, l2c, intr, hw, lidar_aug=aug)
    assert int((depth > 0).sum()) > 20                                    # points reach every camera test
    with torch.no_grad():
        mine = ours(feats, intr, l2c, depth, lidar_aug=aug)
    k4 = torch.eye(4).repeat(b, k, 1, 1)
    k4[..., :3, :3] = intr
    batch = {"image_fpn": [feats], "camera_intrinsics": k4, "camera2lidar": torch.linalg.inv(l2c),
             "img_aug_matrix": torch.eye(4).repeat(b, k, 1, 1), "lidar_aug_matrix": aug,
             "lidar2image": k4 @ l2c, "points": torch.cat([bidx[:, None].float(), xyz_aug], 1)}
    with torch.no_grad():
        out = theirs(batch)["spatial_features_img"]
    assert mine.shape == out.shape == (b, 8, 180, 180)
    inner = (slice(None), slice(None), slice(3, None), slice(3, None))
    assert out[inner].abs().amax() > 0
    torch.testing.assert_close(mine[inner], out[inner], rtol=1e-4, atol=1e-4)


def test_splat_puts_a_world_point_where_the_lidar_bev_map_has_it():
    """A frustum cell whose depth distribution is one bin lands its context in the (y, x) cell of the
    LiDAR backbone's BEV map (HeightCompression layout) that holds the same world point."""
    model_cfg = {"lidar": {"voxel_size": [0.5, 0.5, 0.2], "point_cloud_range": [-16, -16, -5, 16, 16, 3],
                           "nsweeps": 1},
                 "image": {"resnet_depth": 18, "width": 8, "size": [64, 32], "lift": {"downsample": 1}}}
    lift = build_lift(model_cfg, use_lidar_depth=False)
    bins = lift.frustum[:, 0, 0, 2]
    d = int(torch.argmin((bins - 9.0).abs()))
    intr, l2c = _ring_of_cameras(1, 1, 40.0, (32, 64))                     # looks along +x
    fh, fw = lift.feature_hw
    prob = torch.zeros(1, lift.D, fh, fw)
    prob[0, d, fh // 2, fw // 2] = 1.0                                      # one feature cell, one depth
    ctx = torch.zeros(1, lift.out_channels, fh, fw)
    ctx[0, :, fh // 2, fw // 2] = 1.0
    geom = lift.geometry(intr, l2c)
    bev = lift.splat(prob, ctx, geom).permute(0, 1, 3, 2)                   # (B, C, Y, X)
    world = geom[0, 0, d, fh // 2, fw // 2]
    backbone = build_lidar_backbone(model_cfg)
    from xmbench.models.voxelize import voxelize
    from xmbench.models.voxel_backbone import to_bev
    pts = torch.cat([world.view(1, 3), torch.zeros(1, 2)], 1)
    vox = voxelize(pts, torch.zeros(1, dtype=torch.long), 1, backbone.grid)
    lidar_bev = to_bev(backbone.eval()(vox.features, vox.coords, 1)["encoded"])
    assert bev.shape[-2:] == lidar_bev.shape[-2:] == (8, 8)
    hit = (bev[0, 0] > 0).nonzero().tolist()
    occupied = (lidar_bev[0].abs().sum(0) > 0).nonzero().tolist()
    assert hit == [[int((world[1] + 16) // 4), int((world[0] + 16) // 4)]]
    assert hit[0] in occupied
    assert bev.sum().item() == pytest.approx(lift.out_channels)            # mass is conserved


def test_depth_image_keeps_the_nearest_point_of_a_pixel():
    intr, l2c = _ring_of_cameras(1, 1, 40.0, (32, 64))
    xyz = torch.tensor([[10.0, 0.0, 1.5], [5.0, 0.0, 1.5], [8.0, -4.0, 1.5], [-6.0, 0.0, 1.5]])
    depth = lidar_depth_image(xyz, torch.zeros(4, dtype=torch.long), 1, l2c, intr, (32, 64))
    assert depth.shape == (1, 1, 1, 32, 64)
    assert depth[0, 0, 0, 16, 32] == 5.0                                     # 10 m hides behind 5 m
    assert depth[0, 0, 0, 16, 52] == 8.0                                     # u = 32 + 40 * 4 / 8
    assert int((depth > 0).sum()) == 2                                       # the point behind is dropped


def test_lift_trains_with_and_without_lidar_depth(test_config):
    cfg = copy.deepcopy(test_config["model"])
    img = build_image_backbone(cfg)
    neck = build_image_neck(cfg, img)
    b, k = 1, 2
    h, w = cfg["image"]["size"][1], cfg["image"]["size"][0]
    intr, l2c = _ring_of_cameras(b, k, 60.0, (h, w))
    images = torch.randn(b * k, 3, h, w)
    xyz = torch.randn(500, 3) * 10
    for use_depth in (True, False):
        lift = build_lift(cfg, use_lidar_depth=use_depth)
        depth = lidar_depth_image(xyz, torch.zeros(500, dtype=torch.long), b, l2c, intr, (h, w)) if use_depth else None
        bev = lift(neck(img(images))[0], intr, l2c, depth)
        lidar = build_lidar_backbone(cfg)
        assert bev.shape == (b, lift.out_channels) + tuple(s // 8 for s in lidar.grid.grid_size[1::-1])
        bev.square().mean().backward()
        assert lift.depthnet[0].weight.grad.abs().sum() > 0
        assert neck.lateral_convs[0].conv.weight.grad.abs().sum() > 0
        assert hasattr(lift, "dtransform") == use_depth
    with pytest.raises(ValueError, match="depth image"):
        build_lift(cfg, use_lidar_depth=True)(neck(img(images))[0], intr, l2c)
