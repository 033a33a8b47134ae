"""nuScenes: the frame index built with nuscenes-devkit, the table diagnosis, and the devkit's
detection evaluation (lidarseg scoring is the devkit's LidarSegEval, called from lidarseg_eval)."""
