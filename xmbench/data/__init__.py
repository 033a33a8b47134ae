"""Datasets, by dataset and by interpreter.

- here: the loader every job imports (``frames``), the sensor file readers (``sensor_io``) and the
  geometry they share; importable without TensorFlow or the devkit;
- ``nuscenes/``: the frame index built with nuscenes-devkit, the table diagnosis, the devkit's
  detection and lidarseg evaluations;
- ``waymo/``: the main-side helper that finds and runs the Waymo environment (``env``) and the
  detection scoring that goes through it; ``waymo/tf/`` runs only in that environment (the
  TFRecord converter and Waymo's metric ops);
- ``synthetic/``: the scene simulator and its two writers (nuScenes tables and files, Waymo
  TFRecords; the latter runs in the Waymo environment).
"""
