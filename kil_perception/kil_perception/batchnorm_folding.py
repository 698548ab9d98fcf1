"""Batch normalisation folded into the convolution before it, for inference.

In eval mode a BatchNorm2d after a Conv2d is an affine map per channel, so it can be merged into the
convolution's weights and bias: ``w' = w * g / sqrt(v + eps)``, ``b' = (b - m) * g / sqrt(v + eps) + beta``.
On this project's CPUs EfficientNet-Lite0 at 320x240 takes about 20 ms per frame folded against
30 ms unfolded (one thread): its depthwise blocks spend a third of their time in the separate
normalisation. The outputs agree to float32 rounding (``test_batchnorm_folding``).

Only an eval-mode model may be folded (a folded model has no batch statistics to update), and the
fold is a copy: the original keeps its parameters and state-dict names, so checkpoints that hold
it still load.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn


def fold_batch_norms(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every BatchNorm2d that directly follows a Conv2d
    among its parent's children (in registration order, as timm's blocks and torchvision's
    Sequentials are written) merged into that convolution. A timm ``BatchNormAct2d`` becomes its
    dropout and activation; a plain BatchNorm2d becomes Identity. Anything else is left as it is.

    Raises:
        ValueError: if ``model`` is in training mode.
    """
    if model.training:
        raise ValueError("fold_batch_norms: the model is in training mode; fold only an eval-mode model")
    folded = copy.deepcopy(model)
    with torch.no_grad():
        for parent in list(folded.modules()):
            names = list(parent._modules)
            for conv_name, norm_name in itertools.pairwise(names):
                conv, norm = parent._modules[conv_name], parent._modules[norm_name]
                if not (isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d)):
                    continue
                if norm.running_mean is None or norm.running_var is None or conv.out_channels != norm.num_features:
                    continue  # no running statistics (track_running_stats=False): not an affine map
                parent._modules[norm_name] = _fold_pair(conv, norm)
    return folded


def _fold_pair(conv: nn.Conv2d, norm: nn.BatchNorm2d) -> nn.Module:
    """Merge ``norm`` into ``conv`` in place; returns what replaces ``norm``."""
    scale = torch.rsqrt(norm.running_var.float() + norm.eps)
    if norm.weight is not None:
        scale = scale * norm.weight.float()
    shift = -norm.running_mean.float() * scale
    if norm.bias is not None:
        shift = shift + norm.bias.float()
    weight = conv.weight.float() * scale.view(-1, *([1] * (conv.weight.dim() - 1)))
    bias = shift if conv.bias is None else conv.bias.float() * scale + shift
    conv.weight = nn.Parameter(weight.to(conv.weight.dtype), requires_grad=False)
    conv.bias = nn.Parameter(bias.to(conv.weight.dtype), requires_grad=False)
    # timm's BatchNormAct2d applies its dropout and activation after the normalisation.
    after = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if isinstance(m, nn.Module)]
    return nn.Sequential(*after) if after else nn.Identity()
