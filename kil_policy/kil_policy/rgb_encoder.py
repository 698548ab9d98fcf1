"""RGB baseline encoder (paper §IV-C): ResNet-18 with global average pooling (no spatial softmax),
with the proprioception appended. Training-time augmentation: random crop, colour jitter,
Gaussian pixel noise; evaluation uses the centre crop.
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


class RgbEncoder(nn.Module):
    """(N, 3, H, W) images in [0, 1] + (N, P) proprio -> (N, 512 + P)."""

    def __init__(self, config: PolicyConfig, proprio_dim: int = PROPRIO_DIM) -> None:
        super().__init__()
        self.image_size = config.image_size
        backbone = torchvision.models.resnet18(weights=None)
        if config.rgb_weights:
            path = Path(config.rgb_weights)
            if not path.is_file():
                raise FileNotFoundError(
                    f"rgb_weights {path} not found: give a local torchvision ResNet-18 ImageNet state dict "
                    "(resnet18-f37072fd.pth) or leave it empty for random initialisation"
                )
            backbone.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        backbone.fc = nn.Identity()
        self.backbone = backbone
        self.register_buffer("mean", torch.tensor(_MEAN)[None, :, None, None], persistent=False)
        self.register_buffer("std", torch.tensor(_STD)[None, :, None, None], persistent=False)
        self.output_dim = 512 + proprio_dim

    def _crop(self, images: Tensor) -> Tensor:
        h, w = images.shape[-2:]
        ch, cw = int(h * CROP), int(w * CROP)
        if self.training:
            top = torch.randint(0, h - ch + 1, (1,)).item()
            left = torch.randint(0, w - cw + 1, (1,)).item()
        else:
            top, left = (h - ch) // 2, (w - cw) // 2
        return images[:, :, top : top + ch, left : left + cw]

    def forward(self, images: Tensor, proprio: Tensor) -> Tensor:
        images = F.interpolate(images, size=self.image_size, mode="bilinear", align_corners=False)
        images = self._crop(images)
        if self.training:
            n = images.shape[0]
            brightness = 1 + (torch.rand(n, 1, 1, 1, device=images.device) - 0.5) * 0.4
            contrast = 1 + (torch.rand(n, 1, 1, 1, device=images.device) - 0.5) * 0.4
            mean = images.mean(dim=(1, 2, 3), keepdim=True)
            images = ((images - mean) * contrast + mean) * brightness
            images = (images + torch.randn_like(images) * 0.01).clamp(0, 1)
        features = self.backbone((images - self.mean) / self.std)
        return torch.cat([features, proprio], dim=-1)
