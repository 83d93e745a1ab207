"""What the network does inside (Sec. 4.2 "Analysis of Layer Responses", Fig. 7), and how gradients flow.

- Layer responses: the std of each 3x3 layer's output after BN and before the ReLU/addition, over the
  test set. Measured during the evaluation every epoch already does, by forward hooks: no extra pass.
- Gradient norms: the L2 norm of each 3x3 conv's weight gradient and of the gradient reaching each
  block's input, averaged over the steps of an epoch (sampled every `every` steps to keep the cost low).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
import torch.nn as nn


class Probes:
    """`model` names its own probe points (experiments.nets.families.ProbedModel), whatever its family."""

    def __init__(self, model: nn.Module, every: int = 10):
        self.model, self.every = model, max(1, every)
        self.points, self.weights, self.blocks = model.response_points(), model.conv_weights(), model.blocks()
        dev = next(model.parameters()).device
        # [-, sum, sum of squares] on the device; the element counts n on the host (a checkpoint stores them as
        # column 0, the layout of earlier checkpoints)
        self.moments = torch.zeros(len(self.points), 3, dtype=torch.float64, device=dev)
        self.counts = [0] * len(self.points)
        self.grad_sums = torch.zeros(len(self.weights) + len(self.blocks), device=dev)
        self.samples = 0
        self.layer_rows: list = []
        self.grad_rows: list = []

    # -- layer responses, during an evaluation
    @contextmanager
    def responses(self):
        """Per batch, each point's sum and L2 norm in fp32, each one reduction kernel straight from the (bf16 or
        fp32) output, no copy; then, after the model's forward, all points' pairs stacked, squared and added to
        the fp64 moments at once. Element counts are host integers. (The hook before this made 8 kernels per
        point per batch: 1.32 s of test passes an epoch with the hooks against 0.53 s without, H100, 8 nets.)"""
        batch: dict = {}

        def add_one(i, sm, norm):
            self.moments[i, 1:].add_(torch.stack([sm, norm.square()]).double())

        def hook(i):
            def record(module, inputs, out):
                o = out.detach()
                if i in batch:  # a point run twice in one forward (a shared module): its first pair goes in alone
                    add_one(i, *batch.pop(i))
                # fp32 accumulation of a bf16 output: squaring in bf16 would keep 8 bits; torch's cascade
                # summation in fp32 is exact to about 1e-7 over a 16M-element batch (measured)
                batch[i] = (o.sum(dtype=torch.float32), torch.linalg.vector_norm(o, dtype=torch.float32))
                self.counts[i] += o.numel()
            return record

        def flush(module, inputs, out):
            if not batch:
                return
            n = len(self.points)
            if len(batch) == n:  # every point fired: one stack and one add for the whole batch
                pairs = torch.stack([v for i in range(n) for v in batch[i]]).view(n, 2).double()
                pairs[:, 1].square_()  # norm -> sum of squares
                self.moments[:, 1:].add_(pairs)  # in place on the view: no copy back
            else:
                for i, pair in batch.items():
                    add_one(i, *pair)
            batch.clear()
        handles = [m.register_forward_hook(hook(i)) for i, (_, _, m) in enumerate(self.points)]
        handles.append(self.model.register_forward_hook(flush))
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            batch.clear()

    def response_std(self) -> torch.Tensor:
        _, s, ss = self.moments.cpu().T
        n = torch.tensor(self.counts, dtype=torch.float64)
        return (ss / n - (s / n) ** 2).clamp_min(0).sqrt()

    # -- gradients, during a training step
    def wants(self, iteration: int) -> bool:
        return iteration % self.every == 0

    @contextmanager
    def input_grads(self):
        """Record the norm of the gradient reaching each block's input during the backward pass inside."""
        offset = len(self.weights)

        def pre_hook(i):
            def record(grad):  # returns None: the gradient itself flows on unchanged
                self.grad_sums[offset + i] += grad.detach().float().norm()

            def attach(module, inputs):
                if inputs[0].requires_grad:
                    inputs[0].register_hook(record)
            return attach
        handles = [m.register_forward_pre_hook(pre_hook(i)) for i, (_, _, m) in enumerate(self.blocks)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    def add_weight_grads(self) -> None:
        """Device ops only (a captured graph can replay them); the caller counts the sample."""
        grads = [w.grad.detach().float() for _, _, w in self.weights]
        self.grad_sums[: len(grads)] += torch.stack(torch._foreach_norm(grads))

    # -- per epoch: turn the sums into rows, reset
    def end_epoch(self, epoch: int) -> None:
        if any(self.counts):
            std = self.response_std().tolist()
            self.layer_rows += [{"epoch": epoch, "layer": i + 1, "name": name, "stage": stage, "std": v}
                                for i, ((name, stage, _), v) in enumerate(zip(self.points, std))]
        if self.samples:
            means = (self.grad_sums / self.samples).tolist()
            named = [(n, s, "weight") for n, s, _ in self.weights] + [(n, s, "input") for n, s, _ in self.blocks]
            self.grad_rows += [{"epoch": epoch, "layer": i + 1 if kind == "weight" else i + 1 - len(self.weights),
                                "name": name, "stage": stage, "kind": kind, "norm": v, "samples": self.samples}
                               for i, ((name, stage, kind), v) in enumerate(zip(named, means))]
        self.moments.zero_()
        self.counts = [0] * len(self.points)
        self.grad_sums.zero_()
        self.samples = 0

    def state_dict(self) -> dict:
        moments = self.moments.cpu()
        moments[:, 0] = torch.tensor(self.counts, dtype=torch.float64)
        return {"moments": moments, "grad_sums": self.grad_sums.cpu(), "samples": self.samples,
                "layer_rows": self.layer_rows, "grad_rows": self.grad_rows}

    def load_state_dict(self, state: dict) -> None:
        self.moments.copy_(state["moments"])
        self.counts = [int(v) for v in state["moments"][:, 0].tolist()]
        self.moments[:, 0] = 0
        self.grad_sums.copy_(state["grad_sums"])
        self.samples = state["samples"]
        self.layer_rows, self.grad_rows = list(state["layer_rows"]), list(state["grad_rows"])
