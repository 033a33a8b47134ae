"""The tests' DAG with ``engines.detection: openpcdet``: Snakemake runs detection through the user's
OpenPCDet (a temporary copy of the shared one), a few steps per cell, and the OpenPCDet-scored rows
reach the leaderboard like native ones.

OpenPCDet runs with the interpreter ``$OPENPCDET_PYTHON`` names, which here is a wrapper that puts
the CPU stand-ins on that process's PYTHONPATH: only OpenPCDet's processes load them, not the DAG's
own jobs."""
import os
import subprocess
import sys

import pandas as pd
import pytest

from openpcdet_cpu.harness import HERE, openpcdet_root
from repo_copy import copy_repo

METHODS = ["scratch", "crosspoint"]


@pytest.fixture(scope="module")
def dag(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("opc_dag")
    repo = copy_repo(tmp / "repo")
    root = openpcdet_root(tmp / "OpenPCDet")
    wrapper = tmp / "openpcdet-python"
    wrapper.write_text(f'#!/bin/sh\nPYTHONPATH="{HERE}${{PYTHONPATH:+:$PYTHONPATH}}" exec "{sys.executable}" "$@"\n')
    wrapper.chmod(0o755)
    results = tmp / "results"
    cmd = [sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--configfile", ".test/config.yaml",
           "--config", f"results_dir={results}", "tasks=[detection]", f"methods=[{', '.join(METHODS)}]",
           "fractions=[1.0]", "engines={detection: openpcdet}", f"openpcdet={{root: {root}, workers: 0}}"]
    res = subprocess.run(cmd, cwd=repo, capture_output=True, text=True, timeout=1800,
                         env={**os.environ, "OPENPCDET_PYTHON": str(wrapper)})
    assert res.returncode == 0, res.stderr[-4000:]
    return {"results": results, "root": root}


def test_openpcdet_scored_rows_reach_the_leaderboard(dag):
    board = pd.read_csv(dag["results"] / "leaderboard.csv")
    det = board[board["task"] == "detection"]
    assert sorted(det["method"]) == sorted(METHODS)
    assert (det["engine"] == "openpcdet").all() and (det["status"] == "ok").all(), det[["method", "reason"]]
    assert det["primary_metric"].eq("mAP").all() and det["primary_value"].between(0, 100).all()
    assert det["metrics.openpcdet_template"].eq("nuscenes_centerpoint").all()
    assert (det["metrics.openpcdet_iterations"] == det["recipe.iterations"]).all()
    pre = det[det["method"] == "crosspoint"].iloc[0]
    assert pre["init.backbone_3d.loaded"] == 142 and pre["init.openpcdet.loaded"] == 142
    for _, row in det.iterrows():   # each row's number is OpenPCDet's own evaluation of that cell
        log = open(row["metrics.openpcdet_log"]).read()
        assert str(dag["root"]) in row["metrics.openpcdet_log"] and "EPOCH 1 EVALUATION" in log
    table = pd.read_csv(dag["results"] / "leaderboard_synthetic_nuscenes_detection.csv")
    assert sorted(table["method"]) == sorted(METHODS) and "100%" in table.columns
