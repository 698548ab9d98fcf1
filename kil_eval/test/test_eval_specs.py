"""The shipped keypoint specs of the simulated tasks: valid, made by the annotate tool from the
simulator's geometry (regenerating gives the same file), every keypoint on its own object in the
reference frame; and the ground truth used to score perception."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from kil_eval.specs import (
    SHIPPED_TASKS,
    TASK_KEYPOINTS,
    ground_truth,
    instance_objects,
    make_spec,
    pixel_errors,
    reference_configuration,
    shipped_spec,
)
from kil_perception.spec import load_spec
from kil_sim.camera import CameraConfig


@pytest.mark.parametrize("task", SHIPPED_TASKS)
def test_shipped_spec_validates_with_the_documented_layout(task: str) -> None:
    spec = load_spec(shipped_spec(task))
    expected = [(c, names) for c, names in TASK_KEYPOINTS[task]]
    assert [(c.name, c.keypoint_names) for c in spec.categories] == expected
    for category in spec.categories:
        assert len(category.references) == category.instances  # one reference per instance
        for reference in category.references:
            assert reference.image().shape == (480, 640, 3)
    assert load_spec(shipped_spec("place_2_shoes")).categories[0].instances == 2


@pytest.mark.parametrize("task", SHIPPED_TASKS)
def test_shipped_keypoints_land_on_their_own_object(task: str) -> None:
    spec = load_spec(shipped_spec(task))
    world = reference_configuration(task).make_world()
    try:
        world.step(0.3)
        frame = world.render(instance_mask=True)
        objects = instance_objects(world)
        for category in spec.categories:
            for instance, reference in enumerate(category.references):
                value = world.object_index(objects[(category.name, instance)]) + 1
                for name, (u, v) in reference.keypoints.items():
                    u, v = round(u), round(v)
                    patch = frame.instance_mask[v - 1 : v + 2, u - 1 : u + 2]
                    assert (patch == value).any(), f"{task}: {category.name}[{instance}].{name} is not on its object"
    finally:
        world.close()


@pytest.mark.parametrize("task", SHIPPED_TASKS)
def test_shipped_spec_is_what_make_spec_writes(task: str, tmp_path: Path) -> None:
    """Regenerate when the simulator's geometry changes: python -m kil_eval.specs --task T --out ..."""
    shipped, fresh = load_spec(shipped_spec(task)), load_spec(make_spec(task, tmp_path))
    for a, b in zip(shipped.categories, fresh.categories, strict=True):
        for ra, rb in zip(a.references, b.references, strict=True):
            np.testing.assert_allclose(list(ra.keypoints.values()), list(rb.keypoints.values()), atol=0.11)
            np.testing.assert_array_equal(ra.image(), rb.image())


def test_spec_at_another_resolution_scales_the_pixels(tmp_path: Path) -> None:
    small = load_spec(make_spec("place_mug", tmp_path, replace(CameraConfig(), width=320, height=240)))
    big = load_spec(shipped_spec("place_mug"))
    assert small.categories[0].references[0].image().shape == (240, 320, 3)
    for a, b in zip(small.categories, big.categories, strict=True):
        scaled = (np.array(list(b.references[0].keypoints.values())) + 0.5) / 2 - 0.5  # pixel centres
        np.testing.assert_allclose(list(a.references[0].keypoints.values()), scaled, atol=0.1)


def test_ground_truth_matches_the_spec_and_instances_are_matched_by_error() -> None:
    spec = load_spec(shipped_spec("place_2_shoes"))
    world = reference_configuration("place_2_shoes").make_world()
    try:
        world.step(0.3)
        uv, points, present = ground_truth(world, spec)
    finally:
        world.close()
    assert present.all() and uv.shape == (9, 2) and points.shape == (9, 3)
    annotated = np.array([p for c in spec.categories for r in c.references for p in r.keypoints.values()])
    np.testing.assert_allclose(uv, annotated, atol=0.11)  # the reference frame is the annotated one
    np.testing.assert_allclose(pixel_errors(spec, uv, uv, present), 0.0, atol=1e-9)
    swapped = uv.copy()
    swapped[[0, 1, 2, 3, 4, 5]] = uv[[3, 4, 5, 0, 1, 2]]  # the two shoes found the other way round
    np.testing.assert_allclose(pixel_errors(spec, swapped, uv, present), 0.0, atol=1e-9)
    off = uv.copy()
    off[6] += [3.0, 4.0]  # the tray's centre 5 px away
    errors = pixel_errors(spec, off, uv, present)
    assert errors[6] == pytest.approx(5.0) and np.delete(errors, 6).max() < 1e-9
    hidden = present.copy()
    hidden[7] = False
    assert np.isnan(pixel_errors(spec, uv, uv, hidden)[7])
