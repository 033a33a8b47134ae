"""The run grid: one owner for which cells a config asks for and where each cell's files live.

A cell is (dataset, task, engine, method, fraction, draw, seed, track). The Snakefile plans it, the finetune
entry point runs it and the leaderboard expects it; all three go through this module, so a cell's
engine, its folder and its fraction's spelling cannot disagree between them (they did once: the
leaderboard assumed each task's default engine and marked every `openpcdet` cell missing).

A fraction has three spellings and no others: the float (0.005), the path tag ("0.5pct") and the
label a table shows ("0.5%"). A draw (one labelled subset of a fraction; `split.draws`) is spelled
"" in paths for draw 0 and "-draw<k>" otherwise, so a config with one draw per fraction keeps the
folders it had before draws existed (`1pct/seed0`), and draw 2 of 1 % is `1pct-draw2/seed0`.

A track is a pretraining schedule: `own` (each method's own, from its method.yaml; the only track
unless `pretrain.budget` is set) and `budget` (every method sees the same number of frames, so a
gain cannot be a longer schedule). It is spelled "" in paths for `own` and "-budget" after the
method's folder (`clap-budget`), which no method name can contain. `scratch` pretrains nothing, so
it has no budget cells: its `own` cells are the baseline of both tracks' tables.
"""
from __future__ import annotations

import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import BenchError

# <results>/<dataset>/<task>/<engine>/<method>/<tag><draw>/seed<k>/metrics.json, as Snakemake wildcards
CELL_DIR = "{dataset}/{task}/{engine}/{method}{track}/{frac}{draw}/seed{seed}"
METRICS = CELL_DIR + "/metrics.json"
BENCHMARK = "benchmarks/finetune/{dataset}_{task}_{engine}_{method}{track}_{frac}{draw}_seed{seed}.tsv"
PRETRAIN_RECORD = "{dataset}/pretrain/{method}{track}/pretrain.json"
SPLIT_FILE = "{dataset}/splits/{frac}{draw}.txt"   # one labelled subset: the label_split rule's output
TUNE_FILE = "{dataset}/splits/tune.txt"            # train scenes held out for tuning (split.tune)
FIELDS = ("dataset", "task", "engine", "method", "fraction", "draw", "seed", "track")
TRACKS = ("own", "budget")
TRACK_WILDCARD = "(-budget)?"           # the {track} wildcard's values: empty for the own track
DRAW_WILDCARD = "(-draw[1-9][0-9]*)?"   # the {draw} wildcard's values: empty for draw 0
_DRAW_TAG = re.compile(r"-draw([1-9][0-9]*)")


@functools.lru_cache(maxsize=4096)
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


def draw_tag(draw: int) -> str:
    """A draw's spelling in paths: '' for draw 0 (the folders of a one-draw grid stay as they were)."""
    draw = int(draw)
    if draw < 0:
        raise ValueError(f"a draw is a non-negative integer, got {draw}")
    return "" if draw == 0 else f"-draw{draw}"


def draw_of_tag(tag: str) -> int:
    """The inverse of :func:`draw_tag`; anything else raises."""
    if tag == "":
        return 0
    m = _DRAW_TAG.fullmatch(tag)
    if not m:
        raise ValueError(f"'{tag}' is not a draw tag (e.g. '-draw1', or '' for draw 0)")
    return int(m.group(1))


def track_tag(track: str) -> str:
    """A track's spelling after the method's folder: '' for the method's own schedule."""
    if track not in TRACKS:
        raise ValueError(f"unknown track '{track}' (known: {', '.join(TRACKS)})")
    return "" if track == "own" else f"-{track}"


@functools.lru_cache(maxsize=64)
def track_of_tag(tag: str) -> str:
    """The inverse of :func:`track_tag`."""
    track = tag.removeprefix("-") if tag else "own"
    if track not in TRACKS or (tag and not tag.startswith("-")) or track_tag(track) != tag:
        raise ValueError(f"'{tag}' is not a track tag (e.g. '-budget', or '' for the own track)")
    return track


def tracks(cfg: dict) -> list[str]:
    """The pretraining tracks a config runs: the methods' own schedules, and the equal frame budget
    when `pretrain.budget` is set."""
    return ["own"] + (["budget"] if (cfg.get("pretrain") or {}).get("budget") else [])


def pretrain_record(results_dir: str | Path, dataset: str, method: str, track: str = "own") -> Path:
    """Where a pretraining run's record is (the pretrain rule's output)."""
    return Path(results_dir) / PRETRAIN_RECORD.format(dataset=dataset, method=method, track=track_tag(track))


@functools.lru_cache(maxsize=4096)
def split_tag(fraction: float, draw: int = 0) -> str:
    """A labelled subset's name in paths: '1pct' (draw 0), '1pct-draw2'."""
    return fraction_tag(fraction) + draw_tag(draw)


@functools.lru_cache(maxsize=4096)  # a results folder has few distinct tags and many records
def parse_split_tag(tag: str) -> tuple[float, int]:
    """'1pct-draw2' -> (0.01, 2); '1pct' -> (0.01, 0)."""
    frac, sep, rest = tag.partition("-")
    return fraction_of_tag(frac), draw_of_tag(sep + rest)


def draws_at(cfg: dict, fraction: float) -> list[int]:
    """The draws `split.draws` asks for at a fraction: a list for every fraction, or a mapping of
    fraction tags (e.g. `1pct`) to lists with `default` for the others; [0] when absent."""
    spec = (cfg.get("split") or {}).get("draws", [0])
    if isinstance(spec, dict):
        spec = spec.get(fraction_tag(fraction), spec.get("default", [0]))
    return [int(d) for d in spec]


def check_draws(cfg: dict, source: str = "config") -> None:
    """A per-fraction `split.draws` key must name a fraction of the config (else it would be ignored),
    and 100 % has one subset only: more draws there would re-run the same labels under new names."""
    spec = (cfg.get("split") or {}).get("draws", [0])
    if isinstance(spec, dict):
        tags = {fraction_tag(f) for f in cfg["fractions"]}
        for key in spec:
            if key != "default" and key not in tags:
                raise BenchError(f"{source}: field 'split.draws.{key}': not a fraction of this config "
                                 f"(use one of {', '.join(sorted(tags))}, or 'default')")
    for f in cfg["fractions"]:
        if float(f) >= 1 and draws_at(cfg, f) != [0]:
            raise BenchError(f"{source}: field 'split.draws': 100pct has one labelled subset (every training "
                             f"frame), so draws {draws_at(cfg, f)} would repeat it; give "
                             "{default: [...], 100pct: [0]} or leave 100 % out")


@dataclass(frozen=True, order=True)
class Cell:
    dataset: str
    task: str
    engine: str
    method: str
    fraction: float
    draw: int
    seed: int
    track: str = "own"

    @property
    def tag(self) -> str:
        """The fraction's path tag ('1pct'), without the draw."""
        return fraction_tag(self.fraction)

    @property
    def split_tag(self) -> str:
        """The labelled subset's path tag: fraction and draw ('1pct', '1pct-draw2')."""
        return split_tag(self.fraction, self.draw)

    def _fill(self, pattern: str) -> str:
        return pattern.format(dataset=self.dataset, task=self.task, engine=self.engine, method=self.method,
                              frac=self.tag, draw=draw_tag(self.draw), seed=self.seed, track=track_tag(self.track))

    def split_path(self, results_dir: str | Path) -> Path:
        return Path(results_dir) / self._fill(SPLIT_FILE)

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
        """The cell's fields by name (FIELDS order); plain attribute reads, not dataclasses.asdict,
        which deep-copies and costs a fifth of a 10,000-record leaderboard."""
        return {f: getattr(self, f) for f in FIELDS}

    @classmethod
    def from_metrics_path(cls, path: str | Path) -> "Cell | None":
        """The cell a metrics.json path belongs to, read from its folders; None when it is not one."""
        # str.split, not Path.parts: the leaderboard parses every record's path (10,000s of them)
        parts = os.fspath(path).replace(os.sep, "/").rstrip("/").split("/")
        if len(parts) < 7 or parts[-1] != "metrics.json" or not parts[-2].startswith("seed"):
            return None
        d, t, e, folder, tag, seed = parts[-7:-1]
        method, dash, track = folder.partition("-")
        try:
            fraction, draw = parse_split_tag(tag)
            return cls(d, t, e, method, fraction, draw, int(seed.removeprefix("seed")), track_of_tag(dash + track))
        except ValueError:
            return None


def metrics_glob() -> str:
    """Every cell's metrics.json under a results folder, for a folder read without its config."""
    return METRICS.format(dataset="*", task="*", engine="*", method="*", frac="*", draw="", seed="*", track="")


def engine_of(cfg: dict, task: str, spec: dict | None = None, fmt: str = "nuscenes") -> str:
    """The engine a task runs with on a dataset of format ``fmt``: `engines.<task>` in the config (one
    engine, or one per dataset format, e.g. `{nuscenes: openpcdet, waymo: native}` where a cluster
    engine has no model for a format), else the task's default."""
    if spec is None:
        from .tasks import load_task

        spec = load_task(task).spec
    chosen = (cfg.get("engines") or {}).get(task, spec["default_engine"])
    field = f"engines.{task}"
    if isinstance(chosen, dict):
        chosen, field = chosen.get(fmt, spec["default_engine"]), f"engines.{task}.{fmt}"
    if chosen not in spec["engines"]:
        raise BenchError(f"config field '{field}': unknown engine '{chosen}' (known: {sorted(spec['engines'])})")
    return chosen


def task_engines(cfg: dict, specs: dict[str, dict] | None = None) -> dict[tuple[str, str], str]:
    """(task, dataset) -> engine for every task and dataset of the config (``specs``: task ->
    task.yaml, loaded if absent)."""
    specs = specs or {}
    return {(t, d): engine_of(cfg, t, specs.get(t), ds["format"]) for t in cfg["tasks"]
            for d, ds in cfg["datasets"].items()}


def pretrained_methods(cfg: dict) -> list[str]:
    """The config's methods that have a pretraining job (every one but `scratch`-like yamls)."""
    from .methods import load_method

    return [m for m in cfg["methods"] if load_method(m).pretrains]


def pretrainings(cfg: dict) -> list[tuple[str, str, str]]:
    """Every pretraining job: (dataset, method, track)."""
    methods = pretrained_methods(cfg)
    return [(d, m, tr) for d in cfg["datasets"] for tr in tracks(cfg) for m in methods]


def cells(cfg: dict, specs: dict[str, dict] | None = None) -> list[Cell]:
    """Every cell the config asks for, in a fixed order: the only enumeration of the grid."""
    check_draws(cfg)
    engines = task_engines(cfg, specs)
    pretrained = set(pretrained_methods(cfg)) if len(tracks(cfg)) > 1 else set()
    return [Cell(d, t, engines[(t, d)], m, float(f), int(k), int(s), tr)
            for tr in tracks(cfg) for d in cfg["datasets"] for t in cfg["tasks"] for m in cfg["methods"]
            if tr == "own" or m in pretrained
            for f in cfg["fractions"] for k in draws_at(cfg, f) for s in cfg["seeds"]]


def splits(cfg: dict) -> list[tuple[str, float, int]]:
    """Every labelled subset the grid needs: (dataset, fraction, draw), each once."""
    return [(d, float(f), int(k)) for d in cfg["datasets"] for f in cfg["fractions"] for k in draws_at(cfg, f)]


def table_name(dataset: str, task: str, track: str = "own") -> str:
    """A table's file stem: one per (dataset, task, track); a run gives each task one engine, so no
    engine suffix; the two tracks never share a table."""
    return f"{dataset}_{task}{track_tag(track).replace('-', '_')}"


def table_names(cfg: dict) -> list[str]:
    return [table_name(d, t, tr) for tr in tracks(cfg) for d in cfg["datasets"] for t in cfg["tasks"]]
