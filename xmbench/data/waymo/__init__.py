"""Waymo Open Dataset. ``env`` and ``detection_eval`` run in the main environment and reach the
TensorFlow side only through ``env.run_module``; ``tf/`` (the converter and Waymo's metric ops)
runs in the Waymo environment alone. Nothing here imports TensorFlow or torch at import time."""
