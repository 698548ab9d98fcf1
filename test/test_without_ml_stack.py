"""The robot side (kil_control) and the simulator (kil_sim) run without the ML stack: in a process
where importing torch (or any other ML package) fails, every module of both packages imports, a
world is built, a scripted expert episode runs through the interpolation, and interpolator_node's
logic turns a chunk into setpoints over rclpy."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

ML_STACK = ("torch", "torchvision", "diffusers", "transformers", "timm", "safetensors")

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys
    import numpy as np

    BLOCKED = set(sys.argv[1].split(","))

    class BlockMlStack:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"import of {name} blocked: this process runs without the ML stack")
            return None

    sys.meta_path.insert(0, BlockMlStack())
    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]

    import kil_control, kil_sim
    modules = []
    for package in (kil_control, kil_sim):
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            importlib.import_module(info.name)
            modules.append(info.name)

    from kil_sim.rollout import RolloutConfig, run_episode
    from kil_sim.tasks import evaluation_configurations

    config = evaluation_configurations("place_mug", "in_distribution", 1)[0]
    world = config.make_world()
    result = run_episode(config, config=RolloutConfig(camera_hz=0), world=world)
    world.close()

    import rclpy
    from geometry_msgs.msg import PoseStamped
    from rclpy.executors import SingleThreadedExecutor
    from kil_control.interpolator_node import InterpolatorNode
    from kil_interfaces import conversion
    from kil_interfaces.data import ActionChunkData, RobotStateData

    rclpy.init(args=["--ros-args", "-p", "rate_hz:=100.0"])
    node = InterpolatorNode()
    listener = rclpy.create_node("listener")
    setpoints = []
    listener.create_subscription(
        PoseStamped, "/kil/servo_target", lambda m: setpoints.append(m.pose.position.x), 100
    )
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    executor.add_node(listener)
    down = np.array([1.0, 0.0, 0.0, 0.0])
    node._on_state(conversion.robot_state_to_msg(RobotStateData(0, "link_base", [0.3, 0.0, 0.2], down, 1.0)))
    now = node.get_clock().now().nanoseconds
    goal = np.array([[0.32, 0.0, 0.2]])
    chunk = ActionChunkData(now + 300_000_000, "link_base", 100_000_000, goal, down[None], [1.0])
    node._on_chunk(conversion.action_chunk_to_msg(chunk))
    import time
    deadline = time.monotonic() + 60
    while (not setpoints or setpoints[-1] < 0.3199) and time.monotonic() < deadline:
        executor.spin_once(timeout_sec=0.05)
    node.destroy_node(); listener.destroy_node(); rclpy.shutdown()
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print(json.dumps({
        "modules": modules, "success": result.success, "control_steps": result.control_steps,
        "setpoints": len(setpoints), "last_x": setpoints[-1] if setpoints else None, "ml_loaded": loaded,
    }))
    """
)


def test_control_and_sim_run_without_the_ml_stack() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, ",".join(ML_STACK)], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert {"kil_control.interpolator_node", "kil_control.lite6_node", "kil_sim.sim_node"} <= set(report["modules"])
    assert {"kil_sim.expert", "kil_sim.rollout", "kil_sim.world", "kil_control.ur5e"} <= set(report["modules"])
    assert report["ml_loaded"] == []
    assert report["success"] and report["control_steps"] > 10  # the expert did the task through the interpolation
    assert report["setpoints"] > 2 and abs(report["last_x"] - 0.32) < 1e-4  # the node moved its setpoint to the chunk


def test_the_block_catches_an_ml_import() -> None:
    """The guard itself: the same block makes a torch import fail."""
    script = SCRIPT.split("import kil_control, kil_sim")[0] + "import torch\n"
    done = subprocess.run(
        [sys.executable, "-c", script, ",".join(ML_STACK)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0 and "blocked: this process runs without the ML stack" in done.stderr
