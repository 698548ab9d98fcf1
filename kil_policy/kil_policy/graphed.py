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
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from kil_policy.packed_unet import Denoiser
from kil_policy.policy import KeypointDiffusionPolicy


def capture_cuda_graph(
    fn: Callable[[], object],
    device: torch.device,
    warmups: int = 3,
    after_warmup: Callable[[], None] | None = None,
    generators: tuple[torch.Generator, ...] = (),
) -> tuple[torch.cuda.CUDAGraph, object]:
    """Capture one call of ``fn`` as a CUDA graph: ``warmups`` calls on a side stream first (lazy
    initialisation, cuBLAS workspaces and autotuning happen outside the graph), then
    ``after_warmup``, then the capture (which records kernels without running them), with
    ``generators`` registered so each replay advances them.

    Returns:
        (the graph, what the captured call returned: its output buffers, refreshed by each replay).
    """
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(warmups):
            fn()
    torch.cuda.current_stream(device).wait_stream(stream)
    if after_warmup is not None:
        after_warmup()
    graph = torch.cuda.CUDAGraph()
    for generator in generators:
        graph.register_generator_state(generator)
    with torch.cuda.graph(graph):
        output = fn()
    return graph, output


class GraphedSampler:
    """Samples (B, horizon, 10) action chunks by replaying one captured CUDA graph.

    Args:
        policy: the policy (eval mode; its device decides whether a graph is captured).
        example: a batch of the shapes every later call will have (``B`` included).
        steps: DDIM steps (None: the policy's setting).
        denoiser: the packed UNet step (None: a fresh ``Denoiser(policy.unet)``).
        capture: None: capture on CUDA only; False: run eagerly from the same buffers.
    """

    def __init__(
        self,
        policy: KeypointDiffusionPolicy,
        example: dict[str, Tensor],
        steps: int | None = None,
        denoiser: Denoiser | None = None,
        capture: bool | None = None,
    ) -> None:
        self.policy = policy
        self.steps = steps or policy.config.head.inference_steps
        self.denoiser = denoiser or Denoiser(policy.unet)
        device = next(policy.parameters()).device
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
        if self.capture:
            self._capture()

    @torch.no_grad()
    def _run(self) -> Tensor:
        return self.policy.predict_action_chunk(self.inputs, steps=self.steps, denoiser=self.denoiser, noise=self.noise)

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
