"""The whole action chunk as one CUDA graph: normalise, encode, FiLM precompute, every DDIM step
and unnormalise, captured once per (batch size, device) and replayed per chunk.

At the action head's size a chunk is bound by kernel launches, not arithmetic (issue #13: the
weights of one denoising step are read in ~15 us on an H200, while 14 steps launch several hundred
kernels). Replaying one graph removes the per-kernel host overhead and every host synchronisation.
Capturing needs what ``predict_action_chunk`` already does: the DDIM coefficients as device
tensors made before capture (``KeypointDiffusionPolicy.ddim``), no ``.item()``, no data-dependent
shapes (the transformer's nested-tensor fast path is turned off while capturing).

On a device without CUDA graphs (the CPU) the same static-buffer code runs eagerly: that is what
the CPU tests check against ``predict_action_chunk``.

Two ways to cut the kernels inside the graph (issue #13: ~30 small GEMMs per step bound the chunk):

- ``fuse="inductor"`` runs the packed step through ``torch.compile`` (inductor) without its own
  CUDA graphs, so the GroupNorm-Mish-FiLM chains and the bias/residual additions become fused
  kernels, and the outer graph captures those. ``fuse="triton"`` runs each residual block as two
  hand-written Triton kernels, the convolution with its GroupNorm-Mish-FiLM (or residual)
  epilogue in one (``kil_policy.fused_blocks``); float32 or TF32 only.
- ``precision`` "tf32" (CUDA only: TF32 tensor-core GEMMs and convolutions, chosen at capture
  and kept by the graph; the process-wide flags are restored afterwards; "fp32" turns TF32 off the
  same way, cuDNN's default included) or "bf16" (autocast: bf16
  GEMMs, float32 reductions and DDIM update). Either is kept only where it stays within
  ``tolerance`` of float32: at construction the sampler draws one chunk of the example batch both
  ways from the same noise and compares the normalised actions (range [-1, 1]); beyond the
  tolerance it warns and samples in float32. ``precision_error`` holds the measured difference.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal, get_args

import torch
from torch import Tensor

from kil_perception.cuda_graph import capture_cuda_graph
from kil_policy.packed_unet import Denoiser
from kil_policy.policy import KeypointDiffusionPolicy

Precision = Literal["fp32", "tf32", "bf16"]
PRECISIONS: tuple[str, ...] = get_args(Precision)
#: Default largest difference from float32 (normalised actions, range [-1, 1]) a reduced precision
#: may make: 0.5 % of the range, 1.5 mm on a 0.6 m workspace axis.
DEFAULT_TOLERANCE = 0.01
Fusion = Literal["none", "inductor", "triton"]
FUSIONS: tuple[str, ...] = get_args(Fusion)


class GraphedSampler:
    """Samples (B, horizon, 10) action chunks by replaying one captured CUDA graph.

    Args:
        policy: the policy (eval mode; its device decides whether a graph is captured).
        example: a batch of the shapes every later call will have (``B`` included); also the input
            on which a reduced precision is checked against float32.
        steps: DDIM steps (None: the policy's setting).
        denoiser: the packed UNet step (None: a fresh ``Denoiser`` as ``fuse`` says).
        capture: None: capture on CUDA only; False: run eagerly from the same buffers.
        precision: "fp32", "tf32" (CUDA only) or "bf16" (see the module docstring).
        fuse: "none" (the packed torch step), "inductor" (compiled, fused kernels) or "triton"
            (two fused kernels per residual block) inside the graph.
        tolerance: largest normalised-action difference from float32 a reduced precision may make.
    """

    def __init__(
        self,
        policy: KeypointDiffusionPolicy,
        example: dict[str, Tensor],
        steps: int | None = None,
        denoiser: Denoiser | None = None,
        capture: bool | None = None,
        precision: Precision = "fp32",
        fuse: Fusion = "none",
        tolerance: float = DEFAULT_TOLERANCE,
    ) -> None:
        device = next(policy.parameters()).device
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "tf32" and device.type != "cuda":
            raise ValueError(f"precision tf32 needs CUDA tensor cores; the policy is on {device} (use fp32 or bf16)")
        if not tolerance > 0:
            raise ValueError(f"tolerance must be > 0, got {tolerance}")
        if fuse not in FUSIONS:
            raise ValueError(f"fuse must be one of {', '.join(FUSIONS)}, got {fuse!r}")
        if fuse != "none" and denoiser is not None:
            raise ValueError(f"pass fuse={fuse!r} or a denoiser, not both (fuse builds its own denoiser)")
        if fuse == "triton" and precision == "bf16":
            raise ValueError("fuse triton computes in fp32 or tf32; precision bf16 needs fuse none or inductor")
        self.policy = policy
        self.steps = steps or policy.config.head.inference_steps
        self.denoiser = denoiser or Denoiser(
            policy.unet, compile=fuse == "inductor", cuda_graphs=False, triton=fuse == "triton"
        )
        self.device = device
        self.inputs = {key: torch.zeros_like(value, device=device) for key, value in example.items()}
        batch_size = next(iter(example.values())).shape[0]
        self.noise = torch.zeros(batch_size, policy.config.horizon, 10, device=device)
        self.capture = device.type == "cuda" if capture is None else capture
        if self.capture and device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device; the policy is on {device}")
        policy.ddim(self.steps, device, torch.float32)  # device coefficients, made before capture
        self.graph: torch.cuda.CUDAGraph | None = None
        self.output: Tensor | None = None
        self.precision: Precision = "fp32"
        self.precision_error = 0.0
        if precision != "fp32":
            self._choose_precision(example, precision, tolerance)
        if self.capture:
            self._capture()

    def _choose_precision(self, example: dict[str, Tensor], precision: Precision, tolerance: float) -> None:
        """Keep ``precision`` if its chunk of ``example`` is within ``tolerance`` of float32's."""
        for key, value in example.items():
            self.inputs[key].copy_(value)
        generator = torch.Generator(device=self.device).manual_seed(0)
        self.noise.copy_(torch.randn(self.noise.shape, generator=generator, device=self.device))
        normalise = self.policy.action_normalizer.normalize
        reference = normalise(self._run()).clone()
        self.precision = precision
        self.precision_error = float((normalise(self._run()) - reference).abs().max())
        if not self.precision_error <= tolerance:
            warnings.warn(
                f"precision {precision} moved the actions by {self.precision_error:.4f} (normalised, range "
                f"[-1, 1]) from float32, more than the tolerance {tolerance}: sampling in fp32",
                stacklevel=3,
            )
            self.precision = "fp32"

    @contextmanager
    def _precision(self) -> Iterator[None]:
        if self.precision == "bf16":
            # (no weight-cast cache: a captured graph must not keep tensors made in one call)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, cache_enabled=False):
                yield
        elif self.device.type == "cuda":  # TF32 on for tf32, off for fp32 (cuDNN has it on by default)
            saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            allow = self.precision == "tf32"
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = allow
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved
        else:
            yield

    @torch.no_grad()
    def _run(self) -> Tensor:
        with self._precision():
            chunk = self.policy.predict_action_chunk(
                self.inputs, steps=self.steps, denoiser=self.denoiser, noise=self.noise
            )
        return chunk.float()

    def _capture(self) -> None:
        fastpath = torch.backends.mha.get_fastpath_enabled()
        torch.backends.mha.set_fastpath_enabled(False)  # (nested tensors have data-dependent shapes)
        try:
            self.graph, self.output = capture_cuda_graph(self._run, self.device)
        finally:
            torch.backends.mha.set_fastpath_enabled(fastpath)

    @torch.no_grad()
    def __call__(self, batch: dict[str, Tensor], noise: Tensor | None = None, generator=None) -> Tensor:
        """(B, horizon, 10) unnormalised actions for ``batch`` (same shapes as the example).

        Args:
            noise: the initial noise (default: drawn with ``generator`` on the policy's device).
        """
        for key, value in batch.items():
            target = self.inputs.get(key)
            if target is None or target.shape != value.shape:
                raise ValueError(
                    f"batch[{key!r}] has shape {tuple(value.shape)}; this sampler was built for "
                    f"{None if target is None else tuple(target.shape)}"
                )
            target.copy_(value, non_blocking=True)
        if noise is None:
            noise = torch.randn(self.noise.shape, generator=generator, device=self.device)
        self.noise.copy_(noise, non_blocking=True)
        if self.graph is None:
            return self._run()
        self.graph.replay()
        return self.output.clone()
