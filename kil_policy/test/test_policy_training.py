"""Training from real rosbag2 bags: the loss falls, the policy learns the task better than the
mean action, checkpoints reload exactly, mismatches are explained, and DDP ranks agree."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from policy_synthetic import write_episodes
from policy_training_job import PREDICTION_SEED, held_out_batch
from safetensors.torch import load_file
from torch.utils.data import default_collate

from kil_interfaces.background_jobs import BackgroundJob
from kil_policy.checkpoint import CheckpointError, load_policy
from kil_policy.data import WindowDataset, load_episodes
from kil_policy.train import parse_config, train

# About 140 s alone with one thread (a background job), beside the rest of the suite; the loss falls ~35x
# (measured while choosing these).
LEARNING = ["steps=1000", "batch_size=64", "log_every=50", "checkpoint_every=500", "lr=2e-3", "warmup_steps=50"]
SMALL = [
    "policy.head.down_dims=[32,64,128]",
    "policy.encoder.d_model=32",
    "policy.encoder.num_layers=2",
    "policy.encoder.mlp_dim=64",
    "policy.encoder.num_heads=2",
    "policy.head.inference_steps=8",
]
JOB_SCRIPT = Path(__file__).with_name("policy_training_job.py")


def _learn(job: BackgroundJob) -> Path:
    root = job.workdir / "learning"
    done = job.run([sys.executable, str(JOB_SCRIPT), str(root), *LEARNING, *SMALL], timeout_s=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    return root


LEARNING_RUN = BackgroundJob("policy_learning", _learn, __name__, cost_s=140)


@pytest.fixture(scope="module")
def trained() -> Path:
    return LEARNING_RUN.result()


@pytest.mark.background_job
def test_loss_falls_five_fold_and_artifacts_exist(trained: Path) -> None:
    root = trained
    rows = list(csv.DictReader(open(root / "run" / "loss.csv")))
    first, last = float(rows[0]["loss"]), float(rows[-1]["loss"])
    assert first / last >= 5.0, (first, last)
    for name in ("checkpoint_last", "checkpoint_0000500", "checkpoint_0001000", "loss.png"):
        assert (root / "run" / name).exists(), name
    assert (root / "run" / "checkpoint_last" / "train_state.pt").exists()


@pytest.mark.background_job
def test_policy_beats_the_mean_action(trained: Path) -> None:
    root = trained
    episodes = load_episodes([root / "held_out"], min_length=16)
    dataset = WindowDataset(episodes, 2, 16)
    batch = default_collate([dataset[i] for i in range(0, len(dataset), 3)])
    policy = load_policy(root / "run" / "checkpoint_last")
    predicted = policy.predict_action_chunk(batch, generator=torch.Generator().manual_seed(0))
    target = batch["action"]
    executed = slice(1, 9)  # the steps a rollout would execute
    policy_error = ((predicted[:, executed, :3] - target[:, executed, :3]) ** 2).mean()
    train_actions = np.concatenate([e.actions for e in load_episodes([root / "train"], min_length=16)])
    mean_action = torch.from_numpy(train_actions.mean(axis=0)).float()
    mean_error = ((mean_action[:3] - target[:, executed, :3]) ** 2).mean()
    assert policy_error < 0.5 * mean_error, (policy_error.item(), mean_error.item())


@pytest.mark.background_job
def test_checkpoint_reload_gives_identical_predictions(trained: Path) -> None:
    """The checkpoint predicts exactly what the trained policy predicted in memory (saved by the job)."""
    root = trained
    batch = held_out_batch(root)
    in_memory = torch.load(root / "in_memory_prediction.pt")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the job predicted: float sums depend on how the work is split
    try:
        reloaded = load_policy(root / "run" / "checkpoint_last").predict_action_chunk(
            batch, generator=torch.Generator().manual_seed(PREDICTION_SEED)
        )
    finally:
        torch.set_num_threads(threads)
    torch.testing.assert_close(reloaded, in_memory, rtol=0, atol=0)


@pytest.mark.background_job
def test_mismatched_checkpoint_is_explained(trained: Path, tmp_path: Path) -> None:
    root = trained
    with pytest.raises(CheckpointError, match=r"encoder.num_keypoints: expected 6, checkpoint has 4"):
        load_policy(root / "run" / "checkpoint_last", expect={"encoder": {"num_keypoints": 6}})
    with pytest.raises(CheckpointError, match=r"model\.safetensors missing"):
        load_policy(tmp_path)


def test_training_refuses_zero_usable_episodes(tmp_path: Path) -> None:
    write_episodes(tmp_path / "short", count=2, steps=5)
    config = parse_config(None, [f"data=[{tmp_path / 'short'}]", f"out={tmp_path / 'run'}", "steps=5", *SMALL])
    with pytest.raises(ValueError, match=r"no usable episodes.*shorter than the horizon 16"):
        train(config)


@pytest.mark.background_job
def test_ddp_two_cpu_ranks_end_with_identical_weights(trained: Path, tmp_path: Path) -> None:
    root = trained
    worker = Path(__file__).with_name("policy_ddp_worker.py")
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", OMP_NUM_THREADS="1")
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={29500 + os.getpid() % 1000}",
        str(worker),
        str(tmp_path),
        f"data=[{root / 'train'}]",
        f"out={tmp_path / 'run'}",
        "steps=6",
        "batch_size=8",
        "device=cpu",
        "log_every=2",
        *SMALL,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = load_file(tmp_path / "rank0.safetensors"), load_file(tmp_path / "rank1.safetensors")
    assert rank0.keys() == rank1.keys()
    for key in rank0:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
    # Training did change the weights (both ranks moved the same way).
    initial = load_file(root / "run" / "checkpoint_last" / "model.safetensors")
    assert any(not torch.equal(rank0[k], initial[k]) for k in rank0 if rank0[k].is_floating_point())


@pytest.mark.background_job
def test_checkpoints_record_the_layout_and_switch_atomically(trained: Path) -> None:
    from kil_interfaces.keypoint_layout import read_layout

    root = trained
    run = root / "run"
    last = run / "checkpoint_last"
    assert last.is_symlink() and last.resolve() == (run / "checkpoint_0001000").resolve()
    episodes = load_episodes([root / "train"], min_length=16)
    assert read_layout(last) == episodes[0].layout and len(episodes[0].layout) == 4
    assert "topic /kil/keypoints" in (last / "keypoint_layout.yaml").read_text()
    # Every checkpoint left behind is complete (no staging directory, no dangling link).
    assert not list(run.glob(".*partial")) and not list(run.glob(".checkpoint_last.*"))
    assert sorted(p.name for p in run.glob("checkpoint_0*")) == ["checkpoint_0000500", "checkpoint_0001000"]


def test_resume_continues_from_the_last_checkpoint(tmp_path: Path) -> None:
    write_episodes(tmp_path / "data", count=4, seed=1)
    base = [f"data=[{tmp_path / 'data'}]", f"out={tmp_path / 'run'}", "batch_size=8", "log_every=2", *SMALL]
    first = train(parse_config(None, [*base, "steps=4", "checkpoint_every=100"]))
    assert [r[0] for r in first.rows] == [2, 4]
    state = torch.load(tmp_path / "run" / "checkpoint_last" / "train_state.pt", weights_only=False)
    assert state["step"] == 4
    resumed = train(parse_config(None, [*base, "steps=8", "checkpoint_every=100", "resume=true"]))
    assert [r[0] for r in resumed.rows] == [2, 4, 6, 8]  # the first run's log kept, four more steps
    assert resumed.rows[:2] == first.rows
    assert (tmp_path / "run" / "checkpoint_last").resolve().name == "checkpoint_0000008"
    assert not (tmp_path / "run" / "checkpoint_0000004").exists()  # the superseded, unkept one is gone
    weights_4 = first.policy.state_dict()
    weights_8 = load_policy(tmp_path / "run" / "checkpoint_last").state_dict()
    assert any(not torch.equal(weights_4[k], weights_8[k]) for k in weights_8 if weights_8[k].is_floating_point())


def _step_parts(tmp_path: Path, device: str = "cpu"):
    """A small policy, its optimiser and the windows of four synthetic episodes, on ``device``."""
    from kil_policy.augmentation import AugmentationConfig
    from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
    from kil_policy.data import TensorWindows
    from kil_policy.policy import KeypointDiffusionPolicy

    episodes = load_episodes([d.parent for d in write_episodes(tmp_path, count=4, seed=3)][:1], min_length=16)
    torch.manual_seed(0)
    config = PolicyConfig(
        encoder=EncoderConfig(num_keypoints=4, d_model=32, num_layers=1, num_heads=2, mlp_dim=64),
        head=HeadConfig(down_dims=(32, 64, 128)),
    )
    policy = KeypointDiffusionPolicy(config)
    windows = TensorWindows(episodes, config.n_obs_steps, config.horizon, device=device)
    policy.fit_normalizers(
        *(torch.rand(32, n) for n in (10, 7)), torch.rand(32, 4, 3), torch.ones(32, 4, dtype=torch.bool)
    )
    return policy.to(device).train(), windows, AugmentationConfig()


def test_the_loss_is_read_every_n_steps_not_every_step(tmp_path: Path) -> None:
    """TrainStep keeps the loss on the device: the mean it reports every N steps equals the mean of
    the per-step losses (recomputed here from the same batches), and nothing else is read."""
    from kil_policy.augmentation import augment
    from kil_policy.train_step import TrainStep

    policy, windows, augmentation = _step_parts(tmp_path)
    optimizer = torch.optim.SGD(policy.parameters(), lr=0.0)  # weights fixed: each loss is reproducible
    step = TrainStep(policy, optimizer, windows, 8, augmentation, torch.Generator().manual_seed(5))
    for s in range(4):
        torch.manual_seed(100 + s)  # (the loss's own noise uses the global generator: the same below)
        step()
    assert step.count == 4
    got = step.take_mean_loss()
    generator = torch.Generator().manual_seed(5)
    expected = []
    for s in range(4):
        torch.manual_seed(100 + s)
        indices = torch.randint(len(windows), (8,), generator=generator)
        with torch.no_grad():
            expected.append(float(policy(augment(windows.batch(indices), augmentation, generator))))
    assert step.count == 0 and abs(got - float(np.mean(expected))) < 1e-5, (got, expected)
    assert step.take_mean_loss() == 0.0  # read and reset
    with pytest.raises(ValueError, match="a CUDA graph training step needs CUDA; training runs on cpu"):
        TrainStep(policy, optimizer, windows, 8, augmentation, torch.Generator(), graph=True)


def test_the_device_resident_batches_are_the_per_item_pipelines_for_the_same_seed(tmp_path: Path) -> None:
    """What TrainStep trains on (indices drawn, windows gathered and augmented on the data's
    device) equals the per-item pipeline for the same seed: the same indices from the same
    generator, ``WindowDataset`` items collated, then the same augmentation draws."""
    from kil_policy.augmentation import augment
    from kil_policy.train_step import TrainStep

    policy, windows, augmentation = _step_parts(tmp_path)
    episodes = load_episodes([d.parent for d in write_episodes(tmp_path / "again", count=4, seed=3)][:1], min_length=16)
    per_item = WindowDataset(episodes, policy.config.n_obs_steps, policy.config.horizon)
    seen = []

    class Recording(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.policy = policy

        def forward(self, batch):
            seen.append({k: v.clone() for k, v in batch.items()})
            return self.policy(batch)

    model = Recording()
    step = TrainStep(model, torch.optim.SGD(model.parameters(), lr=0.0), windows, 16, augmentation,
                     torch.Generator().manual_seed(11))  # fmt: skip
    for _ in range(3):
        step()
    generator = torch.Generator().manual_seed(11)
    for batch in seen:
        indices = torch.randint(len(per_item), (16,), generator=generator)
        expected = augment(default_collate([per_item[int(i)] for i in indices]), augmentation, generator)
        assert set(batch) == set(expected)
        for key in batch:
            torch.testing.assert_close(batch[key], expected[key], msg=key)
    assert not torch.equal(seen[0]["keypoints"], seen[1]["keypoints"])  # a new batch each step


def test_help_lists_every_config_key_with_its_default_and_doc(capsys) -> None:
    from dataclasses import fields, is_dataclass

    from kil_policy.config import describe_fields
    from kil_policy.train import TrainConfig, main

    described = describe_fields(TrainConfig)
    keys = {key for key, _, _ in described}

    def leaves(cls, prefix=""):
        for f in fields(cls):
            default = getattr(cls(), f.name)
            yield from leaves(type(default), f"{prefix}{f.name}.") if is_dataclass(default) else [prefix + f.name]

    assert keys == set(leaves(TrainConfig))  # every leaf key, nested ones dotted
    assert all(doc for _, _, doc in described), [k for k, _, d in described if not d]
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert "  policy.encoder.d_model=128\n      token width (ours: 128)." in text
    assert "  keypoint_extraction.min_score=0.0\n" in text and "  policy.head.down_dims=[128, 256, 512]\n" in text


def test_print_config_resolves_the_keypoint_count_from_the_spec(tmp_path, capsys) -> None:
    import cv2
    import yaml

    from kil_policy.train import main

    cv2.imwrite(str(tmp_path / "r.png"), np.full((120, 160, 3), 128, np.uint8))
    spec = tmp_path / "spec.yaml"  # 4 + 3 = 7 keypoints
    spec.write_text(
        "categories:\n"
        "  - name: mug\n    references:\n      - image: r.png\n"
        "        keypoints: {a: [10, 10], b: [20, 20], c: [30, 30], d: [40, 40]}\n"
        "  - name: tray\n    references:\n      - image: r.png\n"
        "        keypoints: {e: [50, 50], f: [60, 60], g: [70, 70]}\n"
    )
    assert main(["--print-config", f"keypoint_extraction.spec={spec}"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["policy"]["encoder"]["num_keypoints"] == 7


def test_an_empty_override_is_the_empty_string_so_cached_keypoints_are_found(tmp_path) -> None:
    """``keypoint_extraction.model=`` must mean '' as in the dataclass default: as YAML's null it
    changed the extraction cache key, and training re-extracted every bag the pipeline had just
    extracted."""
    from dataclasses import asdict

    from kil_policy.keypoint_cache import ExtractionConfig

    config = parse_config(None, ["keypoint_extraction.model=", "keypoint_extraction.spec=s.yaml", "lr=1e-4"])
    assert config.keypoint_extraction.model == "" and config.lr == 1e-4
    assert asdict(config.keypoint_extraction) == asdict(ExtractionConfig(spec="s.yaml"))


@pytest.mark.background_job
def test_rot6d_proprioception_trains_reloads_and_runs(trained: Path, tmp_path: Path) -> None:
    """``policy.proprio_rotation=rot6d``: training reads 10-value proprioception from the bags, the
    checkpoint keeps the choice, and the runner builds the same vector from a RobotState; a
    checkpoint written before the choice existed loads with the Euler angles it was trained on."""
    import shutil

    import yaml

    from kil_interfaces.data import KeypointArrayData, RobotStateData
    from kil_interfaces.representation import proprio_from_pose
    from kil_policy.runner import PolicyRunner

    root = trained
    overrides = [f"data=[{root / 'train'}]", f"out={tmp_path / 'run'}", "steps=20", "batch_size=16", *SMALL]
    result = train(parse_config(None, [*overrides, "policy.proprio_rotation=rot6d"]))
    policy = load_policy(result.checkpoint)
    assert policy.config.proprio_rotation == "rot6d" and policy.proprio_normalizer.minimum.shape[-1] == 10
    episode = load_episodes([root / "train"], min_length=16, proprio_rotation="rot6d")[0]
    low, high = policy.proprio_normalizer.minimum, policy.proprio_normalizer.maximum
    assert torch.all(torch.from_numpy(episode.proprio).float() >= low - 1e-5)
    assert torch.all(torch.from_numpy(episode.proprio).float() <= high + 1e-5)

    state = RobotStateData(0, "link_base", [0.3, 0.0, 0.2], [0.0, 0.7071068, 0.0, 0.7071068], 0.5)  # side grasp
    names = tuple(f"k{i}" for i in range(policy.config.encoder.num_keypoints))
    k = len(names)
    points = np.random.default_rng(0).uniform(-0.3, 0.3, (k, 3))
    keypoints = KeypointArrayData(
        0, "link_base", "oracle", "", names, ("x",) * k, np.zeros(k), np.zeros((k, 2)), points, np.ones(k), [True] * k
    )
    runner = PolicyRunner(policy, inference="module")
    assert runner.tick(state, keypoints, now_ns=1_000_000_000) is not None
    expected = proprio_from_pose(np.array([state.position]), np.array([state.quaternion]), np.ones(1) * 0.5, "rot6d")
    np.testing.assert_allclose(runner.batch()["proprio"][0, -1].numpy(), expected[0], atol=1e-6)

    legacy = tmp_path / "legacy"
    shutil.copytree(root / "run" / "checkpoint_last", legacy)
    config = yaml.safe_load((legacy / "config.yaml").read_text())
    del config["policy"]["proprio_rotation"]
    (legacy / "config.yaml").write_text(yaml.safe_dump(config))
    assert load_policy(legacy).config.proprio_dim == 7
