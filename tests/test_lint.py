"""The Snakefile holds rules only: `snakemake --lint` is clean, every rule names its software
environment, and planning writes nothing."""
import os
import subprocess
import sys
import types

import pytest
from repo_copy import copy_repo

from xmbench.dag import RESOURCE_KEYS, conda_env, job_resources, slurm_resources, write_resolved_config

FAKE_CONDA = """#!/bin/sh
case "$1" in
  --version) echo "conda 24.7.1";;
  info) echo '{"conda_prefix": "/nonexistent", "envs_dirs": ["/nonexistent/envs"], "platform": "linux-64"}';;
  config) echo '{"get": {"channel_priority": "strict"}}';;
  *) echo "fake conda cannot $*" >&2; exit 1;;
esac
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    return copy_repo(tmp_path_factory.mktemp("lint") / "repo")


def _snakemake(repo, *args, env=None):
    return subprocess.run([sys.executable, "-m", "snakemake", "--configfile", ".test/config.yaml", *args],
                          cwd=repo, capture_output=True, text=True, timeout=300, env=env)


def test_snakemake_lint_is_clean(repo):
    res = _snakemake(repo, "--lint", "--config", "results_dir=results/t")
    assert res.returncode == 0 and "Lints for" not in res.stdout + res.stderr, res.stdout + res.stderr
    assert not (repo / "results").exists()


def test_a_dry_run_writes_no_resolved_config(repo):
    res = _snakemake(repo, "-n", "--config", "results_dir=results/dry")
    assert res.returncode == 0, res.stderr[-2000:]
    assert not (repo / "results" / "dry").exists()


def test_conda_deployment_plans_every_rule_with_its_environment(repo, tmp_path):
    """`--software-deployment-method conda -n` (a stand-in `conda` answers Snakemake's checks): the
    jobs run the env's own python, never the venv's."""
    (tmp_path / "conda").write_text(FAKE_CONDA)
    (tmp_path / "conda").chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    res = _snakemake(repo, "--sdm", "conda", "-n", "-p", "--config", "results_dir=results/conda", env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "Conda environment envs/main.yaml will be created" in res.stdout + res.stderr
    cmds = [ln for ln in res.stdout.splitlines() if ln.startswith("Shell command: exec ")]
    assert cmds and all(c.startswith("Shell command: exec python -m xmbench.cli") for c in cmds)
    assert sys.executable not in res.stdout


def test_openpcdet_cells_run_in_the_openpcdet_environment(repo):
    choose = conda_env(None, "finetune")
    assert choose(types.SimpleNamespace(engine="openpcdet")) == "envs/openpcdet.yaml"
    assert choose(types.SimpleNamespace(engine="native")) == "envs/main.yaml"
    assert conda_env(None, "pretrain") == "envs/main.yaml"
    for name in ("main", "waymo", "openpcdet"):
        assert (repo / "envs" / f"{name}.yaml").is_file()


def test_resources_come_from_one_helper():
    res = {"gpus": 2, "cpus": 8, "mem_gb": 1.5, "hours": 0.5}
    out = slurm_resources(res, {"partition": "gpu", "account": None})
    assert out == {"cpus_per_task": 8, "mem_mb": 1536, "runtime": 30, "gres": "gpu:2", "slurm_partition": "gpu",
                   "slurm_account": ""}
    per_key = job_resources(lambda wc: out)
    assert sorted(per_key) == sorted(RESOURCE_KEYS) and per_key["gres"](None) == "gpu:2"


def test_the_resolved_config_keeps_its_mtime_when_unchanged(tmp_path):
    path = tmp_path / "config.resolved.json"
    write_resolved_config(path, {"a": 1})
    os.utime(path, (1, 1))
    write_resolved_config(path, {"a": 1})
    assert path.stat().st_mtime == 1  # an unchanged config must not look new to Snakemake
    write_resolved_config(path, {"a": 2})
    assert path.stat().st_mtime > 1
