"""A finetuning job killed with SIGKILL and started again ends where an uninterrupted one ends."""
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def _cmd(tiny_index, split, out):
    return [sys.executable, "-m", "xmbench.cli", "finetune", "--config", str(tiny_index["config"]),
            "--dataset", "synthetic_nuscenes", "--task", "segmentation", "--method", "scratch",
            "--fraction", "1.0", "--seed", "3", "--index", str(tiny_index["index"]),
            "--labels", str(tiny_index["labels"]), "--split", str(split), "--out-dir", str(out)]


def test_killed_finetuning_resumes_to_the_same_result(tiny_index, tmp_path):
    from xmbench.data.frames import load_json
    from xmbench.splits import select, write_split

    split = tmp_path / "100pct.txt"
    write_split(split, select(load_json(tiny_index["index"])["frames"], 1.0, 0))
    full, killed = tmp_path / "full", tmp_path / "killed"
    subprocess.run(_cmd(tiny_index, split, full), cwd=REPO, check=True, capture_output=True)
    proc = subprocess.Popen(_cmd(tiny_index, split, killed), cwd=REPO, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and not (killed / "train_state.pth").exists():
        time.sleep(0.05)
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "metrics.json").exists()
    res = subprocess.run(_cmd(tiny_index, split, killed), cwd=REPO, capture_output=True, text=True, check=True)
    assert "resuming finetuning from step" in res.stderr
    a = json.loads((full / "metrics.json").read_text())
    b = json.loads((killed / "metrics.json").read_text())
    assert a["status"] == b["status"] == "ok"
    assert a["metrics"] == b["metrics"]
    assert (full / "train_log.jsonl").read_text() == (killed / "train_log.jsonl").read_text()
