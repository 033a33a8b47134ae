"""What an OpenPCDet run left behind, read back as our metrics and init record.

Apart from the preparation because it reads OpenPCDet's logs and output folders, and because it
holds the rule that fails a pretrained run which loaded no backbone weight instead of letting it
pass as a fine-tuning result that trained from scratch.
"""
from __future__ import annotations

import re
from pathlib import Path

from ...errors import BenchError


_LOADING = re.compile(r"==> Loading parameters from checkpoint (\S+) to")
_DONE = re.compile(r"==> Done \(loaded (\d+)/(\d+)\)")
_NOT_UPDATED = re.compile(r"Not updated weight (\S+):")


def parse_load(log_text: str, checkpoint: Path | str | None = None) -> dict | None:
    """The ``load_params_from_file`` record of our checkpoint: loaded X of Y model tensors and the
    backbone_3d tensors OpenPCDet did not update. None when the log shows no such load."""
    lines = log_text.splitlines()
    for i, line in enumerate(lines):
        m = _LOADING.search(line)
        if not m or (checkpoint is not None and Path(m.group(1)).name != Path(checkpoint).name):
            continue
        missed = []
        for later in lines[i + 1:]:
            nu = _NOT_UPDATED.search(later)
            if nu:
                missed.append(nu.group(1))
                continue
            done = _DONE.search(later)
            if done:
                bb_missed = [k for k in missed if k.startswith("backbone_3d.")]
                by_prefix: dict[str, int] = {}
                for k in missed:
                    by_prefix[k.split(".", 1)[0]] = by_prefix.get(k.split(".", 1)[0], 0) + 1
                return {"loaded": int(done.group(1)), "total": int(done.group(2)),
                        "backbone_missed": len(bb_missed), "backbone_missed_keys": bb_missed[:20],
                        "not_updated_by_prefix": by_prefix}
    return None


INIT_PREFIXES = {"BACKBONE_3D": "backbone_3d", "IMAGE_BACKBONE": "image_backbone", "NECK": "neck",
                 "VTRANSFORM": "vtransform", "FUSER": "fuser"}


def model_prefixes(cfg: dict) -> list[str]:
    """The state-dict prefixes of the pretrainable modules the config's MODEL builds (OpenPCDet names
    each module after its MODEL key, lower-cased)."""
    return [prefix for key, prefix in INIT_PREFIXES.items() if key in cfg["MODEL"]]


def init_report(load: dict | None, checkpoint: Path | None, prefixes=("backbone_3d",)) -> dict:
    """Per module prefix of the model, what OpenPCDet's ``load_params_from_file`` filled (the native
    engines' ``init`` record), from its log and our checkpoint. OpenPCDet updates a tensor when name
    and shape match, and logs every model tensor it did not update: when its loaded count equals
    the checkpoint's tensors of the model's modules, each module loaded its checkpoint tensors, out
    of those plus the ones logged as not updated. Checkpoint modules the model does not have (a
    LiDAR-only template given an image backbone) are listed as unused."""
    if checkpoint is None or load is None:
        report = {p: {"loaded": 0, "total": None, "pretrained": False} for p in prefixes}
        report["openpcdet"] = None if load is None else {"loaded": load["loaded"], "total": load["total"]}
        return report
    import torch

    state = torch.load(checkpoint, map_location="cpu", weights_only=False)["model_state"]
    counts = {p: sum(1 for k in state if k.startswith(p + ".")) for p in INIT_PREFIXES.values()}
    used = {p: n for p, n in counts.items() if n and p in prefixes}
    all_used = load["loaded"] == sum(used.values())
    report = {}
    for p in prefixes:
        missed = load.get("not_updated_by_prefix", {}).get(p, 0)
        if p not in used:
            report[p] = {"loaded": 0, "total": missed or None, "pretrained": False}
            continue
        loaded = used[p] if all_used else (load["loaded"] if len(used) == 1 else None)
        report[p] = {"loaded": loaded, "total": None if loaded is None else loaded + missed, "pretrained": True}
    report["openpcdet"] = {"loaded": load["loaded"], "total": load["total"],
                           "checkpoint_modules_unused": sorted(p for p, n in counts.items() if n and p not in prefixes)}
    return report


def check_load(load: dict | None, pretrained: bool, log_path) -> None:
    if not pretrained:
        return
    if load is None:
        raise BenchError(f"{log_path}: no '==> Done (loaded X/Y)' record of the pretrained checkpoint; "
                         "OpenPCDet did not load --pretrained_model")
    if load["loaded"] == 0:
        raise BenchError(f"{log_path}: OpenPCDet loaded 0/{load['total']} tensors of the pretrained checkpoint; "
                         "the run would train from scratch (check model.lidar against the OpenPCDet template)")
    if load["backbone_missed"]:
        raise BenchError(f"{log_path}: OpenPCDet left {load['backbone_missed']} backbone_3d tensors at their "
                         f"initial values (e.g. {load['backbone_missed_keys'][0]}); the checkpoint does not match "
                         "the template's BACKBONE_3D")


def parse_log_metrics(log_text: str) -> dict:
    """mAP and NDS of the last evaluation printed in the log (format_nuscene_results' lines)."""
    out = {}
    maps = list(re.finditer(r"mAP:\s+([0-9.]+)", log_text))
    nds = list(re.finditer(r"NDS:\s+([0-9.]+)", log_text))
    if maps:
        out["mean_ap"] = float(maps[-1].group(1))
    if nds:
        out["nds"] = float(nds[-1].group(1))
    return out


def find_metrics_summary(out_dir: Path) -> Path | None:
    """eval/eval_with_train/epoch_<N>/<split>/final_result/data/metrics_summary.json of the last epoch."""
    found = list(Path(out_dir).glob("eval/eval_with_train/epoch_*/*/final_result/data/metrics_summary.json"))
    if not found:
        return None

    def epoch(p: Path) -> float:
        try:
            return float(p.parents[3].name.split("_", 1)[1])
        except ValueError:
            return -1.0
    return max(found, key=epoch)


def latest_train_log(out_dir: Path) -> Path | None:
    logs = sorted(Path(out_dir).glob("train_*.log"))
    return logs[-1] if logs else None


def count_predictions(out_dir: Path) -> int | None:
    """Boxes in the last results_nusc.json OpenPCDet wrote for the run (None: it wrote none)."""
    import json

    found = sorted(Path(out_dir).glob("eval/**/results_nusc.json"), key=lambda p: p.stat().st_mtime)
    if not found:
        return None
    results = json.loads(found[-1].read_text()).get("results", {})
    return sum(len(v) for v in results.values())


EMPTY_NOTE = ("the model predicted no box on the val frames; scored 0 (the devkit's evaluation cannot take an "
              "empty prediction set)")


def read_results(out_dir: Path, checkpoint: Path | None, class_names=None, allow_empty: bool = False) -> dict:
    """Our metrics (and the load record) from an OpenPCDet output folder. ``allow_empty``: the run's
    evaluation stopped on an empty prediction set, which scores 0 with a note."""
    import json

    from ...data.nuscenes.detection_eval import empty_prediction_metrics, summary_to_metrics

    log = latest_train_log(out_dir)
    if log is None:
        raise BenchError(f"{out_dir}: no train_*.log; OpenPCDet did not start (see openpcdet_stdout.log)")
    text = log.read_text(errors="replace")
    load = parse_load(text, checkpoint) if checkpoint is not None else None
    check_load(load, checkpoint is not None, log)
    summary_path = find_metrics_summary(out_dir)
    if allow_empty and count_predictions(out_dir) == 0:
        metrics = empty_prediction_metrics(class_names or [])
        metrics["note"] = EMPTY_NOTE
    elif summary_path is not None:
        metrics = summary_to_metrics(json.loads(summary_path.read_text()))
        metrics["metrics_summary"] = str(summary_path)
    else:
        metrics = parse_log_metrics(text)
        if "mean_ap" not in metrics:
            raise BenchError(f"{out_dir}: no metrics_summary.json and no 'mAP:' line in {log.name}; "
                             "the evaluation after training did not run")
    metrics["openpcdet_log"] = str(log)
    return {"metrics": metrics, "load": load}
