"""Typed, validated configuration of the keypoint diffusion policy and its training.

Defaults follow the paper's Table VIII where it gives them (observation horizon 2, prediction
horizon 16, action horizon 8, UNet down dims [128, 256, 512] for KIL and [256, 512, 1024] for
the RGB baseline, kernel 5, 100 DDPM training steps, 14 DDIM inference steps, AdamW, cosine LR,
batch 128, no EMA). Values the paper leaves out (encoder width, learning rate, augmentation
magnitudes) are ours and marked as such.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, Literal

from kil_interfaces.representation import proprio_dim as proprio_width

#: Action: position (3) + 6-D rotation (first two columns of R) + gripper (1).
ACTION_DIM = 10
#: Proprioception with the paper's Euler angles: position (3) + roll, pitch, yaw (3) + gripper (1);
#: ``PolicyConfig.proprio_dim`` gives the width of the configured encoding.
PROPRIO_DIM = 7


#: The diffusion head's noise schedules (diffusers' names; ``kil_policy.noise_schedule``).
BETA_SCHEDULES = ("linear", "scaled_linear", "squaredcos_cap_v2")


@dataclass
class EncoderConfig:
    """Keypoint encoder (§III-C): a pre-LayerNorm transformer with one token per keypoint and one
    for proprioception.

    Attributes:
        kind: "transformer" (ours), "none" (keypoints concatenated to proprio, no encoder),
            "sim" (transformer, each keypoint token also carries its cosine similarities).
        pooling: "mean" (single object) or "cls_max" (CLS token + max-pool, multi-instance).
        num_keypoints: keypoints per observation K (fixed; missing ones are padded and masked).
        d_model: token width (ours: 128). num_layers, num_heads: transformer depth and heads
            (ours: 4, 4). mlp_dim: feed-forward width (ours: 4 x d_model).
    """

    kind: Literal["transformer", "none", "sim"] = "transformer"
    pooling: Literal["mean", "cls_max"] = "mean"
    num_keypoints: int = 4
    d_model: int = 128
    num_layers: int = 4
    num_heads: int = 4
    mlp_dim: int = 512

    def __post_init__(self) -> None:
        if self.kind not in ("transformer", "none", "sim"):
            raise ValueError(f"encoder.kind must be transformer, none or sim, got {self.kind!r}")
        if self.pooling not in ("mean", "cls_max"):
            raise ValueError(f"encoder.pooling must be mean or cls_max, got {self.pooling!r}")
        if self.num_keypoints < 1:
            raise ValueError(f"encoder.num_keypoints must be >= 1, got {self.num_keypoints}")
        if self.d_model % self.num_heads:
            raise ValueError(f"encoder.d_model {self.d_model} must be divisible by num_heads {self.num_heads}")
        for name in ("d_model", "num_layers", "num_heads", "mlp_dim"):
            if getattr(self, name) < 1:
                raise ValueError(f"encoder.{name} must be >= 1, got {getattr(self, name)}")


@dataclass
class HeadConfig:
    """Conditional 1-D UNet diffusion head (Chi et al.) and its noise schedule.

    Attributes:
        down_dims: channels per UNet level ([128, 256, 512] for KIL).
        kernel_size: temporal convolution kernel.
        n_groups: GroupNorm groups.
        step_embed_dim: diffusion-step embedding width.
        train_steps: DDPM steps in training (100).
        inference_steps: DDIM steps at inference (14).
        beta_schedule: noise schedule ("squaredcos_cap_v2" = squared cosine).
        clip_sample: clip denoised samples to [-1, 1].
    """

    down_dims: tuple[int, ...] = (128, 256, 512)
    kernel_size: int = 5
    n_groups: int = 8
    step_embed_dim: int = 128
    train_steps: int = 100
    inference_steps: int = 14
    beta_schedule: str = "squaredcos_cap_v2"
    clip_sample: bool = True

    def __post_init__(self) -> None:
        self.down_dims = tuple(int(d) for d in self.down_dims)
        if not self.down_dims or any(d < 1 for d in self.down_dims):
            raise ValueError(f"head.down_dims must be positive, got {self.down_dims}")
        if any(d % self.n_groups for d in self.down_dims):
            raise ValueError(f"head.down_dims {self.down_dims} must be divisible by n_groups {self.n_groups}")
        if self.kernel_size % 2 == 0:
            raise ValueError(f"head.kernel_size must be odd, got {self.kernel_size}")
        if not 1 <= self.inference_steps <= self.train_steps:
            raise ValueError(
                f"head.inference_steps must be in [1, train_steps={self.train_steps}], got {self.inference_steps}"
            )
        if self.beta_schedule not in BETA_SCHEDULES:
            raise ValueError(f"head.beta_schedule must be one of {BETA_SCHEDULES}, got {self.beta_schedule!r}")


@dataclass
class PolicyConfig:
    """The whole policy.

    Attributes:
        observation: "keypoints" (KIL), "rgb" (the ResNet-18 baseline) or "s2" (the same image
            encoder on a task-object mask + relative depth, ``kil_policy.s2_observation``).
        n_obs_steps: observation history (2). horizon: predicted actions (16).
        n_action_steps: actions executed per chunk (8).
        encoder: keypoint encoder. head: diffusion head.
        image_size: (H, W) of the RGB / S2 baselines' input (paper: 224 x 224).
        rgb_weights: local ImageNet ResNet-18 weights for the baselines ("" = random init).
        image_backbone: the image encoder of the RGB / S2 baselines: "resnet18" (the paper's:
            ResNet-18 trained end to end, global average pooling) or "effnet_lite0_frozen"
            (the CPU recipe: EfficientNet-Lite0's ImageNet trunk to stride 16, frozen, so its
            features are computed once per training frame; a trainable ResNet-style stage on top
            ends in global average pooling as the paper's encoder does).
        image_crop: the training crop of the image baselines, as a fraction of each side (a random
            window per sample; the centre at evaluation; 1 = no crop). Paper Table X: random crop.
        image_norm: normalisation layers of the image encoder's ResNet: "group" (GroupNorm, as
            diffusion policy's ResNets) or "batch" (torchvision's BatchNorm).
        image_pool: how the image encoder's feature map becomes a vector: "gap" (global average
            pooling, the paper's choice, §IV-C) or "spatial_softmax" (diffusion policy's and
            robomimic's: the expected image position of 32 learned feature keypoints; see
            ``kil_policy.image_encoder.SpatialSoftmax`` for why the simulation uses it).
        mask_categories: S2 only: the object categories its mask shows (S2's text prompts; the
            task's manipulated object and fixture).
        proprio_rotation: the proprioception's orientation: "euler" (the paper's roll/pitch/yaw,
            7 values) or "rot6d" (the first two columns of R, as the actions; 10 values), which
            stays continuous where Euler angles are singular (a tool pointing horizontally, e.g.
            pour_bottle's side grasp; ``kil_interfaces.representation``).
    """

    observation: Literal["keypoints", "rgb", "s2"] = "keypoints"
    n_obs_steps: int = 2
    horizon: int = 16
    n_action_steps: int = 8
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    image_size: tuple[int, int] = (224, 224)
    rgb_weights: str = ""
    image_backbone: Literal["resnet18", "effnet_lite0_frozen"] = "resnet18"
    image_crop: float = 0.9
    image_norm: Literal["group", "batch"] = "group"
    image_pool: Literal["gap", "spatial_softmax"] = "gap"
    mask_categories: tuple[str, ...] = ()
    proprio_rotation: Literal["euler", "rot6d"] = "euler"

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):
            self.encoder = EncoderConfig(**self.encoder)
        if isinstance(self.head, dict):
            self.head = HeadConfig(**self.head)
        self.image_size = tuple(int(v) for v in self.image_size)
        self.mask_categories = tuple(str(c) for c in self.mask_categories)
        if self.observation not in ("keypoints", "rgb", "s2"):
            raise ValueError(f"observation must be keypoints, rgb or s2, got {self.observation!r}")
        if self.image_backbone not in ("resnet18", "effnet_lite0_frozen"):
            raise ValueError(f"image_backbone must be resnet18 or effnet_lite0_frozen, got {self.image_backbone!r}")
        if not 0.5 <= self.image_crop <= 1.0:
            raise ValueError(f"image_crop must be in [0.5, 1], got {self.image_crop}")
        if self.image_norm not in ("group", "batch"):
            raise ValueError(f"image_norm must be group or batch, got {self.image_norm!r}")
        if self.image_pool not in ("gap", "spatial_softmax"):
            raise ValueError(f"image_pool must be gap or spatial_softmax, got {self.image_pool!r}")
        try:
            proprio_width(self.proprio_rotation)
        except ValueError as error:
            raise ValueError(f"proprio_rotation: {error}") from None
        if self.observation == "s2" and not self.mask_categories:
            raise ValueError("observation s2 needs mask_categories: the object categories its mask shows")
        if self.n_obs_steps < 1:
            raise ValueError(f"n_obs_steps must be >= 1, got {self.n_obs_steps}")
        if not 1 <= self.n_action_steps <= self.horizon - self.n_obs_steps + 1:
            raise ValueError(
                f"n_action_steps must be in [1, horizon - n_obs_steps + 1 = {self.horizon - self.n_obs_steps + 1}], "
                f"got {self.n_action_steps}"
            )
        levels = len(self.head.down_dims) - 1
        if self.horizon % (2**levels):
            raise ValueError(
                f"horizon {self.horizon} must be divisible by 2**(len(down_dims) - 1) = {2**levels} (UNet downsampling)"
            )

    @property
    def proprio_dim(self) -> int:
        """Width P of the proprioception vector (7 with Euler angles, 10 with the 6-D rotation)."""
        return proprio_width(self.proprio_rotation)

    @property
    def uses_images(self) -> bool:
        """The RGB and S2 baselines see images; KIL sees keypoints."""
        return self.observation in ("rgb", "s2")

    @property
    def image_channels(self) -> int:
        """Channels of the image observation: 3 (RGB), 2 (S2: mask, relative depth), 0 (KIL)."""
        return {"rgb": 3, "s2": 2}.get(self.observation, 0)

    @classmethod
    def rgb_baseline(cls) -> PolicyConfig:
        """The RGB diffusion baseline of §IV-C (down dims [256, 512, 1024])."""
        return cls(observation="rgb", head=HeadConfig(down_dims=(256, 512, 1024)))


def to_dict(config: Any) -> dict:
    """A config dataclass as plain dicts and lists (for YAML and checkpoints)."""
    out = asdict(config)

    def plain(value):
        if isinstance(value, tuple):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(out)


def from_dict(cls, values: dict, where: str = "config"):
    """Build a config dataclass from a dict, naming unknown keys (``where`` = file name)."""
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ValueError(f"{where}: unknown {cls.__name__} field(s) {', '.join(unknown)}; known: {', '.join(known)}")
    kwargs = {}
    for name, value in values.items():
        default = getattr(cls(), name) if _constructible(cls) else None
        if is_dataclass(default) and isinstance(value, dict):
            value = from_dict(type(default), value, f"{where}.{name}")
        kwargs[name] = value
    return cls(**kwargs)


def _constructible(cls) -> bool:
    try:
        cls()
    except TypeError:
        return False
    return True


def _field_docs(cls) -> dict[str, str]:
    """Field name -> its description in the class docstring's ``Attributes:`` block (entries
    ``name: text`` or ``a / b: text`` / ``a, b: text`` for several fields; '' where none)."""
    import inspect
    import re

    names = {f.name for f in fields(cls)}
    docs: dict[str, str] = {}
    for base in cls.__mro__[1:]:  # fields inherited from a documented config
        if is_dataclass(base):
            docs |= {k: v for k, v in _field_docs(base).items() if k in names}
    text = inspect.getdoc(cls) or ""
    if "Attributes:" in text:
        text = text.split("Attributes:", 1)[1]
    entry = re.compile(r"(?:^[ \t]*|(?<=[.;] ))((?:\w+(?:\s*[,/]\s*)?)+):\s", re.MULTILINE)
    matches = [m for m in entry.finditer(text) if all(n.strip() in names for n in re.split(r"[,/]", m.group(1)))]
    for i, match in enumerate(matches):
        end = matches[i + 1].start() if i + 1 < len(matches) else len(text)
        body = " ".join(text[match.end() : end].split())
        for name in re.split(r"[,/]", match.group(1)):
            docs[name.strip()] = body
    return docs


def describe_fields(cls, prefix: str = "") -> list[tuple[str, Any, str]]:
    """Every config key of a dataclass (nested ones dotted, e.g. ``policy.encoder.d_model``) with
    its default and the line of its docstring that describes it."""
    instance = cls() if _constructible(cls) else None
    docs = _field_docs(cls)
    out = []
    for f in fields(cls):
        default = getattr(instance, f.name) if instance is not None else None
        if is_dataclass(default):
            out += describe_fields(type(default), f"{prefix}{f.name}.")
        else:
            value = list(default) if isinstance(default, tuple) else default
            out.append((f"{prefix}{f.name}", value, docs.get(f.name, "")))
    return out
