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
        caller = torch.cuda.current_stream()
        # Warm-up and both captures on this network's own stream, the one its graphs replay on in a sweep.
        # Graphs captured on one stream share that stream's cuBLAS workspace (pytorch/pytorch#193402), and
        # the sweep replays 16 of them concurrently: torch.cuda.graph's default is one stream for the process.
        # (Not the legacy default stream: capture there is illegal.)
        stream = trainer.cuda_stream or torch.cuda.Stream()
        probe = trainer.probes is not None
        try:
            # An exception inside torch.cuda.graph ends in capture_end(), which raises again before the graph
            # gives back the current stream; this outer context gives the caller's stream back regardless.
            with torch.cuda.stream(caller):
                stream.wait_stream(caller)
                with torch.cuda.stream(stream):
                    for i in range(WARMUP_STEPS):
                        # the last warm-up step probed: the probes' own kernels (norms of hooked gradients) then
                        # first run here, not for the first time inside the probed capture
                        trainer._step(static_x, static_y, probe=probe and i == WARMUP_STEPS - 1)
                caller.wait_stream(stream)
                restore(trainer, saved)
                graph = torch.cuda.CUDAGraph()
                trainer.optimizer.zero_grad(set_to_none=True)  # grads are then allocated inside the graph's pool
                with torch.cuda.graph(graph, stream=stream):
                    trainer._step(static_x, static_y)
        except Exception as e:  # an odd driver or op: train eagerly rather than not at all
            torch.cuda.synchronize()
            restore(trainer, saved)
            log.warning("CUDA graph capture failed (%s: %s); continuing without graphs (speed.cuda_graphs=off "
                        "silences this)", type(e).__name__, e)
            return False
        return cls(graph, cls._capture_probed(trainer, stream, static_x, static_y), static_x, static_y)

    @staticmethod
    def _capture_probed(trainer, stream, static_x, static_y):
        if trainer.probes is None:
            return None
        saved = snapshot(trainer)
        caller = torch.cuda.current_stream()
        try:
            probed = torch.cuda.CUDAGraph()
            trainer.optimizer.zero_grad(set_to_none=True)
            with torch.cuda.stream(caller):  # as in capture(): the caller's stream back even if this fails
                with torch.cuda.graph(probed, stream=stream):  # its own memory pool: the two graphs interleave
                    trainer._step(static_x, static_y, probe=True)
            return probed
        except Exception as e:
            torch.cuda.synchronize()
            log.warning("CUDA graph capture of the probed step failed (%s: %s); probed steps run eagerly",
                        type(e).__name__, e)
            return None
        finally:
            restore(trainer, saved)  # a capture runs nothing, but a failed one may have run part of a step


def snapshot(trainer) -> list:
    return [t.detach().clone() for t in state_tensors(trainer)]


def restore(trainer, saved: list) -> None:
    with torch.no_grad():
        for t, s in zip(state_tensors(trainer), saved):
            t.copy_(s)  # in place: the graph captures these very tensors


def state_tensors(trainer) -> list:
    """Every tensor a training step changes (what the warm-up must leave as it found it)."""
    opt = trainer.optimizer
    probes = [trainer.probes.grad_sums] if trainer.probes is not None else []
    return [*trainer.model.parameters(), *trainer.model.buffers(), *opt.bufs, opt.lr, trainer.sums, trainer.window,
            *probes]
