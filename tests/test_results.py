"""The results layer: statistics against independent computations, every output file from a small
fabricated set of metrics.json (with a failed and a missing cell), and the linear-probe task."""
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as st

from xmbench import stats
from xmbench.errors import BenchError
from xmbench.cli import main as cli_main
from xmbench.leaderboard.build import build_results
from xmbench.leaderboard.load import expected_grid

REPO = Path(__file__).resolve().parent.parent
PNG = b"\x89PNG\r\n\x1a\n"
CLASSES = ["car", "pedestrian", "driveable_surface", "vegetation"]

# ----------------------------------------------------------------------------- statistics


def test_t_interval_matches_scipy():
    x = [31.2, 33.0, 29.8, 32.4]
    s = stats.summarize(x)
    lo, hi = st.t.interval(0.95, len(x) - 1, loc=np.mean(x), scale=st.sem(x))
    assert s.n == 4 and s.mean == pytest.approx(np.mean(x)) and s.std == pytest.approx(np.std(x, ddof=1))
    assert (s.ci_low, s.ci_high) == (pytest.approx(lo), pytest.approx(hi))
    one = stats.summarize([5.0])
    assert one.n == 1 and one.mean == 5.0 and math.isnan(one.std) and math.isnan(one.ci_low)
    assert stats.summarize([None, float("nan")]).n == 0


def test_welch_by_hand_and_paired_against_scipy():
    a, b = [30.1, 31.5, 29.9], [27.0, 29.4, 28.1, 26.5]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    t = (np.mean(a) - np.mean(b)) / math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (len(a) - 1) + vb ** 2 / (len(b) - 1))
    assert stats.welch_p(a, b) == pytest.approx(2 * st.t.sf(abs(t), df))
    x, y = [30.1, 31.5, 29.9, 33.0], [29.0, 30.2, 30.1, 31.1]
    assert stats.paired_p(np.subtract(x, y)) == pytest.approx(st.ttest_rel(x, y).pvalue)
    assert math.isnan(stats.welch_p([1.0], [2.0, 3.0])) and math.isnan(stats.paired_p([0.4]))


def test_holm_by_hand():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, max(0.06, 0.04*1) = 0.06
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = stats.holm([0.2, float("nan"), 0.5])  # NaN is outside the family (m = 2)
    assert out[0] == pytest.approx(0.4) and math.isnan(out[1]) and out[2] == pytest.approx(0.5)
    assert stats.holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_ranks_share_ties():
    r = stats.rank_methods({"a": [50.0, 51.0, 50.5], "b": [50.2, 51.4, 49.9], "c": [40.0, 41.0, 40.2]})
    assert r["a"]["rank"] == r["b"]["rank"] == 1 and r["a"]["best"] and r["b"]["best"]
    assert r["c"]["rank"] == 3 and not r["c"]["best"]
    r1 = stats.rank_methods({"a": [50.0], "b": [49.0]})  # one seed: means decide, flagged untested
    assert r1["a"]["rank"] == 1 and r1["b"]["rank"] == 2 and r1["b"]["tested"] is False


# ----------------------------------------------------------------------------- fabricated runs

VALUES = {  # method -> fraction -> per-seed mIoU (%)
    "scratch": {0.1: [20.0, 21.0, 22.5], 1.0: [40.0, 41.5, 40.5]},
    "alpha": {0.1: [26.0, 27.5, 27.0], 1.0: [41.0, 42.0, 41.2]},
    "beta": {0.1: [21.0, 23.0, None], 1.0: [40.2, 41.9, "missing"]},  # seed 2: failed, then missing
}
SPLIT = {0.1: "a" * 64, 1.0: "b" * 64}


def _record(method, fraction, seed, value):
    ok = value is not None
    rec = {"status": "ok" if ok else "failed",
           "reason": None if ok else "FileNotFoundError: samples/LIDAR_TOP/x.pcd.bin missing; re-extract it",
           "dataset": "synth", "task": "segmentation", "engine": "native", "method": method,
           "fraction": fraction, "seed": seed,
           "primary_metric": {"name": "mIoU", "unit": "%", "value": value},
           "metrics": {} if not ok else {"miou": value / 100, "freq_weighted_iou": 0.8,
                                         "iou_per_class": {c: (value / 100 + 0.05 * i) % 1 for i, c in
                                                           enumerate(CLASSES)}},
           "recipe": {"task": "segmentation", "fraction": fraction, "iterations": 10},
           "recipe_hash": f"r{fraction}", "init": {"loaded": 0 if method == "scratch" else 142, "total": 142},
           "cost": {"wall_seconds": None if (method, fraction, seed) == ("alpha", 1.0, 0) else 100.0 + seed,
                    "peak_memory_mb": 512.0, "gpu_hours": 0.0},
           "provenance": {"config_hash": "c0ffee", "split_sha256": SPLIT[fraction],
                          "checkpoint_sha256": None if method == "scratch" else "d" * 64,
                          "git_commit": "1234567890abcdef", "git_dirty": False,
                          "packages": {"torch": "2.13.0+cpu", "pandas": "2.3.3"}, "python": "3.11.7",
                          "host": "vm", "slurm_job_id": "4242"}}
    return rec


@pytest.fixture(scope="module")
def fabricated(tmp_path_factory):
    """results/ with 16 ok runs, 1 failed run, 1 missing cell, benchmark TSVs and pretrain records."""
    out = tmp_path_factory.mktemp("fab") / "results"
    expected, paths = [], []
    for m, by_f in VALUES.items():
        for f, vals in by_f.items():
            for seed, v in enumerate(vals):
                p = out / "synth" / "segmentation" / "native" / m / f"{f * 100:g}pct" / f"seed{seed}" / "metrics.json"
                expected.append({"dataset": "synth", "task": "segmentation", "engine": "native", "method": m,
                                 "fraction": f, "seed": seed, "path": str(p)})
                paths.append(p)
                if v == "missing":
                    continue
                p.parent.mkdir(parents=True)
                p.write_text(json.dumps(_record(m, f, seed, v)))
    bench = out / "benchmarks"
    (bench / "finetune").mkdir(parents=True)
    (bench / "finetune" / "synth_segmentation_native_alpha_100pct_seed0.tsv").write_text(
        "s\th:m:s\tmax_rss\tmax_vms\n321.5\t0:05:21\t900.0\t1500.0\n")
    (bench / "pretrain").mkdir(parents=True)
    for m, s in (("alpha", 3600.0), ("beta", 1800.0)):
        (bench / "pretrain" / f"synth_{m}.tsv").write_text(f"s\th:m:s\tmax_rss\n{s}\t1:00:00\t2000.0\n")
        rec = out / "synth" / "pretrain" / m / "pretrain.json"
        rec.parent.mkdir(parents=True)
        rec.write_text(json.dumps({"method": m, "status": "ok", "cost": {"gpu_hours": s / 3600 * 2}}))
    existing = [p for p in paths if p.exists()]
    board = build_results(existing, out, expected=expected, config={"methods": ["scratch", "alpha", "beta"]})
    return out, board


def test_leaderboard_has_every_cell_with_status_cost_and_provenance(fabricated):
    out, board = fabricated
    csv = pd.read_csv(out / "leaderboard.csv")
    assert len(csv) == len(board) == 18
    assert csv["status"].value_counts().to_dict() == {"ok": 16, "failed": 1, "missing": 1}
    failed = csv[csv["status"] == "failed"].iloc[0]
    assert (failed["method"], failed["fraction"], failed["seed"]) == ("beta", 0.1, 2)
    assert "pcd.bin missing" in failed["reason"] and math.isnan(failed["primary_value"])
    missing = csv[csv["status"] == "missing"].iloc[0]
    assert (missing["method"], missing["fraction"], missing["seed"]) == ("beta", 1.0, 2)
    assert "no metrics.json" in missing["reason"]
    for col in ("metrics.iou_per_class.car", "metrics.miou", "cost.wall_seconds", "cost.peak_memory_mb",
                "cost.gpu_hours", "provenance.git_commit", "provenance.git_dirty", "provenance.config_hash",
                "provenance.split_sha256", "provenance.checkpoint_sha256", "provenance.packages.torch",
                "provenance.slurm_job_id", "recipe_hash", "pretrain.wall_seconds", "pretrain.gpu_hours"):
        assert col in csv.columns, col
    # the engine left wall_seconds empty for this run: Snakemake's benchmark TSV fills it
    row = csv[(csv["method"] == "alpha") & (csv["fraction"] == 1.0) & (csv["seed"] == 0)].iloc[0]
    assert row["cost.wall_seconds"] == 321.5 and row["cost.source"] == "snakemake benchmark"
    assert csv.loc[csv["method"] == "alpha", "pretrain.gpu_hours"].eq(2.0).all()
    assert set(csv["method"]) == {"scratch", "alpha", "beta"}  # published methods never become our rows


def test_summary_table_mean_std_n(fabricated):
    out, _ = fabricated
    t = pd.read_csv(out / "leaderboard_synth_segmentation.csv").set_index("method")
    assert list(t.index) == ["scratch", "alpha", "beta"]
    a = VALUES["alpha"][0.1]
    assert t.loc["alpha", "mean@10%"] == pytest.approx(np.mean(a))
    assert t.loc["alpha", "std@10%"] == pytest.approx(np.std(a, ddof=1))
    assert t.loc["alpha", "10%"] == f"{np.mean(a):.2f} ± {np.std(a, ddof=1):.2f}"
    lo, hi = st.t.interval(0.95, 2, loc=np.mean(a), scale=st.sem(a))
    assert (t.loc["alpha", "ci95_low@10%"], t.loc["alpha", "ci95_high@10%"]) == (pytest.approx(lo), pytest.approx(hi))
    assert t.loc["beta", "n@10%"] == 2 and t.loc["beta", "n_failed@10%"] == 1
    assert t.loc["beta", "n@100%"] == 2 and t.loc["beta", "n_missing@100%"] == 1
    assert {"n@10%", "n@100%", "10%", "100%"} <= set(t.columns)


def test_ranks_markdown_and_latex(fabricated):
    out, _ = fabricated
    t = pd.read_csv(out / "leaderboard_synth_segmentation.csv").set_index("method")
    # at 10%: alpha beats scratch and beta clearly (Welch p < 0.05)
    assert t.loc["alpha", "rank@10%"] == 1 and t.loc["scratch", "rank@10%"] > 1
    # at 100%: alpha's lead over beta is not significant with these seeds: they share rank 1
    p = st.ttest_ind(VALUES["alpha"][1.0], VALUES["beta"][1.0][:2], equal_var=False).pvalue
    assert p >= 0.05
    assert t.loc["alpha", "rank@100%"] == t.loc["beta", "rank@100%"] == 1
    md = (out / "leaderboard_synth_segmentation.md").read_text()
    a10 = f"{np.mean(VALUES['alpha'][0.1]):.2f} ± {np.std(VALUES['alpha'][0.1], ddof=1):.2f}"
    s10 = f"{np.mean(VALUES['scratch'][0.1]):.2f} ± {np.std(VALUES['scratch'][0.1], ddof=1):.2f}"
    assert f"**{a10}**" in md and s10 in md and f"**{s10}**" not in md
    assert "| method | 10% labels | 100% labels |" in md and "Welch" in md
    beta_line = next(line for line in md.splitlines() if line.startswith("| beta |"))
    assert "1 failed" in beta_line and "1 missing" in beta_line and "**" in beta_line  # tied at 100%
    tex = (out / "leaderboard_synth_segmentation.tex").read_text()
    assert r"\begin{tabular}{lrr}" in tex and r"\toprule" in tex and r"\textbf{" + a10.replace(" ± ", r" $\pm$ ") in tex
    assert r"10\%" in tex and r"synth\_segmentation" not in tex.split(r"\caption")[0]


def test_gains_paired_with_ci_and_holm(fabricated):
    out, _ = fabricated
    g = pd.read_csv(out / "gains_synth_segmentation.csv")
    assert set(zip(g["method"], g["fraction"])) == {("alpha", 0.1), ("alpha", 1.0), ("beta", 0.1), ("beta", 1.0)}
    row = g[(g["method"] == "alpha") & (g["fraction"] == 0.1)].iloc[0]
    d = np.subtract(VALUES["alpha"][0.1], VALUES["scratch"][0.1])
    lo, hi = st.t.interval(0.95, len(d) - 1, loc=d.mean(), scale=st.sem(d))
    assert row["n_pairs"] == 3 and row["mean_gain"] == pytest.approx(d.mean())
    assert (row["ci95_low"], row["ci95_high"]) == (pytest.approx(lo), pytest.approx(hi))
    assert row["p_value"] == pytest.approx(st.ttest_rel(VALUES["alpha"][0.1], VALUES["scratch"][0.1]).pvalue)
    beta = g[(g["method"] == "beta") & (g["fraction"] == 0.1)].iloc[0]
    assert beta["n_pairs"] == 2  # the failed seed has no pair
    # Holm by hand over the family of four comparisons
    p = g["p_value"].to_numpy()
    order = np.argsort(p)
    adj = np.empty(4)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (4 - k) * p[i]))
        adj[i] = running
    assert g["p_holm"].to_numpy() == pytest.approx(adj)


def test_tables_show_each_methods_display_name_and_the_csvs_keep_its_folder_name(tmp_path):
    """methods/<name>/method.yaml's display_name is what a reader sees (Markdown, LaTeX, HTML);
    a method that is not in methods/ is shown by its name."""
    import yaml as _yaml

    recs = [_record(m, 0.1, s, 20.0 + s + (3 if m != "scratch" else 0))
            for m in ("scratch", "crosspoint", "alpha") for s in range(2)]
    paths = []
    for i, r in enumerate(recs):
        paths.append(tmp_path / f"m{i}.json")
        paths[-1].write_text(json.dumps(r))
    build_results(paths, tmp_path / "out", plots=False)
    out = tmp_path / "out"
    shown = _yaml.safe_load((REPO / "methods" / "crosspoint" / "method.yaml").read_text())["display_name"]
    base = _yaml.safe_load((REPO / "methods" / "scratch" / "method.yaml").read_text())["display_name"]
    assert shown != "crosspoint" and base != "scratch"
    md = (out / "leaderboard_synth_segmentation.md").read_text()
    assert f"| {shown} (crosspoint) |" in md and f"| {base} (scratch) |" in md and "| alpha |" in md
    tex = (out / "leaderboard_synth_segmentation.tex").read_text()
    assert f"\n{shown} & " in tex and "\nalpha & " in tex
    page = (out / "tables" / "leaderboard_synth_segmentation.html").read_text()
    assert f"<td>{shown} (crosspoint)</td>" in page and f"Gain over {base} (scratch)" in page
    assert set(pd.read_csv(out / "leaderboard_synth_segmentation.csv")["method"]) == {"scratch", "crosspoint", "alpha"}


def test_gain_with_one_seed_has_nan_ci(tmp_path):
    recs = [_record("scratch", 0.1, 0, 20.0), _record("alpha", 0.1, 0, 25.0)]
    paths = []
    for i, r in enumerate(recs):
        p = tmp_path / f"m{i}.json"
        p.write_text(json.dumps(r))
        paths.append(p)
    build_results(paths, tmp_path / "out", plots=False)
    g = pd.read_csv(tmp_path / "out" / "gains_synth_segmentation.csv").iloc[0]
    assert g["n_pairs"] == 1 and g["mean_gain"] == 5.0
    assert math.isnan(g["ci95_low"]) and math.isnan(g["p_value"]) and "n=1" in g["note"]


def test_a_nan_in_a_hand_edited_file_is_read_and_written_as_empty(tmp_path):
    """orjson rejects NaN; the reader falls back to the json module for such a file."""
    rec = _record("scratch", 0.1, 0, 20.0)
    text = json.dumps(rec).replace('"freq_weighted_iou": 0.8', '"freq_weighted_iou": NaN')
    (tmp_path / "m.json").write_text(text)
    board = build_results([tmp_path / "m.json"], tmp_path / "out", plots=False, report=False)
    assert board.loc[0, "status"] == "ok" and board.loc[0, "primary_value"] == 20.0
    assert math.isnan(board.loc[0, "metrics.freq_weighted_iou"])
    csv_row = pd.read_csv(tmp_path / "out" / "leaderboard.csv").iloc[0]
    assert math.isnan(csv_row["metrics.freq_weighted_iou"]) and csv_row["primary_value"] == 20.0


def test_forked_readers_hand_back_what_one_process_reads_nan_included(tmp_path):
    """Above PARALLEL_MIN_FILES the files are split over forked readers that send columns back
    (orjson, which would turn NaN into null, or pickle for a chunk that held one)."""
    from xmbench.leaderboard.read import read_columns

    paths = []
    for i in range(6):
        text = json.dumps(_record("scratch" if i % 2 else "alpha", 0.1, i, 20.0 + i))
        if i == 4:   # in the second child's share
            text = text.replace('"freq_weighted_iou": 0.8', '"freq_weighted_iou": NaN')
        paths.append(tmp_path / f"m{i}.json")
        paths[-1].write_text(text)
    paths.append(tmp_path / "absent.json")
    serial, fails_serial = read_columns([str(p) for p in paths], workers=1)
    forked, fails_forked = read_columns([str(p) for p in paths], workers=3, min_files=1)
    assert fails_forked == fails_serial == [(str(tmp_path / "absent.json"), "missing")]
    assert list(forked) == list(serial)
    fw = forked["metrics.freq_weighted_iou"]
    assert math.isnan(fw[4]) and fw[:4] == serial["metrics.freq_weighted_iou"][:4]
    assert forked["seed"] == list(range(6)) and forked["primary_value"] == [20.0 + i for i in range(6)]


@pytest.mark.parametrize("idle", [2, 1])
def test_a_leaderboard_that_cannot_be_written_fails_by_name_and_leaves_no_temp_file(tmp_path, idle, monkeypatch):
    """The run-level CSV is written by a forked child (by this process after the tables where no
    core is idle); its failure must reach the caller either way."""
    import xmbench.leaderboard.csv_writer as csv_writer

    monkeypatch.setattr(csv_writer, "idle_cores", lambda: idle)
    (tmp_path / "m.json").write_text(json.dumps(_record("scratch", 0.1, 0, 20.0)))
    out = tmp_path / "out"
    (out / "leaderboard.csv").mkdir(parents=True)  # a folder where the file goes: the rename fails
    with pytest.raises(BenchError, match="leaderboard.csv: writing the leaderboard failed"):
        build_results([tmp_path / "m.json"], out, plots=False, report=False)
    assert not list(out.glob(".leaderboard.csv.*"))
    assert (out / "leaderboard_synth_segmentation.csv").is_file()  # the tables were still built


def test_plots_report_and_published(fabricated):
    out, _ = fabricated
    for kind in ("label_efficiency", "gains", "per_class", "gain_vs_cost"):
        png = out / "plots" / f"{kind}_synth_segmentation.png"
        assert png.read_bytes()[:8] == PNG, kind
    report = (out / "report.md").read_text()
    for link in ("plots/label_efficiency_synth_segmentation.png", "plots/gains_synth_segmentation.png",
                 "plots/per_class_synth_segmentation.png", "plots/gain_vs_cost_synth_segmentation.png",
                 "leaderboard_synth_segmentation.csv", "gains_synth_segmentation.csv"):
        assert f"({link})" in report and (out / link).is_file(), link
    assert "### Published numbers (not re-run here, not in our statistics)" in report
    assert "| slidr | nuscenes |" in report and "38.3" in report and "30.3" in report
    assert "| **failed** |" in report and "| **missing** |" in report
    assert "Other published figures" in report and "FCOS3D" in report  # no monocular task here
    html = (out / "tables" / "leaderboard_synth_segmentation.html").read_text()
    assert "id='published'" in html and "(published)" in html and "id='problems'" in html


def test_published_csv_has_every_figure_and_a_source():
    pub = pd.read_csv(REPO / "config" / "published_results.csv")
    assert pub["source"].notna().all() and pub["value"].notna().all()
    clap = pub[(pub["source_short"] == "CLAP v1")]
    assert len(clap) == 16  # 4 fractions x {scratch, clap} x {mAP, NDS}
    v = clap.set_index(["method", "fraction", "metric"])["value"]
    assert v[("scratch", 0.05, "mAP")] == 48.69 and v[("clap", 0.005, "NDS")] == 27.32
    seg1 = pub[(pub["task"] == "segmentation") & (pub["fraction"] == 0.01)].set_index(["method", "source_short"])
    assert seg1.loc[("random init", "SLidR"), "value"] == 30.3 and seg1.loc[("seal", "Seal"), "value"] == 45.8
    assert seg1.loc[("scalr", "ScaLR"), "value"] == 50.7 and seg1.loc[("slidr", "SLidR README"), "value"] == 39.0
    simipu = pub[pub["source_short"] == "SimIPU"].set_index("method")["value"]
    assert simipu["scratch"] == 17.9 and simipu["simipu"] == 26.2


def test_expected_grid_follows_the_dag_paths_and_cli_marks_missing(tmp_path, test_config):
    cfg = dict(test_config, results_dir=str(tmp_path))
    grid = expected_grid(cfg)
    assert len(grid) == len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["fractions"]) * len(cfg["seeds"])
    assert {g["task"] for g in grid} == set(cfg["tasks"])
    assert grid[0]["path"] == str(tmp_path / "synthetic_nuscenes" / "segmentation" / "native" / "scratch" /
                                  "50pct" / "seed0" / "metrics.json")
    p = Path(grid[0]["path"])
    p.parent.mkdir(parents=True)
    rec = _record("scratch", 0.5 if False else 0.1, 0, 30.0)
    rec.update(dataset="synthetic_nuscenes", fraction=0.5)
    p.write_text(json.dumps(rec))
    (tmp_path / "config.resolved.json").write_text(json.dumps(cfg))
    assert cli_main(["leaderboard", "--out-dir", str(tmp_path), "--config", str(tmp_path / "config.resolved.json"),
                     "--no-plots"]) == 0
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert len(board) == len(grid) and (board["status"] == "missing").sum() == len(grid) - 1


# ----------------------------------------------------------------------------- linear probe

def test_linear_probe_trains_only_the_head_and_gets_its_own_leaderboard(tiny_index, test_config, tmp_path):
    import torch

    from xmbench.finetune import run_finetune
    from xmbench.models.build import build_lidar_backbone
    from xmbench.splits import select, write_split
    from xmbench.tasks import load_task
    from xmbench.data.frames import load_json

    task = load_task("linear_probe")
    assert task.recipe("tiny", 0.5) == {**task.recipe("tiny", 0.5)}  # recipe needs no method
    split = tmp_path / "splits" / "50pct.txt"
    write_split(split, select(load_json(tiny_index["index"])["frames"], 0.5, 0, "frame"))
    torch.manual_seed(123)
    enc = build_lidar_backbone(test_config["model"])
    ckpt = tmp_path / "pre" / "checkpoint.pth"
    ckpt.parent.mkdir()
    torch.save({"model_state": {f"backbone_3d.{k}": v for k, v in enc.state_dict().items()}}, ckpt)
    from xmbench.atomic import sha256_file

    (tmp_path / "pre" / "pretrain.json").write_text(json.dumps({"status": "ok", "checkpoint": str(ckpt),
                                                                "checkpoint_sha256": sha256_file(ckpt)}))
    out = tmp_path / "results" / "synthetic_nuscenes" / "linear_probe" / "native" / "crosspoint" / "50pct" / "seed0"
    rec = run_finetune(task, None, test_config, "synthetic_nuscenes", "crosspoint", 0.5, 0, tiny_index["index"],
                       tiny_index["labels"], split, tmp_path / "pre" / "pretrain.json", out)
    assert rec["status"] == "ok", rec["reason"]
    assert rec["task"] == "linear_probe" and rec["primary_metric"]["name"] == "mIoU"
    assert 0 <= rec["primary_metric"]["value"] <= 100
    init = rec["init"]
    assert init["backbone_3d"]["loaded"] == init["backbone_3d"]["total"] and init["encoder_frozen"] is True
    assert init["trainable_parameters"] == (240 + 1) * len(load_json(tiny_index["labels"])["lidarseg_coarse_names"])
    build_results([out / "metrics.json"], tmp_path / "results", plots=False)
    table = pd.read_csv(tmp_path / "results" / "leaderboard_synthetic_nuscenes_linear_probe.csv")
    assert list(table["method"]) == ["crosspoint"] and table.loc[0, "n@50%"] == 1
