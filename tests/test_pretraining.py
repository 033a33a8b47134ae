"""The harness loop: resume after SIGKILL, non-finite stop, no labels, checkpoint format."""
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from xmbench.data.frames import LABEL_KEYS, FrameDataset, load_json
from xmbench.methods import MethodSpec, load_method
from xmbench.pretraining.loop import NonFiniteLoss, Pretrainer

REPO = Path(__file__).resolve().parent.parent


def _cfg(test_config, **pretrain):
    cfg = json.loads(json.dumps(test_config))
    cfg["pretrain"].update(pretrain)
    return cfg


def _cli_pretrain(cfg_path, index, out_dir, method="crosspoint"):
    return [sys.executable, "-m", "xmbench.cli", "pretrain", "--config", str(cfg_path), "--dataset",
            "synthetic_nuscenes", "--method", method, "--index", str(index), "--out-dir", str(out_dir),
            "--record", str(out_dir / "pretrain.json")]


def test_pretraining_data_exposes_no_labels(tiny_index, tmp_path):
    index = load_json(tiny_index["index"])
    text = tiny_index["index"].read_text()
    for leak in ("boxes", "lidarseg", "num_lidar_pts", "category", "sample_annotation"):
        assert leak not in text
    tokens = [f["token"] for f in index["frames"] if f["split"] == "train"]
    item = FrameDataset(index, tokens, (128, 72), labels=None)[0]
    assert not set(LABEL_KEYS) & set(item)
    assert {"points", "images", "intrinsics", "lidar_to_cam"} <= set(item)


def test_pretraining_runs_without_any_label_file(tiny_index, test_config, tmp_path):
    """A copy of the dataset with lidarseg and annotations deleted still pretrains: no label is read."""
    root = tmp_path / "nolabels"
    shutil.copytree(tiny_index["dataroot"], root)
    shutil.rmtree(root / "lidarseg")
    (root / "v1.0-mini" / "sample_annotation.json").write_text("[]")
    index = load_json(tiny_index["index"])
    index["dataroot"] = str(root)
    (tmp_path / "index.json").write_text(json.dumps(index))
    cfg = _cfg(test_config, epochs=1, max_steps_per_epoch=1)
    ckpt = Pretrainer(load_method("crosspoint"), cfg, tmp_path / "index.json", tmp_path / "out").run()
    assert ckpt.exists()


def test_checkpoint_format_and_loss_log(tiny_index, test_config, tmp_path):
    cfg = _cfg(test_config, epochs=2, max_steps_per_epoch=2)
    ckpt = torch.load(Pretrainer(load_method("crosspoint"), cfg, tiny_index["index"], tmp_path).run(),
                      weights_only=False)
    assert {k.split(".", 1)[0] for k in ckpt["model_state"]} == {"backbone_3d", "image_backbone"}
    assert "backbone_3d.conv_input.0.weight" in ckpt["model_state"]
    assert "image_backbone.layer4.0.conv1.weight" in ckpt["model_state"]
    assert ckpt["meta"]["pretrained_modules"] == ["backbone_3d", "image_backbone"]
    assert ckpt["meta"]["method"] == "crosspoint" and ckpt["meta"]["epochs"] == 2
    assert ckpt["meta"]["packages"]["torch"].startswith("2.13")
    rows = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1, 2, 3]
    assert all({"imid", "cmid", "loss", "lr_all"} <= set(r) for r in rows)


def test_killed_pretraining_resumes_bit_identical(tiny_index, test_config, tmp_path):
    cfg = _cfg(test_config, epochs=3, max_steps_per_epoch=2)
    cfg_path = tmp_path / "cfg.json"
    cfg_path.write_text(json.dumps(cfg))
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cli_pretrain(cfg_path, tiny_index["index"], full), check=True, cwd=REPO)
    proc = subprocess.Popen(_cli_pretrain(cfg_path, tiny_index["index"], killed), cwd=REPO,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill once epoch 0 is checkpointed and epoch 1 has begun
        log = killed / "loss_log.jsonl"
        if log.exists() and any(json.loads(l)["epoch"] == 1 for l in log.read_text().splitlines() if l):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoint.pth").exists()
    assert torch.load(killed / "last.pth", weights_only=False)["epoch"] in (0, 1)
    rerun = subprocess.run(_cli_pretrain(cfg_path, tiny_index["index"], killed), cwd=REPO,
                           capture_output=True, text=True, check=True)
    assert "resuming crosspoint from epoch" in rerun.stderr
    a = torch.load(full / "checkpoint.pth", weights_only=False)
    b = torch.load(killed / "checkpoint.pth", weights_only=False)
    assert a["model_state"].keys() == b["model_state"].keys()
    assert any(k.startswith("image_backbone.") for k in a["model_state"])
    for k in a["model_state"]:
        assert torch.equal(a["model_state"][k], b["model_state"][k]), k
    log_a = [json.loads(l) for l in (full / "loss_log.jsonl").read_text().splitlines()]
    log_b = [json.loads(l) for l in (killed / "loss_log.jsonl").read_text().splitlines()]
    assert log_a == log_b


def _throwaway_method(tmp_path, body: str) -> MethodSpec:
    folder = tmp_path / "methods" / "broken"
    folder.mkdir(parents=True)
    spec = load_method("crosspoint").spec | {"name": "broken", "entry": "Broken"}
    import yaml
    (folder / "method.yaml").write_text(yaml.safe_dump(spec))
    (folder / "method.py").write_text(body)
    return load_method("broken", tmp_path / "methods")


def test_non_finite_loss_stops_naming_step_and_term(tiny_index, test_config, tmp_path):
    spec = _throwaway_method(tmp_path, '''
import torch
from torch import nn
class Broken(nn.Module):
    def __init__(self, lidar, image, hparams, model_cfg):
        super().__init__()
        self.lidar, self.image, self.w = lidar, image, nn.Parameter(torch.ones(1))
    def forward(self, batch):
        return {"fine": self.w.sum(), "exploding": self.w.sum() * float("nan")}
''')
    cfg = _cfg(test_config, epochs=1, max_steps_per_epoch=2)
    with pytest.raises(NonFiniteLoss, match=r"epoch 0 step 0: term 'exploding'"):
        Pretrainer(spec, cfg, tiny_index["index"], tmp_path / "out").run()
    assert not (tmp_path / "out" / "checkpoint.pth").exists()


def test_truncated_lidar_file_fails_pretraining_with_the_file_named(tiny_index, test_config, tmp_path):
    root = tmp_path / "data"
    shutil.copytree(tiny_index["dataroot"], root)
    index = load_json(tiny_index["index"])
    index["dataroot"] = str(root)
    victim = root / next(f for f in index["frames"] if f["split"] == "train")["lidar_path"]
    victim.write_bytes(victim.read_bytes()[:-7])
    (tmp_path / "index.json").write_text(json.dumps(index))
    cfg = _cfg(test_config, epochs=1, max_steps_per_epoch=None)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    res = subprocess.run(_cli_pretrain(tmp_path / "cfg.json", tmp_path / "index.json", out), cwd=REPO,
                         capture_output=True, text=True)
    record = json.loads((out / "pretrain.json").read_text())
    assert record["status"] == "failed"
    assert f"{victim}: truncated .pcd.bin" in record["reason"]
    assert not (out / "checkpoint.pth").exists()
    assert "truncated .pcd.bin" in res.stderr.strip().splitlines()[-1]


def test_a_state_saved_by_another_config_is_not_resumed(tiny_index, test_config, tmp_path, capsys):
    """A re-run after a config change must start over, not continue the old run's weights."""
    Pretrainer(load_method("crosspoint"), _cfg(test_config, epochs=1, max_steps_per_epoch=1), tiny_index["index"],
               tmp_path).run()
    assert torch.load(tmp_path / "last.pth", weights_only=False)["epoch"] == 0
    capsys.readouterr()
    Pretrainer(load_method("crosspoint"), _cfg(test_config, epochs=1, max_steps_per_epoch=2), tiny_index["index"],
               tmp_path).run()
    err = capsys.readouterr().err
    assert "ignoring" in err and "resuming" not in err
    rows = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [0, 1]
