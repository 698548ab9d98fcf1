"""``fold_batch_norms``: batch norms merged into the convolutions before them, for inference (the
effnet_lite0 backend and the image baselines' frozen trunk use it). What must hold: the folded
copy computes what the model computes (timm's blocks with their activations, plain Sequentials,
convolutions with and without bias, grouped/depthwise ones), no norm that follows a convolution is
left, the original keeps its parameters and names, and a model in training mode is refused."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kil_perception.backends.effnet import EffNetLite0Backend, build_model
from kil_perception.batchnorm_folding import fold_batch_norms


def _randomise_norms(model: nn.Module, seed: int = 0) -> None:
    """Statistics and affine terms far from the identity, so a wrong fold shows."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                n = module.num_features
                module.running_mean.copy_(torch.rand(n, generator=generator) * 2 - 1)
                module.running_var.copy_(torch.rand(n, generator=generator) * 2 + 0.2)
                module.weight.copy_(torch.rand(n, generator=generator) + 0.5)
                module.bias.copy_(torch.rand(n, generator=generator) - 0.5)


def test_efficientnet_lite0_folded_gives_the_same_feature_maps() -> None:
    torch.manual_seed(0)
    model = build_model(pretrained=False)
    _randomise_norms(model)
    names = list(model.state_dict())
    folded = fold_batch_norms(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())  # the original is untouched
    assert list(model.state_dict()) == names
    x = torch.randn(2, 3, 64, 96)
    with torch.no_grad():
        expected, got = model(x), folded(x)
    assert len(expected) == len(got) == 3
    for a, b in zip(expected, got, strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-4 * float(a.abs().max()))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("groups", [1, 4])
def test_sequential_conv_norm_activation(bias: bool, groups: int) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.BatchNorm2d(4),  # not after a convolution: stays
        nn.Conv2d(4, 8, 3, padding=1, bias=bias, groups=groups),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 8, 1, bias=bias),
        nn.BatchNorm2d(8),
    ).eval()
    _randomise_norms(model, seed=3)
    folded = fold_batch_norms(model)
    assert [type(m).__name__ for m in folded] == ["BatchNorm2d", "Conv2d", "Identity", "ReLU", "Conv2d", "Identity"]
    x = torch.randn(3, 4, 10, 12)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-5)


def test_a_model_in_training_mode_is_refused() -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).train()
    with pytest.raises(ValueError, match="training mode"):
        fold_batch_norms(model)


def test_the_backend_features_are_those_of_the_unfolded_model() -> None:
    torch.manual_seed(2)
    model = build_model(pretrained=False)
    _randomise_norms(model, seed=5)
    backend = EffNetLite0Backend(model=model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in backend.model.modules())
    image = (torch.rand(48, 64, 3) * 255).to(torch.uint8).numpy()
    features = backend.features(image)
    backend.model = model.eval()  # the same backend computing with the unfolded model
    torch.testing.assert_close(features, backend.features(image), rtol=1e-4, atol=1e-4)


def test_the_benchmark_times_what_the_backend_runs_beside_the_plain_model() -> None:
    from kil_perception.bench import effnet_inference

    rows = effnet_inference(repeats=1)
    assert set(rows) == {"320x240", "640x480"}
    for row in rows.values():
        assert row["plain_ms"] > 0 and row["backend_ms"] > 0
        assert row["max_abs_difference"] < 1e-3  # the same network, computed another way
