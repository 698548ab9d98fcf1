"""calibration_node over Fast DDS: the calibration YAML on /tf_static (latched, prefixed frames),
read back by the kil TF listener; a missing file stops the node with an error naming it."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import rclpy

from kil_interfaces.calibration import RigidTransform, save_extrinsics
from kil_interfaces.diagnostics import OK
from kil_interfaces.testing import DiagnosticsListener
from kil_interfaces.tf import TransformListener


def test_the_calibration_reaches_tf_with_its_frames_prefixed(tmp_path: Path) -> None:
    truth = RigidTransform("link_base", "camera_link", [0.9, -0.1, 0.55], [0.1, 0.7, 0.1, 0.7])
    save_extrinsics(tmp_path / "calibration.yaml", truth)
    command = [sys.executable, "-m", "kil_perception.calibration_node", "--ros-args"]
    command += ["-p", f"calibration_file:={tmp_path / 'calibration.yaml'}", "-p", "frame_prefix:=left"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rclpy.init()
    node = rclpy.create_node("calibration_test")
    try:
        deadline = time.monotonic() + 60
        while "calibration_node" not in node.get_node_names() and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
        time.sleep(1.0)  # it has published; the transform is latched: a listener started now still gets it
        listener = TransformListener(node, use_tf2_ros=False)
        deadline = time.monotonic() + 60
        found = None
        while found is None and time.monotonic() < deadline:
            rclpy.spin_once(node, timeout_sec=0.1)
            found = listener.lookup("left/link_base", "left/camera_link")
        assert found is not None, "no left/link_base <- left/camera_link on /tf_static"
        assert np.allclose(found.matrix, truth.matrix, atol=1e-9)
        assert listener.lookup("left/camera_link", "left/link_base") is not None  # and its inverse
        status = DiagnosticsListener(node).wait(
            lambda t: rclpy.spin_once(node, timeout_sec=t), "calibration_node: calibration", (OK,)
        )
        assert status.message == "publishing left/link_base -> left/camera_link on /tf_static"
        assert DiagnosticsListener.values(status)["translation_m"] == "[0.900, -0.100, 0.550]"
        assert process.poll() is None
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        process.terminate()
        output, _ = process.communicate(timeout=20)
    assert "publishing left/link_base -> left/camera_link" in output


def test_a_missing_calibration_file_is_named(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "kil_perception.calibration_node", "--ros-args"]
    command += ["-p", f"calibration_file:={tmp_path / 'absent.yaml'}"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert f"{tmp_path / 'absent.yaml'}: calibration file not found" in done.stdout + done.stderr
