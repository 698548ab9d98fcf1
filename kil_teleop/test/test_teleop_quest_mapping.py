"""The clutched Quest -> TCP mapping: no jumps on engagement, frame alignment and scale, rotation,
re-anchoring, step limits, gripper hysteresis, input parsing and config validation."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from kil_teleop.quest_mapping import ControllerInputs, QuestTeleop, TeleopConfig

ROBOT_POS = np.array([0.3, -0.1, 0.25])
ROBOT_QUAT = Rotation.from_euler("xyz", [np.pi, 0.0, 0.3]).as_quat()  # x, y, z, w (tool down)
IDENTITY = np.array([0.0, 0.0, 0.0, 1.0])
GRIP = ControllerInputs(grip=1.0)


def test_engaging_starts_at_the_robot_pose_and_follows_aligned_scaled_motion() -> None:
    teleop = QuestTeleop(TeleopConfig(scale=0.5, controller_to_base_rpy=(0.0, 0.0, np.pi / 2)))
    c0 = np.array([1.0, 2.0, 1.5])
    first = teleop.update(c0, IDENTITY, GRIP, ROBOT_POS, ROBOT_QUAT)
    np.testing.assert_allclose(first.position, ROBOT_POS)  # no jump, wherever the hand is
    assert Rotation.from_quat(first.quaternion).approx_equal(Rotation.from_quat(ROBOT_QUAT), atol=1e-9)
    moved = teleop.update(c0 + [0.02, 0.0, 0.0], IDENTITY, GRIP, ROBOT_POS + 0.01, ROBOT_QUAT)
    # controller +x, rotated 90 degrees about z into the base frame, halved: base +y 1 cm
    np.testing.assert_allclose(moved.position, ROBOT_POS + [0.0, 0.01, 0.0], atol=1e-12)


def test_orientation_follows_the_controller_rotation_in_the_base_frame() -> None:
    teleop = QuestTeleop()
    teleop.update(np.zeros(3), IDENTITY, GRIP, ROBOT_POS, ROBOT_QUAT)
    turn = Rotation.from_euler("z", 0.2)
    target = teleop.update(np.zeros(3), turn.as_quat(), GRIP, ROBOT_POS, ROBOT_QUAT)
    expected = turn * Rotation.from_quat(ROBOT_QUAT)
    assert Rotation.from_quat(target.quaternion).approx_equal(expected, atol=1e-9)


def test_release_gives_no_targets_and_reengaging_reanchors() -> None:
    teleop = QuestTeleop()
    teleop.update(np.zeros(3), IDENTITY, GRIP, ROBOT_POS, ROBOT_QUAT)
    teleop.update(np.array([0.02, 0.0, 0.0]), IDENTITY, GRIP, ROBOT_POS, ROBOT_QUAT)
    assert teleop.update(np.array([0.3, 0.0, 0.0]), IDENTITY, ControllerInputs(grip=0.2), ROBOT_POS, ROBOT_QUAT) is None
    assert not teleop.engaged
    elsewhere = ROBOT_POS + [0.02, 0.0, 0.0]  # where the arm went
    again = teleop.update(np.array([0.3, 0.0, 0.0]), IDENTITY, GRIP, elsewhere, ROBOT_QUAT)
    np.testing.assert_allclose(again.position, elsewhere)  # the hand moved 28 cm while released: ignored


def test_large_steps_are_limited_and_caught_up() -> None:
    teleop = QuestTeleop(TeleopConfig(max_step_m=0.02, max_rotation_step_rad=0.1))
    teleop.update(np.zeros(3), IDENTITY, GRIP, ROBOT_POS, ROBOT_QUAT)
    far = np.array([0.0, 0.1, 0.0])
    turn = Rotation.from_euler("x", 0.35).as_quat()
    positions, angles = [], []
    for _ in range(6):
        target = teleop.update(far, turn, GRIP, ROBOT_POS, ROBOT_QUAT)
        positions.append(target.position.copy())
        angles.append((Rotation.from_quat(target.quaternion) * Rotation.from_quat(ROBOT_QUAT).inv()).magnitude())
    steps = np.linalg.norm(np.diff([ROBOT_POS, *positions], axis=0), axis=1)
    assert np.all(steps <= 0.02 + 1e-12) and steps[0] == pytest.approx(0.02)
    np.testing.assert_allclose(positions[-1], ROBOT_POS + far, atol=1e-12)  # caught up after 5 ticks
    assert angles[0] == pytest.approx(0.1) and angles[-1] == pytest.approx(0.35)


def test_gripper_hysteresis() -> None:
    teleop = QuestTeleop()
    commands = []
    for trigger in (0.0, 0.5, 0.7, 0.5, 0.45, 0.3, 0.55):
        target = teleop.update(
            np.zeros(3), IDENTITY, ControllerInputs(grip=1.0, trigger=trigger), ROBOT_POS, ROBOT_QUAT
        )
        commands.append(target.gripper)
    assert commands == [1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0]


def test_inputs_from_messages() -> None:
    # quest2ros is not on any registry here: a stand-in with OVR2ROSInputs' fields.
    quest = SimpleNamespace(
        button_upper=True, button_lower=False, thumb_stick_horizontal=0.0, thumb_stick_vertical=0.0,
        press_index=0.8, press_middle=0.9,
    )  # fmt: skip
    assert ControllerInputs.from_quest2ros(quest) == ControllerInputs(grip=0.9, trigger=0.8, record=False, discard=True)
    assert ControllerInputs.from_joy([0.0, 0.0, 0.8, 0.9], [1, 0]) == ControllerInputs(0.9, 0.8, False, True)
    with pytest.raises(ValueError, match="Joy needs 4 axes and 2 buttons"):
        ControllerInputs.from_joy([0.0, 0.1], [1])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"scale": 0.0}, "scale must be > 0"),
        ({"max_step_m": 0.0}, "max_step_m and max_rotation_step_rad must be > 0"),
        ({"close_above": 0.3, "open_below": 0.4}, "hysteresis"),
        ({"controller_to_base_rpy": (0.0, 1.0)}, "roll, pitch, yaw"),
    ],
)
def test_config_validation(kwargs, message) -> None:
    with pytest.raises(ValueError, match=message):
        TeleopConfig(**kwargs)
