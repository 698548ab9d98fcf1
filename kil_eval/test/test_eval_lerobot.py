"""LeRobotDataset v3.0 both ways on real simulator demonstrations: kil_policy.export_lerobot writes
the v3 layout (checked file by file with pyarrow and PyAV, independently of the exporter's code),
kil_teleop.import_lerobot writes bags back that hold the same actions, states, keypoints and
frames and that training reads; broken inputs are refused with the file named."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pyarrow.parquet as pq
import pytest

from kil_eval.record_demos import record
from kil_interfaces import lerobot_format as fmt
from kil_policy.data import TopicConfig, read_episode
from kil_policy.export_lerobot import ExportConfig, export
from kil_teleop.import_lerobot import import_dataset

ORACLE = TopicConfig(keypoints="/kil/keypoints/oracle")


@pytest.fixture(scope="module")
def demos(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lerobot") / "demos"
    record("place_mug", 2, out, camera_hz=10.0, width=64, height=48, progress=False)
    return out


@pytest.fixture(scope="module")
def dataset(demos: Path) -> Path:
    out = demos.parent / "dataset"
    bags = sorted(p for p in demos.iterdir() if p.name.startswith("episode_"))
    summary = export(bags, out, ExportConfig(topics=ORACLE))
    assert summary.episodes == 2 and not summary.skipped
    return out


def test_the_export_is_a_v3_dataset(demos: Path, dataset: Path) -> None:
    info = json.loads((dataset / "meta/info.json").read_text())
    assert info["codebase_version"] == "v3.0" and info["fps"] == 10 and info["total_episodes"] == 2
    features = info["features"]
    episodes = [read_episode(demos / f"episode_000{i}", ORACLE, need_images=True) for i in range(2)]
    k = episodes[0].keypoints.shape[1]
    assert features["observation.keypoints"]["shape"] == [3 * k]
    assert features["observation.keypoints_valid"]["names"][0] == "mug[0].rim"  # the oracle layout
    assert features["observation.images.color"]["shape"] == [48, 64, 3]
    assert info["total_frames"] == sum(len(e) for e in episodes)

    rows = pq.read_table(dataset / "meta/episodes/chunk-000/file-000.parquet").to_pylist()
    assert [r["episode_index"] for r in rows] == [0, 1] and rows[0]["tasks"] == ["place_mug"]
    assert rows[0]["dataset_from_index"] == 0 and rows[1]["dataset_from_index"] == rows[0]["dataset_to_index"]
    index = 0
    for row, episode in zip(rows, episodes, strict=True):
        assert row["length"] == len(episode)
        data_file = info["data_path"].format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"])
        table = pq.read_table(dataset / data_file)
        assert table.num_rows == len(episode)
        frame_index = table.column("frame_index").to_numpy()
        assert np.array_equal(table.column("index").to_numpy(), index + frame_index)
        assert np.allclose(table.column("timestamp").to_numpy(), frame_index / 10, atol=1e-4)  # LeRobot's check
        actions = np.array(table.column("action").to_pylist())
        assert np.allclose(actions, episode.actions, atol=1e-6)
        state = np.array(table.column("observation.state").to_pylist())
        assert np.allclose(state, episode.proprio, atol=1e-6)
        assert table.schema.field("action").type.list_size == 10  # fixed-size: LeRobot's Sequence(length=10)
        video = dataset / info["video_path"].format(
            video_key="observation.images.color",
            chunk_index=row["videos/observation.images.color/chunk_index"],
            file_index=row["videos/observation.images.color/file_index"],
        )
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name in ("libdav1d", "libaom-av1", "av1")
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
        assert len(frames) == len(episode)
        assert np.abs(np.stack(frames).astype(int) - episode.images).mean() < 8  # lossy AV1, same pictures
        index += len(episode)

    tasks = pq.read_table(dataset / "meta/tasks.parquet")
    assert tasks.schema.pandas_metadata["index_columns"] == ["__index_level_0__"]  # pandas restores the index
    assert tasks.column("__index_level_0__").to_pylist() == ["place_mug"]
    stats = json.loads((dataset / "meta/stats.json").read_text())
    assert len(stats["action"]["mean"]) == 10 and np.array(stats["observation.images.color"]["mean"]).shape == (3, 1, 1)


def test_import_gives_back_the_demonstrations_and_they_train(demos: Path, dataset: Path, tmp_path: Path) -> None:
    from kil_policy.train import parse_config, train

    bags = import_dataset(dataset, tmp_path / "back")
    assert [b.name for b in bags] == ["episode_0000", "episode_0001"]
    for bag in bags:
        original = read_episode(demos / bag.name, ORACLE, need_images=True)
        back = read_episode(bag, need_images=True)
        assert len(back) == len(original) and back.layout == original.layout
        assert np.allclose(back.actions, original.actions, atol=1e-5)
        assert np.allclose(back.proprio, original.proprio, atol=1e-5)
        assert np.array_equal(back.valid, original.valid)
        assert np.allclose(back.keypoints, np.where(original.valid[..., None], original.keypoints, 0.0), atol=1e-6)
        assert np.abs(back.images.astype(int) - original.images).mean() < 8
    small = ["policy.head.down_dims=[16,32,64]", "policy.encoder.d_model=16", "policy.encoder.num_layers=1",
             "policy.encoder.num_heads=2", "policy.encoder.mlp_dim=32", "policy.head.inference_steps=4"]  # fmt: skip
    config = parse_config(None, [f"data=[{tmp_path / 'back'}]", f"out={tmp_path / 'run'}", "steps=5", "batch_size=8",
                                 *small])  # fmt: skip
    result = train(config)
    assert (result.checkpoint / "config.yaml").is_file() and len(result.rows) >= 1
    assert np.isfinite([loss for _, loss, _ in result.rows]).all()


def test_broken_inputs_are_refused_with_the_file_named(dataset: Path, tmp_path: Path) -> None:
    with pytest.raises(fmt.LeRobotFormatError, match=r"meta/info\.json: not found"):
        import_dataset(tmp_path / "nothing", tmp_path / "out")
    old = tmp_path / "old"
    (old / "meta").mkdir(parents=True)
    (old / "meta/info.json").write_text(json.dumps({"codebase_version": "v2.1", "fps": 10, "features": {}}))
    with pytest.raises(fmt.LeRobotFormatError, match=r"codebase_version 'v2\.1'"):
        import_dataset(old, tmp_path / "out")
    with pytest.raises(fmt.LeRobotFormatError, match=r"no episodes \[7\]"):
        from kil_teleop.import_lerobot import ImportConfig

        import_dataset(dataset, tmp_path / "out", ImportConfig(episodes=(7,)))
    with pytest.raises(FileExistsError, match="exists and is not empty"):
        export([], dataset, ExportConfig())
    done = subprocess.run(
        [sys.executable, "-m", "kil_teleop.import_lerobot", str(tmp_path / "nothing"), str(tmp_path / "out")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1 and "meta/info.json: not found" in done.stderr
