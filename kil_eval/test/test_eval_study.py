"""The study's sizes: the paper's Table VIII with --paper, make demo's with --demo-size, for every
task and method of the grid (the stages themselves are the pipeline's, tested through the demo)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import kil_eval.study as study
from kil_eval import demo
from kil_eval.demo import full_config


@pytest.fixture()
def captured(monkeypatch):
    configs = []

    def methods(self):
        configs.append(self.config)
        return [], {}

    monkeypatch.setattr(study.Pipeline, "methods", methods)
    monkeypatch.setattr(study, "write_report", lambda results, out, notes, title: out / "report.md")
    return configs


def test_paper_sizes_are_table_viii(captured, tmp_path: Path) -> None:
    study.main(["--paper", "--tasks", "place_mug", "pour_bottle", "--methods", "KIL-IN", "RGB", "S2",
                "--out", str(tmp_path)])  # fmt: skip
    assert [c.task for c in captured] == ["place_mug", "pour_bottle"]
    kil, image = captured[0].kil, captured[0].rgb
    assert (kil.steps, kil.batch_size, kil.down_dims) == (250_000, 128, (128, 256, 512))
    assert (image.steps, image.batch_size, image.down_dims, image.image_size) == (100_000, 64, (256, 512, 1024),
                                                                                    (224, 224))  # fmt: skip


def test_demo_size_takes_the_demos_sizes_for_every_task(captured, tmp_path: Path) -> None:
    study.main(["--demo-size", "--tasks", "place_shoe", "pour_bottle", "--methods", "KIL-IN", "S2",
                "--device", "cpu", "--out", str(tmp_path)])  # fmt: skip
    for config in captured:
        demo = full_config(tmp_path, "cpu", config.task)
        assert config.kil == demo.kil and config.rgb == demo.rgb and config.methods == ("KIL-IN", "S2")
        assert (config.width, config.height, config.max_duration_s) == (demo.width, demo.height, demo.max_duration_s)
    assert [c.out for c in captured] == [tmp_path / "place_shoe", tmp_path / "pour_bottle"]


def test_demo_size_trains_kil_longer_with_the_6d_proprioception_on_pour_bottle_and_place_shoe(
    captured, tmp_path: Path, monkeypatch
) -> None:
    """pour_bottle's side grasp and place_shoe's heel grasp need the longer training measured for
    them (kil_eval.demo.KIL_TRAINING); the other tasks keep the demo's, and the report's notes say
    which each task got."""
    notes = []
    monkeypatch.setattr(
        study, "write_report", lambda results, out, text, title: notes.append(text) or out / "report.md"
    )
    study.main(["--demo-size", "--tasks", "place_mug", "pour_bottle", "place_shoe", "--methods", "KIL-IN",
                "--device", "cpu", "--out", str(tmp_path)])  # fmt: skip
    mug, pour, shoe = captured
    assert (mug.kil.steps, mug.kil.proprio_rotation) == (demo.KIL_STEPS, "euler")
    assert (pour.kil.steps, pour.kil.proprio_rotation) == (12000, "rot6d")
    assert (shoe.kil.steps, shoe.kil.proprio_rotation) == (12000, "rot6d")  # 1/10 with ground truth at 4000
    assert pour.kil.lr == shoe.kil.lr == 3e-4  # the learning rate their 12000 steps were measured at
    # the image baselines' budget is the same on every task; the robot's orientation enters every method alike
    assert replace(pour.rgb, proprio_rotation="euler") == mug.rgb == replace(shoe.rgb, proprio_rotation="euler")
    rotations = [config.rgb.proprio_rotation for config in (mug, pour, shoe)]
    assert rotations == ["euler", "rot6d", "rot6d"]
    assert f"KIL steps place_mug: {demo.KIL_STEPS}, pour_bottle: 12000, place_shoe: 12000" in notes[0]
    assert "proprioception with place_mug: euler, pour_bottle: rot6d, place_shoe: rot6d rotations" in notes[0]


def test_demo_size_extracts_pour_bottles_keypoints_from_finer_features(captured, tmp_path: Path, monkeypatch) -> None:
    """pour_bottle's keypoints come from features of the frames resized x2
    (kil_eval.demo.KIL_PERCEPTION), in training's extraction and in the evaluation alike; the
    other tasks keep x1, and the notes say which task got what."""
    from kil_eval.pipeline import Pipeline

    notes = []
    monkeypatch.setattr(
        study, "write_report", lambda results, out, text, title: notes.append(text) or out / "report.md"
    )
    study.main(["--demo-size", "--tasks", "place_mug", "pour_bottle", "--methods", "KIL-IN",
                "--device", "cpu", "--out", str(tmp_path)])  # fmt: skip
    mug, pour = captured
    assert (mug.feature_scale, pour.feature_scale) == (1.0, 2.0)
    assert Pipeline(pour).extraction("KIL-IN")["feature_scale"] == 2.0
    assert Pipeline(mug).extraction("KIL-IN")["feature_scale"] == 1.0
    assert "frames x2 for the features on pour_bottle" in notes[0] and "on place_mug" not in notes[0]
    assert "resized x2" in full_config(tmp_path, "cpu", "pour_bottle").notes
    assert "resized" not in full_config(tmp_path, "cpu", "place_mug").notes


def test_an_explicit_feature_scale_overrides_the_demo_sizes(captured, tmp_path: Path) -> None:
    study.main(["--demo-size", "--tasks", "place_shoe", "pour_bottle", "--methods", "KIL-T", "--feature-scale", "2",
                "--device", "cpu", "--out", str(tmp_path)])  # fmt: skip
    shoe, pour = captured
    assert (shoe.feature_scale, pour.feature_scale) == (2.0, 2.0) and shoe.kil.steps == 12000


def test_the_demo_runs_kil_t_on_place_shoe_and_pour_bottle_and_kil_in_elsewhere(tmp_path: Path) -> None:
    """place_shoe's KIL row is KIL-T (tracks follow the turned shoe; matching swaps heel and toe),
    on the x2 frames it was measured with; pour_bottle's is KIL-T with its tracks kept on the masks;
    place_mug keeps KIL-IN. The notes say how each row's keypoints were found."""
    from kil_eval.pipeline import Pipeline

    shoe, mug = full_config(tmp_path, "cpu", "place_shoe"), full_config(tmp_path, "cpu", "place_mug")
    assert shoe.methods == ("KIL-T", "RGB", "S2") and mug.methods == ("KIL-IN", "RGB", "S2")
    pour = full_config(tmp_path, "cpu", "pour_bottle")
    assert pour.methods[0] == "KIL-T" and pour.mask_guard and not shoe.mask_guard
    poured = Pipeline(pour).extraction("KIL-T")
    assert (poured["mask_guard"], poured["track_init"], poured["feature_scale"]) == (True, "instance", 2.0)
    assert "kept on the objects' instance masks" in pour.notes and "instance masks (a track" not in shoe.notes
    assert demo.quick_config(tmp_path, "cpu", "place_shoe").methods[0] == "KIL-T"
    extraction = Pipeline(shoe).extraction("KIL-T")
    assert (extraction["method"], extraction["track_init"], extraction["feature_scale"]) == ("track", "instance", 2.0)
    assert "KIL-T: keypoints by tracking" in shoe.notes and "Lucas-Kanade" in shoe.notes and "x2" in shoe.notes
    assert "KIL-IN: keypoints by instance matching" in mug.notes and "tracking" not in mug.notes


def test_explicit_steps_override_the_demo_sizes_and_keep_their_recipe(captured, tmp_path: Path) -> None:
    """``--demo-size --rgb-steps 12000`` trains the image baselines longer at the demo's learning
    rate, image size and head (KIL keeps each task's steps); ``--kil-steps`` likewise."""
    study.main(["--demo-size", "--tasks", "place_mug", "pour_bottle", "--methods", "RGB", "S2",
                "--rgb-steps", "12000", "--device", "cpu", "--out", str(tmp_path)])  # fmt: skip
    for config in captured:
        demo = full_config(tmp_path, "cpu", config.task)
        assert config.rgb == replace(demo.rgb, steps=12000) and config.kil == demo.kil
    captured.clear()
    study.main(["--demo-size", "--tasks", "pour_bottle", "--kil-steps", "300", "--device", "cpu",
                "--out", str(tmp_path)])  # fmt: skip
    demo = full_config(tmp_path, "cpu", "pour_bottle")
    assert captured[0].kil == replace(demo.kil, steps=300) and captured[0].rgb == demo.rgb
    with pytest.raises(SystemExit):
        study.main(["--demo-size", "--rgb-steps", "0", "--out", str(tmp_path)])
