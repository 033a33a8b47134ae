"""`snakemake --profile profiles/slurm` on a real one-node SLURM cluster started on this machine."""
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
import repo_copy

REPO = Path(__file__).resolve().parent.parent
REFUSAL_S = 10  # the bound for the guard's one-line refusal, on a machine with cores to spare


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return repo_copy.copy_repo(tmp_path_factory.mktemp("slurm_repo") / "repo")


def _start_slurm_profile(repo: Path, tmp: Path, config: list[str], extra=(), env=None):
    """Start the slurm profile as a user would; return (seconds, result)."""
    t0 = time.monotonic()
    res = subprocess.run(
        [sys.executable, "-m", "snakemake", "--profile", "profiles/slurm", "--configfile", ".test/config.yaml",
         "--slurm-logdir", str(tmp / "slurm_logs"), "--config", f"results_dir={tmp}/results", *config, *extra],
        cwd=repo, capture_output=True, text=True, timeout=300, env=env)
    return time.monotonic() - t0, res


@pytest.fixture(scope="module")
def bound_s(repo, tmp_path_factory) -> float:
    """10 s, or on a loaded machine the time Snakemake takes to plan the same DAG here plus 5 s.

    Planning (reading the Snakefile, importing the SLURM plugin, building the DAG) is work every
    start does before any guard can run; under a load of 8 on 2 cores it alone took 15 s. The bound
    still fails a guard that waits on SLURM (the hang it replaces lasted 14.5 minutes)."""
    tmp = tmp_path_factory.mktemp("plan")
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--profile", "profiles/local", "--configfile",
                          ".test/config.yaml", "--config", f"results_dir={tmp}/results"], cwd=repo,
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    return max(REFUSAL_S, time.monotonic() - t0 + 5)


def _refusal(res) -> str:
    lines = [ln for ln in res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode != 0 and len(lines) == 1, res.stderr[-3000:]
    return lines[0]


def test_slurm_profile_without_partition_refuses_in_seconds(repo, tmp_path, bound_s):
    """The guard runs once Snakemake knows the executor (onstart), before any job is submitted."""
    seconds, res = _start_slurm_profile(repo, tmp_path, [])
    line = _refusal(res)
    assert "'cluster.partition'" in line and "--config 'cluster={partition: NAME" in line
    assert seconds < bound_s, (seconds, bound_s)
    assert "trying to guess" not in res.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "slurm_logs").exists()


def test_slurm_profile_without_account_refuses_in_seconds(repo, tmp_path, bound_s):
    seconds, res = _start_slurm_profile(repo, tmp_path, ["cluster={partition: debug}"])
    line = _refusal(res)
    assert "'cluster.account'" in line and "--slurm-no-account" in line and "never guessed" in line
    assert seconds < bound_s, (seconds, bound_s)
    assert not (tmp_path / "results").exists()


def test_a_controller_that_does_not_answer_is_named_not_waited_for(repo, tmp_path, bound_s):
    """An `scontrol` whose ping hangs stands in for a dead controller (its config answers at once, as
    a slurm.conf on disk does): the guard's ping times out and says so in one line."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "scontrol"
    fake.write_text('#!/bin/sh\ncase "$1" in ping) sleep 120;; *) echo "MaxArraySize = 1001";; esac\n')
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    seconds, res = _start_slurm_profile(repo, tmp_path, ["cluster={partition: debug, account: null}"],
                                        ["--slurm-no-account"], env=env)
    line = _refusal(res)
    assert "scontrol ping" in line and "slurmctld" in line
    assert seconds < bound_s + 3, (seconds, bound_s)  # + the guard's 3 s ping
    assert not (tmp_path / "results").exists()


def test_refusal_on_the_test_cluster(slurm_cluster, repo, tmp_path, bound_s):
    """The same refusal with a live controller: the plugin is up and talking, the guard still refuses."""
    seconds, res = _start_slurm_profile(repo, tmp_path, [])
    assert "'cluster.partition'" in _refusal(res) and seconds < bound_s, (seconds, bound_s)


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
