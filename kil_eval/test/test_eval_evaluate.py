"""The evaluation protocol with inputs in the loop: every method meets the same configurations,
results and episodes land on disk, an input of another keypoint layout is refused before any
episode, and skipping unused observations changes nothing but the time spent."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from kil_eval.controllers import Film, PolicyController
from kil_eval.evaluate import EPISODES, SUMMARY, Evaluation, EvaluationConfig, InputMismatchError, main
from kil_eval.failures import ARM_CONTACT_LIMIT_N
from kil_eval.observations import PerceivedKeypoints
from kil_eval.specs import make_spec, with_camera
from kil_perception.pipeline import ExtractorConfig
from kil_perception.spec import load_spec
from kil_policy.checkpoint import save_policy
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.policy import KeypointDiffusionPolicy
from kil_policy.runner import PolicyRunner
from kil_sim.camera import CameraConfig
from kil_sim.rollout import RolloutConfig, run_episode
from kil_sim.tasks import evaluation_configurations

CAMERA = CameraConfig(width=160, height=120)


@pytest.fixture(scope="module")
def spec(tmp_path_factory) -> Path:
    return make_spec("place_mug", tmp_path_factory.mktemp("spec"), CAMERA)


def _checkpoint(directory: Path, layout) -> Path:
    torch.manual_seed(0)
    policy = KeypointDiffusionPolicy(
        PolicyConfig(
            encoder=EncoderConfig(num_keypoints=len(layout), d_model=16, num_layers=1, num_heads=2, mlp_dim=32),
            head=HeadConfig(down_dims=(16, 32), n_groups=4, step_embed_dim=16, inference_steps=3),
        )
    )
    home = torch.tensor([0.3, 0.0, 0.25, 1, 0, 0, 0, -1, 0, 1.0])
    k = len(layout)
    policy.fit_normalizers(home + 0.05 * torch.rand(32, 10), torch.rand(32, 7), torch.rand(32, k, 3),
                           torch.ones(32, k, dtype=torch.bool))  # fmt: skip
    return save_policy(directory, policy, layout=tuple(layout), layout_source="test")


@pytest.fixture(scope="module")
def checkpoint(spec, tmp_path_factory) -> Path:
    return _checkpoint(tmp_path_factory.mktemp("ckpt") / "checkpoint", load_spec(spec).layout())


def _config(**overrides) -> EvaluationConfig:
    base = dict(
        tasks=("place_mug",), settings=("in_distribution", "scene_variation"), episodes=2, width=160, height=120,
        max_duration_s=1.5,
    )  # fmt: skip
    return EvaluationConfig(**(base | overrides))


def test_every_method_meets_the_same_configurations(spec, checkpoint, tmp_path: Path) -> None:
    expert = Evaluation(_config(name="expert"))
    policy = Evaluation(_config(name="KIL-IM", checkpoint=str(checkpoint), keypoints="perception", spec=str(spec)))
    expert.run(tmp_path / "expert", progress=False)
    policy.run(tmp_path / "policy", progress=False)
    seen = {}
    for name in ("expert", "policy"):
        lines = [json.loads(line) for line in (tmp_path / name / EPISODES).read_text().splitlines()]
        seen[name] = [(line["setting"], line["index"], line["seed"]) for line in lines]
    expected = [(s, c.index, c.seed) for s in ("in_distribution", "scene_variation")
                for c in evaluation_configurations("place_mug", s, 2)]  # fmt: skip
    assert seen["expert"] == seen["policy"] == expected


def test_an_arms_layout_moves_every_configuration_where_that_arm_reaches_it(monkeypatch) -> None:
    import kil_eval.evaluate as evaluate
    from kil_sim.arms import arm

    met = []

    def run_episode_seen(episode, *args, **kwargs):
        met.append(episode)
        return run_episode(episode, *args, **kwargs)

    monkeypatch.setattr(evaluate, "run_episode", run_episode_seen)
    Evaluation(_config(settings=("in_distribution",), layout="lite6", max_duration_s=0.3)).run(progress=False)
    offset = arm("lite6").scene_offset("place_mug")
    assert offset != (0.0, 0.0)
    simulated = evaluation_configurations("place_mug", "in_distribution", 2)
    assert [(e.index, e.seed) for e in met] == [(e.index, e.seed) for e in simulated]
    for seen, laid_out in zip(met, simulated, strict=True):
        for moved, placed in zip(seen.objects, laid_out.objects, strict=True):
            assert moved.position == pytest.approx((placed.position[0] + offset[0], placed.position[1] + offset[1]))
    with pytest.raises(ValueError, match="layout must be one of simulated, lite6, ur5e"):
        _config(layout="panda")


def test_results_episodes_and_gifs_are_written(spec, checkpoint, tmp_path: Path) -> None:
    config = _config(name="KIL-IM", checkpoint=str(checkpoint), keypoints="perception", spec=str(spec), gif=True)
    rows = Evaluation(config).run(tmp_path, progress=False)
    summary = json.loads((tmp_path / SUMMARY).read_text())
    assert [r["setting"] for r in summary["results"]] == ["in_distribution", "scene_variation"]
    assert summary["results"][0] == {**rows[0].__dict__}
    assert rows[0].episodes == 2 and rows[0].keypoint_frames > 0 and 0 <= rows[0].keypoint_pck10 <= 1
    assert rows[0].keypoint_median_px < 20  # perception found the objects (random policy, objects at rest)
    lines = [json.loads(line) for line in (tmp_path / EPISODES).read_text().splitlines()]
    assert len(lines) == 4 and all(line["perceive_ms"] > 0 and line["ended"] == "time limit" for line in lines)
    assert all(line["peak_contact_n"] >= 0 and isinstance(line["peak_contact_with"], str) for line in lines)
    for row in summary["results"]:  # the setting's counts are its episodes' contacts by the arms' rule
        mine = [line for line in lines if line["setting"] == row["setting"]]
        over = [line for line in mine if line["contact_over_limit_phase"]]
        assert row["forceful_episodes"] == len(over) and row["contact_limit_n"] == ARM_CONTACT_LIMIT_N
        assert row["forceful_successes"] == sum(line["success"] for line in over)
        assert sum(row["forceful_phases"].values()) == len(over)
        assert all((line["contact_over_limit_s"] is None) == (not line["contact_over_limit_phase"]) for line in mine)
        assert all(line["peak_contact_n"] > ARM_CONTACT_LIMIT_N for line in over)
    assert summary["gifs"] == ["rollout_place_mug_in_distribution.gif", "rollout_place_mug_scene_variation.gif"]
    gif = Image.open(tmp_path / summary["gifs"][0])
    assert gif.n_frames >= 5 and gif.width == 160


def test_an_input_of_another_layout_is_refused_before_any_episode(spec, tmp_path: Path, capsys) -> None:
    other = _checkpoint(tmp_path / "other", [("mug", 0, "rim"), ("mug", 0, "handle"), ("mug", 0, "opening")])
    config = _config(checkpoint=str(other), keypoints="perception", spec=str(spec))
    with pytest.raises(InputMismatchError, match=r"checkpoint .*other.* has 3 keypoints \(mug\[0\]: rim, handle"):
        Evaluation(config).run(tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    args = ["--checkpoint", str(other), "--keypoints", "perception", "--spec", str(spec), "--width", "160"]
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--height", "120", "--episodes", "1"])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err
    assert "keypoint layout differs" in error and f"spec {spec}" in error and "tray[0]: centre" in error
    with pytest.raises(SystemExit):  # a spec annotated at another camera size
        main([*args[:6], "--width", "320", "--height", "240", "--episodes", "1"])
    assert "is 160x120, the camera renders 320x240" in capsys.readouterr().err


def test_skipped_observations_give_the_same_chunks(spec, checkpoint) -> None:
    """Observations only feed the ticks before a prediction; computing every one (filming) or only
    those changes nothing in the chunks."""
    from kil_policy.checkpoint import load_policy

    policy = load_policy(checkpoint)
    episode = with_camera(evaluation_configurations("place_mug", "in_distribution", 1)[0], CAMERA)
    runs = {}
    for film in (None, Film()):
        source = PerceivedKeypoints(str(spec), ExtractorConfig())
        controller = PolicyController(PolicyRunner(policy, seed=3), source, film)
        sink = _Chunks()
        run_episode(episode, controller, RolloutConfig(camera_hz=0, max_duration_s=2.0), sink=sink)
        runs["film" if film else "lazy"] = (sink.chunks, len(source.seconds))
    lazy, filmed = runs["lazy"], runs["film"]
    assert len(lazy[0]) == len(filmed[0]) == 3  # 20 ticks: chunks at 0, 8, 16
    for a, b in zip(lazy[0], filmed[0], strict=True):
        np.testing.assert_allclose(a.positions, b.positions)
    assert lazy[1] < filmed[1] / 2  # perception ran on the needed ticks only


class _Chunks:
    """An episode sink keeping the action chunks."""

    def __init__(self) -> None:
        self.chunks = []

    def on_camera(self, frame, stamp_ns: int) -> None:
        pass

    def on_state(self, state) -> None:
        pass

    def on_action(self, chunk) -> None:
        self.chunks.append(chunk)


def test_keypoint_error_per_object_equals_a_hand_computation(spec, checkpoint, tmp_path: Path) -> None:
    """The episode line's and the summary's per-object errors are the medians of that object's
    keypoints over the episode's perceived frames; failure classes are counted per setting."""
    config = _config(
        name="KIL-IM", checkpoint=str(checkpoint), keypoints="perception", spec=str(spec), settings=("in_distribution",)
    )
    evaluation = Evaluation(replace(config, episodes=1))
    rows = evaluation.run(tmp_path, progress=False)
    errors = np.stack(evaluation.source.errors)  # (F, K) of the one episode
    categories = evaluation.source.categories
    line = json.loads((tmp_path / EPISODES).read_text().splitlines()[0])
    for category, role in (("mug", "manipulated"), ("tray", "fixture")):
        columns = np.array([c == category for c in categories])
        values = errors[:, columns]
        expected = float(np.median(values[np.isfinite(values)]))
        assert line["keypoint_objects"][category]["median_px"] == pytest.approx(expected)
        assert line["keypoint_objects"][category]["role"] == role
        assert rows[0].keypoint_objects[category]["median_px"] == pytest.approx(expected)
    k = categories.index("tray")
    name = f"tray/{evaluation.source.names[k]}"
    column = errors[:, k][np.isfinite(errors[:, k])]
    assert rows[0].keypoint_names[name]["median_px"] == pytest.approx(float(np.median(column)))
    assert line["failure"] in ("time-out without a grasp", "imprecise grasp", "keypoints lost or jumped")
    assert rows[0].failures == {line["failure"]: 1}


def test_the_progress_bar_counts_finished_episodes(spec, checkpoint, monkeypatch) -> None:
    """Whenever the bar shows successes, its count is the number of episodes they were counted over."""
    import kil_eval.evaluate as evaluate_module

    shown = []

    class Recording(evaluate_module.tqdm):
        def set_postfix(self, *args, **kwargs):
            super().set_postfix(*args, **kwargs)
            shown.append((self.n, kwargs["success"]))

        def update(self, n=1):
            super().update(n)
            shown.append((self.n, self.postfix))

    monkeypatch.setattr(evaluate_module, "tqdm", Recording)
    config = _config(name="expert", settings=("in_distribution",), episodes=2, max_duration_s=0.5)
    Evaluation(config).run(progress=True)
    after_update = [(n, text) for n, text in shown if isinstance(text, str) and text.startswith("success=")]
    assert [n for n, _ in after_update] == [1, 2]
    assert [text.split("/")[-1] for _, text in after_update] == ["1", "2"]


def test_a_checkpoint_of_another_task_or_a_spec_of_another_scene_is_refused(spec, tmp_path: Path, capsys) -> None:
    """The checkpoint says its task: evaluation defaults to it and refuses another; a spec whose
    categories are not the task's objects, and oracle keypoints of names the simulator does not
    know, are refused with one line naming both sides."""
    layout = load_spec(spec).layout()
    trained = _checkpoint(tmp_path / "pour", layout)
    config_file = trained / "config.yaml"
    config_file.write_text(config_file.read_text() + "train:\n  task: pour_bottle\n")
    with pytest.raises(InputMismatchError, match="was trained on pour_bottle; refusing to evaluate it on place_mug"):
        Evaluation(_config(checkpoint=str(trained)))
    assert Evaluation(_config(checkpoint=str(trained), tasks=())).config.tasks == ("pour_bottle",)
    assert Evaluation(_config(tasks=())).config.tasks == ("place_mug",)  # the expert's default
    mug = _checkpoint(tmp_path / "mug", layout)
    config = _config(checkpoint=str(mug), keypoints="perception", spec=str(spec), tasks=("pour_bottle",))
    with pytest.raises(
        InputMismatchError, match=r"mug, tray is not an object of the pour_bottle scene \(bottle, cup\)"
    ):
        Evaluation(config).run(tmp_path / "out", progress=False)
    odd = tmp_path / "odd"
    odd.mkdir()
    text = Path(spec).read_text().replace("body_low:", "wall:")
    (odd / "spec.yaml").write_text(text)
    for image in Path(spec).parent.glob("*.png"):
        (odd / image.name).write_bytes(image.read_bytes())
    wall = _checkpoint(tmp_path / "wall", load_spec(odd / "spec.yaml").layout())
    with pytest.raises(
        InputMismatchError, match=r"mug/wall not known to the simulator for place_mug \(known: mug: rim"
    ):
        Evaluation(_config(checkpoint=str(wall), keypoints="oracle", spec=str(odd / "spec.yaml"))).run(progress=False)
    with pytest.raises(SystemExit) as exit_info:
        main(["--checkpoint", str(trained), "--tasks", "place_mug", "--episodes", "1"])
    assert exit_info.value.code == 2 and "was trained on pour_bottle" in capsys.readouterr().err
