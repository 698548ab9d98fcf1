"""The study's sizes: the paper's Table VIII with --paper, make demo's with --demo-size, for every
task and method of the grid (the stages themselves are the pipeline's, tested through the demo)."""

from __future__ import annotations

from pathlib import Path

import pytest

import kil_eval.study as study
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
    demo = full_config(tmp_path, "cpu")
    for config in captured:
        assert config.kil == demo.kil and config.rgb == demo.rgb and config.methods == ("KIL-IN", "S2")
        assert (config.width, config.height, config.max_duration_s) == (demo.width, demo.height, demo.max_duration_s)
    assert [c.out for c in captured] == [tmp_path / "place_shoe", tmp_path / "pour_bottle"]
