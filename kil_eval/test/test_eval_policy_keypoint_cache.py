"""Offline keypoint extraction for bags without keypoints: extracted with kil_perception, cached
beside the bag, re-extracted when a setting changes."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.rosbag2 import Reader

from kil_interfaces import conversion as cv
from kil_interfaces.typestore import kil_typestore
from kil_policy.data import TopicConfig, read_episode
from kil_policy.keypoint_cache import ExtractionConfig, extract_bag_keypoints

NAMES = ("rim", "handle", "opening")


@pytest.fixture(scope="module")
def bag_and_spec(tmp_path_factory):
    from kil_eval.record_demos import record

    root = tmp_path_factory.mktemp("extract")
    (bag,) = record("place_mug", 1, root / "demos", camera_hz=5.0, width=320, height=240, progress=False)
    typestore = kil_typestore()
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            msg = typestore.deserialize_cdr(raw, connection.msgtype)
            if connection.topic == "/camera/color/image_raw" and "rgb" not in locals():
                rgb = cv.image_to_numpy(msg)
            if connection.topic == "/kil/keypoints/oracle" and "oracle" not in locals():
                oracle = cv.keypoints_from_msg(msg)
            if "rgb" in locals() and "oracle" in locals():
                break
    cv2.imwrite(str(root / "reference.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    uv = {n: oracle.uv[oracle.names.index(n)] for n in NAMES}
    lines = "\n".join(f"          {n}: [{u:.1f}, {v:.1f}]" for n, (u, v) in uv.items())
    spec = root / "spec.yaml"
    spec.write_text(
        "categories:\n  - name: mug\n    references:\n      - image: reference.png\n        keypoints:\n" + lines + "\n"
    )
    return bag, spec


def test_extracted_keypoints_match_the_ground_truth_and_are_cached(bag_and_spec, monkeypatch) -> None:
    bag, spec = bag_and_spec
    config = ExtractionConfig(spec=str(spec), backend="effnet_lite0")
    episode = read_episode(bag, TopicConfig(keypoints="/kil/keypoints"), extraction=config)
    truth = read_episode(bag, TopicConfig(keypoints="/kil/keypoints/oracle"))
    assert episode.keypoints.shape == (len(episode), 3, 3)
    np.testing.assert_array_equal(episode.times_ns, truth.times_ns)
    assert episode.valid.mean() > 0.8
    # Before the gripper arrives (it later covers the rim it grasps), the extracted rim and handle
    # are where the simulator says they are.
    early = slice(0, 10)
    for slot, name in ((0, "rim"), (1, "handle")):
        found = episode.keypoints[early, slot]
        expected = truth.keypoints[early, truth_index(bag, name)]
        ok = episode.valid[early, slot]
        assert ok.all() and np.median(np.linalg.norm(found - expected, axis=1)) < 0.02, name  # m
    caches = list(bag.glob("kil_keypoints_*.npz"))
    assert len(caches) == 1
    caches[0].unlink()
    first = extract_bag_keypoints(bag, config)  # extracted afresh (and cached again)
    assert len(list(bag.glob("kil_keypoints_*.npz"))) == 1
    # From the cache: no feature extraction at all (the pipeline looks make_backend up in its module,
    # so this patch is what it would call).
    import kil_perception.backends as backends

    monkeypatch.setattr(backends, "make_backend", lambda *a, **k: (_ for _ in ()).throw(AssertionError("extracted")))
    again = read_episode(bag, TopicConfig(keypoints="/kil/keypoints"), extraction=config)
    np.testing.assert_array_equal(again.keypoints, episode.keypoints)
    np.testing.assert_array_equal(again.similarities, episode.similarities)
    assert episode.similarities is not None and episode.similarities.any()  # the +sim encoder's input survives
    cached = extract_bag_keypoints(bag, config)
    assert len(cached) == len(first)
    for a, b in zip(first, cached, strict=True):
        for field in fields(a):
            x, y = getattr(a, field.name), getattr(b, field.name)
            if isinstance(x, np.ndarray):
                np.testing.assert_array_equal(x, y, err_msg=field.name)
            elif field.name != "processing_time":
                assert x == y, field.name
    with pytest.raises(AssertionError, match="extracted"):  # the guard itself: new settings do extract
        extract_bag_keypoints(bag, ExtractionConfig(spec=str(spec), backend="classic"))
    monkeypatch.undo()
    # A changed setting re-extracts into a new cache entry.
    read_episode(
        bag, TopicConfig(keypoints="/kil/keypoints"), extraction=ExtractionConfig(spec=str(spec), backend="classic")
    )
    assert len(list(bag.glob("kil_keypoints_*.npz"))) == 2


def truth_index(bag: Path, name: str) -> int:
    typestore = kil_typestore()
    with Reader(bag) as reader:
        for connection, _, raw in reader.messages():
            if connection.topic == "/kil/keypoints/oracle":
                return cv.keypoints_from_msg(typestore.deserialize_cdr(raw, connection.msgtype)).names.index(name)
    raise AssertionError("no oracle keypoints")


def test_extraction_errors_are_reported_by_bag(bag_and_spec, tmp_path) -> None:
    from kil_policy.data import EpisodeError

    bag, spec = bag_and_spec
    config = ExtractionConfig(spec=str(spec), calibration=str(tmp_path / "missing.yaml"))
    with pytest.raises(EpisodeError, match=r"missing.yaml not found"):
        read_episode(bag, TopicConfig(keypoints="/kil/keypoints"), extraction=config)
