"""``python -m kil_perception.annotate``: reference frames from images and real rosbag2 bags,
headless points, spec creation/extension with validation, previews, clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Writer

from kil_interfaces import conversion
from kil_interfaces.typestore import kil_typestore
from kil_perception import annotate as annotate_module
from kil_perception.annotate import annotate, main, parse_point
from kil_perception.images import read_rgb
from kil_perception.spec import load_spec

RNG = np.random.default_rng(0)
IMAGE = (RNG.random((60, 80, 3)) * 255).astype(np.uint8)
POINTS = ["--point", "rim=10,12", "--point", "handle=40.5,30", "--point", "base=70,50"]


def _image(tmp_path: Path) -> Path:
    path = tmp_path / "input.png"
    cv2.imwrite(str(path), cv2.cvtColor(IMAGE, cv2.COLOR_RGB2BGR))
    return path


def test_headless_annotation_writes_spec_reference_and_preview(tmp_path: Path) -> None:
    out = tmp_path / "task" / "spec.yaml"
    assert main(["--image", str(_image(tmp_path)), "--category", "paper_box", *POINTS, "--out", str(out)]) == 0
    spec = load_spec(out)
    (category,) = spec.categories
    assert category.name == "paper_box" and category.prompt == "paper box" and category.instances == 1
    assert category.references[0].keypoints == {"rim": (10.0, 12.0), "handle": (40.5, 30.0), "base": (70.0, 50.0)}
    assert category.references[0].image_path == out.parent / "paper_box_reference.png"
    np.testing.assert_array_equal(category.references[0].image(), IMAGE)  # lossless copy of the frame
    preview = read_rgb(out.parent / "paper_box_preview.png", "preview")
    assert preview.shape == IMAGE.shape and not np.array_equal(preview, IMAGE)  # the points are drawn


def test_categories_are_added_and_second_instance_references_attached(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    points = {"a": (5.0, 5.0), "b": (20.0, 20.0), "c": (30.0, 40.0)}
    annotate(out, IMAGE, "mug", points)
    annotate(out, IMAGE[::-1].copy(), "shoe", points, prompt="shoe", instances=2)
    spec = annotate(
        out, IMAGE[:, ::-1].copy(), "shoe", {"c": (1.0, 2.0), "a": (3.0, 4.0), "b": (5.0, 6.0)}, None, 1, True
    )
    assert [c.name for c in spec.categories] == ["mug", "shoe"]
    shoe = spec.categories[1]
    assert shoe.instances == 2 and len(shoe.references) == 2
    assert list(shoe.references[1].keypoints) == ["a", "b", "c"]  # the first reference's order
    assert shoe.references[1].image_path.name == "shoe_reference_1.png"
    assert spec.num_keypoints == 9
    with pytest.raises(ValueError, match="category 'mug' exists"):
        annotate(out, IMAGE, "mug", points)
    with pytest.raises(ValueError, match="already has a reference per instance"):
        annotate(out, IMAGE, "shoe", points, add_reference=True)
    with pytest.raises(ValueError, match="mug keypoints are a, b, c; got a, b, x"):
        annotate(out, IMAGE, "mug", {"a": (1, 1), "b": (2, 2), "x": (3, 3)}, add_reference=True)


def _write_bag(path: Path, frames: list[np.ndarray]) -> None:
    typestore = kil_typestore()
    types = conversion.MessageTypes.rosbags(typestore)
    msgtype = "sensor_msgs/msg/Image"
    with Writer(path, version=8) as writer:
        connection = writer.add_connection("/camera/color/image_raw", msgtype, typestore=typestore)
        for i, frame in enumerate(frames):
            stamp = (i + 1) * 100_000_000
            msg = conversion.numpy_to_image(frame, "rgb8", stamp, "camera", types=types)
            writer.write(connection, stamp, typestore.serialize_cdr(msg, msgtype))


def test_reference_frame_from_a_bag(tmp_path: Path) -> None:
    frames = [(RNG.random((60, 80, 3)) * 255).astype(np.uint8) for _ in range(3)]
    _write_bag(tmp_path / "episode", frames)
    out = tmp_path / "spec.yaml"
    args = ["--bag", str(tmp_path / "episode"), "--frame", "1", "--category", "mug", *POINTS, "--out", str(out)]
    assert main(args) == 0
    np.testing.assert_array_equal(load_spec(out).categories[0].references[0].image(), frames[1])
    with pytest.raises(ValueError, match=r"has 3 frames; --frame 7 does not exist"):
        annotate_module.bag_frame(tmp_path / "episode", "/camera/color/image_raw", 7)
    with pytest.raises(ValueError, match=r"no topic /zed/rgb \(topics: /camera/color/image_raw\)"):
        annotate_module.bag_frame(tmp_path / "episode", "/zed/rgb", 0)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--point", "rim=10,12", "--point", "base=70,50"], "2 keypoints given; 3-6 are required"),
        (["--point", "rim=10;12"], "expected NAME=U,V"),
        ([*POINTS[:4], "--point", "base=95,50"], "keypoint base .* is outside the 80x60 image"),
        ([], "give the keypoints with --point"),
        ([*POINTS, "--point", "rim=1,1"], "given twice"),
    ],
)
def test_bad_input_is_explained_and_nothing_is_written(tmp_path: Path, capsys, extra, message) -> None:
    out = tmp_path / "spec.yaml"
    assert main(["--image", str(_image(tmp_path)), "--category", "mug", *extra, "--out", str(out)]) == 2
    assert message.split(" .*")[0] in capsys.readouterr().err or pytest.fail(message)
    assert not out.exists()


def test_an_invalid_result_leaves_the_existing_spec_as_it_was(tmp_path: Path) -> None:
    out = tmp_path / "spec.yaml"
    points = {"a": (5.0, 5.0), "b": (20.0, 20.0), "c": (30.0, 40.0)}
    annotate(out, IMAGE, "mug", points)
    before = out.read_text()
    with pytest.raises(ValueError, match=r"categories\[1\]\.name: a non-empty string is required"):
        annotate(out, IMAGE, "", points)  # caught only by validating the written spec
    assert out.read_text() == before and not (tmp_path / "spec.yaml.partial").exists()


def test_parse_point() -> None:
    assert parse_point(" rim = 1.5,2") == ("rim", (1.5, 2.0))


def test_clicking_needs_a_display(monkeypatch) -> None:
    import matplotlib

    matplotlib.use("Agg")
    with pytest.raises(RuntimeError, match="no display for the annotation window"):
        annotate_module.click_points(IMAGE, ["rim"])


def test_clicked_points_are_taken_in_name_order(monkeypatch) -> None:
    """No display here: matplotlib's ginput (the one GUI call) is replaced by canned clicks."""
    import matplotlib.pyplot as plt

    clicks = iter([[(1.0, 2.0)], [(3.0, 4.0)], [(5.0, 6.0)]])
    monkeypatch.setattr(plt, "get_backend", lambda: "TkAgg")
    monkeypatch.setattr(plt, "ginput", lambda *a, **k: next(clicks))
    assert annotate_module.click_points(IMAGE, ["a", "b", "c"]) == {"a": (1.0, 2.0), "b": (3.0, 4.0), "c": (5.0, 6.0)}
