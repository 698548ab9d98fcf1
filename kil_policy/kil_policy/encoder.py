"""Keypoint observation encoders (paper §III-C, §IV-H, §IV-I).

``KeypointEncoder`` (kind "transformer" or "sim"): one token per keypoint (its 3-D position, plus
its K cosine similarities for "sim") and one token for the proprioception, each projected by a
learned linear layer, plus a fixed sinusoidal embedding of the token index; a pre-LayerNorm
transformer encoder with GELU and no dropout; invalid keypoints are masked out of attention and
pooling. Pooling: "mean" over the valid tokens, or "cls_max" (a learned CLS token's output
concatenated with a max-pool over the other valid tokens, as in PointBERT).

``ConcatEncoder`` (kind "none"): no encoder, keypoints (zeroed where invalid) and their valid
flags concatenated to the proprioception.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from kil_policy.config import PROPRIO_DIM, EncoderConfig


def sinusoidal_embedding(positions: Tensor, dim: int) -> Tensor:
    """(N,) positions -> (N, dim) sin/cos embedding (Vaswani et al.)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / max(1, half - 1))
    angles = positions.float()[:, None] * freqs[None]
    embedding = torch.cat([angles.sin(), angles.cos()], dim=-1)
    return nn.functional.pad(embedding, (0, dim - 2 * half))


class KeypointEncoder(nn.Module):
    """Transformer keypoint encoder.

    Args:
        config: encoder settings (kind "transformer" or "sim").
        proprio_dim: proprioception width P.
    """

    def __init__(self, config: EncoderConfig, proprio_dim: int = PROPRIO_DIM) -> None:
        super().__init__()
        if config.kind == "none":
            raise ValueError("KeypointEncoder needs kind transformer or sim; use ConcatEncoder for none")
        self.config = config
        k, d = config.num_keypoints, config.d_model
        token_in = 3 + (k if config.kind == "sim" else 0)
        self.keypoint_proj = nn.Linear(token_in, d)
        self.proprio_proj = nn.Linear(proprio_dim, d)
        self.use_cls = config.pooling == "cls_max"
        if self.use_cls:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
            nn.init.normal_(self.cls_token, std=0.02)
        n_tokens = k + 1 + int(self.use_cls)
        self.register_buffer("position", sinusoidal_embedding(torch.arange(n_tokens), d)[None], persistent=False)
        layer = nn.TransformerEncoderLayer(
            d, config.num_heads, config.mlp_dim, dropout=0.0, activation="gelu", batch_first=True, norm_first=True
        )
        self.transformer = nn.TransformerEncoder(layer, config.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d)

    @property
    def output_dim(self) -> int:
        return self.config.d_model * (2 if self.use_cls else 1)

    def forward(self, keypoints: Tensor, valid: Tensor, proprio: Tensor, similarities: Tensor | None = None) -> Tensor:
        """Encode one observation per batch row.

        Args:
            keypoints: (B, K, 3) normalised keypoint positions.
            valid: (B, K) bool, False for missing/padded keypoints.
            proprio: (B, P) normalised proprioception.
            similarities: (B, K, K) cosine similarities (kind "sim" only).

        Returns:
            (B, output_dim) observation vector.
        """
        if self.config.kind == "sim":
            if similarities is None:
                raise ValueError("the sim encoder needs similarities (B, K, K)")
            keypoints = torch.cat([keypoints, similarities], dim=-1)
        keypoints = torch.where(valid[..., None], keypoints, torch.zeros_like(keypoints))
        tokens = [self.keypoint_proj(keypoints), self.proprio_proj(proprio)[:, None]]
        token_valid = [valid, torch.ones_like(valid[:, :1])]
        if self.use_cls:
            tokens.insert(0, self.cls_token.expand(keypoints.shape[0], -1, -1))
            token_valid.insert(0, torch.ones_like(valid[:, :1]))
        x = torch.cat(tokens, dim=1) + self.position.to(keypoints.dtype)
        mask = torch.cat(token_valid, dim=1)
        x = self.norm(self.transformer(x, src_key_padding_mask=~mask))
        if self.use_cls:
            rest, rest_mask = x[:, 1:], mask[:, 1:, None]
            pooled = torch.where(rest_mask, rest, torch.full_like(rest, float("-inf"))).amax(dim=1)
            return torch.cat([x[:, 0], pooled], dim=-1)
        weights = mask[..., None].to(x.dtype)
        return (x * weights).sum(dim=1) / weights.sum(dim=1)


class ConcatEncoder(nn.Module):
    """No encoder: [keypoints * valid (K*3), valid (K), proprio (P)]."""

    def __init__(self, config: EncoderConfig, proprio_dim: int = PROPRIO_DIM) -> None:
        super().__init__()
        self.config = config
        self._output_dim = config.num_keypoints * 4 + proprio_dim

    @property
    def output_dim(self) -> int:
        return self._output_dim

    def forward(self, keypoints: Tensor, valid: Tensor, proprio: Tensor, similarities: Tensor | None = None) -> Tensor:
        """(B, K, 3), (B, K), (B, P) -> (B, K*4 + P)."""
        masked = torch.where(valid[..., None], keypoints, torch.zeros_like(keypoints))
        return torch.cat([masked.flatten(1), valid.to(keypoints.dtype), proprio], dim=-1)


def make_encoder(config: EncoderConfig, proprio_dim: int = PROPRIO_DIM) -> nn.Module:
    return ConcatEncoder(config, proprio_dim) if config.kind == "none" else KeypointEncoder(config, proprio_dim)
