"""Detections -> a nuScenes detection submission -> nuscenes-devkit's DetectionEval -> metrics."""
from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np

from ...atomic import write_json
from ...detection.boxes import boxes_to_global

# The most frequent attribute of each class in nuScenes' trainval annotations (the usual choice
# of submissions that do not predict attributes); barrier and traffic_cone have none.
DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked", "truck": "vehicle.parked", "construction_vehicle": "vehicle.parked",
    "bus": "vehicle.moving", "trailer": "vehicle.parked", "barrier": "", "motorcycle": "cycle.without_rider",
    "bicycle": "cycle.without_rider", "pedestrian": "pedestrian.moving", "traffic_cone": "",
}
MAX_BOXES_PER_SAMPLE = 500  # the devkit's limit (detection_cvpr_2019 max_boxes_per_sample)
TP_NAMES = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE"}


def attributes_from_labels(labels: dict, tokens: list[str]) -> dict[str, str]:
    """The most common attribute per class in the labelled split, the nuScenes default otherwise."""
    counts: dict[str, Counter] = {}
    for t in tokens:
        for b in labels["frames"][t]["boxes"]:
            if b["name"] is not None and len(b.get("attributes", [])) == 1:
                counts.setdefault(b["name"], Counter())[b["attributes"][0]] += 1
    out = dict(DEFAULT_ATTRIBUTE)
    for name, c in counts.items():
        if name in out and out[name] != "":
            out[name] = c.most_common(1)[0][0]
    return out


def submission(frames: list[dict], detections: list[dict], class_names, attributes: dict[str, str],
               meta: dict | None = None) -> dict:
    """The devkit's result format: every frame's sample token (also without detections), at most
    500 boxes per sample (the highest scores), boxes in the global frame."""
    results = {}
    for frame, det in zip(frames, detections):
        order = np.argsort(-det["scores"], kind="stable")[:MAX_BOXES_PER_SAMPLE]
        boxes, scores, labels = det["boxes"][order], det["scores"][order], det["labels"][order]
        rows = []
        for g, s, lab in zip(boxes_to_global(boxes, frame["lidar_to_global"]), scores, labels):
            name = class_names[int(lab) - 1]
            rows.append({"sample_token": frame["token"], **g, "detection_name": name,
                         "detection_score": float(s), "attribute_name": attributes.get(name, "")})
        results[frame["token"]] = rows
    return {"meta": meta or {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
                             "use_external": False},
            "results": results}


def _num(x):
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


def summary_to_metrics(summary: dict) -> dict:
    """Our metrics dict from a devkit metrics_summary.json (the same file OpenPCDet writes)."""
    m = {"mean_ap": float(summary["mean_ap"]), "nds": float(summary["nd_score"])}
    for k, v in summary["tp_errors"].items():
        m[TP_NAMES.get(k, k)] = _num(v)
    m["ap_per_class"] = {c: _num(v) for c, v in summary["mean_dist_aps"].items()}
    m["ap_per_class_per_distance"] = {c: {str(d): _num(v) for d, v in aps.items()} for c, aps in summary["label_aps"].items()}
    m["tp_errors_per_class"] = {c: {TP_NAMES.get(k, k): _num(v) for k, v in errs.items()}
                                for c, errs in summary["label_tp_errors"].items()}
    return m


def empty_prediction_metrics(class_names) -> dict:
    """What the devkit's DetectionEval gives a run that finds nothing (AP 0 per class, every TP
    error at its cap of 1, NDS 0), for the prediction set it refuses to evaluate."""
    from nuscenes.eval.common.config import config_factory

    cfg = config_factory("detection_cvpr_2019")
    names = list(class_names) or list(cfg.class_names)
    tp = {k: 1.0 for k in TP_NAMES}
    summary = {"mean_ap": 0.0, "nd_score": 0.0, "tp_errors": tp,
               "mean_dist_aps": {c: 0.0 for c in names},
               "label_aps": {c: {str(d): 0.0 for d in cfg.dist_ths} for c in names},
               "label_tp_errors": {c: dict(tp) for c in names}}
    metrics = summary_to_metrics(summary)
    metrics["prediction_empty"] = True
    return metrics


def evaluate(index: dict, result: dict, out_dir: Path) -> dict:
    """Write the submission, run DetectionEval (detection_cvpr_2019) on the index's val split, and
    return our metrics plus which classes are present in the filtered val ground truth."""
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval
    from nuscenes.nuscenes import NuScenes

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "results_nusc.json"
    write_json(path, result, indent=None)
    nusc = NuScenes(version=index["version"], dataroot=index["dataroot"], verbose=False)
    if not any(result["results"].values()):
        # DetectionEval stops on an empty prediction set ('Invalid box type: None'); nothing found scores 0
        from nuscenes.eval.common.loaders import add_center_dist, filter_eval_boxes, load_gt
        from nuscenes.eval.detection.data_classes import DetectionBox

        cfg = config_factory("detection_cvpr_2019")
        gt = filter_eval_boxes(nusc, add_center_dist(nusc, load_gt(nusc, index["eval_sets"]["val"], DetectionBox)),
                               cfg.class_range)
        metrics = empty_prediction_metrics(cfg.class_names)
        metrics["note"] = "the model predicted no box on the val frames; scored 0"
        metrics["classes_in_val_gt"] = sorted({b.detection_name for b in gt.all})
        metrics["num_val_gt_boxes"] = len(gt.all)
        return metrics
    ev = DetectionEval(nusc, config=config_factory("detection_cvpr_2019"), result_path=str(path),
                       eval_set=index["eval_sets"]["val"], output_dir=str(out_dir), verbose=False)
    summary = ev.main(plot_examples=0, render_curves=False)
    metrics = summary_to_metrics(summary)
    present = sorted({b.detection_name for b in ev.gt_boxes.all})
    metrics["classes_in_val_gt"] = present
    metrics["num_val_gt_boxes"] = len(ev.gt_boxes.all)
    return metrics
