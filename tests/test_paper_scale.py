"""Every method's paper-scale job passes the checks the pretraining job runs before it trains.

Built from config/paper.yaml without data or training: the schedule each method would run
(settings_for), the processes its job would start (one per GPU of the resources the Snakefile
requests), and the frame counts of the real training splits. A method whose batch does not split
over its GPUs would otherwise fail only on the cluster, after queueing.
"""
import copy
from pathlib import Path

import pytest

from xmbench.config import load_config
from xmbench.errors import BenchError
from xmbench.methods import discover, load_method
from xmbench.models.build import build_image_backbone, build_lidar_backbone
from xmbench.pretraining.loop import check_settings, job_resources, job_world, make_optimizers, settings_for

REPO = Path(__file__).resolve().parent.parent
# training frames of the real splits: nuScenes v1.0-trainval 'train' (700 scenes) and Waymo v1.4 'training'
TRAIN_FRAMES = {"nuscenes": 28130, "waymo": 158081}
PRETRAINING = [m for m in discover() if load_method(m).pretrains]


@pytest.fixture(scope="module")
def paper_config() -> dict:
    return load_config(REPO / "config" / "paper.yaml")


@pytest.mark.parametrize("method", PRETRAINING)
def test_paper_scale_settings_pass_the_job_checks(method, paper_config):
    spec = load_method(method)
    settings = settings_for(spec, paper_config)
    resources = job_resources(spec, paper_config)
    world = job_world(resources)
    assert settings.epochs == spec.value("schedule", "epochs")          # paper.yaml keeps each method's own schedule
    assert settings.batch_size == spec.value("schedule", "batch_size")
    for dataset, fmt in ((d, c["format"]) for d, c in paper_config["datasets"].items()):
        check_settings(spec, settings, world, TRAIN_FRAMES[fmt], dataset)
    # the module and its optimisers at the paper's model sizes, as the job builds them before step 1
    model_cfg = paper_config["model"]
    module = spec.load_class()(build_lidar_backbone(model_cfg), build_image_backbone(model_cfg), spec.hparams(), model_cfg)
    assert make_optimizers(spec, module)
    print(f"{method}: batch {settings.batch_size} on {world} GPU(s) ({settings.batch_size // world} per GPU), "
          f"{settings.epochs} epochs")


def test_the_check_refuses_a_batch_its_gpus_cannot_split(paper_config):
    """CrossPoint's former resources (batch 20 on 8 GPUs) are refused, naming the file and the fix."""
    spec = load_method("crosspoint")
    cfg = copy.deepcopy(paper_config)
    cfg["pretrain"]["resources"] = {"gpus": 8, "cpus": 32, "mem_gb": 256, "hours": 24}
    with pytest.raises(BenchError, match=r"crosspoint/method.yaml: batch size 20 is not divisible by the 8"):
        check_settings(spec, settings_for(spec, cfg), job_world(job_resources(spec, cfg)))


def test_config_resources_override_every_methods_own(paper_config):
    cfg = copy.deepcopy(paper_config)
    cfg["pretrain"]["resources"] = {"gpus": 3, "cpus": 8, "mem_gb": 64, "hours": 1}
    assert all(job_world(job_resources(load_method(m), cfg)) == 3 for m in PRETRAINING)
    assert job_world({"gpus": 0, "cpus": 1, "mem_gb": 1, "hours": 1}) == 1


def test_a_split_smaller_than_one_batch_is_refused(paper_config):
    spec = load_method("simipu")
    with pytest.raises(BenchError, match="31 training frames are fewer than one batch of 32"):
        check_settings(spec, settings_for(spec, paper_config), 8, 31, "index.json")
