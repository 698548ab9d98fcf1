"""What a policy sees in the simulator's offline rollouts, one source per kind of policy input:

- :class:`PerceivedKeypoints`: ``kil_perception`` on the rendered camera frame — what
  ``keypoint_node`` would publish for it (any method and backend; instance matching takes the
  simulator's instance masks as ``sim_node``'s mask topic would);
- :class:`OracleKeypoints`: the simulator's ground truth, in a spec's layout or every object's;
- :class:`CameraFrames`: the rendered colour frame (the RGB baseline);
- :class:`S2Frames`: a mask of the task's objects and the relative depth (the S2 baseline;
  the simulator's instance masks stand in for text-prompted segmentation).

A source is called ``(world, stamp_ns)`` and returns the observation. It keeps the frame it last
rendered (``last_rgb``) and the pixels it drew its keypoints from (``last_uv``), so a rollout
can be filmed without rendering twice; ``stateful`` sources (tracking) must see every tick.
Perceived keypoints are also scored against the ground truth on every frame (``errors``: pixel
error per keypoint visible in that frame, NaN otherwise).
"""

from __future__ import annotations

import time

import numpy as np

from kil_eval.specs import ground_truth, pixel_errors
from kil_interfaces.data import KeypointArrayData
from kil_perception.extraction import TrackingExtractor, keypoints_message
from kil_perception.instances import SimulatorMasks
from kil_perception.lifting import depth_in_metres
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import KeypointSpec, load_spec
from kil_sim.oracle import oracle_keypoints
from kil_sim.world import SimWorld


class PerceivedKeypoints:
    """Keypoints extracted from the rendered scene camera (``(world, stamp_ns) -> KeypointArrayData``).

    Args:
        spec: keypoint spec (file or loaded); its categories are the simulator objects' categories.
        config: extraction settings; ``instance_source="masks"`` uses the simulator's masks.
    """

    def __init__(self, spec: str | KeypointSpec, config: ExtractorConfig) -> None:
        self.spec = load_spec(spec) if not isinstance(spec, KeypointSpec) else spec
        self.config = config
        self.use_masks = config.uses_given_masks
        self._masks = None
        self.extractor = build_extractor(self.spec, config, SimulatorMasks(lambda: self._masks))
        self.stateful = isinstance(self.extractor, TrackingExtractor)
        self.names = [name for _, _, name in self.spec.layout()]
        self.categories = [category for category, _, _ in self.spec.layout()]
        self.errors: list[np.ndarray] = []  # (K,) px per perceived frame, NaN where not visible
        self.valid: list[np.ndarray] = []  # (K,) bool per perceived frame: perception found it
        self.seconds: list[float] = []  # extraction + lifting time per frame
        self.stamps: list[int] = []  # each perceived frame's time (ns)
        self.last_rgb: np.ndarray | None = None
        self.last_uv: np.ndarray | None = None

    def reset(self) -> None:
        """A new episode: tracking starts again from matching."""
        if isinstance(self.extractor, TrackingExtractor):
            self.extractor.reset()

    def __call__(self, world: SimWorld, stamp_ns: int) -> KeypointArrayData:
        frame = world.render(instance_mask=self.use_masks)
        started = time.perf_counter()
        if self.use_masks:
            categories = {i + 1: o.model.category for i, o in enumerate(world.objects)}
            self._masks = (frame.instance_mask.astype(int), categories)
        found = self.extractor.extract(frame.rgb)
        keypoints = keypoints_message(
            self.spec,
            found,
            depth_in_metres(frame.depth_mm, "16UC1"),
            world.camera_intrinsics,
            world.camera_extrinsics,
            stamp_ns,
            self.config.method,
            self.config.backend,
            started,
        )
        self.seconds.append(time.perf_counter() - started)
        truth_uv, truth_points, present = ground_truth(world, self.spec)
        seen = present & world.visible(truth_points, frame.depth_mm)
        self.errors.append(pixel_errors(self.spec, found.uv, truth_uv, seen))
        self.valid.append(np.asarray(keypoints.valid, bool).copy())
        self.stamps.append(stamp_ns)
        self.last_rgb, self.last_uv = frame.rgb, found.uv
        return keypoints


class OracleKeypoints:
    """The simulator's ground-truth keypoints: in a spec's layout (so a policy trained on perceived
    keypoints can be fed perfect ones), or every object's keypoints (``kil_sim.oracle``).

    Args:
        spec: keypoint spec (file or loaded), or None for the simulator's own layout.
        render: also render the frame (for filming the rollout).
    """

    stateful = False

    def __init__(self, spec: str | KeypointSpec | None = None, render: bool = False) -> None:
        self.spec = load_spec(spec) if isinstance(spec, str) else spec
        self.render = render
        self.last_rgb: np.ndarray | None = None
        self.last_uv: np.ndarray | None = None
        if self.spec is not None:
            self.names = [name for _, _, name in self.spec.layout()]
            self.categories = [category for category, _, _ in self.spec.layout()]

    def reset(self) -> None:
        pass

    def __call__(self, world: SimWorld, stamp_ns: int) -> KeypointArrayData:
        if self.spec is None:
            keypoints = oracle_keypoints(world, stamp_ns)
            self.names, self.categories = list(keypoints.names), list(keypoints.categories)
        else:
            uv, points, present = ground_truth(world, self.spec)
            layout = self.spec.layout()
            keypoints = KeypointArrayData(
                stamp_ns=stamp_ns,
                frame_id=world.config.base_frame,
                method="oracle",
                backend="",
                names=tuple(n for _, _, n in layout),
                categories=tuple(c for c, _, _ in layout),
                instances=np.array([i for _, i, _ in layout], np.uint8),
                uv=uv.astype(np.float32),
                points=np.where(present[:, None], points, 0.0),
                scores=present.astype(np.float32),
                valid=present,
            )
        self.last_uv = keypoints.uv
        self.last_rgb = world.render().rgb if self.render else None
        return keypoints


class CameraFrames:
    """The rendered colour frame, (H, W, 3) uint8 RGB (the RGB baseline's observation)."""

    stateful = False

    def __init__(self) -> None:
        self.names: list[str] = []
        self.categories: list[str] = []
        self.last_rgb: np.ndarray | None = None
        self.last_uv = None

    def reset(self) -> None:
        pass

    def __call__(self, world: SimWorld, stamp_ns: int) -> np.ndarray:
        self.last_rgb = world.render().rgb
        return self.last_rgb


class S2Frames(CameraFrames):
    """The S2 baseline's (H, W, 2) uint8 frame: the task objects' mask from the simulator's
    instance masks (standing in for text-prompted segmentation, as KIL-IN's masks do) and the
    rendered depth as a relative image (``kil_policy.s2_observation``). ``last_rgb`` keeps the
    colour frame (for filming).

    Args:
        categories: the object categories the mask shows (the checkpoint's ``mask_categories``).
    """

    def __init__(self, categories: tuple[str, ...]) -> None:
        super().__init__()
        self.categories_shown = tuple(categories)

    def __call__(self, world: SimWorld, stamp_ns: int) -> np.ndarray:
        from kil_policy.s2_observation import s2_frame, task_mask

        frame = world.render(instance_mask=True)
        values = {i + 1: o.model.category for i, o in enumerate(world.objects)}
        mask = task_mask(frame.instance_mask, values, self.categories_shown)
        self.last_rgb = frame.rgb
        return s2_frame(mask, depth_in_metres(frame.depth_mm, "16UC1"))
