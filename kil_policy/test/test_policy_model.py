"""Unit tests of the policy's pieces: encoders, UNet, normaliser, representation, augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from kil_interfaces.representation import action_from_pose, pose_from_action, proprio_from_pose
from kil_interfaces.rotations import euler_to_quat
from kil_policy.augmentation import AugmentationConfig, augment, spatial_transform
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.encoder import ConcatEncoder, KeypointEncoder, make_encoder
from kil_policy.normalization import MinMaxNormalizer
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy
from kil_policy.unet import ConditionalUnet1D

torch.manual_seed(0)
B, N_OBS, K = 3, 2, 5
SMALL = dict(d_model=32, num_layers=2, num_heads=2, mlp_dim=64, num_keypoints=K)


def _obs(b: int = B) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    keypoints = torch.randn(b, K, 3)
    valid = torch.ones(b, K, dtype=torch.bool)
    valid[:, -2:] = False
    return keypoints, valid, torch.randn(b, 7), torch.rand(b, K, K)


@pytest.mark.parametrize(
    ("kind", "pooling", "width"),
    [("transformer", "mean", 32), ("transformer", "cls_max", 64), ("sim", "mean", 32), ("none", "mean", K * 4 + 7)],
)
def test_encoder_output_width(kind: str, pooling: str, width: int) -> None:
    encoder = make_encoder(EncoderConfig(kind=kind, pooling=pooling, **SMALL))
    keypoints, valid, proprio, sims = _obs()
    out = encoder(keypoints, valid, proprio, sims)
    assert out.shape == (B, width) and encoder.output_dim == width
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kind", ["transformer", "none"])
@pytest.mark.parametrize("pooling", ["mean", "cls_max"])
def test_invalid_keypoints_are_masked(kind: str, pooling: str) -> None:
    encoder = make_encoder(EncoderConfig(kind=kind, pooling=pooling, **SMALL)).eval()
    keypoints, valid, proprio, _ = _obs()
    base = encoder(keypoints, valid, proprio)
    moved_invalid = keypoints.clone()
    moved_invalid[:, -2:] += 100.0  # garbage in the masked slots changes nothing
    torch.testing.assert_close(encoder(moved_invalid, valid, proprio), base)
    moved_valid = keypoints.clone()
    moved_valid[:, 0] += 1.0
    assert not torch.allclose(encoder(moved_valid, valid, proprio), base)


def test_token_order_matters_through_positional_embeddings() -> None:
    encoder = KeypointEncoder(EncoderConfig(**SMALL)).eval()
    keypoints, valid, proprio, _ = _obs()
    valid[:] = True
    swapped = keypoints[:, [1, 0, 2, 3, 4]]
    assert not torch.allclose(encoder(swapped, valid, proprio), encoder(keypoints, valid, proprio))


def test_sim_encoder_needs_similarities() -> None:
    encoder = KeypointEncoder(EncoderConfig(kind="sim", **SMALL))
    keypoints, valid, proprio, _ = _obs()
    with pytest.raises(ValueError, match="similarities"):
        encoder(keypoints, valid, proprio)
    with pytest.raises(ValueError, match="ConcatEncoder"):
        KeypointEncoder(EncoderConfig(kind="none", **SMALL))
    assert isinstance(make_encoder(EncoderConfig(kind="none", **SMALL)), ConcatEncoder)


def test_unet_depends_on_condition_and_cache_matches() -> None:
    unet = ConditionalUnet1D(10, 24, HeadConfig(down_dims=(16, 32, 64))).eval()
    sample, cond = torch.randn(2, 16, 10), torch.randn(2, 24)
    out = unet(sample, torch.tensor(7), cond)
    assert out.shape == (2, 16, 10)
    assert not torch.allclose(out, unet(sample, torch.tensor(7), cond + 1.0))
    assert not torch.allclose(out, unet(sample, torch.tensor(50), cond))
    timesteps = torch.tensor([90, 50, 7])
    cache = unet.precompute(timesteps, cond)
    torch.testing.assert_close(unet(sample, cache=cache, step_index=2), out, atol=1e-5, rtol=1e-5)


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="horizon 10 must be divisible by"):
        PolicyConfig(horizon=10)
    with pytest.raises(ValueError, match="n_action_steps"):
        PolicyConfig(n_action_steps=16)
    with pytest.raises(ValueError, match="inference_steps"):
        HeadConfig(inference_steps=200)
    with pytest.raises(ValueError, match="divisible by num_heads"):
        EncoderConfig(d_model=30, num_heads=4)
    with pytest.raises(ValueError, match="pooling"):
        EncoderConfig(pooling="sum")


def test_normalizer_round_trip_and_range() -> None:
    data = torch.randn(100, 4) * torch.tensor([1.0, 10.0, 0.001, 0.0]) + 3.0
    norm = MinMaxNormalizer(4).fit(data)
    y = norm.normalize(data)
    assert y[:, :3].min() >= -1 - 1e-5 and y[:, :3].max() <= 1 + 1e-5
    torch.testing.assert_close(y[:, 3], torch.zeros(100))  # constant feature: shifted only
    torch.testing.assert_close(norm.unnormalize(y), data, atol=1e-4, rtol=1e-5)
    with pytest.raises(ValueError, match="zero valid samples"):
        MinMaxNormalizer(2).fit(torch.full((3, 2), float("nan")))


def test_action_and_proprio_representation() -> None:
    rng = np.random.default_rng(0)
    rotations = Rotation.random(50, random_state=1)
    position, gripper = rng.normal(size=(50, 3)), rng.uniform(0, 1, 50)
    action = action_from_pose(position, rotations.as_quat(), gripper)
    assert action.shape == (50, 10)
    np.testing.assert_allclose(action[:, 3:6], rotations.as_matrix()[:, :, 0])
    p, q, g = pose_from_action(action)
    np.testing.assert_allclose(p, position)
    np.testing.assert_allclose(np.abs(np.sum(q * rotations.as_quat(), axis=1)), 1.0, atol=1e-9)
    np.testing.assert_allclose(g, gripper)
    down = euler_to_quat(np.array([[np.pi - 0.01, 0, 0.3], [-np.pi + 0.01, 0, 0.3]]))
    rolls = proprio_from_pose(np.zeros((2, 3)), down, np.ones(2))[:, 3]
    np.testing.assert_allclose(rolls, [np.pi - 0.01, np.pi + 0.01])  # continuous around pi


def test_proprio_rot6d_is_continuous_where_euler_angles_are_singular() -> None:
    """A side grasp (tool z horizontal, pitch 90 deg, as pour_bottle's) measured 0.5 deg off: the
    Euler proprioception's roll and yaw land anywhere, the 6-D rotation moves by about the angle."""
    side = Rotation.from_matrix(np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]]))
    tilts = Rotation.from_rotvec(np.radians(0.5) * Rotation.random(40, random_state=5).apply([1.0, 0.0, 0.0]))
    quats = (tilts * side).as_quat()
    euler = proprio_from_pose(np.zeros((40, 3)), quats, np.ones(40))
    rot6d = proprio_from_pose(np.zeros((40, 3)), quats, np.ones(40), "rot6d")
    assert euler.shape == (40, 7) and rot6d.shape == (40, 10)
    assert np.ptp(euler[:, 3]) > np.radians(90) and np.ptp(euler[:, 5]) > np.radians(90)
    assert np.abs(rot6d[:, 3:9] - rot6d[:1, 3:9]).max() < np.radians(1.1)
    np.testing.assert_allclose(rot6d[:, 3:9], action_from_pose(np.zeros((40, 3)), quats, np.ones(40))[:, 3:9])
    with pytest.raises(ValueError, match="euler, rot6d"):
        proprio_from_pose(np.zeros(3), quats[0], np.ones(()), "quaternion")
    with pytest.raises(ValueError, match="proprio_rotation"):
        PolicyConfig(proprio_rotation="quaternion")


def test_spatial_transform_turns_the_rot6d_proprioception_with_the_scene() -> None:
    """With the 6-D rotation, the augmented proprioception is exactly the turned pose's."""
    rng = np.random.default_rng(6)
    position, quats, grip = rng.normal(size=(B * N_OBS, 3)), Rotation.random(B * N_OBS, random_state=7), np.ones(6)
    proprio = torch.from_numpy(proprio_from_pose(position, quats.as_quat(), grip, "rot6d").reshape(B, N_OBS, 10))
    batch = {BatchKeys.PROPRIO: proprio}
    angle, shift = torch.tensor([0.3, -1.0, 2.5], dtype=torch.float64), torch.randn(B, 2, dtype=torch.float64)
    out = spatial_transform(batch, angle, shift)[BatchKeys.PROPRIO]
    turns = Rotation.from_rotvec(np.repeat(angle.numpy(), N_OBS)[:, None] * [0.0, 0.0, 1.0])
    moved = turns.apply(position) + np.concatenate([np.repeat(shift.numpy(), N_OBS, axis=0), np.zeros((6, 1))], 1)
    expected = proprio_from_pose(moved, (turns * quats).as_quat(), grip, "rot6d").reshape(B, N_OBS, 10)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-9)
    noisy = augment(batch, AugmentationConfig(0.0, 0.0, 0.05, 0.0, 0.0), torch.Generator().manual_seed(0))
    delta = (noisy[BatchKeys.PROPRIO] - proprio).abs()
    assert delta[..., 3:9].min() > 0 and delta[..., :3].max() == 0 and delta[..., 9].max() == 0


def _batch() -> dict[str, torch.Tensor]:
    rng = np.random.default_rng(2)
    quats = Rotation.random(B * 16, random_state=3).as_quat()
    actions = action_from_pose(rng.normal(size=(B * 16, 3)), quats, rng.uniform(0, 1, B * 16)).reshape(B, 16, 10)
    proprio = proprio_from_pose(
        rng.normal(size=(B * N_OBS, 3)),
        Rotation.random(B * N_OBS, random_state=4).as_quat(),
        rng.uniform(0, 1, B * N_OBS),
    ).reshape(B, N_OBS, 7)
    valid = torch.ones(B, N_OBS, K, dtype=torch.bool)
    valid[:, :, -1] = False
    return {
        BatchKeys.KEYPOINTS: torch.randn(B, N_OBS, K, 3, dtype=torch.float64),
        BatchKeys.VALID: valid,
        BatchKeys.PROPRIO: torch.from_numpy(proprio),
        BatchKeys.ACTION: torch.from_numpy(actions),
    }


def test_spatial_transform_keeps_relative_geometry() -> None:
    batch = _batch()
    angle, shift = torch.tensor([0.3, -1.0, 2.5], dtype=torch.float64), torch.randn(B, 2, dtype=torch.float64)
    out = spatial_transform(batch, angle, shift)
    valid = batch[BatchKeys.VALID][:, 0]
    for b in range(B):
        before = torch.cat(
            [
                batch[BatchKeys.KEYPOINTS][b, 0][valid[b]],
                batch[BatchKeys.ACTION][b, :, :3],
                batch[BatchKeys.PROPRIO][b, :, :3],
            ]
        )
        after = torch.cat(
            [
                out[BatchKeys.KEYPOINTS][b, 0][valid[b]],
                out[BatchKeys.ACTION][b, :, :3],
                out[BatchKeys.PROPRIO][b, :, :3],
            ]
        )
        torch.testing.assert_close(torch.cdist(after, after), torch.cdist(before, before))
        # Orientations: the action frame's axes relative to a keypoint displacement are unchanged.
        d_before = batch[BatchKeys.KEYPOINTS][b, 0, 1] - batch[BatchKeys.KEYPOINTS][b, 0, 0]
        d_after = out[BatchKeys.KEYPOINTS][b, 0, 1] - out[BatchKeys.KEYPOINTS][b, 0, 0]
        torch.testing.assert_close(
            batch[BatchKeys.ACTION][b, :, 3:6] @ d_before, out[BatchKeys.ACTION][b, :, 3:6] @ d_after
        )
    # Invalid keypoints stay untouched; the gripper is unchanged; yaw shifts by the angle.
    torch.testing.assert_close(out[BatchKeys.KEYPOINTS][:, :, -1], batch[BatchKeys.KEYPOINTS][:, :, -1])
    torch.testing.assert_close(out[BatchKeys.ACTION][..., 9], batch[BatchKeys.ACTION][..., 9])
    yaw_shift = (
        torch.remainder(out[BatchKeys.PROPRIO][..., 5] - batch[BatchKeys.PROPRIO][..., 5] + torch.pi, 2 * torch.pi)
        - torch.pi
    )
    expected = torch.remainder(angle[:, None].expand(B, N_OBS) + torch.pi, 2 * torch.pi) - torch.pi
    torch.testing.assert_close(yaw_shift, expected)

    # The action frame itself turned by exactly the angle about z.
    def frame(action: torch.Tensor) -> Rotation:
        c0, c1 = action[3:6].numpy(), action[6:9].numpy()
        return Rotation.from_matrix(np.stack([c0, c1, np.cross(c0, c1)], axis=1))

    turn = frame(out[BatchKeys.ACTION][0, 0]) * frame(batch[BatchKeys.ACTION][0, 0]).inv()
    np.testing.assert_allclose(turn.as_rotvec(), [0, 0, 0.3], atol=1e-9)


def test_augment_adds_noise_only_where_asked() -> None:
    batch = _batch()
    out = augment(batch, AugmentationConfig.none())
    for key in batch:
        torch.testing.assert_close(out[key], batch[key])
    noisy = augment(batch, AugmentationConfig(0.01, 0.0, 0.0, 0.0, 0.0), torch.Generator().manual_seed(0))
    delta = noisy[BatchKeys.KEYPOINTS] - batch[BatchKeys.KEYPOINTS]
    assert delta[..., :-1, :].abs().max() > 0 and delta[..., -1, :].abs().max() == 0  # invalid untouched
    torch.testing.assert_close(noisy[BatchKeys.ACTION], batch[BatchKeys.ACTION])


def test_augment_never_moves_the_scene_of_camera_images() -> None:
    """The RGB baseline's frames cannot move with a spatial transform, so actions must not either."""
    batch = _batch()
    batch[BatchKeys.IMAGE] = torch.rand(B, N_OBS, 3, 8, 8)
    out = augment(batch, AugmentationConfig(0.0, 0.0, 0.0, 0.05, 0.5), torch.Generator().manual_seed(0))
    torch.testing.assert_close(out[BatchKeys.ACTION], batch[BatchKeys.ACTION])
    torch.testing.assert_close(out[BatchKeys.PROPRIO], batch[BatchKeys.PROPRIO])
    del batch[BatchKeys.IMAGE]
    moved = augment(batch, AugmentationConfig(0.0, 0.0, 0.0, 0.05, 0.5), torch.Generator().manual_seed(0))
    assert (moved[BatchKeys.ACTION][..., :3] - batch[BatchKeys.ACTION][..., :3]).abs().max() > 1e-3


@pytest.mark.parametrize(("kind", "rotation"), [("transformer", "euler"), ("none", "euler"), ("sim", "euler"),
                                                 ("transformer", "rot6d"), ("none", "rot6d")])  # fmt: skip
def test_policy_loss_and_prediction_shapes(kind: str, rotation: str) -> None:
    config = PolicyConfig(
        encoder=EncoderConfig(kind=kind, **SMALL),
        head=HeadConfig(down_dims=(16, 32, 64), inference_steps=4),
        proprio_rotation=rotation,
    )
    policy = KeypointDiffusionPolicy(config)
    batch = {k: v.float() if v.is_floating_point() else v for k, v in _batch().items()}
    batch[BatchKeys.SIMILARITIES] = torch.rand(B, N_OBS, K, K)
    if rotation == "rot6d":
        batch[BatchKeys.PROPRIO] = torch.cat(
            [batch[BatchKeys.PROPRIO][..., :3], batch[BatchKeys.ACTION][:, :N_OBS, 3:10]], -1
        )
    assert config.proprio_dim == batch[BatchKeys.PROPRIO].shape[-1]
    policy.fit_normalizers(
        batch[BatchKeys.ACTION].reshape(-1, 10),
        batch[BatchKeys.PROPRIO].reshape(-1, config.proprio_dim),
        batch[BatchKeys.KEYPOINTS].reshape(-1, K, 3),
        batch[BatchKeys.VALID].reshape(-1, K),
    )
    loss = policy.compute_loss(batch)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()
    actions = policy.eval().predict_action_chunk(batch, generator=torch.Generator().manual_seed(0))
    assert actions.shape == (B, 16, 10) and torch.isfinite(actions).all()
