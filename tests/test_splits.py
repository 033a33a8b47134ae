"""Label subsets: deterministic, nested, hashed, frame- or scene-level."""
import pytest

from xmbench.errors import BenchError
from xmbench.splits import read_split, select, write_split


def _frames(n_scenes=10, per_scene=7):
    return [{"token": f"{s:02d}{i:02d}" + "ab" * 14, "scene": f"scene-{s}", "split": "train" if s < 8 else "val"}
            for s in range(n_scenes) for i in range(per_scene)]


@pytest.mark.parametrize("level", ["frame", "scene"])
def test_nested_and_deterministic(level):
    frames = _frames()
    fractions = [0.01, 0.1, 0.25, 0.5, 1.0]
    sets = [set(select(frames, f, seed=3, level=level)) for f in fractions]
    for small, big in zip(sets, sets[1:]):
        assert small <= big
    assert sets[-1] == {f["token"] for f in frames if f["split"] == "train"}
    assert set(select(frames, 0.25, 3, level)) == set(select(list(reversed(frames)), 0.25, 3, level))
    assert select(frames, 0.25, 3, level) == select(frames, 0.25, 3, level)
    assert set(select(frames, 0.25, 3, level)) != set(select(frames, 0.25, 4, level))


def test_sizes_and_no_val_frames():
    frames = _frames()
    chosen = select(frames, 0.25, 0)
    assert len(chosen) == 14  # ceil(0.25 * 56)
    val = {f["token"] for f in frames if f["split"] == "val"}
    assert not val & set(select(frames, 1.0, 0))
    scene_level = select(frames, 0.25, 0, "scene")
    scenes = {t[:2] for t in scene_level}
    assert len(scene_level) == 7 * len(scenes) and len(scene_level) >= 14


def test_file_hash_is_recorded_and_checked(tmp_path):
    path = tmp_path / "10pct.txt"
    digest = write_split(path, ["a" * 32, "b" * 32])
    tokens, again = read_split(path)
    assert tokens == ["a" * 32, "b" * 32] and again == digest
    write_split(tmp_path / "other.txt", ["a" * 32, "b" * 32])
    assert read_split(tmp_path / "other.txt")[1] == digest  # same labels, same hash, wherever written
    path.write_text("c" * 32 + "\n")
    with pytest.raises(BenchError, match="sha256 mismatch"):
        read_split(path)
