"""Keypoints seen through kil_perception in the simulator: what ``keypoint_node`` would publish
for the simulated camera, without ROS. Feeds a policy in offline rollouts
(``python -m kil_eval.evaluate --keypoints perception``), so that extraction methods and
backends are compared with the same protocol as the oracle keypoints (paper §IV-F).
"""

from __future__ import annotations

import time

from kil_interfaces.data import KeypointArrayData
from kil_perception.extraction import TrackingExtractor, keypoints_message
from kil_perception.instances import SimulatorMasks
from kil_perception.lifting import depth_in_metres
from kil_perception.pipeline import ExtractorConfig, build_extractor
from kil_perception.spec import load_spec
from kil_sim.world import SimWorld


class PerceivedKeypoints:
    """A keypoint source ``(world, stamp_ns) -> KeypointArrayData`` rendering the scene camera.

    Args:
        spec: keypoint spec YAML (its categories are the simulator objects' categories).
        config: extraction settings; ``instance_source="masks"`` uses the simulator's instance
            masks (as ``sim_node``'s mask topic would).
    """

    def __init__(self, spec: str, config: ExtractorConfig) -> None:
        self.spec = load_spec(spec)
        self.config = config
        self.use_masks = config.uses_given_masks
        self._masks = None
        self.extractor = build_extractor(self.spec, config, SimulatorMasks(lambda: self._masks))

    def reset(self) -> None:
        """A new episode: tracking starts again from matching."""
        if isinstance(self.extractor, TrackingExtractor):
            self.extractor.reset()

    def __call__(self, world: SimWorld, stamp_ns: int) -> KeypointArrayData:
        started = time.perf_counter()
        frame = world.render(instance_mask=self.use_masks)
        if self.use_masks:
            categories = {i + 1: o.model.category for i, o in enumerate(world.objects)}
            self._masks = (frame.instance_mask.astype(int), categories)
        found = self.extractor.extract(frame.rgb)
        return keypoints_message(
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
