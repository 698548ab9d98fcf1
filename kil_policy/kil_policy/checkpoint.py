"""Checkpoints: weights as safetensors (normalisation statistics included) + the resolved config.

Layout of a checkpoint directory::

    model.safetensors     policy weights and normaliser buffers
    config.yaml           {"policy": PolicyConfig, "train": TrainConfig (when saved by training)}
    keypoint_layout.yaml  the (category, instance, name) slots the policy was trained on (KIL)
    spec/                 the keypoint spec the training keypoints were extracted with, and its
                          reference images (when they came from perception)
    train_state.pt        optimiser, LR schedule, step, RNG (training only, for resume)
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file, save_file

from kil_interfaces.keypoint_layout import Layout, write_layout
from kil_perception.spec import KeypointSpec
from kil_policy.config import PolicyConfig, from_dict, to_dict
from kil_policy.policy import KeypointDiffusionPolicy

WEIGHTS = "model.safetensors"
CONFIG = "config.yaml"
SPEC_DIR = "spec"


class CheckpointError(ValueError):
    """A checkpoint is missing or does not fit; the text says what differs."""


def save_policy(
    directory: str | Path,
    policy: KeypointDiffusionPolicy,
    extra_config: dict | None = None,
    layout: Layout | None = None,
    layout_source: str = "",
    spec: KeypointSpec | None = None,
) -> Path:
    """Write a checkpoint directory (see the module docstring); returns it.

    Args:
        layout: the keypoint slots of the training data; ``layout_source`` says where they came
            from (a topic, a spec file).
        spec: the spec the training keypoints were extracted with (copied into ``spec/``).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in policy.state_dict().items()}
    save_file(state, directory / WEIGHTS)
    content = {"policy": to_dict(policy.config), **(extra_config or {})}
    (directory / CONFIG).write_text(yaml.safe_dump(content, sort_keys=False))
    if layout is not None:
        write_layout(directory, layout, layout_source)
    if spec is not None:
        spec.copy_to(directory / SPEC_DIR)
    return directory


def checkpoint_spec(directory: str | Path) -> Path | None:
    """The spec file stored with a checkpoint, or None."""
    path = Path(directory) / SPEC_DIR / "spec.yaml"
    return path if path.is_file() else None


def _restrict(values: dict, keys: dict) -> dict:
    """The entries of ``values`` named by the (nested) keys of ``keys``."""
    return {k: _restrict(values.get(k) or {}, v) if isinstance(v, dict) else values.get(k) for k, v in keys.items()}


def _differences(expected: dict, actual: dict, prefix: str = "") -> list[str]:
    out = []
    for key in sorted(set(expected) | set(actual)):
        a, b = expected.get(key), actual.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}: expected {a!r}, checkpoint has {b!r}")
    return out


def load_policy(
    directory: str | Path, device: str | torch.device = "cpu", expect: PolicyConfig | dict | None = None
) -> KeypointDiffusionPolicy:
    """Load a policy for inference.

    Args:
        expect: a config (or a partial dict, e.g. ``{"encoder": {"num_keypoints": 6}}``) that the
            checkpoint must match; the error lists every field that differs.

    Raises:
        CheckpointError: missing files, a config that differs from ``expect``, or weights that do
            not fit the config.
    """
    directory = Path(directory)
    for name in (WEIGHTS, CONFIG):
        if not (directory / name).is_file():
            raise CheckpointError(f"{directory}: not a policy checkpoint ({name} missing)")
    stored = yaml.safe_load((directory / CONFIG).read_text())["policy"]
    if expect is not None:
        wanted = to_dict(expect) if isinstance(expect, PolicyConfig) else expect
        differences = _differences(wanted, _restrict(stored, wanted))
        if differences:
            raise CheckpointError(
                f"{directory}: checkpoint does not match the expected config: " + "; ".join(differences)
            )
    stored.setdefault("proprio_rotation", "euler")  # checkpoints from before the choice existed
    config = from_dict(PolicyConfig, stored, f"{directory / CONFIG}:policy")
    policy = KeypointDiffusionPolicy(config)
    state = load_file(directory / WEIGHTS)
    try:
        policy.load_state_dict(state)
    except RuntimeError as error:
        raise CheckpointError(f"{directory}: weights do not fit the stored config: {error}") from None
    return policy.to(device).eval()
