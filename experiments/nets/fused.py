"""Batch norm fused with what follows it in the training forward (`speed.fuse=on`): a step variant that cuts kernels
and bytes without changing the math beyond float rounding (issue 28).

On the H100 the 8-net joint step is 5,551 small kernels, batch norm's 31% of kernel time and elementwise ops 19%
(results/gpu/h100-2026-11-23/steptime-profile.txt): each BN in training mode is a statistics pass and a
normalising pass, then the ReLU, and in a residual block the addition before it, each reading and writing the whole
activation again, forward and backward. Here each "BN, ReLU" and "BN, add the shortcut, ReLU" is one function that
torch.compile turns into fused kernels (Inductor: the statistics as one reduction, normalise + add + ReLU as one
elementwise pass; AOTAutograd fuses their backward likewise). The functions take tensors, not modules, so one
compiled graph per activation shape serves every block of every net: three stage shapes, two functions, a few
compiles in all (not one per net, as compiling whole models is). They are compiled on the first call, which the
captured step's warm-up makes (experiments.training.fastpath): never for the first time inside a capture.

What they compute is exactly `F.relu(bn(x))` and `F.relu(bn(x) + skip)` with `bn` an nn.BatchNorm2d in training
mode: the batch's statistics normalise, the running statistics move by `momentum`, `num_batches_tracked` counts
the step. Uncompiled (`compiled=False`) they are the module's own ops, bit for bit (tests/test_variants.py); compiled,
float rounding apart. Only the training forward uses them: evaluations and probed steps run the modules, whose
hooks the probes need.
"""
from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F


def _bn_relu(x, mean, var, weight, bias, tracked, momentum: float, eps: float):
    tracked.add_(1)
    return F.relu(F.batch_norm(x, mean, var, weight, bias, True, momentum, eps))


def _bn_add_relu(x, skip, mean, var, weight, bias, tracked, momentum: float, eps: float):
    tracked.add_(1)
    return F.relu(F.batch_norm(x, mean, var, weight, bias, True, momentum, eps) + skip)


@functools.lru_cache(maxsize=None)
def _compiled(fn):
    # dynamic=False: one graph per shape (three stage shapes), no symbolic shapes in the kernels
    return torch.compile(fn, dynamic=False, fullgraph=True)


def _args(bn: nn.BatchNorm2d) -> tuple:
    return bn.running_mean, bn.running_var, bn.weight, bn.bias, bn.num_batches_tracked, bn.momentum, bn.eps


def bn_relu(x: torch.Tensor, bn: nn.BatchNorm2d, compiled: bool = True) -> torch.Tensor:
    """relu(bn(x)), bn in training mode."""
    return (_compiled(_bn_relu) if compiled else _bn_relu)(x, *_args(bn))


def bn_add_relu(x: torch.Tensor, skip: torch.Tensor, bn: nn.BatchNorm2d, compiled: bool = True) -> torch.Tensor:
    """relu(bn(x) + skip), bn in training mode: a residual block's end (Sec. 3.2: the second ReLU after the addition)."""
    return (_compiled(_bn_add_relu) if compiled else _bn_add_relu)(x, skip, *_args(bn))
