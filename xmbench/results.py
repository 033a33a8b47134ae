"""From metrics.json files to leaderboards and plots. Failed cells stay visible as rows."""
from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from .atomic import atomic_path  # noqa: E402

ID = ["dataset", "task", "engine", "method", "fraction", "seed"]


def _flatten(obj: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in obj.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        elif isinstance(v, list):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def load_runs(paths: list[Path]) -> pd.DataFrame:
    rows = []
    for p in paths:
        rec = json.loads(Path(p).read_text())
        row = {k: rec.get(k) for k in ID}
        row.update(status=rec.get("status"), reason=rec.get("reason"),
                   primary_metric=rec.get("primary_metric", {}).get("name"),
                   primary_value=rec.get("primary_metric", {}).get("value"), path=str(p))
        row.update(_flatten({k: v for k, v in rec.items() if k not in ID and k not in ("status", "reason",
                                                                                         "primary_metric")}))
        rows.append(row)
    df = pd.DataFrame(rows)
    return df.sort_values(ID).reset_index(drop=True) if len(df) else df


def _write_csv(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def summary_table(df: pd.DataFrame) -> pd.DataFrame:
    """method x fraction: mean, std and n over seeds of the primary metric; failed cells counted apart."""
    ok = df[df["status"] == "ok"]
    g = ok.groupby(["method", "fraction"])["primary_value"]
    table = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()}).reset_index()
    failed = df[df["status"] != "ok"].groupby(["method", "fraction"]).size().rename("n_failed").reset_index()
    table = table.merge(failed, on=["method", "fraction"], how="outer").fillna({"n": 0, "n_failed": 0})
    table["cell"] = [
        f"{m:.2f} ± {s:.2f}" if pd.notna(s) else (f"{m:.2f}" if pd.notna(m) else "failed")
        for m, s in zip(table["mean"], table["std"])]
    wide = table.pivot(index="method", columns="fraction", values="cell")
    wide.columns = [f"{c * 100:g}%" for c in wide.columns]
    n = table.pivot(index="method", columns="fraction", values="n").fillna(0).astype(int)
    n.columns = [f"n@{c * 100:g}%" for c in n.columns]
    return wide.join(n).reset_index()


def label_efficiency_plot(df: pd.DataFrame, path: Path, title: str, ylabel: str) -> None:
    ok = df[df["status"] == "ok"].copy()
    ok["labels (%)"] = ok["fraction"] * 100
    fig, ax = plt.subplots(figsize=(6, 4))
    if len(ok):
        sns.lineplot(data=ok, x="labels (%)", y="primary_value", hue="method", marker="o",
                     errorbar=("ci", 95), ax=ax)
    ax.set_xscale("log")
    ax.set_xlabel("labelled training frames (%, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=120)
    plt.close(fig)


def build_results(metric_paths: list[Path], out_dir: Path) -> pd.DataFrame:
    df = load_runs(metric_paths)
    out_dir = Path(out_dir)
    _write_csv(df, out_dir / "leaderboard.csv")
    if not len(df):
        return df
    for (dataset, task, engine), part in df.groupby(["dataset", "task", "engine"]):
        name = f"{dataset}_{task}" if df[df["task"] == task]["engine"].nunique() == 1 else f"{dataset}_{task}_{engine}"
        _write_csv(summary_table(part), out_dir / f"leaderboard_{name}.csv")
        metric = part["primary_metric"].dropna()
        unit = json.loads(Path(part["path"].iloc[0]).read_text())["primary_metric"].get("unit", "")
        ylabel = f"{metric.iloc[0] if len(metric) else 'metric'} ({unit})" if unit else "metric"
        label_efficiency_plot(part, out_dir / "plots" / f"label_efficiency_{name}.png",
                              f"{dataset} {task} ({engine} engine): label efficiency", ylabel)
    return df
