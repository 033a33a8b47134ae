"""One pretraining step of each method beside the backbone-only forward and backward, same frames,
same run. Ratios, not seconds: this machine is shared and noisy, so each side takes the median of
interleaved repeats (15: two runs beside another CPU-bound process agree to a few per cent).

The reference runs the LiDAR backbone on as many views as the method's design needs with
gradients (`lidar_views` on the method class: CrossPoint's two symmetric views) and forward-only on
the views it needs under stop-gradient (`lidar_nograd_views`: SimIPU's view B), so the ratio
measures what the method adds on top of its backbone passes; the limit is each method.yaml's
`step_budget`. The ratio against a single pass is
recorded beside it (benchmark extra_info, printed with -s)."""
import json
import statistics
import time

import pytest
import torch

from xmbench.cli import main as cli_main
from xmbench.data.frames import collate
from xmbench.methods import discover, load_method
from xmbench.models.voxelize import voxelize
from xmbench.pretraining.loop import Pretrainer

REPEATS = 15


def _backbone_step(module, batch, views=1, nograd_views=0):
    """What every method must pay at least: both backbones forward and backward on the batch, and
    the forward passes its design runs under stop-gradient."""
    b = batch["batch_size"]
    if nograd_views:
        vox = voxelize(torch.cat([batch["points"]] * nograd_views),
                       torch.cat([batch["batch_idx"] + v * b for v in range(nograd_views)]), b * nograd_views,
                       module.lidar.grid)
        with torch.no_grad():
            module.lidar(vox.features, vox.coords, b * nograd_views)
    pts = torch.cat([batch["points"]] * views)
    bidx = torch.cat([batch["batch_idx"] + v * b for v in range(views)])
    vox = voxelize(pts, bidx, b * views, module.lidar.grid)
    out = module.lidar(vox.features, vox.coords, b * views)
    feats = module.image(batch["images"].flatten(0, 1))
    loss = out["encoded"].features.sum() + sum(f.mean() for f in feats)
    loss.backward()


def _method_step(module, batch):
    batch = dict(batch, generator=torch.Generator().manual_seed(0), epoch=10, step=0, epochs=12, method_epochs=12)
    sum(module(batch).values()).backward()


SCAFFOLD = "scaffold_probe"   # what `xmbench.cli new-method` writes, as written


@pytest.fixture(scope="module")
def scaffold_dir(tmp_path_factory):
    methods_dir = tmp_path_factory.mktemp("methods")
    assert cli_main(["new-method", SCAFFOLD, "--methods-dir", str(methods_dir)]) == 0
    return methods_dir


@pytest.mark.parametrize("method", [m for m in discover() if load_method(m).pretrains] + [SCAFFOLD])
def test_step_cost_relative_to_backbone_only(method, scaffold_dir, tiny_index, test_config, tmp_path, benchmark):
    torch.set_num_threads(1)
    cfg = json.loads(json.dumps(test_config))
    spec = load_method(method, scaffold_dir) if method == SCAFFOLD else load_method(method)
    pre = Pretrainer(spec, cfg, tiny_index["index"], tmp_path)
    module = pre.module.train()
    batch = collate([pre.dataset[0], pre.dataset[1]])
    views = getattr(module, "lidar_views", 1)
    nograd = getattr(module, "lidar_nograd_views", 0)
    _method_step(module, batch)  # warm-up: first-call allocations and spconv's kernel set-up
    _backbone_step(module, batch, views, nograd)
    ours, ref, single = [], [], []
    steps = ((lambda m, b: _method_step(m, b), ours), (lambda m, b: _backbone_step(m, b, views, nograd), ref),
             (lambda m, b: _backbone_step(m, b, 1), single))
    for _ in range(REPEATS):
        for fn, bucket in steps:
            module.zero_grad(set_to_none=True)
            t = time.perf_counter()
            fn(module, batch)
            bucket.append(time.perf_counter() - t)
    ratio = statistics.median(ours) / statistics.median(ref)
    ratio_single = statistics.median(ours) / statistics.median(single)
    benchmark.extra_info.update(method=method, ratio=ratio, ratio_vs_single_pass=ratio_single, views=views,
                                nograd_views=nograd,
                                method_s=statistics.median(ours), backbone_s=statistics.median(ref))
    benchmark.pedantic(_method_step, args=(module, batch), rounds=1, iterations=1)
    print(f"{method}: step {statistics.median(ours):.3f}s, backbone-only x{views} {statistics.median(ref):.3f}s, "
          f"ratio {ratio:.2f} (vs one pass {ratio_single:.2f})")
    budget = spec.spec["step_budget"]["ratio"]                      # each method.yaml's own, with its reason
    assert ratio <= budget


def test_clap_curvature_sampling_within_1_3x_of_uniform(tiny_index, test_config, tmp_path, benchmark):
    """The same CLAP module and batch, once past the uniform warm-up (curvature-weighted rays) and
    once inside it (uniform rays): the whole step, interleaved, medians."""
    torch.set_num_threads(1)
    cfg = json.loads(json.dumps(test_config))
    pre = Pretrainer(load_method("clap"), cfg, tiny_index["index"], tmp_path)
    module = pre.module.train()
    batch = collate([pre.dataset[0], pre.dataset[1]])

    def step(epoch):
        module.zero_grad(set_to_none=True)
        sum(module(dict(batch, generator=torch.Generator().manual_seed(0), epoch=epoch, step=0)).values()).backward()

    step(10), step(0)
    curv, unif = [], []
    for _ in range(REPEATS):
        for epoch, bucket in ((10, curv), (0, unif)):
            t = time.perf_counter()
            step(epoch)
            bucket.append(time.perf_counter() - t)
    ratio = statistics.median(curv) / statistics.median(unif)
    benchmark.extra_info.update(ratio=ratio)
    benchmark.pedantic(step, args=(10,), rounds=1, iterations=1)
    print(f"clap curvature {statistics.median(curv):.3f}s vs uniform {statistics.median(unif):.3f}s: {ratio:.2f}")
    assert ratio <= 1.3
