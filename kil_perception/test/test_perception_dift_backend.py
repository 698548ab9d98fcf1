"""The DIFT backend with a tiny randomly initialised Stable-Diffusion-shaped model: shapes and
stride, deterministic noise ensemble, the prompt and the ensemble matter, local-folder loading,
and the error when weights are absent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from perception_tiny_models import tiny_dift_components

from kil_perception.backends import WeightsUnavailableError, make_backend
from kil_perception.backends.dift import DiftBackend

IMAGE = (np.random.default_rng(0).random((120, 160, 3)) * 255).astype(np.uint8)


def test_features_shape_stride_and_determinism(tmp_path: Path) -> None:
    backend = DiftBackend(model=tiny_dift_components(tmp_path), ensemble_size=3, short_side=64)
    # 120x160 -> 64x88 (short side 64, sides multiples of 2 (VAE) * 4 (UNet) = 8); latent 32x44;
    # up_blocks[1] of a 3-level UNet outputs the full latent resolution: stride 2.
    assert backend.multiple == 8 and backend.stride == 2
    features = backend.features(IMAGE)
    assert features.shape == (32, 32, 44)
    assert torch.isfinite(features).all()
    torch.testing.assert_close(backend.features(IMAGE), features)  # noise re-seeded per image
    assert not torch.allclose(backend.features(np.roll(IMAGE, 40, axis=1)), features)


def test_ensemble_prompt_and_timestep_change_the_features(tmp_path: Path) -> None:
    parts = tiny_dift_components(tmp_path)
    base = DiftBackend(model=parts, ensemble_size=2, short_side=64).features(IMAGE)
    for change in ({"ensemble_size": 4}, {"prompt": "a photo of a mug"}, {"timestep": 600}, {"seed": 1}):
        other = DiftBackend(model=parts, **{"ensemble_size": 2, "short_side": 64, **change}).features(IMAGE)
        assert not torch.allclose(other, base), change


def test_local_folder_loading_round_trip(tmp_path: Path) -> None:
    unet, vae, text_encoder, tokenizer, scheduler = parts = tiny_dift_components(tmp_path)
    folder = tmp_path / "sd"
    for name, part in (("unet", unet), ("vae", vae), ("text_encoder", text_encoder), ("scheduler", scheduler)):
        part.save_pretrained(folder / name)
    tokenizer.save_pretrained(folder / "tokenizer")
    assert make_backend("dift2", model=str(folder)).ensemble_size == 2
    assert make_backend("dift", model=str(folder)).ensemble_size == 8  # the paper's DIFT8
    loaded = DiftBackend(model=str(folder), ensemble_size=2, short_side=64)
    direct = DiftBackend(model=parts, ensemble_size=2, short_side=64)
    torch.testing.assert_close(loaded.features(IMAGE), direct.features(IMAGE))


def test_bad_settings_are_refused(tmp_path: Path) -> None:
    parts = tiny_dift_components(tmp_path)
    with pytest.raises(ValueError, match="ensemble_size must be >= 1"):
        DiftBackend(model=parts, ensemble_size=0)
    with pytest.raises(ValueError, match="up_index must be in"):
        DiftBackend(model=parts, up_index=2)
    with pytest.raises(ValueError, match="timestep must be in"):
        DiftBackend(model=parts, timestep=1000)


def test_absent_weights_name_the_model_and_the_local_path_option(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(WeightsUnavailableError, match=r"'stabilityai/stable-diffusion-2-1'.*model:=/path/to/"):
        make_backend("dift")
