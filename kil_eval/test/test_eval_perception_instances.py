"""Instance matching with the simulator's masks: two shoes, keypoints on both, padding when one is gone."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from eval_perception_fixtures import write_spec

from kil_perception.backends import make_backend
from kil_perception.instances import Instance, InstanceMatcher, SimulatorMasks
from kil_perception.spec import load_spec
from kil_sim.objects import shoe
from kil_sim.scene import PlacedObject
from kil_sim.world import SimWorld

NAMES = ("heel", "toe", "opening")


def _world(positions):
    objects = [
        PlacedObject(f"shoe_{i}", shoe(f"s{i}", colour=(0.6, 0.3, 0.15)), p, 0.2) for i, p in enumerate(positions)
    ]
    world = SimWorld(objects)
    world.step(0.2)
    return world


def _truth(world, name):
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    return intr.project(to_cam.apply(np.array([world.keypoints(name)[n] for n in NAMES])))


def _masks(world):
    frame = world.render(instance_mask=True)
    return lambda: (frame.instance_mask, {i + 1: o.model.category for i, o in enumerate(world.objects)})


def test_two_instances_are_matched_inside_their_masks(tmp_path: Path) -> None:
    reference = _world([(0.36, 0.0)])
    spec_path = write_spec(
        tmp_path, reference.render().rgb, dict(zip(NAMES, _truth(reference, "shoe_0"), strict=True)), name="shoe"
    )
    spec_path.write_text(spec_path.read_text().replace("instances: 1", "instances: 2"))
    spec = load_spec(spec_path)
    reference.close()
    world = _world([(0.30, 0.12), (0.44, -0.1)])
    matcher = InstanceMatcher(spec, make_backend("effnet_lite0"), SimulatorMasks(_masks(world)))
    found = matcher.extract(world.render().rgb)
    assert found.uv.shape == (6, 2) and found.found.all()
    # Slot order: the instance nearest the camera (larger x -> lower in the image) first.
    truth = np.vstack([_truth(world, "shoe_1"), _truth(world, "shoe_0")])
    errors = np.linalg.norm(found.uv - truth, axis=1)
    assert np.median(errors) < 10.0, errors
    world.close()


def test_a_missing_instance_is_padded_invalid(tmp_path: Path) -> None:
    world = _world([(0.36, 0.0)])
    spec_path = write_spec(tmp_path, world.render().rgb, dict(zip(NAMES, _truth(world, "shoe_0"), strict=True)), "shoe")
    spec_path.write_text(spec_path.read_text().replace("instances: 1", "instances: 2"))
    matcher = InstanceMatcher(load_spec(spec_path), make_backend("classic"), SimulatorMasks(_masks(world)))
    found = matcher.extract(world.render().rgb)
    assert found.found.tolist() == [True] * 3 + [False] * 3
    np.testing.assert_array_equal(found.uv[3:], 0.0)
    low_confidence = InstanceMatcher(
        load_spec(spec_path),
        make_backend("classic"),
        lambda image, category, prompt: [Instance(np.ones((480, 640), bool), 0.1)],
    )
    assert not low_confidence.extract(world.render().rgb).found.any()  # below the threshold: nothing kept
    world.close()
