"""The leaderboard as a package: a plot kind is one entry, stages import only earlier stages (no
cycle anywhere in xmbench/), render reads nothing, costs come from the frame, --published is used."""
import ast
import json
from pathlib import Path

import pandas as pd
import pytest

from xmbench import grid
from xmbench.leaderboard import plots
from xmbench.leaderboard.aggregate import pretrain_costs_of
from xmbench.leaderboard.build import build_results

REPO = Path(__file__).resolve().parent.parent
PKG = REPO / "xmbench" / "leaderboard"
VALUES = {"scratch": [30.0, 31.0], "clap": [34.0, 36.0]}


def _results(out: Path) -> list[Path]:
    paths = []
    for m, vals in VALUES.items():
        for f in (0.1, 1.0):
            for seed, v in enumerate(vals):
                cell = grid.Cell("synth", "segmentation", "native", m, f, 0, seed)
                p = cell.metrics_path(out)
                p.parent.mkdir(parents=True)
                p.write_text(json.dumps({**cell.identity(), "status": "ok", "reason": None,
                                         "primary_metric": {"name": "mIoU", "unit": "%", "value": v + 10 * f},
                                         "metrics": {"miou": (v + 10 * f) / 100},
                                         "provenance": {"split_sha256": f"s{f}"}}))
                paths.append(p)
    rec = out / "synth" / "pretrain" / "clap" / "pretrain.json"
    rec.parent.mkdir(parents=True)
    rec.write_text(json.dumps({"method": "clap", "status": "ok", "cost": {"gpu_hours": 2.5, "wall_seconds": 900.0}}))
    return paths


def test_a_plot_kind_added_in_one_place_is_drawn_and_shown_in_the_report(tmp_path, monkeypatch):
    seen = []

    def method_count(t, path):
        """A new kind: one bar per method, the table's means (what the build handed it)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        seen.append(t)
        fig, ax = plt.subplots()
        means = t.long.groupby("method")["mean"].mean()
        ax.bar(list(means.index), list(means.values))
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, format="png")
        plt.close(fig)

    kind = plots.Plot("method_means", "Mean per method", "one bar per method", method_count)
    monkeypatch.setattr(plots, "PLOTS", [*plots.PLOTS, kind])  # the one place
    out = tmp_path / "results"
    build_results(_results(out), out, expected=[], config={"methods": ["scratch", "clap"]})

    png = out / "plots" / "method_means_synth_segmentation.png"
    assert png.read_bytes().startswith(b"\x89PNG")
    assert len(seen) == 1 and set(seen[0].long["method"]) == {"scratch", "clap"}
    report = (out / "report.md").read_text()
    assert "![Mean per method: synth_segmentation](plots/method_means_synth_segmentation.png)" in report
    # the built-in kinds still come first, in the list's order
    shown = [line for line in report.splitlines() if line.startswith("![")]
    assert [s.split("](plots/")[1].split("_synth")[0] for s in shown] == [p.name for p in plots.PLOTS]
    readme = (out / "README.md").read_text()
    assert "plots/{label_efficiency,gains,per_class,gain_vs_cost,method_means}_synth_segmentation.png" in readme
    assert "one bar per method" in readme


def test_without_plots_nothing_is_drawn_or_linked(tmp_path):
    out = tmp_path / "results"
    build_results(_results(out), out, expected=[], config={"methods": ["scratch", "clap"]}, plots=False)
    assert not (out / "plots").exists()
    assert "](plots/" not in (out / "report.md").read_text()
    assert "plots/{" not in (out / "README.md").read_text()


def test_every_plot_kind_is_declared_by_the_snakefile_and_has_its_caption():
    snakefile = (REPO / "Snakefile").read_text()
    assert "from xmbench.leaderboard.plots import PLOT_NAMES as PLOTS" in snakefile
    assert "gain_vs_cost" not in snakefile  # no second copy of the list there
    assert plots.PLOT_NAMES == [p.name for p in plots.PLOTS] and len(set(plots.PLOT_NAMES)) == len(plots.PLOTS)
    for p in plots.PLOTS:
        assert (REPO / "xmbench" / "report_captions" / f"{p.name}.rst").is_file(), p.name


def test_published_numbers_come_from_the_path_given(tmp_path):
    pub = tmp_path / "pub.csv"
    pub.write_text("dataset,task,protocol,metric,unit,method,fraction,value,source_short,source,note\n"
                   "synth,segmentation,ours,mIoU,%,clap,0.1,44.5,Mine,My paper,\n"
                   "synth,other_task,theirs,mAP,%,clap,0.1,51.25,Mine,My paper,only in this file\n")
    out = tmp_path / "results"
    build_results(_results(out), out, expected=[], config={"methods": ["scratch", "clap"]}, published=pub,
                  plots=False)
    report = (out / "report.md").read_text()
    other = report.split("## Other published figures")[1].split("## Statistics")[0]
    assert "only in this file" in other and "51.25" in other
    assert "CLAP v1" not in report and "BEVFusion" not in report  # nothing of the default file
    assert "44.5" in (out / "tables" / "leaderboard_synth_segmentation.html").read_text()


def test_plot_costs_are_the_frames_columns(tmp_path):
    out = tmp_path / "results"
    df = build_results(_results(out), out, expected=[], config={"methods": ["scratch", "clap"]}, plots=False)
    costs = pretrain_costs_of(df)
    assert costs["clap"] == {"wall_seconds": 900.0, "gpu_hours": 2.5}
    assert costs["scratch"] == {"wall_seconds": 0.0, "gpu_hours": 0.0}
    part = df.drop(columns=["pretrain.gpu_hours"])  # a column the table dropped (all empty): NaN, no disk
    assert pd.isna(pretrain_costs_of(part)["clap"]["gpu_hours"])


# ----------------------------------------------------------------------------- structure (static)

def _imports(root: Path) -> dict[str, set[str]]:
    """module -> the xmbench modules it imports anywhere in its body (lazy imports count: a cycle
    broken by a function-level import is still a cycle)."""
    mods = {}
    for f in (root / "xmbench").rglob("*.py"):
        parts = list(f.relative_to(root).with_suffix("").parts)
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f

    def known(name):
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges = {}
    for m, f in mods.items():
        pkg = m if f.name == "__init__.py" else m.rpartition(".")[0]
        out = set()
        for node in ast.walk(ast.parse(f.read_text())):
            if isinstance(node, ast.Import):
                out |= {known(a.name) for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = pkg.split(".")[:len(pkg.split(".")) - node.level + 1] if node.level else []
                dotted = ".".join(base + ([node.module] if node.module else []))
                out |= {f"{dotted}.{a.name}" if f"{dotted}.{a.name}" in mods else known(dotted) for a in node.names}
        edges[m] = {o for o in out if o and o != m and o.startswith("xmbench")}
    return edges


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], 0
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = n
        n += 1
        stack.append(root)
        on.add(root)
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = n
                    n += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_in_xmbench():
    edges = _imports(REPO)
    assert "xmbench.leaderboard.build" in edges and "xmbench.leaderboard.aggregate" in edges["xmbench.leaderboard.build"]
    assert _cycles(edges) == []


def test_stages_import_only_earlier_stages_and_stay_small():
    edges = _imports(REPO)
    lb = "xmbench.leaderboard."
    inner = {m: {o[len(lb):] for o in deps if o.startswith(lb)} for m, deps in edges.items() if m.startswith(lb)}
    assert inner[lb + "aggregate"] <= {"schema"}  # a leaf: frames in, frames out
    assert inner[lb + "schema"] == set()
    for m, deps in inner.items():
        if m.startswith(lb + "render"):
            assert not deps & {"load", "read", "published", "plots", "build", "csv_writer"}, (m, deps)
    assert not inner[lb + "plots"] & {"load", "read", "published", "build"}  # costs come from the frame
    assert all(lb + "build" not in deps for m, deps in inner.items())  # nothing imports the build
    for f in PKG.rglob("*.py"):
        assert len(f.read_text().splitlines()) <= 300, f


def test_render_reads_no_file():
    for f in (PKG / "render").glob("*.py"):
        tree = ast.parse(f.read_text())
        calls = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
                 for n in ast.walk(tree) if isinstance(n, ast.Call)}
        assert not calls & {"open", "read_text", "read_bytes", "read_csv", "load_published", "glob"}, f


@pytest.mark.parametrize("name", ["build_results", "load_runs", "expected_grid", "read_columns", "method_order"])
def test_the_old_module_still_names_what_other_code_imports(name):
    import xmbench.results as old

    assert callable(getattr(old, name))
