"""Trackers: Lucas-Kanade follows keypoints on a rendered object that moves; the CoTracker3 glue
drives the online API correctly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kil_perception.tracking import CoTrackerOnline, LucasKanadeTracker
from kil_sim.objects import mug
from kil_sim.scene import PlacedObject
from kil_sim.world import SimWorld


def _mug_frames(steps: int):
    """Renders of a mug sliding 4 mm per frame, with its keypoints' ground-truth pixels."""
    frames, truths = [], []
    for k in range(steps):
        world = SimWorld([PlacedObject("mug", mug("m"), (0.38 - 0.004 * k, 0.05 + 0.002 * k), 0.5 + 0.01 * k)])
        world.step(0.05)
        intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
        points = np.array([world.keypoints("mug")[n] for n in ("rim", "handle")])
        frames.append(world.render().rgb)
        truths.append(intr.project(to_cam.apply(points)))
        world.close()
    return frames, truths


def test_lucas_kanade_follows_a_moving_object() -> None:
    frames, truths = _mug_frames(12)
    tracker = LucasKanadeTracker()
    tracker.start(frames[0], truths[0])
    for frame in frames[1:]:
        uv, visible = tracker.track(frame)
    assert visible.all()
    assert np.linalg.norm(uv - truths[-1], axis=1).max() < 4.0
    assert np.linalg.norm(truths[-1] - truths[0], axis=1).min() > 10.0  # it really moved


def test_lucas_kanade_flags_points_that_vanish() -> None:
    frames, truths = _mug_frames(2)
    tracker = LucasKanadeTracker()
    tracker.start(frames[0], truths[0])
    blank = np.full_like(frames[1], 127)
    _, visible = tracker.track(blank)
    assert not visible.any()
    with pytest.raises(RuntimeError, match="before start"):
        LucasKanadeTracker().track(blank)


class OnlineCallSignature:
    """Stands in for CoTracker3's online model (its code is on no registry reachable here): same
    call signature, and it moves every query by +1 px per frame so the glue's bookkeeping shows."""

    step = 4

    def __init__(self) -> None:
        self.calls = []

    def __call__(self, video_chunk, is_first_step=False, queries=None):
        self.calls.append((tuple(video_chunk.shape), is_first_step))
        if is_first_step:
            self.queries = queries
            self.frames_seen = 0
            return None, None
        self.frames_seen += self.step
        t = video_chunk.shape[1]
        tracks = self.queries[:, :, 1:][:, None].repeat(1, t, 1, 1) + self.frames_seen
        return tracks, torch.ones(1, t, self.queries.shape[1], dtype=torch.bool)


def test_cotracker_glue_uses_the_windowed_online_api() -> None:
    model = OnlineCallSignature()
    tracker = CoTrackerOnline(model=model)
    image = np.zeros((32, 48, 3), np.uint8)
    tracker.start(image, np.array([[10.0, 5.0], [20.0, 7.0]]))
    assert model.calls[0] == ((1, 1, 3, 32, 48), True)
    outputs = [tracker.track(image) for _ in range(11)]  # frames 2 .. 12
    windows = model.calls[1:]
    assert windows == [((1, 8, 3, 32, 48), False)] * 2  # at frames 8 and 12: 2*step buffered, then every step
    uv, visible = outputs[-1]
    np.testing.assert_allclose(uv, [[18.0, 13.0], [28.0, 15.0]])  # +8 after two windows of 4
    assert visible.all()


def test_tracking_extractor_matches_first_then_tracks(tmp_path) -> None:
    from eval_perception_fixtures import write_spec

    from kil_perception.backends import make_backend
    from kil_perception.extraction import ImageMatcher, TrackingExtractor
    from kil_perception.spec import load_spec

    frames, truths = _mug_frames(6)
    spec = load_spec(write_spec(tmp_path, frames[0], {"rim": truths[0][0], "handle": truths[0][1], "x": (5.0, 5.0)}))
    extractor = TrackingExtractor(ImageMatcher(spec, make_backend("classic")), LucasKanadeTracker())
    first = extractor.extract(frames[0])
    assert first.similarities is not None  # matched
    for frame in frames[1:]:
        result = extractor.extract(frame)
    assert result.similarities is None  # tracked
    assert np.linalg.norm(result.uv[:2] - truths[-1], axis=1).max() < 4.0
    extractor.reset()
    assert extractor.extract(frames[-1]).similarities is not None  # re-initialised by matching
