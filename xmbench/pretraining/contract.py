"""The method contract as code: what a pretraining method receives, may use, and must return.

It lives apart from xmbench.methods (discovery) so that planning the DAG never imports torch.
"""
from __future__ import annotations

import torch
from torch import nn

# what the harness (xmbench.pretraining.loop.Pretrainer.run) puts in every batch it hands a method
BATCH_KEYS = frozenset({"points", "batch_idx", "batch_size", "n_key_points", "images", "intrinsics", "lidar_to_cam",
                        "tokens", "generator", "epoch", "step", "epochs", "method_epochs"})


class PretrainMethod(nn.Module):
    """The whole contract between a pretraining method and the benchmark; subclass it in
    ``methods/<name>/method.py`` and name the class in method.yaml's ``entry``.

    Why a contract at all: the harness owns everything that must be identical across methods (data,
    backbones, optimisers, schedule, AMP, DDP, checkpoints, resume, logging), so a method is only the
    map from a batch of unlabelled frames to named loss terms. ``tests/test_method_contract.py``
    checks every folder under methods/ against this docstring.

    Construction: ``__init__(self, lidar_backbone, image_backbone, hparams, model_cfg)``.
      - ``lidar_backbone``: the benchmark's ``VoxelResBackBone8x`` (OpenPCDet's keys). Call it as
        ``lidar_backbone(features, coords, batch_size)`` on ``xmbench.models.voxelize.voxelize``'s
        output; it returns ``x_conv1``..``x_conv4`` and ``encoded`` (spconv tensors).
      - ``image_backbone``: a ResNet returning its four stage maps (strides 4, 8, 16, 32).
      - ``hparams``: ``{key: value}`` of method.yaml's ``hparams``; ``model_cfg``: the config's
        ``model`` section (e.g. ``model_cfg["render"]`` for CPU-sized counts).
      Keep the backbones as ``self.lidar`` and ``self.image``: the harness exports those two
      (``backbone_3d.*`` and ``image_backbone.*`` of the checkpoint's ``model_state``), plus what an
      optional ``pretrained_modules()`` names (below), and nothing else of the method.

    Every exported tensor must be pretrained: each parameter of every exported module needs a
    non-zero gradient from one step (tests/test_gradient_coverage.py). Read the encoder's final output ``encoded`` (conv_out,
    which detection reads), not ``x_conv4``, or conv_out reaches finetuning at its random
    initialisation under the method's name (``xmbench.pretraining.sparse_lookup.point_rows`` maps
    input points to ``encoded``'s rows).

    ``forward(batch) -> dict[str, Tensor]``: named, already weighted, scalar loss terms. The harness
    sums them, stops the job naming the epoch, step and term if one is not finite, steps the
    optimiser(s) and schedule, and logs every term to ``loss_log.jsonl``. Terms must keep the same
    names every step. ``batch`` holds exactly ``BATCH_KEYS`` and never labels:
      - ``points`` (N x 5: x, y, z, intensity, sweep time lag, in the keyframe LiDAR frame),
        ``batch_idx`` (N), ``batch_size``, ``n_key_points`` (per frame, the keyframe's points first);
      - ``images`` (B x K x 3 x H x W, ImageNet-normalised), ``intrinsics`` (B x K x 3 x 3, scaled to
        H x W), ``lidar_to_cam`` (B x K x 4 x 4), ``tokens``;
      - ``epoch``, ``step`` (global), ``epochs`` (this run's, which a config may shorten) and
        ``method_epochs`` (method.yaml's): a schedule inside the method (CLAP's warm-up) keeps its
        proportion when the benchmark shortens the run;
      - ``generator``: a CPU ``torch.Generator`` seeded by (seed, epoch, step, rank). Draw every
        random number from it (on the CPU, then ``.to(device)``): that is what makes a resumed run
        bit-identical to an uninterrupted one.

    Device safety: the batch's tensors are on the job's device (a GPU under SLURM). Allocate with
    ``x.new_zeros(...)`` or ``device=x.device``, never a bare ``torch.zeros(...)``.

    Optional hooks:
      - ``lidar_views`` (class attribute, default 1): how many LiDAR passes with gradients the
        design needs per step (CrossPoint's two symmetric views). The step benchmark
        (tests/benchmarks/test_method_steps.py) compares a step with that many backbone passes.
      - ``lidar_nograd_views`` (class attribute, default 0): further LiDAR passes the design runs
        under stop-gradient (SimIPU's view B); the benchmark's reference adds that many forward
        passes under ``torch.no_grad()``.
      - ``optimizer_groups() -> {name: [parameters]}`` when method.yaml has ``optimizers:`` (one per
        name) instead of ``optimizer:``; every trainable parameter must be in exactly one group.
      - ``pretrained_modules() -> {prefix: module}`` when the method trains more of the shared
        downstream model than the two backbones (CLAP: ``neck``, ``vtransform``, ``fuser``), under
        OpenPCDet's prefixes (xmbench.models.init_weights.PREFIXES).

    method.yaml's ``step_budget.ratio`` is the most a step may cost relative to ``lidar_views``
    backbone-only forward/backward passes (plus ``lidar_nograd_views`` forward passes) on the same
    frames (tests/benchmarks/test_method_steps.py).
    """

    lidar_views: int = 1
    lidar_nograd_views: int = 0

    def __init__(self, lidar_backbone: nn.Module, image_backbone: nn.Module, hparams: dict, model_cfg: dict):
        super().__init__()
        self.lidar = lidar_backbone
        self.image = image_backbone
        self.hp = hparams

    def forward(self, batch: dict) -> dict[str, torch.Tensor]:
        raise NotImplementedError(f"{type(self).__name__}.forward: return the method's named loss terms")
