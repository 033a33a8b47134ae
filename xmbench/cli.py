"""Command line the Snakemake rules call: one subcommand per rule, one clear line per user error."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import traceback
from pathlib import Path

from .errors import BenchError


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def _cfg(path: str) -> dict:
    from .config import check_config

    return check_config(json.loads(Path(path).read_text()), path)


def cmd_generate(a) -> None:
    cfg = _cfg(a.config)
    ds = cfg["datasets"][a.dataset]
    gen = dict(ds.get("generator", {}))
    if ds["format"] == "waymo":  # TFRecords of real Frame protos, written in the Waymo environment
        from .data.waymo.env import run_module, waymo_python

        opts = [x for k, v in sorted(gen.items()) for x in (f"--{k.replace('_', '-')}", v)]
        run_module(waymo_python(cfg), "synthetic.waymo_writer", ["--out", a.out, *opts])
        return
    from .data.synthetic import generate_nuscenes

    if "image_size" in gen:
        gen["image_size"] = tuple(gen["image_size"])
    generate_nuscenes(Path(a.out), **gen)


def cmd_index(a) -> None:
    cfg = _cfg(a.config)
    ds = cfg["datasets"][a.dataset]
    if ds["format"] == "waymo":  # converted once into per-frame files beside the index
        from .data.waymo.env import run_module, waymo_python

        # model.lidar.nsweeps is nuScenes' sweep count: a Waymo frame is one sweep of five lidars, as
        # OpenPCDet's Waymo configs use it (SEQUENCE_CONFIG disabled).
        root = Path(a.root)
        frames_dir = Path(a.index).parent / "frames"
        run_module(waymo_python(cfg), "waymo.tf.convert",
                   ["--tfrecords", root / ds["train_split"], root / ds["val_split"], "--out", frames_dir,
                    "--dataset", a.dataset, "--index", a.index, "--labels", a.labels])
        return
    from .data.nuscenes.index import build_index, write_index

    index, labels = build_index(a.root, ds["version"], {"train": ds["train_split"], "val": ds["val_split"]},
                                cfg["model"]["lidar"]["nsweeps"], a.dataset)
    write_index(index, labels, Path(a.index), Path(a.labels))


def cmd_split(a) -> None:
    from .data.frames import load_json
    from .splits import labelled_subset, tune_tokens, write_split

    cfg = _cfg(a.config)
    index = load_json(a.index)
    if a.tune:
        tokens = tune_tokens(index["frames"], cfg["split"])
    else:
        if a.fraction is None:
            raise BenchError("split: --fraction is required (or --tune for the tune split)")
        tokens = labelled_subset(index["frames"], cfg["split"], index.get("dataset", ""), a.fraction, a.draw)
    digest = write_split(a.out, tokens)
    print(f"{a.out}: {len(tokens)} frames, sha256 {digest}")


def _relaunch_per_gpu(device: str) -> None:
    """A job holding several GPUs pretrains under torchrun, one process per GPU it was given."""
    import subprocess

    import torch

    if "WORLD_SIZE" in os.environ or device == "cpu" or torch.cuda.device_count() < 2:
        return
    n = torch.cuda.device_count()
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
           "-m", "xmbench.cli", *sys.argv[1:]]
    raise SystemExit(subprocess.call(cmd))


def cmd_pretrain(a) -> None:
    import torch

    _relaunch_per_gpu(a.device)
    from .atomic import sha256_file, write_json, write_text
    from .methods import load_method
    from .pretraining.loop import Pretrainer

    cfg = _cfg(a.config)
    torch.set_num_threads(cfg.get("threads", 1))
    spec = load_method(a.method)
    from .provenance import provenance

    record = {"method": a.method, "dataset": a.dataset, "track": a.track, "status": "ok", "reason": None, "checkpoint": None,
              "provenance": provenance()}
    try:
        ckpt = Pretrainer(spec, cfg, Path(a.index), Path(a.out_dir), device=_device(a.device), track=a.track).run()
        # relative to the record, so a copied results folder finetunes from its own checkpoint
        record.update(checkpoint=os.path.relpath(Path(ckpt).resolve(), Path(a.record).resolve().parent),
                      checkpoint_sha256=sha256_file(ckpt))
    except Exception as exc:  # recorded so every finetuning cell of this method reports why it failed
        record.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
        try:  # on a full disk the traceback may not fit; the record's one line must still be written
            write_text(Path(a.out_dir) / "traceback.txt", traceback.format_exc())
        except OSError as err:
            record["reason"] += f" (traceback not written: {err.strerror or err})"
        print(f"pretraining {a.method} failed: {record['reason']}", file=sys.stderr)
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for the job
        write_json(a.record, record)


def cmd_finetune(a) -> None:
    from .finetune import run_finetune
    from .tasks import load_task

    cfg = _cfg(a.config)
    rec = run_finetune(load_task(a.task), a.engine, cfg, a.dataset, a.method, a.fraction, a.seed,
                       Path(a.index), Path(a.labels), Path(a.split), Path(a.pretrain) if a.pretrain else None,
                       Path(a.out_dir), device=_device(a.device), draw=a.draw, track=a.track)
    if rec["status"] != "ok":
        print(f"finetuning failed: {rec['reason']}", file=sys.stderr)


def cmd_leaderboard(a) -> None:
    from .leaderboard.build import run

    run(a)


def cmd_gpu_hours(a) -> None:
    from .atomic import write_text
    from .config import load_config
    from .cost import cost_markdown

    text = cost_markdown(_cfg(a.config) if a.config.endswith(".json") else load_config(a.config))
    if a.out:
        write_text(a.out, text)
    print(text, end="")


def cmd_new_method(a) -> None:
    from .methods import METHODS_DIR, load_method

    import re
    if not re.fullmatch(r"[a-z][a-z0-9_]*", a.name):
        raise BenchError(f"method name '{a.name}' must match [a-z][a-z0-9_]* (it names the folder and the yaml)")
    folder = Path(a.methods_dir or METHODS_DIR) / a.name
    if folder.exists():
        raise BenchError(f"{folder}: already exists; pick another name or edit it")
    cls = "".join(part.capitalize() for part in a.name.split("_"))
    templates = Path(__file__).parent / "templates"
    tmp = folder.with_name(f".{a.name}.partial")
    tmp.mkdir(parents=True)
    for fname in ("method.yaml", "method.py"):
        (tmp / fname).write_text((templates / f"{fname}.tmpl").read_text().format(name=a.name, cls=cls))
    tmp.rename(folder)
    load_method(a.name, folder.parent)
    print(f"created {folder}/method.yaml and method.py (class {cls}); add '{a.name}' to config.methods")


def _die_with_parent() -> None:
    """Ask Linux to end this job when its parent dies (a killed Snakemake, or its job step).

    Without it, killing Snakemake left its running job training on as an orphan beside the rerun.
    The rules `exec` the CLI, so the parent is Snakemake itself, not a shell that would outlive it.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes
    import signal

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGTERM))  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="xmbench")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("generate"); s.add_argument("--config"); s.add_argument("--dataset"); s.add_argument("--out")
    s.set_defaults(fn=cmd_generate)
    s = sub.add_parser("index")
    for opt in ("--config", "--dataset", "--root", "--index", "--labels"):
        s.add_argument(opt, required=True)
    s.set_defaults(fn=cmd_index)
    s = sub.add_parser("split")
    for opt in ("--config", "--index", "--out"):
        s.add_argument(opt, required=True)
    s.add_argument("--fraction", type=float, default=None)
    s.add_argument("--draw", type=int, default=0, help="which draw of the fraction (split.draws)")
    s.add_argument("--tune", action="store_true", help="write the tune split (split.tune) instead")
    s.set_defaults(fn=cmd_split)
    s = sub.add_parser("pretrain")
    for opt in ("--config", "--dataset", "--method", "--index", "--out-dir", "--record"):
        s.add_argument(opt, required=True)
    s.add_argument("--device", default="auto", help="cuda, cpu, or auto: cuda when torch sees a GPU")
    s.add_argument("--track", default="own", choices=("own", "budget"),
                   help="own: the method's schedule; budget: pretrain.budget.frames frames, as every method")
    s.set_defaults(fn=cmd_pretrain)
    s = sub.add_parser("finetune")
    for opt in ("--config", "--dataset", "--task", "--method", "--index", "--labels", "--split", "--out-dir"):
        s.add_argument(opt, required=True)
    s.add_argument("--fraction", type=float, required=True)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--draw", type=int, default=0, help="the cell's draw of the labelled subset (split.draws)")
    s.add_argument("--track", default="own", choices=("own", "budget"),
                   help="the pretraining track of the checkpoint (pretrain.budget)")
    s.add_argument("--pretrain", default=None)
    s.add_argument("--engine", default=None)
    s.add_argument("--device", default="auto", help="cuda, cpu, or auto: cuda when torch sees a GPU")
    s.set_defaults(fn=cmd_finetune)
    s = sub.add_parser("gpu-hours", help="GPU-hours of each stage of a config, from the method and task yamls")
    s.add_argument("--config", required=True)
    s.add_argument("--out", default=None)
    s.set_defaults(fn=cmd_gpu_hours)
    s = sub.add_parser("new-method", help="scaffold methods/<name>/ with a working method.yaml and method.py")
    s.add_argument("name")
    s.add_argument("--methods-dir", default=None)
    s.set_defaults(fn=cmd_new_method)
    s = sub.add_parser("leaderboard")
    s.add_argument("--out-dir", required=True, help="the results folder (config results_dir)")
    s.add_argument("--metrics", nargs="*", default=None,
                   help="metrics.json paths; default: the config's grid, or every metrics.json under --out-dir")
    s.add_argument("--config", default=None, help="resolved config (json or yaml): its grid makes absent cells "
                   "'missing' rows")
    s.add_argument("--published", default=None, help="published numbers CSV (default config/published_results.csv)")
    s.add_argument("--no-plots", action="store_true")
    s.set_defaults(fn=cmd_leaderboard)
    args = p.parse_args(argv)
    _die_with_parent()
    try:
        args.fn(args)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # a full disk, a read-only folder: the file and the fix, not a traceback
        where = exc.filename or "an output file"
        fix = "free space on that filesystem" if exc.errno == errno.ENOSPC else "check the path and its permissions"
        print(f"error: {where}: {exc.strerror or exc}; {fix} and re-run", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
