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
from kil_perception.layout_check import LayoutCheckConfig, check_layout
from kil_perception.lifting import LiftingConfig, lift
from kil_perception.matching import descriptors_at, match_keypoints, result_at, similarity_maps
from kil_perception.spec import KeypointSpec


@dataclass
class Extraction2D:
    """Pixels of the K spec keypoints in one image: uv (K, 2), scores (K,), found (K,),
    similarities (K, K) to every reference descriptor (None when the method has none), and
    masks: per keypoint its object's (H, W) bool instance mask, where the extractor keeps keypoints
    on their objects (tracking with a mask guard; lifting then reads depth on the object), else None."""

    uv: np.ndarray
    scores: np.ndarray
    found: np.ndarray
    similarities: np.ndarray | None
    masks: list[np.ndarray | None] | None = None


class ImageMatcher:
    """Image matching: one descriptor per (category, instance, keypoint) slot.

    With two instances and two reference images each instance gets its reference's descriptors
    (§IV-I); with a single reference both instances would match the same spot, so that is
    refused.

    Args:
        layout: None (the paper's matching: each keypoint's own argmax) or the geometric check
            that matches each object instance's keypoints together (``layout_check``).
    """

    method = "image"

    def __init__(self, spec: KeypointSpec, backend: FeatureBackend, layout: LayoutCheckConfig | None = None) -> None:
        self.spec = spec
        self.backend = backend
        self.layout = layout
        queries, references, self._groups, self._widths = [], [], [], []
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
                start = sum(len(group) for group in self._groups)
                self._groups.append(list(range(start, start + len(uv))))
                self._widths.append(image.shape[1])
                references.append(uv.cpu().numpy())
        self.queries = torch.cat(queries)
        self._references = np.concatenate(references).astype(np.float64)

    def extract(self, image: np.ndarray) -> Extraction2D:
        features = self.backend.features(image)
        queries = self.queries.to(features.device)
        if self.layout is not None:
            maps = similarity_maps(features, queries, image.shape[:2])
            uv, scores, found = check_layout(maps, self._references, self._widths, self._groups, self.layout)
            result = result_at(
                features,
                queries,
                image.shape[:2],
                torch.from_numpy(uv).to(features.device),
                torch.from_numpy(scores),
                torch.from_numpy(found),
            )
        else:
            result = match_keypoints(features, queries, image.shape[:2])
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
        guard: None (the paper's tracking), or the instance matcher whose masks keep tracks on
            their objects (:meth:`InstanceMatcher.category_masks`): every frame, a track the
            tracker calls visible but that lies more than ``guard_margin_px`` from its category's
            instance mask has strayed — it slid off a thin part, followed the gripper passing over
            the object, or its point is hidden behind the gripper. The initializer then matches
            the frame: a strayed keypoint whose match (on its object's mask) scores at least
            ``guard_score_ratio`` times its score when the tracks started is seen again and
            restarts there; otherwise it is taken for hidden and moves with its object, from where
            it was on the previous frame by the median motion of the object's tracks that are on
            the mask (a hidden point of a resting object stays put: its best match would be some
            other, visible part). When none of the object's tracks is on its mask, its keypoints
            take their matches (not found when matching does not find them: the object left the
            view). The frame's masks go with the keypoints (``Extraction2D.masks``), so lifting
            reads depth on the object. It costs the instance source on every frame and a match on
            frames with a stray; a correction restarts the tracker from the corrected points.
        guard_margin_px: how far outside its mask a track may lie (mask edges and tracks are
            both a pixel or two uncertain).
        guard_score_ratio: see ``guard``.
    """

    method = "track"

    def __init__(
        self,
        initializer,
        tracker,
        redetect_every: int = 0,
        guard=None,
        guard_margin_px: int = 2,
        guard_score_ratio: float = 0.7,
    ) -> None:
        if redetect_every < 0:
            raise ValueError(f"redetect_every must be 0 (never) or more, got {redetect_every}")
        if guard_margin_px < 0:
            raise ValueError(f"guard_margin_px must be 0 or more, got {guard_margin_px}")
        self.initializer = initializer
        self.tracker = tracker
        self.redetect_every = redetect_every
        self.guard = guard
        self.guard_margin_px = guard_margin_px
        self.guard_score_ratio = guard_score_ratio
        self._categories = [category for category, _, _ in guard.spec.layout()] if guard is not None else []
        self._slots = {c: np.array([c == other for other in self._categories]) for c in self._categories}
        self.started = False
        self._size: tuple[int, ...] = ()
        self._tracked = 0  # frames tracked since the tracks (re)started
        self.redetected = 0  # keypoints restarted from a match since the last reset
        self.strayed = 0  # tracks the guard found off their object since the last reset
        self.rematched = 0  # of those, seen again by matching and restarted there
        self._last = np.zeros((0, 2))  # the positions reported for the previous frame (the guard's reference)
        self._start_scores = np.zeros(0)  # the matching scores the tracks started from

    def reset(self) -> None:
        """The next frame re-initialises the tracks by matching."""
        self.started = False

    def extract(self, image: np.ndarray) -> Extraction2D:
        if not self.started or image.shape[:2] != self._size:
            first = self.initializer.extract(image)
            if self.guard is not None:
                first = replace(first, masks=self._slot_masks(self.guard.category_masks(image)))
            self.tracker.start(image, first.uv)
            self.started, self._size, self._tracked = True, image.shape[:2], 0
            self.redetected = self.strayed = self.rematched = 0
            self._last, self._start_scores = first.uv.copy(), first.scores.copy()
            return first
        uv, visible = self.tracker.track(image)
        self._tracked += 1
        found = Extraction2D(uv, visible.astype(np.float32), visible, None)
        if self.guard is not None:
            found = self._keep_on_objects(image, found)
        if self.redetect_every and not found.found.all() and self._tracked % self.redetect_every == 0:
            found = replace(self._redetect(image, found), masks=found.masks)
        self._last = found.uv.copy()
        return found

    def _keep_on_objects(self, image: np.ndarray, tracked: Extraction2D) -> Extraction2D:
        """Tracks off their object's instance mask are matched again or move with their object
        (see ``guard``); the frame's masks go with the keypoints."""
        masks = self.guard.category_masks(image)
        on = np.array(
            [
                on_mask(masks.get(category), point, self.guard_margin_px)
                for category, point in zip(self._categories, tracked.uv, strict=True)
            ]
        )
        strayed = tracked.found & ~on
        if not strayed.any():
            return replace(tracked, masks=self._slot_masks(masks))
        self.strayed += int(strayed.sum())
        uv, found, scores = tracked.uv.copy(), tracked.found.copy(), tracked.scores.copy()
        matched = self.initializer.extract(image)
        # Seen again: matched (on the mask) about as well as when the tracks started.
        seen = strayed & matched.found & (matched.scores >= self.guard_score_ratio * self._start_scores)
        uv[seen], scores[seen] = matched.uv[seen], matched.scores[seen]
        self.rematched += int(seen.sum())
        for slots in self._slots.values():
            hidden = slots & strayed & ~seen
            if not hidden.any():
                continue
            anchors = slots & tracked.found & on
            if anchors.any():  # moves as the object's visible tracks say it moved since the last frame
                uv[hidden] = self._last[hidden] + np.median(tracked.uv[anchors] - self._last[anchors], axis=0)
            else:  # nothing of the object is tracked on it: its best matches, if any
                uv[hidden] = np.where(matched.found[hidden, None], matched.uv[hidden], uv[hidden])
                scores[hidden] = np.where(matched.found[hidden], matched.scores[hidden], 0.0)
                found[hidden] = matched.found[hidden]
        self.tracker.start(image, uv)
        return Extraction2D(uv, scores.astype(np.float32), found, None, self._slot_masks(masks))

    def _slot_masks(self, masks: dict[str, np.ndarray | None]) -> list[np.ndarray | None]:
        return [masks.get(category) for category in self._categories]

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


def on_mask(mask: np.ndarray | None, uv: np.ndarray, margin_px: int) -> bool:
    """Pixel ``uv`` (u, v) is within ``margin_px`` (a square) of a pixel of the (H, W) bool
    ``mask`` (False for no mask and for a pixel outside the image)."""
    if mask is None or not np.all(np.isfinite(uv)):
        return False
    u, v = round(float(uv[0])), round(float(uv[1]))
    height, width = mask.shape
    if not (0 <= u < width and 0 <= v < height):
        return False
    return bool(mask[max(0, v - margin_px) : v + margin_px + 1, max(0, u - margin_px) : u + margin_px + 1].any())


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
        points, valid = lift(found.uv, depth_m, intrinsics, extrinsics, lifting, found.masks)
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
