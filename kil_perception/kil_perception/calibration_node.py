"""``calibration_node``: the camera calibration YAML (hand-eye result) as a static transform.

Publishes the file's ``parent_frame`` -> ``child_frame`` on /tf_static (latched), so keypoint_node,
RViz and any other TF user find the camera; a hand-eye calibration tool that publishes the same
transform itself replaces this node. Set ``child_frame`` to the camera driver's root frame
(``camera_link`` for orbbec_camera, ``zed_camera_link`` for zed_wrapper) while the driver publishes
its own optical frames, or to the optical frame with the driver's TF turned off: TF allows one
parent per frame. ``frame_prefix`` prefixes both frames (robots sharing one TF tree).
The file format is ``kil_interfaces.calibration``'s (the one ``record_demos`` writes).
/diagnostics (1 Hz), check ``calibration``: OK with the frames, translation and file it publishes.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from functools import partial

from rclpy.node import Node

from kil_interfaces.calibration import load_extrinsics
from kil_interfaces.diagnostics import OK, Check, Diagnostics
from kil_interfaces.node_runtime import declare, spin_node
from kil_interfaces.tf import StaticTransformBroadcaster, prefixed


class CalibrationNode(Node):
    def __init__(self) -> None:
        super().__init__("calibration_node")
        p = partial(declare, self)
        path = p("calibration_file", "", "calibration YAML: parent_frame, child_frame, translation, rotation")
        prefix = p("frame_prefix", "", "prefix of both frame names ('a' -> 'a/link_base'; '' = none)")
        if not path:
            raise ValueError("parameter 'calibration_file' is required")
        transform = load_extrinsics(path)
        transform = replace(
            transform,
            parent_frame=prefixed(prefix, transform.parent_frame),
            child_frame=prefixed(prefix, transform.child_frame),
        )
        t = transform.translation
        # (logged first: whoever sees the transform may stop the node at once)
        self.get_logger().info(
            f"{path}: publishing {transform.parent_frame} -> {transform.child_frame} "
            f"(translation [{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}] m) on /tf_static"
        )
        self.broadcaster = StaticTransformBroadcaster(self)
        self.broadcaster.send([transform], self.get_clock().now().nanoseconds)
        frames = f"{transform.parent_frame} -> {transform.child_frame}"
        values = {"file": path, "translation_m": f"[{t[0]:.3f}, {t[1]:.3f}, {t[2]:.3f}]"}
        self.diagnostics = Diagnostics(self, hardware_id=path)
        self.diagnostics.add("calibration", lambda: Check(OK, f"publishing {frames} on /tf_static", values))


def main(args: list[str] | None = None) -> int:
    return spin_node(CalibrationNode, args)


if __name__ == "__main__":
    sys.exit(main())
