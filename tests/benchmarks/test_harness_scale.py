"""Scale of the harness (pytest-benchmark). pytest runs with --benchmark-disable by default; these
tests time themselves with time.perf_counter and assert their bounds either way, and hand the same
work to the ``benchmark`` fixture (one round) so `pytest --benchmark-enable` records it too.

- Planning the paper configuration extended to every method, task, dataset, fraction and seed
  (`snakemake -n`, thousands of jobs) costs less than 4x Snakemake planning a one-rule workflow
  with as many jobs, both measured in the same run.
- Building the leaderboard (leaderboard.csv, per-task tables, gains, report.md; plots excluded: their
  cost does not grow with the number of runs) from 10,000 metrics.json takes at most twice as long as
  merely reading those files with the standard library (open + json.loads, records kept), measured
  in the same run, best of 5 interleaved rounds so that both see the same machine load. The build
  parses with orjson; the reference stays the stdlib reading a user would write.
"""
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["barrier", "bicycle", "bus", "car", "construction_vehicle", "motorcycle", "pedestrian", "traffic_cone",
           "trailer", "truck", "driveable_surface", "other_flat", "sidewalk", "terrain", "manmade", "vegetation"]


def _once(benchmark, fn):
    out = {}

    def timed():
        t = time.perf_counter()
        out["result"] = fn()
        out["seconds"] = time.perf_counter() - t
    benchmark.pedantic(timed, rounds=1, iterations=1)
    return out["result"], out["seconds"]


def full_paper_config(tmp_path: Path) -> Path:
    """config/paper.yaml with every method and task folder, the embedded dataset beside nuScenes,
    the union of the fractions in METHODS.md's published tables and the paper's, three seeds."""
    cfg = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    default = yaml.safe_load((REPO / "config" / "default.yaml").read_text())
    cfg["methods"] = sorted(p.parent.name for p in (REPO / "methods").glob("*/method.yaml"))
    cfg["tasks"] = sorted(p.parent.name for p in (REPO / "downstream").glob("*/task.yaml"))
    cfg["datasets"]["synthetic_nuscenes"] = default["datasets"]["synthetic_nuscenes"]
    cfg["fractions"] = sorted(set(cfg["fractions"]) | {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0})
    cfg["seeds"] = [0, 1, 2]
    cfg["results_dir"] = str(tmp_path / "results")
    path = tmp_path / "paper_full.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


PLANNING_RATIO = 4.0   # our DAG (several rules, each cell's split, index and pretraining inputs) vs one rule


def _plan_seconds(cmd, cwd) -> tuple[subprocess.CompletedProcess, float]:
    t = time.perf_counter()
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=600)
    return res, time.perf_counter() - t


def test_planning_the_full_paper_grid_costs_a_few_times_a_trivial_workflow_of_its_size(tmp_path, benchmark):
    """`snakemake -n` on the paper grid, against Snakemake planning a one-rule workflow with as many
    jobs, both timed in this run (best of 2, interleaved), so a loaded machine slows both alike."""
    cfg_path = full_paper_config(tmp_path)
    cfg = yaml.safe_load(cfg_path.read_text())
    cfg["openpcdet"] = {**(cfg.get("openpcdet") or {}), "root": str(REPO.parent / "shared" / "OpenPCDet")}
    cfg_path.write_text(yaml.safe_dump(cfg))
    ours = [sys.executable, "-m", "snakemake", "-n", "--cores", "1", "--configfile", str(cfg_path),
            "--config", f"results_dir={tmp_path / 'results'}"]
    (res, _), _ = _once(benchmark, lambda: _plan_seconds(ours, REPO))   # also warms the imports
    assert res.returncode == 0, res.stderr[-3000:]
    total = re.search(r"^total\s+(\d+)\s*$", res.stdout + res.stderr, re.M)
    assert total, (res.stdout + res.stderr)[-2000:]
    n_jobs = int(total.group(1))
    n_finetune = (len(cfg["datasets"]) * len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["fractions"])
                  * len(cfg["seeds"]))
    assert n_jobs >= n_finetune >= 300
    trivial = tmp_path / "trivial"
    trivial.mkdir()
    (trivial / "Snakefile").write_text(f"""N = {n_jobs - 1}
rule all:
    input: expand("out/{{i}}.txt", i=range(N))
rule make:
    output: "out/{{i}}.txt"
    shell: "touch {{output}}"
""")
    reference = [sys.executable, "-m", "snakemake", "-n", "--cores", "1"]
    ours_s, ref_s = [], []
    for _ in range(2):
        ours_s.append(_plan_seconds(ours, REPO)[1])
        ref = _plan_seconds(reference, trivial)
        assert ref[0].returncode == 0, ref[0].stderr[-2000:]
        ref_s.append(ref[1])
    ratio = min(ours_s) / min(ref_s)
    print(f"\nsnakemake -n: {n_jobs} jobs planned in {min(ours_s):.2f} s; a one-rule workflow of "
          f"{n_jobs} jobs in {min(ref_s):.2f} s (ratio {ratio:.2f}, limit {PLANNING_RATIO})")
    assert ratio < PLANNING_RATIO, (f"planning took {ratio:.1f}x a trivial workflow of the same size; if "
                                    "`scontrol show config` hangs here, a slurm.conf names a controller that is down")


def _record(d, t, m, f, s, i):
    v = 30 + 20 * f + (i * 7919 % 100) / 50
    failed = i % 97 == 0
    return {"status": "failed" if failed else "ok", "reason": "RuntimeError: synthetic failure" if failed else None,
            "dataset": d, "task": t, "engine": "native", "method": m, "fraction": f, "seed": s,
            "primary_metric": {"name": "mIoU", "unit": "%", "value": None if failed else v},
            "metrics": {} if failed else {"miou": v / 100, "freq_weighted_iou": 0.7,
                                          "iou_per_class": {c: (v / 100 + k * 0.01) % 1 for k, c in enumerate(CLASSES)}},
            "recipe": {"task": t, "profile": "paper", "fraction": f, "iterations": 6000, "iterations_full": 60000,
                       "iterations_min": 6000, "iterations_exponent": 0.5, "batch_size": 8, "warmup_fraction": 0.02,
                       "optimizer": {"name": "adamw", "lr": 0.002, "weight_decay": 0.01},
                       "augment": {"rotation_deg": 180.0, "scale": [0.95, 1.05], "flip": True}},
            "recipe_hash": "4026958058185e8c", "init": {"loaded": 142, "total": 142},
            "cost": {"wall_seconds": 170.9 + i % 13, "peak_memory_mb": 819.3, "gpu_hours": 0.05},
            "provenance": {"config_hash": "ad1ce65df9c70240", "split_sha256": f"{f:.3f}".ljust(64, "0"),
                           "checkpoint_sha256": None if m == "scratch" else "19c7880be608de13" * 4,
                           "git_commit": "724fc3cf179a4d7ce3e0afe4c9ba780ed6d89272", "git_dirty": False,
                           "packages": {"torch": "2.13.0+cpu", "spconv-cu120": "2.3.6", "nuscenes-devkit": "1.2.0",
                                        "numpy": "1.26.4", "snakemake": "9.27.1", "pandas": "2.3.3"},
                           "python": "3.11.7", "host": "node1", "slurm_job_id": str(1000 + i)}}


@pytest.fixture(scope="module")
def ten_thousand(tmp_path_factory):
    root = tmp_path_factory.mktemp("scale") / "results"
    paths, i = [], 0
    for d in ("nuscenes", "synthetic_nuscenes"):
        for t in ("segmentation", "linear_probe"):
            for m in ("scratch", "crosspoint", "simipu", "clap", "other"):
                for f in (0.01, 0.05, 0.1, 0.25, 1.0):
                    for s in range(100):
                        i += 1
                        p = root / d / t / "native" / m / f"{f * 100:g}pct" / f"seed{s}" / "metrics.json"
                        p.parent.mkdir(parents=True, exist_ok=True)
                        p.write_text(json.dumps(_record(d, t, m, f, s, i), indent=1) + "\n")
                        paths.append(str(p))
    assert len(paths) == 10_000
    return root, paths


def test_leaderboard_from_10000_runs_within_2x_of_reading_them(ten_thousand, benchmark):
    from xmbench.results import build_results

    root, paths = ten_thousand

    def read():
        return [json.loads(Path(p).read_bytes()) for p in paths]

    read()  # page cache warm for both
    best_read = best_build = float("inf")
    for k in range(5):
        t = time.perf_counter()
        records = read()
        best_read = min(best_read, time.perf_counter() - t)
        del records
        t = time.perf_counter()
        board = build_results(paths, root / f"out{k}", plots=False)
        best_build = min(best_build, time.perf_counter() - t)
    _, seconds = _once(benchmark, lambda: build_results(paths, root / "out_bench", plots=False))
    assert len(board) == 10_000 and (board["status"] == "failed").sum() == 10_000 // 97
    assert (root / "out0" / "leaderboard_nuscenes_linear_probe.csv").is_file()
    ratio = best_build / best_read
    print(f"\n10,000 metrics.json: read {best_read:.2f} s, leaderboard {best_build:.2f} s, ratio {ratio:.2f}")
    limit = 2.0  # the bound
    assert ratio <= limit, f"building took {ratio:.2f}x the time of reading (read {best_read:.2f} s, " \
                         f"build {best_build:.2f} s)"


def test_parallel_reading_gives_the_same_columns(ten_thousand):
    from xmbench.results import read_columns

    _, paths = ten_thousand
    import xmbench.results as r

    serial, f1 = read_columns(paths[:600], workers=1)

    old = r.PARALLEL_MIN_FILES
    r.PARALLEL_MIN_FILES = 100
    try:
        parallel, f2 = read_columns(paths[:600], workers=2)
    finally:
        r.PARALLEL_MIN_FILES = old
    assert f1 == f2 and list(serial) == list(parallel)
    assert all(serial[k] == parallel[k] or all((a == b) or (a != a and b != b) for a, b in zip(serial[k], parallel[k]))
               for k in serial)
