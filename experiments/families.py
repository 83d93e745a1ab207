"""The table of network families: everything the harness needs to know about one, in one entry.

Adding a family is one model file that calls `register(Family(...))` plus one conf/arch/<name>.yaml that
starts from the family's schema (`defaults: [/family_schema/<name>@_here_, _self_]`). Nothing else
changes: the probes ask the model for its probe points (`ProbedModel`), the run directory's name and the
CPU guard ask the family, and the analysis reads the family's label and title from run.json.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch.nn as nn

from experiments.config import ArchConfig

# The families that come with the harness (each module registers its own on import).
BUILTIN = ("experiments.models", "experiments.minimodel")


@dataclass(frozen=True)
class Family:
    name: str  # conf/arch/<name>.yaml and the `arch` column of every CSV
    label: str  # a net's name starts with it: "MiniModel" -> "MiniModel-plain-26"
    title: str  # the family in headings: "MiniModel (Keras-tutorial family, not the paper's nets)"
    config: type  # its ArchConfig subclass: the knobs conf/arch/<name>.yaml may set
    # (arch config, top-level depth) -> weighted layers; ValueError naming the fix if impossible. Builds nothing,
    # so a sweep's every cell can be checked before any trains.
    depth: Callable[[ArchConfig, int], int]
    # (arch config, top-level depth, residual, shortcut) -> the model, freshly initialised
    build: Callable[[ArchConfig, int, bool, str], nn.Module]
    # (arch config, top-level depth) -> the start of a run directory's name: "depth=56", "minimodel-units=3"
    name_head: Callable[[ArchConfig, int], str]
    size_keys: tuple = ()  # arch keys the name head spells out (left out of the rest of the name)
    sized_by_depth: bool = True  # False: the top-level `depth` is ignored, so a sweep over it would repeat cells
    cpu_cost_per_layer: float = 1.0  # CPU time per weighted layer relative to the paper's nets (the CPU guard)


_FAMILIES: dict = {}


def register(family: Family) -> Family:
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


def build(arch: ArchConfig, depth: int, residual: bool, shortcut: str = "A"):
    """(model, weighted-layer depth) of the family `arch.name`, freshly initialised (seed torch first)."""
    family = get(arch.name)
    layers = family.depth(arch, depth)
    return family.build(arch, depth, residual, shortcut), layers


class ProbePoint(NamedTuple):
    name: str  # "stage2.0.conv1": unique within the net, in network order
    stage: int  # 0 = the stem, 1.. = the stages
    target: object  # a module (responses, blocks) or a weight tensor (gradients)


class ProbedModel:
    """What a model of any family offers the probes (`experiments.probes`), naming its own layers."""

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
