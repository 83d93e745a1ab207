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
from experiments.nets import fused
from experiments.nets.families import BlockParts, Family, ProbedModel, ProbePoint, register

# The depths the paper reports (Table 6), as blocks per stage: depth = 6n + 2.
PAPER_DEPTHS = {20: 3, 32: 5, 44: 7, 56: 9, 110: 18, 1202: 200}
STAGE_WIDTHS = (16, 32, 64)


def net_name(depth: int, residual: bool) -> str:
    """The paper's name for one of its nets: `plain-56`, `ResNet-20` (what bench and steptime print)."""
    return f"{'ResNet' if residual else 'plain'}-{depth}"


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

    def branch(self, x):
        """F(x): the residual function (Eq. 1), or the whole plain block before its last ReLU."""
        out = F.relu(self.bn1(self.conv1(x)))
        return self.bn2(self.conv2(out))

    def forward(self, x):
        out = self.branch(x)
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
        x = self.forward_stem(x)  # [B, 16, 32, 32]
        x = self.stages(x)  # [B, 64, 8, 8]
        return self.forward_head(x)  # [B, 10]

    def forward_fused(self, x, compiled: bool = True):
        """The training forward with each BN fused with its ReLU (and a residual block's addition): the same math as
        `forward` in training mode (speed.fuse, experiments.nets.fused). Training mode only: BN uses the batch."""
        x = fused.bn_relu(self.conv1(x), self.bn1, compiled)
        for stage in self.stages:
            for block in stage:
                out = block.conv2(fused.bn_relu(block.conv1(x), block.bn1, compiled))
                if block.shortcut is None:
                    x = fused.bn_relu(out, block.bn2, compiled)
                else:
                    x = fused.bn_add_relu(out, block.shortcut(x), block.bn2, compiled)
        return self.forward_head(x)

    def forward_stem(self, x):
        return F.relu(self.bn1(self.conv1(x)))

    def forward_head(self, x):
        x = torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)  # global average pooling: [B, 64]
        return self.fc(x)

    # -- probe points (experiments.training.probes): post-BN, pre-ReLU/addition, as the paper measures (Fig. 7)
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

    # -- the after-training inspection (experiments.inspect)
    def block_parts(self) -> list:
        parts = []
        for name, s, block in self.blocks():
            c = block.conv1
            same = c.stride[0] == 1 and c.in_channels == c.out_channels
            # residual: what is added to F(x) is what a deletion leaves; plain: the identity, or option A's where
            # the block downsamples (the one parameter-free map of that shape)
            skip = block.shortcut if self.residual else make_shortcut("A", c.in_channels, c.out_channels, c.stride[0])
            kind = "identity" if same else "projection" if self.residual and self.shortcut == "B" else "zero-pad"
            parts.append(BlockParts(name, s, block, skip, kind, block.branch if self.residual else None))
        return parts

    def deepened(self, depth: int, input_stats=None) -> "CifarResNet":
        """Sec. 4 ("a deeper model ... the added layers are identity mapping, and the other layers are copied from
        the learned shallower model") made concrete: each stage keeps this net's blocks first (the first block of
        stages 2 and 3 downsamples) and gets identity blocks after them, each of which sees non-negative inputs
        (the previous block ends with a ReLU). Plain: identity 3x3 kernels, and BNs that give back what they
        receive (running statistics = `input_stats`, weight = their std, bias = their mean; without stats, mean
        0 and variance 1). Residual: the last BN's weight and bias 0, so F(x) = 0 exactly, in both modes; its
        convs keep their fresh He initialisation, so that training can move F away from 0."""
        if blocks_per_stage(depth) < blocks_per_stage(self.depth):
            raise ValueError(f"depth {depth} is not deeper than this net's {self.depth}")
        deep = CifarResNet(depth, self.residual, self.shortcut, self.fc.out_features).to(self.fc.weight.device)
        ours = self.state_dict()
        n = blocks_per_stage(self.depth)
        kept = {k: v for k, v in ours.items() if not k.startswith("stages.") or int(k.split(".")[2]) < n}
        deep.load_state_dict({**deep.state_dict(), **kept})  # stem, fc and the first n blocks of each stage
        with torch.no_grad():
            for s, stage in enumerate(deep.stages, 1):
                for block in list(stage)[n:]:
                    if self.residual:
                        nn.init.zeros_(block.bn2.weight)
                        nn.init.zeros_(block.bn2.bias)
                    else:
                        mean, var = (input_stats or {}).get(s, (0.0, 1.0))
                        for conv, bn in ((block.conv1, block.bn1), (block.conv2, block.bn2)):
                            nn.init.dirac_(conv.weight)  # out[c] = in[c]: the identity kernel
                            _pass_through(bn, mean, var)
        return deep


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


def _pass_through(bn: nn.BatchNorm2d, mean, var) -> None:
    """BN as the identity on inputs with per-channel `mean` and `var`: in eval mode exactly,
    (x - mean) / sqrt(var + eps) * sqrt(var + eps) + mean = x; in training mode up to how far a batch's own
    statistics are from these."""
    mean = torch.as_tensor(mean, dtype=bn.running_mean.dtype, device=bn.running_mean.device).expand_as(bn.running_mean)
    var = torch.as_tensor(var, dtype=bn.running_var.dtype, device=bn.running_var.device).expand_as(bn.running_var)
    bn.running_mean.copy_(mean)
    bn.running_var.copy_(var)
    bn.weight.copy_(torch.sqrt(var + bn.eps))
    bn.bias.copy_(mean)


def num_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# The paper's nets keep the paper's names in the analysis (plain-20, ResNet-56), whatever the label.
register(Family(
    name="resnet_cifar", label="ResNet", title="CIFAR plain/ResNet (paper §4.2)", config=ArchConfig,
    depth=lambda arch, depth: 6 * blocks_per_stage(depth) + 2,
    build=lambda arch, depth, residual, shortcut, classes: CifarResNet(depth, residual, shortcut, classes),
    name_head=lambda arch, depth: f"depth={depth}",
))
