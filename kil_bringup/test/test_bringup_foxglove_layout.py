"""The shipped Foxglove layout: what it reads, and its copy for another robot, camera or namespace.
(That a running graph publishes every topic it reads is checked in test_bringup_graph's loop.)"""

from __future__ import annotations

import json

import pytest

from kil_bringup import foxglove_layout
from kil_bringup.foxglove_layout import adapt_layout, layout_topics, load_layout


def test_the_layout_reads_the_kil_topics_and_follows_the_base_frame() -> None:
    layout = load_layout()
    assert layout_topics(layout) == {
        "/camera/color/image_raw",
        "/camera/color/camera_info",
        "/kil/keypoints/annotations",
        "/kil/keypoints/image",
        "/kil/keypoints/markers",
        "/kil/servo_target",
        "/kil/action_chunk",
        "/kil/robot_state",
        "/diagnostics",
    }
    follows = [c["followTf"] for c in layout["configById"].values() if "followTf" in c]
    assert follows == ["link_base"]
    kinds = {key.split("!")[0] for key in layout["configById"]}
    assert {"Image", "3D", "Plot", "DiagnosticSummary"} <= kinds


def test_a_copy_for_a_namespaced_ur5e_with_a_zed(capsys) -> None:
    adapted = adapt_layout(load_layout(), robot="ur5e", camera="zed2i", namespace="left")
    topics = layout_topics(adapted)
    assert "/left/zed/zed_node/rgb/image_rect_color" in topics and "/left/zed/zed_node/rgb/camera_info" in topics
    assert "/left/kil/keypoints/annotations" in topics and "/left/diagnostics" in topics
    assert not any(t.startswith("/camera") or t.startswith("/kil") for t in topics)
    paths = [p["value"] for c in adapted["configById"].values() for p in c.get("paths", [])]
    assert "/left/kil/action_chunk.poses[0].position.x" in paths  # the field path is kept
    assert [c["followTf"] for c in adapted["configById"].values() if "followTf" in c] == ["left/base"]
    assert adapted["layout"] == load_layout()["layout"]
    assert foxglove_layout.main(["--robot", "lite6", "--camera", "femto_bolt"]) == 0
    written = json.loads(capsys.readouterr().out)
    assert "/camera/color/image_raw" in layout_topics(written)  # orbbec's default camera_name is 'camera'


def test_a_file_that_is_not_a_layout_is_refused(tmp_path) -> None:
    path = tmp_path / "layout.json"
    path.write_text(json.dumps({"panels": []}))
    with pytest.raises(ValueError, match="not a Foxglove layout"):
        load_layout(path)
    with pytest.raises(SystemExit):
        foxglove_layout.main(["--layout", str(path)])
