"""Keypoints as ``foxglove_msgs/ImageAnnotations``: Foxglove's Image panel draws them over the
camera stream itself (no second, annotated image needed), live or from a bag.

A thin ROS conversion helper (like ``kil_interfaces.conversion``): the message classes come from
``foxglove_msgs`` where installed (ROS: ``ros-<distro>-foxglove-msgs``; the PyPI set-up generates
it, ``tools/generate_interfaces.sh``). ``available()`` says whether it is.
"""

from __future__ import annotations

from kil_interfaces import conversion
from kil_interfaces.data import KeypointArrayData

#: Circle diameter and outline thickness, label size (px).
DIAMETER_PX, THICKNESS_PX, FONT_PX = 10.0, 2.0, 12.0


def available() -> bool:
    """Whether ``foxglove_msgs`` can be imported here."""
    try:
        import foxglove_msgs.msg  # noqa: F401
    except ImportError:
        return False
    return True


def image_annotations(keypoints: KeypointArrayData, colours: dict[str, tuple[int, int, int]]):
    """One ``ImageAnnotations`` for ``keypoints``: a circle per keypoint at its pixel (filled when
    valid, an outline in the object's colour when not, as on the annotated image) and a
    ``category.name`` label beside it.

    Args:
        keypoints: the frame's keypoints; ``uv`` in ROS/OpenCV pixels (the top-left pixel's centre
            is (0, 0)); Foxglove's origin is that pixel's top-left corner, hence the half-pixel shift.
        colours: RGB 0-255 per category (``overlay.category_colours``), as on the annotated image.

    Raises:
        ImportError: ``foxglove_msgs`` is not installed.
    """
    from foxglove_msgs.msg import CircleAnnotation, Color, ImageAnnotations, Point2, TextAnnotation

    stamp = conversion.ns_to_time(keypoints.stamp_ns)
    annotations = ImageAnnotations()
    white = Color(r=1.0, g=1.0, b=1.0, a=1.0)
    for i in range(keypoints.num_keypoints):
        u, v = (float(c) for c in keypoints.uv[i])
        r, g, b = (c / 255.0 for c in colours[keypoints.categories[i]])
        colour = Color(r=r, g=g, b=b, a=1.0)
        valid = bool(keypoints.valid[i])
        annotations.circles.append(
            CircleAnnotation(
                timestamp=stamp,
                position=Point2(x=u + 0.5, y=v + 0.5),
                diameter=DIAMETER_PX,
                thickness=THICKNESS_PX,
                fill_color=colour if valid else Color(r=r, g=g, b=b, a=0.0),
                outline_color=white if valid else colour,
            )
        )
        annotations.texts.append(
            TextAnnotation(
                timestamp=stamp,
                position=Point2(x=u + 0.5 + DIAMETER_PX, y=v + 0.5 - DIAMETER_PX / 2),
                text=f"{keypoints.categories[i]}.{keypoints.names[i]}",
                font_size=FONT_PX,
                text_color=colour,
                background_color=Color(r=0.0, g=0.0, b=0.0, a=0.5),
            )
        )
    return annotations
