"""Running a trained policy on the 10 Hz clock, without ROS: the one implementation behind
``policy_node`` and the simulator's policy rollouts.

Each :meth:`PolicyRunner.tick` appends the newest observation (robot state + keypoints, or the
camera frame for the RGB baseline) to the history; every ``n_action_steps`` ticks it samples a
chunk. The chunk carries the whole predicted horizon, stamped so that action ``n_obs - 1`` (the
command for the newest observation) is due one step after the tick, and
``execute_steps = n_obs - 1 + n_action_steps``. Only the ``n_obs`` ticks before a prediction
feed it: a caller whose observations cost time (rendering, perception) may :meth:`skip` the
others (:meth:`observation_needed` says which) and gets the same chunks.
"""

from __future__ import annotations

from collections import deque
from typing import Literal, get_args

import numpy as np
import torch

from kil_interfaces.data import ActionChunkData, KeypointArrayData, RobotStateData
from kil_interfaces.keypoint_layout import Layout, layout_of_message, mismatch
from kil_interfaces.representation import pose_from_action, proprio_from_pose
from kil_policy.data import resize_nearest
from kil_policy.graphed import DEFAULT_TOLERANCE, Fusion, GraphedSampler, Precision
from kil_policy.packed_unet import Denoiser
from kil_policy.policy import BatchKeys, KeypointDiffusionPolicy

InferenceMode = Literal["module", "packed", "compiled", "graph"]
INFERENCE_MODES = get_args(InferenceMode)
#: What a tick observes besides the robot state: keypoints (KIL), or an (H, W, 3) uint8 RGB frame
#: (the RGB baseline).
Observation = KeypointArrayData | np.ndarray


class PolicyRunner:
    """Observation history and chunk production for one policy.

    Args:
        policy: a loaded policy (eval mode).
        step_ns: control period (100 ms).
        ddim_steps: denoising steps (None = the policy's setting).
        seed: sampling seed (chunks are reproducible for the same inputs).
        inference: how the UNet runs: "module" (the training module), "packed" (same numbers,
            faster: ``kil_policy.packed_unet``) or "compiled" (packed + ``torch.compile``, fastest;
            compiles and runs one warm-up chunk here, tens of seconds on a small CPU; CUDA graphs
            on CUDA) or "graph" (CUDA only: the whole chunk, encoder and sampling loop included, as
            one CUDA graph captured here; ``kil_policy.graphed``).
        layout: the keypoint layout the policy was trained on (``keypoint_layout.read_layout`` of
            its checkpoint); keypoints in another layout are refused. None: only the count is checked.
        layout_source: how to name the trained layout in that refusal (e.g. the checkpoint path).
        precision, fuse, tolerance: the graph sampler's reduced precision ("fp32", "tf32", "bf16";
            kept only within ``tolerance`` of float32) and kernel fusion ("none", "inductor",
            "triton"), inference "graph" only (``kil_policy.graphed``).
    """

    def __init__(
        self,
        policy: KeypointDiffusionPolicy,
        step_ns: int = 100_000_000,
        ddim_steps: int | None = None,
        seed: int = 0,
        inference: InferenceMode = "packed",
        layout: Layout | None = None,
        layout_source: str = "the checkpoint",
        precision: Precision = "fp32",
        fuse: Fusion = "none",
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        if inference not in INFERENCE_MODES:
            raise ValueError(f"inference must be one of {', '.join(INFERENCE_MODES)}, got {inference!r}")
        if inference != "graph" and (precision != "fp32" or fuse != "none"):
            raise ValueError(
                f"precision {precision!r} and fuse {fuse!r} apply to inference graph only (inference is {inference!r})"
            )
        self.policy = policy
        config = policy.config
        self.n_obs, self.n_exec = config.n_obs_steps, config.n_action_steps
        self.images = config.uses_images
        self.channels = config.image_channels
        self.num_keypoints = config.encoder.num_keypoints
        self.use_similarities = config.encoder.kind == "sim"
        self.layout, self.layout_source = layout, layout_source
        self.step_ns = step_ns
        self.ddim_steps = ddim_steps
        self.device = next(policy.parameters()).device
        self.generator = torch.Generator(device=self.device).manual_seed(seed)
        self.history: deque[tuple[RobotStateData, Observation]] = deque(maxlen=self.n_obs)
        self.ticks = 0
        if inference == "graph" and self.device.type != "cuda":
            raise ValueError(f"inference graph needs a CUDA device; the policy is on {self.device} (use packed)")
        self.denoiser = None
        if inference in ("packed", "compiled"):
            self.denoiser = Denoiser(policy.unet, compile=inference == "compiled")
        self.graphed: GraphedSampler | None = None
        if inference == "compiled":
            self._warm_up()
        elif inference == "graph":
            self.graphed = GraphedSampler(
                policy, self._example_batch(), ddim_steps, precision=precision, fuse=fuse, tolerance=tolerance
            )
            self.denoiser = self.graphed.denoiser

    def _example_batch(self) -> dict[str, torch.Tensor]:
        """Made-up inputs of the shapes :meth:`batch` produces: robot state and keypoints in the
        middle of the training range (what the graph sampler checks a reduced precision on)."""
        n, k = self.n_obs, self.num_keypoints
        with torch.no_grad():  # (normalised 0 is the middle of the training range)
            proprio = self.policy.proprio_normalizer.unnormalize(torch.zeros(1, n, 7, device=self.device))
            keypoints = self.policy.keypoint_normalizer.unnormalize(torch.zeros(1, n, k, 3, device=self.device))
        batch = {BatchKeys.PROPRIO: proprio}
        if self.images:
            batch[BatchKeys.IMAGE] = torch.full((1, n, self.channels, *self.policy.config.image_size), 0.5)
        else:
            batch[BatchKeys.KEYPOINTS] = keypoints
            batch[BatchKeys.VALID] = torch.ones(1, n, k, dtype=torch.bool)
        if self.use_similarities and not self.images:
            batch[BatchKeys.SIMILARITIES] = torch.zeros(1, n, k, k)
        return {key: value.to(self.device) for key, value in batch.items()}

    def _warm_up(self) -> None:
        """One chunk on made-up inputs, so that compilation happens now and not on the robot."""
        batch = self._example_batch()
        for _ in range(2):  # CUDA graphs record on the second call
            self.policy.predict_action_chunk(batch, steps=self.ddim_steps, denoiser=self.denoiser)

    def reset(self) -> None:
        """Forget the history (a new episode, or a gap in the inputs)."""
        self.history.clear()
        self.ticks = 0

    def check(self, observation: Observation) -> str | None:
        """Why this observation cannot be used, or None."""
        if self.images:
            c = self.channels
            if not (isinstance(observation, np.ndarray) and observation.ndim == 3 and observation.shape[2] == c):
                what = "colour frame" if c == 3 else "S2 frame (mask, relative depth; kil_policy.s2_observation)"
                shape = getattr(observation, "shape", type(observation).__name__)
                return f"the {self.policy.config.observation} policy needs an (H, W, {c}) uint8 {what}, got {shape}"
            return None
        if not isinstance(observation, KeypointArrayData):
            return "the keypoint policy needs keypoints (KeypointArrayData)"
        if self.layout is not None:
            return mismatch(self.layout, layout_of_message(observation), self.layout_source, "the input")
        if observation.num_keypoints != self.num_keypoints:
            return f"{observation.num_keypoints} keypoints given; the checkpoint expects {self.num_keypoints}"
        return None

    def observation_needed(self) -> bool:
        """Whether the next tick's observation will be in the history of a prediction."""
        return any((self.ticks + j) % self.n_exec == 0 for j in range(self.n_obs))

    def skip(self) -> None:
        """A tick whose observation no prediction would see: counted, nothing observed.

        Raises:
            RuntimeError: when the observation is needed (see :meth:`observation_needed`).
        """
        if self.observation_needed():
            raise RuntimeError(f"tick {self.ticks} feeds a prediction; it cannot be skipped")
        self.ticks += 1

    def tick(self, state: RobotStateData, observation: Observation, now_ns: int) -> ActionChunkData | None:
        """Add the newest observation; returns a chunk on every ``n_action_steps``-th tick.

        Raises:
            ValueError: the observation does not fit the policy (layout, count or kind).
        """
        problem = self.check(observation)
        if problem is not None:
            raise ValueError(problem)
        self.history.append((state, observation))
        due = self.ticks % self.n_exec == 0
        self.ticks += 1
        return self.predict(now_ns) if due else None

    def batch(self) -> dict[str, torch.Tensor]:
        """The policy input from the history (the first observation repeated at the start)."""
        observations = list(self.history)
        while len(observations) < self.n_obs:
            observations.insert(0, observations[0])
        states = [s for s, _ in observations]
        frames = [o for _, o in observations]
        proprio = proprio_from_pose(
            np.stack([s.position for s in states]),
            np.stack([s.quaternion for s in states]),
            np.array([s.gripper for s in states]),
            self.policy.config.proprio_rotation,
        )
        batch = {BatchKeys.PROPRIO: torch.from_numpy(proprio).float()[None]}
        if self.images:
            size = self.policy.config.image_size
            images = np.stack([resize_nearest(f, size) for f in frames])  # (n_obs, H, W, C), as in training
            batch[BatchKeys.IMAGE] = torch.from_numpy(images).permute(0, 3, 1, 2).float()[None] / 255.0
            return {k: v.to(self.device) for k, v in batch.items()}
        points = np.stack([np.where(k.valid[:, None], k.points, 0.0) for k in frames])
        batch[BatchKeys.KEYPOINTS] = torch.from_numpy(points).float()[None]
        batch[BatchKeys.VALID] = torch.from_numpy(np.stack([k.valid for k in frames]))[None]
        if self.use_similarities:
            zeros = np.zeros((self.num_keypoints, self.num_keypoints), np.float32)
            sims = np.stack([k.similarities if k.similarities is not None else zeros for k in frames])
            batch[BatchKeys.SIMILARITIES] = torch.from_numpy(sims).float()[None]
        return {k: v.to(self.device) for k, v in batch.items()}

    def predict(self, now_ns: int) -> ActionChunkData:
        """Sample a chunk from the current history."""
        if self.graphed is not None:
            actions = self.graphed(self.batch(), generator=self.generator)
        else:
            actions = self.policy.predict_action_chunk(
                self.batch(), steps=self.ddim_steps, generator=self.generator, denoiser=self.denoiser
            )
        positions, quaternions, gripper = pose_from_action(actions[0].double().cpu().numpy())
        state, observation = self.history[-1]
        newest = state.stamp_ns
        if isinstance(observation, KeypointArrayData):
            newest = max(newest, observation.stamp_ns)
        return ActionChunkData(
            stamp_ns=now_ns - (self.n_obs - 2) * self.step_ns,
            frame_id=state.frame_id,
            step_ns=self.step_ns,
            positions=positions,
            quaternions=quaternions,
            gripper=gripper.astype(np.float32),
            execute_steps=self.n_obs - 1 + self.n_exec,
            inference_latency=max(0.0, (now_ns - newest) / 1e9),
        )
