"""The Snakefile's Python, so that the Snakefile holds rules only (and `snakemake --lint` stays clean).

Everything a rule needs beyond its paths lives here: the validated plan of a config, the cluster
resources of a job (one helper instead of a lambda per key and rule), each rule's software
environment, the cluster guard that runs once the executor is known, and the resolved config the
jobs read.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from . import codehash, grid
from .atomic import write_text
from .config import check_config, config_hash, load_yaml
from .errors import BenchError

# Job logs beside the benchmark records, one per job (Snakemake's `log:`); a cell's is named as its
# benchmark record is (xmbench.grid owns that name), so the two cannot disagree on the wildcards.
FINETUNE_LOG = grid.BENCHMARK.replace("benchmarks/", "logs/", 1).removesuffix(".tsv") + ".log"
PRETRAIN_LOG = "logs/pretrain/{dataset}_{method}{track}.log"
RESOURCE_KEYS = ("cpus_per_task", "mem_mb", "runtime", "gres", "slurm_partition", "slurm_account")
CONTROLLER_TIMEOUT_S = 3


@dataclass
class Plan:
    """A validated config and what the rules look up in it."""
    cfg: dict
    methods: dict
    tasks: dict
    engines: dict
    cells: list
    task_settings: dict = field(default_factory=dict)

    @property
    def results(self) -> str:
        return self.cfg["results_dir"]

    @property
    def fractions(self) -> dict[str, float]:
        return {grid.fraction_tag(f): f for f in self.cfg["fractions"]}

    def synthetic(self, dataset: str) -> bool:
        return self.cfg["datasets"][dataset]["source"] == "synthetic"

    def pretrains(self, method: str) -> bool:
        return self.methods[method].pretrains

    def recipe(self, wc) -> dict:
        return self.tasks[wc.task].recipe(self.cfg["datasets"][wc.dataset]["recipe_profile"], self.fractions[wc.frac])

    def pretrain_resources(self, wc) -> dict:
        res = self.cfg["pretrain"].get("resources") or self.methods[wc.method].spec["resources"]
        return slurm_resources(res, self.cfg["cluster"])

    def finetune_resources(self, wc) -> dict:
        profile = self.cfg["datasets"][wc.dataset]["recipe_profile"]
        return slurm_resources(self.tasks[wc.task].spec["resources"][profile], self.cfg["cluster"])

    def params(self, rule: str, wc) -> str:
        """The hash a job carries as a param: the config and code it depends on, so edits re-run it."""
        cfg = self.cfg
        if rule == "generate_dataset":
            return config_hash([cfg["datasets"][wc.dataset].get("generator", {}), codehash.command_code("generate")])
        if rule == "build_index":
            ds = cfg["datasets"][wc.dataset]
            return config_hash([ds, cfg["model"]["lidar"]["nsweeps"], codehash.command_code("index")])
        if rule == "label_split":
            return config_hash([cfg["split"], codehash.command_code("split")])
        if rule == "pretrain":
            track = grid.track_of_tag(wc.track)  # the budget enters only the budget track's jobs
            pretrain = {k: v for k, v in cfg["pretrain"].items() if k != "budget" or track == "budget"}
            return config_hash([self.methods[wc.method].spec, cfg["model"], pretrain, track])
        if rule == "finetune":
            return config_hash(self.recipe(wc))
        raise KeyError(rule)


    def finetune_log(self, cell) -> Path:
        return Path(self.results) / Path(FINETUNE_LOG).parent / f"{cell.benchmark_name}.log"

    def pretrain_log(self, dataset: str, method: str) -> Path:
        """``method``: the pretraining's folder name (``clap``, ``clap-budget``)."""
        return Path(self.results) / PRETRAIN_LOG.format(dataset=dataset, method=method, track="")

    def summary(self, dag=None) -> None:
        """The end-of-run block of failed jobs (xmbench.failures); under strict, a non-zero exit.

        ``dag`` (Snakemake's, in onsuccess/onerror): only the cells and pretraining runs this run's
        targets include count, so `snakemake gpu_hours` does not list 2,700 cells as missing.
        """
        import os

        from . import failures

        pretrained = {d: [m + grid.track_tag(tr) for tr in grid.tracks(self.cfg) for m in self.cfg["methods"]
                          if self.pretrains(m)] for d in self.cfg["datasets"]}
        cells = self.cells
        if dag is not None:
            planned = {os.path.normpath(str(f)) for job in dag.jobs for f in job.output}
            cells = [c for c in cells if os.path.normpath(str(c.metrics_path(self.results))) in planned]
            record = lambda d, m: os.path.normpath(failures.pretrain_record(self.results, d, m))  # noqa: E731
            pretrained = {d: [m for m in ms if record(d, m) in planned] for d, ms in pretrained.items()}
            if not cells and not any(pretrained.values()):
                return

        def log_of(kind, cell=None, **ids):
            return self.finetune_log(cell) if kind == "finetune" else self.pretrain_log(**ids)

        failed = failures.failed_jobs(self.results, cells, pretrained, log_of)
        failures.report(failed, len(cells) + sum(map(len, pretrained.values())), self.cfg["strict"])


def _check_no_duplicate_keys(paths) -> None:
    for path in paths:
        load_yaml(path)  # refuses a duplicated key, which Snakemake's own loader would silently drop


def make_plan(config: dict, configfiles) -> Plan:
    """Validate the config and everything it names; one BenchError line for the first problem."""
    from .methods import load_method
    from .tasks import load_task

    files = [str(p) for p in configfiles] or ["config/default.yaml"]
    _check_no_duplicate_keys(files)
    cfg = check_config(config, f"config ({', '.join(files)})")
    methods = {m: load_method(m) for m in cfg["methods"]}
    tasks = {t: load_task(t) for t in cfg["tasks"]}
    specs = {t: spec.spec for t, spec in tasks.items()}
    engines = grid.task_engines(cfg, specs)
    for (task, name), engine in engines.items():
        fmt = cfg["datasets"][name]["format"]
        tasks[task].check_format(fmt, name)
        tasks[task].check_engine_format(engine, fmt, name)
    if "openpcdet" in engines.values():
        from .detection.openpcdet import check_openpcdet

        check_openpcdet((cfg.get("openpcdet") or {}).get("root", ""))
    from .data.waymo.env import uses_waymo, waymo_python

    if uses_waymo(cfg):
        waymo_python(cfg)  # the Waymo environment must exist before the first job needs it
    return Plan(cfg, methods, tasks, engines, grid.cells(cfg, specs),
                {t: spec.settings_hash() for t, spec in tasks.items()})


def plan_or_exit(config: dict, configfiles) -> Plan:
    try:
        return make_plan(config, configfiles)
    except BenchError as exc:
        sys.exit(f"error: {exc}")


def slurm_resources(res: dict, cluster: dict) -> dict:
    """What the SLURM executor plugin reads from a yaml's resources; the local executor ignores it."""
    return {"cpus_per_task": res["cpus"], "mem_mb": int(res["mem_gb"] * 1024),
            "runtime": max(1, int(res["hours"] * 60)), "gres": f"gpu:{res['gpus']}" if res["gpus"] else "",
            "slurm_partition": cluster.get("partition") or "", "slurm_account": cluster.get("account") or ""}


def job_resources(of) -> dict:
    """Snakemake's per-key resource callables, all from one function of the wildcards."""
    return {key: (lambda wc, key=key: of(wc)[key]) for key in RESOURCE_KEYS}


def conda_env(plan: Plan, rule: str):
    """The software environment of a rule, for `--software-deployment-method conda`.

    Finetuning with the openpcdet engine runs in an OpenPCDet environment (the user builds OpenPCDet
    into it: it is not on PyPI and needs CUDA); everything else in the main one. The Waymo tools run
    as a subprocess in `waymo.python` (an environment from envs/waymo.yaml) in both cases.
    """
    if rule != "finetune":
        return "envs/main.yaml"
    return lambda wc: "envs/openpcdet.yaml" if wc.engine == "openpcdet" else "envs/main.yaml"


def python(workflow) -> str:
    """The interpreter the jobs run: the venv Snakemake runs in, or the job's conda env's own."""
    from snakemake.settings.types import DeploymentMethod

    methods = getattr(workflow.deployment_settings, "deployment_method", None) or ()
    return "python" if DeploymentMethod.CONDA in methods else sys.executable


def write_resolved_config(path: str | Path, cfg: dict) -> None:
    """The config every job reads; rewritten only on change, so its mtime never re-triggers a job."""
    path, text = Path(path), json.dumps(cfg, indent=1, sort_keys=True)
    if not path.is_file() or path.read_text() != text:
        write_text(path, text)


def cluster_refusal(cfg: dict, no_account: bool) -> str | None:
    """Why a SLURM run may not start (partition or account missing), or None."""
    cluster = cfg.get("cluster") or {}
    if not cluster.get("partition"):
        return ("config field 'cluster.partition' must name the SLURM partition to submit to "
                "(set it in your config or with --config 'cluster={partition: NAME, account: NAME}')")
    if not cluster.get("account") and not no_account:
        return ("config field 'cluster.account' must name the SLURM account to charge "
                "(or pass --slurm-no-account on a cluster without accounts); it is never guessed")
    return None


def controller_refusal(timeout_s: float = CONTROLLER_TIMEOUT_S) -> str | None:
    """Why the SLURM controller cannot take jobs, asked with a short timeout, or None.

    Without this, a missing controller makes the plugin's account and submission commands wait for
    many minutes without a word.
    """
    if shutil.which("scontrol") is None:
        return "scontrol not found: the slurm profile needs SLURM's client tools (sbatch, squeue, scontrol) on PATH"
    try:
        res = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return (f"the SLURM controller did not answer `scontrol ping` within {timeout_s:g} s: start slurmctld, or "
                "fix the SlurmctldHost of your slurm.conf (SLURM_CONF)")
    except OSError as exc:
        return f"scontrol ping failed ({exc}): check SLURM's client tools"
    out = (res.stdout + res.stderr).strip()
    if res.returncode != 0 or " is UP" not in out:
        return f"the SLURM controller is not up (`scontrol ping`: {out.splitlines()[0] if out else res.returncode})"
    return None


def guard_executor(workflow, cfg: dict) -> None:
    """Refuse a cluster run, in one line, before any job is submitted.

    It runs from `onstart`: Snakemake 9 knows the executor only after the Snakefile is read, so a
    check at parse time never sees it (the check that lived there was dead code).
    """
    plugin = workflow.executor_plugin
    if plugin is None or workflow.local_exec or workflow.dryrun or workflow.touch:
        return
    if getattr(plugin, "name", "") != "slurm":
        return
    why = cluster_refusal(cfg, bool(getattr(workflow.executor_settings, "no_account", False)))
    why = why or controller_refusal()
    if why:
        print(f"error: {why}", file=sys.stderr, flush=True)
        raise SystemExit(1)
