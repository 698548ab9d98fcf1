"""Keypoints as foxglove_msgs/ImageAnnotations: positions in Foxglove's pixel convention, one colour
per object as on the annotated image, invalid keypoints hollow; and the message survives rclpy
serialisation and a rosbags read (what a bag and Foxglove see)."""

from __future__ import annotations

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message

from kil_interfaces.data import KeypointArrayData
from kil_interfaces.typestore import kil_typestore
from kil_perception import foxglove_annotations
from kil_perception.overlay import category_colours


def _keypoints() -> KeypointArrayData:
    return KeypointArrayData(
        stamp_ns=1_500_000_000,
        frame_id="link_base",
        method="image",
        backend="classic",
        names=("rim", "handle", "body", "corner"),
        categories=("mug", "mug", "mug", "tray"),
        instances=np.zeros(4, np.uint8),
        uv=np.array([[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [100.0, 5.0]], np.float32),
        points=np.zeros((4, 3)),
        scores=np.ones(4, np.float32),
        valid=np.array([True, False, False, True]),
    )


def test_annotations_follow_the_keypoints() -> None:
    from foxglove_msgs.msg import ImageAnnotations

    keypoints = _keypoints()
    colours = category_colours(keypoints.categories)
    msg = foxglove_annotations.image_annotations(keypoints, colours)
    assert isinstance(msg, ImageAnnotations) and foxglove_annotations.available()
    assert len(msg.circles) == len(msg.texts) == 4
    rim, handle, _, corner = msg.circles
    assert (rim.position.x, rim.position.y) == (10.5, 20.5)  # pixel centre (0, 0) -> Foxglove (0.5, 0.5)
    assert (rim.timestamp.sec, rim.timestamp.nanosec) == (1, 500_000_000)
    mug, tray = colours["mug"], colours["tray"]
    assert mug != tray
    assert np.allclose([rim.fill_color.r, rim.fill_color.g, rim.fill_color.b], np.array(mug) / 255)
    assert rim.fill_color.a == 1.0 and handle.fill_color.a == 0.0  # invalid: hollow
    assert np.allclose([handle.outline_color.r, handle.outline_color.g], np.array(mug[:2]) / 255)
    assert np.allclose([corner.fill_color.r, corner.fill_color.b], np.array(tray)[[0, 2]] / 255)
    assert [t.text for t in msg.texts] == ["mug.rim", "mug.handle", "mug.body", "tray.corner"]


def test_annotations_serialise_and_read_back_from_a_bag_typestore() -> None:
    from foxglove_msgs.msg import ImageAnnotations

    keypoints = _keypoints()
    msg = foxglove_annotations.image_annotations(keypoints, category_colours(keypoints.categories))
    data = serialize_message(msg)
    assert deserialize_message(data, ImageAnnotations) == msg
    read = kil_typestore().deserialize_cdr(data, "foxglove_msgs/msg/ImageAnnotations")
    assert [c.position.x for c in read.circles] == [c.position.x for c in msg.circles]
    assert read.texts[3].text == "tray.corner"
