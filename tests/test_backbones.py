"""The LiDAR backbone must be loadable by OpenPCDet as is: same keys, same shapes."""
import re

import pytest
import torch

from xmbench.models.build import build_image_backbone, build_lidar_backbone
from xmbench.models.voxelize import voxelize


def _openpcdet_keys(path):
    keys = {}
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, shape, _dtype = re.match(r"(\S+) \(([^)]*)\) (\S+)", line).groups()
        keys[name] = tuple(int(v) for v in shape.replace(",", " ").split())
    return keys


def _model_cfg(voxel, pcr):
    return {"lidar": {"voxel_size": voxel, "point_cloud_range": pcr, "nsweeps": 1},
            "image": {"resnet_depth": 18, "width": 16, "size": [64, 64]}}


@pytest.mark.parametrize("fname,voxel,pcr", [
    ("backbone_3d_nuscenes_models_cbgs_voxel0075_res3d_centerpoint.txt", [0.075, 0.075, 0.2], [-54, -54, -5, 54, 54, 3]),
    ("backbone_3d_nuscenes_models_cbgs_voxel01_res3d_centerpoint.txt", [0.1, 0.1, 0.2], [-51.2, -51.2, -5, 51.2, 51.2, 3]),
])
def test_lidar_backbone_matches_openpcdet(shared_dir, fname, voxel, pcr):
    expected = _openpcdet_keys(shared_dir / "openpcdet" / fname)
    header = (shared_dir / "openpcdet" / fname).read_text().splitlines()[0]
    grid = [int(v) for v in re.search(r"grid \[([^\]]*)\]", header).group(1).split(",")]
    backbone = build_lidar_backbone(_model_cfg(voxel, pcr))
    assert list(backbone.grid.grid_size) == grid
    ours = {f"backbone_3d.{k}": tuple(v.shape) for k, v in backbone.state_dict().items()}
    assert ours.keys() == expected.keys()
    mismatched = {k: (ours[k], expected[k]) for k in ours if ours[k] != expected[k]}
    assert not mismatched


def test_lidar_backbone_runs_on_cpu_and_gives_256_bev_channels():
    cfg = _model_cfg([0.5, 0.5, 0.2], [-16, -16, -5, 16, 16, 3])
    backbone = build_lidar_backbone(cfg)
    g = torch.Generator().manual_seed(0)
    pts = torch.cat([torch.rand(2000, 3, generator=g) * torch.tensor([30.0, 30.0, 6.0]) - torch.tensor([15.0, 15.0, 4.0]),
                     torch.rand(2000, 2, generator=g)], dim=1)
    bidx = torch.arange(2000) % 2
    vox = voxelize(pts, bidx, 2, backbone.grid)
    out = backbone(vox.features, vox.coords, 2)
    assert out["encoded"].spatial_shape == [2, 8, 8]
    assert backbone.num_bev_features == 256
    out["encoded"].features.sum().backward()
    assert backbone.conv_input[0].weight.grad.abs().sum() > 0


def test_voxelize_means_points_and_maps_every_point():
    cfg = _model_cfg([1.0, 1.0, 0.25], [0, 0, -5, 8, 8, 3])
    grid = build_lidar_backbone(cfg).grid
    pts = torch.tensor([[0.2, 0.2, 0.0, 1.0, 0.0], [0.8, 0.6, 0.1, 3.0, 0.0], [5.5, 1.5, 0.0, 7.0, 0.0],
                        [20.0, 0.0, 0.0, 0.0, 0.0]])
    vox = voxelize(pts, torch.zeros(4, dtype=torch.long), 1, grid)
    assert vox.point_to_voxel[3] == -1
    assert vox.point_to_voxel[0] == vox.point_to_voxel[1] != vox.point_to_voxel[2]
    first = vox.features[vox.point_to_voxel[0]]
    assert torch.allclose(first, pts[:2].mean(0))
    assert vox.coords[vox.point_to_voxel[2]].tolist() == [0, 20, 1, 5]


@pytest.mark.parametrize("depth,channels", [(18, 512), (50, 2048)])
def test_resnet_depths_and_torchvision_names(depth, channels):
    net = build_image_backbone({"lidar": {}, "image": {"resnet_depth": depth, "width": 64, "size": [64, 64]}})
    feats = net(torch.zeros(1, 3, 64, 96))
    assert [f.shape[1] for f in feats][-1] == channels == net.out_channels[-1]
    assert feats[-1].shape[-2:] == (2, 3)
    assert "layer1.0.conv1.weight" in net.state_dict() and "fc.weight" not in net.state_dict()


def test_backbone_inference_on_cpu_with_biased_convs():
    """spconv's fused-bias inference path has no CPU kernel; eval mode must still run here."""
    backbone = build_lidar_backbone(_model_cfg([0.5, 0.5, 0.2], [-16, -16, -5, 16, 16, 3])).eval()
    pts = torch.cat([torch.rand(500, 3) * 20 - 10, torch.rand(500, 2)], dim=1)
    vox = voxelize(pts, torch.zeros(500, dtype=torch.long), 1, backbone.grid)
    with torch.no_grad():
        out = backbone(vox.features, vox.coords, 1)
    assert torch.isfinite(out["encoded"].features).all()
