"""The OpenPCDet install check, a run's tag and folder, and its train.py / test.py launch.

Kept apart from the files a run prepares: this is the only part that touches the user's install
and starts processes, and the tag rule (a folder reused only by the very same cell, since
OpenPCDet resumes silently from any checkpoint it finds) must be read in one place.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from ...config import config_hash
from ...errors import BenchError


def check_openpcdet(root) -> None:
    """Fail early, in one line, when ``root`` is not an OpenPCDet checkout the engine can run."""
    if root is None or str(root).strip() == "":
        raise BenchError("openpcdet: no install path given; set the OpenPCDet root (a clone of "
                         "https://github.com/open-mmlab/OpenPCDet built with `python setup.py develop`) "
                         "in the config, or select the native engine")
    root = Path(root).expanduser()
    needed = ["tools/train.py", "tools/scripts/dist_train.sh", "pcdet/__init__.py",
              "tools/cfgs/dataset_configs/nuscenes_dataset.yaml"]
    missing = [p for p in needed if not (root / p).is_file()]
    if missing:
        raise BenchError(f"openpcdet: {root} is not an OpenPCDet checkout (missing {missing[0]}); set the "
                         "OpenPCDet root in the config to your clone of https://github.com/open-mmlab/OpenPCDet "
                         "(built with `python setup.py develop`), or select the native engine")


# ------------------------------------------------------------------------------------------------
# Run identity
# ------------------------------------------------------------------------------------------------

def run_tag(dataset: str, method: str, fraction: float, seed: int, recipe: dict, checkpoint_sha256: str | None,
            split_sha256: str | None, template: str) -> str:
    """A tag unique to the cell and to everything its result depends on: a folder is reused only by
    a rerun of the very same cell (where resuming is right), never by another cell."""
    digest = config_hash({"recipe": recipe, "checkpoint": checkpoint_sha256, "split": split_sha256,
                          "template": template})[:10]
    frac = f"{fraction:g}".replace(".", "p")
    return f"xmb_{dataset}_{method}_f{frac}_s{seed}_{digest}"


def output_dir(root, cfg_file, extra_tag: str) -> Path:
    """Where tools/train.py writes: ROOT_DIR/output/<cfg path minus its first part and file>/<stem>/<tag>."""
    cfg_file = str(cfg_file)
    group = "/".join(cfg_file.split("/")[1:-1])
    return Path(root) / "output" / group / Path(cfg_file).stem / extra_tag


def train_command(cfg_file: Path, extra_tag: str, batch_size: int, epochs: int, gpus: int = 1,
                  pretrained: Path | None = None, workers: int = 4, python: str | None = None) -> list[str]:
    """The command line, run from OpenPCDet's tools/ folder with ``python`` (the configured
    interpreter; default: the one running the benchmark, never whatever ``python`` the PATH has).

    Several GPUs: ``torchrun`` (``python -m torch.distributed.run``), which passes each process's
    rank in LOCAL_RANK, the variable train.py reads when ``--local_rank`` is absent; OpenPCDet's
    dist_train.sh uses ``torch.distributed.launch``, whose ``--local-rank=N`` train.py rejects."""
    py = python or sys.executable
    args = ["--cfg_file", str(cfg_file), "--extra_tag", extra_tag, "--batch_size", str(batch_size),
            "--epochs", str(epochs), "--workers", str(workers)]
    if pretrained is not None:
        args += ["--pretrained_model", str(pretrained)]
    if gpus > 1:
        return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "train.py",
                "--launcher", "pytorch", *args]
    return [py, "train.py", *args]


def eval_command(cfg_file: Path, extra_tag: str, batch_size: int, ckpt: Path, gpus: int = 1, workers: int = 4,
                 python: str | None = None) -> list[str]:
    """tools/test.py on one checkpoint of the run (a re-evaluation), launched like train_command."""
    py = python or sys.executable
    args = ["--cfg_file", str(cfg_file), "--extra_tag", extra_tag, "--batch_size", str(batch_size),
            "--ckpt", str(ckpt), "--workers", str(workers)]
    if gpus > 1:
        return [py, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={gpus}", "test.py",
                "--launcher", "pytorch", *args]
    return [py, "test.py", *args]


def openpcdet_env(base: dict | None = None) -> dict:
    """The environment OpenPCDet runs in. torch >= 2.6 loads with ``weights_only=True`` unless told
    otherwise; OpenPCDet's own ``torch.load`` calls (its resume, its evaluation's checkpoint load,
    ``--pretrained_model``) predate that and read full pickles, so the run sets torch's documented
    switch TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 (its train.py resume otherwise fails silently and
    restarts from scratch). The checkpoints it loads are the run's own and the benchmark's."""
    env = dict(os.environ if base is None else base)
    env["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    env.setdefault("PYTHONUNBUFFERED", "1")
    return env


_EXC_LINE = re.compile(r"^([A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt|Failure)|[A-Za-z_][\w.]*\.[A-Z]\w*|Exception)(:.*)?$")


def error_line(text: str) -> str | None:
    """The exception line of the failing process's traceback (e.g. ``KeyError: 'construction_vehicle'``),
    not the output's last line. Under torchrun the child's traceback comes before torchrun's own
    ChildFailedError; the child's is the one that says what went wrong."""
    lines = text.splitlines()
    found = []
    for i, line in enumerate(lines):
        if line.strip().startswith("Traceback (most recent call last):"):
            indent = len(line) - len(line.lstrip())
            for later in lines[i + 1:]:
                stripped = later[indent:] if later[:indent].strip() == "" else later
                if stripped and not stripped.startswith(" ") and _EXC_LINE.match(stripped.strip()):
                    found.append(stripped.strip())
                    break
    found = [f for f in found if "ChildFailedError" not in f] or found
    return found[-1] if found else None


def run(command: list[str], root, stdout_path: Path, env=None) -> None:
    stdout_path.parent.mkdir(parents=True, exist_ok=True)
    with open(stdout_path, "w") as out:
        proc = subprocess.run(command, cwd=Path(root) / "tools", stdout=out, stderr=subprocess.STDOUT,
                              env=openpcdet_env(env))
    if proc.returncode != 0:
        text = stdout_path.read_text(errors="replace")
        line = error_line(text) or next((ln for ln in reversed(text.strip().splitlines()) if ln.strip()),
                                        "(no output)")
        script = next((c for c in command if c.endswith(".py")), command[0])
        raise BenchError(f"openpcdet: {script} exited with {proc.returncode}: {line.strip()[:300]} "
                         f"(full output: {stdout_path})")
