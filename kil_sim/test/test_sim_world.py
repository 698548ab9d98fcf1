"""SimWorld: rendered colour/depth agree with the scene, the camera model matches the render,
the gripper tracks targets within its speed limits and lifts objects by friction."""

from __future__ import annotations

import mujoco
import numpy as np
import pytest

from kil_interfaces.rotations import quat_angle
from kil_sim.objects import block, mug, tray
from kil_sim.scene import TCP_DOWN, PlacedObject
from kil_sim.world import SimWorld

BLOCK_HALF = 0.025


@pytest.fixture(scope="module")
def world():
    objects = [
        PlacedObject("block", block(size=(BLOCK_HALF,) * 3), (0.32, -0.08), yaw=0.3),
        PlacedObject("mug", mug("mug_blue"), (0.40, 0.12), yaw=-0.6),
        PlacedObject("tray", tray(), (0.45, -0.22)),
    ]
    w = SimWorld(objects)
    w.step(0.3)  # let the objects settle
    yield w
    w.close()


def _pixel_rays(world: SimWorld, pixels: np.ndarray) -> np.ndarray:
    """(N, 2) integer pixels -> (N, 3) unit ray directions in the base frame."""
    intr = world.camera_intrinsics
    rays = np.stack([(pixels[:, 0] - intr.cx) / intr.fx, (pixels[:, 1] - intr.cy) / intr.fy, np.ones(len(pixels))], 1)
    rotation = world.camera_extrinsics.matrix[:3, :3]
    return rays @ rotation.T  # optical-z component stays 1: scaling by depth gives the point


def test_camera_pose_matches_mujoco_camera(world: SimWorld) -> None:
    camera_id = mujoco.mj_name2id(world.model, mujoco.mjtObj.mjOBJ_CAMERA, "scene_camera")
    extrinsics = world.camera_extrinsics
    np.testing.assert_allclose(world.data.cam_xpos[camera_id], extrinsics.translation, atol=1e-9)
    mj_rotation = world.data.cam_xmat[camera_id].reshape(3, 3)  # columns: x right, y up, z back
    np.testing.assert_allclose(mj_rotation @ np.diag([1, -1, -1]), extrinsics.matrix[:3, :3], atol=1e-6)


def test_block_top_face_depth_matches_geometry(world: SimWorld) -> None:
    frame = world.render(instance_mask=True)
    block_index = 1  # objects[0] + 1
    top_z = world.object_pose("block")[0][2] + 2 * BLOCK_HALF
    vs, us = np.nonzero(frame.instance_mask == block_index)
    pixels = np.stack([us, vs], 1).astype(np.float64)
    rays = _pixel_rays(world, pixels)
    origin = world.camera_extrinsics.translation
    depth_along_axis = (top_z - origin[2]) / rays[:, 2]  # ray hits the plane z = top_z
    hits = origin + rays * depth_along_axis[:, None]
    centre = world.object_pose("block")[0]
    on_top = np.all(np.abs(hits[:, :2] - centre[:2]) < 0.6 * BLOCK_HALF, axis=1)  # well inside the face
    assert on_top.sum() > 30, "the block's top face should cover many pixels"
    measured = frame.depth_mm[vs[on_top], us[on_top]].astype(np.float64) / 1000.0
    np.testing.assert_allclose(measured, depth_along_axis[on_top], atol=0.005)


def test_projected_keypoints_land_on_their_objects(world: SimWorld) -> None:
    frame = world.render(instance_mask=True)
    intr, to_camera = world.camera_intrinsics, world.camera_extrinsics.inverse()
    for index, name, keypoint in [(1, "block", "top"), (2, "mug", "rim"), (2, "mug", "handle")]:
        point = world.keypoints(name)[keypoint]
        optical = to_camera.apply(point)
        u, v = np.rint(intr.project(optical[None])[0]).astype(int)
        assert frame.instance_mask[v, u] == index, f"{name}.{keypoint} projects to ({u}, {v}) off the object"
        # The depth there is the keypoint's own depth (it is on the visible surface).
        assert abs(frame.depth_mm[v, u] / 1000.0 - optical[2]) < 0.01, f"{name}.{keypoint}"


def test_rgb_shows_the_objects_colours(world: SimWorld) -> None:
    frame = world.render(instance_mask=True)
    block_rgb = frame.rgb[frame.instance_mask == 1].astype(float).mean(axis=0)
    mug_rgb = frame.rgb[frame.instance_mask == 2].astype(float).mean(axis=0)
    assert block_rgb[0] > block_rgb[2] + 40  # red block
    assert mug_rgb[2] > mug_rgb[0] + 40  # blue mug
    assert frame.depth_mm.dtype == np.uint16 and frame.rgb.dtype == np.uint8
    assert frame.rgb.shape == (480, 640, 3) and frame.depth_mm.shape == (480, 640)


def test_depth_out_of_range_reads_zero() -> None:
    from kil_sim.camera import depth_to_millimetres

    depth = np.array([[0.1, 0.5, 2.0, 3.5, np.nan]], np.float32)
    np.testing.assert_array_equal(depth_to_millimetres(depth, 0.25, 3.0), [[0, 500, 2000, 0, 0]])


def test_tcp_tracks_targets_within_speed_limits() -> None:
    w = SimWorld([])
    start, _ = w.tcp_pose()
    target = start + np.array([0.2, 0.1, -0.1])
    turned = np.array([np.cos(np.pi / 8), np.sin(np.pi / 8), 0.0, 0.0])  # TCP_DOWN turned 45 deg about z
    w.set_target(target, turned)
    w.step(0.1)
    position, quaternion = w.commanded_tcp_pose()
    limits = w.config.gripper
    assert np.linalg.norm(position - start) == pytest.approx(limits.max_linear_speed * 0.1, rel=0.02)
    assert quat_angle(np.array(TCP_DOWN), quaternion) == pytest.approx(limits.max_angular_speed * 0.1, rel=0.02)
    w.step(1.0)
    np.testing.assert_allclose(w.commanded_tcp_pose()[0], target, atol=1e-9)
    position, quaternion = w.tcp_pose()  # the measured TCP follows through the weld
    np.testing.assert_allclose(position, target, atol=1e-4)
    assert quat_angle(quaternion, turned) < 1e-3
    with pytest.raises(ValueError, match="unit"):
        w.set_target(target, [0, 0, 0, 2])
    w.close()


def _pick(grip: bool) -> float:
    """Descend on a block, close (or not), lift; return the block's final height (m)."""
    w = SimWorld([PlacedObject("block", block(size=(0.02, 0.02, BLOCK_HALF), mass=0.15), (0.35, 0.0))])
    w.step(0.2)
    w.set_target([0.35, 0.0, 0.12], TCP_DOWN)
    w.step(1.0)
    w.set_target([0.35, 0.0, 0.018], TCP_DOWN)
    w.step(0.8)
    if grip:
        w.set_gripper(0.0)
        w.step(0.6)
        assert 0.4 < w.gripper_opening() < 0.6, "fingers should stop on the 40 mm block"
    w.set_target([0.35, 0.0, 0.25], TCP_DOWN)
    w.step(1.2)
    height = float(w.object_pose("block")[0][2])
    w.close()
    return height


def test_gripper_lifts_a_block_by_friction() -> None:
    assert _pick(grip=True) > 0.2
    assert _pick(grip=False) < 0.01


def test_rendering_then_importing_torch_compilers_does_not_crash() -> None:
    """Regression: triton imported after Mesa's llvmpipe segfaulted (both bundle LLVM)."""
    import subprocess
    import sys

    code = (
        "from kil_sim.objects import block\n"
        "from kil_sim.scene import PlacedObject\n"
        "from kil_sim.world import SimWorld\n"
        "w = SimWorld([PlacedObject('b', block(), (0.3, 0.0))])\n"
        "assert w.render().rgb.mean() > 0\n"
        "import diffusers.schedulers, torch._dynamo\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
