"""Ground-truth semantic keypoints from the simulator (the ``oracle`` keypoint source)."""

from __future__ import annotations

import numpy as np

from kil_interfaces.data import KeypointArrayData
from kil_sim.world import SimWorld


def oracle_keypoints(world: SimWorld, stamp_ns: int, include_distractors: bool = False) -> KeypointArrayData:
    """Every object's keypoints in the base frame, with their pixels in the scene camera.

    Order: objects in ``world.objects`` order (manipulated objects, then the fixture), keypoints
    in each model's order; instance index = order among objects of the same category.
    """
    names, categories, instances, points = [], [], [], []
    seen: dict[str, int] = {}
    for placed in world.objects:
        if placed.name.startswith("distractor") and not include_distractors:
            continue
        category = placed.model.category
        instance = seen.get(category, 0)
        seen[category] = instance + 1
        for keypoint, point in world.keypoints(placed.name).items():
            names.append(keypoint)
            categories.append(category)
            instances.append(instance)
            points.append(point)
    points_array = np.array(points, dtype=np.float64).reshape(-1, 3)
    uv, in_front = world.project(points_array)
    return KeypointArrayData(
        stamp_ns=stamp_ns,
        frame_id=world.config.base_frame,
        method="oracle",
        backend="",
        names=tuple(names),
        categories=tuple(categories),
        instances=np.array(instances, np.uint8),
        uv=uv.astype(np.float32),
        points=points_array,
        scores=np.ones(len(points), np.float32),
        valid=in_front,
    )
