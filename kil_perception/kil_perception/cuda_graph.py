"""CUDA-graph capture shared by perception and policy (``kil_policy`` imports it from here).

A frame's or a chunk's work is hundreds of small kernels whose host-side launch cost exceeds
their run time on an H100/H200 (issue #13); recording them once as a CUDA graph and replaying it
removes that cost. ``capture_cuda_graph`` records one call; ``GraphedCall`` wraps a function of
one tensor and keeps a graph per input shape (a camera has one), falling back to eager calls,
with one warning, where a model cannot be captured.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable

import torch
from torch import Tensor


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


class GraphedCall:
    """``fn(x)`` replayed from a CUDA graph captured per input shape and dtype.

    The result is the graph's output (a tensor, or a model output holding tensors): it is valid
    until the next call with the same shape, which overwrites it, unless ``copy_output`` asks for
    a copy of a tensor output. Inputs not on CUDA, and every call after a failed capture, run
    ``fn`` eagerly (its own fresh result, never copied).

    Args:
        fn: a function of one (fixed-shape) tensor, without host synchronisation.
        name: what to call it in the warning when it cannot be captured.
        enabled: False runs eagerly always.
        copy_output: return a copy of the replayed tensor output (for results kept across frames).
    """

    def __init__(
        self, fn: Callable[[Tensor], object], name: str, enabled: bool = True, copy_output: bool = False
    ) -> None:
        self.fn = fn
        self.name = name
        self.enabled = enabled
        self.copy_output = copy_output
        self._graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, Tensor, object]] = {}

    @property
    def captured(self) -> int:
        """How many graphs (input shapes) are held."""
        return len(self._graphs)

    def __call__(self, x: Tensor) -> object:
        if not self.enabled or x.device.type != "cuda":
            return self.fn(x)
        key = (tuple(x.shape), x.dtype, x.device)
        entry = self._graphs.get(key)
        if entry is None:
            static = x.clone()
            try:
                graph, output = capture_cuda_graph(lambda: self.fn(static), x.device)
            except RuntimeError as error:  # (an operation that cannot be captured: run eagerly from now on)
                warnings.warn(f"{self.name}: CUDA graph capture failed ({error}); running eagerly", stacklevel=2)
                self.enabled = False
                torch.cuda.synchronize(x.device)
                return self.fn(x)
            entry = self._graphs[key] = (graph, static, output)
        graph, static, output = entry
        static.copy_(x)
        graph.replay()
        return output.clone() if self.copy_output else output
