"""The table of network families: everything the harness needs to know about one, in one entry.

Adding a family is one model file that calls `register(Family(...))` plus one conf/arch/<name>.yaml that
starts from the family's schema (`defaults: [/family_schema/<name>@_here_, _self_]`). Nothing else
changes: the probes and the after-training inspection ask the model for its probe points and parts
(`ProbedModel`), the run directory's name and the CPU guard ask the family, and the analysis reads the family's
label and title from run.json. A model that does not offer an inspection measure raises `NotSupported`, and its
runs get no file for that measure.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, NamedTuple, Optional

import torch.nn as nn

from experiments.config import NAME, ArchConfig

# The families that come with the harness (each module registers its own on import).
BUILTIN = ("experiments.nets.resnet_cifar", "experiments.nets.minimodel")


@dataclass(frozen=True)
class Family:
    name: str  # conf/arch/<name>.yaml and the `arch` column of every CSV
    label: str  # a net's name starts with it: "MiniModel" -> "MiniModel-plain-26"
    title: str  # the family in headings: "MiniModel (Keras-tutorial family, not the paper's nets)"
    config: type  # its ArchConfig subclass: the knobs conf/arch/<name>.yaml may set
    # (arch config, top-level depth) -> weighted layers; ValueError naming the fix if impossible. Builds nothing,
    # so a sweep's every cell can be checked before any trains.
    depth: Callable[[ArchConfig, int], int]
    # (arch config, top-level depth, residual, shortcut, classes) -> the model, freshly initialised, its head sized
    # for the data's classes (run.json's `num_classes`: 10 for CIFAR-10, any count >= 2 for an image folder)
    build: Callable[[ArchConfig, int, bool, str, int], nn.Module]
    # (arch config, top-level depth) -> the start of a run directory's name: "depth=56", "minimodel-units=3"
    name_head: Callable[[ArchConfig, int], str]
    size_keys: tuple = ()  # arch keys the name head spells out (left out of the rest of the name)
    sized_by_depth: bool = True  # False: the top-level `depth` is ignored, so a sweep over it would repeat cells
    cpu_cost_per_layer: float = 1.0  # CPU time per weighted layer relative to the paper's nets (the CPU guard)
    # The CPU-sized version of its runs, which the CPU guard names as the way out: the protocol, and the rest of
    # `make sweep`'s grid (README's CPU command for the paper's nets)
    cpu_protocol: str = "quick"
    cpu_grid: str = "DEPTHS=20,56"


_FAMILIES: dict = {}


def register(family: Family) -> Family:
    if not NAME.match(family.name):  # conf/arch/<name>.yaml, the `arch` column, the analysis' file names
        raise ValueError(f"a family's name must be one plain path component (letters, digits, _.-): {family.name!r}")
    _FAMILIES[family.name] = family
    return family


def all_families() -> list:
    for module in BUILTIN:
        importlib.import_module(module)
    return list(_FAMILIES.values())


def get(name: str) -> Family:
    families = {f.name: f for f in all_families()}
    if name not in families:
        raise ValueError(f"arch.name={name!r} is not a registered family: choose one of {', '.join(sorted(families))} "
                         f"(arch=NAME selects conf/arch/NAME.yaml)")
    return families[name]


def build(arch: ArchConfig, depth: int, residual: bool, shortcut: str = "A", classes: int = 10):
    """(model, weighted-layer depth) of the family `arch.name`, freshly initialised (seed torch first)."""
    family = get(arch.name)
    layers = family.depth(arch, depth)
    return family.build(arch, depth, residual, shortcut, classes), layers


class ProbePoint(NamedTuple):
    name: str  # "stage2.0.conv1": unique within the net, in network order
    stage: int  # 0 = the stem, 1.. = the stages
    target: object  # a module (responses, blocks) or a weight tensor (gradients)


class NotSupported(Exception):
    """An inspection measure that does not apply to a family (the message says why)."""


class BlockParts(NamedTuple):
    """One block as the inspection (`experiments.inspect`) sees it."""
    name: str  # as in `blocks()`
    stage: int
    block: nn.Module  # the whole block: block(x)
    # The map left when the block is deleted, and that it is compared with: the identity, option A's zero-padded
    # subsampled identity where the block changes the shape (for plain blocks too), or a residual block's own
    # projection shortcut. None: the block changes the shape and has no such map (it is not deleted or compared).
    skip: Optional[nn.Module]
    skip_kind: str  # "identity", "zero-pad", "projection"; "" when skip is None
    branch: Optional[Callable]  # F(x), the residual function the block adds to skip(x); None in a plain block


class ProbedModel:
    """What a model of any family offers the probes (`experiments.training.probes`) and the after-training inspection
    (`experiments.inspect`), naming its own layers. The inspection's methods raise NotSupported unless the model
    overrides them."""

    def response_points(self) -> list:
        """[ProbePoint(name, stage, module)]: the modules whose outputs are the 3x3 layers' "responses"
        (Sec. 4.2, Fig. 7), in network order."""
        raise NotImplementedError

    def conv_weights(self) -> list:
        """[ProbePoint(name, stage, weight)]: the 3x3 conv weights, in the order of `response_points`."""
        raise NotImplementedError

    def blocks(self) -> list:
        """[ProbePoint(name, stage, block)]: the blocks (residual units) whose input gradients are measured."""
        raise NotImplementedError

    # -- the after-training inspection (experiments.inspect): forward(x) must equal
    # forward_head(b_n(...b_1(forward_stem(x)))) over the blocks of `block_parts`, in order
    def forward_stem(self, x):
        raise NotSupported(f"{type(self).__name__} does not split into stem, blocks and head")

    def forward_head(self, x):
        raise NotSupported(f"{type(self).__name__} does not split into stem, blocks and head")

    def block_parts(self) -> list:
        """[BlockParts], in network order: every block the network is a chain of."""
        raise NotSupported(f"{type(self).__name__} does not name its blocks' branches and skips")

    def deepened(self, depth: int, input_stats: Optional[dict] = None) -> nn.Module:
        """The depth-`depth` net of this family whose blocks are this net's, first in each stage, followed by blocks
        that compute the identity in eval mode. `input_stats`: {stage: (mean, var)}, the per-channel batch mean and
        (biased) variance, in training mode, of the output of the stage's last block, which is what the added
        blocks of that stage receive; with them an added block that normalises by batch statistics (training
        mode) is the identity too, up to the batch-to-batch noise of those statistics."""
        raise NotSupported(f"{type(self).__name__} cannot be deepened by identity blocks")
