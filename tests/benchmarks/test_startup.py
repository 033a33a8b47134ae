"""Start-up of a job (pytest-benchmark; ratios measured side by side in one run).

Every job of the DAG is a fresh ``python -m xmbench.cli`` process, so what an import costs is paid
about sixty times by the embedded default. spconv 2 builds its CUDA kernel tables at import
(``spconv.algo``); xmbench.spconv_cpu answers that module with empty tuners when there is no CUDA.
These tests hold that (a) the sparse encoder and U-Net decoder give bit-identical outputs and
gradients either way, and (b) importing the LiDAR backbone costs at most half of spconv's own
import, in process CPU time (not wall time: the machine may be loaded), best of interleaved repeats.
"""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
FULL = {"XMBENCH_SPCONV_FULL_IMPORT": "1"}

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the light spconv.algo applies only without CUDA")

IMPORT = """
import time, json, sys
t = time.process_time()
import xmbench.models.voxel_backbone
print(json.dumps({"cpu": time.process_time() - t, "light": sys.modules["spconv.algo"].__spec__.origin == "xmbench.spconv_cpu"}))
"""

RUN = """
import sys, torch
import xmbench.models.voxel_backbone as vb
from xmbench.models.unet_decoder import SparseUNetDecoder
torch.manual_seed(0)
grid = vb.VoxelGrid((0.4, 0.4, 0.2), (-51.2, -51.2, -5.0, 51.2, 51.2, 3.0))
enc, dec = vb.VoxelResBackBone8x(5, grid), SparseUNetDecoder(17)
n = 4000
coords = torch.unique(torch.stack([torch.randint(0, 2, (n,)), torch.randint(0, 40, (n,)), torch.randint(0, 256, (n,)),
                                   torch.randint(0, 256, (n,))], 1), dim=0).int()
feats = torch.randn(len(coords), 5)
out = enc(feats, coords, 2)
logits = dec(out)
bev = vb.to_bev(out["encoded"])
(logits.square().mean() + bev.square().mean()).backward()
torch.save({"logits": logits.detach(), "bev": bev.detach(),
            "grads": [p.grad for p in list(enc.parameters()) + list(dec.parameters())],
            "light": sys.modules["spconv.algo"].__spec__.origin == "xmbench.spconv_cpu"}, sys.argv[1])
"""


def _python(code: str, *args, env_extra=None) -> str:
    import os

    env = {k: v for k, v in os.environ.items() if k != "XMBENCH_SPCONV_FULL_IMPORT"}
    env.update(env_extra or {})
    res = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return res.stdout


def test_light_spconv_algo_gives_bit_identical_convolutions(tmp_path):
    _python(RUN, str(tmp_path / "light.pt"))
    _python(RUN, str(tmp_path / "full.pt"), env_extra=FULL)
    light, full = torch.load(tmp_path / "light.pt"), torch.load(tmp_path / "full.pt")
    assert light["light"] and not full["light"]
    assert torch.equal(light["logits"], full["logits"]) and torch.equal(light["bev"], full["bev"])
    assert len(light["grads"]) == len(full["grads"]) > 50
    assert all(a is not None and torch.equal(a, b) for a, b in zip(light["grads"], full["grads"]))


def test_backbone_import_costs_at_most_half_of_spconvs_own(benchmark):
    rounds = {"light": [], "full": []}

    def measure():
        for _ in range(2):  # interleaved, so both see the same load
            for kind, env in (("light", None), ("full", FULL)):
                rec = json.loads(_python(IMPORT, env_extra=env).strip().splitlines()[-1])
                assert rec["light"] == (kind == "light")
                rounds[kind].append(rec["cpu"])
    benchmark.pedantic(measure, rounds=1, iterations=1)
    light, full = min(rounds["light"]), min(rounds["full"])
    print(f"\nimport xmbench.models.voxel_backbone, process CPU: {light:.2f} s light, {full:.2f} s with spconv.algo "
          f"({light / full:.2f}x)")
    assert light <= 0.5 * full, rounds
