"""nuScenes-lidarseg scoring by the devkit's own LidarSegEval, on a results folder of per-frame
``<lidar token>_lidarseg.bin`` predictions (the devkit's submission layout), so our mIoU is the
number the nuScenes leaderboard would compute."""
from __future__ import annotations

from pathlib import Path

from ...atomic import write_json


def evaluate(index: dict, results_folder: Path) -> dict:
    from nuscenes.eval.lidarseg.evaluate import LidarSegEval
    from nuscenes.nuscenes import NuScenes

    eval_set = index["eval_sets"]["val"]
    nusc = NuScenes(version=index["version"], dataroot=index["dataroot"], verbose=False)
    write_json(results_folder / eval_set / "submission.json",
               {"meta": {"use_camera": False, "use_lidar": True, "use_radar": False, "use_map": False,
                         "use_external": False}})
    return LidarSegEval(nusc, str(results_folder), eval_set=eval_set, verbose=False).evaluate()
