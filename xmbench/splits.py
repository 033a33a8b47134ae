"""Labelled subsets: deterministic, nested and hashed, by one of three named protocols.

- ``hash`` (the benchmark's): every training frame (or scene) gets a rank from sha256(seed:token); a
  fraction takes the lowest ranks. The same ranking serves every fraction, so the 1% set lies inside
  the 5% set. Draw k of a fraction ranks with its own seed ('<seed>-d<k>'; draw 0 keeps '<seed>', so
  a one-draw config has the subsets it always had).
- ``scene_stride``: SLidR's nuScenes-lidarseg subsets (valeoai/SLidR downstream/dataloader_nuscenes.py):
  walk the scene table in its own order (not sorted: ``nusc.scene``, which our index keeps), count the
  scenes of the training split from 1, and keep scene i when i % N == 0, N = 1 / fraction (1% = every
  100th: the 100th, 200th, ... training scene). Draw k shifts the count by k, so draw 0 is SLidR's.
  Nested where one stride divides the other (1% in 5% in 10%, not 10% in 25%).
- ``file``: a published list (ScaLR's and 3DTrans' token or frame-index files), so a row can be
  compared with a paper's on the same labels.

A ``tune`` split (``split.tune``) holds out training scenes, by hash, for any recipe that must select
a checkpoint, learning rate or epoch: the labelled subsets never contain them and the val split,
which the leaderboard scores, never enters it (xmbench/tuning.py guards the tuner).

The file's sha256 goes into each run's provenance so two results can be checked to share their labels.
"""
from __future__ import annotations

import hashlib
import math
from pathlib import Path

from .atomic import sha256_file, write_text
from .errors import BenchError


PROTOCOLS = ("hash", "scene_stride", "file")


def _rank(seed: int | str, key: str) -> str:
    return hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()


def ranking_seed(seed: int, draw: int = 0) -> str:
    """Draw 0 ranks with the split seed itself, so its subsets (and their sha256) predate draws."""
    return str(seed) if int(draw) == 0 else f"{seed}-d{int(draw)}"


def select(frames: list[dict], fraction: float, seed: int, level: str = "frame", draw: int = 0,
           exclude_scenes=frozenset()) -> list[str]:
    """Tokens of the labelled subset of the training frames (hash protocol), in index order.

    ``exclude_scenes``: training scenes held out (the tune split); the fraction is of what is left.
    """
    if not 0 < fraction <= 1:
        raise BenchError(f"fraction must be in (0, 1], got {fraction}")
    train = [f for f in frames if f["split"] == "train" and f["scene"] not in exclude_scenes]
    if not train:
        raise BenchError("the index has no training frame")
    seed = ranking_seed(seed, draw)
    if level == "frame":
        n = max(1, math.ceil(fraction * len(train) - 1e-9))
        chosen = set(sorted((f["token"] for f in train), key=lambda t: _rank(seed, t))[:n])
    elif level == "scene":
        scenes = sorted({f["scene"] for f in train}, key=lambda s: _rank(seed, s))
        per_scene = {s: sum(f["scene"] == s for f in train) for s in scenes}
        target, picked, count = fraction * len(train), [], 0
        for s in scenes:
            if picked and count >= target - 1e-9:
                break
            picked.append(s)
            count += per_scene[s]
        chosen = {f["token"] for f in train if f["scene"] in set(picked)}
    else:
        raise BenchError(f"split level must be 'frame' or 'scene', got {level!r}")
    return [f["token"] for f in train if f["token"] in chosen]


# --------------------------------------------------------------------------- scene_stride (SLidR)

def train_scene_order(frames: list[dict]) -> list[str]:
    """Training scenes in the order they first appear in the index: for nuScenes the devkit's scene
    table (build_index walks ``nusc.scene``), the list SLidR walks."""
    return list(dict.fromkeys(f["scene"] for f in frames if f["split"] == "train"))


def stride_of(fraction: float) -> int:
    """N of 'every Nth scene': 1 / fraction, which must be a whole number (1% -> 100, 2.5% -> 40)."""
    n = round(1 / float(fraction))
    if n < 1 or abs(n * float(fraction) - 1) > 1e-6:
        raise BenchError(f"split protocol scene_stride: fraction {fraction:g} is not 1/N for a whole N "
                         "(every Nth scene); use fractions such as 0.01, 0.025, 0.1, or protocol hash")
    return n


def stride_scenes(scenes: list[str], stride: int, draw: int = 0) -> list[str]:
    """SLidR's selection: count the scenes from 1 and keep the count's multiples of ``stride``,
    shifted by ``draw`` (draw 0: the stride-th, 2*stride-th, ... scene)."""
    if not 0 <= draw < stride:
        raise BenchError(f"split protocol scene_stride: draw {draw} at stride {stride} repeats draw "
                         f"{draw % stride}; use draws below {stride} at this fraction")
    return [s for i, s in enumerate(scenes, start=1) if (i + draw) % stride == 0]


def scene_stride(frames: list[dict], fraction: float, draw: int = 0) -> list[str]:
    """Tokens of SLidR's every-Nth-scene subset, in index order."""
    order = train_scene_order(frames)
    stride = stride_of(fraction)
    chosen = set(stride_scenes(order, stride, draw))
    if not chosen:
        raise BenchError(f"split protocol scene_stride: the index has {len(order)} training scenes, fewer "
                         f"than the stride {stride} of fraction {fraction:g}: no scene is selected")
    return [f["token"] for f in frames if f["split"] == "train" and f["scene"] in chosen]


# --------------------------------------------------------------------------- file (published lists)

def read_published(path: str | Path, frames: list[dict]) -> list[str]:
    """A published subset: one entry a line (sample token, LiDAR sample_data token, or a 0-based index
    into the index's training frames); '#' starts a comment. Returns our tokens in index order."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: published split file not found (config field 'split.files')")
    train = [f for f in frames if f["split"] == "train"]
    by_token = {f["token"]: f for f in frames}
    by_token.update({f["lidar_token"]: f for f in frames if f.get("lidar_token")})
    chosen = set()
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        entry = line.split("#", 1)[0].strip()
        if not entry:
            continue
        if entry.isdigit() and entry not in by_token:
            i = int(entry)
            if i >= len(train):
                raise BenchError(f"{path}:{n}: frame index {i} is past the {len(train)} training frames of the index")
            frame = train[i]
        elif entry in by_token:
            frame = by_token[entry]
        else:
            raise BenchError(f"{path}:{n}: '{entry}' is no frame of this dataset's index (a sample token, "
                             "LiDAR sample_data token or training-frame index is expected)")
        if frame["split"] != "train":
            raise BenchError(f"{path}:{n}: '{entry}' is a {frame['split']} frame; a labelled subset takes "
                             "training frames only (the val split is what the leaderboard scores)")
        chosen.add(frame["token"])
    if not chosen:
        raise BenchError(f"{path}: no entry; a published split lists at least one frame")
    return [f["token"] for f in train if f["token"] in chosen]


def published_file(split_cfg: dict, dataset: str, fraction: float, draw: int = 0) -> Path:
    """The published list of (dataset, fraction, draw) named by ``split.files``."""
    from .grid import fraction_tag

    tag = fraction_tag(fraction)
    field = f"split.files.{dataset}.{tag}"
    entry = ((split_cfg.get("files") or {}).get(dataset) or {}).get(tag)
    if entry is None:
        raise BenchError(f"config field '{field}': protocol file needs the published list of this fraction")
    paths = [entry] if isinstance(entry, str) else list(entry)
    if draw >= len(paths):
        raise BenchError(f"config field '{field}': draw {draw} asked for but {len(paths)} list(s) given "
                         "(one path per draw)")
    return Path(paths[draw])


# --------------------------------------------------------------------------- tune split

def tune_scenes(frames: list[dict], share: float, seed: int = 0) -> list[str]:
    """Training scenes held out for tuning, lowest sha256('tune-<seed>:<scene>') first; at least one
    and never all of them."""
    scenes = train_scene_order(frames)
    if not scenes:
        raise BenchError("the index has no training frame")
    if not share:
        return []
    n = max(1, math.ceil(share * len(scenes) - 1e-9))
    if n >= len(scenes):
        raise BenchError(f"config field 'split.tune.fraction': {share:g} of {len(scenes)} training scenes leaves "
                         "none to label; use a smaller share")
    held = set(sorted(scenes, key=lambda s: _rank(f"tune-{seed}", s))[:n])
    return [s for s in scenes if s in held]


def held_out(frames: list[dict], split_cfg: dict) -> list[str]:
    tune = split_cfg.get("tune") or {}
    return tune_scenes(frames, tune.get("fraction", 0), tune.get("seed", 0)) if tune.get("fraction") else []


def tune_tokens(frames: list[dict], split_cfg: dict) -> list[str]:
    """Tokens of the tune split, in index order: training frames of the held-out scenes only."""
    held = set(held_out(frames, split_cfg))
    if not held:
        raise BenchError("config field 'split.tune': no tune split configured (give split.tune.fraction)")
    return [f["token"] for f in frames if f["split"] == "train" and f["scene"] in held]


# --------------------------------------------------------------------------- the protocol of a config

def protocol_of(split_cfg: dict, dataset: str) -> str:
    proto = split_cfg.get("protocol", "hash")
    if isinstance(proto, dict):
        proto = proto.get(dataset, "hash")
    if proto not in PROTOCOLS:
        raise BenchError(f"config field 'split.protocol': unknown protocol '{proto}' (known: {', '.join(PROTOCOLS)})")
    return proto


def labelled_subset(frames: list[dict], split_cfg: dict, dataset: str, fraction: float, draw: int = 0) -> list[str]:
    """The labelled subset of (dataset, fraction, draw) under the config's protocol, in index order."""
    proto = protocol_of(split_cfg, dataset)
    held = set(held_out(frames, split_cfg))
    if proto == "hash":
        return select(frames, fraction, split_cfg["seed"], split_cfg["level"], draw, held)
    if proto == "scene_stride":
        tokens = scene_stride(frames, fraction, draw)
    else:
        tokens = read_published(published_file(split_cfg, dataset, fraction, draw), frames)
    scene_of = {f["token"]: f["scene"] for f in frames}
    clash = sorted({scene_of[t] for t in tokens} & held)
    if clash:
        raise BenchError(f"config field 'split.tune': the tune scenes {', '.join(clash[:3])} are in the {proto} "
                         f"subset of {fraction:g} (a published subset cannot give them up); turn split.tune off "
                         "or use protocol hash")
    return tokens


def source_files(split_cfg: dict, dataset: str, fraction: float, draw: int = 0) -> list[str]:
    """Files a subset is read from (the published list of protocol file), for the rule's inputs."""
    if protocol_of(split_cfg, dataset) != "file":
        return []
    return [str(published_file(split_cfg, dataset, fraction, draw))]


def settings(split_cfg: dict, dataset: str, fraction: float, draw: int = 0) -> dict:
    """Exactly what one subset depends on: its rule re-runs when this changes, and only then (adding a
    draw or a fraction leaves the other subsets, and so their cells, alone)."""
    proto = protocol_of(split_cfg, dataset)
    out = {"protocol": proto, "fraction": float(fraction), "draw": int(draw), "tune": split_cfg.get("tune")}
    if proto == "hash":
        out.update(seed=split_cfg["seed"], level=split_cfg["level"])
    elif proto == "file":
        out["file"] = str(published_file(split_cfg, dataset, fraction, draw))
    return out


def rule_hash(split_cfg: dict, dataset: str, fraction: float, draw: int = 0) -> str:
    """The label_split job's param: its settings and the code of the split command."""
    from .codehash import command_code
    from .config import config_hash

    return config_hash([settings(split_cfg, dataset, fraction, draw), command_code("split")])


def describe(split_cfg: dict, dataset: str) -> str:
    """One line for the report: which protocol made a dataset's labelled subsets."""
    proto = protocol_of(split_cfg, dataset)
    if proto == "hash":
        text = (f"hash (the benchmark's: lowest sha256 ranks of {split_cfg['level']}s, split seed "
                f"{split_cfg['seed']}; nested across fractions)")
    elif proto == "scene_stride":
        text = ("scene_stride (SLidR's nuScenes-lidarseg subsets: every Nth training scene in the scene "
                "table's order, N = 1 / fraction; draw k shifts the count by k)")
    else:
        files = (split_cfg.get("files") or {}).get(dataset) or {}
        text = f"file (published lists: {', '.join(f'{k}: {v}' for k, v in sorted(files.items()))})"
    tune = split_cfg.get("tune") or {}
    if tune.get("fraction"):
        text += (f"; {tune['fraction']:g} of the training scenes held out as the tune split (seed "
                 f"{tune.get('seed', 0)}), never labelled")
    return text


def write_split(path: str | Path, tokens: list[str]) -> str:
    """One token per line; returns the file's sha256 (also written beside it as <file>.sha256)."""
    path = Path(path)
    write_text(path, "".join(t + "\n" for t in tokens))
    digest = sha256_file(path)
    write_text(path.with_suffix(path.suffix + ".sha256"), f"{digest}  {path.name}\n")
    return digest


def read_split(path: str | Path) -> tuple[list[str], str]:
    """Tokens and sha256, refusing a file whose recorded hash no longer matches."""
    path = Path(path)
    if not path.is_file():
        raise BenchError(f"{path}: split file missing (run the label_split rule)")
    digest = sha256_file(path)
    side = path.with_suffix(path.suffix + ".sha256")
    if not side.is_file():  # without it a replaced file (half the frames, say) would pass as the split
        raise BenchError(f"{path}: no {side.name} beside it, so its labels cannot be checked; delete the split "
                         "file and re-run the label_split rule")
    recorded = (side.read_text().split() or [""])[0]
    if recorded != digest:
        raise BenchError(f"{path}: contents changed since it was written (sha256 mismatch with {side.name}); "
                         "delete both files and re-run")
    tokens = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not tokens:
        raise BenchError(f"{path}: no frame token in the split file; delete it and its {side.name} and re-run "
                         "the label_split rule")
    return tokens, digest
