"""The run grid has one owner: the DAG, the finetune entry point and the leaderboard agree on it."""
import subprocess
import sys

import pytest
import yaml

from xmbench import grid
from xmbench.errors import BenchError
from xmbench.results import expected_grid, load_runs


def _cfg(test_config, **over):
    return {**test_config, **over}


@pytest.mark.parametrize("fraction,tag,label", [(0.005, "0.5pct", "0.5%"), (0.025, "2.5pct", "2.5%"),
                                                (0.1, "10pct", "10%"), (1.0, "100pct", "100%")])
def test_fraction_spellings_round_trip(fraction, tag, label):
    assert grid.fraction_tag(fraction) == tag
    assert grid.fraction_label(fraction) == label
    assert grid.fraction_of_tag(tag) == pytest.approx(fraction, abs=1e-12)


def test_cell_paths_parse_back_to_the_cell(tmp_path):
    cell = grid.Cell("synthetic_nuscenes", "detection", "openpcdet", "clap", 0.025, 0, 2)
    path = cell.metrics_path(tmp_path)
    # draw 0 keeps the folders a one-draw grid always had
    assert path == tmp_path / "synthetic_nuscenes/detection/openpcdet/clap/2.5pct/seed2/metrics.json"
    assert grid.Cell.from_metrics_path(path) == cell
    assert cell.benchmark_path(tmp_path).stem == cell.benchmark_name
    assert cell.split_path(tmp_path) == tmp_path / "synthetic_nuscenes/splits/2.5pct.txt"
    drawn = grid.Cell("synthetic_nuscenes", "detection", "openpcdet", "clap", 0.025, 3, 2)
    assert drawn.metrics_path(tmp_path) == tmp_path / "synthetic_nuscenes/detection/openpcdet/clap/2.5pct-draw3/seed2/metrics.json"
    assert grid.Cell.from_metrics_path(drawn.metrics_path(tmp_path)) == drawn
    assert drawn.split_path(tmp_path).name == "2.5pct-draw3.txt" and drawn.benchmark_name != cell.benchmark_name
    assert grid.Cell.from_metrics_path(tmp_path / "a/b/metrics.json") is None
    assert grid.Cell.from_metrics_path(tmp_path / "d/t/e/m/notatag/seed0/metrics.json") is None
    assert grid.Cell.from_metrics_path(tmp_path / "d/t/e/m/1pct-draw0/seed0/metrics.json") is None  # draw 0 is ''
    assert grid.parse_split_tag("0.5pct-draw12") == (0.005, 12) and grid.split_tag(0.005, 12) == "0.5pct-draw12"


def test_engines_from_config_reach_every_cell_and_the_expected_grid(test_config, tmp_path):
    cfg = _cfg(test_config, engines={"detection": "openpcdet"})
    cells = grid.cells(cfg)
    n = (len(cfg["datasets"]) * len(cfg["tasks"]) * len(cfg["methods"]) * len(cfg["fractions"])
         * len(cfg["split"]["draws"]) * len(cfg["seeds"]))
    assert len(cells) == n == len(set(cells))
    assert {c.engine for c in cells if c.task == "detection"} == {"openpcdet"}
    assert {c.engine for c in cells if c.task == "segmentation"} == {"native"}
    expected = expected_grid(cfg, tmp_path)
    assert [e["path"] for e in expected] == [str(c.metrics_path(tmp_path)) for c in cells]
    # no metrics.json yet: every expected cell is a 'missing' row under its configured engine
    df = load_runs([e["path"] for e in expected], expected, tmp_path)
    det = df[df["task"] == "detection"]
    assert set(det["engine"]) == {"openpcdet"} and set(det["status"]) == {"missing"}


def test_unknown_engine_is_one_line_naming_the_field(test_config):
    with pytest.raises(BenchError, match=r"config field 'engines.detection': unknown engine 'mmdet'"):
        grid.cells(_cfg(test_config, engines={"detection": "mmdet"}))


def test_snakefile_plans_exactly_the_grid(test_config, tmp_path):
    """`snakemake -n` asks for the metrics.json of every cell of grid.cells and of nothing else."""
    from tests.conftest import REPO

    results = tmp_path / "results"
    cfg = _cfg(test_config, results_dir=str(results), fractions=[0.5, 0.025], engines={"detection": "native"})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    cmd = [sys.executable, "-m", "snakemake", "-n", "--configfile", str(tmp_path / "config.yaml"),
           "--printshellcmds"]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    planned = sorted({tok for line in out.stdout.splitlines() if "xmbench.cli finetune" in line
                      for tok in [line.split("--out-dir ")[1].split()[0]]})
    assert planned == sorted(str(c.out_dir(results)) for c in grid.cells(cfg))
    assert not (results / "config.resolved.json").exists()  # written when jobs run (onstart), never on -n


def test_paper_protocol_plans_every_detection_task(tmp_path):
    """`snakemake -n --configfile config/paper.yaml` plans LiDAR, fusion and cameras-only detection
    cells beside segmentation and the probe, at CLAP's small fractions, for every method."""
    from tests.conftest import REPO
    from xmbench.config import load_config

    results = tmp_path / "results"
    out = subprocess.run([sys.executable, "-m", "snakemake", "-n", "--printshellcmds", "--configfile",
                          "config/paper.yaml", "--config", f"results_dir={results}",
                          f"openpcdet={{root: {REPO.parent / 'shared' / 'OpenPCDet'}}}"],
                         cwd=REPO, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, (out.stderr or out.stdout)[-2000:]
    planned = {tuple(line.split("--out-dir ")[1].split()[0].split("/")[-6:])
               for line in out.stdout.splitlines() if "xmbench.cli finetune" in line}
    cfg = load_config(REPO / "config" / "paper.yaml")
    expected = {tuple(str(c.out_dir("x")).split("/")[-6:]) for c in grid.cells(cfg)}
    assert len({c.engine for c in grid.cells(cfg)}) == 2
    assert planned == expected
    engines = {(p[0], p[1]): p[2] for p in planned}
    assert engines[("nuscenes", "detection")] == engines[("waymo", "detection")] == "openpcdet"
    assert engines[("nuscenes", "fusion_detection")] == "openpcdet"      # OpenPCDet's BEVFusion
    assert engines[("waymo", "fusion_detection")] == "native"           # OpenPCDet has no Waymo BEVFusion
    assert engines[("nuscenes", "camera_detection")] == "native"
    tasks = {p[1] for p in planned}
    assert {"detection", "fusion_detection", "camera_detection", "segmentation", "linear_probe"} <= tasks
    for task in ("detection", "fusion_detection", "camera_detection"):
        fracs = {p[4] for p in planned if p[1] == task}
        assert {"0.5pct", "1pct", "2.5pct", "5pct"} <= fracs
        assert {p[3] for p in planned if p[1] == task and "-" not in p[3]} == set(cfg["methods"])
        # both tracks: the budget track has every pretrained method and no scratch of its own
        assert {p[3] for p in planned if p[1] == task and "-" in p[3]} == {
            f"{m}-budget" for m in cfg["methods"] if m != "scratch"}
    pretrain = {line.split("--out-dir ")[1].split()[0].split("/")[-1]
                for line in out.stdout.splitlines() if "xmbench.cli pretrain" in line}
    assert pretrain == {f"{m}{t}" for m in cfg["methods"] if m != "scratch" for t in ("", "-budget")}
    # 3 draws x 3 seeds at the small fractions, one draw above
    for frac, draws in (("1pct", 3), ("5pct", 3), ("10pct", 1), ("100pct", 1)):
        runs = {p[4:] for p in planned if p[1] == "segmentation" and p[3] == "scratch"
                and grid.parse_split_tag(p[4])[0] == grid.fraction_of_tag(frac)}
        assert len(runs) == draws * 3, (frac, sorted(runs))
