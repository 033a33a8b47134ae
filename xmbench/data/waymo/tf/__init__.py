"""Modules that run in the Waymo environment (TensorFlow 2.13, waymo-open-dataset), as
``<waymo python> -m xmbench.data.waymo.tf.<module>``, with files in and out."""
