"""What a user can get wrong, each refused in one line naming the file or field and the fix.

These were silent wrong results once (issue 14): a checkpoint changed after pretraining, a split
without its hash, a metrics.json in another cell's folder, a full disk, an empty results_dir, a
duplicated key, list values from the command line, a bad val lidarseg file, the cost of a resumed
cell, and a job left training after Snakemake was killed.
"""
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from xmbench import cli, finetune
from xmbench.atomic import sha256_file, write_json
from xmbench.attempts import Attempts
from xmbench.config import check_config, load_config, load_yaml
from xmbench.dag import make_plan
from xmbench.errors import BenchError
from xmbench.inputs import check_val_lidarseg, pretrained_checkpoint
from xmbench.splits import read_split, write_split
from xmbench.tasks import TaskSpec, load_task

REPO = Path(__file__).resolve().parent.parent


def _one_line(msg: str) -> str:
    assert "\n" not in msg and "Traceback" not in msg, msg
    return msg


def _cfg(test_config, **over):
    cfg = yaml.safe_load(yaml.safe_dump(test_config))
    cfg.update(over)
    return cfg


# --------------------------------------------------------------------------- config fields

@pytest.mark.parametrize("value", ["", "/", "."])
def test_results_dir_must_name_a_folder(test_config, value):
    with pytest.raises(BenchError) as err:
        check_config(_cfg(test_config, results_dir=value), "cfg.yaml")
    assert _one_line(str(err.value)).startswith("cfg.yaml: field 'results_dir'")


def test_a_duplicated_yaml_key_is_refused_naming_key_and_lines(tmp_path):
    path = tmp_path / "cfg.yaml"
    text = (REPO / ".test" / "config.yaml").read_text()
    path.write_text(text + "fractions: [0.1]\n")  # a second 'fractions' would silently win
    with pytest.raises(BenchError) as err:
        load_config(path)
    msg = _one_line(str(err.value))
    assert str(path) in msg and "duplicate key 'fractions'" in msg and "keep one" in msg


def test_the_dag_refuses_a_duplicated_key_in_its_configfile(tmp_path, test_config):
    """Snakemake's own loader keeps the last key: the Snakefile re-reads its config files to refuse it."""
    path = tmp_path / "cfg.yaml"
    path.write_text((REPO / ".test" / "config.yaml").read_text().replace("seeds: [0]\n", "seeds: [0]\nseeds: [1]\n"))
    with pytest.raises(BenchError, match="duplicate key 'seeds'"):
        make_plan(yaml.safe_load(path.read_text()), [path])


def _from_command_line(test_config, *entries):
    from snakemake.cli import parse_config  # exactly how `--config key=value` reaches the Snakefile

    return check_config({**test_config, **parse_config(list(entries))}, "cfg")


def test_list_values_are_settable_from_the_command_line(test_config):
    cfg = _from_command_line(test_config, "fractions=[0.5, 1]", "seeds=[0, 2]", "strict=true",
                             "cluster={partition: gpu, account: null}")
    assert cfg["fractions"] == [0.5, 1.0] and cfg["seeds"] == [0, 2] and cfg["strict"] is True
    assert cfg["cluster"] == {"partition": "gpu", "account": None}
    assert cfg["methods"] == test_config["methods"]  # strings stay strings


@pytest.mark.parametrize("entry,field", [
    ("fractions=[half]", "fractions.0"),
    ("fractions=[1.5]", "fractions.0"),
    ("seeds=[-1]", "seeds.0"),
    ("strict=maybe", "strict"),
    ("threads=0", "threads"),
])
def test_a_bad_command_line_value_names_its_field(test_config, entry, field):
    with pytest.raises(BenchError) as err:
        _from_command_line(test_config, entry)
    assert _one_line(str(err.value)).startswith(f"cfg: field '{field}'")


def test_a_misspelt_top_level_field_is_named(test_config):
    cfg = _cfg(test_config, method=["scratch"])
    with pytest.raises(BenchError) as err:
        check_config(cfg, "cfg.yaml")
    assert "'method'" in _one_line(str(err.value))


def test_defaults_come_from_the_schema(test_config):
    cfg = {k: v for k, v in test_config.items() if k not in ("threads", "strict", "cluster", "engines")}
    out = check_config(cfg, "cfg")
    assert (out["threads"], out["strict"], out["engines"]) == (1, False, {})
    assert out["cluster"] == {"partition": None, "account": None}


# --------------------------------------------------------------------------- split files

def test_a_split_without_its_hash_file_is_refused(tmp_path):
    path = tmp_path / "100pct.txt"
    write_split(path, ["a" * 32, "b" * 32])
    (tmp_path / "100pct.txt.sha256").unlink()
    path.write_text("a" * 32 + "\n")  # half the frames: must not pass as the 100% split
    with pytest.raises(BenchError) as err:
        read_split(path)
    msg = _one_line(str(err.value))
    assert msg.startswith(str(path)) and "100pct.txt.sha256" in msg and "label_split" in msg


def test_a_stale_hash_file_is_refused(tmp_path):
    path = tmp_path / "50pct.txt"
    write_split(path, ["a" * 32])
    (tmp_path / "50pct.txt.sha256").write_text("0" * 64 + "  50pct.txt\n")
    with pytest.raises(BenchError, match="sha256 mismatch with 50pct.txt.sha256"):
        read_split(path)


def test_an_empty_split_file_is_refused(tmp_path):
    path = tmp_path / "10pct.txt"
    write_split(path, [])
    with pytest.raises(BenchError, match="no frame token"):
        read_split(path)


# --------------------------------------------------------------------------- checkpoints

def _pretrained(folder: Path, data: bytes = b"weights") -> Path:
    folder.mkdir(parents=True)
    (folder / "checkpoint.pth").write_bytes(data)
    record = folder / "pretrain.json"
    write_json(record, {"status": "ok", "checkpoint": "checkpoint.pth",
                        "checkpoint_sha256": sha256_file(folder / "checkpoint.pth")})
    return record


def test_a_checkpoint_changed_after_pretraining_is_refused(tmp_path):
    record = _pretrained(tmp_path / "crosspoint")
    (tmp_path / "crosspoint" / "checkpoint.pth").write_bytes(b"\0" * 7)  # zeroed
    with pytest.raises(BenchError) as err:
        pretrained_checkpoint(record, json.loads(record.read_text()))
    msg = _one_line(str(err.value))
    assert "checkpoint.pth: changed since pretraining" in msg and "pretrain.json" in msg


def test_a_copied_results_folder_uses_its_own_checkpoint(tmp_path):
    original = _pretrained(tmp_path / "a" / "crosspoint")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    shutil.rmtree(tmp_path / "a")
    copy = tmp_path / "b" / "crosspoint" / "pretrain.json"
    path, _ = pretrained_checkpoint(copy, json.loads(copy.read_text()))
    assert path == copy.parent / "checkpoint.pth" and not original.exists()


def test_a_missing_checkpoint_is_named_with_its_record(tmp_path):
    record = _pretrained(tmp_path / "m")
    (tmp_path / "m" / "checkpoint.pth").unlink()
    with pytest.raises(BenchError) as err:
        pretrained_checkpoint(record, json.loads(record.read_text()))
    assert "checkpoint missing" in _one_line(str(err.value)) and str(record) in str(err.value)


def test_pretraining_records_its_checkpoint_relative_to_the_record():
    """cmd_pretrain writes the path with os.path.relpath: a record never names another folder."""
    import inspect

    src = inspect.getsource(cli.cmd_pretrain)
    assert "os.path.relpath" in src and "ckpt.resolve())," not in src


def test_finetuning_from_a_changed_checkpoint_fails_before_training(tiny_index, test_config, tmp_path, monkeypatch):
    record = _pretrained(tmp_path / "pre")
    (tmp_path / "pre" / "checkpoint.pth").write_bytes(b"changed")
    split = tmp_path / "100pct.txt"
    write_split(split, [f["token"] for f in json.loads(tiny_index["index"].read_text())["frames"]
                        if f["split"] == "train"])
    monkeypatch.setattr(TaskSpec, "engine", lambda self, name=None: pytest.fail("the engine must not start"))
    rec = finetune.run_finetune(load_task("segmentation"), "native", test_config, "synthetic_nuscenes", "crosspoint",
                                1.0, 0, tiny_index["index"], tiny_index["labels"], split, record, tmp_path / "cell")
    assert rec["status"] == "failed" and "changed since pretraining" in rec["reason"]


# --------------------------------------------------------------------------- dataset files

@pytest.fixture
def dataset_copy(tiny_index, tmp_path):
    """The tiny dataset and its index, copied so a test may break a file."""
    root = tmp_path / "data"
    shutil.copytree(tiny_index["dataroot"], root)
    index = json.loads(tiny_index["index"].read_text())
    index["dataroot"] = str(root)
    (tmp_path / "index.json").write_text(json.dumps(index))
    labels = json.loads(tiny_index["labels"].read_text())
    val = next(f for f in index["frames"] if f["split"] == "val" and labels["frames"][f["token"]]["lidarseg_path"])
    return {"index": tmp_path / "index.json", "labels": tiny_index["labels"], "root": root,
            "seg": root / labels["frames"][val["token"]]["lidarseg_path"], "index_obj": index, "labels_obj": labels}


def test_a_bad_val_lidarseg_file_is_refused_before_training(dataset_copy, test_config, tmp_path, monkeypatch):
    seg = dataset_copy["seg"]
    seg.write_bytes(seg.read_bytes()[:-3])  # three labels short of its cloud
    split = tmp_path / "100pct.txt"
    write_split(split, [f["token"] for f in dataset_copy["index_obj"]["frames"] if f["split"] == "train"])
    monkeypatch.setattr(TaskSpec, "engine", lambda self, name=None: pytest.fail("the engine must not start"))
    rec = finetune.run_finetune(load_task("segmentation"), "native", test_config, "synthetic_nuscenes", "scratch",
                                1.0, 0, dataset_copy["index"], dataset_copy["labels"], split, None, tmp_path / "cell")
    assert rec["status"] == "failed"
    assert str(seg) in _one_line(rec["reason"]) and "does not belong to this cloud or is truncated" in rec["reason"]


def test_a_missing_val_lidarseg_file_is_named(dataset_copy):
    dataset_copy["seg"].unlink()
    with pytest.raises(BenchError) as err:
        check_val_lidarseg(dataset_copy["index_obj"], dataset_copy["labels_obj"])
    assert str(dataset_copy["seg"]) in _one_line(str(err.value)) and "missing" in str(err.value)


def test_intact_val_labels_pass_the_check(dataset_copy):
    assert check_val_lidarseg(dataset_copy["index_obj"], dataset_copy["labels_obj"]) > 0


# --------------------------------------------------------------------------- nuScenes tables

def _edit_table(version_dir: Path, name: str, edit) -> None:
    path = version_dir / f"{name}.json"
    recs = json.loads(path.read_text())
    edit(recs)
    path.write_text(json.dumps(recs))


def _first(field, value=None, drop=False):
    def edit(recs):
        rec = next(r for r in recs if field in r)
        if drop:
            del rec[field]
        else:
            rec[field] = value
    return edit


def _cam_record(recs):   # a camera's calibration: the devkit indexes it, only our walk reads its intrinsic
    del next(r for r in recs if r["camera_intrinsic"])["camera_intrinsic"]


TABLE_FAULTS = {
    "truncated": ("sample", None, "sample.json: not valid JSON"),
    "missing": ("ego_pose", None, "ego_pose.json: nuScenes table missing"),
    "dangling token": ("sample_data", _first("calibrated_sensor_token", "0" * 32),
                       "which calibrated_sensor.json does not hold"),
    "field the devkit indexes": ("sample_annotation", _first("instance_token", drop=True),
                                 "sample_annotation.json: record"),
    "field only the walk reads": ("calibrated_sensor", _cam_record, "lacks field 'camera_intrinsic'"),
}


@pytest.mark.parametrize("fault", sorted(TABLE_FAULTS))
def test_a_broken_nuscenes_table_is_one_line_naming_it(fault, tiny_index, tmp_path, test_config):
    """nuscenes-devkit reports these as bare JSONDecodeError / KeyError tracebacks naming no file."""
    root = tmp_path / "data"
    shutil.copytree(tiny_index["dataroot"], root)
    version_dir = root / test_config["datasets"]["synthetic_nuscenes"]["version"]
    table, edit, expected = TABLE_FAULTS[fault]
    path = version_dir / f"{table}.json"
    if fault == "truncated":
        path.write_bytes(path.read_bytes()[:-40])
    elif fault == "missing":
        path.unlink()
    else:
        _edit_table(version_dir, table, edit)
    out = tmp_path / "index"
    res = subprocess.run([sys.executable, "-m", "xmbench.cli", "index", "--config", str(tiny_index["config"]),
                          "--dataset", "synthetic_nuscenes", "--root", str(root), "--index", str(out / "index.json"),
                          "--labels", str(out / "labels.json")], capture_output=True, text=True, cwd=REPO)
    assert res.returncode != 0
    line = _one_line(res.stderr.strip())
    assert line.startswith(f"error: {version_dir}") and expected in line, line
    assert "re-download" in line
    assert not out.exists() or not list(out.iterdir())   # nothing half written


# --------------------------------------------------------------------------- hand-edited metrics

def _metrics(cell_dir: Path, method="crosspoint", fraction=1.0, value=50.0) -> Path:
    rec = {"status": "ok", "reason": None, "dataset": "synthetic_nuscenes", "task": "segmentation", "engine": "native",
           "method": method, "fraction": fraction, "draw": 0, "seed": 0,
           "primary_metric": {"name": "mIoU", "unit": "%", "value": value}, "metrics": {"miou": value / 100}}
    write_json(cell_dir / "metrics.json", rec)
    return cell_dir / "metrics.json"


def test_a_metrics_file_copied_into_the_wrong_cell_is_failed_there(tmp_path):
    from xmbench.results import load_runs

    base = tmp_path / "synthetic_nuscenes" / "segmentation" / "native"
    real = _metrics(base / "crosspoint" / "100pct" / "seed0")
    wrong = base / "scratch" / "100pct" / "seed0" / "metrics.json"
    wrong.parent.mkdir(parents=True)
    shutil.copy(real, wrong)
    df = load_runs([real, wrong])
    assert len(df) == 2
    mine = df[df["method"] == "crosspoint"]
    assert len(mine) == 1 and mine["status"].eq("ok").all()  # counted once, not twice
    other = df[df["method"] == "scratch"].iloc[0]  # the folder's cell, failed with the reason
    assert other["status"] == "failed" and "copied or moved here" in _one_line(other["reason"])
    assert str(wrong) in other["reason"]


def test_the_end_of_run_summary_flags_a_metrics_file_in_the_wrong_cell(tmp_path, test_config):
    from xmbench import failures, grid

    cfg = check_config(_cfg(test_config, results_dir=str(tmp_path), methods=["scratch"], tasks=["segmentation"],
                            fractions=[1.0]), "cfg")
    (cell,) = grid.cells(cfg)
    _metrics(cell.out_dir(tmp_path), method="crosspoint")
    failed = failures.failed_jobs(tmp_path, [cell], {})
    assert len(failed) == 1 and "copied or moved here" in failed[0][1]


# --------------------------------------------------------------------------- full disk

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device", str(args[0]) if args else None)


def test_on_a_full_disk_the_failure_handler_still_writes_the_record(tmp_path, test_config, tiny_index, monkeypatch):
    monkeypatch.setattr(finetune, "write_text", _enospc)  # the traceback does not fit
    rec = finetune.run_finetune(load_task("segmentation"), "native", test_config, "synthetic_nuscenes", "scratch",
                                1.0, 0, tiny_index["index"], tiny_index["labels"], tmp_path / "missing.txt", None,
                                tmp_path / "cell")
    assert rec["status"] == "failed" and "split file missing" in rec["reason"]
    assert "traceback not written: No space left on device" in rec["reason"]
    assert json.loads((tmp_path / "cell" / "metrics.json").read_text())["status"] == "failed"
    assert [p.name for p in (tmp_path / "cell").iterdir()] == ["metrics.json"]  # no temp file left


def test_a_full_disk_is_one_line_naming_the_file(tmp_path, tiny_index, monkeypatch, capsys):
    import xmbench.splits

    monkeypatch.setattr(xmbench.splits, "write_text", _enospc)
    out = tmp_path / "10pct.txt"
    code = cli.main(["split", "--config", str(tiny_index["config"]), "--index", str(tiny_index["index"]),
                     "--fraction", "0.1", "--out", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 1 and _one_line(err).startswith(f"error: {out}: No space left on device")
    assert "free space" in err and not out.exists()


# --------------------------------------------------------------------------- resumes and kills

def test_the_cost_of_a_resumed_cell_counts_every_attempt(tmp_path, test_config, tiny_index, monkeypatch):
    """Attempt 1 is interrupted after a while (as a kill would), attempt 2 finishes: both are paid."""
    import types

    split = tmp_path / "100pct.txt"
    write_split(split, [f["token"] for f in json.loads(tiny_index["index"].read_text())["frames"]
                        if f["split"] == "train"])
    state = {"n": 0}

    def fake_finetune(ctx):
        state["n"] += 1
        time.sleep(0.6)
        if state["n"] == 1:
            raise KeyboardInterrupt  # not an Exception: the cell writes nothing, as under SIGKILL
        return {"metrics": {"miou": 0.5}, "init": None}

    engine = types.SimpleNamespace(finetune=fake_finetune)
    monkeypatch.setattr(TaskSpec, "engine", lambda self, name=None: (name, engine))
    args = (load_task("segmentation"), "native", test_config, "synthetic_nuscenes", "scratch", 1.0, 0,
            tiny_index["index"], tiny_index["labels"], split, None, tmp_path / "cell")
    with pytest.raises(KeyboardInterrupt):
        finetune.run_finetune(*args)
    assert not (tmp_path / "cell" / "metrics.json").exists()
    rec = finetune.run_finetune(*args)
    cost = rec["cost"]
    assert rec["status"] == "ok" and cost["attempts"] == 2
    assert cost["wall_seconds"] >= cost["last_attempt_seconds"] + 0.5
    assert not (tmp_path / "cell" / "attempts.json").exists()  # a later re-run starts from zero


def test_another_runs_attempts_are_not_counted(tmp_path):
    Attempts(tmp_path, "recipe-a", every_s=60).start().stop()
    assert Attempts(tmp_path, "recipe-b").previous_n == 0
    assert Attempts(tmp_path, "recipe-a").previous_n == 1


def test_killing_the_parent_ends_the_job(tmp_path):
    """Snakemake runs `exec python -m xmbench.cli ...`; SIGKILL of Snakemake must not leave it training."""
    fifo = tmp_path / "config.fifo"
    os.mkfifo(fifo)
    parent = subprocess.Popen([sys.executable, "-c", (
        "import subprocess, sys, time\n"
        f"job = subprocess.Popen(['bash', '-c', 'exec {sys.executable} -m xmbench.cli split --config {fifo} "
        f"--index x --out {tmp_path}/o.txt --fraction 0.5'], cwd={str(REPO)!r})\n"
        f"w = open({str(fifo)!r}, 'w')  # returns once the job has opened it: it is past its start-up\n"
        "print(job.pid, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True)
    job = int(parent.stdout.readline())
    assert Path(f"/proc/{job}").exists()
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    for _ in range(300):  # the job is blocked reading its config: only the parent's death can end it
        if not Path(f"/proc/{job}").exists() or "State:\tZ" in Path(f"/proc/{job}/status").read_text():
            break
        time.sleep(0.1)
    else:
        os.kill(job, signal.SIGKILL)
        pytest.fail("the job outlived its parent")


def test_every_rule_execs_its_command(tmp_path):
    """What makes the previous test's parent Snakemake itself: no shell stays between them."""
    from repo_copy import copy_repo

    repo = copy_repo(tmp_path / "repo")
    res = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--configfile", ".test/config.yaml",
                          "--config", "results_dir=results/t"], cwd=repo, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    cmds = [ln.removeprefix("Shell command: ") for ln in res.stdout.splitlines() if ln.startswith("Shell command: ")]
    cmds = [c for c in cmds if c != "None"]
    assert cmds and all(c.startswith("exec ") for c in cmds), cmds
