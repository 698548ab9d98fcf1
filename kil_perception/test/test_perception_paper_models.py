"""The paper-sized random models of the perception benchmark: published widths and depths, and
they run through the project's backends (features of the model's width on the patch grid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kil_perception import paper_models
from kil_perception.backends.vit import DinoV3Backend, RadioBackend


@pytest.mark.parametrize(
    ("build", "backend", "millions"),
    [(paper_models.dinov3_base, DinoV3Backend, (84, 88)), (paper_models.radio_base, RadioBackend, (95, 101))],
)
def test_vit_b_sized_models_run_through_their_backends(build, backend, millions) -> None:
    model = build()
    count = sum(p.numel() for p in model.parameters()) / 1e6
    assert millions[0] < count < millions[1], count  # ViT-B/16 trunks
    assert model.config.hidden_size == 768 and model.config.num_hidden_layers == 12 and model.config.patch_size == 16
    features = backend("cpu", model, short_side=64).features(np.zeros((48, 64, 3), np.uint8))
    assert features.shape == (768, 4, 5)  # (C, H/16, W/16) at 64 x 80 after resizing to short side 64


def test_the_small_clip_tokenizer_pads_and_brackets_prompts(tmp_path: Path) -> None:
    """(Without merges only one-letter words are whole tokens; the rest map to the end token: enough
    for timing, where the prompt's content does not matter.)"""
    tokenizer = paper_models.clip_tokenizer(tmp_path, max_length=8)
    ids = tokenizer("a", padding="max_length")["input_ids"]
    assert ids[:3] == [0, 2 + paper_models.WORDS.index("a"), 1] and len(ids) == 8
    assert tokenizer("")["input_ids"] == [0, 1]
