"""Trackers: Lucas-Kanade follows keypoints on a rendered object that moves; the CoTracker3 glue
drives the online API correctly; the mask guard keeps tracks on their objects."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kil_perception.tracking import CoTrackerOnline, LucasKanadeTracker
from kil_sim.objects import bottle, mug
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


def _mug_at(xy: tuple[float, float], yaw: float):
    world = SimWorld([PlacedObject("mug", mug("m"), xy, yaw)])
    world.step(0.05)
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    truth = intr.project(to_cam.apply(np.array([world.keypoints("mug")[n] for n in ("rim", "handle", "base")])))
    frame = world.render().rgb
    world.close()
    return frame, truth


@pytest.mark.parametrize("redetect_every", [0, 1, 3])
def test_lost_tracks_are_found_again_by_matching_when_asked(tmp_path, redetect_every: int) -> None:
    """The mug vanishes (the tracks are lost), then stands 12 cm away: the paper's tracking keeps
    the lost tracks where they were; with redetect_every N the N-th frame with a lost track matches
    again and restarts the lost keypoints from their matches (those it finds: on the blank frame,
    matched below min_score, none)."""
    from eval_perception_fixtures import write_spec

    from kil_perception.backends import make_backend
    from kil_perception.extraction import ImageMatcher, ScoreGate, TrackingExtractor
    from kil_perception.spec import load_spec

    before, truth_before = _mug_at((0.38, 0.05), 0.5)
    after, truth_after = _mug_at((0.30, -0.04), 0.5)
    assert np.linalg.norm(truth_after - truth_before, axis=1).min() > 25.0  # beyond the tracker's reach
    names = ("rim", "handle", "base")
    spec = load_spec(write_spec(tmp_path, before, dict(zip(names, map(tuple, truth_before), strict=True))))
    matcher = ScoreGate(ImageMatcher(spec, make_backend("classic")), min_score=0.5)
    extractor = TrackingExtractor(matcher, LucasKanadeTracker(), redetect_every)
    extractor.extract(before)
    lost = extractor.extract(np.full_like(before, 127))
    assert not lost.found.any()
    results = [extractor.extract(after) for _ in range(3)]
    errors = [np.linalg.norm(r.uv - truth_after, axis=1).max() for r in results]
    if redetect_every == 0:
        assert extractor.redetected == 0 and errors[-1] > 25.0  # still where the mug was
    else:
        # Tracked frames count from the blank one (1): matching runs again on the first multiple of N from 2.
        n = next(count for count in range(2, 10) if count % redetect_every == 0) - 2
        # Found again: near the mug's new place, not where it was (> 25 px). How near is the weights-free
        # matcher's precision on this rendering (the base keypoint 8.6 px high on one CPU's renderer, under
        # 6 px on another), not what this test is about.
        assert extractor.redetected == 3 and results[n].found.all() and errors[n] < 12.0, errors
        assert all(e > 25.0 for e in errors[:n]) and results[-1].found.all() and errors[-1] < 12.0, errors
    with pytest.raises(ValueError, match="redetect_every must be 0"):
        TrackingExtractor(extractor.initializer, LucasKanadeTracker(), -1)


def _gripper_over_a_bottle(steps: int = 24):
    """Renders (colour, instance mask, keypoints' ground-truth pixels) of the gripper coming down
    past a standing bottle's mouth, 2 cm beside it, as the expert's side grasp approaches."""
    names = ("mouth", "shoulder", "base_front")
    world = SimWorld([PlacedObject("bottle", bottle("b"), (0.36, 0.10), 0.3)])
    world.step(0.05)
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    _, quaternion = world.tcp_pose()
    mouth = world.keypoints("bottle")["mouth"]
    frames = []
    for k in range(steps):
        world.set_target(np.array([mouth[0], mouth[1] + 0.02, max(0.12, 0.35 - 0.02 * k)]), quaternion)
        world.step(0.25)
        frame = world.render(instance_mask=True)
        truth = intr.project(to_cam.apply(np.array([world.keypoints("bottle")[n] for n in names])))
        frames.append((frame.rgb, frame.instance_mask, truth))
    world.close()
    return names, frames


def test_the_mask_guard_keeps_tracks_on_their_object_when_the_gripper_passes_over_it(tmp_path) -> None:
    """Lucas-Kanade drags the mouth's track along with the white gripper coming down over the
    white cap (the drift that made pour_bottle's training keypoints centimetres off while the
    bottle stood still); with the guard, the track that leaves the bottle's instance mask is taken
    for hidden and stays with the bottle, and the frame's masks go with the keypoints (lifting
    reads depth on the bottle)."""
    from eval_perception_fixtures import write_spec

    from kil_perception.backends import make_backend
    from kil_perception.extraction import TrackingExtractor, on_mask
    from kil_perception.instances import InstanceMatcher, SimulatorMasks
    from kil_perception.spec import load_spec

    names, frames = _gripper_over_a_bottle()
    spec = load_spec(write_spec(tmp_path, frames[0][0], dict(zip(names, map(tuple, frames[0][2]), strict=True))))
    category = spec.categories[0].name
    errors = {}
    for guarded in (False, True):
        current: dict[str, np.ndarray] = {}
        source = SimulatorMasks(lambda current=current: (current["mask"], {1: category}))
        matcher = InstanceMatcher(spec, make_backend("classic"), source)
        extractor = TrackingExtractor(matcher, LucasKanadeTracker(), guard=matcher if guarded else None)
        errors[guarded] = []
        for rgb, mask, truth in frames:
            current["mask"] = mask
            result = extractor.extract(rgb)
            errors[guarded].append(np.linalg.norm(result.uv - truth, axis=1))
            assert (result.masks is not None) == guarded
        assert (extractor.strayed > 0) == guarded
    hidden = [k for k, (_, mask, truth) in enumerate(frames) if not on_mask(mask == 1, truth[0], 0)]
    assert hidden, "the gripper never covered the mouth"
    assert max(errors[False][k][0] for k in hidden) > 15.0  # unguarded: the mouth went with the gripper
    assert max(e.max() for e in errors[True]) < 8.0, errors[True]
    assert np.all(result.masks[0] == (frames[-1][1] == 1))
