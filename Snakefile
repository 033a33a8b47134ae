"""The benchmark DAG: dataset -> index -> label splits / pretraining -> finetuning -> leaderboards.

Every job calls `python -m xmbench.cli <rule>`; params carry hashes of exactly the config a job
depends on, so editing one method's yaml re-runs that method's jobs and nothing else.
"""
import json
import sys
from pathlib import Path

from xmbench import codehash, grid
from xmbench.config import check_config, config_hash, dataset_root
from xmbench.data.waymo_env import uses_waymo, waymo_python
from xmbench.errors import BenchError
from xmbench.methods import load_method
from xmbench.tasks import load_task


# The embedded default only when no --configfile is given: Snakemake merges a `configfile:` under
# the command line's files key by key, so a paper run would otherwise inherit the default's
# datasets and run_datasets.
if not workflow.overwrite_configfiles:

    configfile: "config/default.yaml"


try:
    CFG = check_config(config, "config (config/default.yaml or --configfile)")
    METHODS = {m: load_method(m) for m in CFG["methods"]}
    TASKS = {t: load_task(t) for t in CFG["tasks"]}
    TASK_SETTINGS = {t: spec.settings_hash() for t, spec in TASKS.items()}  # a finetune param: edits re-run cells
    ENGINES = grid.task_engines(CFG, {t: spec.spec for t, spec in TASKS.items()})
    for _task, _engine in ENGINES.items():
        for _name, _ds in CFG["datasets"].items():
            TASKS[_task].check_format(_ds["format"], _name)
            if _engine == "openpcdet" and _ds["format"] != "nuscenes":
                raise BenchError(f"config field 'engines.{_task}': the openpcdet engine reads nuScenes datasets "
                                 f"only (its Waymo info files are not written yet); dataset '{_name}' is "
                                 f"{_ds['format']}: use the native engine or disable the dataset")
        if _engine == "openpcdet":
            from xmbench.detection.openpcdet import check_openpcdet

            check_openpcdet(CFG.get("openpcdet", {}).get("root", ""))
    CELLS = grid.cells(CFG, {t: spec.spec for t, spec in TASKS.items()})
    if uses_waymo(CFG):
        waymo_python(CFG)  # the Waymo environment must exist before the first job needs it
except BenchError as exc:
    sys.exit(f"error: {exc}")

R = CFG["results_dir"]
PY = sys.executable
CLI = f"{PY} -m xmbench.cli"
FRACTIONS = {grid.fraction_tag(f): f for f in CFG["fractions"]}
CONFIG_JSON = Path(R) / "config.resolved.json"
_text = json.dumps(CFG, indent=1, sort_keys=True)
if not CONFIG_JSON.exists() or CONFIG_JSON.read_text() != _text:
    CONFIG_JSON.parent.mkdir(parents=True, exist_ok=True)
    CONFIG_JSON.write_text(_text)  # rewritten only on change: its mtime must not re-trigger jobs


CLUSTER = CFG.get("cluster", {})
if workflow.non_local_exec and not workflow.dryrun and not CLUSTER.get("partition"):
    sys.exit("error: config field 'cluster.partition' must name the SLURM partition to submit to "
             "(set it in your config or with --config 'cluster={partition: NAME, account: NAME}')")
if (workflow.non_local_exec and not workflow.dryrun and not CLUSTER.get("account")
        and not getattr(workflow.executor_settings, "no_account", False)):
    sys.exit("error: config field 'cluster.account' must name the SLURM account to charge "
             "(or pass --slurm-no-account on a cluster without accounts); it is never guessed")


def pretrain_resources(method):
    return CFG["pretrain"].get("resources") or METHODS[method].spec["resources"]


def finetune_resources(task, dataset):
    return TASKS[task].spec["resources"][CFG["datasets"][dataset]["recipe_profile"]]


def slurm(res):
    """Resources the SLURM executor plugin reads; the local executor ignores them."""
    out = {"cpus_per_task": res["cpus"], "mem_mb": int(res["mem_gb"] * 1024),
           "runtime": max(1, int(res["hours"] * 60)), "gres": f"gpu:{res['gpus']}" if res["gpus"] else "",
           "slurm_partition": CLUSTER.get("partition") or ""}
    if CLUSTER.get("account"):
        out["slurm_account"] = CLUSTER["account"]
    return out


def metrics_files():
    return [str(c.metrics_path(R)) for c in CELLS]


TABLES = grid.table_names(CFG)
CAPTIONS = "xmbench/report_captions"
PLOTS = ["label_efficiency", "gains", "per_class", "gain_vs_cost"]


def dataset_input(wc):
    ds = CFG["datasets"][wc.dataset]
    return [f"{R}/data/{wc.dataset}"] if ds["source"] == "synthetic" else []


def pretrain_input(wc):
    return [f"{R}/{wc.dataset}/pretrain/{wc.method}/pretrain.json"] if METHODS[wc.method].pretrains else []


wildcard_constraints:
    dataset="|".join(CFG["datasets"]),
    method="[a-z][a-z0-9_]*",
    task="|".join(CFG["tasks"]),
    engine="|".join(sorted(set(ENGINES.values()))),
    frac="|".join(FRACTIONS),
    seed=r"\d+",


rule all:
    input:
        f"{R}/leaderboard.csv",


rule gpu_hours:
    """`snakemake gpu_hours --configfile config/paper.yaml` prints what each stage costs on a cluster."""
    output:
        f"{R}/gpu_hours.md",
    localrule: True
    shell:
        f"{CLI} gpu-hours --config {CONFIG_JSON} --out {{output}}"


rule generate_dataset:
    output:
        directory(f"{R}/data/{{dataset}}"),
    params:
        gen=lambda wc: config_hash(CFG["datasets"][wc.dataset].get("generator", {})),
    benchmark:
        f"{R}/benchmarks/generate_dataset/{{dataset}}.tsv"
    shell:
        f"{CLI} generate --config {CONFIG_JSON} --dataset {{wildcards.dataset}} --out {{output}}"


rule build_index:
    input:
        dataset_input,
    output:
        index=f"{R}/{{dataset}}/index.json",
        labels=f"{R}/{{dataset}}/labels.json",
    params:
        root=lambda wc: dataset_root(CFG, wc.dataset),
        ds=lambda wc: config_hash([CFG["datasets"][wc.dataset], CFG["model"]["lidar"]["nsweeps"]]),
    benchmark:
        f"{R}/benchmarks/build_index/{{dataset}}.tsv"
    shell:
        f"{CLI} index --config {CONFIG_JSON} --dataset {{wildcards.dataset}} --root {{params.root}} "
        "--index {output.index} --labels {output.labels}"


rule label_split:
    input:
        index=f"{R}/{{dataset}}/index.json",
    output:
        f"{R}/{{dataset}}/splits/{{frac}}.txt",
    params:
        fraction=lambda wc: FRACTIONS[wc.frac],
        split=config_hash(CFG["split"]),
    benchmark:
        f"{R}/benchmarks/label_split/{{dataset}}_{{frac}}.tsv"
    shell:
        f"{CLI} split --config {CONFIG_JSON} --index {{input.index}} --fraction {{params.fraction}} --out {{output}}"


rule pretrain:
    # The index only: labels.json is never an input of pretraining.
    input:
        index=f"{R}/{{dataset}}/index.json",
    output:
        record=f"{R}/{{dataset}}/pretrain/{{method}}/pretrain.json",
    params:
        out_dir=lambda wc: f"{R}/{wc.dataset}/pretrain/{wc.method}",
        spec=lambda wc: config_hash([METHODS[wc.method].spec, CFG["model"], CFG["pretrain"]]),
        code=lambda wc: codehash.pretrain_code(wc.method),  # method folder + harness + what they import
    threads: CFG.get("threads", 1)
    resources:
        cpus_per_task=lambda wc: slurm(pretrain_resources(wc.method))["cpus_per_task"],
        mem_mb=lambda wc: slurm(pretrain_resources(wc.method))["mem_mb"],
        runtime=lambda wc: slurm(pretrain_resources(wc.method))["runtime"],
        gres=lambda wc: slurm(pretrain_resources(wc.method))["gres"],
        slurm_partition=lambda wc: slurm(pretrain_resources(wc.method))["slurm_partition"],
        slurm_account=lambda wc: slurm(pretrain_resources(wc.method)).get("slurm_account", ""),
    benchmark:
        f"{R}/benchmarks/pretrain/{{dataset}}_{{method}}.tsv"
    shell:
        f"{CLI} pretrain --config {CONFIG_JSON} --dataset {{wildcards.dataset}} --method {{wildcards.method}} "
        "--index {input.index} --out-dir {params.out_dir} --record {output.record}"


rule finetune:
    input:
        index=f"{R}/{{dataset}}/index.json",
        labels=f"{R}/{{dataset}}/labels.json",
        split=f"{R}/{{dataset}}/splits/{{frac}}.txt",
        pretrain=pretrain_input,
    output:
        f"{R}/{grid.METRICS}",
    params:
        fraction=lambda wc: FRACTIONS[wc.frac],
        out_dir=lambda wc, output: str(Path(output[0]).parent),
        pretrain_arg=lambda wc, input: f"--pretrain {input.pretrain}" if input.pretrain else "",
        recipe=lambda wc: config_hash(TASKS[wc.task].recipe(CFG["datasets"][wc.dataset]["recipe_profile"],
                                                            FRACTIONS[wc.frac])),
        task_settings=lambda wc: TASK_SETTINGS[wc.task],
        code=lambda wc: codehash.engine_code(wc.task),  # the engine and what it imports (backbones too)
    threads: CFG.get("threads", 1)
    resources:
        cpus_per_task=lambda wc: slurm(finetune_resources(wc.task, wc.dataset))["cpus_per_task"],
        mem_mb=lambda wc: slurm(finetune_resources(wc.task, wc.dataset))["mem_mb"],
        runtime=lambda wc: slurm(finetune_resources(wc.task, wc.dataset))["runtime"],
        gres=lambda wc: slurm(finetune_resources(wc.task, wc.dataset))["gres"],
        slurm_partition=lambda wc: slurm(finetune_resources(wc.task, wc.dataset))["slurm_partition"],
        slurm_account=lambda wc: slurm(finetune_resources(wc.task, wc.dataset)).get("slurm_account", ""),
    benchmark:
        f"{R}/{grid.BENCHMARK}"
    shell:
        f"{CLI} finetune --config {CONFIG_JSON} --dataset {{wildcards.dataset}} --task {{wildcards.task}} "
        "--engine {wildcards.engine} --method {wildcards.method} --fraction {params.fraction} "
        "--seed {wildcards.seed} --index {input.index} --labels {input.labels} --split {input.split} "
        "{params.pretrain_arg} --out-dir {params.out_dir}"


rule leaderboard:
    input:
        metrics=metrics_files(),
        published="config/published_results.csv",
    output:
        board=report(f"{R}/leaderboard.csv", caption=f"{CAPTIONS}/leaderboard.rst", category="Leaderboard"),
        csv=[f"{R}/leaderboard_{n}.csv" for n in TABLES] + [f"{R}/gains_{n}.csv" for n in TABLES],
        md_tex=[f"{R}/leaderboard_{n}.{e}" for n in TABLES for e in ("md", "tex")],
        tables=[report(f"{R}/tables/leaderboard_{n}.html", caption=f"{CAPTIONS}/table.rst",
                       category="Tables", labels={"table": n}) for n in TABLES],
        plots=[report(f"{R}/plots/{k}_{n}.png", caption=f"{CAPTIONS}/{k}.rst", category="Plots",
                      subcategory=n, labels={"plot": k.replace("_", " ")}) for n in TABLES for k in PLOTS],
        report_md=f"{R}/report.md",
    benchmark:
        f"{R}/benchmarks/leaderboard/all.tsv"
    shell:
        f"{CLI} leaderboard --config {CONFIG_JSON} --out-dir {R} --published {{input.published}} "
        "--metrics {input.metrics}"
