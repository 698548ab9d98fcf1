"""The paper's foundation models at their published sizes, randomly initialised from configs.

Latency at a model's size does not depend on its weights, so these give true timings where the
weights cannot be downloaded (``python -m kil_perception.bench --paper-models``). They are not
for extracting keypoints: random weights match nothing.

- ``dinov3_base``: DINOv3 ViT-B/16 (768 wide, 12 layers, 12 heads, MLP 3072, 4 registers).
- ``radio_base``: RADIOv2.5-B, a ViT-B/16 trunk (768 wide, 12 layers, 12 heads), transformers
  ``RadioModel`` with its default token layout (3 summary tokens, 7 registers).
- ``sd21_components``: Stable Diffusion 2.1's UNet (320/640/1280/1280 channels, 2 layers per
  block, cross-attention 1024, head dims 5/10/20/20, linear projections), its VAE
  (128/256/512/512), its OpenCLIP ViT-H text encoder (1024 wide, 23 layers), a DDPM scheduler and
  a small tokenizer (the prompt is empty in DIFT's matching), for ``DiftBackend``.
- ``sam3_full``: SAM3 at transformers' default configuration (its released size) with a small
  tokenizer, for ``Sam3Instances``.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

#: Words of the small CLIP vocabulary (whole words only; anything else becomes <|endoftext|>).
WORDS = ("a", "mug", "shoe", "paper", "box", "photo", "of", "bottle", "cup", "tray")


def clip_tokenizer(folder: Path, max_length: int = 8):
    """A CLIPTokenizer with a tiny vocabulary written to ``folder``: the start and end tokens and
    ``WORDS`` as whole-word entries (without BPE merges only one-letter words match whole; the
    rest map to the end token: the prompt's content does not change a timing)."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1} | {f"{w}</w>": i + 2 for i, w in enumerate(WORDS)}
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(
        str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=max_length, pad_token="<|endoftext|>"
    )


def dinov3_base():
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    torch.manual_seed(0)
    config = DINOv3ViTConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072, patch_size=16,
        num_register_tokens=4,
    )  # fmt: skip
    return DINOv3ViTModel(config).eval()


def radio_base():
    from transformers import RadioConfig, RadioModel

    torch.manual_seed(0)
    return RadioModel(RadioConfig(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, patch_size=16)).eval()


def sd21_components(folder: Path):
    """(unet, vae, text_encoder, tokenizer, scheduler) at Stable Diffusion 2.1's sizes."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=96,
        in_channels=4,
        out_channels=4,
        block_out_channels=(320, 640, 1280, 1280),
        layers_per_block=2,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=1024,
        attention_head_dim=(5, 10, 20, 20),
        use_linear_projection=True,
    )
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        latent_channels=4,
        layers_per_block=2,
    )
    text = CLIPTextConfig(
        vocab_size=len(WORDS) + 2, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
        num_attention_heads=16, max_position_embeddings=77, projection_dim=1024, hidden_act="gelu",
        bos_token_id=0, eos_token_id=1, pad_token_id=1,
    )  # fmt: skip
    scheduler = DDPMScheduler(
        num_train_timesteps=1000, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012
    )
    return unet, vae, CLIPTextModel(text), clip_tokenizer(folder / "sd21_tokenizer", 77), scheduler


def sam3_full(folder: Path):
    """(Sam3Model, Sam3Processor) at transformers' default SAM3 configuration."""
    from transformers import Sam3Config, Sam3ImageProcessor, Sam3Model, Sam3Processor

    torch.manual_seed(0)
    config = Sam3Config()
    text = config.text_config
    text.vocab_size = max(text.vocab_size, len(WORDS) + 2)
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(),
        tokenizer=clip_tokenizer(folder / "sam3_tokenizer", max_length=text.max_position_embeddings),
    )
    return Sam3Model(config).eval(), processor
