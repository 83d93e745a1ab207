"""The CUDA fast path's one piece of machinery: the whole training step captured as a CUDA graph.

A ResNet-56 step at batch 128 is ~500 small kernels whose launch cost exceeds their math; replaying a
captured graph launches them all at once. What the graph does is exactly `Trainer._step`: the same ops
on the same parameter, buffer and optimizer tensors, so a probed (eager) step can be mixed in at any time.
"""
from __future__ import annotations

import logging

import torch

log = logging.getLogger("experiments")

WARMUP_STEPS = 3  # eager steps on a side stream before capture (cuDNN autotuning, lazy allocations)


class CapturedStep:
    """Two graphs over the same tensors: the plain step, and the step with the gradient probes (their hooks
    ran once, at capture; the norms they compute are kernels in the graph like any other)."""

    def __init__(self, graph, probed_graph, x: torch.Tensor, y: torch.Tensor):
        self.graph, self.probed_graph, self.x, self.y = graph, probed_graph, x, y

    def replay(self, x: torch.Tensor, y: torch.Tensor, probe: bool = False) -> bool:
        """Run the step; False if there is no graph for it (the caller then steps eagerly)."""
        graph = self.probed_graph if probe else self.graph
        if graph is None:
            return False
        self.x.copy_(x)  # also converts to the static buffer's memory format (channels_last)
        self.y.copy_(y)
        graph.replay()
        return True

    @classmethod
    def capture(cls, trainer, x: torch.Tensor, y: torch.Tensor):
        """Capture `trainer._step`; the warm-up steps are undone, so training sees no extra step.
        Returns False (stay eager) if capture fails, after restoring the state."""
        conv_weight = next(p for p in trainer.model.parameters() if p.dim() == 4)
        channels_last = conv_weight.is_contiguous(memory_format=torch.channels_last) and not conv_weight.is_contiguous()
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        static_x = torch.empty_like(x, memory_format=fmt).copy_(x)
        static_y = y.clone()
        saved = snapshot(trainer)
        try:
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(WARMUP_STEPS):
                    trainer._step(static_x, static_y)
            torch.cuda.current_stream().wait_stream(side)
            restore(trainer, saved)
            graph = torch.cuda.CUDAGraph()
            trainer.optimizer.zero_grad(set_to_none=True)  # grads are then allocated inside the graph's pool
            with torch.cuda.graph(graph):
                trainer._step(static_x, static_y)
        except Exception as e:  # an odd driver or op: train eagerly rather than not at all
            torch.cuda.synchronize()
            restore(trainer, saved)
            log.warning("CUDA graph capture failed (%s: %s); continuing without graphs (speed.cuda_graphs=off "
                        "silences this)", type(e).__name__, e)
            return False
        return cls(graph, cls._capture_probed(trainer, graph, static_x, static_y), static_x, static_y)

    @staticmethod
    def _capture_probed(trainer, graph, static_x, static_y):
        if trainer.probes is None:
            return None
        saved = snapshot(trainer) + [trainer.probes.grad_sums.detach().clone()]
        try:
            probed = torch.cuda.CUDAGraph()
            trainer.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.graph(probed):  # its own memory pool: the two graphs interleave in any order
                trainer._step(static_x, static_y, probe=True)
            return probed
        except Exception as e:
            torch.cuda.synchronize()
            log.warning("CUDA graph capture of the probed step failed (%s: %s); probed steps run eagerly",
                        type(e).__name__, e)
            return None
        finally:
            with torch.no_grad():
                for t, s in zip(state_tensors(trainer) + [trainer.probes.grad_sums], saved):
                    t.copy_(s)


def snapshot(trainer) -> list:
    return [t.detach().clone() for t in state_tensors(trainer)]


def restore(trainer, saved: list) -> None:
    with torch.no_grad():
        for t, s in zip(state_tensors(trainer), saved):
            t.copy_(s)  # in place: the graph captures these very tensors


def state_tensors(trainer) -> list:
    opt = trainer.optimizer
    return ([*trainer.model.parameters(), *trainer.model.buffers(), *opt.bufs, opt.lr, trainer.sums, trainer.window])
