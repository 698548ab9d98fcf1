"""Reading rosbag2 episodes onto the 10 Hz action clock, windows, and bad-input handling."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
from policy_synthetic import write_episodes

from kil_policy.data import EpisodeError, TensorWindows, TopicConfig, WindowDataset, load_episodes, read_episode
from kil_policy.policy import BatchKeys


@pytest.fixture(scope="module")
def bags(tmp_path_factory) -> list[Path]:
    return write_episodes(tmp_path_factory.mktemp("bags"), count=3, steps=30)


def test_episode_on_the_action_clock(bags: list[Path]) -> None:
    episode = read_episode(bags[0])
    assert len(episode) == 30
    np.testing.assert_array_equal(np.diff(episode.times_ns), 100_000_000)
    # Proprio at step k is the state published just before command k (position before the move).
    np.testing.assert_allclose(episode.proprio[1:, :3], episode.actions[:-1, :3], atol=1e-12)
    assert episode.keypoints.shape == (30, 4, 3) and episode.valid.all()
    np.testing.assert_allclose(episode.actions[0, 3:9], [1, 0, 0, 0, -1, 0], atol=1e-12)  # TCP pointing down
    assert episode.actions[-1, 9] == 0.0 and episode.actions[0, 9] == 1.0


def test_windows_pad_at_both_ends(bags: list[Path]) -> None:
    dataset = WindowDataset([read_episode(bags[0])], n_obs_steps=2, horizon=16)
    first, last = dataset[0], dataset[len(dataset) - 1]
    assert first[BatchKeys.PROPRIO].shape == (2, 7) and first[BatchKeys.ACTION].shape == (16, 10)
    assert first[BatchKeys.KEYPOINTS].shape == (2, 4, 3) and first[BatchKeys.VALID].dtype.is_floating_point is False
    assert (first[BatchKeys.PROPRIO][0] == first[BatchKeys.PROPRIO][1]).all()  # history repeated before start
    assert not first[BatchKeys.ACTION_IS_PAD].any()
    assert last[BatchKeys.ACTION_IS_PAD].sum() == 16 - 2  # only steps 28 and 29 exist
    assert (last[BatchKeys.ACTION][-1] == last[BatchKeys.ACTION][1]).all()


@pytest.mark.parametrize(("n_obs", "horizon"), [(2, 16), (1, 8), (3, 16)])
def test_tensor_windows_equal_the_per_item_dataset(bags: list[Path], n_obs: int, horizon: int) -> None:
    import torch
    from torch.utils.data import default_collate

    episodes = [read_episode(bag) for bag in bags]
    episodes[2].valid[5:9, 1] = False
    rng = np.random.default_rng(0)
    for episode in episodes:  # the +sim encoder's similarities and an RGB baseline's frames too
        episode.similarities = rng.random((len(episode), 4, 4)).astype(np.float32)
        episode.images = rng.integers(0, 255, (len(episode), 6, 8, 3), np.uint8)
    reference = WindowDataset(episodes, n_obs, horizon, use_images=True)
    windows = TensorWindows(episodes, n_obs, horizon, use_images=True)
    assert len(windows) == len(reference) == 90
    indices = torch.tensor([0, 1, 29, 30, 45, 59, 60, 89, 89])
    expected = default_collate([reference[int(i)] for i in indices])
    got = windows.batch(indices)
    assert set(got) == set(expected)
    for key in got:
        assert got[key].dtype == expected[key].dtype, key
        torch.testing.assert_close(got[key], expected[key], msg=key)


def test_bad_bags_are_skipped_by_name(tmp_path: Path, bags: list[Path], caplog) -> None:
    good = shutil.copytree(bags[0], tmp_path / "good")
    corrupt = shutil.copytree(bags[1], tmp_path / "corrupt")
    mcap = next(corrupt.glob("*.mcap"))
    mcap.write_bytes(mcap.read_bytes()[: mcap.stat().st_size // 3])  # truncated mid-file
    short = write_episodes(tmp_path / "short_dir", count=1, steps=8, seed=5)[0]
    shutil.move(short, tmp_path / "short")
    no_keypoints = write_episodes(tmp_path / "nk_dir", count=1, seed=6, with_keypoints=False)[0]
    shutil.move(no_keypoints, tmp_path / "no_keypoints")
    shutil.copytree(bags[2], tmp_path / ".partial" / "episode_0009")  # an unfinished recording: ignored
    empty = write_episodes(tmp_path / "empty_dir", count=1, steps=0, seed=7)[0]
    shutil.move(empty, tmp_path / "empty")
    other = write_episodes(tmp_path / "other_dir", count=1, seed=8, task="pour_bottle")[0]
    shutil.move(other, tmp_path / "other_task")
    with caplog.at_level(logging.WARNING):
        episodes = load_episodes([tmp_path], min_length=16, task="synthetic")
    assert [Path(e.name).name for e in episodes] == ["good"]
    text = caplog.text
    assert f"{tmp_path / 'empty'}: no messages on /kil/action_chunk" in text
    assert f"{tmp_path / 'other_task'}: recorded for task 'pour_bottle', not 'synthetic'" in text
    assert f"{corrupt}: unreadable bag" in text
    assert f"{tmp_path / 'short'}: 8 steps, shorter than the horizon 16" in text
    assert f"{tmp_path / 'no_keypoints'}: required topic(s) /kil/keypoints missing" in text
    assert good.exists()


def test_missing_topic_and_nothing_usable(tmp_path: Path, bags: list[Path]) -> None:
    with pytest.raises(EpisodeError, match=r"required topic\(s\) /kil/keypoints/oracle missing"):
        read_episode(bags[0], TopicConfig(keypoints="/kil/keypoints/oracle"))
    with pytest.raises(EpisodeError, match="no usable episodes"):
        load_episodes([bags[0]], min_length=100)
    with pytest.raises(EpisodeError, match="no bags found"):
        load_episodes([tmp_path], min_length=1)


def test_sqlite3_bags_read_like_mcap(tmp_path: Path, bags: list[Path]) -> None:
    (sqlite,) = write_episodes(tmp_path, count=1, seed=0, storage="sqlite3")
    assert list(sqlite.glob("*.db3"))
    a, b = read_episode(sqlite), read_episode(bags[0])
    np.testing.assert_array_equal(a.actions, b.actions)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)


def test_extraction_settings_are_validated_with_the_field_named() -> None:
    from kil_policy.keypoint_cache import ExtractionConfig

    with pytest.raises(ValueError, match="keypoint_extraction: method must be one of image, instance, track"):
        ExtractionConfig(spec="spec.yaml", method="flow")
    with pytest.raises(ValueError, match="keypoint_extraction: tracker must be one of lk, cotracker3"):
        ExtractionConfig(spec="spec.yaml", method="track", tracker="sift")
