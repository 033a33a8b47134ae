"""The image half downstream: fusion and cameras-only detection on the detection task's engine, the
checkpoint filling both branches, and the LiDAR-only task untouched by the image weights."""
import inspect
import json
import shutil

import pytest
import torch

from xmbench.atomic import sha256_file
from xmbench.finetune import load_init, run_finetune
from xmbench.splits import write_split
from xmbench.tasks import DOWNSTREAM_DIR, load_task

DETECTION_TASKS = ("detection", "fusion_detection", "camera_detection")


def _engine():
    return load_task("detection").engine("native")[1]


def _split(tiny_index, tmp_path):
    index = json.loads(tiny_index["index"].read_text())
    train = sorted(f["token"] for f in index["frames"] if f["split"] == "train")
    path = tmp_path / "split.txt"
    write_split(path, train)
    return path


def _model(test_config, task):
    engine = _engine()
    overlay = None if task == "detection" else DOWNSTREAM_DIR / task / "native.yaml"
    settings = engine.load_settings("tiny", "nuscenes", overlay=overlay)
    torch.manual_seed(0)
    return engine, settings, engine.DetectionModel(test_config["model"], settings)


@pytest.mark.parametrize("task", sorted(p.parent.name for p in DOWNSTREAM_DIR.glob("*/task.yaml")))
def test_every_task_recipe_is_method_blind(task):
    """Fairness covers every task folder, the two image-half tasks included."""
    spec = load_task(task)
    assert list(inspect.signature(spec.recipe).parameters) == ["profile", "fraction"]
    for profile in spec.spec["recipes"]:
        assert spec.recipe(profile, 0.5) == spec.recipe(profile, 0.5)
        assert "method" not in json.dumps(spec.recipe(profile, 0.5))


def test_image_half_tasks_read_their_modalities_and_keep_the_detection_head(test_config):
    mods = {}
    for task in DETECTION_TASKS:
        _, settings, model = _model(test_config, task)
        mods[task] = set(model.init_modules())
        assert settings["class_names"] == _model(test_config, "detection")[1]["class_names"]
        assert settings["head"] == _model(test_config, "detection")[1]["head"]
    assert mods["detection"] == {"backbone_3d"}
    assert mods["fusion_detection"] == {"backbone_3d", "image_backbone", "neck", "vtransform", "fuser"}
    assert mods["camera_detection"] == {"image_backbone", "neck", "vtransform"}


def test_builds_on_makes_detection_settings_edits_rerun_fusion_cells(tmp_path):
    for task in ("detection", "fusion_detection"):
        shutil.copytree(DOWNSTREAM_DIR / task, tmp_path / task)
    fusion = load_task("fusion_detection", tmp_path)
    before = fusion.settings_hash()
    native = tmp_path / "detection" / "native.yaml"
    native.write_text(native.read_text().replace("score_thresh: 0.1", "score_thresh: 0.2", 1))
    assert fusion.settings_hash() != before


def test_camera_only_model_reads_no_lidar_point(test_config):
    engine, _, model = _model(test_config, "camera_detection")
    model.eval()
    g = torch.Generator().manual_seed(1)
    w, h = test_config["model"]["image"]["size"]
    batch = {"images": torch.randn(1, 6, 3, h, w, generator=g), "batch_size": 1,
             "intrinsics": torch.tensor([[[100.0, 0, w / 2], [0, 100.0, h / 2], [0, 0, 1]]]).repeat(1, 6, 1, 1),
             "lidar_to_cam": torch.eye(4).repeat(1, 6, 1, 1)}
    with torch.no_grad():
        a = model({**batch, "points": torch.randn(50, 5, generator=g), "batch_idx": torch.zeros(50, dtype=torch.long)})
        b = model({**batch, "points": torch.zeros(0, 5), "batch_idx": torch.zeros(0, dtype=torch.long)})
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)


def test_augmented_cameras_see_augmented_points_where_the_originals_were():
    """The BEV augmentation moves the points; the cameras are moved with them, the images are not."""
    from xmbench.pretraining.augment import random_view

    engine = _engine()
    g = torch.Generator().manual_seed(3)
    pts = torch.cat([torch.randn(40, 3, generator=g) * 10, torch.zeros(40, 2)], 1)
    bidx = torch.zeros(40, dtype=torch.long)
    view = random_view(pts, bidx, 1, g, rotation_deg=45.0, scale=(0.9, 1.1), flip=True)
    l2c = torch.randn(1, 2, 4, 4, generator=g)
    l2c[..., 3, :] = torch.tensor([0.0, 0, 0, 1])
    moved = engine._augmented_lidar_to_cam(l2c, view.matrix, view.translation)
    homo = lambda p: torch.cat([p[:, :3], torch.ones(len(p), 1)], 1).T  # noqa: E731
    before = l2c[0] @ homo(pts)
    after = moved[0] @ homo(view.points)
    assert torch.allclose(before, after, atol=1e-3)


def _checkpoint(path, modules: dict, perturb_image: bool = False):
    state = {}
    g = torch.Generator().manual_seed(7)
    for prefix, m in modules.items():
        for k, v in m.state_dict().items():
            v = v.clone()
            if prefix == "image_backbone" and perturb_image and v.is_floating_point():
                v = v + 0.05 * torch.randn(v.shape, generator=g)
            state[f"{prefix}.{k}"] = v
    torch.save({"model_state": state, "meta": {"method": "test"}}, path)
    return path


def test_load_init_fills_both_branches_and_refuses_a_partial_module(test_config, tmp_path):
    _, _, fusion = _model(test_config, "fusion_detection")
    _, _, source = _model(test_config, "fusion_detection")
    mods = source.init_modules()
    ckpt = _checkpoint(tmp_path / "full.pth", {p: mods[p] for p in ("backbone_3d", "image_backbone")})
    report = load_init(fusion.init_modules(), ckpt)
    assert report["backbone_3d"]["loaded"] == report["backbone_3d"]["total"] > 100
    assert report["image_backbone"]["loaded"] == report["image_backbone"]["total"] > 10
    assert report["fuser"]["loaded"] == 0 and not report["fuser"]["pretrained"]
    for k, v in fusion.camera.image.state_dict().items():
        assert torch.equal(v, mods["image_backbone"].state_dict()[k])
    state = torch.load(ckpt, weights_only=False)
    dropped = next(k for k in state["model_state"] if k.startswith("image_backbone."))
    del state["model_state"][dropped]
    torch.save(state, tmp_path / "partial.pth")
    from xmbench.errors import BenchError

    with pytest.raises(BenchError, match=r"image_backbone \d+/\d+ loaded \(missed "):
        load_init(fusion.init_modules(), tmp_path / "partial.pth")


@pytest.fixture(scope="module")
def image_swap_runs(tiny_index, test_config, tmp_path_factory):
    """detection and fusion_detection finetuned from two checkpoints that differ in image weights only."""
    tmp = tmp_path_factory.mktemp("swap")
    split = _split(tiny_index, tmp)
    _, _, source = _model(test_config, "fusion_detection")
    mods = {p: m for p, m in source.init_modules().items() if p in ("backbone_3d", "image_backbone")}
    out = {}
    for name, perturb in (("a", False), ("b", True)):
        ckpt = _checkpoint(tmp / f"{name}.pth", mods, perturb_image=perturb)
        record = tmp / f"{name}.json"
        record.write_text(json.dumps({"status": "ok", "checkpoint": ckpt.name, "checkpoint_sha256": sha256_file(ckpt)}))
        for task in ("detection", "fusion_detection"):
            rec = run_finetune(load_task(task), "native", test_config, "synthetic_nuscenes", "crosspoint", 1.0, 0,
                               tiny_index["index"], tiny_index["labels"], split, record, tmp / name / task)
            assert rec["status"] == "ok", rec["reason"]
            out[(name, task)] = (rec, (tmp / name / task / "train_log.jsonl").read_text())
    return out


def test_image_weights_move_fusion_and_leave_lidar_detection_bit_identical(image_swap_runs):
    (det_a, log_a), (det_b, log_b) = image_swap_runs[("a", "detection")], image_swap_runs[("b", "detection")]
    assert log_a == log_b and det_a["metrics"] == det_b["metrics"]
    assert list(det_a["init"]) == ["backbone_3d"] and det_a["init"]["backbone_3d"]["loaded"] == 142
    (fus_a, flog_a), (fus_b, flog_b) = image_swap_runs[("a", "fusion_detection")], image_swap_runs[("b", "fusion_detection")]
    assert flog_a != flog_b
    assert fus_a["init"]["image_backbone"]["pretrained"] and fus_a["init"]["backbone_3d"]["loaded"] == 142
    assert fus_a["metrics"]["modalities"] == ["camera", "lidar"]
