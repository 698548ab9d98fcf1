"""The keypoint diffusion policy: encoder + conditional UNet + DDPM/DDIM schedules.

Batches are dicts of tensors (key names in ``BatchKeys``):
    keypoints    (B, n_obs, K, 3)  keypoint positions in the base frame (m)
    valid        (B, n_obs, K)     bool, False for missing/padded keypoints
    similarities (B, n_obs, K, K)  cosine similarities (encoder kind "sim" only)
    proprio      (B, n_obs, P)     position, orientation, gripper: P = 7 (roll/pitch/yaw) or 10
                                   (6-D rotation), ``PolicyConfig.proprio_rotation``
    image        (B, n_obs, C, H, W) float in [0, 1] (RGB: C = 3; S2: C = 2, mask and relative depth)
    image_features (B, n_obs, 112, h, w) the frozen trunk's features of those images, computed once
                 per training frame (``image_backbone`` "effnet_lite0_frozen"), in place of image
    action       (B, horizon, 10)  training targets
    action_is_pad (B, horizon)     bool, True where the window ran past the episode end

Action windows follow Diffusion Policy: action index 0 is the step of the oldest observation, so
with n_obs = 2 the executed actions are indices 1 .. n_action_steps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from kil_policy.config import ACTION_DIM, PolicyConfig
from kil_policy.encoder import make_encoder
from kil_policy.noise_schedule import NoiseSchedule
from kil_policy.normalization import MinMaxNormalizer
from kil_policy.packed_unet import Denoiser
from kil_policy.sampler import DdimCoefficients, ddim_coefficients, ddim_step
from kil_policy.unet import ConditionalUnet1D


class BatchKeys:
    KEYPOINTS = "keypoints"
    VALID = "valid"
    SIMILARITIES = "similarities"
    PROPRIO = "proprio"
    IMAGE = "image"
    IMAGE_FEATURES = "image_features"
    ACTION = "action"
    ACTION_IS_PAD = "action_is_pad"


class KeypointDiffusionPolicy(nn.Module):
    """KIL policy (or the RGB / S2 baseline when ``config.observation`` is "rgb" / "s2")."""

    def __init__(self, config: PolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.action_normalizer = MinMaxNormalizer(ACTION_DIM)
        self.proprio_normalizer = MinMaxNormalizer(config.proprio_dim)
        self.keypoint_normalizer = MinMaxNormalizer(3)
        if config.uses_images:
            from kil_policy.image_encoder import make_image_encoder

            self.encoder = make_image_encoder(config)
        else:
            self.encoder = make_encoder(config.encoder, config.proprio_dim)
        self.unet = ConditionalUnet1D(ACTION_DIM, config.n_obs_steps * self.encoder.output_dim, config.head)
        head = config.head
        self.noise_schedule = NoiseSchedule(
            num_train_timesteps=head.train_steps, beta_schedule=head.beta_schedule, clip_sample=head.clip_sample
        )  # DDPM in training, DDIM at inference (its numbers, precomputed: self.ddim(steps))
        self._ddim: dict[tuple, DdimCoefficients] = {}

    def forward(self, batch: dict[str, Tensor]) -> Tensor:
        """The training loss (so that DistributedDataParallel's hooks see a forward call)."""
        return self.compute_loss(batch)

    # --- normalisation ------------------------------------------------------------------------

    @torch.no_grad()
    def fit_normalizers(self, actions: Tensor, proprio: Tensor, keypoints: Tensor | None, valid: Tensor | None) -> None:
        """Fit min-max statistics on the training set (before augmentation).

        Args:
            actions: (N, 10). proprio: (N, P). keypoints: (N, K, 3) with valid (N, K), or None.
        """
        self.action_normalizer.fit(actions)
        self.proprio_normalizer.fit(proprio)
        if keypoints is not None:
            points = keypoints.reshape(-1, 3).clone().double()
            points[~valid.reshape(-1)] = float("nan")
            self.keypoint_normalizer.fit(points)

    # --- model --------------------------------------------------------------------------------

    def encode(self, batch: dict[str, Tensor]) -> Tensor:
        """Observation history -> (B, n_obs * D) global condition."""
        proprio = self.proprio_normalizer.normalize(batch[BatchKeys.PROPRIO])
        b, n = proprio.shape[:2]
        if BatchKeys.IMAGE_FEATURES in batch:
            features = self.encoder.from_features(batch[BatchKeys.IMAGE_FEATURES].flatten(0, 1), proprio.flatten(0, 1))
        elif self.config.uses_images:
            features = self.encoder(batch[BatchKeys.IMAGE].flatten(0, 1), proprio.flatten(0, 1))
        else:
            keypoints = self.keypoint_normalizer.normalize(batch[BatchKeys.KEYPOINTS])
            similarities = batch.get(BatchKeys.SIMILARITIES)
            features = self.encoder(
                keypoints.flatten(0, 1),
                batch[BatchKeys.VALID].flatten(0, 1),
                proprio.flatten(0, 1),
                None if similarities is None else similarities.flatten(0, 1),
            )
        return features.reshape(b, n * features.shape[-1])

    def compute_loss(self, batch: dict[str, Tensor]) -> Tensor:
        """Epsilon-prediction MSE on randomly noised action windows (padded steps masked)."""
        actions = self.action_normalizer.normalize(batch[BatchKeys.ACTION])
        cond = self.encode(batch)
        noise = torch.randn_like(actions)
        steps = torch.randint(0, self.config.head.train_steps, (actions.shape[0],), device=actions.device)
        noisy = self.noise_schedule.add_noise(actions, noise, steps)
        predicted = self.unet(noisy, steps, cond)
        loss = F.mse_loss(predicted, noise, reduction="none")
        pad = batch.get(BatchKeys.ACTION_IS_PAD)
        if pad is not None:
            weight = (~pad).to(loss.dtype)[..., None].expand_as(loss)
            return (loss * weight).sum() / weight.sum().clamp_min(1.0)
        return loss.mean()

    def ddim(
        self, steps: int, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
    ) -> DdimCoefficients:
        """The DDIM coefficients for ``steps`` inference steps, on ``device`` (None: the CPU
        originals); computed and moved once per (steps, device, dtype), so a sampling loop makes
        no host-to-device copy (a CUDA graph capture could not)."""
        key = (steps, None if device is None else str(torch.device(device)), dtype)
        cached = self._ddim.get(key)
        if cached is None:
            original = self._ddim.get((steps, None, torch.float32))
            if original is None:
                original = self._ddim[(steps, None, torch.float32)] = ddim_coefficients(self.noise_schedule, steps)
            cached = self._ddim[key] = original if device is None else original.to(device, dtype)
        return cached

    @torch.no_grad()
    def predict_action_chunk(
        self,
        batch: dict[str, Tensor],
        steps: int | None = None,
        generator: torch.Generator | None = None,
        denoiser: Denoiser | None = None,
        noise: Tensor | None = None,
    ) -> Tensor:
        """DDIM sampling of (B, horizon, 10) unnormalised actions.

        Args:
            batch: observations (no actions needed).
            steps: DDIM steps (default ``config.head.inference_steps``).
            generator: for reproducible sampling.
            denoiser: a packed copy of ``self.unet`` (faster; see ``kil_policy.packed_unet``),
                or None for the module itself.
            noise: (B, horizon, 10) initial noise (default: drawn with ``generator``).
        """
        cond = self.encode(batch)
        # The sample and the DDIM update keep the weights' dtype, also under autocast (bf16 GEMMs).
        dtype = next(self.unet.parameters()).dtype
        coefficients = self.ddim(steps or self.config.head.inference_steps, cond.device, dtype)
        sample = noise
        if sample is None:
            shape = (cond.shape[0], self.config.horizon, ACTION_DIM)
            sample = torch.randn(shape, generator=generator, device=cond.device, dtype=dtype)
        cache = self.unet.precompute(coefficients.timesteps, cond)
        for k in range(coefficients.steps):
            if denoiser is None:
                predicted = self.unet(sample, cache=cache, step_index=k)
            else:
                predicted = denoiser(sample, [film[k] for film in cache.films])
            sample = ddim_step(sample, predicted, k, coefficients)
        return self.action_normalizer.unnormalize(sample)
