"""What a policy checkpoint says about itself, read without torch (the robot side and the graph
runner check a checkpoint before starting anything): the task it was trained on.

A checkpoint directory holds ``config.yaml`` = {"policy": ..., "train": {"task": ..., ...}}
(``kil_policy.checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG = "config.yaml"


def checkpoint_task(directory: str | Path) -> str:
    """The task the checkpoint was trained on (its training config's ``task``; '' when unknown)."""
    try:
        stored = yaml.safe_load((Path(directory) / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return ""
    train = stored.get("train") if isinstance(stored, dict) else None
    return str(train.get("task") or "") if isinstance(train, dict) else ""


def task_mismatch(directory: str | Path, task: str) -> str:
    """One line refusing ``task`` for a checkpoint trained on another ('' when they agree or the
    checkpoint does not say)."""
    trained_on = checkpoint_task(directory)
    if trained_on and task and task != trained_on:
        return f"checkpoint {directory} was trained on {trained_on}; refusing to run it on {task}"
    return ""
