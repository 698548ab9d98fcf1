"""Quest controller -> end-effector targets (ROS-free; ``teleop_node`` runs it at 10 Hz).

Clutched relative control: while the grip (middle-finger) button is held, the TCP target follows
the controller's motion since the grip was pressed, rotated into the robot base frame by
``controller_to_base`` and scaled by ``scale``; orientation changes are applied the same way.
Releasing the grip freezes the arm (no new targets, so the interpolator holds); pressing it
again re-anchors at the robot's current pose, so the operator can reposition the hand without
the arm following and the arm never jumps. The index trigger closes the gripper (with
hysteresis). A target step longer than ``max_step_m`` / ``max_rotation_step_rad`` per update
(tracking glitch, hand flung) is shortened to the limit along the same direction.

Quest2ROS publishes the controller as ``geometry_msgs/PoseStamped`` and its buttons as
``quest2ros/OVR2ROSInputs`` (button_upper, button_lower, thumb_stick_horizontal,
thumb_stick_vertical, press_index, press_middle); :class:`ControllerInputs` holds what is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kil_interfaces.rotations import euler_to_matrix, matrix_to_quat, quat_angle, quat_slerp, quat_to_matrix


@dataclass
class TeleopConfig:
    """Attributes:
    scale: robot translation per controller translation.
    controller_to_base_rpy: roll, pitch, yaw (rad) of the controller's tracking frame in the
        robot base frame (how the operator stands relative to the robot).
    max_step_m / max_rotation_step_rad: largest target change per update.
    grip_threshold: grip (press_middle) above this holds the clutch.
    close_above / open_below: trigger (press_index) hysteresis of the gripper command.
    """

    scale: float = 1.0
    controller_to_base_rpy: tuple[float, float, float] = (0.0, 0.0, 0.0)
    max_step_m: float = 0.03
    max_rotation_step_rad: float = 0.3
    grip_threshold: float = 0.5
    close_above: float = 0.6
    open_below: float = 0.4

    def __post_init__(self) -> None:
        if self.scale <= 0:
            raise ValueError(f"teleop scale must be > 0, got {self.scale}")
        if self.max_step_m <= 0 or self.max_rotation_step_rad <= 0:
            raise ValueError("teleop max_step_m and max_rotation_step_rad must be > 0")
        if not 0.0 <= self.open_below < self.close_above <= 1.0:
            raise ValueError(
                f"teleop gripper hysteresis needs 0 <= open_below < close_above <= 1, "
                f"got {self.open_below}, {self.close_above}"
            )
        if len(self.controller_to_base_rpy) != 3:
            raise ValueError("teleop controller_to_base_rpy must be (roll, pitch, yaw)")


@dataclass
class ControllerInputs:
    """The buttons teleop uses: grip (press_middle, 0..1), trigger (press_index, 0..1),
    record (button_lower, toggles recording), discard (button_upper)."""

    grip: float = 0.0
    trigger: float = 0.0
    record: bool = False
    discard: bool = False

    @classmethod
    def from_quest2ros(cls, msg) -> ControllerInputs:
        """From a ``quest2ros/OVR2ROSInputs`` message."""
        return cls(float(msg.press_middle), float(msg.press_index), bool(msg.button_lower), bool(msg.button_upper))

    @classmethod
    def from_joy(cls, axes, buttons) -> ControllerInputs:
        """From ``sensor_msgs/Joy`` carrying the OVR2ROSInputs fields in order:
        axes [thumb_h, thumb_v, press_index, press_middle], buttons [button_upper, button_lower]."""
        if len(axes) < 4 or len(buttons) < 2:
            raise ValueError(
                f"Joy needs 4 axes and 2 buttons (OVR2ROSInputs order), got {len(axes)} and {len(buttons)}"
            )
        return cls(float(axes[3]), float(axes[2]), bool(buttons[1]), bool(buttons[0]))


@dataclass
class Target:
    """A TCP target in the base frame: position (3,), quaternion (4,) x, y, z, w, gripper 0..1."""

    position: np.ndarray
    quaternion: np.ndarray
    gripper: float


@dataclass
class QuestTeleop:
    """Clutched controller-to-TCP mapping (see the module docstring)."""

    config: TeleopConfig = field(default_factory=TeleopConfig)

    def __post_init__(self) -> None:
        self.align = euler_to_matrix(np.asarray(self.config.controller_to_base_rpy, np.float64))
        self._anchor: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None
        self._last: Target | None = None
        self.gripper = 1.0  # open

    @property
    def engaged(self) -> bool:
        return self._anchor is not None

    def release(self) -> None:
        """Drop the clutch (e.g. stale inputs): the next engagement re-anchors."""
        self._anchor = self._last = None

    def _gripper(self, trigger: float) -> float:
        if trigger >= self.config.close_above:
            self.gripper = 0.0
        elif trigger <= self.config.open_below:
            self.gripper = 1.0
        return self.gripper

    def update(
        self,
        controller_position: np.ndarray,
        controller_quaternion: np.ndarray,
        inputs: ControllerInputs,
        robot_position: np.ndarray,
        robot_quaternion: np.ndarray,
    ) -> Target | None:
        """The new target, or None while the clutch is released.

        Args:
            controller_position, controller_quaternion: controller pose in its tracking frame.
            inputs: the buttons.
            robot_position, robot_quaternion: the TCP's current pose (base frame), the anchor
                when the clutch engages.
        """
        gripper = self._gripper(inputs.trigger)
        if inputs.grip < self.config.grip_threshold:
            self.release()
            return None
        c_pos = np.asarray(controller_position, np.float64)
        c_rot = quat_to_matrix(np.asarray(controller_quaternion, np.float64))
        if self._anchor is None:
            r_pos = np.asarray(robot_position, np.float64)
            r_rot = quat_to_matrix(np.asarray(robot_quaternion, np.float64))
            self._anchor = (c_pos, c_rot, r_pos, r_rot)
            self._last = Target(r_pos.copy(), matrix_to_quat(r_rot), gripper)
        c0_pos, c0_rot, r0_pos, r0_rot = self._anchor
        position = r0_pos + self.config.scale * self.align @ (c_pos - c0_pos)
        delta = self.align @ (c_rot @ c0_rot.T) @ self.align.T  # controller rotation since the anchor, base frame
        quaternion = matrix_to_quat(delta @ r0_rot)
        target = self._limited(Target(position, quaternion, gripper))
        self._last = target
        return target

    def _limited(self, target: Target) -> Target:
        last = self._last
        step = target.position - last.position
        length = float(np.linalg.norm(step))
        position = target.position
        if length > self.config.max_step_m:
            position = last.position + step * (self.config.max_step_m / length)
        angle = float(quat_angle(last.quaternion, target.quaternion))
        quaternion = target.quaternion
        if angle > self.config.max_rotation_step_rad:
            quaternion = quat_slerp(last.quaternion, target.quaternion, self.config.max_rotation_step_rad / angle)
        return Target(position, quaternion, target.gripper)
