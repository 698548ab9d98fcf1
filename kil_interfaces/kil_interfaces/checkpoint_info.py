"""What a policy checkpoint says about itself, read without torch (the robot side and the graph
runner check a checkpoint before starting anything): the task it was trained on, what it
observes, and how its training keypoints were extracted.

A checkpoint directory holds ``config.yaml`` = {"policy": {"observation": ..., ...}, "train":
{"task": ..., "keypoint_extraction": {...}, ...}} (``kil_policy.checkpoint``)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONFIG = "config.yaml"


def _section(directory: str | Path, name: str) -> dict:
    """One top-level section of the checkpoint's ``config.yaml`` ({} when absent or unreadable)."""
    try:
        stored = yaml.safe_load((Path(directory) / CONFIG).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}
    section = stored.get(name) if isinstance(stored, dict) else None
    return section if isinstance(section, dict) else {}


def checkpoint_task(directory: str | Path) -> str:
    """The task the checkpoint was trained on (its training config's ``task``; '' when unknown)."""
    return str(_section(directory, "train").get("task") or "")


def checkpoint_observation(directory: str | Path) -> str:
    """What the policy observes: ``keypoints`` (KIL), ``rgb`` or ``s2`` ('' when unknown)."""
    return str(_section(directory, "policy").get("observation") or "")


def checkpoint_extraction(directory: str | Path) -> dict:
    """The ``keypoint_extraction`` settings the checkpoint's training keypoints were extracted with
    ({} when they were recorded rather than extracted, or the checkpoint does not say)."""
    extraction = _section(directory, "train").get("keypoint_extraction")
    return dict(extraction) if isinstance(extraction, dict) and extraction.get("spec") else {}


def task_mismatch(directory: str | Path, task: str) -> str:
    """One line refusing ``task`` for a checkpoint trained on another ('' when they agree or the
    checkpoint does not say)."""
    trained_on = checkpoint_task(directory)
    if trained_on and task and task != trained_on:
        return f"checkpoint {directory} was trained on {trained_on}; refusing to run it on {task}"
    return ""
