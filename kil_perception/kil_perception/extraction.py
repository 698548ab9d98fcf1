"""Keypoint extraction by image matching (IM, paper §III-B): reference descriptors from the spec's
reference images, matched in every frame by the argmax of the upsampled cosine similarity, then
lifted to 3-D.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import torch

from kil_interfaces.calibration import RigidTransform
from kil_interfaces.data import CameraIntrinsics, KeypointArrayData
from kil_perception.backends import FeatureBackend
from kil_perception.lifting import LiftingConfig, lift
from kil_perception.matching import descriptors_at, match_keypoints
from kil_perception.spec import KeypointSpec


@dataclass
class Extraction2D:
    """Pixels of the K spec keypoints in one image: uv (K, 2), scores (K,), found (K,),
    similarities (K, K) to every reference descriptor (None when the method has none)."""

    uv: np.ndarray
    scores: np.ndarray
    found: np.ndarray
    similarities: np.ndarray | None


class ImageMatcher:
    """Image matching: one descriptor per (category, instance, keypoint) slot.

    With two instances and two reference images each instance gets its reference's descriptors
    (§IV-I); with a single reference both instances would match the same spot, so that is
    refused.
    """

    method = "image"

    def __init__(self, spec: KeypointSpec, backend: FeatureBackend) -> None:
        self.spec = spec
        self.backend = backend
        queries = []
        for category in spec.categories:
            if category.instances > len(category.references):
                raise ValueError(
                    f"{spec.path}: category {category.name!r} has {category.instances} instances but "
                    f"{len(category.references)} reference image(s); image matching needs one per instance"
                )
            for reference in category.references[: category.instances]:
                image = reference.image()
                features = backend.features(image)
                uv = torch.tensor(list(reference.keypoints.values()), dtype=torch.float32, device=features.device)
                queries.append(descriptors_at(features, uv, image.shape[:2]))
        self.queries = torch.cat(queries)

    def extract(self, image: np.ndarray) -> Extraction2D:
        features = self.backend.features(image)
        result = match_keypoints(features, self.queries.to(features.device), image.shape[:2])
        return Extraction2D(
            result.uv.cpu().numpy(),
            result.scores.cpu().numpy(),
            result.found.cpu().numpy(),
            result.similarities.cpu().numpy(),
        )


class ScoreGate:
    """An extractor whose keypoints matched with a cosine score below ``min_score`` count as not
    found: a keypoint hidden by the gripper, or matched onto something else, is then marked invalid
    (and masked by the policy's encoder) instead of being lifted onto whatever it landed on."""

    def __init__(self, extractor, min_score: float) -> None:
        self.extractor = extractor
        self.min_score = min_score
        self.method = extractor.method

    def extract(self, image: np.ndarray) -> Extraction2D:
        found = self.extractor.extract(image)
        return replace(found, found=found.found & (found.scores >= self.min_score))


class TrackingExtractor:
    """Tracking (T): image or instance matching (``initializer``) on the first frame after a reset,
    then a tracker; the tracker's visibility gives the found flags (and the score: 1 visible,
    0 lost). A frame of another size than the tracked ones (the camera was reconfigured) starts
    again from matching: tracks cannot follow a change of resolution.

    Args:
        redetect_every: 0 (the paper's tracking): a lost track stays with the tracker, which may
            recover it. N > 0: every N-th tracked frame on which a track is lost, the initializer
            matches the frame again and each lost keypoint it finds restarts from its match (the
            found ones keep their tracks); the frame reports the match for those keypoints.
    """

    method = "track"

    def __init__(self, initializer, tracker, redetect_every: int = 0) -> None:
        if redetect_every < 0:
            raise ValueError(f"redetect_every must be 0 (never) or more, got {redetect_every}")
        self.initializer = initializer
        self.tracker = tracker
        self.redetect_every = redetect_every
        self.started = False
        self._size: tuple[int, ...] = ()
        self._tracked = 0  # frames tracked since the tracks (re)started
        self.redetected = 0  # keypoints restarted from a match since the last reset

    def reset(self) -> None:
        """The next frame re-initialises the tracks by matching."""
        self.started = False

    def extract(self, image: np.ndarray) -> Extraction2D:
        if not self.started or image.shape[:2] != self._size:
            first = self.initializer.extract(image)
            self.tracker.start(image, first.uv)
            self.started, self._size, self._tracked, self.redetected = True, image.shape[:2], 0, 0
            return first
        uv, visible = self.tracker.track(image)
        self._tracked += 1
        found = Extraction2D(uv, visible.astype(np.float32), visible, None)
        if self.redetect_every and not visible.all() and self._tracked % self.redetect_every == 0:
            found = self._redetect(image, found)
        return found

    def _redetect(self, image: np.ndarray, tracked: Extraction2D) -> Extraction2D:
        """Lost keypoints that matching finds on ``image`` restart from their match."""
        matched = self.initializer.extract(image)
        take = ~tracked.found & matched.found
        if not take.any():
            return tracked
        uv = np.where(take[:, None], matched.uv, tracked.uv)
        self.tracker.start(image, uv)
        self.redetected += int(take.sum())
        scores = np.where(take, matched.scores, tracked.scores).astype(np.float32)
        return Extraction2D(uv, scores, tracked.found | take, None)


def keypoints_message(
    spec: KeypointSpec,
    found: Extraction2D,
    depth_m: np.ndarray | None,
    intrinsics: CameraIntrinsics | None,
    extrinsics: RigidTransform | None,
    stamp_ns: int,
    method: str,
    backend: str,
    started: float | None = None,
    lifting: LiftingConfig | None = None,
) -> KeypointArrayData:
    """2-D matches + depth -> a KeypointArray (3-D in the base frame when extrinsics are given)."""
    layout = spec.layout()
    k = len(layout)
    points, valid = np.zeros((k, 3)), np.zeros(k, bool)
    if depth_m is not None and intrinsics is not None:
        points, valid = lift(found.uv, depth_m, intrinsics, extrinsics, lifting)
    valid &= found.found
    return KeypointArrayData(
        stamp_ns=stamp_ns,
        frame_id=extrinsics.parent_frame if extrinsics is not None else (intrinsics.frame_id if intrinsics else ""),
        method=method,
        backend=backend,
        names=tuple(name for _, _, name in layout),
        categories=tuple(category for category, _, _ in layout),
        instances=np.array([instance for _, instance, _ in layout], np.uint8),
        uv=found.uv,
        points=np.where(valid[:, None], points, 0.0),
        scores=found.scores,
        valid=valid,
        similarities=found.similarities,
        processing_time=0.0 if started is None else time.perf_counter() - started,
    )
