"""Tiny randomly initialised foundation-model parts built from their configs (no downloads)."""

from __future__ import annotations

from pathlib import Path

import torch

from kil_perception.paper_models import WORDS, clip_tokenizer

# The small CLIP tokenizer is the product's (kil_perception.paper_models); tests call it tiny.
tiny_clip_tokenizer = clip_tokenizer


def tiny_clip_text_config(hidden: int = 32, max_length: int = 8):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(
        vocab_size=len(WORDS) + 2,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=1,
        num_attention_heads=2,
        max_position_embeddings=max_length,
        projection_dim=hidden,
        bos_token_id=0,
        eos_token_id=1,
        pad_token_id=1,
    )


def tiny_dift_components(folder: Path):
    """(unet, vae, text_encoder, tokenizer, scheduler) shaped like SD 2.1's, but tiny: 3 UNet
    levels (up_blocks[1] at 1/2 of the latent), a 2-level VAE (latent at 1/2)."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        sample_size=16,
        in_channels=4,
        out_channels=4,
        block_out_channels=(16, 32, 32),
        layers_per_block=1,
        norm_num_groups=8,
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=32,
        attention_head_dim=4,
    )
    vae = AutoencoderKL(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        latent_channels=4,
        norm_num_groups=8,
        layers_per_block=1,
    )
    text_encoder = CLIPTextModel(tiny_clip_text_config())
    scheduler = DDPMScheduler(num_train_timesteps=1000, beta_schedule="scaled_linear")
    return unet, vae, text_encoder, tiny_clip_tokenizer(folder / "tokenizer_files"), scheduler


def tiny_sam3(folder: Path, image_size: int = 112):
    """(Sam3Model, Sam3Processor): a 2-layer ViT on an 8x8 patch grid, 10 object queries."""
    from transformers import (
        Sam3Config,
        Sam3ImageProcessor,
        Sam3Model,
        Sam3Processor,
        Sam3VisionConfig,
        Sam3ViTConfig,
    )

    grid = image_size // 14
    small = {"hidden_size": 32, "num_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}
    backbone = Sam3ViTConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        image_size=image_size,
        patch_size=14,
        window_size=4,
        global_attn_indexes=[1],
        pretrain_image_size=image_size,
    )
    config = Sam3Config(
        vision_config=Sam3VisionConfig(
            backbone_config=backbone,
            fpn_hidden_size=32,
            backbone_feature_sizes=[[4 * grid] * 2, [2 * grid] * 2, [grid] * 2],
        ),
        text_config=tiny_clip_text_config(hidden=32, max_length=32).to_dict(),
        geometry_encoder_config=small,
        detr_encoder_config=small,
        detr_decoder_config=small | {"num_queries": 10},
        mask_decoder_config={"hidden_size": 32, "num_attention_heads": 2},
    )
    torch.manual_seed(0)
    processor = Sam3Processor(
        image_processor=Sam3ImageProcessor(size={"height": image_size, "width": image_size}),
        tokenizer=tiny_clip_tokenizer(folder / "sam3_tokenizer", max_length=32),
    )
    return Sam3Model(config).eval(), processor
