"""A speed idea to measure before building on it: k nets of one depth (plain and residual twins, or seeds)
trained as one stacked model, each conv a grouped conv over the k nets' channels.

On the H100 the 8-net joint step is device-bound with 5,551 small kernels (results/gpu/h100-2026-11-23):
stacking a depth's plain and residual nets halves the kernel count and doubles each kernel's work. Whether
cuDNN's grouped convolutions turn that into time saved only a GPU says: `python -m experiments.steptime
--stacked` times 4 stacked pairs against the 8 nets, side by side in one run. Runs do not train stacked
models: that would be worth building only if the ratio is worth it.

The stacked model computes exactly what its nets compute (tests/test_stacked.py): channels are laid out net
by net ([net 0's C | net 1's C | ...]), so BN's per-channel statistics stay per net; the residual nets'
option-A shortcut is added through a 0/1 channel mask (a plain net's block has no addition); the head is a
batched matmul. The loss is the sum of the nets' mean losses, so each net's gradient is its own.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from experiments.nets.resnet_cifar import CifarResNet
from experiments.training.train import Trainer


def _stack_conv(convs: list, grouped: bool) -> nn.Conv2d:
    c = convs[0]
    k = len(convs)
    out = nn.Conv2d(c.in_channels * (k if grouped else 1), c.out_channels * k, c.kernel_size, c.stride, c.padding,
                    bias=False, groups=k if grouped else 1)
    out.weight.data.copy_(torch.cat([m.weight.data for m in convs]))  # each net's filters, over its own inputs
    return out


def _stack_bn(bns: list) -> nn.BatchNorm2d:
    out = nn.BatchNorm2d(bns[0].num_features * len(bns), bns[0].eps, bns[0].momentum)
    for name in ("weight", "bias"):
        getattr(out, name).data.copy_(torch.cat([getattr(b, name).data for b in bns]))
    for name in ("running_mean", "running_var"):
        getattr(out, name).copy_(torch.cat([getattr(b, name) for b in bns]))
    return out


class StackedBlock(nn.Module):
    def __init__(self, blocks: list, residual: list):
        super().__init__()
        self.k = len(blocks)
        self.conv1, self.bn1 = _stack_conv([b.conv1 for b in blocks], True), _stack_bn([b.bn1 for b in blocks])
        self.conv2, self.bn2 = _stack_conv([b.conv2 for b in blocks], True), _stack_bn([b.bn2 for b in blocks])
        c = blocks[0].conv1
        self.stride, self.planes, self.extra = c.stride[0], c.out_channels, c.out_channels - c.in_channels
        self.any_residual, self.all_residual = any(residual), all(residual)
        # 1 on a residual net's channels, 0 on a plain net's: F(x) + mask * x
        self.register_buffer("mask", torch.tensor(residual, dtype=torch.float32).repeat_interleave(self.planes)
                             .view(1, -1, 1, 1), persistent=False)

    def shortcut(self, x):  # option A per net: subsample, then each net's zero channels after its own
        if self.stride == 1 and not self.extra:
            return x
        x = x[:, :, :: self.stride, :: self.stride]
        b, _, h, w = x.shape
        return F.pad(x.view(b, self.k, -1, h, w), (0, 0, 0, 0, 0, self.extra)).view(b, -1, h, w)

    def forward(self, x):
        out = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x)))))
        if self.any_residual:
            s = self.shortcut(x)
            out = out + (s if self.all_residual else s * self.mask.to(s.dtype))
        return F.relu(out)


class StackedNets(nn.Module):
    """k CifarResNets of one depth with option-A shortcuts, as one model: [B, 3, 32, 32] -> [B, k, classes]."""

    def __init__(self, nets: list):
        super().__init__()
        if len({(n.depth, n.shortcut) for n in nets}) != 1 or nets[0].shortcut != "A":
            raise ValueError("stacking needs nets of one depth, all with option-A shortcuts")
        self.k, self.depth = len(nets), nets[0].depth
        residual = [n.residual for n in nets]
        self.conv1, self.bn1 = _stack_conv([n.conv1 for n in nets], False), _stack_bn([n.bn1 for n in nets])
        self.stages = nn.Sequential(*[
            nn.Sequential(*[StackedBlock([n.stages[s][b] for n in nets], residual) for b in range(len(stage))])
            for s, stage in enumerate(nets[0].stages)])
        self.fc_weight = nn.Parameter(torch.stack([n.fc.weight.data for n in nets]).clone())  # [k, classes, 64]
        self.fc_bias = nn.Parameter(torch.stack([n.fc.bias.data for n in nets]).clone())  # [k, classes]

    def forward(self, x):
        x = self.stages(F.relu(self.bn1(self.conv1(x))))  # [B, k * 64, 8, 8]
        x = F.adaptive_avg_pool2d(x, 1).view(x.shape[0], self.k, -1)  # [B, k, 64]
        return torch.einsum("bki,koi->bko", x, self.fc_weight.to(x.dtype)) + self.fc_bias.to(x.dtype)


def stacked_loss(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The sum over the k nets of each one's mean cross-entropy: each net's gradient is what it gets alone."""
    k = out.shape[1]
    return F.cross_entropy(out.float().transpose(1, 2), y[:, None].expand(-1, k)) * k


class StackedTrainer(Trainer):
    """A Trainer of a stacked model (graph-captured like any other): its loss is `stacked_loss`, and its running
    sums add up the k nets (timing only: steptime --stacked; no probes)."""

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return stacked_loss(out, y)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> tuple:
        wrong = (out.argmax(2) != y[:, None]).sum().float()
        return wrong, torch.full_like(wrong, out.shape[0] * out.shape[1])


def stacked_pairs(depths, seed: int = 0) -> list:
    """For each depth, its plain and residual nets (seeded as steptime seeds each) stacked into one model."""
    pairs = []
    for depth in depths:
        nets = []
        for residual in (False, True):
            torch.manual_seed(seed)
            nets.append(CifarResNet(depth, residual))
        pairs.append(StackedNets(nets))
    return pairs
