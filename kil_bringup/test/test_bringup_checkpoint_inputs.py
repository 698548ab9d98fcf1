"""A rollout graph feeds a checkpoint what it was trained on: keypoint_node extracts as the
checkpoint's training keypoints were extracted (its ``keypoint_extraction``), instance matching
takes the simulator's masks in simulation and SAM3 on a robot, an RGB or S2 checkpoint sees the
camera directly; an explicit setting that differs from the checkpoint's is refused."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
import yaml

from kil_bringup.graph import _EXTRACTION_DEFAULTS, EXTRACTION_SETTINGS, SIM_MASK_CATEGORIES, rollout_graph
from kil_bringup.run_graph import start, stop
from kil_interfaces.msg import ActionChunk
from kil_perception.instances import parse_mask_categories
from kil_perception.pipeline import ExtractorConfig
from kil_policy.testing import tiny_image_checkpoint
from kil_sim.tasks import TASKS, sample_configuration


def _kil_checkpoint(directory: Path, **extraction) -> Path:
    """A checkpoint directory whose config says how its keypoints were extracted (no weights: the
    graph reads only config.yaml)."""
    directory.mkdir(parents=True)
    train = {"task": "place_mug", "keypoint_extraction": {"spec": "/demo/spec.yaml", **extraction}}
    (directory / "config.yaml").write_text(yaml.safe_dump({"policy": {"observation": "keypoints"}, "train": train}))
    return directory


def _nodes(graph) -> dict:
    return {n.name: n for n in graph}


def test_keypoint_node_extracts_as_the_checkpoints_keypoints_were(tmp_path: Path) -> None:
    checkpoint = str(
        _kil_checkpoint(
            tmp_path / "kil_in",
            method="instance",
            instance_source="masks",
            backend="effnet_lite0",
            feature_scale=2.0,
            min_score=0.55,
            device="cuda",  # where it was extracted: not taken
        )
    )
    sim = _nodes(rollout_graph("sim", spec="/s.yaml", checkpoint=checkpoint))
    keypoints = sim["keypoint_node"].parameters
    assert keypoints["method"] == "instance" and keypoints["instance_source"] == "masks"
    assert keypoints["mask_categories"] == "1:mug,2:tray" and keypoints["min_score"] == 0.55
    assert keypoints["feature_scale"] == 2.0 and keypoints["device"] == "cpu"
    assert sim["sim_node"].parameters["publish_instance_mask"] is True
    # The same on the simulated UR5e; on a real Lite6 SAM3 finds the instances, and nothing publishes masks.
    ur5e = _nodes(rollout_graph("ur5e", spec="/s.yaml", checkpoint=checkpoint, use_sim=True))
    assert ur5e["keypoint_node"].parameters["instance_source"] == "masks"
    assert ur5e["sim_node"].parameters["publish_instance_mask"] is True
    real = _nodes(rollout_graph("lite6", spec="/s.yaml", checkpoint=checkpoint))
    assert real["keypoint_node"].parameters["instance_source"] == "sam3"
    assert "mask_categories" not in real["keypoint_node"].parameters
    # Explicit settings that agree are accepted; one that differs is refused, naming both.
    agreed = rollout_graph("sim", spec="/s.yaml", checkpoint=checkpoint, method="instance", feature_scale=2)
    assert _nodes(agreed)["keypoint_node"].parameters["feature_scale"] == 2.0
    with pytest.raises(ValueError, match=r"extracted with method='instance'.*method:='image'"):
        rollout_graph("sim", spec="/s.yaml", checkpoint=checkpoint, method="image")
    with pytest.raises(ValueError, match=r"feature_scale=2\.0.*feature_scale:=1\.0"):
        rollout_graph("sim", spec="/s.yaml", checkpoint=checkpoint, feature_scale=1.0)
    # A checkpoint that does not say (keypoints recorded live) gets keypoint_node's defaults or the flags.
    plain = _nodes(rollout_graph("sim", spec="/s.yaml", checkpoint=str(tmp_path / "none"), method="track"))
    assert plain["keypoint_node"].parameters["method"] == "track"
    assert plain["keypoint_node"].parameters["backend"] == "effnet_lite0"
    assert "publish_instance_mask" not in plain["sim_node"].parameters


def test_tracks_started_by_instance_matching_take_the_instances_too(tmp_path: Path) -> None:
    """KIL-T as the paper starts it (tracks from instance matching): the simulated graph gives
    keypoint_node the simulator's masks, a real robot SAM3, as for KIL-IN."""
    extraction = {"method": "track", "tracker": "lk", "track_init": "instance", "instance_source": "masks"}
    checkpoint = str(_kil_checkpoint(tmp_path / "kil_t", **extraction))
    sim = _nodes(rollout_graph("sim", task="place_shoe", spec="/s.yaml", checkpoint=checkpoint))
    keypoints = sim["keypoint_node"].parameters
    assert (keypoints["method"], keypoints["track_init"]) == ("track", "instance")
    assert keypoints["instance_source"] == "masks"
    assert keypoints["mask_categories"] == SIM_MASK_CATEGORIES["place_shoe"]
    assert sim["sim_node"].parameters["publish_instance_mask"] is True
    real = _nodes(rollout_graph("lite6", spec="/s.yaml", checkpoint=checkpoint))
    assert real["keypoint_node"].parameters["instance_source"] == "sam3"
    image_init = str(_kil_checkpoint(tmp_path / "kil_t_image", method="track", track_init="image"))
    plain = _nodes(rollout_graph("sim", spec="/s.yaml", checkpoint=image_init))
    assert "instance_source" not in plain["keypoint_node"].parameters
    assert "publish_instance_mask" not in plain["sim_node"].parameters


def test_image_checkpoints_see_the_camera(tmp_path: Path) -> None:
    rgb, s2 = (str(tiny_image_checkpoint(tmp_path / o, o, task="place_mug")) for o in ("rgb", "s2"))
    graph = _nodes(rollout_graph("lite6", camera="zed2i", checkpoint=rgb))  # no spec: no keypoints
    assert "keypoint_node" not in graph
    assert graph["policy_node"].remappings["camera/color/image_raw"] == "/zed/zed_node/rgb/image_rect_color"
    simulated = _nodes(rollout_graph("sim", checkpoint=s2, keypoints="oracle"))
    assert "keypoint_node" not in simulated and simulated["policy_node"].parameters["mask_categories"] == "1:mug,2:tray"
    assert simulated["policy_node"].remappings == {}  # (not the oracle's keypoints: S2 takes none)
    assert simulated["sim_node"].parameters["publish_instance_mask"] is True
    with pytest.raises(ValueError, match="is S2: it needs instance masks on camera/instance_mask"):
        rollout_graph("ur5e", checkpoint=s2)
    real = _nodes(rollout_graph("ur5e", checkpoint=s2, mask_categories="3:mug,4:tray"))
    assert real["policy_node"].parameters["mask_categories"] == "3:mug,4:tray"
    assert real["policy_node"].remappings["camera/depth/image_raw"] == "/camera/depth/image_raw"


def test_a_layout_checked_checkpoint_gets_its_layout_check(tmp_path: Path) -> None:
    """KIL-IM trained on keypoints matched with the layout check runs with it (a float parameter
    even where the config stored an integer weight); one trained without runs without."""
    checked = _kil_checkpoint(tmp_path / "checked", method="image", layout_check=1)
    keypoints = _nodes(rollout_graph("sim", spec="/s.yaml", checkpoint=str(checked)))["keypoint_node"].parameters
    assert keypoints["layout_check"] == 1.0 and isinstance(keypoints["layout_check"], float)
    plain = _kil_checkpoint(tmp_path / "plain", method="image")
    assert (
        "layout_check"
        not in _nodes(rollout_graph("sim", spec="/s.yaml", checkpoint=str(plain)))["keypoint_node"].parameters
    )


def test_simulator_mask_values_and_extraction_settings_match_their_sources() -> None:
    """The graph's copies (not imported, so a launch file stays light) of the simulator's mask
    values and of keypoint_node's extraction settings."""
    assert set(SIM_MASK_CATEGORIES) == set(TASKS)
    for task, text in SIM_MASK_CATEGORIES.items():
        world_objects = sample_configuration(task, "scene_variation", 0).objects  # distractors included
        named = {i + 1: o.model.category for i, o in enumerate(world_objects) if not o.name.startswith("distractor")}
        assert parse_mask_categories(text) == named, task
    fields = {f.name for f in dataclasses.fields(ExtractorConfig)}
    assert set(EXTRACTION_SETTINGS) <= fields
    # the defaults the graph falls back to are keypoint_node's own (its --help lists what it declares)
    shown = subprocess.run(
        [sys.executable, "-m", "kil_perception.keypoint_node", "--help"], capture_output=True, text=True, timeout=300
    ).stdout
    declared = dict(re.findall(r"^  (\w+) \(\w+, default (.+?)\): ", shown, flags=re.MULTILINE))
    assert _EXTRACTION_DEFAULTS and all(declared[k] == repr(v) for k, v in _EXTRACTION_DEFAULTS.items()), declared


def test_s2_checkpoint_runs_in_the_simulated_graph(tmp_path: Path) -> None:
    """Over DDS: sim_node publishes its instance masks, policy_node builds S2's frames from them
    and the depth, and publishes chunks."""
    checkpoint = tiny_image_checkpoint(tmp_path / "s2", "s2", task="place_mug")
    nodes = rollout_graph("sim", checkpoint=str(checkpoint), image_size=(96, 72), max_input_age_s=2.0)
    processes = start(nodes)
    rclpy.init()
    node = rclpy.create_node("s2_graph_test")
    chunks: list = []
    node.create_subscription(ActionChunk, "/kil/action_chunk", chunks.append, 10)
    try:
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and len(chunks) < 2:
            rclpy.spin_once(node, timeout_sec=0.1)
            assert all(p.poll() is None for p in processes), "a node of the graph exited"
        assert len(chunks) >= 2, "policy_node produced no chunks from the simulator's masks and depth"
        assert all(np.isfinite([p.position.x for p in c.poses]).all() for c in chunks)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)


def test_run_graph_refuses_a_method_the_checkpoint_was_not_trained_with(tmp_path: Path) -> None:
    checkpoint = _kil_checkpoint(tmp_path / "kil_in", method="instance", instance_source="masks")
    command = [sys.executable, "-m", "kil_bringup.run_graph", "--spec", "/s.yaml", "--checkpoint", str(checkpoint)]
    done = subprocess.run([*command, "--method", "image"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "extracted with method='instance'" in done.stderr and "started:" not in done.stdout
