"""The paper's CIFAR-10 family: plain and residual nets of 6n+2 weighted layers (He et al. 2016, Sec. 4.2).

    conv3x3(16) -> stage(16 filters, 32x32) -> stage(32, 16x16) -> stage(64, 8x8) -> avgpool -> fc(10)

Each stage holds n blocks of two 3x3 convs; BN follows every conv; the first conv of stages 2 and 3 has
stride 2. A plain net is the same network with the addition removed, so with option-A shortcuts both have
exactly the same parameters.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from experiments.config import ArchConfig
from experiments.families import Family, ProbedModel, ProbePoint, register

# The depths the paper reports (Table 6), as blocks per stage: depth = 6n + 2.
PAPER_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
STAGE_WIDTHS = (16, 32, 64)


def blocks_per_stage(depth: int) -> int:
    """n for depth = 6n + 2, or a ValueError that names the valid depths near the one given."""
    if isinstance(depth, int) and depth >= 8 and (depth - 2) % 6 == 0:
        return (depth - 2) // 6
    below = max(8, (int(depth) - 2) // 6 * 6 + 2)
    above = below + 6 if below <= depth else below
    near = sorted({below, above} - {depth})
    raise ValueError(
        f"depth={depth} is not of the form 6n+2 (n >= 1): nearest valid depths are "
        f"{' and '.join(map(str, near))}; the paper uses {', '.join(map(str, PAPER_DEPTHS))}"
    )


class ShortcutA(nn.Module):
    """Option A (Sec. 3.3): identity, subsampled by the stride, with zero channels appended; no parameters."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        self.stride, self.extra = stride, planes - in_planes

    def forward(self, x):  # [B, C, H, W] -> [B, C + extra, H / stride, W / stride]
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra)) if self.extra else x


def shortcut_b(in_planes: int, planes: int, stride: int) -> nn.Module:
    """Option B: a 1x1 projection + BN only where the shape changes; identity elsewhere."""
    if stride == 1 and in_planes == planes:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))


def make_shortcut(kind: str, in_planes: int, planes: int, stride: int) -> nn.Module:
    if kind == "A":
        return nn.Identity() if stride == 1 and in_planes == planes else ShortcutA(in_planes, planes, stride)
    if kind == "B":
        return shortcut_b(in_planes, planes, stride)
    raise ValueError(f"shortcut={kind!r}: expected 'A' (zero-padded identity) or 'B' (projection)")


def conv3x3(in_planes: int, planes: int, stride: int = 1) -> nn.Conv2d:
    # No bias: BN right after every conv (Sec. 3.4) makes one redundant.
    return nn.Conv2d(in_planes, planes, 3, stride, padding=1, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convs (Fig. 2 / Fig. 3 right). `residual=False` gives the plain block: no shortcut at all."""

    def __init__(self, in_planes: int, planes: int, stride: int, residual: bool, shortcut: str = "A"):
        super().__init__()
        self.conv1, self.bn1 = conv3x3(in_planes, planes, stride), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.shortcut = make_shortcut(shortcut, in_planes, planes, stride) if residual else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        if self.shortcut is not None:
            out = out + self.shortcut(x)  # F(x) + x, then the second ReLU after the addition (Sec. 3.2)
        return F.relu(out)


def make_stage(in_planes: int, planes: int, blocks: int, stride: int, residual: bool, shortcut: str) -> nn.Sequential:
    layers = [BasicBlock(in_planes, planes, stride, residual, shortcut)]
    layers += [BasicBlock(planes, planes, 1, residual, shortcut) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class CifarResNet(nn.Module, ProbedModel):
    """ResNet-(6n+2) or its plain twin for 32x32 inputs (Sec. 4.2)."""

    def __init__(self, depth: int = 20, residual: bool = True, shortcut: str = "A", num_classes: int = 10):
        super().__init__()
        n = blocks_per_stage(depth)
        self.depth, self.residual, self.shortcut = depth, residual, shortcut
        self.conv1, self.bn1 = conv3x3(3, STAGE_WIDTHS[0]), nn.BatchNorm2d(STAGE_WIDTHS[0])
        widths = (STAGE_WIDTHS[0],) + STAGE_WIDTHS
        self.stages = nn.Sequential(*[
            make_stage(widths[i], widths[i + 1], n, 1 if i == 0 else 2, residual, shortcut) for i in range(3)
        ])
        self.fc = nn.Linear(STAGE_WIDTHS[-1], num_classes)
        init_he(self)

    def forward(self, x):  # [B, 3, 32, 32]
        x = F.relu(self.bn1(self.conv1(x)))  # [B, 16, 32, 32]
        x = self.stages(x)  # [B, 64, 8, 8]
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # global average pooling: [B, 64]
        return self.fc(x)  # [B, 10]

    # -- probe points (experiments.probes): post-BN, pre-ReLU/addition, as the paper measures (Fig. 7)
    def response_points(self) -> list:
        points = [ProbePoint("conv1", 0, self.bn1)]
        for name, s, block in self.blocks():
            points += [ProbePoint(f"{name}.conv1", s, block.bn1), ProbePoint(f"{name}.conv2", s, block.bn2)]
        return points

    def conv_weights(self) -> list:
        points = [ProbePoint("conv1", 0, self.conv1.weight)]
        for name, s, block in self.blocks():
            points += [ProbePoint(f"{name}.conv1", s, block.conv1.weight),
                       ProbePoint(f"{name}.conv2", s, block.conv2.weight)]
        return points

    def blocks(self) -> list:
        return [ProbePoint(f"stage{s}.{b}", s, block) for s, stage in enumerate(self.stages, 1)
                for b, block in enumerate(stage)]


def init_he(model: nn.Module) -> None:
    # He et al. 2015 ("Delving deep", eq. 10): N(0, 2/n) with n = k*k*in_channels (fan-in), cited by Sec. 3.4.
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The paper's nets keep the paper's names in the analysis (plain-20, ResNet-56), whatever the label.
register(Family(
    name="resnet_cifar", label="ResNet", title="CIFAR plain/ResNet (paper §4.2)", config=ArchConfig,
    depth=lambda arch, depth: 6 * blocks_per_stage(depth) + 2,
    build=lambda arch, depth, residual, shortcut: CifarResNet(depth, residual, shortcut),
    name_head=lambda arch, depth: f"depth={depth}",
))
