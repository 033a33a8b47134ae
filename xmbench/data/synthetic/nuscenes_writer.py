"""Write generated scenes in the exact nuScenes v1.0-mini on-disk layout (tables, files, lidarseg).

The point is that every line of the real nuScenes path (devkit loading, splits, evaluation,
converters) runs unchanged on a laptop with no dataset: ten scenes named like the mini split,
each with its own log, keyframes every 0.5 s, a 32-beam LIDAR_TOP cloud with lidarseg labels,
six camera images and 3D box annotations whose ``num_lidar_pts`` is the true number of points in
the box. Geometry and rendering live in the simulator (:mod:`scene_sim` and its siblings); the
``nuscenes_*`` modules only map them onto nuScenes' conventions (frames, quaternions w-x-y-z,
tokens, file names, label indices), and this one lays out the dataset and drives the rest.

Deterministic: every token is a hash of the seed and the record's identity, every random draw
comes from a generator seeded by (seed, scene index, ...), so one seed gives byte-identical files.
"""
from __future__ import annotations

import json
import os
import shutil
from datetime import datetime
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
from PIL import Image, ImageDraw

from .camera_render import PinholeCamera, build_render_scene, render_camera
from .nuscenes_annotations import annotate, write_instances
from .nuscenes_lidar import lidar_frame, lidarseg_labels
from .nuscenes_records import (VERSION, GeneratorConfig, SceneContext, Tables, add_sample_data, calibrations,
                               ego_pose, lidar_filename, make_token, static_token)
from .nuscenes_rig import CAMERAS, LIDAR_CHANNEL
from .nuscenes_vocab import (ATTRIBUTES, CATEGORIES, CLASS_TO_CATEGORY, MAP_SIZE_M, SCENE_AREA_CENTRE, SCENES,
                             VISIBILITY, SceneSpec)
from .scene_gen import SceneConfig, describe, generate_scene
from .scene_model import Scene, Snapshot
from .spinning_lidar import SpinningLidar

__all__ = ['generate_nuscenes', 'CLASS_TO_CATEGORY', 'MARKER_NAME']

KEYFRAME_INTERVAL_US = 500_000
MARKER_NAME = '.xmbench_synthetic.json'


def generate_nuscenes(root, seed: int = 0, keyframes_per_scene: int = 8, image_size: Tuple[int, int] = (1600, 900),
                      azimuth_steps: int = 1080, sweeps_per_keyframe: int = 0) -> Path:
    """Generate the synthetic dataset at ``root`` (the devkit's dataroot) and return its path.

    Writes into a temporary sibling folder and renames it into place at the end, so ``root`` never
    holds a half-written dataset. An existing ``root`` is replaced only if it is a previous output
    of this generator (it carries the marker file); anything else is refused.
    """
    if keyframes_per_scene < 2:
        raise ValueError('keyframes_per_scene must be at least 2 (velocities need two keyframes)')
    cfg = GeneratorConfig(seed=int(seed), keyframes_per_scene=int(keyframes_per_scene),
                          image_size=(int(image_size[0]), int(image_size[1])), azimuth_steps=int(azimuth_steps),
                          sweeps_per_keyframe=int(sweeps_per_keyframe))
    root = Path(root).absolute()
    if root.exists() and not (root / MARKER_NAME).is_file():
        raise FileExistsError(f'{root} exists and is not a synthetic nuScenes dataset written by xmbench; '
                              'refusing to replace it')
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f'.{root.name}.partial-{os.getpid()}'
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_dataset(tmp, cfg)
        _swap_into_place(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def _swap_into_place(tmp: Path, root: Path) -> None:
    if root.exists():
        old = root.parent / f'.{root.name}.old-{os.getpid()}'
        root.rename(old)
        tmp.rename(root)
        shutil.rmtree(old)
    else:
        tmp.rename(root)


def _write_dataset(out: Path, cfg: GeneratorConfig) -> None:
    for sub in ['maps', f'lidarseg/{VERSION}', VERSION, f'samples/{LIDAR_CHANNEL}',
                *[f'samples/{c.channel}' for c in CAMERAS]] + ([f'sweeps/{LIDAR_CHANNEL}']
                                                              if cfg.sweeps_per_keyframe else []):
        (out / sub).mkdir(parents=True, exist_ok=True)
    tables = Tables()
    _vocabulary(tables)
    scenes_by_location: Dict[str, List[Tuple[Scene, str]]] = {}
    for index, spec in enumerate(SCENES):
        scene, log_token = _write_scene(out, tables, cfg, index, spec)
        scenes_by_location.setdefault(spec.location, []).append((scene, log_token))
    for location, members in sorted(scenes_by_location.items()):
        _write_map(out, tables, cfg, location, members)
    for name, rows in tables.rows.items():
        with open(out / VERSION / f'{name}.json', 'w') as f:
            json.dump(rows, f, indent=0)
    (out / MARKER_NAME).write_text(json.dumps(cfg.marker(), indent=1, sort_keys=True) + '\n')


def _vocabulary(tables: Tables) -> None:
    for index, (name, description) in enumerate(CATEGORIES):
        tables.add('category', {'token': static_token('category', name), 'name': name,
                                'description': description, 'index': index})
    for name, description in ATTRIBUTES:
        tables.add('attribute', {'token': static_token('attribute', name), 'name': name,
                                 'description': description})
    for token, level, description in VISIBILITY:
        tables.add('visibility', {'description': description, 'token': token, 'level': level})
    for channel in [LIDAR_CHANNEL] + [c.channel for c in CAMERAS]:
        tables.add('sensor', {'token': static_token('sensor', channel), 'channel': channel,
                              'modality': 'lidar' if channel == LIDAR_CHANNEL else 'camera'})


def _log_start_us(spec: SceneSpec) -> int:
    stamp = datetime.strptime(spec.log_start, '%Y-%m-%d-%H-%M-%S%z')
    return int(round(stamp.timestamp())) * 1_000_000


def _write_scene(out: Path, tables: Tables, cfg: GeneratorConfig, index: int, spec: SceneSpec):
    rng = np.random.default_rng([cfg.seed, index])
    duration = (cfg.keyframes_per_scene - 1) * KEYFRAME_INTERVAL_US / 1e6
    config = SceneConfig(duration=duration, left_hand_traffic=spec.location.startswith('singapore'))
    origin = (SCENE_AREA_CENTRE[0] + rng.uniform(-15, 15), SCENE_AREA_CENTRE[1] + rng.uniform(-15, 15))
    scene = generate_scene(rng, config, origin=origin, heading=float(rng.uniform(-np.pi, np.pi)))
    log_token = make_token(cfg.seed, 'log', spec.name)
    tables.add('log', {'token': log_token, 'logfile': f'{spec.vehicle}-{spec.log_start}', 'vehicle': spec.vehicle,
                       'date_captured': spec.log_start[:10], 'location': spec.location})
    ctx = SceneContext(cfg=cfg, out=out, tables=tables, spec=spec, index=index, scene=scene, log_token=log_token,
                       t0_us=_log_start_us(spec) + int(rng.integers(20, 900)) * 1_000_000 + int(rng.integers(0, 10**6)),
                       calib=calibrations(tables, cfg, spec, rng), lidar=SpinningLidar(azimuth_steps=cfg.azimuth_steps))
    sample_tokens = [ctx.token('sample', k) for k in range(cfg.keyframes_per_scene)]
    scene_token = ctx.token('scene')
    annotations: Dict[int, List[dict]] = {}
    for k, sample_token in enumerate(sample_tokens):
        if k > 0:
            _write_sweeps(ctx, k, sample_token)
        ts = ctx.t0_us + k * KEYFRAME_INTERVAL_US
        tables.add('sample', {'token': sample_token, 'timestamp': ts,
                              'prev': sample_tokens[k - 1] if k > 0 else '',
                              'next': sample_tokens[k + 1] if k + 1 < len(sample_tokens) else '',
                              'scene_token': scene_token})
        _write_keyframe(ctx, k, ts, sample_token, annotations)
    write_instances(ctx, annotations)
    tables.add('scene', {'token': scene_token, 'log_token': log_token, 'nbr_samples': len(sample_tokens),
                         'first_sample_token': sample_tokens[0], 'last_sample_token': sample_tokens[-1],
                         'name': spec.name, 'description': describe(scene)})
    return scene, log_token


def _write_keyframe(ctx: SceneContext, k: int, ts: int, sample_token: str, annotations: Dict[int, List[dict]]):
    t = (ts - ctx.t0_us) / 1e6
    lidar_token = ctx.token('sample_data', LIDAR_CHANNEL, ts)
    ego_to_world = ego_pose(ctx, t, ts, lidar_token)
    snap, frame = lidar_frame(ctx, t, ego_to_world, (0, k))
    filename = lidar_filename(ctx, 'samples', ts)
    frame.cloud.tofile(ctx.out / filename)
    add_sample_data(ctx, LIDAR_CHANNEL, lidar_token, sample_token, ts, filename, True)
    seg_name = f'lidarseg/{VERSION}/{lidar_token}_lidarseg.bin'
    lidarseg_labels(ctx.scene, frame.scan).tofile(ctx.out / seg_name)
    ctx.tables.add('lidarseg', {'token': lidar_token, 'sample_data_token': lidar_token, 'filename': seg_name})
    annotate(ctx, k, t, sample_token, snap, frame, ego_to_world, annotations)
    _write_images(ctx, t, ts, sample_token, snap, ego_to_world)


def _write_sweeps(ctx: SceneContext, k: int, next_sample_token: str) -> None:
    """Non-keyframe LiDAR sweeps between keyframes k-1 and k, owned by the next sample as in nuScenes."""
    n = ctx.cfg.sweeps_per_keyframe
    for j in range(1, n + 1):
        ts = ctx.t0_us + (k - 1) * KEYFRAME_INTERVAL_US + round(j * KEYFRAME_INTERVAL_US / (n + 1))
        t = (ts - ctx.t0_us) / 1e6
        token = ctx.token('sample_data', LIDAR_CHANNEL, ts)
        ego_to_world = ego_pose(ctx, t, ts, token)
        _, frame = lidar_frame(ctx, t, ego_to_world, (1, k, j))
        filename = lidar_filename(ctx, 'sweeps', ts)
        frame.cloud.tofile(ctx.out / filename)
        add_sample_data(ctx, LIDAR_CHANNEL, token, next_sample_token, ts, filename, False)


def _write_images(ctx: SceneContext, t: float, ts: int, sample_token: str, snap: Snapshot,
                  ego_to_world: np.ndarray) -> None:
    """Six camera images at the keyframe time (cameras share the LiDAR's timestamp and ego pose)."""
    ego_s = ctx.scene.ego.s0 + ctx.scene.ego.speed * t
    render_scene = build_render_scene(ctx.scene, snap, ego_s)
    width, height = ctx.cfg.image_size
    for cam in CAMERAS:
        calib = ctx.calib[cam.channel]
        camera = PinholeCamera(intrinsic=calib.intrinsic, width=width, height=height,
                               cam_to_world=ego_to_world @ calib.sensor_to_ego)
        token = ctx.token('sample_data', cam.channel, ts)
        ego_pose(ctx, t, ts, token)
        filename = f'samples/{cam.channel}/{ctx.log_name}__{cam.channel}__{ts}.jpg'
        render_camera(render_scene, camera).save(ctx.out / filename, 'JPEG', quality=ctx.cfg.jpeg_quality)
        add_sample_data(ctx, cam.channel, token, sample_token, ts, filename, True, width, height)


def _write_map(out: Path, tables: Tables, cfg: GeneratorConfig, location: str,
               members: List[Tuple[Scene, str]]) -> None:
    """A semantic-prior mask (drivable surface and sidewalks = 255) at nuScenes' 0.1 m per pixel."""
    size_px = int(MAP_SIZE_M * 10)
    img = Image.new('L', (size_px, size_px), 0)
    draw = ImageDraw.Draw(img)
    for scene, _ in members:
        road = scene.road
        half = road.half_width + road.sidewalk_width
        s_hi = scene.ego.speed * scene.duration + 110.0
        poly = road.strip_polygon(-110.0, s_hi, -half, half, step=4.0)
        draw.polygon([(float(x) * 10, size_px - float(y) * 10) for x, y in poly], fill=255)
    token = make_token(cfg.seed, 'map', location)
    filename = f'maps/{token}.png'
    img.save(out / filename, 'PNG', optimize=False)
    tables.add('map', {'category': 'semantic_prior', 'token': token, 'filename': filename,
                       'log_tokens': [log_token for _, log_token in members]})
