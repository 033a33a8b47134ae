"""The benchmark DAG: dataset -> index -> label splits / pretraining -> finetuning -> leaderboards.

Every job calls `python -m xmbench.cli <rule>`; params carry hashes of exactly the config and the
code a job depends on (xmbench.dag, xmbench.codehash), so editing one method's yaml or
method.py re-runs that method's jobs and nothing else. The Python behind the rules is in
xmbench/dag.py; this file holds rules only.
"""
from pathlib import Path

from xmbench import codehash, grid, splits
from xmbench.config import dataset_root
from xmbench.dag import (FINETUNE_LOG, PRETRAIN_LOG, conda_env, guard_executor, job_resources, plan_or_exit,
                         python, write_resolved_config)


# The embedded default only when no --configfile is given: Snakemake merges a `configfile:` under
# the command line's files key by key, so a paper run would otherwise inherit the default's
# datasets and run_datasets.
if not workflow.overwrite_configfiles:

    configfile: "config/default.yaml"


PLAN = plan_or_exit(config, workflow.overwrite_configfiles)
CFG = PLAN.cfg
R = PLAN.results
CONFIG_JSON = f"{R}/config.resolved.json"
CLI = f"exec {python(workflow)} -m xmbench.cli"  # exec: the job is Snakemake's own child and dies with it
TABLES = grid.table_names(CFG)
CAPTIONS = "xmbench/report_captions"
from xmbench.leaderboard.plots import PLOT_NAMES as PLOTS  # the one list of plot kinds


onstart:
    guard_executor(workflow, CFG)  # here, not at parse time: only now does Snakemake know the executor
    write_resolved_config(CONFIG_JSON, CFG)  # not on --dry-run or --lint, and only when it changed


onsuccess:
    PLAN.summary(workflow.dag)  # every failed job with its reason and traceback; non-zero exit under strict


onerror:
    PLAN.summary(workflow.dag)


wildcard_constraints:
    dataset="|".join(CFG["datasets"]),
    method="[a-z][a-z0-9_]*",
    task="|".join(CFG["tasks"]),
    engine="|".join(sorted(set(PLAN.engines.values()))),
    frac="|".join(PLAN.fractions),
    draw=grid.DRAW_WILDCARD,  # '' for draw 0, '-draw<k>' otherwise (split.draws)
    track=grid.TRACK_WILDCARD,  # '' for the methods' own schedules, '-budget' (pretrain.budget)
    seed=r"\d+",


rule all:
    input:
        f"{R}/leaderboard.csv",


rule gpu_hours:
    """`snakemake gpu_hours --configfile config/paper.yaml` prints what each stage costs on a cluster."""
    output:
        f"{R}/gpu_hours.md",
    log:
        f"{R}/logs/gpu_hours.log",
    params:
        config=CONFIG_JSON,
    conda:
        conda_env(PLAN, "gpu_hours")
    localrule: True
    shell:
        f"{CLI} gpu-hours --config {{params.config}} --out {{output}} 2> {{log}}"


rule generate_dataset:
    output:
        directory(f"{R}/data/{{dataset}}"),
    log:
        f"{R}/logs/generate_dataset/{{dataset}}.log",
    params:
        config=CONFIG_JSON,
        gen=lambda wc: PLAN.params("generate_dataset", wc),
    conda:
        conda_env(PLAN, "generate_dataset")
    benchmark:
        f"{R}/benchmarks/generate_dataset/{{dataset}}.tsv"
    shell:
        f"{CLI} generate --config {{params.config}} --dataset {{wildcards.dataset}} --out {{output}} > {{log}} 2>&1"


rule build_index:
    input:
        lambda wc: expand(rules.generate_dataset.output, dataset=wc.dataset) if PLAN.synthetic(wc.dataset) else [],
    output:
        index=f"{R}/{{dataset}}/index.json",
        labels=f"{R}/{{dataset}}/labels.json",
    log:
        f"{R}/logs/build_index/{{dataset}}.log",
    params:
        config=CONFIG_JSON,
        root=lambda wc: dataset_root(CFG, wc.dataset),
        ds=lambda wc: PLAN.params("build_index", wc),
    conda:
        conda_env(PLAN, "build_index")
    benchmark:
        f"{R}/benchmarks/build_index/{{dataset}}.tsv"
    shell:
        f"{CLI} index --config {{params.config}} --dataset {{wildcards.dataset}} --root {{params.root}} "
        "--index {output.index} --labels {output.labels} > {log} 2>&1"


rule label_split:
    input:
        index=rules.build_index.output.index,
        published=lambda wc: splits.source_files(CFG["split"], wc.dataset, PLAN.fractions[wc.frac],
                                                 grid.draw_of_tag(wc.draw)),
    output:
        f"{R}/{grid.SPLIT_FILE}",
    log:
        f"{R}/logs/label_split/{{dataset}}_{{frac}}{{draw}}.log",
    params:
        config=CONFIG_JSON,
        fraction=lambda wc: PLAN.fractions[wc.frac],
        draw=lambda wc: grid.draw_of_tag(wc.draw),
        split=lambda wc: splits.rule_hash(CFG["split"], wc.dataset, PLAN.fractions[wc.frac],
                                          grid.draw_of_tag(wc.draw)),
    conda:
        conda_env(PLAN, "label_split")
    benchmark:
        f"{R}/benchmarks/label_split/{{dataset}}_{{frac}}{{draw}}.tsv"
    shell:
        f"{CLI} split --config {{params.config}} --index {{input.index}} --fraction {{params.fraction}} "
        "--draw {params.draw} --out {output} > {log} 2>&1"


rule pretrain:
    # The index only: labels.json is never an input of pretraining.
    input:
        index=rules.build_index.output.index,
    output:
        record=f"{R}/{grid.PRETRAIN_RECORD}",
    log:
        f"{R}/{PRETRAIN_LOG}",
    params:
        config=CONFIG_JSON,
        out_dir=lambda wc, output: Path(output.record).parent,
        spec=lambda wc: PLAN.params("pretrain", wc),
        track=lambda wc: grid.track_of_tag(wc.track),
        code=lambda wc: codehash.pretrain_code(wc.method),  # method folder + harness + what they import
    threads: CFG["threads"]
    resources:
        **job_resources(PLAN.pretrain_resources),
    conda:
        conda_env(PLAN, "pretrain")
    benchmark:
        f"{R}/benchmarks/pretrain/{{dataset}}_{{method}}{{track}}.tsv"
    shell:
        f"{CLI} pretrain --config {{params.config}} --dataset {{wildcards.dataset}} --method {{wildcards.method}} "
        "--track {params.track} --index {input.index} --out-dir {params.out_dir} --record {output.record} > {log} 2>&1"


rule finetune:
    input:
        index=rules.build_index.output.index,
        labels=rules.build_index.output.labels,
        split=rules.label_split.output[0],
        pretrain=lambda wc: (expand(rules.pretrain.output.record, dataset=wc.dataset, method=wc.method,
                                    track=wc.track) if PLAN.pretrains(wc.method) else []),
    output:
        metrics=f"{R}/{grid.METRICS}",
    log:
        f"{R}/{FINETUNE_LOG}",
    params:
        config=CONFIG_JSON,
        fraction=lambda wc: PLAN.fractions[wc.frac],
        draw=lambda wc: grid.draw_of_tag(wc.draw),
        track=lambda wc: grid.track_of_tag(wc.track),
        out_dir=lambda wc, output: Path(output.metrics).parent,
        pretrain_arg=lambda wc, input: f"--pretrain {input.pretrain}" if input.pretrain else "",
        recipe=lambda wc: PLAN.params("finetune", wc),
        task_settings=lambda wc: PLAN.task_settings[wc.task],
        code=lambda wc: codehash.engine_code(wc.task),  # the engine and what it imports (backbones too)
    threads: CFG["threads"]
    resources:
        **job_resources(PLAN.finetune_resources),
    conda:
        conda_env(PLAN, "finetune")
    benchmark:
        f"{R}/{grid.BENCHMARK}"
    shell:
        f"{CLI} finetune --config {{params.config}} --dataset {{wildcards.dataset}} --task {{wildcards.task}} "
        "--engine {wildcards.engine} --method {wildcards.method} --fraction {params.fraction} "
        "--draw {params.draw} --track {params.track} --seed {wildcards.seed} --index {input.index} --labels {input.labels} --split {input.split} "
        "{params.pretrain_arg} --out-dir {params.out_dir} > {log} 2>&1"


rule leaderboard:
    input:
        metrics=[str(c.metrics_path(R)) for c in PLAN.cells],
        published="config/published_results.csv",
    output:
        board=report(f"{R}/leaderboard.csv", caption=f"{CAPTIONS}/leaderboard.rst", category="Leaderboard"),
        csv=[f"{R}/{k}_{n}.csv" for k in ("leaderboard", "gains", "draws") for n in TABLES],
        md_tex=[f"{R}/leaderboard_{n}.{e}" for n in TABLES for e in ("md", "tex")],
        tables=[report(f"{R}/tables/leaderboard_{n}.html", caption=f"{CAPTIONS}/table.rst",
                       category="Tables", labels={"table": n}) for n in TABLES],
        plots=[report(f"{R}/plots/{k}_{n}.png", caption=f"{CAPTIONS}/{k}.rst", category="Plots",
                      subcategory=n, labels={"plot": k.replace("_", " ")}) for n in TABLES for k in PLOTS],
        report_md=f"{R}/report.md",
        readme=f"{R}/README.md",
    log:
        f"{R}/logs/leaderboard.log",
    params:
        config=CONFIG_JSON,
        out_dir=lambda wc, output: Path(output.board).parent,
        code=codehash.command_code("leaderboard"),
    conda:
        conda_env(PLAN, "leaderboard")
    benchmark:
        f"{R}/benchmarks/leaderboard/all.tsv"
    shell:
        f"{CLI} leaderboard --config {{params.config}} --out-dir {{params.out_dir}} "
        "--published {input.published} --metrics {input.metrics} > {log} 2>&1"
