"""Small nets with every weight set by a formula, and a few random images: what the probe and inspection tests
compare against direct computations."""
from __future__ import annotations

import torch

from experiments.data.datasets import Split
from experiments.nets.resnet_cifar import CifarResNet


def hand_set(residual: bool, depth: int = 8, shortcut: str = "A") -> CifarResNet:
    """Depth 8 (one block per stage) or deeper, with every weight set by a formula, BN statistics set by hand."""
    model = CifarResNet(depth, residual, shortcut)
    with torch.no_grad():
        for i, conv in enumerate(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)):
            n = conv.weight.numel()
            conv.weight.copy_(torch.linspace(-1, 1, n).view_as(conv.weight).roll(i) / (n / conv.out_channels) ** 0.5)
        for i, bn in enumerate(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.fill_(1 + 0.1 * i)
            bn.bias.fill_(0.05 * i)
            bn.running_mean.fill_(0.01 * i)
            bn.running_var.fill_(1 + 0.2 * i)
        model.fc.weight.copy_(torch.linspace(-0.5, 0.5, model.fc.weight.numel()).view_as(model.fc.weight))
        model.fc.bias.zero_()
    return model


def images(n=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g), torch.arange(n) % 10)
