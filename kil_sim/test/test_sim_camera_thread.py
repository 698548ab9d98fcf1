"""The camera thread draws the scene as it was captured (physics goes on meanwhile), one frame at
a time, with the GL context on its own thread; a failure reaches the simulation loop."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from kil_sim.camera_thread import CameraJob, CameraThread
from kil_sim.objects import block, tray
from kil_sim.scene import TCP_DOWN, PlacedObject
from kil_sim.world import SimWorld


def _world(x: float) -> SimWorld:
    world = SimWorld(
        [PlacedObject("block", block(size=(0.03, 0.03, 0.03)), (x, 0.0)), PlacedObject("tray", tray(), (0.45, -0.22))]
    )
    world.step(0.2)
    return world


class _Frames:
    """Collects delivered frames; the thread they were delivered on."""

    def __init__(self) -> None:
        self.frames: list = []
        self.threads: set[str] = set()
        self.gate = threading.Event()  # cleared: delivery waits (a frame still being drawn)
        self.gate.set()

    def __call__(self, frame, job: CameraJob) -> None:
        assert self.gate.wait(30.0)
        self.frames.append((frame, job))
        self.threads.add(threading.current_thread().name)


def test_the_captured_instant_is_drawn_while_the_world_moves_on() -> None:
    world = _world(0.35)
    delivered = _Frames()
    camera = CameraThread(delivered, name="test-camera")
    try:
        then = world.render(instance_mask=True)  # this thread's own renderer: the state at the capture
        camera.submit(CameraJob(world, world.capture_camera(), 123_000_000, True, extra="oracle"))
        # physics goes on: the gripper moves down into view before the frame is drawn
        world.set_target(np.array([0.35, 0.0, 0.12]), np.array(TCP_DOWN))
        world.step(1.0)
        now = world.render()
        assert camera.wait_idle(30.0)
        ((frame, job),) = delivered.frames
        assert delivered.threads == {"test-camera"}
        assert job.extra == "oracle" and frame.stamp_s == pytest.approx(0.123)
        np.testing.assert_array_equal(frame.rgb, then.rgb)
        np.testing.assert_array_equal(frame.depth_mm, then.depth_mm)
        np.testing.assert_array_equal(frame.instance_mask, then.instance_mask)
        assert np.abs(now.rgb.astype(int) - then.rgb.astype(int)).sum() > 0, "the gripper should have moved in view"

        # a frame at a time: the capture being drawn must not change
        delivered.gate.clear()
        camera.submit(CameraJob(world, world.capture_camera(), 0))
        assert not camera.idle and not camera.wait_idle(0.2)
        with pytest.raises(RuntimeError, match="still being drawn"):
            camera.submit(CameraJob(world, world.capture_camera(), 0))
        delivered.gate.set()
        assert camera.wait_idle(30.0)

        # a new episode's world: the thread draws it with a renderer of its model
        other = _world(0.25)
        camera.submit(CameraJob(other, other.capture_camera(), 0))
        assert camera.wait_idle(30.0)
        np.testing.assert_array_equal(delivered.frames[-1][0].depth_mm, other.render().depth_mm)
        assert camera.frames == 3
        other.close()
    finally:
        camera.close()
        world.close()
    assert not camera._thread.is_alive()
    with pytest.raises(RuntimeError, match="closed"):
        camera.submit(CameraJob(world, world.capture_camera(), 0))


def test_a_frame_that_fails_is_raised_to_the_simulation_loop() -> None:
    world = _world(0.35)

    def deliver(frame, job) -> None:
        raise ValueError("the publisher is gone")

    camera = CameraThread(deliver)
    try:
        camera.submit(CameraJob(world, world.capture_camera(), 0))
        assert camera.wait_idle(30.0)
        with pytest.raises(RuntimeError, match="camera thread failed: the publisher is gone"):
            camera.submit(CameraJob(world, world.capture_camera(), 0))
        camera.submit(CameraJob(world, world.capture_camera(), 0))  # raised once; the thread goes on
        assert camera.wait_idle(30.0) and camera.frames == 0
    finally:
        camera.close()
        world.close()
