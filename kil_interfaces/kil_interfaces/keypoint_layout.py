"""The keypoint layout: which keypoint sits in each of the K slots of a ``KeypointArray``.

A layout is a tuple of (category, instance, name) slots. A policy is trained on one layout and
can only be fed that layout; whoever runs it (evaluation, ``policy_node``, ``run_graph``)
compares the layout it is about to feed with the checkpoint's and refuses a difference with one
line naming both. Spec order (``kil_perception.spec``): categories in file order, then instances,
then keypoints in reference order — :func:`spec_layout` is that rule, also used to read a spec's
layout without importing the perception stack.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import yaml

Slot = tuple[str, int, str]
Layout = tuple[Slot, ...]

#: The file in a checkpoint directory holding the layout it was trained on.
LAYOUT_FILE = "keypoint_layout.yaml"


def spec_layout(categories: Iterable[tuple[str, int, Sequence[str]]]) -> Layout:
    """Slots of (category name, instance count, keypoint names) in spec order."""
    return tuple((name, i, k) for name, count, names in categories for i in range(count) for k in names)


def layout_of_message(keypoints) -> Layout:
    """The layout of a ``KeypointArrayData`` (names, categories, instances)."""
    slots = zip(keypoints.categories, keypoints.instances, keypoints.names, strict=True)
    return tuple((str(c), int(i), str(n)) for c, i, n in slots)


def layout_of_spec_file(path: str | Path) -> Layout:
    """A spec file's layout from its structure alone (no image checks; ``kil_perception.spec``
    validates a spec fully).

    Raises:
        ValueError: naming the file, when the structure is not a spec's.
    """
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text())
        categories = [
            (str(c["name"]), int(c.get("instances", 1)), [str(k) for k in c["references"][0]["keypoints"]])
            for c in content["categories"]
        ]
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: not a keypoint spec ({type(error).__name__}: {error})") from None
    return spec_layout(categories)


def describe(layout: Layout) -> str:
    """'mug[0]: rim, handle; tray[0]: centre' — K slots in a line."""
    groups: dict[tuple[str, int], list[str]] = {}
    for category, instance, name in layout:
        groups.setdefault((category, instance), []).append(name)
    return "; ".join(f"{c}[{i}]: {', '.join(names)}" for (c, i), names in groups.items()) or "(none)"


def mismatch(expected: Layout, actual: Layout, expected_source: str, actual_source: str) -> str | None:
    """None when the layouts are equal, else one line naming both sources and layouts."""
    if tuple(expected) == tuple(actual):
        return None
    return (
        f"keypoint layout differs: {expected_source} has {len(expected)} keypoints ({describe(expected)}), "
        f"{actual_source} gives {len(actual)} ({describe(actual)})"
    )


def write_layout(directory: str | Path, layout: Layout, source: str) -> Path:
    """Write ``LAYOUT_FILE`` into ``directory``; ``source`` says where the layout came from."""
    path = Path(directory) / LAYOUT_FILE
    content = {"source": source, "slots": [{"category": c, "instance": i, "name": n} for c, i, n in layout]}
    path.write_text(yaml.safe_dump(content, sort_keys=False))
    return path


def read_layout(directory: str | Path) -> Layout | None:
    """The layout stored in a checkpoint directory, or None when it has none (an RGB policy, or a
    checkpoint from before layouts were recorded)."""
    path = Path(directory) / LAYOUT_FILE
    if not path.is_file():
        return None
    try:
        slots = yaml.safe_load(path.read_text())["slots"]
        return tuple((str(s["category"]), int(s["instance"]), str(s["name"])) for s in slots)
    except (yaml.YAMLError, KeyError, TypeError, ValueError) as error:
        raise ValueError(f"{path}: unreadable keypoint layout ({type(error).__name__}: {error})") from None
