"""Trained policies as controllers of the simulator's offline episodes (``kil_sim.rollout``).

The episode loop is the simulator's (10 Hz chunks through ``kil_control``'s interpolation into
the arm, as on the robot); what this module adds is the policy's side: its inputs come from a
keypoint source — the simulator's ground truth, or ``kil_perception`` on the rendered camera.
"""

from __future__ import annotations

from kil_interfaces.data import ActionChunkData
from kil_sim.oracle import oracle_keypoints
from kil_sim.world import SimWorld


class PolicyController:
    """A trained policy as a controller, fed ground-truth (oracle) keypoints or any other source.

    Args:
        runner: the policy on the 10 Hz clock (``kil_policy.runner.PolicyRunner``).
        keypoints: (world, stamp_ns) -> KeypointArrayData; default the simulator's oracle.
    """

    done = False  # a policy never declares itself finished; the episode's time limit ends it

    def __init__(self, runner, keypoints=None) -> None:
        self.runner = runner
        self.keypoints = keypoints or oracle_keypoints
        runner.reset()
        reset = getattr(self.keypoints, "reset", None)  # (a perception source with state, e.g. tracking)
        if reset is not None:
            reset()

    def act(self, world: SimWorld, stamp_ns: int) -> ActionChunkData | None:
        return self.runner.tick(world.robot_state(stamp_ns), self.keypoints(world, stamp_ns), stamp_ns)
