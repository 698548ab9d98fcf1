"""Image encoder of the RGB and S2 baselines (paper §IV-C): ResNet-18 with global average pooling
(no spatial softmax), the proprioception appended, as in diffusion policy (Chi et al.), whose
ResNets use GroupNorm in place of BatchNorm (``PolicyConfig.image_norm``).

- RGB: 3 colour channels, ImageNet normalisation; training augmentation (paper Table X): random
  crop, colour jitter, Gaussian pixel noise.
- S2: 2 channels (task-object mask, relative depth; ``kil_policy.s2_observation``), each scaled
  to [-1, 1]; training augmentation: random crop and Gaussian noise (no colour jitter).
Evaluation uses the centre crop. Each training sample gets its own crop and jitter.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import Tensor, nn
from torch.nn import functional as F

from kil_policy.config import PROPRIO_DIM, PolicyConfig

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
CROP = 0.9
#: GroupNorm groups per channel count, as diffusion policy's ``replace_bn_with_gn`` (channels // 16).
_GROUP_WIDTH = 16


def _group_norm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm2d by a GroupNorm of channels // 16 groups, keeping the affine
    parameters (so ImageNet weights carry over, less their running statistics)."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            norm = nn.GroupNorm(max(1, child.num_features // _GROUP_WIDTH), child.num_features)
            with torch.no_grad():
                norm.weight.copy_(child.weight)
                norm.bias.copy_(child.bias)
            setattr(module, name, norm)
        else:
            _group_norm(child)
    return module


class ImageEncoder(nn.Module):
    """(N, C, H, W) images in [0, 1] + (N, P) proprio -> (N, 512 + P); C = 3 (RGB) or 2 (S2)."""

    def __init__(self, config: PolicyConfig, proprio_dim: int = PROPRIO_DIM) -> None:
        super().__init__()
        self.image_size = config.image_size
        self.channels = config.image_channels
        self.colour = config.observation == "rgb"
        backbone = torchvision.models.resnet18(weights=None)
        if config.rgb_weights:
            path = Path(config.rgb_weights)
            if not path.is_file():
                raise FileNotFoundError(
                    f"rgb_weights {path} not found: give a local torchvision ResNet-18 ImageNet state dict "
                    "(resnet18-f37072fd.pth) or leave it empty for random initialisation"
                )
            backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        if self.channels != 3:
            stem = backbone.conv1
            conv = nn.Conv2d(self.channels, stem.out_channels, stem.kernel_size, stem.stride, stem.padding, bias=False)
            with torch.no_grad():  # pretrained colour filters averaged over their inputs, per new channel
                conv.weight.copy_(stem.weight.mean(dim=1, keepdim=True).expand_as(conv.weight))
            backbone.conv1 = conv
        if config.image_norm == "group":
            _group_norm(backbone)
        backbone.fc = nn.Identity()
        self.backbone = backbone
        mean, std = (_MEAN, _STD) if self.colour else ((0.5,) * self.channels, (0.5,) * self.channels)
        self.register_buffer("mean", torch.tensor(mean)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(std)[None, :, None, None], persistent=False)
        self.output_dim = 512 + proprio_dim

    def _crop(self, images: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, C, 0.9 H, 0.9 W): a random window per sample in training, the centre
        otherwise."""
        n, _, h, w = images.shape
        ch, cw = int(h * CROP), int(w * CROP)
        if not self.training:
            top, left = (h - ch) // 2, (w - cw) // 2
            return images[:, :, top : top + ch, left : left + cw]
        top = torch.randint(0, h - ch + 1, (n, 1, 1), device=images.device)
        left = torch.randint(0, w - cw + 1, (n, 1, 1), device=images.device)
        rows = top + torch.arange(ch, device=images.device)[None, :, None]  # (N, ch, 1)
        cols = left + torch.arange(cw, device=images.device)[None, None, :]  # (N, 1, cw)
        batch = torch.arange(n, device=images.device)[:, None, None]
        return images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)

    def forward(self, images: Tensor, proprio: Tensor) -> Tensor:
        if images.shape[1] != self.channels:
            raise ValueError(f"the image encoder takes {self.channels}-channel images, got shape {tuple(images.shape)}")
        images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        images = self._crop(images)
        if self.training:
            n = images.shape[0]
            if self.colour:
                brightness = 1 + (torch.rand(n, 1, 1, 1, device=images.device) - 0.5) * 0.4
                contrast = 1 + (torch.rand(n, 1, 1, 1, device=images.device) - 0.5) * 0.4
                mean = images.mean(dim=(1, 2, 3), keepdim=True)
                images = ((images - mean) * contrast + mean) * brightness
            images = (images + torch.randn_like(images) * 0.01).clamp(0, 1)
        features = self.backbone((images - self.mean) / self.std)
        return torch.cat([features, proprio], dim=-1)
