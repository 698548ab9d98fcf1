"""The rollout graph: its description, and the whole loop running in the simulator as separate
processes over DDS (sim camera -> keypoint_node -> policy_node -> interpolator_node -> sim arm)."""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import rclpy
import torch
from geometry_msgs.msg import PoseStamped

from kil_bringup.graph import rollout_graph, teleop_graph
from kil_bringup.run_graph import start, stop
from kil_interfaces import conversion as cv
from kil_interfaces.msg import ActionChunk, KeypointArray, RobotState
from kil_policy.checkpoint import save_policy
from kil_policy.config import EncoderConfig, HeadConfig, PolicyConfig
from kil_policy.policy import KeypointDiffusionPolicy
from kil_sim.tasks import sample_configuration


def test_sim_graph_nodes_parameters_and_errors() -> None:
    nodes = rollout_graph("sim", task="pick_pen", spec="/s.yaml", checkpoint="/c")
    assert [n.name for n in nodes] == ["sim_node", "keypoint_node", "policy_node", "interpolator_node"]
    sim, keypoints, policy, interpolator = nodes
    assert sim.parameters["task"] == "pick_pen" and "calibration_file" not in sim.parameters  # TF instead
    assert keypoints.parameters["target_frame"] == "link_base" and keypoints.remappings == {}
    assert all(n.namespace == "" and "/clock" not in n.remappings for n in nodes)
    assert policy.parameters["checkpoint"] == "/c" and interpolator.parameters["rate_hz"] == 100.0
    assert interpolator.ros_args()[:3] == ["--ros-args", "-r", "__node:=interpolator_node"]
    assert "rate_hz:=100.0" in interpolator.ros_args()
    assert keypoints.parameters["autostart"] is True and policy.parameters["autostart"] is True
    managed = rollout_graph("sim", task="pick_pen", spec="/s.yaml", checkpoint="/c", autostart=False)
    assert [n.parameters.get("autostart") for n in managed] == [None, False, False, None]  # left to a manager
    assert "autostart:=false" in managed[2].ros_args()
    with pytest.raises(ValueError, match="robot must be one of"):
        rollout_graph("panda")
    with pytest.raises(ValueError, match="use camera:=sim"):
        rollout_graph("sim", camera="zed2i")
    ur5e = rollout_graph("ur5e", spec="/s.yaml", checkpoint="/c", calibration="/cal.yaml")
    assert [n.name for n in ur5e] == [
        "ur5e_node",
        "calibration_node",
        "keypoint_node",
        "policy_node",
        "interpolator_node",
    ]
    assert ur5e[0].parameters["base_frame"] == "base" and ur5e[0].remappings["joint_states"] == "/joint_states"
    assert ur5e[1].parameters == {"calibration_file": "/cal.yaml", "frame_prefix": ""}
    assert ur5e[2].remappings["camera/depth/image_raw"] == "/camera/depth/image_raw"  # Femto Bolt
    assert ur5e[2].parameters["target_frame"] == "base"
    # Without a calibration file the camera's TF comes from elsewhere (a hand-eye tool): no calibration_node.
    lite6 = rollout_graph("lite6", spec="/s.yaml", checkpoint="/c", camera="zed2i")
    assert [n.name for n in lite6] == ["lite6_node", "keypoint_node", "policy_node", "interpolator_node"]
    assert lite6[1].remappings["camera/color/image_raw"] == "/zed/zed_node/rgb/image_rect_color"
    assert lite6[3].parameters["rate_hz"] == 200.0 and lite6[0].parameters["namespace"] == "/ufactory"
    tracked = rollout_graph(
        "sim", spec="/s.yaml", checkpoint="/c", method="track", inference="compiled", feature_scale=2
    )
    assert tracked[1].parameters["method"] == "track" and tracked[2].parameters["inference"] == "compiled"
    assert tracked[1].parameters["feature_scale"] == 2.0 and isinstance(tracked[1].parameters["feature_scale"], float)
    with pytest.raises(ValueError, match="method must be one of image, instance, track"):
        rollout_graph("sim", method="flow")
    with pytest.raises(ValueError, match="inference must be one of"):
        rollout_graph("sim", inference="onnx")
    graphed = rollout_graph(
        "sim", spec="/s.yaml", checkpoint="/c", inference="graph", precision="tf32", fuse_kernels="triton"
    )
    policy = graphed[2].parameters
    assert policy | {"inference": "graph", "precision": "tf32", "fuse_kernels": "triton"} == policy
    assert "precision" not in tracked[2].parameters  # (the node's default, fp32, where there is no graph)
    with pytest.raises(ValueError, match="fuse_kernels must be one of none, inductor, triton"):
        rollout_graph("sim", spec="/s.yaml", checkpoint="/c", inference="graph", fuse_kernels="true")
    with pytest.raises(ValueError, match="precision:=bf16 and fuse_kernels:=none need inference:=graph"):
        rollout_graph("sim", spec="/s.yaml", checkpoint="/c", precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of fp32, tf32, bf16"):
        rollout_graph("sim", spec="/s.yaml", checkpoint="/c", inference="graph", precision="fp16")


def test_keypoint_sources_and_sim_parameters() -> None:
    oracle = rollout_graph("sim", checkpoint="/c", keypoints="oracle", image_size=(320, 240), max_episode_s=12.0)
    assert [n.name for n in oracle] == ["sim_node", "policy_node", "interpolator_node"]
    assert oracle[1].remappings == {"kil/keypoints": "kil/keypoints/oracle"} and "spec" not in oracle[1].parameters
    assert oracle[0].parameters | {"width": 320, "height": 240, "max_episode_s": 12.0} == oracle[0].parameters
    perceived = rollout_graph("sim", spec="/s.yaml", checkpoint="/c")
    assert perceived[2].parameters["spec"] == "/s.yaml"  # policy_node checks the spec's layout at start
    assert all("cpu_threads" not in n.parameters for n in perceived)  # the nodes' own default unless asked
    threads = rollout_graph("sim", spec="/s.yaml", checkpoint="/c", cpu_threads=0)
    assert [n.parameters.get("cpu_threads") for n in threads] == [None, 0, 0, None]  # keypoint_node, policy_node
    with pytest.raises(ValueError, match="cpu_threads must be 0"):
        rollout_graph("sim", checkpoint="/c", keypoints="oracle", cpu_threads=-2)
    with pytest.raises(ValueError, match="keypoint_node needs a spec"):
        rollout_graph("sim", checkpoint="/c")
    with pytest.raises(ValueError, match=r"keypoints:=oracle needs the simulator \(robot:=sim or use_sim:=true\)"):
        rollout_graph("ur5e", checkpoint="/c", keypoints="oracle")
    # Image QoS reaches every node that publishes or subscribes the images.
    best_effort = rollout_graph("sim", spec="/s.yaml", checkpoint="/c", image_reliability="best_effort")
    assert [n.parameters.get("image_reliability") for n in best_effort[:2]] == ["best_effort"] * 2
    recording = teleop_graph("sim", image_reliability="best_effort", input_type="joy")
    assert {n.name for n in recording if n.parameters.get("image_reliability") == "best_effort"} == {
        "sim_node",
        "recorder_node",
    }
    with pytest.raises(ValueError, match="image_reliability must be one of reliable, best_effort"):
        rollout_graph("sim", spec="/s.yaml", image_reliability="sensor")


def test_run_graph_refuses_a_spec_of_another_layout_before_starting(tmp_path: Path, capsys) -> None:
    from kil_bringup.run_graph import main
    from kil_interfaces.keypoint_layout import write_layout

    spec, checkpoint = _spec_and_checkpoint(tmp_path)
    write_layout(checkpoint, (("mug", 0, "handle"), ("mug", 0, "body"), ("mug", 0, "body_low")), "test")
    with pytest.raises(SystemExit) as exit_info:
        main(["--spec", str(spec), "--checkpoint", str(checkpoint), "--episodes", "1"])
    assert exit_info.value.code == 2
    error = capsys.readouterr()
    assert "keypoint layout differs" in error.err and "mug[0]: rim, handle, opening" in error.err
    assert "started:" not in error.out  # no node was started


def test_graph_choices_match_the_nodes() -> None:
    """The graph lists the choices without importing torch; they must stay those of the nodes."""
    from kil_bringup.graph import FUSIONS, INFERENCE_MODES, METHODS, PRECISIONS
    from kil_perception.pipeline import METHODS as PERCEPTION_METHODS
    from kil_policy import graphed
    from kil_policy.runner import INFERENCE_MODES as RUNNER_MODES

    assert METHODS == PERCEPTION_METHODS and INFERENCE_MODES == RUNNER_MODES
    assert PRECISIONS == graphed.PRECISIONS and FUSIONS == graphed.FUSIONS


def _spec_and_checkpoint(tmp_path: Path) -> tuple[Path, Path]:
    world = sample_configuration("place_mug", "in_distribution", 0).make_world()
    world.step(0.3)
    intr, to_cam = world.camera_intrinsics, world.camera_extrinsics.inverse()
    names = ("rim", "handle", "opening")
    uv = intr.project(to_cam.apply(np.array([world.keypoints("mug")[n] for n in names])))
    cv2.imwrite(str(tmp_path / "reference.png"), cv2.cvtColor(world.render().rgb, cv2.COLOR_RGB2BGR))
    world.close()
    points = "\n".join(f"          {n}: [{u:.1f}, {v:.1f}]" for n, (u, v) in zip(names, uv, strict=True))
    (tmp_path / "spec.yaml").write_text(
        "categories:\n  - name: mug\n    references:\n      - image: reference.png\n        keypoints:\n"
        + points
        + "\n"
    )
    return tmp_path / "spec.yaml", _checkpoint(tmp_path / "checkpoint", 3)


def _checkpoint(directory: Path, k: int) -> Path:
    """A random policy over K keypoints (its outputs stay near a home pose)."""
    policy = KeypointDiffusionPolicy(
        PolicyConfig(
            encoder=EncoderConfig(num_keypoints=k, d_model=16, num_layers=1, num_heads=2, mlp_dim=32),
            head=HeadConfig(down_dims=(16, 32, 64), inference_steps=4),
        )
    )
    g = torch.Generator().manual_seed(0)
    home = torch.tensor([0.25, 0.0, 0.25, 1, 0, 0, 0, -1, 0, 1.0])
    policy.fit_normalizers(home + 0.05 * torch.rand(32, 10, generator=g), torch.rand(32, 7, generator=g),
                           torch.rand(32, k, 3, generator=g), torch.ones(32, k, dtype=torch.bool))  # fmt: skip
    return save_policy(directory, policy)


def test_the_whole_loop_runs_in_the_simulator(tmp_path: Path) -> None:
    """The loop moves the simulated arm; a recorder_node listening to the shipped Foxglove layout's
    topics (and /tf, /tf_static) gets every one of them into its bag."""
    import subprocess
    import sys

    from rosbags.rosbag2 import Reader

    from kil_bringup.foxglove_layout import layout_topics, load_layout
    from kil_interfaces.testing import call_trigger
    from kil_teleop.recording import list_episodes

    spec, checkpoint = _spec_and_checkpoint(tmp_path)
    # Half real time and a 2 s input age: perception of 640x480 frames, the policy and a recorder of
    # every image topic share a loaded 2-core machine; the episode outlasts the test.
    nodes = rollout_graph(
        "sim", task="place_mug", spec=str(spec), checkpoint=str(checkpoint), backend="classic",
        real_time_factor=0.5, max_input_age_s=2.0, max_episode_s=600.0,
    )  # fmt: skip
    shown = layout_topics(load_layout())
    recorded = sorted(shown | {"/tf", "/tf_static"})
    recorder = [sys.executable, "-m", "kil_teleop.recorder_node", "--ros-args", "-p", "use_sim_time:=true"]
    recorder += ["-p", f"output_dir:={tmp_path / 'bags'}", "-p", f"topics:=[{','.join(recorded)}]"]
    processes = [*start(nodes), subprocess.Popen(recorder)]
    rclpy.init()
    node = rclpy.create_node("loop_test")
    seen: dict[str, list] = {"keypoints": [], "chunks": [], "targets": []}
    node.create_subscription(
        KeypointArray, "/kil/keypoints", lambda m: seen["keypoints"].append(cv.keypoints_from_msg(m)), 10
    )
    node.create_subscription(ActionChunk, "/kil/action_chunk", lambda m: seen["chunks"].append(m), 10)
    node.create_subscription(PoseStamped, "/kil/servo_target", lambda m: seen["targets"].append(m), 10)
    # The largest TCP displacement from the first state, kept as states arrive: 100 Hz states over a
    # 120 s wait are too many to rescan on every message (that scan once starved the graph it waits on).
    arm = {"first": None, "moved": 0.0}

    def on_state(msg: RobotState) -> None:
        position = cv.robot_state_from_msg(msg).position
        if arm["first"] is None:
            arm["first"] = position
        arm["moved"] = max(arm["moved"], float(np.linalg.norm(position - arm["first"])))

    node.create_subscription(RobotState, "/kil/robot_state", on_state, 10)

    def moved() -> float:
        return arm["moved"]

    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (len(seen["chunks"]) < 3 or not seen["targets"] or moved() <= 0.005):
            rclpy.spin_once(node, timeout_sec=0.1)
            assert all(p.poll() is None for p in processes), "a node of the graph exited"
        assert len(seen["chunks"]) >= 3, {k: len(v) for k, v in seen.items()}
        kp = seen["keypoints"][-1]
        assert kp.names == ("rim", "handle", "opening") and kp.frame_id == "link_base" and kp.valid.any()
        assert moved() > 0.005  # the policy's chunks reached the simulated arm through the interpolator

        assert call_trigger(node, "/recorder_node/start").success
        count = len(seen["chunks"])
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and len(seen["chunks"]) < count + 2:
            rclpy.spin_once(node, timeout_sec=0.1)
        stopped = call_trigger(node, "/recorder_node/stop")
        assert stopped.success, stopped.message
        (bag,) = list_episodes(tmp_path / "bags")
        with Reader(bag) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
        empty = sorted(t for t in recorded if not counts.get(t))
        assert not empty, f"layout/TF topics with no message in the bag: {empty} ({counts})"
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)


def test_run_graph_reports_the_outcome_of_an_oracle_fed_episode(tmp_path: Path) -> None:
    """The simulator's ground truth routed to policy_node (no keypoint_node), one episode, its
    outcome printed by run_graph: a random policy does not do the task, so it ends at the limit."""
    import subprocess
    import sys

    from kil_sim.oracle import oracle_keypoints

    world = sample_configuration("place_mug", "in_distribution", 0).make_world()
    layout = oracle_keypoints(world, 0)
    world.close()
    checkpoint = _checkpoint(tmp_path / "checkpoint", layout.num_keypoints)
    command = [sys.executable, "-m", "kil_bringup.run_graph", "--keypoints", "oracle", "--checkpoint", str(checkpoint)]
    command += ["--max-episode", "4", "--episodes", "1", "--timeout", "300", "--width", "160", "--height", "120"]
    command += ["--max-input-age", "5.0"]  # four processes on a loaded 2-core machine
    done = subprocess.run(command, capture_output=True, text=True, timeout=400)
    output = done.stdout + done.stderr
    assert "started: sim_node, policy_node, interpolator_node" in done.stdout, output[-2000:]
    # Start-up does not count: the episode is reset once chunks flow, and the policy's history cleared.
    assert "episode reset and started: place_mug in_distribution #0" in done.stdout, output[-2000:]
    assert "(state cleared: policy_node, interpolator_node)" in done.stdout, output[-2000:]
    assert "episode place_mug in_distribution #0: failure after" in done.stdout, output[-2000:]
    assert "time limit of 4 s reached" in done.stdout and done.returncode == 1
    assert "producing action chunks again" in output  # the oracle keypoints fitted the checkpoint
    assert "keypoint layout differs" not in output


def test_teleop_graph_nodes_and_errors() -> None:
    nodes = teleop_graph("sim", task="pick_pen", output_dir="/d", input_type="joy", controller_to_base_rpy=(0, 0, 1.5))
    assert [n.name for n in nodes] == ["sim_node", "teleop_node", "recorder_node", "interpolator_node"]
    assert nodes[1].parameters["controller_to_base_rpy"] == [0.0, 0.0, 1.5]
    assert "controller_to_base_rpy:=[0.0, 0.0, 1.5]" in nodes[1].ros_args()
    recorder = {"output_dir": "/d", "task": "pick_pen", "image_reliability": "reliable", "use_sim_time": True}
    assert nodes[2].parameters == recorder  # on the simulator's clock, like every node of a sim graph
    real = teleop_graph("lite6", calibration="/cal.yaml")
    assert not any("use_sim_time" in n.parameters for n in real)
    assert [n.name for n in real][:2] == ["lite6_node", "calibration_node"]
    with pytest.raises(ValueError, match="input_type must be one of quest2ros, joy"):
        teleop_graph("sim", input_type="keyboard")
    recorder = teleop_graph("ur5e", camera="zed2i")[2]
    assert recorder.remappings["camera/depth/image_raw"] == "/zed/zed_node/depth/depth_registered"


@pytest.mark.parametrize("robot", ["sim", "lite6"])
def test_teleoperating_the_simulator_records_a_demonstration(robot: str, tmp_path: Path) -> None:
    """The recording graph as processes: a (stand-in: Quest2ROS's messages) Quest operator moves
    the simulated arm 4 cm along x through teleop_node and interpolator_node — for ``lite6`` the
    simulated Lite6 through lite6_node and the simulated xarm_api — and button A records the
    episode. The Lite6's bag has the scripted demonstrations' schema and trains (a short RGB run:
    the teleop bag has no keypoints)."""
    from rosbags.rosbag2 import Reader
    from sensor_msgs.msg import Joy

    from kil_teleop.recording import DEMONSTRATION_TOPICS, list_episodes

    task = "pour_bottle" if robot == "lite6" else "place_mug"
    nodes = teleop_graph(robot, task=task, output_dir=str(tmp_path / "demos"), input_type="joy", use_sim=robot != "sim")
    processes = start(nodes)
    rclpy.init()
    node = rclpy.create_node("quest_operator")
    pose_pub = node.create_publisher(PoseStamped, "/q2r_right_hand_pose", 10)
    joy_pub = node.create_publisher(Joy, "/q2r_right_hand_inputs", 10)
    states: list = []
    node.create_subscription(RobotState, "/kil/robot_state", lambda m: states.append(cv.robot_state_from_msg(m)), 10)
    hand = {"x": 0.0, "grip": 0.0, "a": 0}

    def operate(seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            pose = PoseStamped()
            pose.pose.position.x, pose.pose.orientation.w = hand["x"], 1.0
            pose_pub.publish(pose)
            joy = Joy()
            joy.axes, joy.buttons = [0.0, 0.0, 0.0, hand["grip"]], [0, hand["a"]]
            joy_pub.publish(joy)
            rclpy.spin_once(node, timeout_sec=0.03)
            assert all(p.poll() is None for p in processes), "a node of the graph exited"

    def press_a() -> None:
        hand["a"] = 1
        operate(0.3)
        hand["a"] = 0
        operate(0.3)

    reports: list = []
    if robot == "lite6":  # lite6_node streams only once the simulated controller is in servo mode
        from xarm_msgs.msg import RobotMsg

        node.create_subscription(RobotMsg, "/ufactory/robot_states", reports.append, 10)

    def ready() -> bool:
        servo = robot != "lite6" or (reports and reports[-1].mode == 1 and reports[-1].state == 2)
        return bool(states) and bool(servo) and node.count_subscribers("/q2r_right_hand_inputs") > 0

    try:
        deadline = time.monotonic() + 60
        while not ready() and time.monotonic() < deadline:
            operate(0.2)
        operate(1.0)
        start_position = states[-1].position.copy()
        press_a()
        hand["grip"] = 1.0
        operate(0.5)
        for _ in range(20):  # the hand moves 4 cm along x over 2 s
            hand["x"] += 0.002
            operate(0.1)
        operate(1.5)
        press_a()
        moved = states[-1].position - start_position
        assert abs(moved[0] - 0.04) < 0.01 and np.linalg.norm(moved[1:]) < 0.01, moved
        deadline = time.monotonic() + 10
        while not list_episodes(tmp_path / "demos") and time.monotonic() < deadline:  # the recorder closes the bag
            operate(0.2)
        (bag,) = list_episodes(tmp_path / "demos")
        with Reader(bag) as reader:
            counts = {c.topic: c.msgcount for c in reader.connections}
            types = {c.topic: c.msgtype for c in reader.connections}
        assert counts["/kil/action_chunk"] >= 20 and counts["/camera/color/image_raw"] >= 20, counts
        # (how many states arrive in these ~4 wall seconds depends on the machine's load: a count, not a rate)
        assert counts["/kil/robot_state"] >= 20 and counts["/camera/depth/image_raw"] >= 20, counts
    finally:
        node.destroy_node()
        rclpy.try_shutdown()
        stop(processes)
    if robot == "sim":
        return
    assert {t: types[t] for t in DEMONSTRATION_TOPICS} == DEMONSTRATION_TOPICS  # the scripted demos' schema
    from kil_policy.data import read_episode
    from kil_policy.train import parse_config, train

    episode = read_episode(bag, need_keypoints=False, need_images=True)
    assert len(episode) >= 20 and episode.actions.shape[1] == 10 and episode.proprio.shape[1] == 7
    small = ["policy.observation=rgb", "policy.image_size=[24,32]", "policy.head.down_dims=[16,32,64]",
             "policy.head.inference_steps=4"]  # fmt: skip
    config = parse_config(None, [f"data=[{tmp_path / 'demos'}]", f"out={tmp_path / 'run'}", "steps=3", "batch_size=4",
                                 *small])  # fmt: skip
    result = train(config)
    assert (result.checkpoint / "config.yaml").is_file() and np.isfinite([loss for _, loss, _ in result.rows]).all()


def test_rviz_configuration_shows_what_the_graph_publishes() -> None:
    import yaml

    from kil_bringup.graph import base_frame

    config = yaml.safe_load((Path(__file__).parents[1] / "rviz" / "kil.rviz").read_text())
    manager = config["Visualization Manager"]
    topics = {d["Topic"]["Value"] for d in manager["Displays"] if "Topic" in d}
    published = {"/kil/keypoints/markers", "/kil/keypoints/image", "/kil/servo_target", "/camera/color/image_raw"}
    assert topics == published
    assert manager["Global Options"]["Fixed Frame"] == base_frame("sim") == base_frame("lite6") == "link_base"
    assert base_frame("ur5e") == "base"  # the launch file passes it to rviz2 with -f
    with pytest.raises(ValueError, match="robot must be one of"):
        base_frame("panda")
