"""What a family of nets is called: its label in net and series names, its title in headings.

Both come from run.json's `family` object (`runformat.FamilyInfo`), written by whoever trained the run,
so a new family needs no change here. A run without it is labelled and titled by its arch name. The
paper's own family keeps the paper's names (`plain-20`, `ResNet-56`, "ResNets") whatever run.json says.
"""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from runformat import PAPER_FAMILY, differing

PAPER_TITLE = "CIFAR plain/ResNet (paper §4.2)"


@dataclass(frozen=True)
class Family:
    name: str   # the `arch` column
    label: str  # starts its nets' names: `WRN` -> `WRN-plain-16`
    title: str  # in headings, verdicts and the table's "why not compared" column

    @property
    def paper(self) -> bool:
        return self.name == PAPER_FAMILY

    def series(self, residual: bool) -> str:
        """`plain` / `ResNet` for the paper's nets, `WRN-plain` / `WRN-res` for others."""
        if self.paper:
            return "ResNet" if residual else "plain"
        return f"{self.label}-{'res' if residual else 'plain'}"

    def plural(self, residual: bool) -> str:
        return "ResNets" if self.paper and residual else f"{self.series(residual)} nets"

    def net(self, depth, residual: bool, shortcut=None, init_depth=None) -> str:
        """`plain-20`, `ResNet-56`, `ResNet-56 (B)`, `WRN-plain-16`; `plain-56 (from plain-20)` for a run started from
        a trained plain-20 deepened by identity blocks (`init_depth`, runformat's identity column)."""
        suffix = " (B)" if residual and shortcut == "B" else ""  # the paper's CIFAR nets use option A
        if init_depth is not None and not pd.isna(init_depth):
            suffix += f" (from {self.series(residual)}-{int(init_depth)})"
        return f"{self.series(residual)}-{int(depth)}{suffix}"


PAPER = Family(PAPER_FAMILY, "ResNet", PAPER_TITLE)


def declared(name: str, info=None) -> Family:
    """The family `name` as run.json's `family` object describes it; its name where it says nothing."""
    if name == PAPER_FAMILY:
        return PAPER
    info = info if isinstance(info, dict) else {}
    label = info.get("label") if isinstance(info.get("label"), str) and info.get("label") else name
    title = info.get("title") if isinstance(info.get("title"), str) and info.get("title") else label
    return Family(name, label, title)


def resolve(runs) -> dict:
    """[(arch name, run.json's family object or None)] in run order -> {name: Family}. The first run that
    describes a family names it for all its runs, so one older run.json cannot split a net in two."""
    runs = list(runs)
    described = {}
    for name, info in runs:
        if isinstance(info, dict) and name not in described:
            described[name] = declared(name, info)
    return {name: described.get(name) or declared(name) for name, _ in runs}


def in_frame(frame: pd.DataFrame, name: str) -> Family:
    """The family `name` as the frame's (or a per-net table's) `family_label`/`family_title` columns say."""
    if name == PAPER_FAMILY:
        return PAPER
    if {"family", "family_label", "family_title"} <= set(frame.columns):
        rows = frame[frame["family"] == name]
        if len(rows):
            return Family(name, str(rows["family_label"].iloc[0]), str(rows["family_title"].iloc[0]))
    return declared(name)


# ---- recipes: runs of one net are averaged only if they were trained the same way ----------------------------------

def recipe_variants(runs) -> tuple[dict, list]:
    """[(run, family, recipe)] in run order, each recipe runformat.recipe's (empty when run.json has no config) ->
    ({run: label} for the runs kept apart, one line per label saying why). A family's runs share its main recipe
    (the one most of its runs were trained with; on a tie, the one of the shortest run name: a harness's name spells
    what a run changes of its protocol) or are a variant, labelled by the keys in
    which their recipe differs from the main one (`lr=0.01`), so that their net is another net
    (`ResNet-20 (lr=0.01)`): never averaged with the main recipe's, never next to the paper. Keys a writer did not
    record are not compared, and a run with no recipe at all stays with the main one."""
    by_family: dict = {}
    for run, family, recipe in runs:
        if recipe:
            by_family.setdefault(family, []).append((run, recipe))
    labels, notes = {}, []
    for family, members in by_family.items():
        groups: list = []  # [recipe, [runs]], in order of first appearance
        for run, recipe in members:
            same = next((g for g in groups if not differing(g[0], recipe, common_only=True)), None)
            if same:
                same[1].append(run)
            else:
                groups.append([recipe, [run]])
        main = max(groups, key=lambda g: (len(g[1]), -min(map(len, g[1]))))
        for recipe, names in groups:
            if recipe is main[0]:
                continue
            keys = differing(main[0], recipe, common_only=True)
            label = ", ".join(f"{k.split('.')[-1]}={_spelled(recipe[k])}" for k in keys)
            theirs = ", ".join(f"{k.split('.')[-1]}={_spelled(main[0][k])}" for k in keys)
            labels.update(dict.fromkeys(names, label))
            notes.append(f"{', '.join(names)}: trained with another recipe than the other {family} runs (differs in "
                         f"{', '.join(keys)}: {label}, not {theirs}); named apart as `<net> ({label})` and never "
                         f"averaged with them")
    return labels, notes


def _spelled(value) -> str:
    if isinstance(value, list):
        return ",".join(map(_spelled, value))
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return value[:8]  # a data fingerprint
    return str(value).lower() if isinstance(value, bool) else str(value)
