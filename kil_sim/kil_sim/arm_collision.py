"""Collision detection of the simulated arms: what the real controllers' own detection does when
the arm runs into something, so that a policy that drives the gripper into the table or a link
through an object meets the stop it would meet on hardware instead of passing through unfelt.

Both real arms stop on a collision: the Lite6's controller raises C31 "Collision Caused Abnormal
Current" (xArm-Python-SDK ``xarm/core/config/x_code.py``, ``ControllerErrorCodeMap[31]``:
"Please check for collisions, check that the payload settings are correct ...") and the UR5e
goes into a protective stop. Both estimate the external force from the joint currents against a
dynamics model; neither publishes the threshold in newtons (the xArm's sensitivity is a 1-5
setting, the UR's a force limit set in its safety configuration), so here it is a parameter.

:class:`CollisionMonitor` checks two things each time it is updated (``sim_node``: after every
physics step of its loop):

- **contact force**: the net contact force on the robot (``SimWorld.robot_contact_force``:
  gripper, fingers and link capsules; a grasp's squeeze cancels in the sum, a held object's weight
  does not) above ``force_n`` for at least ``duration_s`` of simulated time. Measured on the
  scripted expert's episodes through the Lite6 (place_mug, pour_bottle, place_shoe, 3 each):
  at most 12.5 N at an instant, 7 N averaged over 20 ms; the gripper driven 1 cm into the table:
  about 2.5 kN. The default 50 N sits between.
- **a link in the table**: the link capsules pass through the static table without contact, so the
  table is checked geometrically: a link whose axis (the DH segment, ``ArmModel.link_segments``)
  dips below the table top by more than ``table_depth_m`` is in the table whatever its true
  thickness (the capsules' radii are estimates, so their surfaces are not used: the UR5e's
  pour_bottle side grasp brings link 3's estimated surface up to 2.3 cm into the table while
  its axis stays 3.7 cm above).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CollisionConfig:
    """When the simulated controller takes contact for a collision.

    Attributes:
        force_n: net contact force on the robot that counts (N); 0 turns the force check off.
        duration_s: how long the force must stay above ``force_n`` (s of simulated time).
        table_depth_m: how far a link's axis may dip below the table top (m); < 0 turns the
            check off.
    """

    force_n: float = 50.0
    duration_s: float = 0.02
    table_depth_m: float = 0.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.force_n) and self.force_n >= 0):
            raise ValueError(f"CollisionConfig.force_n must be >= 0 (0: off), got {self.force_n}")
        if not (np.isfinite(self.duration_s) and self.duration_s >= 0):
            raise ValueError(f"CollisionConfig.duration_s must be >= 0, got {self.duration_s}")
        if not np.isfinite(self.table_depth_m):
            raise ValueError(f"CollisionConfig.table_depth_m must be finite (< 0: off), got {self.table_depth_m}")


class CollisionMonitor:
    """Watches one episode of a simulated arm for collisions (:meth:`update`).

    After a collision (:meth:`disarm`) it reports nothing until the contact is over (no link in
    the table, the force below the limit): once the controller's fault is cleared, the arm must be
    able to move away from what it hit without faulting again at once.
    """

    def __init__(self, config: CollisionConfig | None = None) -> None:
        self.config = config or CollisionConfig()
        self._above_since: float | None = None
        self._armed = True
        self.peak_force_n, self.peak_with = 0.0, ""  # the largest net contact force so far, and what pushed

    def reset(self) -> None:
        """A new episode: start watching afresh."""
        self._above_since, self._armed, self.peak_force_n, self.peak_with = None, True, 0.0, ""

    def disarm(self) -> None:
        """A collision was reported: nothing more until the contact is over."""
        self._above_since, self._armed = None, False

    def update(self, world, segments: list[tuple[np.ndarray, np.ndarray, float]], now_s: float) -> str | None:
        """Check the world now; the collision's description, or None.

        Args:
            world: the ``SimWorld`` (its contacts after the last physics step).
            segments: the arm's link segments now ((start, end, radius) per link, base frame, m;
                ``SimulatedArm.tcp_pose_and_links``), the first (standing on the table) not checked.
            now_s: simulated time (s).
        """
        found = self._in_table(segments)
        force, body = world.robot_contact_force() if self.config.force_n > 0 else (0.0, "")
        if force > self.peak_force_n:
            self.peak_force_n, self.peak_with = force, body
        if not self._armed:
            self._armed = found is None and force <= self.config.force_n
            return None
        if found is not None:
            return found
        if force <= self.config.force_n:
            self._above_since = None
            return None
        if self._above_since is None:
            self._above_since = now_s
        if now_s - self._above_since + 1e-9 < self.config.duration_s:
            return None
        return f"{force:.0f} N of contact with {body or 'something'} (limit {self.config.force_n:g} N)"

    def _in_table(self, segments: list[tuple[np.ndarray, np.ndarray, float]]) -> str | None:
        if self.config.table_depth_m < 0:
            return None
        for k, (start, end, _radius) in enumerate(segments[1:], start=2):
            low = min(float(start[2]), float(end[2]))
            if low < -self.config.table_depth_m:
                return f"link {k}'s axis {1000 * -low:.1f} mm below the table top"
        return None


def collision_pose(world) -> str:
    """Where the robot was when it collided, in words: the TCP position and the gripper's
    commanded and measured opening, then the three hardest contacts on the robot (its body, what
    it touched, the force on it: magnitude and vertical component). For the log line a collision
    writes, so that an operator sees which pose hit what (a finger pressing down on a rim, a link
    in the table) without replaying the episode."""
    position = world.tcp_pose()[0]
    contacts = "; ".join(
        f"{mine} on {other} {np.linalg.norm(force):.0f} N (vertical {force[2]:+.0f} N)"
        for mine, other, force in world.robot_contacts()[:3]
    )
    return (
        f"TCP at ({position[0]:.3f}, {position[1]:.3f}, {position[2]:.3f}) m, gripper commanded "
        f"{world.gripper_command():.2f} open, measured {world.gripper_opening():.2f}; contacts: {contacts or 'none'}"
    )
