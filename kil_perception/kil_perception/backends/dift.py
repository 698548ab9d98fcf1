"""DIFT: diffusion features from a Stable Diffusion UNet (Tang et al., 2023).

The image is encoded by the VAE, noised to timestep ``t`` (261 for semantic correspondence),
and denoised once by the UNet conditioned on a text prompt; the output of ``up_blocks[up_index]``
(1, the 1/16-resolution block, 1280 channels for SD 2.1) is the dense descriptor. The noise makes
single features random, so ``ensemble_size`` noise samples are run as one batch and averaged
(the paper's DIFT2 and DIFT8). The noise is drawn from ``seed`` once per input size and reused:
the same image gives the same features. On CUDA the whole extraction (resize, VAE encoding,
noising, the UNet up to the block read) is replayed from a CUDA graph per camera size
(``kil_perception.cuda_graph.GraphedCall``; ``cuda_graphs=False`` runs it eagerly).

Weights: a diffusers Stable Diffusion folder (``unet/``, ``vae/``, ``text_encoder/``,
``tokenizer/``, ``scheduler/``) by hub id or local path. The original
``stabilityai/stable-diffusion-2-1`` repository is gone from the hub, so the model id is a
parameter: a community mirror or a local copy.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from kil_perception.backends.base import FeatureBackend, WeightsUnavailableError
from kil_perception.cuda_graph import GraphedCall

DIFT_DEFAULT = "stabilityai/stable-diffusion-2-1"


class _Stop(Exception):  # noqa: N818 - control flow, not an error
    """Raised by the feature hook: the UNet need not run past the block we read."""

    def __init__(self, features: Tensor) -> None:
        super().__init__()
        self.features = features


def _load_components(model_id: str):
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    try:
        return (
            UNet2DConditionModel.from_pretrained(model_id, subfolder="unet"),
            AutoencoderKL.from_pretrained(model_id, subfolder="vae"),
            CLIPTextModel.from_pretrained(model_id, subfolder="text_encoder"),
            CLIPTokenizer.from_pretrained(model_id, subfolder="tokenizer"),
            DDPMScheduler.from_pretrained(model_id, subfolder="scheduler"),
        )
    except (OSError, ValueError) as error:
        raise WeightsUnavailableError(
            f"Stable Diffusion weights '{model_id}' for DIFT are not available ({type(error).__name__}). "
            "stabilityai/stable-diffusion-2-1 is no longer on the hub: download a mirror of it on a machine with "
            "internet (huggingface-cli download <mirror id>) and pass the directory with unet/, vae/, text_encoder/, "
            "tokenizer/ and scheduler/ as the model parameter (model:=/path/to/stable-diffusion-2-1)"
        ) from None


class DiftBackend(FeatureBackend):
    """Stable Diffusion UNet features.

    Args:
        device: torch device (bf16 on CUDA).
        model: hub id or local folder, or None for ``DIFT_DEFAULT``; or a tuple of loaded
            components ``(unet, vae, text_encoder, tokenizer, scheduler)``.
        ensemble_size: noise samples averaged per image (paper: 2 for instance matching, 8 for
            tracking initialisation).
        timestep: diffusion timestep of the noise (261).
        up_index: which UNet up block's output to read (1).
        prompt: text conditioning ("" in DIFT's correspondence experiments).
        short_side: the image is resized to this short side, both sides multiples of the UNet's
            total downsampling (64 for SD), aspect ratio kept.
        seed: seed of the noise (the same noise for every image of a size).
        cuda_graphs: on CUDA, replay the extraction from a CUDA graph.
    """

    name = "dift"

    def __init__(
        self,
        device="cpu",
        model=None,
        ensemble_size: int = 8,
        timestep: int = 261,
        up_index: int = 1,
        prompt: str = "",
        short_side: int = 768,
        seed: int = 0,
        cuda_graphs: bool = True,
    ) -> None:
        super().__init__(device)
        if ensemble_size < 1:
            raise ValueError(f"DIFT ensemble_size must be >= 1, got {ensemble_size}")
        unet, vae, text_encoder, tokenizer, scheduler = (
            _load_components(model or DIFT_DEFAULT) if model is None or isinstance(model, str) else model
        )
        n_up = len(unet.up_blocks)
        if not 0 <= up_index < n_up - 1:
            raise ValueError(f"DIFT up_index must be in [0, {n_up - 2}] for this UNet, got {up_index}")
        if not 0 <= timestep < scheduler.config.num_train_timesteps:
            raise ValueError(f"DIFT timestep must be in [0, {scheduler.config.num_train_timesteps}), got {timestep}")
        self.unet, self.vae = (m.to(self.device).eval() for m in (unet, vae))
        if self.dtype != torch.float32:  # (diffusers warns about any dtype cast, so only when needed)
            self.unet, self.vae = self.unet.to(self.dtype), self.vae.to(self.dtype)
        self.scheduler = scheduler
        self.ensemble_size, self.timestep, self.up_index = ensemble_size, timestep, up_index
        self.short_side, self.seed = short_side, seed
        vae_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        n_down = len(unet.config.block_out_channels) - 1
        self.multiple = vae_factor * 2**n_down
        self.stride = vae_factor * 2 ** (n_down - up_index - 1)
        self.prompt_embeds = self._encode_prompt(text_encoder.to(self.device).eval(), tokenizer, prompt)
        unet.up_blocks[up_index].register_forward_hook(self._hook)
        self._noise: dict[tuple, Tensor] = {}
        self._extract = GraphedCall(self._features_of, "DIFT", cuda_graphs, copy_output=True)

    @staticmethod
    def _hook(module, inputs, output) -> None:
        raise _Stop(output)

    @torch.inference_mode()
    def _encode_prompt(self, text_encoder, tokenizer, prompt: str) -> Tensor:
        tokens = tokenizer(
            [prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True, return_tensors="pt"
        )
        embeds = text_encoder(tokens.input_ids.to(self.device))[0]
        return embeds.to(self.dtype).expand(self.ensemble_size, -1, -1)

    def size(self, height: int, width: int) -> tuple[int, int]:
        """Network input size: short side ~ ``short_side``, both sides multiples of ``multiple``."""
        scale = self.short_side / min(height, width)
        m = self.multiple
        return max(m, round(height * scale / m) * m), max(m, round(width * scale / m) * m)

    @torch.inference_mode()
    def features(self, image: np.ndarray) -> Tensor:
        x = torch.from_numpy(np.ascontiguousarray(image)).to(self.device).permute(2, 0, 1)[None].float()
        return self._extract(x)

    def _noise_for(self, latents: Tensor) -> Tensor:
        """The ensemble's noise for latents of this shape, drawn from ``seed`` once (outside any
        graph capture: the warm-up calls make it)."""
        key = (tuple(latents.shape), latents.dtype)
        if key not in self._noise:
            generator = torch.Generator(device=self.device).manual_seed(self.seed)
            self._noise[key] = torch.randn(latents.shape, generator=generator, device=self.device, dtype=latents.dtype)
        return self._noise[key]

    def _features_of(self, x: Tensor) -> Tensor:
        """(1, 3, H, W) float image in [0, 255] on the device -> (C, h, w) features."""
        h, w = self.size(x.shape[2], x.shape[3])
        x = F.interpolate(x / 255.0, size=(h, w), mode="bilinear", align_corners=False) * 2.0 - 1.0
        latents = self.vae.encode(x.to(self.dtype)).latent_dist.mode() * self.vae.config.scaling_factor
        latents = latents.expand(self.ensemble_size, -1, -1, -1)
        noise = self._noise_for(latents)
        t = torch.full((self.ensemble_size,), self.timestep, device=self.device, dtype=torch.long)
        noisy = self.scheduler.add_noise(latents, noise, t)
        try:
            self.unet(noisy, t, encoder_hidden_states=self.prompt_embeds)
        except _Stop as stop:
            return stop.features.float().mean(dim=0)
        raise RuntimeError(f"DIFT: UNet up_blocks[{self.up_index}] was not run")
