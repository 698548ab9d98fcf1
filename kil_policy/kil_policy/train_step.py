"""One training step without host synchronisation, optionally replayed as one CUDA graph.

A step draws the batch indices on the data's device, gathers the windows from the device-resident
dataset (``TensorWindows``), augments them there, runs forward (bf16 autocast on CUDA), backward
and AdamW at the learning rate the schedule set. The loss stays on the device, summed; it is read (one
synchronisation) only when the caller asks for the mean, every ``log_every`` steps. At the policy's
size a step is launch-bound (issue #13): with ``graph=True`` (CUDA only) the whole step is captured
once, with a capturable fused AdamW and the learning rate as a device tensor, and each call
replays it. Distributed training (DDP) keeps the eager step.
"""

from __future__ import annotations

import torch
from torch import Tensor

from kil_perception.cuda_graph import capture_cuda_graph
from kil_policy.augmentation import AugmentationConfig, augment
from kil_policy.data import TensorWindows


class TrainStep:
    """Calls run training steps; :meth:`take_mean_loss` reads the mean loss since the last read.
    The learning rate is the optimiser's, set by its schedule between calls (``LRScheduler`` fills
    a tensor learning rate in place, which a captured graph then reads).

    Args:
        model: what computes the loss from a batch (the policy, or its DDP wrapper).
        optimizer: its optimiser (``capturable=True`` and a tensor learning rate for ``graph``).
        dataset: the training windows, on the training device.
        batch_size: windows per step.
        augmentation: the batch augmentation.
        generator: the random generator on the training device (indices, augmentation).
        graph: capture the step as a CUDA graph (CUDA only).
        bf16: forward under bf16 autocast (the weights, optimiser and loss stay fp32).
    """

    def __init__(
        self,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer,
        dataset: TensorWindows,
        batch_size: int,
        augmentation: AugmentationConfig,
        generator: torch.Generator,
        graph: bool = False,
        bf16: bool | None = None,
    ) -> None:
        self.model, self.optimizer = model, optimizer
        self.dataset, self.batch_size, self.augmentation = dataset, batch_size, augmentation
        self.generator = generator
        self.device = generator.device
        if graph and self.device.type != "cuda":
            raise ValueError(f"a CUDA graph training step needs CUDA; training runs on {self.device}")
        self.loss_sum = torch.zeros((), device=self.device)
        self.count = 0
        self._graph: torch.cuda.CUDAGraph | None = None
        self._want_graph = graph
        self.bf16 = self.device.type == "cuda" if bf16 is None else bf16

    def _step(self) -> None:
        indices = torch.randint(len(self.dataset), (self.batch_size,), generator=self.generator, device=self.device)
        batch = augment(self.dataset.batch(indices), self.augmentation, self.generator)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(batch)  # forward() is the loss; DDP syncs gradients through it
        self.optimizer.zero_grad(set_to_none=self._want_graph is False)
        loss.backward()
        self.optimizer.step()
        self.loss_sum += loss.detach().float()

    def _capture(self) -> None:
        """Warm up (optimiser state, cuBLAS workspaces) with a zero learning rate, so the weights do
        not move; put the learning rate, the optimiser state and the loss back as they were; then
        capture."""
        lrs = [group["lr"].clone() for group in self.optimizer.param_groups]
        saved = {
            p: {k: v.clone() for k, v in s.items() if isinstance(v, Tensor)} for p, s in self.optimizer.state.items()
        }
        for group in self.optimizer.param_groups:
            group["lr"].fill_(0.0)

        def restore() -> None:
            for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
                group["lr"].copy_(lr)
            for parameter, state in self.optimizer.state.items():
                for key, value in state.items():
                    if isinstance(value, Tensor):
                        value.copy_(saved[parameter][key]) if parameter in saved else value.zero_()
            self.loss_sum.zero_()

        self._graph, _ = capture_cuda_graph(self._step, self.device, after_warmup=restore, generators=(self.generator,))

    def __call__(self) -> None:
        """Run one training step at the optimiser's current learning rate."""
        if self._want_graph:
            if self._graph is None:
                self._capture()
            self._graph.replay()
        else:
            self._step()
        self.count += 1

    def take_mean_loss(self) -> float:
        """The mean loss of the steps since the last call (one host synchronisation)."""
        mean = float(self.loss_sum.item()) / max(1, self.count)
        self.loss_sum.zero_()
        self.count = 0
        return mean
