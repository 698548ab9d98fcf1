"""``policy_node``: keypoints (or images) + robot state in, 10 Hz action chunks out.

Subscribes /kil/robot_state (RobotState) and what the checkpoint observes (its config says which):
/kil/keypoints (KeypointArray) for KIL; /camera/color/image_raw for the RGB baseline;
/camera/depth/image_raw and an instance mask (/camera/instance_mask, 16UC1 object values named by
``mask_categories``, e.g. "1:mug,2:tray", as ``sim_node`` publishes them or a segmentation node
would) for S2, whose frame is the mask of the checkpoint's ``mask_categories`` and the relative
depth (``kil_policy.s2_observation``). Every control tick
(10 Hz) it appends the newest of each to the observation history, and every ``n_action_steps``
ticks it runs the policy and publishes /kil/action_chunk: the whole predicted horizon (16 poses,
due every 0.1 s from ``header.stamp``) with ``execute_steps`` = the actions a rollout executes
(n_obs - 1 + n_action_steps; the first is due now and is skipped by the interpolator). Inputs
older than ``max_input_age_s``, or fewer than ``min_valid_keypoints`` valid keypoints, stop new
chunks (one warning until they recover).

Lifecycle (rclpy managed node, ``~/change_state``, ``~/get_state``): configure loads the checkpoint
(and checks ``spec``), subscribes and warms up; activate starts the chunks; deactivate stops them (the
interpolator holds the arm); cleanup frees the model. A failing configure goes to the error state,
logs the reason and reports it on /diagnostics, and the node returns to unconfigured (fix the
parameter, configure again). ``autostart`` (default) configures and activates at start-up, and a
failing configure then ends the process with the reason. Services ~/start (configure if needed +
activate), ~/stop (deactivate), ~/reset (clear the observation history; inputs stamped before the
reset are not used) (std_srvs/Trigger) do the
same for tools that cannot drive lifecycle transitions or actions; action ``~/run_policy``
(kil_interfaces/action/RunPolicy, ``kil_policy.run_policy``) runs one episode with feedback,
result and cancel = hold. A goal (once the node is active) asks perception to start again on the new scene
(``keypoint_reset_service``, default keypoint_node's ``~/reset``: its tracks would follow the
objects of the previous episode) and forgets the observations from before.
The keypoints must come in the layout the checkpoint was trained on (``keypoint_layout.yaml``):
with ``spec`` set, a spec of another layout is refused at start-up; keypoints of another layout
are refused (one warning naming both) and produce no chunks.

/diagnostics (1 Hz, ``diagnostics_period_s``): ``inference`` (latency p50/p95 against the chunk's
execution time, WARN above ``latency_warn_fraction`` of it, ERROR beyond it; chunks and failures),
``inputs`` (age of each input; WARN while waiting for the first ones or when an input is older than
half ``max_input_age_s``, ERROR when no chunks can be produced: stale inputs, inputs of another
layout or kind, too few keypoints, a failed inference) and, for keypoint policies, ``keypoints``
(valid keypoints per object; WARN when an object has fewer than half of its keypoints valid, ERROR
below ``min_valid_keypoints``).
"""

from __future__ import annotations

import sys
import time
from functools import partial

import numpy as np
from rclpy.lifecycle import State, TransitionCallbackReturn
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_srvs.srv import Trigger

from kil_interfaces import conversion
from kil_interfaces.data import KeypointArrayData, RobotStateData
from kil_interfaces.diagnostics import (
    ERROR,
    OK,
    WARN,
    Check,
    Diagnostics,
    RollingStats,
    keypoint_validity,
    level_for,
)
from kil_interfaces.keypoint_layout import layout_of_spec_file, mismatch, read_layout
from kil_interfaces.managed_node import ManagedNode
from kil_interfaces.msg import ActionChunk, KeypointArray, RobotState
from kil_interfaces.node_runtime import ThrottledWarning, declare, qos_event_callbacks, spin_node
from kil_perception.cpu_threads import CPU_THREADS_DESCRIPTION, DEFAULT_CPU_THREADS, set_cpu_threads
from kil_policy.checkpoint import load_policy
from kil_policy.graphed import DEFAULT_TOLERANCE
from kil_policy.run_policy import RunPolicyServer
from kil_policy.runner import PolicyRunner

_NS = 1_000_000_000


class PolicyNode(ManagedNode):
    def __init__(self) -> None:
        super().__init__("policy_node")
        p = partial(declare, self)
        p("checkpoint", "", "policy checkpoint directory (checkpoint_last from training)")
        p("device", "cpu", "torch device: cpu, cuda, cuda:0, ...")
        p("ddim_steps", 0, "DDIM denoising steps (0 = the checkpoint's setting)")
        p("cpu_threads", DEFAULT_CPU_THREADS, CPU_THREADS_DESCRIPTION)
        p("control_rate_hz", 10.0, "observation/action clock (Hz); the policy was trained at 10 Hz")
        p("max_input_age_s", 0.5, "inputs older than this stop new chunks (s)")
        p("min_valid_keypoints", 1, "fewer valid keypoints than this stop new chunks")
        autostart = p(
            "autostart",
            True,
            "configure and activate at start-up (a failing configure ends the process with the reason); false: "
            "stay unconfigured until ~/start or the lifecycle transitions (a lifecycle manager) bring it up",
        )
        p(
            "inference",
            "packed",
            "UNet execution: packed (default), compiled (torch.compile at startup, CUDA graphs on GPU), "
            "graph (CUDA only: the whole chunk as one CUDA graph; lowest latency) or module (the training module)",
        )
        p(
            "precision",
            "fp32",
            "inference graph only: fp32, tf32 (TF32 tensor cores) or bf16 (autocast); a reduced precision is kept "
            "only if a made-up chunk stays within precision_tolerance of fp32 (checked at startup)",
        )
        p(
            "precision_tolerance",
            DEFAULT_TOLERANCE,
            "largest difference from fp32 (normalised actions, range [-1, 1]) a reduced precision may make",
        )
        p(
            "fuse_kernels",
            "none",
            "inference graph only: none, inductor (the UNet step compiled at startup: fused GroupNorm/Mish/FiLM "
            "kernels) or triton (each residual block as two hand-written kernels; fp32/tf32) inside the graph",
        )
        p("spec", "", "keypoint spec keypoint_node extracts with; checked against the checkpoint at start")
        p(
            "keypoint_reset_service",
            "keypoint_node/reset",
            "keypoint policies: std_srvs/Trigger service called when a RunPolicy goal starts an episode, so that "
            "perception starts again on the new scene (keypoint_node's tracks, KIL-T); keypoints stamped before "
            "its answer are not used. '' = none; a service that is not up is skipped",
        )
        p("image_reliability", "reliable", "image QoS reliability (RGB/S2): reliable or best_effort")
        p("mask_categories", "", "S2: instance mask values to categories, e.g. '1:mug,2:tray'")
        p("slop_s", 0.02, "S2: largest depth/mask stamp difference (s)")
        self.latency_warn = p(
            "latency_warn_fraction", 0.5, "diagnostics: inference p95 above this fraction of a chunk's execution: WARN"
        )
        self.runner: PolicyRunner | None = None
        self.running = False
        self.checkpoint = ""
        self.inputs = ""
        self.observation_kind = ""
        self.observation: KeypointArrayData | np.ndarray | None = None  # the newest keypoints or frame
        self.observation_ns = 0
        self.episode_start_ns = 0  # observations stamped before this belong to the scene before the episode
        self.state: RobotStateData | None = None
        self.publisher = None
        self._blocked: str | None = None
        self.blocked_reason = ""
        self._warn = ThrottledWarning(self.get_logger(), 5.0)
        self._keypoint_reset = None  # (service name, client) of keypoint_reset_service, made when first needed
        self.latency = RollingStats(50)
        self.failures = 0
        self.last_latency = 0.0
        self.create_service(Trigger, "~/start", self._on_start)
        self.create_service(Trigger, "~/stop", self._on_stop)
        self.create_service(Trigger, "~/reset", self._on_reset)
        self.diagnostics = Diagnostics(self, hardware_id="policy_node")
        self.diagnostics.add("inference", self._check_inference)
        self.diagnostics.add("inputs", self._check_inputs)
        self.diagnostics.add("keypoints", self._check_keypoints)
        self.run_server = RunPolicyServer(self, "~/run_policy")
        self.bring_up(autostart)

    # --- lifecycle --------------------------------------------------------------------------------

    def on_activate(self, state: State) -> TransitionCallbackReturn:
        self.running = True
        self.get_logger().info("active: producing action chunks")
        return super().on_activate(state)

    def on_deactivate(self, state: State) -> TransitionCallbackReturn:
        self.running = False
        self.runner.reset()
        self.get_logger().info("inactive: no new action chunks (the interpolator holds the arm)")
        return super().on_deactivate(state)

    def on_cleanup(self, state: State) -> TransitionCallbackReturn:
        self._release()
        self.get_logger().info("cleaned up: model released")
        return TransitionCallbackReturn.SUCCESS

    def on_shutdown(self, state: State) -> TransitionCallbackReturn:
        self.running = False
        return TransitionCallbackReturn.SUCCESS

    def _release(self) -> None:
        """Drop the model, subscriptions, timer and publisher of a configured node."""
        super()._release()
        self.publisher = None
        self.runner = None
        self.running = False
        self.observation = self.state = None
        self.observation_ns = 0

    def _configure(self) -> None:
        def param(name: str):
            return self.get_parameter(name).value

        checkpoint, device, spec = param("checkpoint"), param("device"), param("spec")
        inference, precision = param("inference"), param("precision")
        fuse, tolerance = param("fuse_kernels"), param("precision_tolerance")
        self.max_age_ns = round(param("max_input_age_s") * _NS)
        self.min_valid = param("min_valid_keypoints")
        self.slop_ns = round(param("slop_s") * _NS)
        threads = set_cpu_threads(param("cpu_threads"))
        if not checkpoint:
            raise ValueError("parameter 'checkpoint' is required (a directory with model.safetensors and config.yaml)")
        policy = load_policy(checkpoint, device)
        cfg = policy.config
        layout = read_layout(checkpoint)
        if spec and layout is not None:
            problem = mismatch(layout, layout_of_spec_file(spec), f"checkpoint {checkpoint}", f"spec {spec}")
            if problem:
                raise ValueError(problem)
        self.checkpoint = checkpoint
        self.step_ns = round(_NS / param("control_rate_hz"))
        self.runner = PolicyRunner(
            policy,
            self.step_ns,
            param("ddim_steps") or None,
            inference=inference,
            layout=layout,
            layout_source=checkpoint,
            precision=precision,
            fuse=fuse,
            tolerance=tolerance,
        )
        if self.runner.graphed is not None and self.runner.graphed.precision != precision:
            self.get_logger().warning(
                f"precision {precision} moved a made-up chunk by {self.runner.graphed.precision_error:.4f} "
                f"(> precision_tolerance {tolerance}): sampling in fp32"
            )
        self.observation_kind = cfg.observation
        self.observation, self.observation_ns, self.state = None, 0, None
        self.track(self.create_subscription(RobotState, "kil/robot_state", self._on_state, 10))
        if cfg.observation == "keypoints":
            self.inputs = "/kil/keypoints"
            self.track(self.create_subscription(KeypointArray, "kil/keypoints", self._on_keypoints, 10))
        else:
            self._subscribe_images(cfg, param("image_reliability"), param("mask_categories"))
        self.publisher = self.lifecycle_publisher(ActionChunk, "kil/action_chunk", 10)
        self.track(self.create_timer(self.step_ns / _NS, self._on_tick))
        observes = (
            f"{cfg.encoder.kind} encoder, K={cfg.encoder.num_keypoints}"
            if cfg.observation == "keypoints"
            else f"{cfg.observation} baseline on {self.inputs}"
        )
        self.get_logger().info(
            f"loaded {checkpoint}: {observes}, "
            f"n_obs={cfg.n_obs_steps}, horizon={cfg.horizon}, executing {cfg.n_action_steps}, device {device}, "
            f"{inference} UNet"
            + (f" ({self.runner.graphed.precision})" if self.runner.graphed is not None else "")
            + f", {threads} CPU thread(s)"
        )

    @property
    def lifecycle_state(self) -> str:
        """'unconfigured', 'inactive', 'active' or 'finalized'."""
        return self._state_machine.current_state[1]

    # --- inputs -----------------------------------------------------------------------------------

    def _subscribe_images(self, cfg, reliability: str, mask_categories: str) -> None:
        """The RGB baseline's colour frames, or S2's depth images and instance masks."""
        if reliability not in ("reliable", "best_effort"):
            raise ValueError(f"parameter image_reliability must be reliable or best_effort, got {reliability!r}")
        qos = QoSProfile(
            depth=2,
            reliability=ReliabilityPolicy.RELIABLE if reliability == "reliable" else ReliabilityPolicy.BEST_EFFORT,
        )
        if cfg.observation == "rgb":
            topics = {"camera/color/image_raw": self._on_color}
        else:
            from kil_perception.instances import parse_mask_categories

            self.mask_values = parse_mask_categories(mask_categories)  # raises naming the parameter
            missing = sorted(set(cfg.mask_categories) - set(self.mask_values.values()))
            if missing:
                raise ValueError(
                    f"parameter mask_categories {mask_categories!r} names no mask value for "
                    f"{', '.join(missing)} (the checkpoint's S2 mask shows {', '.join(cfg.mask_categories)})"
                )
            self.depths: list[tuple[int, Image]] = []
            self.masks: list[tuple[int, Image]] = []
            topics = {"camera/depth/image_raw": self._on_depth, "camera/instance_mask": self._on_mask}
        self.inputs = ", ".join(f"/{t}" for t in topics)
        for topic, callback in topics.items():
            events = qos_event_callbacks(self, topic, qos, "subscription")
            self.track(self.create_subscription(Image, topic, callback, qos, event_callbacks=events))

    def _on_color(self, msg: Image) -> None:
        try:
            frame = conversion.image_to_rgb(msg, what="/camera/color/image_raw")
        except conversion.ConversionError as error:
            self._warn("color", f"frame dropped: {error}")
            return
        self._set_observation(frame, conversion.time_to_ns(msg.header.stamp), "/camera/color/image_raw")

    def _on_depth(self, msg: Image) -> None:
        self.depths = [*self.depths[-4:], (conversion.time_to_ns(msg.header.stamp), msg)]
        self._pair_s2()

    def _on_mask(self, msg: Image) -> None:
        self.masks = [*self.masks[-4:], (conversion.time_to_ns(msg.header.stamp), msg)]
        self._pair_s2()

    def _pair_s2(self) -> None:
        """The newest depth image with a mask within ``slop_s`` becomes S2's frame."""
        from kil_perception.lifting import depth_in_metres
        from kil_policy.s2_observation import s2_frame, task_mask

        if not self.depths or not self.masks:
            return
        stamp, depth_msg = self.depths[-1]
        mask_stamp, mask_msg = min(self.masks, key=lambda item: abs(item[0] - stamp))
        if abs(mask_stamp - stamp) > self.slop_ns or stamp <= self.observation_ns:
            return
        try:
            depth = depth_in_metres(
                conversion.image_to_numpy(depth_msg, what="/camera/depth/image_raw"), depth_msg.encoding
            )
            index_map = conversion.image_to_numpy(mask_msg, what="/camera/instance_mask")
            if index_map.ndim != 2 or index_map.shape != depth.shape:
                raise conversion.ConversionError(
                    f"/camera/instance_mask is {mask_msg.width}x{mask_msg.height} {mask_msg.encoding}; expected a "
                    f"single-channel mask of the depth image's size {depth.shape[1]}x{depth.shape[0]}"
                )
        except (conversion.ConversionError, ValueError) as error:
            self._warn("s2", f"frame dropped: {error}")
            return
        mask = task_mask(index_map, self.mask_values, self.runner.policy.config.mask_categories)
        self._set_observation(s2_frame(mask, depth), stamp, "/camera/depth/image_raw")

    def _set_observation(self, frame, stamp_ns: int, topic: str) -> None:
        if stamp_ns < self.episode_start_ns:
            return  # (the scene before the episode)
        if stamp_ns <= self.observation_ns:
            kind = "repeats" if stamp_ns == self.observation_ns else "goes back from"
            self._warn(f"{topic} order", f"{topic} dropped: its stamp {kind} the previous one")
            return
        self.observation, self.observation_ns = frame, stamp_ns

    def _on_keypoints(self, msg: KeypointArray) -> None:
        try:
            keypoints = conversion.keypoints_from_msg(msg, what="/kil/keypoints")
        except conversion.ConversionError as error:
            self._warn("keypoints", f"dropped: {error}")
            return
        if keypoints.stamp_ns < self.episode_start_ns:
            return  # (found in the scene before the episode)
        if self._in_order("/kil/keypoints", self.observation, keypoints):
            self.observation, self.observation_ns = keypoints, keypoints.stamp_ns

    def _on_state(self, msg: RobotState) -> None:
        try:
            state = conversion.robot_state_from_msg(msg, what="/kil/robot_state")
        except conversion.ConversionError as error:
            self._warn("state", f"dropped: {error}")
            return
        if self._in_order("/kil/robot_state", self.state, state):
            self.state = state

    def _in_order(self, topic: str, previous, new) -> bool:
        """A message whose stamp is not newer than the previous one's is dropped (a warning, throttled)."""
        if previous is None or new.stamp_ns > previous.stamp_ns:
            return True
        kind = "repeats" if new.stamp_ns == previous.stamp_ns else "goes back from"
        self._warn(f"{topic} order", f"{topic} dropped: its stamp {kind} the previous one ({previous.stamp_ns} ns)")
        return False

    def _block(self, kind: str, reason: str) -> None:
        """Warn once per kind of problem (not per frame) that no chunks are produced."""
        self.blocked_reason = reason
        if kind != self._blocked:
            self._blocked = kind
            self.get_logger().warning(f"not producing action chunks: {reason}")

    def _unblock(self) -> None:
        self.blocked_reason = ""
        if self._blocked is not None:
            self.get_logger().info("inputs recovered; producing action chunks again")
            self._blocked = None

    # --- control loop -----------------------------------------------------------------------------

    def _inputs_problem(self, now_ns: int) -> tuple[str, str] | None:
        """(kind, description) of why the inputs cannot be used now, or None."""
        if self.state is None or self.observation is None:
            return "waiting", f"waiting for /kil/robot_state and {self.inputs}"
        observed = "keypoints" if self.observation_kind == "keypoints" else f"{self.observation_kind} frame"
        for name, stamp in (("robot state", self.state.stamp_ns), (observed, self.observation_ns)):
            if now_ns - stamp > self.max_age_ns:
                age = (now_ns - stamp) / _NS
                return "stale", f"{name} is {age:.2f} s old (max_input_age_s {self.max_age_ns / _NS})"
        unusable = self.runner.check(self.observation)
        if unusable is not None:
            return "mismatch", f"{self.inputs}: {unusable}"
        if self.observation_kind != "keypoints":
            return None
        valid = int(self.observation.valid.sum())
        if valid < self.min_valid:
            return "few keypoints", f"only {valid} valid keypoints (min_valid_keypoints {self.min_valid})"
        return None

    def _on_tick(self) -> None:
        if not self.running:
            return
        now = self.get_clock().now().nanoseconds
        problem = self._inputs_problem(now)
        if problem is not None:
            self.runner.reset()  # never mix observations across a gap
            self._block(*problem)
            return
        start = time.perf_counter()
        try:
            chunk = self.runner.tick(self.state, self.observation, now)
        except Exception as error:  # (e.g. out of GPU memory: this tick makes no chunk, the next tries again)
            self.runner.reset()
            self.failures += 1
            self._block("inference", f"inference failed ({type(error).__name__}: {error})")
            return
        self._unblock()
        if chunk is None:
            return
        self.publisher.publish(conversion.action_chunk_to_msg(chunk))
        elapsed = time.perf_counter() - start
        self.latency.add(elapsed)
        self.last_latency = elapsed
        if elapsed > self.runner.n_exec * self.step_ns / _NS:
            self.get_logger().warning(f"inference took {elapsed:.3f} s, longer than a chunk's execution")

    # --- diagnostics ------------------------------------------------------------------------------

    def _check_inference(self) -> Check:
        if self.runner is None:
            return self._unconfigured()
        budget = self.runner.n_exec * self.step_ns / _NS
        p50, p95 = self.latency.percentile(50), self.latency.percentile(95)
        values = {"chunks": self.latency.count, "failures": self.failures, "budget_ms": budget * 1e3}
        values |= {"p50_ms": None if p50 is None else p50 * 1e3, "p95_ms": None if p95 is None else p95 * 1e3}
        if p95 is None:
            return Check(OK, "no chunk yet", values)
        level = level_for(p95, self.latency_warn * budget, budget)
        text = f"inference p95 {p95 * 1e3:.0f} ms of a {budget * 1e3:.0f} ms chunk"
        return Check(level, text + (" (too slow: the arm will wait)" if level == ERROR else ""), values)

    def _unconfigured(self) -> Check:
        if self.config_error:
            return Check(ERROR, f"configure failed: {self.config_error}", {"state": self.lifecycle_state})
        return Check(WARN, "unconfigured (the configure transition loads the checkpoint)", {"state": "unconfigured"})

    def _check_inputs(self) -> Check:
        if self.runner is None:
            return self._unconfigured()
        now = self.get_clock().now().nanoseconds
        values: dict[str, object] = {"max_input_age_s": self.max_age_ns / _NS, "running": self.running}
        ages = {"/kil/robot_state": self.state.stamp_ns if self.state is not None else None}
        ages[self.inputs] = self.observation_ns if self.observation is not None else None
        for topic, stamp in ages.items():
            values[f"{topic} age_s"] = None if stamp is None else (now - stamp) / _NS
        if not self.running:
            return Check(OK, "inactive (~/start or the activate transition resumes)", values)
        if self._blocked == "inference":
            return Check(ERROR, "the last inference failed; see the log", values)
        problem = self._inputs_problem(now)
        if problem is not None:
            kind, reason = problem
            return Check(WARN if kind == "waiting" else ERROR, f"no action chunks: {reason}", values)
        oldest = max((now - stamp) / _NS for stamp in ages.values())
        if oldest > 0.5 * self.max_age_ns / _NS:
            return Check(WARN, f"inputs up to {oldest:.2f} s old (max_input_age_s {self.max_age_ns / _NS})", values)
        return Check(OK, "inputs fresh", values)

    def _check_keypoints(self) -> Check:
        if self.runner is None:
            return self._unconfigured()
        if self.observation_kind != "keypoints":
            return Check(OK, f"the {self.observation_kind} policy observes no keypoints", {})
        if not isinstance(self.observation, KeypointArrayData):
            return Check(WARN, f"no keypoints yet on {self.inputs}", {})
        return keypoint_validity(self.observation, self.min_valid)

    # --- services ---------------------------------------------------------------------------------

    def start(self) -> str:
        """Configure (when unconfigured) and activate; '' or why not."""
        if self.lifecycle_state == "unconfigured":
            self.trigger_configure()
            if self.config_error:
                return f"configure failed: {self.config_error}"
        if self.lifecycle_state == "inactive":
            self.trigger_activate()
        return "" if self.lifecycle_state == "active" else f"the node is {self.lifecycle_state}"

    def stop(self) -> None:
        """Deactivate (hold) when active."""
        if self.lifecycle_state == "active":
            self.trigger_deactivate()

    def _on_start(self, request, response):
        problem = self.start()
        response.success = not problem
        response.message = problem or "active: producing action chunks"
        return response

    def _on_stop(self, request, response):
        self.stop()
        response.success, response.message = True, f"{self.lifecycle_state}: no new action chunks"
        return response

    def _on_reset(self, request, response):
        self.clear_observations(since_ns=self.get_clock().now().nanoseconds)
        response.success, response.message = True, "observation history cleared (nothing stamped before kept)"
        return response

    def clear_observations(self, since_ns: int = 0) -> None:
        """Forget the observation history; with ``since_ns``, observations stamped before it are not used."""
        if self.runner is not None:
            self.runner.reset()
        self.observation = self.state = None
        self.observation_ns = 0
        self.episode_start_ns = since_ns

    async def new_episode(self, timeout_s: float = 5.0) -> str:
        """Before an episode (a RunPolicy goal): perception starts again on the new scene
        (``keypoint_reset_service``, answered within ``timeout_s``) and the observations from before
        are forgotten. Returns what was done, for the log."""
        self.clear_observations(since_ns=self.get_clock().now().nanoseconds)  # no chunk from the old scene meanwhile
        name = self.get_parameter("keypoint_reset_service").value
        done = "observations cleared"
        if self.observation_kind == "keypoints" and name:
            service = self.resolve_service_name(name)
            if self._keypoint_reset is None or self._keypoint_reset[0] != service:
                self._keypoint_reset = (service, self.create_client(Trigger, service))
            client = self._keypoint_reset[1]
            if not client.service_is_ready():
                done += f"; {service} is not up (keypoint_reset_service): not called"
            else:
                answer = await wait_for(self, client.call_async(Trigger.Request()), timeout_s)
                if answer is None:
                    done += f"; {service} gave no answer within {timeout_s:g} s"
                else:
                    done += f"; {service}: {answer.message or answer.success}"
        self.clear_observations(since_ns=self.get_clock().now().nanoseconds)
        return done


async def wait_for(node, future, timeout_s: float):
    """Await an rclpy future for at most ``timeout_s`` on ``node``'s clock; its result, or None."""
    from rclpy.task import Future

    either = Future()
    future.add_done_callback(lambda f: either.done() or either.set_result(f.result()))
    timer = node.create_timer(timeout_s, lambda: either.done() or either.set_result(None))
    try:
        return await either
    finally:
        node.destroy_timer(timer)


def main(args: list[str] | None = None) -> int:
    return spin_node(PolicyNode, args)


if __name__ == "__main__":
    sys.exit(main())
