"""RADIO and DINOv3 backends with tiny randomly initialised models built from their configs:
shapes, strides, determinism, local-path loading, and the error when weights are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import DINOv3ViTConfig, DINOv3ViTModel, RadioConfig, RadioModel

from kil_perception.backends import WeightsUnavailableError, make_backend
from kil_perception.backends.vit import DinoV3Backend, RadioBackend

IMAGE = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)


def _tiny_dinov3() -> DINOv3ViTModel:
    torch.manual_seed(0)
    return DINOv3ViTModel(
        DINOv3ViTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            patch_size=16,
            num_register_tokens=4,
        )
    )


def _tiny_radio() -> RadioModel:
    torch.manual_seed(0)
    return RadioModel(
        RadioConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            patch_size=16,
            max_img_size=512,
            num_cls_tokens=1,
            num_registers=2,
            summary_idxs=[0],
        )
    )


@pytest.mark.parametrize(("cls", "build"), [(DinoV3Backend, _tiny_dinov3), (RadioBackend, _tiny_radio)])
def test_tiny_model_features(cls, build) -> None:
    backend = cls(model=build(), short_side=96)
    features = backend.features(IMAGE)
    assert features.shape == (32, 6, 8)  # 120x160 -> short side 96 -> 6x8 patches of 16 px
    assert backend.stride == 16 and torch.isfinite(features).all()
    assert torch.equal(features, backend.features(IMAGE))
    shifted = backend.features(np.roll(IMAGE, 40, axis=1))
    assert not torch.allclose(shifted, features)


@pytest.mark.parametrize(("name", "build"), [("dinov3", _tiny_dinov3), ("radio", _tiny_radio)])
def test_local_path_loading_round_trip(tmp_path: Path, name: str, build) -> None:
    model = build()
    model.save_pretrained(tmp_path / name)
    loaded = make_backend(name, model=str(tmp_path / name))
    direct = (DinoV3Backend if name == "dinov3" else RadioBackend)(model=model)
    torch.testing.assert_close(loaded.features(IMAGE), direct.features(IMAGE))


@pytest.mark.parametrize(
    ("name", "default"), [("dinov3", "facebook/dinov3-vitb16-pretrain-lvd1689m"), ("radio", "nvidia/RADIO-B")]
)
def test_absent_weights_name_the_model_and_the_local_path_option(monkeypatch, name: str, default: str) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import time otherwise
    with pytest.raises(WeightsUnavailableError, match=rf"'{default}' are not available.*model:=/path/to/"):
        make_backend(name)
