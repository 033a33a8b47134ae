"""A broken method is loud: a summary names it with its reason and traceback; `strict` fails the run."""
import subprocess
import sys
from pathlib import Path

import pytest
from repo_copy import copy_repo

CONFIG = ["--configfile", ".test/config.yaml", "--config", "results_dir=results/t", "fractions=[1.0]",
          "methods=[zz_broken]", "tasks=[segmentation]"]


def _snakemake(repo, *args):
    return subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/local", *CONFIG, *args],
                          cwd=repo, capture_output=True, text=True, timeout=1200)


@pytest.fixture(scope="module")
def broken_run(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("loud") / "repo")
    subprocess.run([sys.executable, "-m", "xmbench.cli", "new-method", "zz_broken"], cwd=repo, check=True,
                   capture_output=True)
    method = repo / "methods" / "zz_broken" / "method.py"
    method.write_text(method.read_text() + "\n\ndef _broken(self, batch):\n"
                      "    raise RuntimeError('deliberately broken for the test')\n\n\nZzBroken.forward = _broken\n")
    return repo, _snakemake(repo)  # strict: true comes from .test/config.yaml


def test_strict_run_exits_non_zero_and_names_the_broken_method(broken_run):
    repo, res = broken_run
    assert res.returncode != 0
    block = res.stderr[res.stderr.index("xmbench: "):]
    assert "2 of 2 jobs FAILED" in block
    line = next(ln for ln in block.splitlines() if ln.strip().startswith("pretrain synthetic_nuscenes/zz_broken"))
    assert "RuntimeError: deliberately broken for the test" in line
    tb = Path(line.split("(traceback: ")[1].rstrip(")"))
    tb = tb if tb.is_absolute() else repo / tb
    assert "deliberately broken" in tb.read_text()
    cell = next(ln for ln in block.splitlines() if "finetune synthetic_nuscenes/segmentation" in ln)
    assert "pretraining of 'zz_broken' failed" in cell
    assert "strict is set" in block


def test_other_outputs_are_still_made_under_strict(broken_run):
    repo, _ = broken_run
    assert (repo / "results" / "t" / "leaderboard.csv").is_file()  # keep-going: the leaderboard ran


def test_without_strict_the_run_succeeds_and_still_prints_the_summary(broken_run):
    repo, _ = broken_run
    res = _snakemake(repo, "strict=false", "--forcerun", "leaderboard")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "xmbench: 2 of 2 jobs FAILED" in res.stderr and "zz_broken" in res.stderr
    assert "strict is set" not in res.stderr


def test_a_target_without_cells_prints_no_summary(broken_run):
    """`snakemake gpu_hours` plans no cell: the broken method's cells are not this run's to report."""
    repo, _ = broken_run
    res = _snakemake(repo, "--", "gpu_hours")
    assert res.returncode == 0, res.stderr[-3000:]
    assert "xmbench:" not in res.stderr and "| **total** |" in res.stdout
