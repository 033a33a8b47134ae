"""The plots of every table: one function per kind, all of them in ``PLOTS``.

A new plot is one function and one ``Plot`` entry in ``PLOTS``: the build draws every entry, report.md
and README.md show every entry, and the Snakefile declares every entry as an output (it imports
``PLOT_NAMES`` from here; each kind also needs its caption, xmbench/report_captions/<name>.rst, which
tests/test_leaderboard_package.py checks). pandas, seaborn and matplotlib are imported by the
drawing only, so that reading the list at the Snakefile's parse time stays cheap.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ..atomic import atomic_path
from ..grid import fraction_label
from .schema import BASELINE

if TYPE_CHECKING:
    from .aggregate import Table


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid", context="notebook")
    return plt, sns


def t_interval(values) -> tuple[float, float]:
    """seaborn ``errorbar=`` callable: the 95% Student-t interval of the mean (NaN when n < 2)."""
    from .. import stats

    s = stats.summarize(values)
    return (s.ci_low, s.ci_high)


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)


def _ylabel(info: dict) -> str:
    return f"{info['metric']} ({info['unit']})" if info.get("unit") else str(info["metric"])


def _colours(t: Table) -> dict:
    """One colour per method, from the table's fixed method order: a method keeps its colour in every
    plot (the gain plots have no baseline, so positional colours would shift by one there)."""
    import seaborn as sns

    return dict(zip(t.methods, sns.color_palette(n_colors=max(len(t.methods), 1))))


def _gain_unit(info: dict) -> str:
    """A difference of percentages is in percentage points."""
    return info["unit"] + " points" if info.get("unit") == "%" else info.get("unit", "")


def _metric_name(prefix: str) -> str:
    """``metrics.iou_per_class`` -> ``IoU``: the per-class metric as a reader names it, not its key."""
    key = prefix.split(".")[-1].removesuffix("_per_class")
    return {"iou": "IoU", "ap": "AP", "aph": "APH", "acc": "accuracy"}.get(key, key.replace("_", " "))


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, fontsize=11, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def label_efficiency(t: Table, path: Path) -> None:
    """The primary metric against the labelled share, one line per method, published points beside."""
    plt, sns = _plt()
    part, info, published_rows = t.part, t.info, t.published
    ok = part[part["status"] == "ok"].copy()
    ok["labels (%)"] = ok["fraction"].astype(float) * 100
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(ok):
        sns.lineplot(data=ok, x="labels (%)", y="primary_value", hue="method", hue_order=t.methods,
                     palette=_colours(t), marker="o", errorbar=t_interval, err_style="band", ax=ax)
        ax.set_xscale("log")
        fr = sorted(ok["labels (%)"].unique())
        ax.set_xticks(fr)
        ax.set_xticklabels([f"{x:g}" for x in fr])
        ax.minorticks_off()
    else:
        _empty(ax, "no finished run yet")
    if published_rows is not None and len(published_rows) and info["dataset"] in set(published_rows["dataset"]):
        pub = published_rows[(published_rows["dataset"] == info["dataset"])
                             & (published_rows["metric"] == info["metric"])]
        for (m, src), g in pub.groupby(["method", "source_short"]):
            ax.scatter(g["fraction"].astype(float) * 100, g["value"], marker="D", facecolors="none",
                       edgecolors="0.2", label=f"published: {m} ({src})", zorder=5)
        if len(ok) or len(pub):
            ax.set_xscale("log")
    ax.set_xlabel("labelled training frames (%, log scale)")
    ax.set_ylabel(_ylabel(info))
    ax.set_title(f"Label efficiency: {info['dataset']} {info['task']} ({info['engine']} engine)\n"
                 "mean over draws and seeds, band = 95% t-interval", fontsize=11)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(title="method", fontsize=8, loc="best")
    fig.tight_layout()
    _save(fig, path)


def gain_bars(t: Table, path: Path) -> None:
    """The paired gain over the baseline per fraction and method."""
    plt, sns = _plt()
    import pandas as pd

    from .aggregate import method_order

    pairs, info = t.pairs, t.info
    fig, ax = plt.subplots(figsize=(7, 4.5))
    if len(pairs):
        d = pairs.copy()
        fr = sorted(d["fraction"].astype(float).unique())
        d["labels"] = pd.Categorical(d["fraction"].map(fraction_label), [fraction_label(f) for f in fr])
        sns.barplot(data=d, x="labels", y="gain", hue="method", hue_order=method_order(d["method"], t.methods),
                    palette=_colours(t),
                    errorbar=t_interval, capsize=0.1, ax=ax)
        ax.axhline(0, color="0.2", lw=0.8)
        ax.legend(title="method", fontsize=8)
    else:
        _empty(ax, f"no run paired with {BASELINE} yet")
    ax.set_xlabel("labelled training frames")
    ax.set_ylabel(f"gain over {BASELINE} ({_gain_unit(info)})")
    ax.set_title(f"Gain over {BASELINE}: {info['dataset']} {info['task']} ({info['engine']})\n"
                 "paired by draw, seed and split, error bar = 95% t-interval", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


def per_class_heatmap(t: Table, path: Path) -> None:
    """Per-class scores (method x class), one panel per fraction."""
    plt, sns = _plt()
    import numpy as np
    import pandas as pd

    from .aggregate import method_order, per_class_columns

    part, info = t.part, t.info
    prefix, cols = per_class_columns(part)
    ok = part[part["status"] == "ok"]
    fractions = sorted(ok["fraction"].astype(float).unique()) if len(ok) else []
    if not cols or not fractions:
        fig, ax = plt.subplots(figsize=(6, 3))
        _empty(ax, "no per-class metric in these runs")
        _save(fig, path)
        return
    classes = [c[len(prefix) + 1:] for c in cols]
    order = method_order(ok["method"], t.methods)
    vals = ok[cols].apply(pd.to_numeric, errors="coerce")
    scale = 100.0 if info.get("unit") == "%" and np.nanmax(np.abs(vals.to_numpy(float)), initial=0) <= 1 else 1.0
    n = len(fractions)
    fig, axes = plt.subplots(n, 1, figsize=(max(8, 0.6 * len(classes) + 3), (0.5 * len(order) + 2.2) * n + 0.6),
                             squeeze=False)
    for ax, f in zip(axes[:, 0], fractions):
        sel = ok["fraction"] == f
        mat = (vals[sel].groupby(ok.loc[sel, "method"]).mean() * scale).reindex(order)
        mat.columns = classes
        sns.heatmap(mat, ax=ax, vmin=0, vmax=100 if scale == 100.0 else None, cmap="viridis", annot=len(classes) <= 20,
                    fmt=".0f", cbar_kws={"label": f"{_metric_name(prefix)} ({info.get('unit', '')})"})
        ax.set_title(f"{fraction_label(f)} labels (mean over draws and seeds; blank = class absent from val)", fontsize=10)
        ax.set_ylabel("method")
        ax.tick_params(axis="y", rotation=0)
        ax.set_xlabel("")
        ax.tick_params(axis="x", rotation=45)
        for lab in ax.get_xticklabels():
            lab.set_ha("right")
    fig.suptitle(f"Per-class {_metric_name(prefix)}: {info['dataset']} {info['task']} ({info['engine']})",
                 fontsize=12)
    fig.tight_layout()
    _save(fig, path)


def gain_vs_cost(t: Table, path: Path) -> None:
    """Mean gain against the pretraining job's cost (from the frame's pretrain.* columns)."""
    plt, sns = _plt()
    from .aggregate import pretrain_costs_of

    gains, costs, info = t.gains, pretrain_costs_of(t.part), t.info
    fig, ax = plt.subplots(figsize=(7, 4.5))
    g = gains[gains["mean_gain"].notna()].copy()
    gpu = {m: c.get("gpu_hours", math.nan) for m, c in costs.items() if m != BASELINE}
    use_gpu = bool(gpu) and all(v == v and v > 0 for v in gpu.values())
    key, label = (("gpu_hours", "pretraining cost (GPU-hours)") if use_gpu
                  else ("wall_seconds", "pretraining wall-clock time (s, Snakemake benchmark)"))
    g["cost"] = g["method"].map(lambda m: costs.get(m, {}).get(key, math.nan))
    g = g[g["cost"].notna()]
    if len(g):
        g["labels"] = g["fraction"].map(fraction_label)
        sns.scatterplot(data=g, x="cost", y="mean_gain", hue="method", palette=_colours(t), style="labels", s=80,
                        hue_order=[m for m in t.methods if m in set(g["method"])], ax=ax)
        for r in g.itertuples():
            if r.ci95_low == r.ci95_low:
                ax.plot([r.cost, r.cost], [r.ci95_low, r.ci95_high], color="0.6", lw=1, zorder=0)
        ax.axhline(0, color="0.2", lw=0.8)
        ax.legend(fontsize=8, title="method / labels")
    else:
        _empty(ax, "no pretraining cost or gain recorded yet")
    ax.set_xlabel(label)
    ax.set_ylabel(f"mean gain over {BASELINE} ({_gain_unit(info)})")
    ax.set_title(f"Gain against pretraining cost: {info['dataset']} {info['task']} ({info['engine']})\n"
                 "line = 95% t-interval of the gain", fontsize=11)
    fig.tight_layout()
    _save(fig, path)


@dataclass(frozen=True)
class Plot:
    """One plot kind: ``plots/<name>_<table>.png``, shown in report.md as ``caption`` and described in
    README.md as ``readme``."""
    name: str
    caption: str
    readme: str
    draw: Callable[["Table", Path], None]


PLOTS: list[Plot] = [
    Plot("label_efficiency", "Label efficiency", "label-efficiency curves (95% t-band over runs)", label_efficiency),
    Plot("gains", "Gain over scratch", "gain bars", gain_bars),
    Plot("per_class", "Per-class scores", "per-class heatmap", per_class_heatmap),
    Plot("gain_vs_cost", "Gain against pretraining cost", "gain against pretraining cost", gain_vs_cost),
]
PLOT_NAMES = [p.name for p in PLOTS]  # the Snakefile's declared outputs


def make_plots(t: Table, folder: Path) -> dict[str, Path]:
    """Draw every plot kind of one table into ``folder``; kind -> path, in the order of PLOTS."""
    figs = {}
    for plot in PLOTS:
        path = Path(folder) / f"{plot.name}_{t.info['name']}.png"
        plot.draw(t, path)
        figs[plot.name] = path
    return figs
