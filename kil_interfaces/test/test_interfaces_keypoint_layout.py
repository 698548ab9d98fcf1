"""Keypoint layouts: the spec's slot order, reading it from a spec file without the perception
stack, the checkpoint's layout file, and the one-line refusal naming both layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kil_interfaces.data import KeypointArrayData
from kil_interfaces.keypoint_layout import (
    LAYOUT_FILE,
    describe,
    layout_of_message,
    layout_of_spec_file,
    mismatch,
    read_layout,
    spec_layout,
    write_layout,
)

SPEC = """categories:
  - name: shoe
    instances: 2
    references:
      - image: a.png
        keypoints: {heel: [1, 2], toe: [3, 4], opening: [5, 6]}
  - name: tray
    references:
      - image: b.png
        keypoints: {centre: [1, 1], corner: [2, 2], edge: [3, 3]}
"""
LAYOUT = (
    ("shoe", 0, "heel"), ("shoe", 0, "toe"), ("shoe", 0, "opening"),
    ("shoe", 1, "heel"), ("shoe", 1, "toe"), ("shoe", 1, "opening"),
    ("tray", 0, "centre"), ("tray", 0, "corner"), ("tray", 0, "edge"),
)  # fmt: skip


def test_spec_order_categories_then_instances_then_keypoints(tmp_path: Path) -> None:
    assert spec_layout([("shoe", 2, ["heel", "toe", "opening"]), ("tray", 1, ["centre", "corner", "edge"])]) == LAYOUT
    (tmp_path / "spec.yaml").write_text(SPEC)
    assert layout_of_spec_file(tmp_path / "spec.yaml") == LAYOUT
    (tmp_path / "bad.yaml").write_text("categories: [{name: mug}]\n")
    with pytest.raises(ValueError, match=r"bad.yaml: not a keypoint spec \(KeyError"):
        layout_of_spec_file(tmp_path / "bad.yaml")


def test_layout_of_a_message() -> None:
    k = len(LAYOUT)
    message = KeypointArrayData(
        0, "link_base", "image", "x", [n for _, _, n in LAYOUT], [c for c, _, _ in LAYOUT],
        np.array([i for _, i, _ in LAYOUT], np.uint8), np.zeros((k, 2)), np.zeros((k, 3)), np.ones(k), np.ones(k, bool),
    )  # fmt: skip
    assert layout_of_message(message) == LAYOUT


def test_mismatch_names_both_sources_and_layouts() -> None:
    assert mismatch(LAYOUT, LAYOUT, "a", "b") is None
    line = mismatch(LAYOUT, LAYOUT[:3], "checkpoint runs/x", "spec s.yaml")
    assert line == (
        "keypoint layout differs: checkpoint runs/x has 9 keypoints (shoe[0]: heel, toe, opening; shoe[1]: heel, toe, "
        "opening; tray[0]: centre, corner, edge), spec s.yaml gives 3 (shoe[0]: heel, toe, opening)"
    )
    swapped = (LAYOUT[1], LAYOUT[0], *LAYOUT[2:])  # same names and count, another order
    assert "differs" in mismatch(LAYOUT, swapped, "a", "b")
    assert describe(()) == "(none)"


def test_checkpoint_layout_file_round_trip(tmp_path: Path) -> None:
    assert read_layout(tmp_path) is None
    path = write_layout(tmp_path, LAYOUT, "spec s.yaml")
    assert path.name == LAYOUT_FILE and read_layout(tmp_path) == LAYOUT
    path.write_text("slots: [{category: mug}]\n")
    with pytest.raises(ValueError, match="unreadable keypoint layout"):
        read_layout(tmp_path)
