"""Offscreen RGB-D (+ segmentation) rendering of one MuJoCo camera in a single pass.

The GL backend is ``MUJOCO_GL`` (``egl``, the default here, or ``osmesa`` on a headless
machine; ``glfw`` on a desktop), chosen when the renderer is created, so it does not matter
whether ``mujoco`` was imported first. Colour and depth come from the same render pass
(``mjr_readPixels`` reads both buffers); segmentation needs a second pass and is only rendered
when asked for.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass

import mujoco
import numpy as np


def _preload_triton() -> None:
    """Import triton (torch's GPU compiler) before Mesa's software renderer starts.

    Both bundle LLVM; loading triton after llvmpipe crashes the process (seen here: a
    segmentation fault in ``import triton``, reached through ``import diffusers``). Loading it
    first is harmless, so a process that renders and then runs a policy survives.
    """
    if importlib.util.find_spec("triton") is not None:
        importlib.import_module("triton")


def _gl_context(width: int, height: int):
    backend = os.environ.get("MUJOCO_GL", "egl").lower()
    if backend in ("egl", "osmesa"):
        _preload_triton()
    if backend == "egl":
        from mujoco.egl import GLContext
    elif backend == "osmesa":
        from mujoco.osmesa import GLContext
    elif backend == "glfw":
        from mujoco.glfw import GLContext
    else:
        raise ValueError(f"MUJOCO_GL={backend!r} is not supported; use egl, osmesa or glfw")
    return GLContext(width, height)


@dataclass
class RenderedFrame:
    """One camera frame.

    Attributes:
        rgb: (H, W, 3) uint8 colour.
        depth_m: (H, W) float32 depth along the optical axis (m).
        geom_ids: (H, W) int32 MuJoCo geom id per pixel (-1 = none), or None when not rendered.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    geom_ids: np.ndarray | None = None


class SceneCapture:
    """One camera's view of a model's state as MuJoCo's abstract scene (``mjvScene``): what
    :class:`CameraRenderer` draws. Capturing copies the geoms' poses out of ``MjData`` on the CPU
    (tens of microseconds, no GL context), so a simulation loop can capture the state of one
    instant and have the frame drawn elsewhere (``kil_sim.camera_thread``) while physics goes on.

    Args:
        model: the MuJoCo model. camera: camera name in the model.
    """

    def __init__(self, model: mujoco.MjModel, camera: str) -> None:
        camera_id = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_CAMERA, camera)
        if camera_id < 0:
            raise ValueError(f"camera {camera!r} not found in the MuJoCo model")
        self.model = model
        self.scene = mujoco.MjvScene(model, maxgeom=2000)
        self._camera = mujoco.MjvCamera()
        self._camera.type = mujoco.mjtCamera.mjCAMERA_FIXED
        self._camera.fixedcamid = camera_id
        self._option = mujoco.MjvOption()

    def capture(self, data: mujoco.MjData) -> SceneCapture:
        """Take the scene of ``data`` now (call ``mj_forward`` first if it changed); returns self."""
        mujoco.mjv_updateScene(
            self.model, data, self._option, None, self._camera, mujoco.mjtCatBit.mjCAT_ALL, self.scene
        )
        return self


class CameraRenderer:
    """Renders one named camera of a model offscreen. The GL context is bound to the thread that
    creates the renderer: draw and close it on that thread.

    Args:
        model: the MuJoCo model (its ``offwidth``/``offheight`` must cover the size).
        camera: camera name in the model.
        width, height: image size (px).
    """

    def __init__(self, model: mujoco.MjModel, camera: str, width: int, height: int) -> None:
        self._capture = SceneCapture(model, camera)
        if width > model.vis.global_.offwidth or height > model.vis.global_.offheight:
            raise ValueError(
                f"render size {width}x{height} exceeds the model's offscreen buffer "
                f"{model.vis.global_.offwidth}x{model.vis.global_.offheight}"
            )
        self.model = model
        self._width, self._height = width, height
        self._gl = _gl_context(width, height)
        self._gl.make_current()
        self._context = mujoco.MjrContext(model, mujoco.mjtFontScale.mjFONTSCALE_150)
        mujoco.mjr_setBuffer(mujoco.mjtFramebuffer.mjFB_OFFSCREEN, self._context)
        self._viewport = mujoco.MjrRect(0, 0, width, height)
        extent = model.stat.extent
        self._near = model.vis.map.znear * extent
        self._far = model.vis.map.zfar * extent
        self._rgb = np.empty((height, width, 3), np.uint8)
        self._depth = np.empty((height, width), np.float32)

    def render(self, data: mujoco.MjData, segmentation: bool = False) -> RenderedFrame:
        """Render the current state of ``data`` (call ``mj_forward`` first if it changed)."""
        return self.draw(self._capture.capture(data), segmentation)

    def draw(self, capture: SceneCapture, segmentation: bool = False) -> RenderedFrame:
        """Render a captured scene of this renderer's model (the capture must not change meanwhile)."""
        if capture.model is not self.model:
            raise ValueError("the scene was captured from another model than this renderer draws")
        scene = capture.scene
        self._gl.make_current()
        mujoco.mjr_render(self._viewport, scene, self._context)
        mujoco.mjr_readPixels(self._rgb, self._depth, self._viewport, self._context)
        # OpenGL depth buffer [0, 1] -> metric depth along the optical axis; rows bottom-up.
        depth = self._near / (1.0 - self._depth * (1.0 - self._near / self._far))
        frame = RenderedFrame(rgb=np.flipud(self._rgb).copy(), depth_m=np.flipud(depth).astype(np.float32))
        if segmentation:
            frame.geom_ids = self._render_geom_ids(scene)
        return frame

    def _render_geom_ids(self, scene: mujoco.MjvScene) -> np.ndarray:
        flags = scene.flags
        flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = True
        flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = True
        try:
            mujoco.mjr_render(self._viewport, scene, self._context)
            seg = np.empty((self._height, self._width, 3), np.uint8)
            mujoco.mjr_readPixels(seg, None, self._viewport, self._context)
        finally:
            flags[mujoco.mjtRndFlag.mjRND_SEGMENT] = False
            flags[mujoco.mjtRndFlag.mjRND_IDCOLOR] = False
        # IDCOLOR encodes (scene geom index + 1) in 24 bits of RGB; 0 is background.
        seg = np.flipud(seg).astype(np.int32)
        index = seg[..., 0] + (seg[..., 1] << 8) + (seg[..., 2] << 16) - 1
        geom_ids = np.full(index.shape, -1, np.int32)
        scene_geoms = scene.geoms
        lookup = np.full(scene.ngeom + 1, -1, np.int32)
        for i in range(scene.ngeom):
            if scene_geoms[i].objtype == mujoco.mjtObj.mjOBJ_GEOM:
                lookup[i] = scene_geoms[i].objid
        hit = (index >= 0) & (index < scene.ngeom)
        geom_ids[hit] = lookup[index[hit]]
        return geom_ids

    def close(self) -> None:
        """Free the GL context (also done when the object is garbage-collected)."""
        if self._gl is not None:
            self._context.free()
            self._gl.free()
            self._gl = None
