"""`snakemake --profile profiles/slurm` on a real one-node SLURM cluster started on this machine."""
import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def slurm_cluster():
    """Stopped afterwards: a config left behind for a dead controller slows every later snakemake start."""
    res = subprocess.run(["bash", str(REPO / "tests" / "slurm" / "start_cluster.sh")], capture_output=True, text=True,
                         timeout=900)
    try:
        assert res.returncode == 0, res.stderr[-3000:]
        yield res.stdout
    finally:
        subprocess.run(["bash", str(REPO / "tests" / "slurm" / "stop_cluster.sh")], check=False)


@pytest.fixture(scope="module")
def slurm_run(slurm_cluster, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("slurm")
    cfg = yaml.safe_load((REPO / ".test" / "config.yaml").read_text())
    cfg["results_dir"] = str(tmp / "results")
    cfg["fractions"] = [1.0]
    cfg["tasks"] = ["segmentation"]  # the scheduler path is what is tested here; test_dag runs every task
    cfg["cluster"] = {"partition": "debug", "account": None}
    # one fake GPU per pretraining job: the request goes through SLURM's GRES scheduling
    cfg["pretrain"]["resources"] = {"gpus": 1, "cpus": 1, "mem_gb": 2, "hours": 0.5}
    (tmp / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile", str(tmp / "config.yaml"),
         "--slurm-no-account", "--slurm-status-command", "squeue", "--slurm-init-seconds-before-status-checks", "2",
         "--slurm-logdir", str(tmp / "slurm_logs"), "--jobs", "4"],
        cwd=REPO, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-5000:]
    return tmp / "results"


def _job_state(job_id: str) -> str:
    out = subprocess.run(["squeue", "--states=all", "--noheader", "-o", "%T", "-j", job_id], capture_output=True,
                         text=True).stdout.strip()
    return out


def test_every_job_ran_under_slurm_and_the_leaderboard_came_out(slurm_run):
    board = pd.read_csv(slurm_run / "leaderboard.csv")
    assert set(board["method"]) == {"scratch", "crosspoint"} and (board["status"] == "ok").all()
    job_ids = set()
    for path in slurm_run.glob("synthetic_nuscenes/segmentation/native/*/*/seed0/metrics.json"):
        job = json.loads(path.read_text())["provenance"]["slurm_job_id"]
        assert job and job.isdigit()
        job_ids.add(job)
    pre = json.loads((slurm_run / "synthetic_nuscenes" / "pretrain" / "crosspoint" / "pretrain.json").read_text())
    assert pre["status"] == "ok" and pre["provenance"]["slurm_job_id"].isdigit()
    job_ids.add(pre["provenance"]["slurm_job_id"])
    assert len(job_ids) == 3  # two finetuning jobs and one pretraining job, each its own allocation
    for job in job_ids:
        assert _job_state(job) == "COMPLETED"


def test_gpu_request_went_through_gres(slurm_run):
    job = json.loads((slurm_run / "synthetic_nuscenes" / "pretrain" / "crosspoint" / "pretrain.json").read_text())[
        "provenance"]["slurm_job_id"]
    out = subprocess.run(["scontrol", "show", "job", job], capture_output=True, text=True).stdout
    assert "gres/gpu=1" in out or "gres:gpu:1" in out or "gpu:1" in out, out
