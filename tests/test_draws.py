"""Split draws as a grid axis: nested hashed subsets per draw, and tables whose per-draw rows and
paired gains are the numbers scipy computes from the same metrics.json files."""
import hashlib
import json
import math
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as st

from xmbench import grid, stats
from xmbench.errors import BenchError
from xmbench.leaderboard.build import build_results
from xmbench.splits import labelled_subset, select, write_split


def _frames(n_scenes=12, per_scene=6):
    return [{"token": hashlib.md5(f"{s}-{i}".encode()).hexdigest(), "scene": f"scene-{s}",
             "split": "train" if s < 10 else "val"} for s in range(n_scenes) for i in range(per_scene)]


# ----------------------------------------------------------------------------- subsets


def test_draw_zero_is_the_subset_a_one_draw_config_always_had_and_draws_differ(tmp_path):
    frames = _frames()
    train = [f["token"] for f in frames if f["split"] == "train"]
    legacy = sorted(train, key=lambda t: hashlib.sha256(f"0:{t}".encode()).hexdigest())[:6]  # ceil(0.1 * 60)
    assert set(select(frames, 0.1, 0, draw=0)) == set(legacy)
    split = {"seed": 0, "level": "frame", "protocol": "hash", "draws": [0, 1, 2]}
    digests = set()
    for draw in (0, 1, 2):
        sets = [set(labelled_subset(frames, split, "d", f, draw)) for f in (0.05, 0.1, 0.25, 0.5, 1.0)]
        assert all(a <= b for a, b in zip(sets, sets[1:]))  # nested within a draw
        assert sets[-1] == set(train)
        digests.add(write_split(tmp_path / f"{grid.split_tag(0.1, draw)}.txt",
                                labelled_subset(frames, split, "d", 0.1, draw)))
        assert (tmp_path / f"{grid.split_tag(0.1, draw)}.txt.sha256").is_file()
    assert len(digests) == 3  # three different labelled subsets, each hashed
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["10pct-draw1.txt", "10pct-draw2.txt", "10pct.txt"]


def test_draws_per_fraction_and_the_checks_on_them(test_config):
    cfg = {**test_config, "fractions": [0.1, 0.5, 1.0],
           "split": {**test_config["split"], "draws": {"default": [0], "10pct": [0, 1, 2], "50pct": [0, 1]}}}
    assert [grid.draws_at(cfg, f) for f in cfg["fractions"]] == [[0, 1, 2], [0, 1], [0]]
    cells = grid.cells(cfg)
    per = len(cfg["datasets"]) * len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["seeds"])
    assert len(cells) == per * (3 + 2 + 1) == len(set(cells))
    assert sorted({c.split_tag for c in cells}) == ["100pct", "10pct", "10pct-draw1", "10pct-draw2", "50pct",
                                                    "50pct-draw1"]
    assert len(grid.splits(cfg)) == len(cfg["datasets"]) * 6
    with pytest.raises(BenchError, match=r"field 'split.draws.2pct': not a fraction of this config"):
        grid.cells({**cfg, "split": {**cfg["split"], "draws": {"2pct": [0, 1]}}})
    with pytest.raises(BenchError, match=r"field 'split.draws': 100pct has one labelled subset"):
        grid.cells({**cfg, "split": {**cfg["split"], "draws": [0, 1]}})


# ----------------------------------------------------------------------------- statistics


def test_seed_and_draw_spread_against_scipy_and_by_hand():
    g = {0: [30.0, 31.0, 32.5], 1: [35.0, 36.5, 34.0], 2: [28.0, 29.0, 30.5]}
    s = stats.decompose(g)
    means = np.array([np.mean(v) for v in g.values()])
    within = np.mean([np.var(v, ddof=1) for v in g.values()])  # balanced: the pooled variance
    assert s.n == 9 and s.n_draws == 3
    assert s.ms_between / s.ms_within == pytest.approx(st.f_oneway(*g.values()).statistic)
    assert s.sd_seed == pytest.approx(math.sqrt(within))
    assert s.sd_draw == pytest.approx(math.sqrt((3 * np.var(means, ddof=1) - within) / 3))
    assert s.sd_total == pytest.approx(np.std(np.concatenate(list(g.values())), ddof=1))
    assert s.mean == pytest.approx(means.mean())
    assert (s.ci_low, s.ci_high) == pytest.approx(st.t.interval(0.95, 2, loc=means.mean(), scale=st.sem(means)))
    # draws that agree better than their seeds: no draw component
    assert stats.decompose({0: [1.0, 3.0], 1: [1.1, 2.9]}).sd_draw == 0.0
    one = stats.decompose({0: [1.0, 2.0, 4.0]})
    assert one.n_draws == 1 and math.isnan(one.sd_draw) and one.sd_seed == pytest.approx(np.std([1, 2, 4], ddof=1))
    assert stats.replicates({0: [1.0, 2.0], 1: [5.0]}) == [1.5, 5.0]


# ----------------------------------------------------------------------------- the tables

VALUES = {  # method -> draw -> per-seed mIoU at 10 %; 100 % has one draw
    "scratch": {0: [20.0, 21.0, 22.5], 1: [24.0, 25.5, 24.5]},
    "alpha": {0: [26.0, 27.5, 27.0], 1: [27.0, 29.0, 28.0]},
    "beta": {0: [21.0, 23.0, 22.0], 1: [23.5, 26.0, 24.0]},
}
FULL = {"scratch": [40.0, 41.5, 40.5], "alpha": [41.0, 42.0, 41.2], "beta": [40.2, 41.9, 41.0]}


def _record(method, fraction, draw, seed, value):
    sha = hashlib.sha256(f"{fraction}:{draw}".encode()).hexdigest()
    return {"status": "ok", "reason": None, "dataset": "synth", "task": "segmentation", "engine": "native",
            "method": method, "fraction": fraction, "draw": draw, "seed": seed,
            "primary_metric": {"name": "mIoU", "unit": "%", "value": value},
            "metrics": {"miou": value / 100}, "recipe_hash": "r", "cost": {"wall_seconds": 1.0},
            "provenance": {"split_sha256": sha, "git_commit": "c" * 40}}


@pytest.fixture(scope="module")
def two_draws(tmp_path_factory):
    out = tmp_path_factory.mktemp("results")
    cfg = {"methods": list(VALUES), "datasets": {"synth": {"format": "nuscenes"}}, "tasks": ["segmentation"],
           "engines": {"segmentation": "native"}, "fractions": [0.1, 1.0], "seeds": [0, 1, 2],
           "split": {"seed": 0, "level": "frame", "protocol": "hash", "draws": {"default": [0], "10pct": [0, 1]}}}
    paths = []
    for cell in grid.cells(cfg, {"segmentation": {"default_engine": "native", "engines": {"native": "native.py"}}}):
        v = (VALUES[cell.method][cell.draw][cell.seed] if cell.fraction == 0.1 else FULL[cell.method][cell.seed])
        path = cell.metrics_path(out)
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(_record(cell.method, cell.fraction, cell.draw, cell.seed, v)))
        paths.append(path)
    assert sum("-draw1" in str(p) for p in paths) == 9
    build_results(paths, out, config=cfg, plots=False)
    return out, cfg


def test_per_draw_rows_against_scipy(two_draws):
    out, _ = two_draws
    draws = pd.read_csv(out / "draws_synth_segmentation.csv")
    assert len(draws) == 3 * 2 + 3  # 10 %: three methods x two draws; 100 %: one draw
    for method, by_draw in VALUES.items():
        for draw, vals in by_draw.items():
            r = draws[(draws["method"] == method) & (draws["fraction"] == 0.1) & (draws["draw"] == draw)].iloc[0]
            assert r["n"] == 3 and r["mean"] == pytest.approx(np.mean(vals)) and r["std"] == pytest.approx(np.std(vals, ddof=1))
            assert (r["ci95_low"], r["ci95_high"]) == pytest.approx(
                st.t.interval(0.95, 2, loc=np.mean(vals), scale=st.sem(vals)))
            assert r["split_sha256"] == hashlib.sha256(f"0.1:{draw}".encode()).hexdigest()
            if method == "scratch":
                assert r["n_pairs"] == 0 and math.isnan(r["mean_gain"])
                continue
            base = VALUES["scratch"][draw]
            d = np.subtract(vals, base)
            assert r["n_pairs"] == 3 and r["mean_gain"] == pytest.approx(d.mean())
            assert (r["gain_ci95_low"], r["gain_ci95_high"]) == pytest.approx(
                st.t.interval(0.95, 2, loc=d.mean(), scale=st.sem(d)))
            assert r["p_value"] == pytest.approx(st.ttest_rel(vals, base).pvalue)


def test_pooled_gains_pair_on_draw_and_seed_against_scipy(two_draws):
    out, _ = two_draws
    gains = pd.read_csv(out / "gains_synth_segmentation.csv")
    ps = []
    for method in ("alpha", "beta"):
        r = gains[(gains["method"] == method) & (gains["fraction"] == 0.1)].iloc[0]
        per_draw = [np.subtract(VALUES[method][k], VALUES["scratch"][k]) for k in (0, 1)]
        draw_means = [d.mean() for d in per_draw]
        assert r["n_pairs"] == 6 and r["n_draws"] == 2
        assert r["mean_gain"] == pytest.approx(np.mean(draw_means))
        assert (r["ci95_low"], r["ci95_high"]) == pytest.approx(
            st.t.interval(0.95, 1, loc=np.mean(draw_means), scale=st.sem(draw_means)))
        assert r["p_value"] == pytest.approx(st.ttest_1samp(draw_means, 0).pvalue)
        assert r["sd_gain_seed"] == pytest.approx(math.sqrt(np.mean([np.var(d, ddof=1) for d in per_draw])))
        assert r["std_gain"] == pytest.approx(np.std(np.concatenate(per_draw), ddof=1))
        full = gains[(gains["method"] == method) & (gains["fraction"] == 1.0)].iloc[0]
        assert full["n_draws"] == 1 and full["p_value"] == pytest.approx(st.ttest_rel(FULL[method], FULL["scratch"]).pvalue)
        ps += [r["p_value"], full["p_value"]]
    holm = stats.holm(ps)
    got = [gains[(gains["method"] == m) & (gains["fraction"] == f)].iloc[0]["p_holm"]
           for m in ("alpha", "beta") for f in (0.1, 1.0)]
    assert got == pytest.approx(holm)


def test_leaderboard_reports_the_draw_and_the_seed_spread_apart(two_draws):
    out, _ = two_draws
    wide = pd.read_csv(out / "leaderboard_synth_segmentation.csv").set_index("method")
    for method, by_draw in VALUES.items():
        s = stats.decompose(by_draw)
        assert wide.loc[method, "n@10%"] == 6 and wide.loc[method, "n_draws@10%"] == 2
        assert wide.loc[method, "mean@10%"] == pytest.approx(np.mean([np.mean(v) for v in by_draw.values()]))
        assert wide.loc[method, "sd_seed@10%"] == pytest.approx(
            math.sqrt(np.mean([np.var(v, ddof=1) for v in by_draw.values()])))
        assert wide.loc[method, "sd_draw@10%"] == pytest.approx(s.sd_draw)
        assert wide.loc[method, "n_draws@100%"] == 1 and np.isnan(wide.loc[method, "sd_draw@100%"])
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 27 and sorted(board["draw"].unique()) == [0, 1]
    report = (out / "report.md").read_text()
    assert "### Spread: seed against draw" in report and "### Per draw" in report
    assert "Labelled subsets: hash (the benchmark's" in report
    assert "No tuning on what is scored" in report


def test_results_readme_explains_every_file_and_column(two_draws):
    out, _ = two_draws
    readme = (out / "README.md").read_text()
    for col in pd.read_csv(out / "leaderboard.csv").columns:
        assert f"| `{col}` |" in readme, col
    for name in ("leaderboard_synth_segmentation.csv", "gains_synth_segmentation.csv", "draws_synth_segmentation.csv",
                 "report.md", "config.resolved.json"):
        assert name in readme, name
    for col in pd.read_csv(out / "gains_synth_segmentation.csv").columns:
        assert col in readme, col
    for col in pd.read_csv(out / "draws_synth_segmentation.csv").columns:
        assert col in readme, col
    assert "a field an engine added" not in readme  # every column of this run has its own explanation


# ----------------------------------------------------------------------------- the DAG


def test_snakemake_plans_two_draws(test_config, tmp_path):
    """`snakemake -n` with split.draws [0, 1]: a label split per draw, every cell of grid.cells once."""
    from tests.conftest import REPO

    results = tmp_path / "results"
    cfg = {**test_config, "results_dir": str(results), "fractions": [0.5, 1.0],
           "split": {**test_config["split"], "draws": {"default": [0], "50pct": [0, 1]}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--printshellcmds", "--configfile",
                          str(tmp_path / "config.yaml")], cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stderr or out.stdout)[-2000:]
    lines = out.stdout.splitlines()
    splits = sorted(line.split("--out ")[1].split()[0].split("/")[-1] for line in lines if "xmbench.cli split" in line)
    assert splits == ["100pct.txt", "50pct-draw1.txt", "50pct.txt"]
    assert any("--fraction 0.5 --draw 1 --out" in line for line in lines if "xmbench.cli split" in line)
    planned = sorted(line.split("--out-dir ")[1].split()[0] for line in lines if "xmbench.cli finetune" in line)
    assert planned == sorted(str(c.out_dir(results)) for c in grid.cells(cfg))
    drawn = [line for line in lines if "xmbench.cli finetune" in line and "50pct-draw1/" in line]
    assert drawn and all("--draw 1 " in line and "splits/50pct-draw1.txt" in line for line in drawn)
    assert len(drawn) == len(cfg["datasets"]) * len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["seeds"])


def test_cli_writes_each_draw_and_records_the_draw(tmp_path, test_config, monkeypatch):
    from xmbench import finetune
    from xmbench.atomic import write_json
    from xmbench.cli import main
    from xmbench.splits import read_split

    index = {"dataset": "d", "frames": _frames()}
    (tmp_path / "index.json").write_text(json.dumps(index))
    split = {"seed": 4, "level": "frame", "protocol": "hash", "draws": [0, 1]}
    (tmp_path / "config.json").write_text(json.dumps({**test_config, "split": split}))
    for draw in (0, 1):
        out = tmp_path / f"{grid.split_tag(0.1, draw)}.txt"
        assert main(["split", "--config", str(tmp_path / "config.json"), "--index", str(tmp_path / "index.json"),
                     "--fraction", "0.1", "--draw", str(draw), "--out", str(out)]) == 0
        assert read_split(out)[0] == labelled_subset(index["frames"], split, "d", 0.1, draw)
    assert read_split(tmp_path / "10pct.txt")[1] != read_split(tmp_path / "10pct-draw1.txt")[1]

    seen = {}

    def fake_run(task, engine, cfg, dataset, method, fraction, seed, *a, **k):  # what the CLI hands over
        seen.update(k)
        rec = {"status": "ok", "dataset": dataset, "task": task.name, "method": method, "fraction": fraction,
               "draw": k["draw"], "seed": seed, "track": k["track"]}
        write_json(a[4] / "metrics.json", rec)  # index, labels, split, pretrain, out_dir
        return rec

    monkeypatch.setattr(finetune, "run_finetune", fake_run)
    cell = tmp_path / "cell"
    assert main(["finetune", "--config", str(tmp_path / "config.json"), "--dataset", "d", "--task", "segmentation",
                 "--method", "scratch", "--index", "i", "--labels", "l", "--split", "s", "--out-dir", str(cell),
                 "--fraction", "0.1", "--seed", "2", "--draw", "1", "--device", "cpu"]) == 0
    assert seen["draw"] == 1 and seen["track"] == "own"
    rec = json.loads((cell / "metrics.json").read_text())
    assert rec["draw"] == 1 and list(rec)[list(rec).index("fraction") + 1] == "draw"


def test_a_record_of_another_draw_counts_as_its_folders_cell_and_fails(tmp_path):
    from xmbench.leaderboard.load import load_runs

    cell0 = grid.Cell("synth", "segmentation", "native", "scratch", 0.1, 0, 0)
    cell1 = grid.Cell("synth", "segmentation", "native", "scratch", 0.1, 1, 0)
    for c in (cell0, cell1):
        c.metrics_path(tmp_path).parent.mkdir(parents=True)
    cell0.metrics_path(tmp_path).write_text(json.dumps(_record("scratch", 0.1, 1, 0, 30.0)))  # draw 1's record
    legacy = {k: v for k, v in _record("scratch", 0.1, 1, 0, 31.0).items() if k != "draw"}  # before draws: draw 0
    cell1.metrics_path(tmp_path).write_text(json.dumps(legacy))
    df = load_runs([cell0.metrics_path(tmp_path), cell1.metrics_path(tmp_path)]).set_index("draw")
    assert df.loc[0, "status"] == "failed" and "draw=1" in df.loc[0, "reason"]
    assert df.loc[1, "status"] == "failed" and "draw=0" in df.loc[1, "reason"]


def test_a_subset_reruns_only_when_its_own_settings_change():
    """The label_split param hashes what one subset depends on: adding a draw or a fraction leaves
    the existing subsets' jobs, and so their cells, alone."""
    from xmbench.splits import rule_hash

    one = {"seed": 0, "level": "frame", "protocol": "hash", "draws": [0]}
    more = {**one, "draws": {"default": [0], "10pct": [0, 1, 2]}}
    assert rule_hash(one, "d", 0.1, 0) == rule_hash(more, "d", 0.1, 0)
    assert rule_hash(more, "d", 0.1, 1) != rule_hash(more, "d", 0.1, 0)
    assert rule_hash({**one, "seed": 1}, "d", 0.1, 0) != rule_hash(one, "d", 0.1, 0)
    assert rule_hash({**one, "tune": {"fraction": 0.1}}, "d", 0.1, 0) != rule_hash(one, "d", 0.1, 0)


# ----------------------------------------------------------------------------- the DAG with two draws


def test_the_tests_dag_with_two_draws_gives_the_tables_scipy_computes(tmp_path, test_config):
    """Snakemake runs the tests' config with two draws at 50 % and two seeds (real subsets, real
    pretraining and finetuning); the per-draw rows and the pooled gains it writes are what scipy
    computes from the runs' own numbers in leaderboard.csv."""
    from repo_copy import copy_repo

    repo = copy_repo(tmp_path / "repo")
    results = tmp_path / "results"
    cfg = {**test_config, "results_dir": str(results), "methods": ["scratch", "crosspoint"],
           "tasks": ["segmentation"], "fractions": [0.5, 1.0], "seeds": [0, 1],
           "split": {**test_config["split"], "draws": {"default": [0], "50pct": [0, 1]}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    res = subprocess.run([sys.executable, "-m", "snakemake", "--profile", "profiles/local", "--configfile",
                          str(tmp_path / "config.yaml")], cwd=repo, capture_output=True, text=True, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]

    board = pd.read_csv(results / "leaderboard.csv")
    assert len(board) == 2 * (2 * 2 + 2) and (board["status"] == "ok").all()

    def values(method, fraction, draw):
        rows = board[(board["method"] == method) & (board["fraction"] == fraction) & (board["draw"] == draw)]
        return rows.sort_values("seed")["primary_value"].to_numpy(), set(rows["provenance.split_sha256"])

    draws = pd.read_csv(results / "draws_synthetic_nuscenes_segmentation.csv")
    gains = pd.read_csv(results / "gains_synthetic_nuscenes_segmentation.csv")
    (s0, sha0), (s1, sha1) = values("scratch", 0.5, 0), values("scratch", 0.5, 1)
    assert len(sha0) == len(sha1) == 1 and sha0 != sha1          # two labelled subsets, each hashed
    per_draw = []
    for draw, base in ((0, s0), (1, s1)):
        vals, sha = values("crosspoint", 0.5, draw)
        r = draws[(draws["method"] == "crosspoint") & (draws["fraction"] == 0.5) & (draws["draw"] == draw)].iloc[0]
        assert r["split_sha256"] == sha.pop() and r["n"] == 2
        assert r["mean"] == pytest.approx(vals.mean()) and r["std"] == pytest.approx(np.std(vals, ddof=1))
        d = vals - base
        per_draw.append(d)
        assert r["n_pairs"] == 2 and r["mean_gain"] == pytest.approx(d.mean())
        if np.std(d, ddof=1) > 0:
            assert r["p_value"] == pytest.approx(st.ttest_rel(vals, base).pvalue)
    g = gains[(gains["method"] == "crosspoint") & (gains["fraction"] == 0.5)].iloc[0]
    draw_means = [d.mean() for d in per_draw]
    assert g["n_pairs"] == 4 and g["n_draws"] == 2
    assert g["mean_gain"] == pytest.approx(np.mean(draw_means))
    assert g["std_gain"] == pytest.approx(np.std(np.concatenate(per_draw), ddof=1))
    if np.std(draw_means, ddof=1) > 0:
        assert g["p_value"] == pytest.approx(st.ttest_1samp(draw_means, 0).pvalue)
    full = gains[(gains["method"] == "crosspoint") & (gains["fraction"] == 1.0)].iloc[0]
    fv, fb = values("crosspoint", 1.0, 0)[0], values("scratch", 1.0, 0)[0]
    assert full["n_draws"] == 1 and full["mean_gain"] == pytest.approx((fv - fb).mean())
