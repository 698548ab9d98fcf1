"""Training augmentations (paper §III-C, Appendix A.1): keypoint noise, end-effector noise, and a
random spatial transform (rotation about the base z axis + xy translation) applied consistently
to keypoints, proprioception and actions. Magnitudes are ours (the paper's table is not legible).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from kil_interfaces.representation import PROPRIO_ROTATIONS
from kil_policy.policy import BatchKeys


@dataclass
class AugmentationConfig:
    """Attributes:
    keypoint_noise_m: std of Gaussian noise on valid keypoints (m).
    eef_noise_m / eef_noise_rad: std of noise on the proprioceptive position (m) and orientation
        (rad: on roll/pitch/yaw, or on the 6-D rotation's entries, which for small angles move by
        about the angle).
    translation_m: spatial transform's xy translation, uniform in +-translation_m (m).
    rotation_rad: spatial transform's rotation about the base z axis, uniform in +-rotation_rad.
    """

    keypoint_noise_m: float = 0.005
    eef_noise_m: float = 0.005
    eef_noise_rad: float = 0.02
    translation_m: float = 0.03
    rotation_rad: float = 0.2

    def __post_init__(self) -> None:
        for name in ("keypoint_noise_m", "eef_noise_m", "eef_noise_rad", "translation_m", "rotation_rad"):
            if getattr(self, name) < 0:
                raise ValueError(f"augmentation.{name} must be >= 0, got {getattr(self, name)}")

    @classmethod
    def none(cls) -> AugmentationConfig:
        return cls(0.0, 0.0, 0.0, 0.0, 0.0)


def spatial_transform(batch: dict[str, Tensor], angle: Tensor, shift: Tensor) -> dict[str, Tensor]:
    """Rotate every sample's scene by ``angle`` (B,) about the base z axis, then shift by (B, 2).

    Keypoints (B, n, K, 3), proprio (B, n, 7 with roll/pitch/yaw or 10 with the 6-D rotation) and
    actions (B, T, 10) move together, so relative geometry is unchanged. Returns a new dict; other
    entries are shared.
    """
    c, s = torch.cos(angle), torch.sin(angle)
    zero, one = torch.zeros_like(c), torch.ones_like(c)
    rz = torch.stack(
        [torch.stack([c, -s, zero], -1), torch.stack([s, c, zero], -1), torch.stack([zero, zero, one], -1)], -2
    )
    t = torch.cat([shift, torch.zeros_like(shift[:, :1])], dim=-1)  # (B, 3)

    def move(points: Tensor) -> Tensor:  # (B, ..., 3)
        shape = points.shape
        flat = points.reshape(shape[0], -1, 3)
        return (flat @ rz.transpose(1, 2).to(flat.dtype) + t[:, None].to(flat.dtype)).reshape(shape)

    def turn(rot6d: Tensor) -> Tensor:  # (B, n, 6): both columns of R turned by Rz
        b, n = rot6d.shape[:2]
        return (rot6d.reshape(b, -1, 3) @ rz.transpose(1, 2).to(rot6d.dtype)).reshape(b, n, 6)

    out = dict(batch)
    proprio = batch[BatchKeys.PROPRIO].clone()
    proprio[..., :3] = move(proprio[..., :3])
    if proprio.shape[-1] == PROPRIO_ROTATIONS["rot6d"]:
        proprio[..., 3:9] = turn(proprio[..., 3:9])
    else:  # roll/pitch/yaw: Rz(a) R adds a to the yaw
        proprio[..., 5] = torch.remainder(proprio[..., 5] + angle[:, None] + torch.pi, 2 * torch.pi) - torch.pi
    out[BatchKeys.PROPRIO] = proprio
    if BatchKeys.ACTION in batch:
        action = batch[BatchKeys.ACTION].clone()
        action[..., :3] = move(action[..., :3])
        action[..., 3:9] = turn(action[..., 3:9])
        out[BatchKeys.ACTION] = action
    if BatchKeys.KEYPOINTS in batch:
        valid = batch[BatchKeys.VALID][..., None]
        moved = move(batch[BatchKeys.KEYPOINTS])
        out[BatchKeys.KEYPOINTS] = torch.where(valid, moved, batch[BatchKeys.KEYPOINTS])
    return out


def augment(
    batch: dict[str, Tensor], config: AugmentationConfig, generator: torch.Generator | None = None
) -> dict[str, Tensor]:
    """Apply the spatial transform and the noises to a training batch.

    A batch with camera images (the RGB baseline) gets no spatial transform: moving proprio and
    actions while the image stays would teach the policy targets the picture does not show.
    """
    proprio = batch[BatchKeys.PROPRIO]
    b, device = proprio.shape[0], proprio.device

    def uniform(*shape: int) -> Tensor:
        return torch.rand(*shape, generator=generator, device=device) * 2 - 1

    def normal(shape) -> Tensor:
        return torch.randn(shape, generator=generator, device=device)

    if BatchKeys.IMAGE in batch or BatchKeys.IMAGE_FEATURES in batch:
        out = dict(batch)
    else:
        out = spatial_transform(batch, uniform(b) * config.rotation_rad, uniform(b, 2) * config.translation_m)
    if config.eef_noise_m or config.eef_noise_rad:
        noisy = out[BatchKeys.PROPRIO].clone()
        noisy[..., :3] += normal(noisy[..., :3].shape) * config.eef_noise_m
        rotation = slice(3, noisy.shape[-1] - 1)  # roll/pitch/yaw or the 6-D rotation
        noisy[..., rotation] += normal(noisy[..., rotation].shape) * config.eef_noise_rad
        out[BatchKeys.PROPRIO] = noisy
    if BatchKeys.KEYPOINTS in out and config.keypoint_noise_m:
        keypoints = out[BatchKeys.KEYPOINTS]
        noise = normal(keypoints.shape) * config.keypoint_noise_m
        out[BatchKeys.KEYPOINTS] = torch.where(out[BatchKeys.VALID][..., None], keypoints + noise, keypoints)
    return out
