"""One pretraining step of each method beside the backbone-only forward and backward, same frames,
same run. Ratios, not seconds: this machine is shared and noisy, so each side takes the median of
interleaved repeats."""
import json
import statistics
import time

import pytest
import torch

from xmbench.data.frames import collate
from xmbench.methods import discover, load_method
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.loop import Pretrainer

TARGET = {"clap": 3.0, "clap_uniform": 3.0, "clap_noproto": 3.0}
DEFAULT_TARGET = 1.5
REPEATS = 5


def _backbone_step(module, batch):
    """What every method must pay at least: both backbones forward and backward on the batch."""
    vox = voxelize(batch["points"], batch["batch_idx"], batch["batch_size"], module.lidar.grid)
    out = module.lidar(vox.features, vox.coords, batch["batch_size"])
    feats = module.image(batch["images"].flatten(0, 1))
    loss = out["encoded"].features.sum() + sum(f.mean() for f in feats)
    loss.backward()


def _method_step(module, batch):
    batch = dict(batch, generator=torch.Generator().manual_seed(0), epoch=10, step=0)
    sum(module(batch).values()).backward()


@pytest.mark.parametrize("method", [m for m in discover() if load_method(m).pretrains])
def test_step_cost_relative_to_backbone_only(method, tiny_index, test_config, tmp_path, benchmark):
    torch.set_num_threads(1)
    cfg = json.loads(json.dumps(test_config))
    pre = Pretrainer(load_method(method), cfg, tiny_index["index"], tmp_path)
    module = pre.module.train()
    batch = collate([pre.dataset[0], pre.dataset[1]])
    _method_step(module, batch)  # warm-up: first-call allocations and spconv's kernel set-up
    _backbone_step(module, batch)
    ours, ref = [], []
    for _ in range(REPEATS):
        for fn, bucket in ((_method_step, ours), (_backbone_step, ref)):
            module.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn(module, batch)
            bucket.append(time.perf_counter() - t)
    ratio = statistics.median(ours) / statistics.median(ref)
    benchmark.extra_info.update(method=method, ratio=ratio, method_s=statistics.median(ours),
                                backbone_s=statistics.median(ref))
    benchmark.pedantic(_method_step, args=(module, batch), rounds=1, iterations=1)
    print(f"{method}: step {statistics.median(ours):.3f}s, backbone-only {statistics.median(ref):.3f}s, "
          f"ratio {ratio:.2f}")
    assert ratio <= TARGET.get(method, DEFAULT_TARGET)
