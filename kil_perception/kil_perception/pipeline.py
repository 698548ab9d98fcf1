"""One place that turns settings into an extractor: the method (image matching, instance
matching, tracking), the feature backend, the instance source and the tracker. Used by
``keypoint_node`` and by the policy's offline extraction, so both build the same thing.
"""

from __future__ import annotations

from dataclasses import dataclass

from kil_perception import backends
from kil_perception.backends.base import LuminanceBackend, ScaledBackend
from kil_perception.extraction import ImageMatcher, ScoreGate, TrackingExtractor
from kil_perception.instances import InstanceMatcher, InstanceSource, Sam3Instances
from kil_perception.layout_check import LayoutCheckConfig
from kil_perception.spec import KeypointSpec
from kil_perception.tracking import CoTrackerOnline, LucasKanadeTracker

METHODS = ("image", "instance", "track")
COLOURS = ("rgb", "luminance")
INSTANCE_SOURCES = ("sam3", "masks")
TRACKERS = ("lk", "cotracker3")


@dataclass
class ExtractorConfig:
    """Attributes:
    method: "image" (IM), "instance" (IN) or "track" (T).
    backend: feature backend name (``kil_perception.backends.BACKENDS``); model: its hub id or
        local path ("" = the backend's default).
    device: torch device.
    instance_source: "sam3" (text prompts from the spec) or "masks" (given instance masks, e.g.
        the simulator's mask topic); instance_model: SAM3 hub id or local path ("" = facebook/sam3);
        instance_threshold: minimum instance confidence.
    tracker: "lk" (pyramidal Lucas-Kanade, weights-free) or "cotracker3" (online CoTracker3);
        tracker_repo: its torch.hub repo or a local clone.
    track_init: how tracks start after a reset: "image" or "instance" matching (the paper: instance).
    redetect_every: tracking: 0 = a lost track stays with the tracker (the paper); N > 0 = every
        N-th tracked frame with a lost track, matching (``track_init``'s) restarts the lost
        keypoints it finds (``TrackingExtractor``).
    mask_guard: tracking started by instance matching: False (the paper) or True = every frame,
        a track that left its object's instance mask (it followed the gripper over the object) is
        matched again inside the mask, or moves with its object while hidden, and depth is read
        on the object (``TrackingExtractor``'s ``guard``); costs the instance source (SAM3, or the
        given masks) on every frame, as instance matching does, and a match on frames with a stray.
    min_score: matched keypoints whose cosine similarity is below this are reported not found
        (invalid) — occluded or mismatched ones are masked instead of lifted wrongly; 0 = off (the
        paper's matching keeps every argmax).
    colour: what the feature backend sees: "rgb", or "luminance" (the references and the frames
        in grey, so descriptors match by shape and shading rather than hue: with ``effnet_lite0``
        an unseen mug of another colour then matches where in colour it jumped onto the robot's
        white pedestal; see the README's measurements).
    feature_scale: the frames (and references) are resized by this factor before the feature
        backend, keypoints are still pixels of the camera image: 2 halves the feature grid's cell
        on the image (at 320x240 effnet_lite0's 8 px cell is about 3 cm on the table), for 3-4x
        the backbone's time. 1 = off.
    layout_check: image matching (and tracking started by it): 0 = each keypoint's own argmax (the
        paper), w > 0 = an object's keypoints matched together, keeping their reference layout, w
        the similarity given up per reference spread of distance from it (``layout_check``).
    """

    method: str = "image"
    backend: str = "effnet_lite0"
    model: str = ""
    device: str = "cpu"
    instance_source: str = "sam3"
    instance_model: str = ""
    instance_threshold: float = 0.3
    tracker: str = "lk"
    tracker_repo: str = "facebookresearch/co-tracker"
    track_init: str = "image"
    redetect_every: int = 0
    mask_guard: bool = False
    min_score: float = 0.0
    colour: str = "rgb"
    feature_scale: float = 1.0
    layout_check: float = 0.0

    def __post_init__(self) -> None:
        for field, value, allowed in (
            ("method", self.method, METHODS),
            ("colour", self.colour, COLOURS),
            ("instance_source", self.instance_source, INSTANCE_SOURCES),
            ("tracker", self.tracker, TRACKERS),
            ("track_init", self.track_init, ("image", "instance")),
        ):
            if value not in allowed:
                raise ValueError(f"{field} must be one of {', '.join(allowed)}, got {value!r}")
        if self.redetect_every < 0:
            raise ValueError(f"redetect_every must be 0 (never) or more, got {self.redetect_every}")
        if self.mask_guard and not self.tracks_from_instances:
            raise ValueError(
                "mask_guard keeps tracks on instance masks: it needs method 'track' with track_init 'instance', "
                f"got method {self.method!r}, track_init {self.track_init!r}"
            )
        if not 0.0 <= self.instance_threshold <= 1.0:
            raise ValueError(f"instance_threshold must be in [0, 1], got {self.instance_threshold}")
        if not 0.25 <= self.feature_scale <= 4.0:
            raise ValueError(f"feature_scale must be in [0.25, 4], got {self.feature_scale}")
        if not -1.0 <= self.min_score <= 1.0:
            raise ValueError(f"min_score must be a cosine similarity in [-1, 1], got {self.min_score}")
        if self.layout_check < 0:
            raise ValueError(f"layout_check must be 0 (off) or a positive weight, got {self.layout_check}")
        if self.layout_check > 0 and self.uses_instances:
            raise ValueError(
                "layout_check is a check of image matching: it needs method 'image', or 'track' with track_init "
                f"'image', got method {self.method!r}, track_init {self.track_init!r}"
            )

    @property
    def tracks_from_instances(self) -> bool:
        """Tracking whose tracks start by instance matching (the paper's KIL-T)."""
        return self.method == "track" and self.track_init == "instance"

    @property
    def uses_instances(self) -> bool:
        return self.method == "instance" or self.tracks_from_instances

    @property
    def uses_given_masks(self) -> bool:
        """Instance masks come from outside (a mask topic, the simulator), not from SAM3."""
        return self.uses_instances and self.instance_source == "masks"


def build_extractor(
    spec: KeypointSpec, config: ExtractorConfig, masks: InstanceSource | None = None
) -> ImageMatcher | InstanceMatcher | ScoreGate | TrackingExtractor:
    """The extractor for ``config``.

    Args:
        masks: with ``instance_source="masks"``, the source serving the current frame's masks
            (e.g. ``SimulatorMasks`` over the newest mask message).
    """
    backend = backends.make_backend(config.backend, config.device, config.model or None)
    if config.colour == "luminance":
        backend = LuminanceBackend(backend)
    if config.feature_scale != 1.0:
        backend = ScaledBackend(backend, config.feature_scale)
    instances = None
    if config.uses_instances:
        if config.uses_given_masks:
            if masks is None:
                raise ValueError("instance_source 'masks' needs instance masks (e.g. an instance mask topic)")
            source = masks
        else:
            source = Sam3Instances(config.device, config.instance_model or None)
        first = instances = InstanceMatcher(spec, backend, source, config.instance_threshold)
    else:
        layout = LayoutCheckConfig(weight=config.layout_check) if config.layout_check > 0 else None
        first = ImageMatcher(spec, backend, layout)
    if config.min_score > 0:
        first = ScoreGate(first, config.min_score)
    if config.method != "track":
        return first
    if config.tracker == "cotracker3":
        tracker = CoTrackerOnline(device=config.device, repo=config.tracker_repo)
    else:
        tracker = LucasKanadeTracker()
    return TrackingExtractor(first, tracker, config.redetect_every, guard=instances if config.mask_guard else None)
