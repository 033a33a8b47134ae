"""No tuning on what is scored: the tune split holds out train scenes, never labelled, never val, and
the only frames a tuner gets are its frames; today's engines train a fixed schedule and score val once."""
import json

import pytest

from xmbench.errors import BenchError
from xmbench.splits import labelled_subset, read_split, tune_scenes, tune_tokens, write_split
from xmbench.tuning import read_tune_split, select_on_tune, tune_frames

SPLIT = {"seed": 0, "level": "frame", "protocol": "hash", "draws": [0, 1, 2], "tune": {"fraction": 0.2, "seed": 5}}


def _index(n_train=20, n_val=5, per_scene=4):
    frames = [{"token": f"t{s:03d}{i}", "lidar_token": f"l{s:03d}{i}", "scene": f"scene-{s:04d}",
               "split": "train" if s < n_train else "val"}
              for s in range(n_train + n_val) for i in range(per_scene)]
    return {"dataset": "d", "format": "nuscenes", "frames": frames}


def test_tune_scenes_are_hashed_held_out_of_every_labelled_subset_and_never_val():
    index = _index()
    frames = index["frames"]
    held = tune_scenes(frames, 0.2, seed=5)
    assert len(held) == 4 and held == tune_scenes(frames, 0.2, seed=5)
    assert set(held) == set(tune_scenes(list(reversed(frames)), 0.2, seed=5))  # by hash, not by position
    assert set(held) != set(tune_scenes(frames, 0.2, seed=6))  # its own seed
    val_scenes = {f["scene"] for f in frames if f["split"] == "val"}
    assert not set(held) & val_scenes
    tune = set(tune_tokens(frames, SPLIT))
    assert tune == {f["token"] for f in frames if f["scene"] in held}
    for fraction in (0.05, 0.25, 0.5, 1.0):
        for draw in (0, 1, 2):
            labelled = set(labelled_subset(frames, SPLIT, "d", fraction, draw))
            assert labelled and not labelled & tune
    # 100 % is every training frame left after the hold-out
    assert len(labelled_subset(frames, SPLIT, "d", 1.0)) == (20 - 4) * 4
    # no tune split configured: the subsets are the ones the benchmark always had
    plain = {**SPLIT, "tune": None}
    assert len(labelled_subset(frames, plain, "d", 1.0)) == 20 * 4
    with pytest.raises(BenchError, match="split.tune.fraction"):
        tune_scenes(frames, 0.99)


def test_a_published_subset_that_holds_a_tune_scene_is_refused():
    frames = _index()["frames"]
    stride = {**SPLIT, "protocol": "scene_stride", "tune": {"fraction": 0.5, "seed": 0}}
    with pytest.raises(BenchError, match="split.tune': the tune scenes .* scene_stride"):
        labelled_subset(frames, stride, "d", 0.25)


def test_the_tuner_never_sees_a_val_frame(tmp_path):
    index = _index()
    frames = index["frames"]
    val = {f["token"] for f in frames if f["split"] == "val"}
    path = tmp_path / "tune.txt"
    write_split(path, tune_tokens(frames, SPLIT))
    labelled = labelled_subset(frames, SPLIT, "d", 0.5)
    seen = []

    def score(lr, tune_set):  # a tuner: records every frame it is shown
        seen.extend(f["token"] for f in tune_set)
        return -abs(lr - 0.002) * len(tune_set)

    best, scores = select_on_tune([0.01, 0.002, 0.0005], score, read_tune_split(path, index, labelled))
    assert best == 0.002 and len(scores) == 3
    assert seen and not set(seen) & val
    assert set(seen) == set(read_split(path)[0])

    # a tune file carrying a val frame (written with a matching sha256) is refused by name
    bad = tmp_path / "bad_tune.txt"
    write_split(bad, read_split(path)[0] + [sorted(val)[0]])
    with pytest.raises(BenchError, match=r"bad_tune.txt: .* is a val frame"):
        read_tune_split(bad, index)
    # ... and one sharing a frame with a labelled subset
    with pytest.raises(BenchError, match="also a labelled training frame"):
        tune_frames(index, [labelled[0]], "x.txt", labelled)
    # frames handed to the selector directly are checked again
    with pytest.raises(BenchError, match="not from the training split"):
        select_on_tune([1], score, [f for f in frames if f["split"] == "val"])


def test_cli_writes_the_tune_split(tmp_path, test_config):
    from xmbench.cli import main

    index = _index()
    (tmp_path / "index.json").write_text(json.dumps(index))
    cfg = {**test_config, "split": SPLIT}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    assert main(["split", "--config", str(tmp_path / "config.json"), "--index", str(tmp_path / "index.json"),
                 "--tune", "--out", str(tmp_path / "tune.txt")]) == 0
    assert read_split(tmp_path / "tune.txt")[0] == tune_tokens(index["frames"], SPLIT)
    assert (tmp_path / "tune.txt.sha256").is_file()


def test_segmentation_trains_on_its_split_and_scores_val_once_after_training(test_config, tmp_path, monkeypatch):
    """What the leaderboard reports is scored once, on the final weights: the training loop gets the
    labelled split only, and val is predicted and evaluated once, after it (nothing selects on val)."""
    import torch

    from xmbench.finetune import FinetuneContext
    from xmbench.tasks import load_task

    _, seg = load_task("segmentation").engine("native")
    index = {**_index(), "eval_sets": {"val": "mini_val"}}
    labels = {"frames": {f["token"]: {"lidarseg_path": "x.bin"} for f in index["frames"]},
              "lidarseg_coarse_names": ["ignore", "car", "road"]}
    events = []

    class Frames:  # stands in for FrameDataset: records which frames each dataset holds
        def __init__(self, index, tokens, *a, **k):
            self.tokens = list(tokens)
            events.append(("dataset", set(self.tokens)))

    monkeypatch.setattr(seg, "FrameDataset", Frames)
    monkeypatch.setattr(seg, "train", lambda model, data, *a, **k: events.append(("train", set(data.tokens))))
    monkeypatch.setattr(seg, "predict_val", lambda model, data, *a, **k: events.append(("predict", set(data.tokens))))
    monkeypatch.setattr(seg, "evaluate", lambda *a, **k: events.append(("evaluate", None)) or
                        {"miou": 0.5, "freq_weighted_iou": 0.5, "iou_per_class": {"car": 0.5}})
    train_tokens = labelled_subset(index["frames"], {**SPLIT, "tune": None}, "d", 0.25)
    ctx = FinetuneContext("d", "segmentation", "scratch", 0.25, 0, {}, test_config["model"], index, labels,
                          train_tokens, None, tmp_path, torch.device("cpu"))
    seg.finetune(ctx)
    val = {f["token"] for f in index["frames"] if f["split"] == "val"}
    kinds = [k for k, _ in events]
    assert kinds.count("train") == 1 and kinds.count("predict") == 1 and kinds.count("evaluate") == 1
    assert kinds.index("train") < kinds.index("predict") < kinds.index("evaluate")
    trained = next(v for k, v in events if k == "train")
    assert trained == set(train_tokens) and not trained & val
    assert next(v for k, v in events if k == "predict") == val
