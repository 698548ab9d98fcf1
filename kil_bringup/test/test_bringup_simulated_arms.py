"""use_sim: the simulator's UR5e behind a simulated ur_robot_driver interface, driven by our real
adapter (ur5e_node) and interpolator_node, as processes over Fast DDS. The scripted expert's
episode runs through the whole path; targets beyond reach or beyond a joint limit are held."""

from __future__ import annotations

import re
import time
from dataclasses import replace

import numpy as np
import pytest
import rclpy
from geometry_msgs.msg import PoseStamped
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile
from sensor_msgs.msg import JointState
from std_msgs.msg import Float64MultiArray

from kil_bringup.graph import SIM_TCP_OFFSET_M, expert_graph, teleop_graph
from kil_bringup.run_graph import start, stop
from kil_control import ur5e
from kil_interfaces.diagnostics import OK
from kil_interfaces.msg import EpisodeOutcome, RobotState
from kil_interfaces.rotations import quat_to_matrix
from kil_interfaces.srv import ResetEpisode
from kil_interfaces.testing import DiagnosticsListener, call_service, spin_while_alive


def _arm_graph(robot: str, **sim):
    """expert_graph's nodes (sim_node + adapter + interpolator), sim_node's parameters updated."""
    nodes = expert_graph(robot)
    assert [n.name for n in nodes] == ["sim_node", f"{robot}_node", "interpolator_node"]
    return [replace(n, parameters=n.parameters | sim) if n.name == "sim_node" else n for n in nodes]


def _listener():
    rclpy.init()
    return rclpy.create_node(
        "simulated_arm_test", parameter_overrides=[Parameter("use_sim_time", Parameter.Type.BOOL, True)]
    )


def test_the_graph_puts_the_adapter_on_the_simulated_driver() -> None:
    from kil_sim.arms import UR5E_TCP_OFFSET_M

    nodes = {n.name: n for n in teleop_graph("ur5e", use_sim=True)}
    assert nodes["sim_node"].parameters["robot"] == "ur5e" and nodes["sim_node"].parameters["base_frame"] == "base"
    assert nodes["ur5e_node"].parameters["tcp_offset_m"] == SIM_TCP_OFFSET_M["ur5e"] == UR5E_TCP_OFFSET_M
    assert not nodes["ur5e_node"].remappings  # relative driver topics: they follow the namespace
    assert all(n.parameters.get("use_sim_time") for n in nodes.values() if n.name != "sim_node")
    lite6 = {n.name: n for n in teleop_graph("lite6", use_sim=True, namespace="left")}
    assert lite6["sim_node"].parameters["xarm_hw_ns"] == lite6["lite6_node"].parameters["namespace"] == "ufactory"
    assert lite6["sim_node"].namespace == lite6["lite6_node"].namespace == "left"
    # physics and /clock tick at the vendor controller's rate (UR5e 125 Hz, Lite6 servo 200 Hz)
    assert nodes["sim_node"].parameters["state_rate_hz"] == 125.0
    assert lite6["sim_node"].parameters["state_rate_hz"] == 200.0
    with pytest.raises(ValueError, match="robot:=sim is the simulator's floating gripper already"):
        teleop_graph("sim", use_sim=True)
    with pytest.raises(ValueError, match="use camera:=sim"):
        teleop_graph("ur5e", camera="zed2i", use_sim=True)


@pytest.mark.parametrize(
    ("robot", "task", "index"),
    # configurations each arm reaches; UR5e pour_bottle: the half turn to the side grasp, from the
    # arm's own start orientation, on one IK branch (it failed here until both were fixed)
    [("ur5e", "place_mug", 0), ("ur5e", "pour_bottle", 0), ("lite6", "pour_bottle", 0)],
)
def test_expert_episode_through_adapter_and_simulated_driver(robot: str, task: str, index: int) -> None:
    """Expert chunks -> interpolator_node -> the adapter -> the simulated vendor driver (UR5e:
    forward_position_controller; Lite6: set_servo_cartesian through the controller's IK) -> the
    arm's joints -> the gripper; the episode succeeds, and /kil/robot_state comes from the adapter."""
    sim = {"real_time_factor": 0.5, "task": task, "index": index}
    processes = start(_arm_graph(robot, **sim))
    node = _listener()
    outcomes: list = []
    states: list = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(EpisodeOutcome, "/kil/episode_outcome", outcomes.append, latched)
    node.create_subscription(RobotState, "/kil/robot_state", states.append, 10)
    try:
        spin_while_alive(node, lambda: bool(outcomes), 400, processes)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    assert outcomes, "no episode outcome"
    assert outcomes[0].success, outcomes[0].reason
    names = {"ur5e": ur5e.JOINT_NAMES, "lite6": tuple(f"joint{i}" for i in range(1, 7))}[robot]
    assert states and tuple(states[-1].joint_names) == names
    travelled = np.abs(np.array(states[-1].joint_positions) - np.array(states[0].joint_positions))
    assert travelled.max() > 0.2, travelled  # the arm's joints did the work
    assert {s.header.frame_id for s in states} == {nodes_base(robot)}


def nodes_base(robot: str) -> str:
    return {"ur5e": "base", "lite6": "link_base"}[robot]


def test_ur5e_targets_beyond_reach_or_joint_limits_are_held(tmp_path) -> None:
    """A servo target 1.5 m away: ur5e_node refuses it (no command); a joint command beyond
    +-2 pi straight to the driver: the simulated controller refuses it. The joints stay put and
    each refusal is logged with its reason."""
    log = tmp_path / "nodes.log"
    with log.open("w") as out:
        processes = start(_arm_graph("ur5e", controller="none")[:2], stdout=out)  # sim_node + ur5e_node
    node = _listener()
    joints: list = []
    commands: list = []
    node.create_subscription(JointState, "/joint_states", joints.append, 10)
    node.create_subscription(Float64MultiArray, "/forward_position_controller/commands", commands.append, 10)
    target_pub = node.create_publisher(PoseStamped, "/kil/servo_target", 10)
    command_pub = node.create_publisher(Float64MultiArray, "/forward_position_controller/commands", 10)

    def spin(seconds: float) -> None:
        spin_while_alive(node, lambda: False, seconds, processes, period_s=0.05)

    try:
        deadline = time.monotonic() + 120
        while len(joints) < 5 and time.monotonic() < deadline:
            spin(0.1)
        assert joints, "no /joint_states from the simulated driver"
        start_q = np.array(joints[-1].position)
        far = PoseStamped()
        far.header.frame_id = "base"
        far.pose.position.x, far.pose.position.z = 1.5, 0.3
        far.pose.orientation.x = 1.0  # tool pointing down
        for _ in range(10):
            target_pub.publish(far)
            spin(0.2)
        assert not commands, "an out-of-reach target was commanded"
        beyond = start_q.copy()
        beyond[0] = 7.0  # shoulder_pan beyond +2 pi
        for _ in range(5):
            command_pub.publish(Float64MultiArray(data=[float(v) for v in beyond]))
            spin(0.2)
        spin(1.0)
        assert np.allclose(np.array(joints[-1].position), start_q, atol=1e-9)
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    text = log.read_text()
    assert "servo target (1.500, 0.000, 0.300): out of reach: no IK solution" in text, text
    assert "refused" in text.split("out of reach: no IK solution", 1)[1].splitlines()[0], text
    assert "shoulder_pan_joint = 7.000 rad beyond its upper limit 6.283; holding the last target" in text, text


def test_lite6_out_of_range_targets_hold_and_a_controller_fault_stops_streaming(tmp_path) -> None:
    """A configuration beyond the Lite6's reach is refused by ~/reset, naming the pose and the reach.
    Servo targets streamed within the adapter's rules (small steps) out beyond the Lite6's reach:
    the simulated controller answers ret -8 and the arm stops at the edge (a target that followed
    a refused one in the same burst is not sent: no step fault); a 50 mm servo step sent
    straight to the controller faults it (err 99), and the adapter then sends nothing more."""
    from xarm_msgs.msg import RobotMsg
    from xarm_msgs.srv import MoveCartesian

    log = tmp_path / "nodes.log"
    with log.open("w") as out:
        # (the simulator's own layout: place_mug's tray there is beyond a Lite6)
        graph = _arm_graph("lite6", controller="none", task="pour_bottle", scene_layout="simulated")
        processes = start(graph[:2], stdout=out)
    node = _listener()
    states: list = []
    reports: list = []
    node.create_subscription(RobotState, "/kil/robot_state", states.append, 10)
    node.create_subscription(RobotMsg, "/ufactory/robot_states", reports.append, 10)
    target_pub = node.create_publisher(PoseStamped, "/kil/servo_target", 10)
    servo = node.create_client(MoveCartesian, "/ufactory/set_servo_cartesian")

    def spin(seconds: float) -> None:
        spin_while_alive(node, lambda: False, seconds, processes, period_s=0.02)

    try:
        deadline = time.monotonic() + 120
        ready = lambda: reports and reports[-1].mode == 1 and reports[-1].state == 2  # noqa: E731
        while not (len(states) >= 5 and ready()) and time.monotonic() < deadline:
            spin(0.1)
        assert states and ready(), "lite6_node did not bring the simulated controller into servo mode"
        request = ResetEpisode.Request(task="place_mug", setting="in_distribution", index=0)
        refused = call_service(node, ResetEpisode, "/sim_node/reset", request)
        assert not refused.success and "place_mug in_distribution #0 is beyond the lite6's reach" in refused.message
        assert "has no lite6 solution" in refused.message and "reach 0.444 m" in refused.message, refused.message
        first = states[-1]
        position = np.array([first.eef_pose.position.x, first.eef_pose.position.y, first.eef_pose.position.z])
        q = first.eef_pose.orientation
        assert quat_to_matrix(np.array([q.x, q.y, q.z, q.w]))[2, 2] < -0.99  # tool down
        target = PoseStamped()
        target.header.frame_id = "link_base"
        target.pose.orientation = q
        for x in np.arange(position[0], 0.75, 0.004):  # 4 mm steps: within the step rule
            target.pose.position.x, target.pose.position.y, target.pose.position.z = float(x), *position[1:]
            target_pub.publish(target)
            spin(0.05)
        spin(2.0)
        reached = states[-1].eef_pose.position.x
        assert position[0] + 0.05 < reached < 0.55, reached  # moved out, stopped at the edge of reach
        # A stream from the arm's pose, then two targets in one burst past the edge, 6 mm apart (each
        # within the gate's step rule): the first is refused (ret -8), and the second, sent before
        # that answer came, would be measured by the controller from the last target it accepted
        # (12 mm: a step fault). It waits for the answer instead and is dropped with the refused one.
        target.pose.position.x = float(reached)
        target_pub.publish(target)
        spin(0.5)
        for dx in (0.006, 0.012):
            target.pose.position.x = float(reached + dx)
            target_pub.publish(target)
        spin(1.0)
        assert reports[-1].err == 0, "two targets in flight at once faulted the controller"
        before = len(states)
        request = MoveCartesian.Request()
        pose = list(reports[-1].pose)
        request.pose = [pose[0] - 50.0, *pose[1:]]  # a 50 mm servo step
        assert servo.wait_for_service(timeout_sec=30)
        future = servo.call_async(request)
        rclpy.spin_until_future_complete(node, future, timeout_sec=30)
        assert future.result().ret == 1 and "faults the controller" in future.result().message
        spin(1.0)
        assert reports[-1].err == 99 and len(states) > before
        held = states[-1].eef_pose.position.x
        for k in range(20):  # the adapter refuses to stream into a faulted controller
            target.pose.position.x = float(held - 0.002 * (k + 1))
            target_pub.publish(target)
            spin(0.05)
        spin(1.0)
        assert abs(states[-1].eef_pose.position.x - held) < 1e-6
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    text = log.read_text()
    assert "set_servo_cartesian refused (ret -8)" in text and "out of range" in text, text
    assert "the controller reports error 99" in text, text


def _digest(log: str, limit: int = 80) -> str:
    """A node log's distinct lines in order of first appearance (a repeated warning once, with its
    count), so that the first fault is not pushed out of the failure message by its repeats."""
    counts: dict[str, int] = {}
    for line in log.splitlines():
        key = re.sub(r"^\[(\w+)\] \[[\d.]+\] ", r"[\1] ", line.strip())
        counts[key] = counts.get(key, 0) + 1
    lines = [f"{key} (x{n})" if n > 1 else key for key, n in counts.items()]
    return "\n".join(lines[:limit] + ([f"... {len(lines) - limit} more distinct lines"] if len(lines) > limit else []))


@pytest.mark.parametrize(("robot", "task"), [("ur5e", "place_mug"), ("lite6", "pour_bottle")])
def test_rehearse_runs_consecutive_episodes_through_each_arm(robot: str, task: str, tmp_path) -> None:
    """``python -m kil_bringup.rehearse``: two configurations in a row; the reset between them puts
    the arm home while the adapter and the interpolator still hold the last episode's targets —
    both must start again from the arm, and the second episode succeeds too."""
    import json
    import subprocess
    import sys

    out = tmp_path / "rehearsal.json"
    command = [sys.executable, "-m", "kil_bringup.rehearse", "--robot", robot, "--task", task, "--episodes", "2",
               "--real-time-factor", "0.5", "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, _digest(done.stdout + done.stderr)
    result = json.loads(out.read_text())
    assert result["summary"]["successes"] == 2 and [e["index"] for e in result["episodes"]] == [0, 1]
    assert f"{robot} {task} in_distribution: 2/2 expert episodes succeeded" in done.stdout


def test_rehearse_reports_a_configuration_beyond_the_arms_reach(tmp_path) -> None:
    """place_mug on the Lite6 in the simulator's own layout (``--scene-layout simulated``, where a
    checkpoint trained in the simulator saw it): sim_node starts on a configuration beyond its
    reach (logged, no episode runs), and the rehearsal's reset to it is refused with the pose and
    the reach — a refusal in the summary, not a failed episode."""
    import json
    import subprocess
    import sys

    out = tmp_path / "rehearsal.json"
    command = [sys.executable, "-m", "kil_bringup.rehearse", "--robot", "lite6", "--task", "place_mug",
               "--scene-layout", "simulated", "--episodes", "1", "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-4000:]
    (episode,) = json.loads(out.read_text())["episodes"]
    where = "place_mug in_distribution #0 is beyond the lite6's reach"
    assert not episode["success"] and where in episode["refused"]
    assert "has no lite6 solution within the joint limits" in episode["refused"]
    assert f"refused: {where}" in done.stdout  # sim_node's log
    assert "lite6 place_mug in_distribution: 0/1 expert episodes succeeded (1 configurations refused)" in done.stdout
    assert "laid out for the lite6" not in done.stdout  # (the arm's layout, the default, would move it)


def test_rehearse_runs_a_policy_through_the_simulated_ur5e(tmp_path) -> None:
    """``rehearse --checkpoint``: the rollout graph with use_sim (policy_node on the simulator's
    ground-truth keypoints -> interpolator -> ur5e_node -> simulated driver) runs an episode to its
    outcome (a random policy: the time limit ends it)."""
    import json
    import subprocess
    import sys

    from test_bringup_graph import _checkpoint

    from kil_sim.oracle import oracle_keypoints
    from kil_sim.tasks import sample_configuration

    world = sample_configuration("place_mug", "in_distribution", 0).make_world()
    k = oracle_keypoints(world, 0).num_keypoints
    world.close()
    checkpoint = _checkpoint(tmp_path / "checkpoint", k)
    out = tmp_path / "rehearsal.json"
    command = [sys.executable, "-m", "kil_bringup.rehearse", "--robot", "ur5e", "--checkpoint", str(checkpoint),
               "--episodes", "1", "--max-episode", "4", "--width", "64", "--height", "48",
               "--real-time-factor", "0.5", "--json", str(out)]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stdout[-4000:]  # the random policy does not do the task
    (episode,) = json.loads(out.read_text())["episodes"]
    assert not episode["success"] and episode["reason"].startswith("time limit of 4 s reached")
    assert "[ur5e_node]" in done.stdout and "[policy_node]" in done.stdout and "producing action chunks" in done.stdout
    assert "ur5e place_mug in_distribution: 0/1 policy episodes succeeded" in done.stdout


@pytest.mark.parametrize("settle", [True, False])
def test_lite6_gate_starts_a_new_stream_only_once_the_arm_has_stopped(settle: bool) -> None:
    """The fault seen in a live Lite6 run: a fast stream leaves the arm lagging its last target by
    centimetres; the stream stops (a stale-input hold) and a new one starts where the arm is seen.
    The simulated controller measures each servo step from its last accepted target, so a stream
    begun at the moving arm's pose faults it (err 99). The gate (ServoGate observing every state,
    as lite6_node does) holds the new stream until the arm has stopped at that target, then ramps
    in: no fault, and the arm ends on the new stream. ``settle=False`` drops the observed states
    (the gate before this rule) and shows the fault this guards against."""
    from kil_control.lite6 import ServoGate, XArmState, pose_to_xarm
    from kil_sim.arms import lite6
    from kil_sim.driver_interfaces import XARM_READY, XArmDriverInterface
    from kil_sim.simulated_arm import SimulatedArm

    down = np.array([1.0, 0.0, 0.0, 0.0])  # tool pointing down
    arm = SimulatedArm(lite6(), np.array([0.20, -0.10, 0.25]), down)
    rclpy.init()
    node = rclpy.create_node("gate_settle_test")
    try:
        driver = XArmDriverInterface(node, arm, lambda key, text: None, lambda opening: None)
        driver.enabled, driver.mode, driver.state = True, 1, XARM_READY
        gate = ServoGate()
        now, dt, faults = 10**9, 0.005, []

        def tick(target: np.ndarray | None) -> None:
            nonlocal now
            position = arm.tcp_pose()[0]
            state = XArmState(now, position, down, driver.mode, driver.error)
            if settle:
                gate.observe(state)
            if target is not None:
                sent, _ = gate.admit(target, state, now)
                if sent is not None:
                    ret, message = driver.servo(pose_to_xarm(sent, down))
                    if driver.error:
                        faults.append(message)
                    if ret != 0:  # (as lite6_node does when the controller refuses a target)
                        gate.resync()
            arm.step(dt)
            now += int(dt * 1e9)

        start = arm.tcp_pose()[0]
        for k in range(8):  # 9 mm per 5 ms target (1.8 m/s): faster than the arm follows
            tick(start + [0.0, 0.009 * k, 0.0])
        np.testing.assert_allclose(driver.last_target_mm / 1000.0, start + [0.0, 0.063, 0.0], atol=1e-5)
        lag = float(np.linalg.norm(driver.last_target_mm / 1000.0 - arm.tcp_pose()[0]))
        assert lag > 0.02, lag  # the arm is centimetres behind the controller's last target
        for _ in range(4):  # the stream stops for 20 ms (inputs went stale; nothing is sent)
            tick(None)
        gate.resync()  # (what a refusal does; lite6_node also does it when the controller refuses)
        restart = arm.tcp_pose()[0]  # the interpolator starts again where the arm is seen
        for k in range(150):  # a slow new stream from there: 1 mm per target, 0.75 s
            tick(restart + [0.001 * k, 0.0, 0.0])
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
    if not settle:
        assert faults and "servo step faults the controller (error 99)" in faults[0], faults
        return
    assert not faults and driver.error == 0, faults
    np.testing.assert_allclose(arm.tcp_pose()[0], restart + [0.149, 0.0, 0.0], atol=2e-3)


def test_scene_layout_reaches_sim_node_only_for_a_simulated_arm() -> None:
    """``scene_layout`` goes to sim_node in the expert and rollout graphs of a simulated arm, the
    choices are sim_node's own, and it is refused where there is no arm to lay a scene out for."""
    from kil_bringup.graph import SCENE_LAYOUTS, rollout_graph
    from kil_sim.sim_node import SCENE_LAYOUTS as SIM_SCENE_LAYOUTS

    assert SCENE_LAYOUTS == SIM_SCENE_LAYOUTS
    from kil_bringup.rehearse import SETTINGS
    from kil_sim.tasks import EVALUATION_SETTINGS

    assert SETTINGS == EVALUATION_SETTINGS  # rehearse offers exactly the settings sim_node loads
    expert = {n.name: n for n in expert_graph("lite6", "place_mug", scene_layout="simulated")}
    assert expert["sim_node"].parameters["scene_layout"] == "simulated"
    assert "scene_layout" not in {n.name: n for n in expert_graph("lite6", "place_mug")}["sim_node"].parameters
    rollout = {n.name: n for n in rollout_graph("ur5e", keypoints="oracle", use_sim=True, scene_layout="simulated")}
    assert rollout["sim_node"].parameters["scene_layout"] == "simulated"
    with pytest.raises(ValueError, match="applies to a simulated arm"):
        expert_graph("sim", scene_layout="simulated")
    with pytest.raises(ValueError, match="scene_layout must be one of arm, simulated"):
        expert_graph("lite6", scene_layout="tabletop")


@pytest.mark.parametrize("robot", ["lite6", "ur5e"])
def test_a_collision_stops_the_arm_until_the_operator_clears_it(robot: str, tmp_path) -> None:
    """Servo targets streamed within the adapter's rules down into the table: the simulated
    controller's collision detection stops the arm (Lite6: error C31 in robot_states; UR5e:
    protective stop), the episode ends as a collision, and further targets move nothing; after
    ``ControllerFaults.clear`` (what rehearse does before the next episode: clean_error / set_mode /
    set_state on a Lite6 reporting an error, unlock_protective_stop on the UR5e; nothing while
    there is no stop) the arm follows a stream that backs off the table."""
    from kil_bringup.run_graph import ControllerFaults

    log = tmp_path / "nodes.log"
    with log.open("w") as out:
        processes = start(_arm_graph(robot, controller="none", max_episode_s=600.0)[:2], stdout=out)
    node = _listener()
    states: list = []
    outcomes: list = []
    reports: list = []
    latched = QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL)
    node.create_subscription(RobotState, "/kil/robot_state", states.append, 10)
    node.create_subscription(EpisodeOutcome, "/kil/episode_outcome", outcomes.append, latched)
    if robot == "lite6":
        from xarm_msgs.msg import RobotMsg

        node.create_subscription(RobotMsg, "/ufactory/robot_states", reports.append, 10)
    else:
        from ur_dashboard_msgs.msg import SafetyMode

        node.create_subscription(SafetyMode, "/io_and_status_controller/safety_mode", reports.append, latched)
    target_pub = node.create_publisher(PoseStamped, "/kil/servo_target", 10)
    faults = ControllerFaults(node, robot)

    def spin(seconds: float) -> None:
        spin_while_alive(node, lambda: False, seconds, processes, period_s=0.02)

    def wait_for(done, seconds: float = 30.0) -> bool:
        """Spin until ``done()`` (the outcome, the driver's report and the arm's state arrive on
        different topics, in no fixed order)."""
        return spin_while_alive(node, done, seconds, processes, period_s=0.02)

    def z() -> float:
        return states[-1].eef_pose.position.z

    try:
        deadline = time.monotonic() + 120
        while not (len(states) >= 5 and target_pub.get_subscription_count()) and time.monotonic() < deadline:
            spin(0.1)
        assert states and target_pub.get_subscription_count(), f"{robot}_node is not up"
        # The adapter has finished its set-up (the Lite6's: motion_enable, servo mode, state 0); a
        # stream sent before would be refused and then run ahead of the arm.
        DiagnosticsListener(node).wait(spin, f"{robot}_node: arm", (OK,), message="ready")
        assert faults.clear() is None  # no stop: nothing to clear
        first = states[-1].eef_pose
        target = PoseStamped()
        target.header.frame_id = nodes_base(robot)
        target.pose.orientation = first.orientation
        target.pose.position.x, target.pose.position.y = first.position.x, first.position.y

        def stream(heights) -> None:
            for height in heights:
                target.pose.position.z = float(height)
                target_pub.publish(target)
                spin(0.1)  # 4 cm/s: the Lite6 adapter keeps its answers' pace on a loaded machine

        stream(np.arange(first.position.z, -0.03, -0.004))  # 4 mm steps down through the table top
        deadline = time.monotonic() + 60
        while not outcomes and time.monotonic() < deadline:
            spin(0.1)
        assert outcomes and outcomes[-1].reason.startswith("collision: "), [o.reason for o in outcomes]
        reaction = "controller error C31" if robot == "lite6" else "protective stop"
        assert "contact with table" in outcomes[-1].reason and reaction in outcomes[-1].reason, outcomes[-1].reason
        if robot == "lite6":
            assert wait_for(lambda: reports[-1].err == 31 and reports[-1].state == 4), reports[-1]
        else:
            assert wait_for(lambda: len(reports) >= 2), reports
            assert [r.mode for r in reports] == [SafetyMode.NORMAL, SafetyMode.PROTECTIVE_STOP]
        # States published after the stop (those received so far may predate it).
        seen = len(states)
        assert wait_for(lambda: len(states) >= seen + 10), len(states)
        held = z()
        assert -0.005 < held < 0.02, held  # stopped with the fingertips at the table top
        stream(held + 0.002 * np.arange(1, 11))  # targets up: not followed while stopped
        spin(1.0)
        assert abs(z() - held) < 1e-6
        if robot == "lite6":
            # The controller's report of the stop may still queue behind the outcome (robot_states
            # at 200 Hz): a watcher that has taken none of them clears the stop on the outcome alone.
            fresh = ControllerFaults(node, robot)
            assert fresh.error == 0
            done = fresh.clear(outcomes[-1])
        else:
            done = faults.clear(outcomes[-1])
        expected = "cleared the controller's stop: clean_error, set_mode 1, set_state 0"
        if robot == "lite6":
            assert done == expected, done
        else:
            assert done.startswith("protective stop unlocked (") and "contact with table" in done, done
        if robot == "lite6":
            assert wait_for(lambda: (reports[-1].err, reports[-1].mode, reports[-1].state) == (0, 1, 2)), reports[-1]
        else:
            assert wait_for(lambda: reports[-1].mode == SafetyMode.NORMAL), reports[-1]
        stream(held + 0.002 * np.arange(0, 41))  # a new stream from the pose, up 8 cm
        # Backed off the table without faulting again.
        assert wait_for(lambda: z() > held + 0.03, 20.0), (held, z(), [o.reason for o in outcomes])
        assert len(outcomes) == 1, [o.reason for o in outcomes]
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    text = log.read_text()
    assert ("C31 (collision caused abnormal current)" if robot == "lite6" else "protective stop: ") in text, text
    if robot == "ur5e":  # the adapter saw the stop and refused the targets streamed during it
        assert "the controller is in a protective stop (safety mode 3)" in text, text
