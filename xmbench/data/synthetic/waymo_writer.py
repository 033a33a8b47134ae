"""Generate Waymo Open Dataset TFRecords of real ``dataset_pb2.Frame`` protos from simulated scenes.

Why: the Waymo path (conversion, index, metrics) must run without the real dataset, on bytes laid
out exactly as Waymo lays them out: zlib-compressed serialized ``MatrixFloat`` range images (both
returns, five lidars), TOP's per-pixel vehicle pose (the ego moves during a spin), camera
projections, TOP segmentation labels on some frames, five camera calibrations with JPEG images,
and 3D laser labels. The scenes are the same ones the nuScenes generator uses
(:mod:`xmbench.data.synthetic.scene_sim`); only the sensor rig and the encoding are Waymo's:
the geometry lives in :mod:`waymo_rig`, :mod:`waymo_scene` and :mod:`waymo_lidar`, the encoding
in :mod:`waymo_sensors`, :mod:`waymo_labels` and :mod:`waymo_frame`; this module writes the records.

Runs in the Waymo environment (``.venv-waymo``):

    .venv-waymo/bin/python -m xmbench.data.synthetic.waymo_writer --out DIR [--seed 0] [--segments 2] [--frames 4]

Writes ``DIR/training/segment-<name>_with_camera_labels.tfrecord`` (and ``validation/`` for the
last ``--val-segments`` segments). ``--truth DIR`` also writes what was simulated, before any
encoding: per frame ``<token>.npy`` (float32 (N, 7) points in the converter's column layout and
order), ``<token>.seg.npy`` where the frame has segmentation labels, and ``boxes.json``.
Deterministic: every random draw comes from a generator seeded by (seed, segment, purpose...).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter off stderr

import tensorflow as tf  # noqa: E402

from ...atomic import atomic_path, write_json, write_npy  # noqa: E402
from .waymo_frame import make_frame, make_segment  # noqa: E402
from .waymo_rig import GeneratorConfig  # noqa: E402


def generate(out: str | Path, cfg: GeneratorConfig = GeneratorConfig(), truth: str | Path | None = None) -> list[Path]:
    """Write one TFRecord per segment (each atomically) and return their paths."""
    if cfg.frames < 1 or cfg.segments < 1 or cfg.seg_every < 1 or not 0 <= cfg.val_segments <= cfg.segments:
        raise ValueError("need frames >= 1, segments >= 1, seg_every >= 1 and 0 <= val_segments <= segments")
    out = Path(out)
    written, truth_boxes = [], {}
    for i in range(cfg.segments):
        rig = make_segment(cfg, i)
        folder = "validation" if i >= cfg.segments - cfg.val_segments else "training"
        path = out / folder / f"segment-{rig.name}_with_camera_labels.tfrecord"
        with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
            for k in range(cfg.frames):
                sim_frame = make_frame(cfg, i, rig, k)
                writer.write(sim_frame.frame.SerializeToString())
                if truth is not None:
                    write_npy(Path(truth) / f"{sim_frame.token}.npy", sim_frame.points)
                    if sim_frame.seg is not None:
                        write_npy(Path(truth) / f"{sim_frame.token}.seg.npy", sim_frame.seg)
                    truth_boxes[sim_frame.token] = sim_frame.boxes
        written.append(path)
    if truth is not None:
        write_json(Path(truth) / "boxes.json", truth_boxes)
    return written


def main(argv: list[str] | None = None) -> int:
    d = GeneratorConfig()
    parser = argparse.ArgumentParser(prog="python -m xmbench.data.synthetic.waymo_writer",
                                     description="Write synthetic Waymo Open Dataset TFRecords.")
    parser.add_argument("--out", required=True, help="folder for training/ and validation/ TFRecords")
    parser.add_argument("--seed", type=int, default=d.seed)
    parser.add_argument("--segments", type=int, default=d.segments)
    parser.add_argument("--frames", type=int, default=d.frames, help="frames per segment (10 Hz)")
    parser.add_argument("--val-segments", type=int, default=d.val_segments, help="how many go to validation/")
    parser.add_argument("--top-width", type=int, default=d.top_width, help="TOP range image width (real: 2650)")
    parser.add_argument("--short-width", type=int, default=d.short_width,
                        help="short-range lidars' range image width (real: 600; height is a third)")
    parser.add_argument("--image-scale", type=float, default=d.image_scale, help="camera size / 1920x1280")
    parser.add_argument("--seg-every", type=int, default=d.seg_every,
                        help="every how many frames carry 3D segmentation labels (Waymo labels a subset)")
    parser.add_argument("--truth", help="also write the simulated points and boxes here (for tests)")
    args = parser.parse_args(argv)
    cfg = GeneratorConfig(seed=args.seed, segments=args.segments, frames=args.frames, val_segments=args.val_segments,
                          top_width=args.top_width, short_width=args.short_width, image_scale=args.image_scale,
                          seg_every=args.seg_every)
    try:
        paths = generate(args.out, cfg, args.truth)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"tfrecords": [str(p) for p in paths]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
