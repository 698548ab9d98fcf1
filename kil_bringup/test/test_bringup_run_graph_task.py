"""run_graph defaults to the task a checkpoint was trained on and refuses another, before starting
any node."""

from __future__ import annotations

from pathlib import Path

import pytest

from kil_bringup import run_graph
from kil_interfaces.checkpoint_info import checkpoint_task, task_mismatch


def _checkpoint(directory: Path, task: str | None) -> Path:
    directory.mkdir(parents=True)
    text = "policy: {observation: keypoints}\n" + (f"train:\n  task: {task}\n" if task is not None else "")
    (directory / "config.yaml").write_text(text)
    return directory


def test_the_checkpoint_task_is_read_and_another_refused(tmp_path: Path, capsys, monkeypatch) -> None:
    pour = _checkpoint(tmp_path / "pour", "pour_bottle")
    assert checkpoint_task(pour) == "pour_bottle"
    assert checkpoint_task(_checkpoint(tmp_path / "old", None)) == ""  # an older checkpoint does not say
    assert checkpoint_task(tmp_path / "missing") == ""
    assert task_mismatch(pour, "pour_bottle") == "" and task_mismatch(pour, "") == ""
    started = []
    monkeypatch.setattr(run_graph, "start", lambda nodes: started.append(nodes) or [])
    with pytest.raises(SystemExit) as exit_info:
        run_graph.main(["--robot", "sim", "--task", "place_mug", "--checkpoint", str(pour), "--keypoints", "oracle"])
    assert exit_info.value.code == 2
    assert f"checkpoint {pour} was trained on pour_bottle; refusing to run it on place_mug" in capsys.readouterr().err
    assert not started
    seen = {}

    def graph(robot, camera, task, *args, **kwargs):
        seen["task"] = task
        raise ValueError("stop here")

    monkeypatch.setattr(run_graph, "rollout_graph", graph)
    with pytest.raises(SystemExit):
        run_graph.main(["--robot", "sim", "--checkpoint", str(pour), "--keypoints", "oracle"])
    assert seen["task"] == "pour_bottle"  # the default is the checkpoint's task
