"""Camera frames drawn on a thread of their own, as a real camera is a device of its own.

The simulation loop captures the scene at a frame's instant (``SimWorld.capture_camera``: the
geoms' poses copied into MuJoCo's abstract scene, microseconds) and goes on stepping physics while
this thread draws the frame, converts it and hands it on (``sim_node`` publishes it). Drawn inside
the physics tick, a 320x240 frame (about 16 ms with Mesa's llvmpipe on a 2-core machine) cost the
vendor controller's 125-200 Hz tick two or three periods per frame: the simulated arms then got
a thinner servo stream than a real controller does (``python -m kil_bringup.bench_arms``,
``physics_ticks_per_sim_s``). MuJoCo releases the GIL while it draws (``mjr_render``,
``mjr_readPixels``), so physics runs meanwhile.

One frame at a time: a frame that falls due while the last one is still being drawn is skipped
(:attr:`CameraThread.idle`; sim_node counts them), as a camera drops frames it cannot deliver. The
GL context lives and dies on this thread. A failure to draw or deliver a frame is raised by the
next :meth:`CameraThread.submit` (the node stops with it, as it did when it drew frames itself).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kil_sim.rendering import CameraRenderer, SceneCapture


@dataclass
class CameraJob:
    """One frame to draw.

    Attributes:
        world: the ``SimWorld`` it was captured from (its renderer and conversion to a camera frame).
        capture: the scene at the frame's instant (``SimWorld.capture_camera``).
        stamp_ns: the frame's stamp (simulated time of the capture, ns).
        instance_mask: also draw the per-object instance mask.
        extra: whatever the caller computed at the same instant and wants delivered with the frame.
    """

    world: Any
    capture: SceneCapture
    stamp_ns: int
    instance_mask: bool = False
    extra: Any = None


class CameraThread:
    """Draws :class:`CameraJob` frames on a daemon thread and calls ``deliver(frame, job)`` there
    (``frame``: the world's ``CameraFrame``).

    Args:
        deliver: called on the camera thread with each drawn frame.
        name: the thread's name.
    """

    def __init__(self, deliver: Callable[[Any, CameraJob], None], name: str = "camera") -> None:
        self._deliver = deliver
        self._condition = threading.Condition()
        self._job: CameraJob | None = None
        self._stopping = False
        self._error: BaseException | None = None
        self.frames = 0  # frames drawn and delivered
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def idle(self) -> bool:
        """No frame is being drawn: the next may be captured and submitted."""
        return self._job is None

    def submit(self, job: CameraJob) -> None:
        """Draw ``job`` on the camera thread. Raises the error of an earlier frame if one failed,
        and RuntimeError when a frame is still being drawn (check :attr:`idle` first: the capture
        it draws must not change meanwhile) or the thread was closed."""
        with self._condition:
            if self._error is not None:
                error, self._error = self._error, None
                raise RuntimeError(f"the camera thread failed: {error}") from error
            if self._stopping:
                raise RuntimeError("the camera thread was closed")
            if self._job is not None:
                raise RuntimeError("a camera frame is still being drawn: submit when idle")
            self._job = job
            self._condition.notify_all()

    def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no frame is being drawn; False on the time-out."""
        with self._condition:
            return self._condition.wait_for(lambda: self._job is None, timeout_s)

    def close(self, timeout_s: float = 5.0) -> None:
        """Finish the frame being drawn, free the GL context and stop the thread."""
        with self._condition:
            self._stopping = True
            self._condition.notify_all()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        renderer: CameraRenderer | None = None
        try:
            while True:
                with self._condition:
                    self._condition.wait_for(lambda: self._job is not None or self._stopping)
                    if self._job is None:
                        return  # stopping, nothing left to draw
                    job = self._job
                try:
                    if renderer is None or renderer.model is not job.world.model:  # a new episode's world
                        if renderer is not None:
                            renderer.close()
                            renderer = None
                        renderer = job.world.camera_renderer()
                    rendered = renderer.draw(job.capture, segmentation=job.instance_mask)
                    self._deliver(job.world.camera_frame(rendered, job.stamp_ns / 1e9), job)
                    self.frames += 1
                except Exception as error:  # handed to the simulation loop (raised by submit)
                    with self._condition:
                        self._error = error
                finally:
                    with self._condition:
                        self._job = None
                        self._condition.notify_all()
        finally:
            if renderer is not None:
                renderer.close()
