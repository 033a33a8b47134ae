"""SimIPU: the loss maths, the camera projection against the devkit, FPS and Hungarian
correspondence, the gradient routing of the two terms, and a short pretraining run."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from pyquaternion import Quaternion

from methods.simipu.matching import farthest_point_sample, hungarian_match
from xmbench.data.frames import FrameDataset, collate, load_json
from xmbench.methods import load_method
from xmbench.models.build import build_image_backbone, build_lidar_backbone
from xmbench.pretraining.augment import random_view
from xmbench.pretraining.losses import info_nce
from xmbench.pretraining.loop import Pretrainer
from xmbench.pretraining.projection import project_to_cameras


def _numpy_info_nce(q: np.ndarray, k: np.ndarray, t: float) -> float:
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    k = k / np.linalg.norm(k, axis=1, keepdims=True)
    logits = q @ k.T / t
    logits = logits - logits.max(axis=1, keepdims=True)
    log_prob = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return float(-np.mean(np.diag(log_prob)))


def test_info_nce_with_stop_gradient_matches_numpy():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(7, 5, generator=g, dtype=torch.float64, requires_grad=True)
    loss = info_nce(q, k.detach(), 0.07)             # as SimIPU: key side under stop-gradient
    expected = _numpy_info_nce(q.detach().numpy(), k.detach().numpy(), 0.07)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    loss.backward()
    assert k.grad is None                            # the stopped side gets nothing
    assert q.grad is not None and q.grad.abs().sum() > 0
    # and the gradient on the query side is the analytic one of the numpy loss (finite differences)
    eps, qn, kn = 1e-6, q.detach().numpy(), k.detach().numpy()
    i, j = 3, 2
    plus, minus = qn.copy(), qn.copy()
    plus[i, j] += eps
    minus[i, j] -= eps
    fd = (_numpy_info_nce(plus, kn, 0.07) - _numpy_info_nce(minus, kn, 0.07)) / (2 * eps)
    assert q.grad[i, j].item() == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_projection_agrees_with_devkit_view_points(tiny_index, test_config):
    from nuscenes.nuscenes import NuScenes
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import transform_matrix, view_points

    index = load_json(tiny_index["index"])
    frame = next(f for f in index["frames"] if f["split"] == "train")
    size = tuple(test_config["model"]["image"]["size"])
    item = FrameDataset(index, [frame["token"]], size)[0]
    nusc = NuScenes(version="v1.0-mini", dataroot=str(tiny_index["dataroot"]), verbose=False)
    sample = nusc.get("sample", nusc.get("sample_data", frame["lidar_token"])["sample_token"])
    lidar_sd = nusc.get("sample_data", sample["data"]["LIDAR_TOP"])
    pc = LidarPointCloud.from_file(str(Path(tiny_index["dataroot"]) / lidar_sd["filename"]))
    xyz = pc.points[:3].astype(np.float64)

    def pose(sd):
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        ep = nusc.get("ego_pose", sd["ego_pose_token"])
        return cs, ep

    cs_l, ep_l = pose(lidar_sd)
    lidar_to_global = (transform_matrix(ep_l["translation"], Quaternion(ep_l["rotation"]))
                       @ transform_matrix(cs_l["translation"], Quaternion(cs_l["rotation"])))
    pts = torch.from_numpy(xyz.T.astype(np.float32))
    uv, depth, visible = project_to_cameras(pts, torch.zeros(len(pts), dtype=torch.long),
                                            item["lidar_to_cam"][None], item["intrinsics"][None], size[::-1])
    n_checked = 0
    for k, cam in enumerate(frame["cams"]):
        cam_sd = nusc.get("sample_data", sample["data"][cam])
        cs_c, ep_c = pose(cam_sd)
        global_to_cam = (transform_matrix(cs_c["translation"], Quaternion(cs_c["rotation"]), inverse=True)
                         @ transform_matrix(ep_c["translation"], Quaternion(ep_c["rotation"]), inverse=True))
        in_cam = (global_to_cam @ lidar_to_global @ np.vstack([xyz, np.ones(xyz.shape[1])]))[:3]
        ref = view_points(in_cam, np.array(cs_c["camera_intrinsic"]), normalize=True)[:2]
        ref = ref * np.array([size[0] / cam_sd["width"], size[1] / cam_sd["height"]])[:, None]
        front = in_cam[2] > 1.0                      # the devkit's min_dist
        np.testing.assert_allclose(depth[:, k].numpy(), in_cam[2], rtol=1e-4, atol=2e-3)
        np.testing.assert_allclose(uv[front, k].numpy(), ref[:, front].T, rtol=1e-4, atol=2e-2)
        ref_visible = front & (ref[0] >= 0) & (ref[0] < size[0]) & (ref[1] >= 0) & (ref[1] < size[1])
        near_edge = (np.abs(ref[0]) < 0.05) | (np.abs(ref[0] - size[0]) < 0.05) | \
                    (np.abs(ref[1]) < 0.05) | (np.abs(ref[1] - size[1]) < 0.05)
        assert np.array_equal(visible[~near_edge, k].numpy(), ref_visible[~near_edge])
        n_checked += int(ref_visible.sum())
    assert n_checked > 100                          # the frame really is seen by the cameras


def test_fps_distinct_and_covering():
    g = torch.Generator().manual_seed(1)
    n = [1500, 900, 40]                              # the last frame has fewer points than k
    xyz = torch.cat([torch.rand(m, 3, generator=g) * torch.tensor([80.0, 60.0, 4.0]) for m in n])
    xyz[5] = xyz[6]                                  # a repeated coordinate must not repeat a sample
    bidx = torch.cat([torch.full((m,), b) for b, m in enumerate(n)])
    k = 128
    rows = farthest_point_sample(xyz, bidx, 3, k)
    assert len(set(rows.tolist())) == len(rows) == 2 * k + n[2]
    assert torch.equal(bidx[rows], torch.sort(bidx[rows]).values)          # frame-major
    assert [int((bidx[rows] == b).sum()) for b in range(3)] == [k, k, n[2]]
    for b in range(2):
        pts, smp = xyz[bidx == b], xyz[rows[bidx[rows] == b]]
        cover = torch.cdist(pts, smp).min(1).values.max()                  # covering radius
        pair = torch.cdist(smp, smp) + torch.eye(k) * 1e9
        # greedy FPS: every pair of samples is at least the final covering radius apart
        assert pair.min() >= cover - 1e-4
        perm = torch.randperm(len(pts), generator=g)[:k]
        assert cover < torch.cdist(pts, pts[perm]).min(1).values.max()     # beats random sampling


def test_hungarian_recovers_permutation_through_inverse_view():
    g = torch.Generator().manual_seed(2)
    n = [300, 200]
    xyz = torch.cat([torch.rand(m, 3, generator=g) * 50 - 25 for m in n])
    bidx = torch.cat([torch.full((m,), b) for b, m in enumerate(n)])
    perm = torch.cat([torch.randperm(n[0], generator=g), n[0] + torch.randperm(n[1], generator=g)])
    pts = torch.cat([xyz, torch.zeros(len(xyz), 2)], 1)[perm]     # view B's input is A shuffled
    view = random_view(pts, bidx[perm], 2, g, rotation_deg=90.0, scale=(0.75, 1.25), flip=True)
    assert not torch.allclose(view.points[:, :3], pts[:, :3], atol=1e-2)
    back = view.unaugment(view.points[:, :3], view.batch_idx)
    ia, ib = hungarian_match(xyz, bidx, back, view.batch_idx, 2)
    assert len(ia) == len(xyz)
    assert torch.equal(perm[view.keep[ib]], ia)                   # B's row ib is A's row perm[ib]


def _model_and_batch(tiny_index, test_config, n_frames=2):
    index = load_json(tiny_index["index"])
    tokens = [f["token"] for f in index["frames"] if f["split"] == "train"][:n_frames]
    ds = FrameDataset(index, tokens, tuple(test_config["model"]["image"]["size"]))
    batch = collate([ds[i] for i in range(n_frames)])
    spec = load_method("simipu")
    torch.manual_seed(0)
    model = spec.load_class()(build_lidar_backbone(test_config["model"]),
                              build_image_backbone(test_config["model"]), spec.hparams(), test_config["model"])
    return model.train(), batch


def test_terms_route_gradients_as_simipu_and_are_deterministic(tiny_index, test_config):
    model, batch = _model_and_batch(tiny_index, test_config)
    groups = model.optimizer_groups()
    assert set(groups) == {"lidar", "image"}
    assert {id(p) for ps in groups.values() for p in ps} == {id(p) for p in model.parameters()}
    assert {id(p) for p in groups["lidar"]} == {id(p) for p in model.lidar.parameters()}

    batch["generator"] = torch.Generator().manual_seed(5)
    terms = model(batch)
    assert set(terms) == {"intra", "inter"} and all(torch.isfinite(v) for v in terms.values())
    model.zero_grad()
    terms["inter"].backward(retain_graph=True)
    # the inter-modal term trains the image side only: point features are detached
    assert all(p.grad is None for p in model.lidar.parameters())
    assert all(p.grad is None for p in model.mlp_cross_points.parameters())
    assert all(p.grad is None for p in model.mlp_intra_points.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.image.parameters())
    model.zero_grad()
    terms["intra"].backward()
    assert all(p.grad is None for p in model.image.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.lidar.parameters())

    # all randomness comes from the batch's generator: the same seed gives the same terms
    state = {k: v.clone() for k, v in model.state_dict().items()}
    again = []
    for _ in range(2):
        model.load_state_dict(state)
        batch["generator"] = torch.Generator().manual_seed(7)
        again.append({k: v.item() for k, v in model(batch).items()})
    assert again[0] == again[1]


def test_pretraining_loss_decreases_and_checkpoint_format(tiny_index, test_config, tmp_path):
    # fix the data: an index whose train split holds two frames, so every epoch sees the same batch
    index = load_json(tiny_index["index"])
    train = [f for f in index["frames"] if f["split"] == "train"][:2]
    index["frames"] = train + [f for f in index["frames"] if f["split"] != "train"]
    (tmp_path / "index.json").write_text(json.dumps(index))
    cfg = json.loads(json.dumps(test_config))
    cfg["pretrain"].update(epochs=4, batch_size=2, max_steps_per_epoch=1)
    ckpt_path = Pretrainer(load_method("simipu"), cfg, tmp_path / "index.json", tmp_path / "out").run()
    ckpt = torch.load(ckpt_path, weights_only=False)
    assert ckpt["model_state"] and all(k.split(".")[0] in ("backbone_3d", "image_backbone") for k in ckpt["model_state"])
    assert "backbone_3d.conv_input.0.weight" in ckpt["model_state"]
    assert ckpt["meta"]["method"] == "simipu"
    rows = [json.loads(line) for line in (tmp_path / "out" / "loss_log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [0, 1, 2, 3]
    assert all({"intra", "inter", "lr_lidar", "lr_image"} <= set(r) for r in rows)
    assert rows[1]["lr_lidar"] == pytest.approx(rows[0]["lr_lidar"] * 0.99)
    assert rows[1]["lr_image"] == pytest.approx(rows[0]["lr_image"] * 0.99)
    assert rows[-1]["loss"] < rows[0]["loss"]


def test_image_features_sampled_at_the_projected_pixel():
    """Stride-32 cell (j, i) is centred on input pixel (32 j, 32 i); bilinear in between."""
    sample = load_method("simipu").load_class().forward.__globals__["sample_feature_map"]
    h, w = 3, 4
    cols = torch.arange(w, dtype=torch.float32).expand(h, w)
    rows = torch.arange(h, dtype=torch.float32)[:, None].expand(h, w)
    fmap = torch.stack([torch.stack([cols, rows]), torch.stack([cols, rows]) * 10])   # (2 images, 2, h, w)
    uv = torch.tensor([[0.0, 0.0], [32.0, 64.0], [80.0, 16.0], [96.0, 40.0], [50.0, 70.0]])
    image_id = torch.tensor([0, 1, 0, 1, 0])
    out = sample(fmap, image_id, uv, 32)
    expected = torch.stack([uv[:, 0] / 32, uv[:, 1] / 32], 1).clamp(max=torch.tensor([w - 1.0, h - 1.0]))
    expected = expected * torch.where(image_id == 1, 10.0, 1.0)[:, None]
    torch.testing.assert_close(out, expected)
