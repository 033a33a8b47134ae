"""CLAP (methods/clap) and its ablations: the rendering, curvature and prototype maths against
independent computations, and short pretraining runs through the harness."""
import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from methods.clap.prototypes import entropy_minimisation, gram_offdiagonal, sinkhorn, swapped_prediction
from methods.clap.rendering import (curvature_weights, importance_samples, neus_alpha, render_colour, render_depth,
                                    weights_from_alpha)
from xmbench.data.frames import FrameDataset, collate, load_json
from xmbench.methods import MethodSpec, load_method
from xmbench.models.build import build_image_backbone, build_lidar_backbone
from xmbench.pretraining.loop import Pretrainer

# small counts for a CPU (what model.render would hold in a CPU config)
SMALL_RENDER = {"lidar_rays": 256, "pixel_rays": 32, "samples_uniform": 16, "samples_importance": 8,
                "depth_bins": 24, "curvature_pool": 512, "proto_cells": 512}


# ------------------------------------------------------------------ rendering


def _numpy_neus(sdf, t, inv_s, rgb):
    phi = 1.0 / (1.0 + np.exp(-inv_s * sdf))
    alpha = np.zeros_like(sdf)
    for n in range(len(sdf) - 1):
        alpha[n] = max((phi[n] - phi[n + 1]) / phi[n], 0.0)
    trans = np.ones_like(sdf)
    for n in range(1, len(sdf)):
        trans[n] = trans[n - 1] * (1.0 - alpha[n - 1])
    w = trans * alpha
    return alpha, w, (w * t).sum(), (w[:, None] * rgb).sum(0)


@pytest.mark.parametrize("shape", ["plane", "wavy"])
def test_neus_weights_and_depth_match_numpy(shape):
    t = np.linspace(1.0, 11.0, 41) + np.random.default_rng(0).uniform(0, 0.1, 41)
    t.sort()
    sdf = 6.0 - t if shape == "plane" else np.cos(t) + 0.3     # wavy: several crossings, rising parts
    rgb = np.random.default_rng(1).uniform(0, 1, (41, 3))
    inv_s = 20.0
    alpha_np, w_np, depth_np, col_np = _numpy_neus(sdf, t, inv_s, rgb)
    sdf_t = torch.tensor(sdf, dtype=torch.float64)
    alpha = neus_alpha(sdf_t, inv_s)
    w = weights_from_alpha(alpha)
    np.testing.assert_allclose(alpha.numpy(), alpha_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.numpy(), w_np, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(render_depth(torch.tensor(t), w).item(), depth_np, rtol=1e-5)
    np.testing.assert_allclose(render_colour(torch.tensor(rgb), w).numpy(), col_np, rtol=1e-5, atol=1e-7)
    if shape == "plane":       # a sharp field puts the rendered depth at the surface (t = 6)
        w_sharp = weights_from_alpha(neus_alpha(sdf_t, 500.0))
        assert abs(render_depth(torch.tensor(t), w_sharp).item() - 6.0) < 0.3
        assert abs(w_sharp.sum().item() - 1.0) < 1e-3


def test_importance_samples_follow_the_weights():
    g = torch.Generator().manual_seed(0)
    t = torch.linspace(0, 9, 10).expand(4, 10).contiguous()
    w = torch.zeros(4, 10)
    w[:, 6] = 1.0                                                # all mass in [6, 7)
    new = importance_samples(t, torch.full((4,), 10.0), w, 16, g)
    assert new.shape == (4, 16)
    assert ((new >= 6.0) & (new <= 7.0)).float().mean() > 0.95


# ------------------------------------------------------------------ curvature


def test_curvature_weights_on_a_sphere_are_constant_and_scale_as_one_over_r():
    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(200, 3, generator=g, dtype=torch.float64), dim=1)
    centre = torch.tensor([0.3, -0.2, 0.1], dtype=torch.float64)
    means = {}
    for r in (0.5, 2.0):
        pts = centre + r * dirs

        def sdf(p, r=r):
            return (p - centre).norm(dim=-1) - r
        w = curvature_weights(sdf, pts, h=1e-3 * r, eps=0.0)
        assert w.shape == (200,)
        # mean of the diagonal of the normal's Jacobian = div(n) / 3 = 2 / (3 r) on the sphere
        np.testing.assert_allclose(w.numpy(), 2.0 / (3.0 * r), rtol=1e-3)
        means[r] = w.mean().item()
    assert means[0.5] / means[2.0] == pytest.approx(4.0, rel=1e-3)
    # a plane has zero curvature: only eps remains
    plane = curvature_weights(lambda p: p[..., 2] - 0.1, dirs, h=1e-2, eps=1e-4)
    np.testing.assert_allclose(plane.numpy(), 1e-4, atol=1e-9)


# ------------------------------------------------------------------ prototypes


def _numpy_swav_sinkhorn(s, eps, iters):
    q = np.exp(s / eps).T
    q /= q.sum()
    k, b = q.shape
    for _ in range(iters):
        q /= q.sum(1, keepdims=True)
        q /= k
        q /= q.sum(0, keepdims=True)
        q /= b
    return (q * b).T


def test_sinkhorn_codes_are_swav_codes():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(96, 8, generator=g, dtype=torch.float64), dim=1)
    k = torch.nn.functional.normalize(torch.randn(12, 8, generator=g, dtype=torch.float64), dim=1)
    s = e @ k.T
    q = sinkhorn(s, epsilon=0.05, iterations=3)
    np.testing.assert_allclose(q.sum(1).numpy(), 1.0, rtol=1e-9)          # each sample's code sums to 1
    # columns approach B / K = 8 each (equipartition); three iterations get within a factor 2 here,
    # and the deviation shrinks with every further iteration, to zero at convergence
    assert q.sum(0).sum().item() == pytest.approx(96.0)
    assert ((q.sum(0) > 4.0) & (q.sum(0) < 16.0)).all()
    dev = [(sinkhorn(s, 0.05, i).sum(0) - 8.0).abs().mean().item() for i in (1, 3, 10, 50)]
    assert dev[0] > dev[1] > dev[2] > dev[3] and dev[3] < 1e-2
    np.testing.assert_allclose(q.numpy(), _numpy_swav_sinkhorn(s.numpy(), 0.05, 3), rtol=1e-6, atol=1e-12)
    more = sinkhorn(s, epsilon=0.05, iterations=50)                         # converges to B / K exactly
    np.testing.assert_allclose(more.sum(0).numpy(), 96 / 12, rtol=1e-4)
    assert not sinkhorn(s.requires_grad_(True)).requires_grad


def test_swap_em_gram_match_numpy():
    rng = np.random.default_rng(0)
    s_l, s_c = rng.normal(size=(7, 5)), rng.normal(size=(7, 5))
    q_l, q_c = rng.dirichlet(np.ones(5), 7), rng.dirichlet(np.ones(5), 7)
    k = rng.normal(size=(5, 4))
    k /= np.linalg.norm(k, axis=1, keepdims=True)

    def log_softmax(x):
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))
    tau = 0.7
    swap_np = 0.5 * (-(q_c * log_softmax(s_l / tau)).sum(1).mean() - (q_l * log_softmax(s_c / tau)).sum(1).mean())
    ent = lambda s: -(np.exp(log_softmax(s)) * log_softmax(s)).sum(1).mean()  # noqa: E731
    em_np = 0.5 * (ent(s_l) + ent(s_c))
    gram = k @ k.T
    gram_np = (gram.sum() - np.trace(gram)) / (5 * 4)
    t = lambda x: torch.tensor(x)  # noqa: E731
    assert swapped_prediction(t(s_l), t(s_c), t(q_l), t(q_c), tau).item() == pytest.approx(swap_np, rel=1e-10)
    assert entropy_minimisation(t(s_l), t(s_c)).item() == pytest.approx(em_np, rel=1e-10)
    assert gram_offdiagonal(t(k)).item() == pytest.approx(gram_np, rel=1e-10)


def test_prototype_terms_are_the_factor_the_yaml_states_times_the_papers_literal_equations():
    """Issue 13 item 5: the swap and EM terms keep SwAV's per-row convention; method.yaml must state
    the factor that separates them from CLAP v1 eqs. 17-18 read literally (double sums over rows and
    prototypes divided by N_3D * N_K, the two directions added), and the code must have it."""
    import re

    import yaml

    from xmbench.methods import METHODS_DIR

    spec = yaml.safe_load((METHODS_DIR / "clap" / "method.yaml").read_text())
    n_k = spec["hparams"]["num_prototypes"]["value"]
    rng = np.random.default_rng(1)
    n = 40
    s_l, s_c = rng.normal(size=(n, n_k)), rng.normal(size=(n, n_k))
    q_l, q_c = rng.dirichlet(np.ones(n_k), n), rng.dirichlet(np.ones(n_k), n)

    def log_softmax(x):
        x = x - x.max(1, keepdims=True)
        return x - np.log(np.exp(x).sum(1, keepdims=True))
    tau = 0.1
    literal_swap = -((q_c * log_softmax(s_l / tau)).sum() + (q_l * log_softmax(s_c / tau)).sum()) / (n * n_k)
    p_l, p_c = np.exp(log_softmax(s_l)), np.exp(log_softmax(s_c))
    literal_em = -((p_l * np.log(p_l)).sum() + (p_c * np.log(p_c)).sum()) / (n * n_k)
    t = lambda x: torch.tensor(x)  # noqa: E731
    swap = swapped_prediction(t(s_l), t(s_c), t(q_l), t(q_c), tau).item()
    em = entropy_minimisation(t(s_l), t(s_c)).item()
    [deviation] = [d["what"] for d in spec["deviations"] if d["what"].startswith("Prototype-loss scale")]
    stated = re.search(r"ours are N_K / 2 = (\d+) times the literal equations", deviation)
    assert stated, deviation
    assert int(stated.group(1)) == n_k / 2
    assert swap / literal_swap == pytest.approx(n_k / 2, rel=1e-9)
    assert em / literal_em == pytest.approx(n_k / 2, rel=1e-9)


# ------------------------------------------------------------------ the methods through the harness


def _cfg(test_config, **pretrain):
    cfg = json.loads(json.dumps(test_config))
    cfg["pretrain"].update(pretrain)
    cfg["model"]["render"] = dict(SMALL_RENDER)
    return cfg


def _spec(name: str, **hparams) -> MethodSpec:
    spec = load_method(name)
    doc = copy.deepcopy(spec.spec)
    for k, v in hparams.items():
        doc["hparams"][k]["value"] = v
    return MethodSpec(spec.name, spec.folder, doc)


@pytest.fixture(scope="module")
def two_frame_index(tiny_index, tmp_path_factory):
    """The tiny index with two training frames, so that every epoch sees the same batch."""
    index = load_json(tiny_index["index"])
    train = [f for f in index["frames"] if f["split"] == "train"][:2]
    index["frames"] = train
    path = tmp_path_factory.mktemp("clap_index") / "index.json"
    path.write_text(json.dumps(index))
    return path


def test_clap_pretrains_and_its_loss_goes_down(two_frame_index, test_config, tmp_path):
    # curvature sampling from epoch 1 (the paper's warm-up is 4 epochs); a larger learning rate than
    # the paper's 5e-5 so that six steps move the loss beyond the step-to-step sampling noise
    spec = _spec("clap", uniform_epochs=1)
    spec.spec["optimizer"]["lr"]["value"] = 2e-3
    cfg = _cfg(test_config, epochs=6, batch_size=2, max_steps_per_epoch=1)
    trainer = Pretrainer(spec, cfg, two_frame_index, tmp_path)
    ckpt = torch.load(trainer.run(), weights_only=False)
    # both encoders, and the neck, lift and fuser CLAP pretrains, under OpenPCDet's BEVFusion prefixes
    prefixes = {"backbone_3d", "image_backbone", "neck", "vtransform", "fuser"}
    assert {k.split(".", 1)[0] for k in ckpt["model_state"]} == prefixes
    assert ckpt["meta"]["pretrained_modules"] == sorted(prefixes)
    for name in ("backbone_3d.conv_input.0.weight", "image_backbone.layer4.0.conv1.weight",
                 "neck.lateral_convs.0.conv.weight", "vtransform.dtransform.0.weight", "vtransform.frustum",
                 "fuser.conv.0.weight"):
        assert name in ckpt["model_state"], name
    final = torch.load(tmp_path / "last.pth", weights_only=False)["model"]     # the trained weights, not a copy
    assert torch.equal(final["vtransform.depthnet.0.weight"], ckpt["model_state"]["vtransform.depthnet.0.weight"])
    assert torch.equal(final["fuser.conv.0.weight"], ckpt["model_state"]["fuser.conv.0.weight"])
    rows = [json.loads(line) for line in (tmp_path / "loss_log.jsonl").read_text().splitlines()]
    assert {"render_depth", "render_sdf", "render_rgb", "swap", "em", "gram"} <= set(rows[0])
    for r in rows:
        parts = sum(r[k] for k in ("render_depth", "render_sdf", "render_rgb", "swap", "em", "gram"))
        assert r["loss"] == pytest.approx(parts, rel=1e-5)
    losses = [r["loss"] for r in rows]
    assert np.mean(losses[-2:]) < np.mean(losses[:2]), losses


@pytest.mark.parametrize("name,sampling,protos", [("clap", "curvature", True),
                                                 ("clap_uniform", "uniform", True),
                                                 ("clap_noproto", "curvature", False)])
def test_clap_variants_build_and_return_their_terms(name, sampling, protos, tiny_index, test_config):
    cfg = _cfg(test_config)
    spec = load_method(name)
    torch.manual_seed(0)
    model = spec.load_class()(build_lidar_backbone(cfg["model"]), build_image_backbone(cfg["model"]),
                              spec.hparams(), cfg["model"])
    assert model.RAY_SAMPLING == sampling and model.USE_PROTOTYPES == protos
    assert hasattr(model, "prototypes") == protos
    index = load_json(tiny_index["index"])
    tokens = [f["token"] for f in index["frames"] if f["split"] == "train"][:2]
    batch = collate([FrameDataset(index, tokens, tuple(cfg["model"]["image"]["size"]))[i] for i in range(2)])
    batch["generator"], batch["epoch"], batch["step"] = torch.Generator().manual_seed(0), 5, 0
    terms = model(batch)
    expected = {"render_depth", "render_sdf", "render_rgb"} | ({"swap", "em", "gram"} if protos else set())
    assert set(terms) == expected
    assert all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    assert model.lidar.conv_input[0].weight.grad.abs().sum() > 0
    assert model.image.conv1.weight.grad.abs().sum() > 0
    # the shared camera branch learns: neck, both depth paths of the lift, the fuser
    for p in (model.neck.lateral_convs[0].conv.weight, model.vtransform.dtransform[0].weight,
              model.vtransform.depthnet[0].weight, model.vtransform.downsample[0].weight, model.fuser.conv[0].weight):
        assert p.grad is not None and p.grad.abs().sum() > 0
    # same generator seed, same draws: a step is reproducible
    batch["generator"] = torch.Generator().manual_seed(0)
    again = model(batch)
    for k in terms:
        torch.testing.assert_close(terms[k], again[k], rtol=1e-5, atol=1e-7)


def test_unknown_render_key_is_named(test_config):
    cfg = _cfg(test_config)
    cfg["model"]["render"]["lidar_ray"] = 3
    spec = load_method("clap")
    with pytest.raises(ValueError, match="model.render.lidar_ray"):
        spec.load_class()(build_lidar_backbone(cfg["model"]), build_image_backbone(cfg["model"]), spec.hparams(),
                          cfg["model"])


def test_masks_keep_whole_blocks_and_the_configured_ratio():
    from methods.clap import method as module
    g = torch.Generator().manual_seed(0)
    coords = torch.cat([torch.randint(0, 2, (4000, 1), generator=g), torch.randint(0, 41, (4000, 1), generator=g),
                        torch.randint(0, 256, (4000, 2), generator=g)], 1).int()
    keep = module.block_mask(coords, 2, 8, 0.9, g)
    c = coords.long()
    block = torch.stack([c[:, 0], c[:, 1] // 8, c[:, 2] // 8, c[:, 3] // 8], 1)
    uniq, inverse = torch.unique(block, dim=0, return_inverse=True)
    kept = torch.zeros(len(uniq), dtype=torch.bool)
    kept[inverse[keep]] = True
    assert torch.equal(keep, kept[inverse])                          # a block is kept or dropped whole
    for b in (0, 1):
        n = int((uniq[:, 0] == b).sum())
        assert int(kept[uniq[:, 0] == b].sum()) == round(0.1 * n)   # 10% of each frame's blocks
    mask = module.patch_mask(12, (72, 128), 32, 0.9, g)
    assert mask.shape == (12, 1, 3, 4) and (mask.sum((1, 2, 3)) == 1).all()


# ------------------------------------------------------------------ ablations composed onto CLAP
# The commit before the ablation yamls were composed from methods/clap/method.yaml: each was a full
# copy then, and what the composition yields must be that copy, every hyper-parameter included.
BEFORE_COMPOSITION = "413d2be3736d616020768fd7f226706ea4e1ac5e"


@pytest.mark.parametrize("name", ["clap_uniform", "clap_noproto"])
def test_composed_ablation_is_the_full_yaml_it_replaced(name):
    import subprocess

    import yaml

    from xmbench.methods import METHODS_DIR

    old = subprocess.run(["git", "show", f"{BEFORE_COMPOSITION}:methods/{name}/method.yaml"], cwd=METHODS_DIR.parent,
                         capture_output=True, text=True, check=True).stdout
    old = yaml.safe_load(old)
    spec = load_method(name)
    assert "base" in yaml.safe_load((METHODS_DIR / name / "method.yaml").read_text())
    assert spec.files == (METHODS_DIR / name / "method.yaml", METHODS_DIR / "clap" / "method.yaml")
    assert spec.hparams() == {k: v["value"] for k, v in old["hparams"].items()}
    assert spec.spec["hparams"] == old["hparams"]  # the sources too
    for section in ("optimizer", "schedule", "resources", "step_budget", "paper"):
        assert spec.spec[section] == old[section], section
    # everything but the deviations, which had gone stale in that copy and were brought up to
    # CLAP's current list on purpose (test_an_ablation_carries_every_current_clap_deviation...)
    assert {k: v for k, v in spec.spec.items() if k != "deviations"} == {k: v for k, v in old.items()
                                                                          if k != "deviations"}


def test_ablations_subclass_the_one_clap_class():
    """By import, not by path: CLAP's job and its ablations' share one class, so an edit to it reaches all."""
    clap = load_method("clap").load_class()
    for name in ("clap_uniform", "clap_noproto"):
        assert load_method(name).load_class().__mro__[1] is clap
    assert clap.__module__ == "methods.clap.method"


# an ablation repeats CLAP's deviations in full (a list replaces the base's); these are the ones
# that do not apply to it, by the start of their text
ABLATION_DROPS = {"clap_noproto": ("Prototype-loss scale", "Prototype cells include"),
                  "clap_uniform": ("When the benchmark config shortens",)}


@pytest.mark.parametrize("ablation", sorted(ABLATION_DROPS))
def test_an_ablation_carries_every_current_clap_deviation_that_applies_to_it(ablation):
    """The ablations' deviation lists are copies; an edit of CLAP's must reach them, or their
    yaml describes a method that no longer exists."""
    import yaml as _yaml

    root = Path(__file__).resolve().parent.parent / "methods"
    clap = [d["what"] for d in _yaml.safe_load((root / "clap" / "method.yaml").read_text())["deviations"]]
    own = [d["what"] for d in _yaml.safe_load((root / ablation / "method.yaml").read_text())["deviations"]]
    expected = [w for w in clap if not w.startswith(ABLATION_DROPS[ablation])]
    assert [w for w in own if not w.startswith("Ablation:")] == expected
    assert sum(w.startswith("Ablation:") for w in own) == 1
