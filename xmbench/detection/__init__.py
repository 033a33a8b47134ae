"""Detection finetuning: boxes, ground-truth sampling, nuScenes submissions, the OpenPCDet adapter."""
