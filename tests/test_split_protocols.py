"""Published protocols by name: SLidR's every-Nth-scene subsets of nuScenes, and published lists."""
import pytest

from xmbench.errors import BenchError
from xmbench.splits import (describe, labelled_subset, protocol_of, read_published, scene_stride, select,
                            stride_of, stride_scenes, train_scene_order)


def _trainval_scene_table():
    """The v1.0-trainval scenes as the devkit's split lists name them, train and val interleaved in
    name order (the order of the devkit's lists; taken here as the order of v1.0-trainval's scene
    table, which our index keeps: build_index walks nusc.scene). Whatever that order, the next test
    shows the selection follows it, as SLidR's loop does."""
    from nuscenes.utils.splits import create_splits_scenes

    s = create_splits_scenes(verbose=False)
    return sorted(s["train"] + s["val"]), s["train"], set(s["val"])


def _index_of(scene_table, val_names, per_scene=2):
    return [{"token": f"{name}-{i}", "lidar_token": f"L{name}-{i}", "scene": name,
             "split": "val" if name in val_names else "train"} for name in scene_table for i in range(per_scene)]


def _slidr_loop(scene_table, train_names, skip_ratio):
    """SLidR's downstream loop, restated: a counter over the table's train scenes, incremented
    before the test, a scene kept when counter % skip_ratio == 0."""
    kept, counter = [], 0
    for name in scene_table:
        if name in train_names:
            counter += 1
            if counter % skip_ratio == 0:
                kept.append(name)
    return kept


def test_scene_stride_on_the_real_nuscenes_scene_list_is_slidrs_every_nth():
    table, train, val = _trainval_scene_table()
    assert len(train) == 700 and train == sorted(train)
    frames = _index_of(table, val)
    assert train_scene_order(frames) == train
    # 1 % = every 100th training scene: the 100th, 200th, ... 700th
    one = stride_scenes(train, stride_of(0.01))
    assert one == ["scene-0171", "scene-0300", "scene-0435", "scene-0589", "scene-0747", "scene-0959", "scene-1110"]
    assert one == [train[i - 1] for i in range(100, 701, 100)] == _slidr_loop(table, set(train), 100)
    for fraction, stride in ((0.005, 200), (0.01, 100), (0.025, 40), (0.05, 20), (0.1, 10), (0.25, 4), (1.0, 1)):
        assert stride_of(fraction) == stride
        kept = {f["scene"] for f in frames if f["token"] in set(scene_stride(frames, fraction))}
        assert sorted(kept) == _slidr_loop(table, set(train), stride)
        assert not kept & val
    assert len(scene_stride(frames, 1.0)) == 2 * 700
    # nested where the strides divide: 1 % in 5 % in 10 %
    s1, s5, s10 = (set(scene_stride(frames, f)) for f in (0.01, 0.05, 0.1))
    assert s1 <= s5 <= s10


def test_scene_stride_follows_the_scene_table_not_a_sorted_list():
    """SLidR walks nusc.scene as stored; a table out of name order gives another (still every-Nth) subset."""
    names = [f"scene-{i:04d}" for i in range(1, 41)]
    shuffled = names[::2] + names[1::2]
    frames = _index_of(shuffled, set())
    assert {f["scene"] for f in frames if f["token"] in set(scene_stride(frames, 0.1))} == \
        set(_slidr_loop(shuffled, set(names), 10)) == {shuffled[9], shuffled[19], shuffled[29], shuffled[39]}


def test_scene_stride_draws_shift_the_count_and_stay_nested():
    frames = _index_of([f"scene-{i:04d}" for i in range(1, 201)], set())
    d0, d1 = set(scene_stride(frames, 0.05, 0)), set(scene_stride(frames, 0.05, 1))
    assert d0 and d1 and not d0 & d1
    assert set(scene_stride(frames, 0.01, 1)) <= d1 <= set(scene_stride(frames, 0.1, 1))
    with pytest.raises(BenchError, match="draw 20 at stride 20 repeats draw 0"):
        scene_stride(frames, 0.05, 20)
    with pytest.raises(BenchError, match="not 1/N"):
        stride_of(0.3)
    with pytest.raises(BenchError, match="fewer than the stride 200"):
        scene_stride(frames[:20], 0.005)


def test_file_protocol_reads_tokens_lidar_tokens_and_frame_indices(tmp_path):
    frames = _index_of([f"scene-{i:04d}" for i in range(1, 11)], {"scene-0010"})
    train = [f for f in frames if f["split"] == "train"]
    listing = tmp_path / "nuscenes_1pct.txt"
    listing.write_text(f"# published\n{train[3]['token']}\n{train[5]['lidar_token']}\n\n7  # an index\n")
    assert read_published(listing, frames) == [train[3]["token"], train[5]["token"], train[7]["token"]]
    split = {"seed": 0, "level": "frame", "protocol": {"d": "file"},
             "files": {"d": {"1pct": str(listing), "5pct": [str(listing), str(listing)]}}}
    assert labelled_subset(frames, split, "d", 0.01) == read_published(listing, frames)
    assert labelled_subset(frames, split, "d", 0.05, draw=1) == read_published(listing, frames)
    with pytest.raises(BenchError, match=r"split.files.d.1pct': draw 1 asked for but 1 list"):
        labelled_subset(frames, split, "d", 0.01, draw=1)
    with pytest.raises(BenchError, match=r"split.files.d.10pct'"):
        labelled_subset(frames, split, "d", 0.1)
    val = tmp_path / "val.txt"
    val.write_text(f"{train[0]['token']}\n{frames[-1]['token']}\n")
    with pytest.raises(BenchError, match=r"val.txt:2: .* is a val frame"):
        read_published(val, frames)
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("not-a-token\n")
    with pytest.raises(BenchError, match=r"unknown.txt:1: 'not-a-token' is no frame"):
        read_published(unknown, frames)
    past = tmp_path / "past.txt"
    past.write_text("999\n")
    with pytest.raises(BenchError, match="past the 18 training frames"):
        read_published(past, frames)


def test_protocol_per_dataset_and_its_description():
    frames = _index_of([f"scene-{i:04d}" for i in range(1, 21)], set())
    split = {"seed": 3, "level": "frame", "protocol": {"nuscenes": "scene_stride"}}
    assert protocol_of(split, "nuscenes") == "scene_stride" and protocol_of(split, "waymo") == "hash"
    assert labelled_subset(frames, split, "waymo", 0.1) == select(frames, 0.1, 3)
    assert labelled_subset(frames, split, "nuscenes", 0.1) == scene_stride(frames, 0.1)
    assert describe(split, "nuscenes").startswith("scene_stride (SLidR")
    assert describe(split, "waymo").startswith("hash")
    with pytest.raises(BenchError, match="unknown protocol 'slidr'"):
        protocol_of({"protocol": "slidr"}, "d")
