"""Imported weights (imported.scan's table): where they come from, what they score here against their own
numbers, and the deeper nets constructed from them on the data they were trained on."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from . import families
from .text import pct


@dataclass(frozen=True)
class ImportedNet:
    net: str
    test: float                 # here, on the data the runs name
    train: float
    theirs_test: float | None   # the source's own at the same epoch, on the data it trained on
    theirs_train: float | None

    @property
    def gap(self) -> float | None:
        return None if self.theirs_test is None else self.test - self.theirs_test


@dataclass(frozen=True)
class ImportedFinding:
    sources: tuple      # "a-martyn/resnet (BSD-3-Clause, commit a977915)"
    trained_on: tuple
    evaluated_on: tuple
    epochs: tuple       # the epochs the files hold, as run.json says (None: not known)
    evidence: str       # how the first net's epoch is known
    nets: tuple         # ImportedNet, plain first, by depth

    @property
    def gaps(self) -> list:
        return [n.gap for n in self.nets if n.gap is not None]


def find_imported(rows: pd.DataFrame) -> ImportedFinding | None:
    """`rows`: imported.scan (one row per run of imported weights)."""
    if rows.empty:
        return None

    def distinct(values) -> tuple:
        return tuple(dict.fromkeys(None if pd.isna(v) else v for v in values))

    def number(v):
        return None if v is None or pd.isna(v) else float(v)
    sources = distinct(f"{r['repository']} ({r['license']}, commit {str(r['commit'])[:7]})" for _, r in rows.iterrows())
    nets = tuple(ImportedNet(str(r["net"]), float(r["test_err"]), float(r["train_err"]), number(r["source_test_err"]),
                             number(r["source_train_err"])) for _, r in rows.iterrows())
    return ImportedFinding(sources, distinct(rows["trained_on"]), distinct(rows["data"]),
                           distinct(int(e) if not pd.isna(e) else None for e in rows["epoch"]),
                           str(rows["epoch_evidence"].iloc[0] or ""), nets)


def say_imported(f: ImportedFinding | None) -> str:
    if f is None:
        return "No run here holds imported weights."
    epochs = ", ".join("not known" if e is None else str(e) for e in f.epochs)
    out = [f"**Not trained here: {len(f.nets)} nets trained by {', '.join(f.sources)} on "
           f"{'; '.join(map(str, f.trained_on))}, their weights imported.** The files hold epoch {epochs}: "
           f"{f.evidence}.",
           f"Every number in this report is this harness's evaluation of those weights on "
           f"{', '.join(map(str, f.evaluated_on))}, the inputs normalised as they were in training, in eval mode (the "
           "training error over the unaugmented training images).",
           "Test error here against theirs on their data at the same epoch: "
           + "; ".join(f"{n.net} {pct(n.test)}" + ("" if n.gap is None else f" vs {pct(n.theirs_test)} ({n.gap:+.2f})")
                       for n in f.nets) + "."]
    if f.gaps:
        gaps = f.gaps
        word = "higher" if min(gaps) > 0 else "lower" if max(gaps) < 0 else "different"
        out.append(f"Here the errors are {word}: {sum(gaps) / len(gaps):+.2f} points on average ({min(gaps):+.2f} to "
                   f"{max(gaps):+.2f})" + (", what evaluating on other images than they were trained on costs."
                                           if word == "higher" else "."))
    out.append("Nothing was trained here, so there are no training curves (Figures 1 and 6).")
    return " ".join(out)


def imported_paragraph(rows: pd.DataFrame) -> str:
    return say_imported(find_imported(rows))


@dataclass(frozen=True)
class TheirConstructions:
    """The deeper nets constructed from imported shallower ones, on the data the weights were trained on: a constructed
    net computes its shallow net's function (eval mode), so its errors there are the shallow net's own, as the source
    measured them; beside them the trained deeper net's."""
    deep: str
    trained_train: float
    trained_test: float
    shallow: tuple          # ((shallow net, its train err, its test err), ...) by depth
    max_logit_diff: float   # the largest over these constructions, here: how exactly "the same function" holds

    @property
    def better(self) -> int:
        """Constructions with a lower training error than the trained deeper net."""
        return sum(train < self.trained_train for _, train, _ in self.shallow)


def find_their_constructions(rows: pd.DataFrame, profile: pd.DataFrame) -> list[TheirConstructions]:
    """`rows`: imported.scan; `profile`: inspection.constructed_profile of the same runs."""
    if rows.empty or profile.empty:
        return []
    theirs = {str(r["net"]): (r["source_train_err"], r["source_test_err"]) for _, r in rows.iterrows()
              if not pd.isna(r["source_train_err"]) and not pd.isna(r["source_test_err"])}
    found = {}
    for _, c in profile.sort_values(["residual", "depth"]).iterrows():
        deep = families.in_frame(profile, c["family"]).net(c["deep_depth"], c["residual"], c.get("shortcut"))
        if deep in theirs and str(c["net"]) in theirs:
            found.setdefault(deep, []).append((str(c["net"]), *map(float, theirs[str(c["net"])]),
                                               float(c["max_logit_diff"])))
    return [TheirConstructions(deep, float(theirs[deep][0]), float(theirs[deep][1]),
                               tuple(p[:3] for p in pairs), max(p[3] for p in pairs)) for deep, pairs in found.items()]


def say_their_constructions(found: list[TheirConstructions]) -> str:
    if not found:
        return ""
    diff = max(f.max_logit_diff for f in found)
    out = [f"**On the data they were trained on**, by the source's own numbers at the same epoch: a constructed net "
           f"computes its shallow net's function (largest logit difference here {diff:.1e}), so its errors there are "
           "the shallow net's."]
    for f in found:
        built = ", ".join(net for net, _, _ in f.shallow)
        out.append(f"{f.deep} built from {built}: training error {', '.join(f'{t:g}%' for _, t, _ in f.shallow)} "
                   f"against the trained {f.deep}'s {f.trained_train:g}% (test error "
                   f"{', '.join(f'{e:g}%' for _, _, e in f.shallow)} against {f.trained_test:g}%): "
                   + (("lower" if len(f.shallow) == 1 else f"all {len(f.shallow)} lower") + ": a solution SGD did not "
                      "find" if f.better == len(f.shallow)
                      else ("not lower" if len(f.shallow) == 1 else "none lower") + ": SGD found a better one"
                      if not f.better else f"{f.better} of {len(f.shallow)} lower") + ".")
    return " ".join(out)


def their_constructions_paragraph(rows: pd.DataFrame, profile: pd.DataFrame) -> str:
    return say_their_constructions(find_their_constructions(rows, profile))


def say_imported_verdict(f: ImportedFinding) -> str:
    """The verdict for imported weights evaluated on other data than they were trained on: the degradation problem is
    about training, and their error here is not the error they were trained to, so no verdict from it; the source's
    own numbers say it (the section below)."""
    first = f.nets[0]
    theirs = "" if first.theirs_train is None else f" against {first.theirs_train:g}% by the source on its own data"
    return (f"**Verdict: not judged from these evaluations.** The weights were trained on "
            f"{'; '.join(map(str, f.trained_on))} and are evaluated here on {', '.join(map(str, f.evaluated_on))}, "
            f"other images: a training error here is not the error the net was trained to ({first.net}: "
            f"{pct(first.train)} here{theirs}), so comparing depths here measures how the nets carry over, not how "
            "they trained. The source's own numbers, beside each net below, are the ones to judge the degradation "
            "problem by.")
