"""Pretraining under torchrun: two processes (gloo on the CPU) share each batch; rank 0 writes."""
import json
import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent


def test_two_process_pretraining_under_torchrun(tiny_index, test_config, tmp_path):
    cfg = json.loads(json.dumps(test_config))
    cfg["pretrain"].update(epochs=1, max_steps_per_epoch=2, batch_size=4)
    (tmp_path / "cfg.json").write_text(json.dumps(cfg))
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", "-m", "xmbench.cli",
         "pretrain", "--config", str(tmp_path / "cfg.json"), "--dataset", "synthetic_nuscenes", "--method",
         "crosspoint", "--index", str(tiny_index["index"]), "--out-dir", str(out), "--record",
         str(out / "pretrain.json"), "--device", "cpu"],
        cwd=REPO, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    record = json.loads((out / "pretrain.json").read_text())
    assert record["status"] == "ok", record["reason"]
    ckpt = torch.load(out / "checkpoint.pth", weights_only=False)
    assert ckpt["meta"]["world_size"] == 2
    rows = (out / "loss_log.jsonl").read_text().splitlines()
    assert len(rows) == 2  # one line per step, from rank 0 only
