"""Trained policies as controllers of the simulator's offline episodes (``kil_sim.rollout``).

The episode loop is the simulator's (10 Hz chunks through ``kil_control``'s interpolation into
the arm, as on the robot); what this module adds is the policy's side: its observation comes from
a source of ``kil_eval.observations`` every 10 Hz tick, as ``keypoint_node`` and the camera would
deliver it. Ticks whose observation no prediction will see are skipped (the runner counts them)
unless the source is stateful (tracking) or the episode is being filmed: the chunks are the same,
the rendering and perception are not spent.
"""

from __future__ import annotations

import time

import numpy as np

from kil_eval.observations import OracleKeypoints
from kil_interfaces.data import ActionChunkData
from kil_perception.overlay import draw_keypoints
from kil_sim.world import SimWorld


class Film:
    """Frames of one filmed episode: the policy's camera view with the keypoints it was given
    drawn on, every ``every``-th control tick."""

    def __init__(self, every: int = 2) -> None:
        self.every = every
        self.frames: list[np.ndarray] = []
        self.ticks = 0

    def add(self, source) -> None:
        if self.ticks % self.every == 0 and source.last_rgb is not None:
            frame = source.last_rgb
            if source.last_uv is not None and len(source.names):
                frame = draw_keypoints(frame, source.last_uv, source.names, source.categories)
            self.frames.append(frame)
        self.ticks += 1


class PolicyController:
    """A trained policy as a controller.

    Args:
        runner: the policy on the 10 Hz clock (``kil_policy.runner.PolicyRunner``).
        source: (world, stamp_ns) -> the observation (``kil_eval.observations``); default the
            simulator's ground-truth keypoints.
        film: record this episode's frames (observations are then taken every tick).
    """

    done = False  # a policy never declares itself finished; success or the time limit ends it

    def __init__(self, runner, source=None, film: Film | None = None) -> None:
        self.runner = runner
        self.source = source or OracleKeypoints()
        self.film = film
        self.predict_s: list[float] = []  # policy time per chunk (s)
        runner.reset()
        self.source.reset()

    def act(self, world: SimWorld, stamp_ns: int) -> ActionChunkData | None:
        lazy = self.film is None and not getattr(self.source, "stateful", False)
        if lazy and not self.runner.observation_needed():
            self.runner.skip()
            return None
        observation = self.source(world, stamp_ns)
        if self.film is not None:
            self.film.add(self.source)
        started = time.perf_counter()
        chunk = self.runner.tick(world.robot_state(stamp_ns), observation, stamp_ns)
        if chunk is not None:
            self.predict_s.append(time.perf_counter() - started)
        return chunk
