"""Offline episodes: the simulator, a 10 Hz controller and the interpolator, faster than real time.

The control path is the robot's: the controller (scripted expert or policy) emits
``ActionChunk``s at 10 Hz, ``kil_control.interpolation.ChunkInterpolator`` turns them into servo
setpoints, and the simulated arm tracks those. An optional sink receives what the real topics
would carry (camera frames, robot state, action chunks) for recording demonstrations.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from kil_control.interpolation import ChunkInterpolator, InterpolatorConfig
from kil_interfaces.data import ActionChunkData, RobotStateData
from kil_sim.expert import ScriptedExpert
from kil_sim.tasks import EpisodeConfig, left_scene, task
from kil_sim.world import CameraFrame, SimWorld

_NS = 1_000_000_000


@dataclass(frozen=True)
class RolloutConfig:
    """Rates and limits of an offline episode.

    Attributes:
        control_hz: controller rate (the 10 Hz action clock).
        camera_hz: camera frame rate given to the sink (0: no rendering).
        instance_masks: render the sink's frames with their instance masks (one render pass).
        state_hz: robot-state rate given to the sink.
        max_duration_s: the episode ends here at the latest (s).
        settle_s: physics time before the episode starts, so objects come to rest (s).
        linger_s: time simulated after the controller finishes (or the task is done), before
            success is read (s).
        stop_on_success: end the episode once the task is complete (after ``linger_s``), as an
            operator would; otherwise a controller that never finishes (a policy) runs until
            ``max_duration_s``.
        interpolator: servo rate and safety limits.
    """

    control_hz: float = 10.0
    camera_hz: float = 15.0
    instance_masks: bool = False
    state_hz: float = 100.0
    max_duration_s: float = 40.0
    settle_s: float = 0.3
    linger_s: float = 0.6
    stop_on_success: bool = False
    interpolator: InterpolatorConfig = field(default_factory=lambda: InterpolatorConfig(rate_hz=100.0))

    def __post_init__(self) -> None:
        for name in ("control_hz", "state_hz", "max_duration_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RolloutConfig.{name} must be > 0, got {getattr(self, name)}")
        if self.camera_hz < 0:
            raise ValueError(f"RolloutConfig.camera_hz must be >= 0, got {self.camera_hz}")


class Controller(Protocol):
    """Anything that commands the arm at the control rate."""

    done: bool

    def act(self, world: SimWorld, stamp_ns: int) -> ActionChunkData | None: ...


class EpisodeSink(Protocol):
    """Receives the streams a real episode would put on its topics (all stamps in ns)."""

    def on_camera(self, frame: CameraFrame, stamp_ns: int) -> None: ...

    def on_state(self, state: RobotStateData) -> None: ...

    def on_action(self, chunk: ActionChunkData) -> None: ...


class ExpertController:
    """A :class:`ScriptedExpert` as a controller: one-pose chunks due one control period ahead,
    like teleoperation."""

    def __init__(self, expert: ScriptedExpert, control_hz: float, frame_id: str) -> None:
        self.expert = expert
        self.step_ns = round(_NS / control_hz)
        self.frame_id = frame_id

    @property
    def done(self) -> bool:
        return self.expert.done

    def act(self, world: SimWorld, stamp_ns: int) -> ActionChunkData:
        position, quaternion, gripper = self.expert.act()
        return ActionChunkData(
            stamp_ns=stamp_ns + self.step_ns,
            frame_id=self.frame_id,
            step_ns=self.step_ns,
            positions=position[None],
            quaternions=quaternion[None],
            gripper=np.array([gripper], np.float32),
        )


@dataclass
class EpisodeResult:
    """Outcome of one episode: completion in [0, 1] (success = 1), duration (s), control steps,
    and why it ended: ``"task complete"``, ``"controller finished"``, ``"time limit"`` or, when an
    object fell off the table or physics blew up, ``kil_sim.tasks.left_scene``'s reason."""

    completion: float
    duration_s: float
    control_steps: int
    ended: str = "time limit"

    @property
    def success(self) -> bool:
        return self.completion >= 1.0


def run_episode(
    episode: EpisodeConfig,
    controller: Controller | None = None,
    config: RolloutConfig | None = None,
    sink: EpisodeSink | None = None,
    world: SimWorld | None = None,
    rng: np.random.Generator | None = None,
    observer: Callable[[SimWorld, int], None] | None = None,
) -> EpisodeResult:
    """Run one episode from ``episode``'s initial configuration.

    Args:
        controller: commands the arm; default: the task's scripted expert (seeded by ``rng``).
        config: rates and limits.
        sink: receives camera frames, robot states and action chunks as they happen.
        world: reuse a world built from ``episode`` (it is reset); default: a new one.
        rng: randomness of the default expert; default: seeded by the episode's seed.
        observer: called with (world, stamp_ns) at every control tick, before the controller acts
            (e.g. ``kil_eval.failures.FailureMonitor``).
    """
    config = config or RolloutConfig()
    spec = task(episode.task)
    own_world = world is None
    world = world or episode.make_world()
    world.reset()
    world.step(config.settle_s)
    if controller is None:
        expert = ScriptedExpert(spec, world, rng or np.random.default_rng(episode.seed), config.control_hz)
        controller = ExpertController(expert, config.control_hz, world.config.base_frame)
    position, quaternion = world.commanded_tcp_pose()
    interpolator = ChunkInterpolator(config.interpolator, position, quaternion, world.gripper_opening())
    servo_ns = config.interpolator.period_ns
    control_ns = round(_NS / config.control_hz)
    state_ns = round(_NS / config.state_hz)
    camera_ns = round(_NS / config.camera_hz) if config.camera_hz > 0 else None
    start_ns = round(world.time * _NS)
    next_control = next_state = next_camera = start_ns
    success_state: dict = {}
    completion = 0.0
    steps = 0
    end_ns = start_ns + round(config.max_duration_s * _NS)
    finished_at: int | None = None
    ended = "time limit"
    now = start_ns
    while now < end_ns:
        if now >= next_control:
            next_control += control_ns
            if observer is not None:
                observer(world, now)
            completion = spec.success(world, success_state)
            gone = left_scene(world) if completion < 1.0 else None
            if gone is not None:
                ended = gone
                break
            complete = config.stop_on_success and completion >= 1.0
            if controller.done or complete:
                finished_at = finished_at or now
                if now - finished_at >= config.linger_s * _NS:
                    ended = "controller finished" if controller.done else "task complete"
                    break
            else:
                chunk = controller.act(world, now)
                steps += 1
                if chunk is not None:
                    interpolator.add_chunk(chunk, now)
                    if sink is not None:
                        sink.on_action(chunk)
        setpoint = interpolator.setpoint(now)
        world.set_target(setpoint.position, setpoint.quaternion)
        world.set_gripper(setpoint.gripper)
        if sink is not None and now >= next_state:
            next_state += state_ns
            sink.on_state(world.robot_state(now))
        if sink is not None and camera_ns is not None and now >= next_camera:
            next_camera += camera_ns
            sink.on_camera(world.render(instance_mask=config.instance_masks), now)
        world.step(servo_ns / _NS)
        now = round(world.time * _NS)
    completion = spec.success(world, success_state)
    if own_world:
        world.close()
    return EpisodeResult(completion, (now - start_ns) / _NS, steps, ended)
