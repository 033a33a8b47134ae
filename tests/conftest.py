import json
import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
sys.path.insert(0, str(REPO))
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.fail(f"{SHARED} is missing: the tests need the project's shared/ folder beside the repo")
    return SHARED


@pytest.fixture(scope="session")
def test_config() -> dict:
    """The tests' config (.test/config.yaml), validated like any user config."""
    from xmbench.config import load_config

    return load_config(REPO / ".test" / "config.yaml")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, test_config) -> Path:
    """A generated nuScenes-format dataset, made once for the whole session."""
    from xmbench.data.synthetic import generate_nuscenes

    gen = dict(test_config["datasets"]["synthetic_nuscenes"]["generator"])
    gen["image_size"] = tuple(gen["image_size"])
    return generate_nuscenes(tmp_path_factory.mktemp("data") / "synthetic_nuscenes", **gen)


@pytest.fixture(scope="session")
def tiny_index(tiny_dataset, test_config, tmp_path_factory) -> dict:
    """Paths of index.json, labels.json and the config JSON the CLI takes, built with the devkit."""
    from xmbench.data.nuscenes.index import build_index, write_index

    out = tmp_path_factory.mktemp("index")
    ds = test_config["datasets"]["synthetic_nuscenes"]
    index, labels = build_index(tiny_dataset, ds["version"], {"train": ds["train_split"], "val": ds["val_split"]},
                                test_config["model"]["lidar"]["nsweeps"], "synthetic_nuscenes")
    write_index(index, labels, out / "index.json", out / "labels.json")
    (out / "config.json").write_text(json.dumps(test_config))
    return {"index": out / "index.json", "labels": out / "labels.json", "config": out / "config.json",
            "dataroot": tiny_dataset}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path
