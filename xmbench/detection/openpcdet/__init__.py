"""The OpenPCDet adapter: configs, subset infos and GT database per split, the command, the results.

OpenPCDet is the user's install (a path): it needs CUDA to build, so nothing here imports it. The
adapter
- writes a config from a template in ``downstream/detection/openpcdet/`` (derived from OpenPCDet's
  own configs) with the data paths, geometry and schedule of the run;
- writes the split's info file in OpenPCDet's ``nuscenes_infos_10sweeps_train.pkl`` format (only
  the split's frames), the val info file, and a ground-truth database cut from the split's frames
  only (``nuscenes_dbinfos_10sweeps_withvelo.pkl`` format);
- gives each cell a unique ``--extra_tag``: OpenPCDet resumes silently from any checkpoint in a
  reused output folder, so a folder may only ever be reused by the very same cell;
- runs ``tools/train.py`` with the configured Python (under ``torchrun`` on several GPUs, which
  hands the rank over in ``LOCAL_RANK``: ``dist_train.sh``'s ``torch.distributed.launch`` passes
  ``--local-rank``, which OpenPCDet's parser does not accept) with ``--pretrained_model`` set to
  our checkpoint, which OpenPCDet loads by name and shape;
- reads back the devkit's ``metrics_summary.json`` and the log's ``==> Done (loaded X/Y)``, and
  fails a pretrained run that loaded no backbone weight instead of letting it train from scratch.

The recipe is the native engine's: the info list OpenPCDet trains on is the split's frames cycled
to ``iterations x batch_size`` entries (one epoch, so OpenPCDet's step count is the recipe's and no
resampling is inherited), and the schedule is OpenPCDet's one-cycle with the recipe's peak learning
rate, warm-up length and AdamW-style decoupled weight decay (see ``schedule``).
"""
from __future__ import annotations

# The adapter's parts, one job each, re-exported so that callers (the engine, the DAG, the tests)
# keep importing from ``xmbench.detection.openpcdet``.
from .command import check_openpcdet, error_line, eval_command, openpcdet_env, output_dir, run, run_tag, train_command
from .configs import (BASE_CONFIGS, PROFILES, TEMPLATE_DIR, TEMPLATES, _min_points, cycled_infos, db_class_counts,
                      epochs_for, load_template, make_config, write_config)
from .nuscenes_data import IGNORE, nuscenes_infos, subset_infos, write_gt_database
from .onecycle import schedule, schedule_note, warmup_steps
from .pickles import write_pickle
from .results import (EMPTY_NOTE, INIT_PREFIXES, check_load, count_predictions, find_metrics_summary, init_report,
                      latest_train_log, model_prefixes, parse_load, parse_log_metrics, read_results)
from .waymo_data import (WAYMO_TAG, find_result_pkl, waymo_detections, write_waymo_gt_database, write_waymo_sequence,
                         write_waymo_split)
