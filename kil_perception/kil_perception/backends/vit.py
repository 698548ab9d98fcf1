"""Vision-transformer backends: RADIOv2.5 and DINOv3 (transformers), patch tokens as dense features.

Weights come from a Hugging Face hub id or a local directory (``save_pretrained`` layout); RADIO
also loads through torch.hub (``model="torchhub:radio_v2.5-b"`` -> ``NVlabs/RADIO``). The image is
resized so that both sides are multiples of the patch size (keeping the aspect ratio close to
the requested short side), and the patch tokens are reshaped to a (C, h, w) grid. On CUDA the
backbone is replayed from a CUDA graph per input size (``kil_perception.cuda_graph.GraphedCall``;
``cuda_graphs=False`` runs it eagerly).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from kil_perception.backends.base import FeatureBackend, WeightsUnavailableError
from kil_perception.cuda_graph import GraphedCall

RADIO_DEFAULT = "nvidia/RADIO-B"
DINOV3_DEFAULT = "facebook/dinov3-vitb16-pretrain-lvd1689m"
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


def _load_pretrained(cls, model_id: str, what: str):
    try:
        return cls.from_pretrained(model_id)
    except (OSError, ValueError) as error:
        raise WeightsUnavailableError(
            f"{what} weights '{model_id}' are not available ({type(error).__name__}). Download them on a machine "
            f"with internet (huggingface-cli download {model_id}) and pass the local directory as the model "
            f"parameter (model:=/path/to/{model_id.split('/')[-1]})"
        ) from None


class PatchTokenBackend(FeatureBackend):
    """Shared part: preprocessing, resizing to the patch grid, token -> grid reshaping."""

    def __init__(
        self,
        model: torch.nn.Module,
        patch_size: int,
        device="cpu",
        short_side: int = 448,
        normalize: bool = True,
        cuda_graphs: bool = True,
    ) -> None:
        super().__init__(device)
        self._backbone = GraphedCall(self._tokens, f"{self.name} backbone", cuda_graphs, copy_output=True)
        self.model = model.to(self.device, self.dtype).eval()
        self.patch = patch_size
        self.stride = patch_size
        self.short_side = short_side
        self.normalize = normalize
        self.mean = torch.tensor(_IMAGENET_MEAN, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(_IMAGENET_STD, device=self.device).view(1, 3, 1, 1)

    def grid(self, height: int, width: int) -> tuple[int, int]:
        """Patch grid (h, w) for an image: short side ~ ``short_side`` px, aspect ratio kept."""
        scale = self.short_side / min(height, width)
        return max(1, round(height * scale / self.patch)), max(1, round(width * scale / self.patch))

    def _tokens(self, pixels: Tensor) -> Tensor:
        """(1, 3, H, W) -> (1, N, C) patch tokens (prefix tokens removed)."""
        raise NotImplementedError

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> Tensor:
        h, w = self.grid(*image.shape[:2])
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float() / 255.0
        x = F.interpolate(x, size=(h * self.patch, w * self.patch), mode="bilinear", align_corners=False)
        if self.normalize:
            x = (x - self.mean) / self.std
        tokens = self._backbone(x.to(self.dtype))
        return tokens[0].float().T.reshape(-1, h, w)


class DinoV3Backend(PatchTokenBackend):
    """DINOv3 ViT (transformers ``DINOv3ViTModel``; the default id is gated on the hub)."""

    name = "dinov3"

    def __init__(
        self,
        device="cpu",
        model: str | torch.nn.Module | None = None,
        short_side: int = 448,
        cuda_graphs: bool = True,
    ) -> None:
        from transformers import DINOv3ViTModel

        if model is None or isinstance(model, str):
            model = _load_pretrained(DINOv3ViTModel, model or DINOV3_DEFAULT, "DINOv3")
        self.skip = 1 + model.config.num_register_tokens
        super().__init__(model, model.config.patch_size, device, short_side, cuda_graphs=cuda_graphs)

    def _tokens(self, pixels: Tensor) -> Tensor:
        return self.model(pixel_values=pixels).last_hidden_state[:, self.skip :]


class RadioBackend(PatchTokenBackend):
    """RADIOv2.5 (transformers ``RadioModel``, or torch.hub ``NVlabs/RADIO`` with ``torchhub:VERSION``).

    RADIO normalises its [0, 1] input itself.
    """

    name = "radio"

    def __init__(
        self,
        device="cpu",
        model: str | torch.nn.Module | None = None,
        short_side: int = 448,
        cuda_graphs: bool = True,
    ) -> None:
        self.hub = isinstance(model, str) and model.startswith("torchhub:")
        if self.hub:
            version = model.split(":", 1)[1]
            try:
                model = torch.hub.load("NVlabs/RADIO", "radio_model", version=version, progress=True)
            except Exception as error:  # network, missing cache, unknown version
                raise WeightsUnavailableError(
                    f"RADIO torch.hub model '{version}' is not available ({type(error).__name__}: {error}); "
                    "run once with internet, or use a transformers checkpoint directory as the model parameter"
                ) from None
            patch = model.patch_size
        else:
            from transformers import RadioModel

            if model is None or isinstance(model, str):
                model = _load_pretrained(RadioModel, model or RADIO_DEFAULT, "RADIO")
            patch = model.config.patch_size
        super().__init__(model, patch, device, short_side, normalize=False, cuda_graphs=cuda_graphs)

    def _tokens(self, pixels: Tensor) -> Tensor:
        if self.hub:
            _, spatial = self.model(pixels)
            return spatial
        return self.model(pixel_values=pixels).features
