"""OpenPCDet's tools/train.py itself, started by the engine as a cluster job would start it (one
process, the configured Python, CPU stand-ins loaded through sitecustomize by this test only),
trains the recipe's steps from our checkpoint and evaluates; the cell's metrics.json becomes a
leaderboard row. And the multi-GPU launch: torchrun reaches train.py's and test.py's process-group
set-up with the ranks it hands over."""
import json
import subprocess
import sys

import pandas as pd
import pytest

from openpcdet_cpu.harness import openpcdet_root, pretrain_record, subprocess_env, write_checkpoint


@pytest.fixture(scope="module")
def install(tmp_path_factory):
    return openpcdet_root(tmp_path_factory.mktemp("opc_train") / "OpenPCDet")


@pytest.fixture(scope="module")
def cell(install, tiny_index, test_config, tmp_path_factory):
    """One openpcdet cell through run_finetune, as the DAG's finetune rule runs it."""
    from xmbench.finetune import run_finetune
    from xmbench.splits import select, write_split
    from xmbench.tasks import load_task

    import os

    tmp = tmp_path_factory.mktemp("opc_cell")
    index = json.loads(tiny_index["index"].read_text())
    split = tmp / "split.txt"
    write_split(split, select([f for f in index["frames"] if f["split"] == "train"], 0.5, 0))
    ckpt = write_checkpoint(tmp / "checkpoint.pth", test_config["model"])
    cfg = {**test_config, "openpcdet": {"root": str(install), "workers": 0}}
    out = tmp / "results" / "synthetic_nuscenes" / "detection" / "openpcdet" / "crosspoint" / "50pct" / "seed0"
    old = dict(os.environ)
    os.environ.update(subprocess_env())
    try:
        rec = run_finetune(load_task("detection"), "openpcdet", cfg, "synthetic_nuscenes", "crosspoint", 0.5, 0,
                           tiny_index["index"], tiny_index["labels"], split,
                           pretrain_record(tmp / "pretrain.json", ckpt), out)
    finally:
        os.environ.clear()
        os.environ.update(old)
    return {"rec": rec, "out": out, "tmp": tmp, "ckpt": ckpt, "install": install}


def test_train_py_trains_the_recipe_from_our_checkpoint_and_evaluates(cell):
    rec = cell["rec"]
    assert rec["status"] == "ok", rec["reason"]
    assert rec["engine"] == "openpcdet"
    m = rec["metrics"]
    assert rec["init"]["backbone_3d"] == {"loaded": 142, "total": 142, "pretrained": True}
    assert rec["init"]["openpcdet"]["loaded"] == 142
    assert m["openpcdet_iterations"] == rec["recipe"]["iterations"] and m["openpcdet_epochs"] == 1
    assert "adam_onecycle" in m["openpcdet_schedule"]
    assert {"construction_vehicle", "trailer"} <= set(m["split_missing_classes"])
    log = open(m["openpcdet_log"]).read()
    # OpenPCDet's own log: the recipe's steps at the recipe's batch, the loaded checkpoint, its evaluation
    assert f"Train:    1/1 (100%) [   {rec['recipe']['iterations'] - 1}/{rec['recipe']['iterations']}" in log
    assert "==> Done (loaded 142/" in log and "TORCH_FORCE" not in log
    losses = [float(x) for x in __import__("re").findall(r"Loss: ([0-9.]+) \(", log)]
    assert losses and all(v == v and v > 0 for v in losses)
    if m.get("prediction_empty"):
        assert m["mean_ap"] == 0.0 and "no box" in m["note"]
    else:
        summary = json.loads(open(m["metrics_summary"]).read())
        assert m["mean_ap"] == pytest.approx(summary["mean_ap"]) and m["nds"] == pytest.approx(summary["nd_score"])
    assert rec["primary_metric"]["value"] == pytest.approx(100 * m["mean_ap"])
    cmd = (cell["out"] / "openpcdet" / "command.txt").read_text()
    assert f"{sys.executable} train.py" in cmd and "--pretrained_model" in cmd


def test_the_openpcdet_cell_becomes_a_leaderboard_row(cell, tmp_path):
    from xmbench.results import build_results

    build_results([cell["out"] / "metrics.json"], tmp_path / "results", plots=False)
    board = pd.read_csv(tmp_path / "results" / "leaderboard.csv")
    row = board.iloc[0]
    assert row["engine"] == "openpcdet" and row["status"] == "ok" and row["method"] == "crosspoint"
    assert row["primary_value"] == pytest.approx(cell["rec"]["primary_metric"]["value"])
    table = pd.read_csv(next((tmp_path / "results").glob("leaderboard_synthetic_nuscenes_detection*.csv")))
    assert list(table["method"]) == ["crosspoint"]


def test_an_openpcdet_failure_is_reported_by_its_error_line(tmp_path):
    """The cell's reason is the exception line of the failing process's traceback, not the output's
    last line (torch's documentation hint was all that was shown before)."""
    from xmbench.detection import openpcdet as opc
    from xmbench.errors import BenchError

    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "train.py").write_text(
        "import sys\ndef build():\n    raise KeyError('construction_vehicle')\n"
        "try:\n    build()\nfinally:\n    print('For more information see https://pytorch.org/docs', file=sys.stderr)\n")
    with pytest.raises(BenchError) as err:
        opc.run([sys.executable, "train.py"], tmp_path, tmp_path / "stdout.log")
    msg = str(err.value)
    assert "train.py exited with 1: KeyError: 'construction_vehicle'" in msg and "pytorch.org" not in msg
    assert "\n" not in msg and str(tmp_path / "stdout.log") in msg


def test_torchrun_reaches_openpcdets_distributed_setup_with_each_rank(cell, tmp_path):
    """The adapter's multi-GPU commands for train.py and test.py: two processes each, parsing the
    arguments and starting the process group with the rank torchrun hands over (gloo on this CPU);
    dist_train.sh's launcher fails there with 'unrecognized arguments: --local-rank=0'."""
    from xmbench.detection import openpcdet as opc

    cfg_file = next((cell["out"] / "openpcdet" / "cfgs").glob("*.yaml"))
    ckpt = cell["ckpt"]
    commands = {"train.py": opc.train_command(cfg_file, "ddp", 2, 1, gpus=2, pretrained=ckpt, workers=0),
                "test.py": opc.eval_command(cfg_file, "ddp", 2, ckpt, gpus=2, workers=0)}
    tests_dir = str(subprocess_env()["PYTHONPATH"].split(":")[0].rsplit("/", 1)[0])
    procs = {}
    for script, cmd in commands.items():
        probe = tmp_path / script
        probe.mkdir()
        # stop each rank right after OpenPCDet's init_dist_pytorch, recording what it got
        (probe / "sitecustomize.py").write_text(
            "import sys\n"
            f"sys.path.insert(0, {tests_dir!r})\n"
            "from openpcdet_cpu import standin\n"
            "standin.install()\n"
            "import pcdet.utils.common_utils as cu\n"
            "real = cu.init_dist_pytorch\n"
            "def probe(tcp_port, local_rank, backend='nccl'):\n"
            "    n, rank = real(tcp_port, local_rank, backend)\n"
            f"    open({str(probe)!r} + f'/rank{{rank}}', 'w').write(f'{{n}} {{local_rank}} {{sys.argv[0]}}')\n"
            "    raise SystemExit(0)\n"
            "cu.init_dist_pytorch = probe\n")
        env = {**__import__("os").environ, "PYTHONPATH": f"{probe}:{cell['install']}", "XMB_OPC_CPU_DIST": "1"}
        procs[script] = subprocess.Popen(cmd, cwd=cell["install"] / "tools", env=opc.openpcdet_env(env),
                                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for script, proc in procs.items():
        out, _ = proc.communicate()
        assert proc.returncode == 0, out[-3000:]
        got = sorted(p.read_text() for p in (tmp_path / script).glob("rank*"))
        assert got == [f"2 0 {script}", f"2 1 {script}"]
