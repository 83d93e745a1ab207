"""MiniModel from the Keras tutorial "Understanding Residual Networks" (J. Olafenwa), in PyTorch.

A pre-activation network for 32x32 CIFAR-10 images: a 3x3 stem, four stages of `units_per_stage`
units at 32, 64, 128 and 256 filters, then BN -> ReLU -> dropout -> 4x4 average pool -> dense.
The first unit of stages 2-4 halves the map with a 2x2 max pool (32 -> 16 -> 8 -> 4).
`residual=False` gives the plain twin: the same units without the addition.

Keras defaults are reproduced on purpose, since the tutorial relies on them implicitly:
convs and the dense layer have biases (use_bias=True), weights are Glorot-uniform, biases zero,
and BatchNormalization uses momentum 0.99 and epsilon 1e-3.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from experiments.config import ArchConfig, ranged
from experiments.nets.families import BlockParts, Family, NotSupported, ProbedModel, ProbePoint, register

STAGE_WIDTHS = (32, 64, 128, 256)

# Keras BatchNormalization(momentum=0.99, epsilon=1e-3). Keras' momentum weights the old running
# value, PyTorch's weights the new batch value, so Keras 0.99 == PyTorch 0.01.
BN_MOMENTUM = 0.01
BN_EPS = 1e-3


def _batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    # Keras Conv2D(padding="same") with its default use_bias=True.
    return nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1, bias=True)


def _check_units(units_per_stage: int) -> None:
    # bool is an int subclass; True units per stage is a bug, not a depth.
    if isinstance(units_per_stage, bool) or not isinstance(units_per_stage, int) or units_per_stage < 1:
        raise ValueError(f"units_per_stage must be an int >= 1, got {units_per_stage!r}")


def minimodel_depth(units_per_stage: int) -> int:
    """Weighted layers on the main path: stem conv + 2 convs per unit x 4 stages + dense.

    The 1x1 shortcut convs are not counted, as He et al. (2016) do not count projection
    shortcuts; so the plain and residual twins have the same depth. 3 units -> 1 + 24 + 1 = 26.
    """
    _check_units(units_per_stage)
    return 1 + 2 * len(STAGE_WIDTHS) * units_per_stage + 1


class Unit(nn.Module):
    """Pre-activation unit: BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus the input if residual.

    A pooling unit max-pools its input 2x2 before the first BN; its shortcut (residual only) is a
    1x1 stride-2 conv on the un-pooled input, as in the tutorial. The plain pooling unit has no
    shortcut conv at all, so the plain net has fewer parameters than the residual one
    (32*64+64 + 64*128+128 + 128*256+256 = 43,456 fewer, independent of units_per_stage).
    """

    def __init__(self, in_channels: int, out_channels: int, pool: bool, residual: bool) -> None:
        super().__init__()
        if not pool and in_channels != out_channels:
            raise ValueError("only a pooling unit may change the number of channels")
        self.residual = residual
        self.pool = nn.MaxPool2d(kernel_size=2, stride=2) if pool else nn.Identity()
        # Separate, non-inplace ReLUs: a forward hook on bn1/bn2 must see the pre-ReLU output.
        self.bn1 = _batch_norm(in_channels)
        self.relu1 = nn.ReLU()
        self.conv1 = _conv3x3(in_channels, out_channels)
        self.bn2 = _batch_norm(out_channels)
        self.relu2 = nn.ReLU()
        self.conv2 = _conv3x3(out_channels, out_channels)
        # Like torchvision's `downsample`: None wherever the identity (or nothing) is the shortcut.
        self.shortcut = (
            nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=2, bias=True)
            if residual and pool
            else None
        )

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual function F(x), i.e. the whole unit when plain."""
        out = self.pool(x)                     # [B, C_in, H/2, W/2] in a pooling unit
        out = self.conv1(self.relu1(self.bn1(out)))
        out = self.conv2(self.relu2(self.bn2(out)))
        return out                             # [B, C_out, H', W']

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branch(x)
        if not self.residual:
            return out
        identity = x if self.shortcut is None else self.shortcut(x)
        return out + identity


def make_stage(in_channels: int, out_channels: int, units: int, pool: bool, residual: bool) -> nn.Sequential:
    """`units` units at `out_channels` filters; only the first may pool (and change the width)."""
    first = Unit(in_channels, out_channels, pool=pool, residual=residual)
    rest = [Unit(out_channels, out_channels, pool=False, residual=residual) for _ in range(units - 1)]
    return nn.Sequential(first, *rest)


def _keras_init(module: nn.Module) -> None:
    # Keras defaults: glorot_uniform kernels, zero biases; BN gamma=1, beta=0 (PyTorch's default too).
    # torch's xavier fans for a conv (in*k*k, out*k*k) match Keras' glorot fans.
    if isinstance(module, (nn.Conv2d, nn.Linear)):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class MiniModel(nn.Module, ProbedModel):
    def __init__(self, units_per_stage: int = 3, residual: bool = True, num_classes: int = 10) -> None:
        super().__init__()
        _check_units(units_per_stage)
        self.units_per_stage = units_per_stage
        self.residual = residual

        self.stem = nn.Conv2d(3, STAGE_WIDTHS[0], kernel_size=3, padding=1, bias=True)
        in_widths = (STAGE_WIDTHS[0],) + STAGE_WIDTHS[:-1]
        self.stages = nn.Sequential(*[
            make_stage(c_in, c_out, units_per_stage, pool=i > 0, residual=residual)
            for i, (c_in, c_out) in enumerate(zip(in_widths, STAGE_WIDTHS))
        ])
        # The last unit ends on a conv (pre-activation), so the head starts with BN -> ReLU.
        self.head = nn.Sequential(
            _batch_norm(STAGE_WIDTHS[-1]),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.AvgPool2d(kernel_size=4),       # the 4x4 map -> 1x1
            nn.Flatten(),
            nn.Linear(STAGE_WIDTHS[-1], num_classes, bias=True),
        )
        self.apply(_keras_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)                       # [B, 3, 32, 32] -> [B, 32, 32, 32]
        x = self.stages[0](x)                  # [B, 32, 32, 32]
        x = self.stages[1](x)                  # [B, 64, 16, 16]
        x = self.stages[2](x)                  # [B, 128, 8, 8]
        x = self.stages[3](x)                  # [B, 256, 4, 4]
        return self.head(x)                    # [B, num_classes]

    # -- probe points (experiments.training.probes). Pre-activation: a 3x3 conv's own output is what goes on into the
    # next BN or the addition, so the conv itself is the response point.
    def response_points(self) -> list:
        return [ProbePoint(f"{name}.{c}", s, getattr(unit, c)) for name, s, unit in self.blocks()
                for c in ("conv1", "conv2")]

    def conv_weights(self) -> list:
        return [ProbePoint(name, s, conv.weight) for name, s, conv in self.response_points()]

    def blocks(self) -> list:
        return [ProbePoint(f"stage{s}.{u}", s, unit) for s, stage in enumerate(self.stages, 1)
                for u, unit in enumerate(stage)]

    # -- the after-training inspection (experiments.inspect)
    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)

    def block_parts(self) -> list:
        parts = []
        for name, s, unit in self.blocks():
            pools = isinstance(unit.pool, nn.MaxPool2d)
            if self.residual:  # no ReLU after the addition (pre-activation): a deleted unit leaves its shortcut
                skip = unit.shortcut if pools else nn.Identity()
                parts.append(BlockParts(name, s, unit, skip, "projection" if pools else "identity", unit.branch))
            else:  # a plain unit that pools and widens has no parameter-free counterpart: not deleted or compared
                parts.append(BlockParts(name, s, unit, None if pools else nn.Identity(), "" if pools else "identity",
                                        None))
        return parts

    def deepened(self, depth: int, input_stats=None) -> nn.Module:
        raise NotSupported("MiniModel is sized by arch.units_per_stage, not depth, and its plain unit "
                           "(BN-ReLU-conv-BN-ReLU-conv) cannot pass the negative part of its input, so it has no "
                           "identity unit")


@dataclass
class MiniModelArch(ArchConfig):
    name: str = "minimodel"
    units_per_stage: int = ranged(3, 1)  # units in each of the 4 stages: depth = 8 * units + 2


register(Family(
    name="minimodel", label="MiniModel", title="MiniModel (Keras-tutorial family, not the paper's nets)",
    config=MiniModelArch,
    depth=lambda arch, depth: minimodel_depth(arch.units_per_stage),
    build=lambda arch, depth, residual, shortcut, classes: MiniModel(arch.units_per_stage, residual, classes),
    name_head=lambda arch, depth: f"minimodel-units={arch.units_per_stage}",
    size_keys=("units_per_stage",), sized_by_depth=False,
    cpu_cost_per_layer=4.0,  # its convs are ~4x wider per layer than the paper's nets
    cpu_protocol="keras_quick", cpu_grid="ARCH=minimodel",  # units 1-4: 1.5-6.5 min a net on 2 cores (README)
))
