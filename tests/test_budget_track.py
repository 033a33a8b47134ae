"""The budget track: every method pretrained on the same number of frames, beside its own schedule,
and the two tracks never share a table."""
import json
import math

import pandas as pd
import pytest

from xmbench import grid
from xmbench.config import load_config
from xmbench.cost import cost_rows
from xmbench.methods import load_method
from xmbench.pretraining.loop import settings_for
from xmbench.leaderboard.build import build_results
from tests.conftest import REPO

METHODS = ["scratch", "crosspoint", "simipu", "clap"]


def _cfg(test_config, frames=100):
    return {**test_config, "methods": METHODS, "tasks": ["segmentation"], "fractions": [0.5, 1.0],
            "pretrain": {**test_config["pretrain"], "epochs": None, "budget": {"frames": frames}}}


def test_budget_track_shows_every_method_the_same_frames(test_config):
    cfg = _cfg(test_config, frames=1000)
    seen = {}
    for m in METHODS[1:]:
        spec = load_method(m)
        own = settings_for(spec, cfg, "own", 24)
        budget = settings_for(spec, cfg, "budget", 24)
        assert own.epochs == spec.value("schedule", "epochs")     # the own track keeps the method's schedule
        assert budget.batch_size == own.batch_size                 # only the length changes
        seen[m] = budget.epochs * 24
    assert set(seen.values()) == {math.ceil(1000 / 24) * 24}       # the same frames for every method
    with pytest.raises(Exception, match="pretrain.budget.frames"):
        settings_for(load_method("clap"), test_config, "budget", 24)


def test_grid_has_budget_cells_for_pretrained_methods_only(test_config, tmp_path):
    cfg = _cfg(test_config)
    cells = grid.cells(cfg)
    own = [c for c in cells if c.track == "own"]
    budget = [c for c in cells if c.track == "budget"]
    assert {c.method for c in own} == set(METHODS)
    assert {c.method for c in budget} == set(METHODS) - {"scratch"}
    assert len(budget) == 3 * len(own) // 4
    c = budget[0]
    assert c.metrics_path(tmp_path).parts[-4] == f"{c.method}-budget"
    assert grid.Cell.from_metrics_path(c.metrics_path(tmp_path)) == c
    assert grid.pretrain_record(tmp_path, "d", "clap", "budget") == tmp_path / "d/pretrain/clap-budget/pretrain.json"
    assert grid.table_names(cfg) == [f"synthetic_nuscenes_segmentation{s}" for s in ("", "_budget")]
    assert grid.tracks(test_config) == ["own"]                    # no budget: one track, paths as before


def _write(results, cell, value, split="s0"):
    path = cell.metrics_path(results)
    path.parent.mkdir(parents=True, exist_ok=True)
    rec = {**cell.identity(), "status": "ok", "reason": None,
           "primary_metric": {"name": "mIoU", "unit": "%", "value": value}, "metrics": {"miou": value / 100},
           "provenance": {"split_sha256": f"{split}-{cell.fraction}"}}
    path.write_text(json.dumps(rec))
    return path


def test_tracks_never_share_a_table_and_scratch_is_both_baselines(test_config, tmp_path):
    cfg = {**_cfg(test_config), "seeds": [0, 1], "results_dir": str(tmp_path)}
    paths = []
    for cell in grid.cells(cfg):
        base = {"scratch": 30.0, "crosspoint": 31.0, "simipu": 32.0, "clap": 33.0}[cell.method]
        value = base + (10.0 if cell.track == "budget" else 0.0) + cell.seed * 0.5 + cell.fraction
        paths.append(_write(tmp_path, cell, value))
    df = build_results(paths, tmp_path, config=cfg, plots=False)
    assert set(df["track"]) == {"own", "budget"} and (df["status"] == "ok").all()
    own = pd.read_csv(tmp_path / "leaderboard_synthetic_nuscenes_segmentation.csv").set_index("method")
    budget = pd.read_csv(tmp_path / "leaderboard_synthetic_nuscenes_segmentation_budget.csv").set_index("method")
    assert set(own.index) == set(budget.index) == set(METHODS)
    col = next(c for c in own.columns if c.startswith("mean") and "100%" in c)
    assert own.loc["clap", col] == pytest.approx(33.0 + 0.25 + 1.0)
    assert budget.loc["clap", col] == pytest.approx(43.0 + 0.25 + 1.0)          # budget values only
    assert budget.loc["scratch", col] == own.loc["scratch", col]               # the shared baseline
    gains = pd.read_csv(tmp_path / "gains_synthetic_nuscenes_segmentation_budget.csv")
    g = gains[(gains["method"] == "clap") & (gains["fraction"] == 1.0)]
    assert g["mean_gain"].iloc[0] == pytest.approx(13.0)                       # paired with scratch's own cells
    assert "(budget track)" in (tmp_path / "report.md").read_text()


def test_paper_config_runs_both_tracks_and_costs_them():
    cfg = load_config(REPO / "config" / "paper.yaml")
    assert grid.tracks(cfg) == ["own", "budget"]
    rows = [r for r in cost_rows(cfg) if r["stage"] == "pretrain" and r["dataset"] == "nuscenes"]
    own = {r["method"]: r["gpu_hours"] for r in rows if "(budget)" not in r["method"]}
    budget = {r["method"].split()[0]: r["gpu_hours"] for r in rows if "(budget)" in r["method"]}
    assert set(own) == set(budget)
    for m in own:   # the budget (12 nuScenes epochs) is the shortest own schedule: never more than own
        spec = load_method(m)
        assert budget[m] == pytest.approx(own[m] * 12 / spec.value("schedule", "epochs"))
        assert budget[m] <= own[m] + 1e-9


def test_budget_pretraining_runs_its_frames_and_says_its_track(tiny_index, test_config, tmp_path):
    import torch

    from xmbench.pretraining.loop import Pretrainer

    index = json.loads(tiny_index["index"].read_text())
    n = sum(f["split"] == "train" for f in index["frames"])
    cfg = {**test_config, "pretrain": {"epochs": None, "batch_size": 2, "max_steps_per_epoch": 1,
                                       "budget": {"frames": 2 * n}}}
    ckpt = torch.load(Pretrainer(load_method("crosspoint"), cfg, tiny_index["index"], tmp_path, track="budget").run(),
                      weights_only=False)
    assert ckpt["meta"]["track"] == "budget" and ckpt["meta"]["epochs"] == 2
    rows = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert sorted({r["epoch"] for r in rows}) == [0, 1]
