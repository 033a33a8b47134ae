"""The run grid: one owner for which cells a config asks for and where each cell's files live.

A cell is (dataset, task, engine, method, fraction, seed). The Snakefile plans it, the finetune
entry point runs it and the leaderboard expects it; all three go through this module, so a cell's
engine, its folder and its fraction's spelling cannot disagree between them (they did once: the
leaderboard assumed each task's default engine and marked every `openpcdet` cell missing).

A fraction has three spellings and no others: the float (0.005), the path tag ("0.5pct") and the
label a table shows ("0.5%").
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from .errors import BenchError

# <results>/<dataset>/<task>/<engine>/<method>/<tag>/seed<k>/metrics.json, as Snakemake wildcards
CELL_DIR = "{dataset}/{task}/{engine}/{method}/{frac}/seed{seed}"
METRICS = CELL_DIR + "/metrics.json"
BENCHMARK = "benchmarks/finetune/{dataset}_{task}_{engine}_{method}_{frac}_seed{seed}.tsv"
FIELDS = ("dataset", "task", "engine", "method", "fraction", "seed")


def fraction_tag(fraction: float) -> str:
    """A path-safe name for a label fraction: 0.01 -> '1pct', 0.005 -> '0.5pct', 1.0 -> '100pct'."""
    return f"{round(float(fraction) * 100, 6):g}pct"


def fraction_of_tag(tag: str) -> float:
    """The inverse of :func:`fraction_tag`; a folder that is not a tag raises."""
    if not tag.endswith("pct"):
        raise ValueError(f"'{tag}' is not a fraction tag (e.g. '10pct')")
    return round(float(tag[:-3]) / 100, 9)


def fraction_label(fraction: float) -> str:
    """What tables and plots show: 0.005 -> '0.5%'."""
    return f"{round(float(fraction) * 100, 6):g}%"


@dataclass(frozen=True, order=True)
class Cell:
    dataset: str
    task: str
    engine: str
    method: str
    fraction: float
    seed: int

    @property
    def tag(self) -> str:
        return fraction_tag(self.fraction)

    def _fill(self, pattern: str) -> str:
        return pattern.format(dataset=self.dataset, task=self.task, engine=self.engine, method=self.method,
                              frac=self.tag, seed=self.seed)

    def out_dir(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / self._fill(CELL_DIR)

    def metrics_path(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / self._fill(METRICS)

    def benchmark_path(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / self._fill(BENCHMARK)

    @property
    def benchmark_name(self) -> str:
        """The stem of the cell's Snakemake benchmark record."""
        return Path(self._fill(BENCHMARK)).stem

    def identity(self) -> dict:
        return asdict(self)

    @classmethod
    def from_metrics_path(cls, path: str | Path) -> "Cell | None":
        """The cell a metrics.json path belongs to, read from its folders; None when it is not one."""
        parts = Path(path).parts
        if len(parts) < 7 or parts[-1] != "metrics.json" or not parts[-2].startswith("seed"):
            return None
        d, t, e, m, tag, seed = parts[-7:-1]
        try:
            return cls(d, t, e, m, fraction_of_tag(tag), int(seed.removeprefix("seed")))
        except ValueError:
            return None


def metrics_glob() -> str:
    """Every cell's metrics.json under a results folder, for a folder read without its config."""
    return METRICS.format(dataset="*", task="*", engine="*", method="*", frac="*", seed="*")


def engine_of(cfg: dict, task: str, spec: dict | None = None) -> str:
    """The engine a task runs with: `engines.<task>` in the config, else the task's default."""
    if spec is None:
        from .tasks import load_task

        spec = load_task(task).spec
    engine = (cfg.get("engines") or {}).get(task, spec["default_engine"])
    if engine not in spec["engines"]:
        raise BenchError(f"config field 'engines.{task}': unknown engine '{engine}' "
                         f"(known: {sorted(spec['engines'])})")
    return engine


def task_engines(cfg: dict, specs: dict[str, dict] | None = None) -> dict[str, str]:
    """task -> engine for every task of the config (``specs``: task -> task.yaml, loaded if absent)."""
    specs = specs or {}
    return {t: engine_of(cfg, t, specs.get(t)) for t in cfg["tasks"]}


def cells(cfg: dict, specs: dict[str, dict] | None = None) -> list[Cell]:
    """Every cell the config asks for, in a fixed order: the only enumeration of the grid."""
    engines = task_engines(cfg, specs)
    return [Cell(d, t, engines[t], m, float(f), int(s))
            for d in cfg["datasets"] for t in cfg["tasks"] for m in cfg["methods"]
            for f in cfg["fractions"] for s in cfg["seeds"]]


def table_names(cfg: dict) -> list[str]:
    """The stem of each (dataset, task) table; a run gives each task one engine, so no engine suffix."""
    return [f"{d}_{t}" for d in cfg["datasets"] for t in cfg["tasks"]]
