"""Is the degradation problem there? The verdict, Figure 1, Figure 6's trends over depth and final error against
depth, for the paper's family and any other."""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pandas as pd

from runformat import PAPER_FAMILY

from . import families
from .families import Family
from .paper_text import PaperEnds, paper_ends, paper_iterations, say_paper_ends
from .text import (
    EXPECTED_DEPTHS,
    Comparison,
    Trend,
    capital,
    comparison,
    ends,
    nets,
    pct,
    say_comparison,
    say_pair,
    say_trend,
    trend,
)

PROVISIONAL = 0.9  # runs stopping before this fraction of the paper's iterations are provisional
TOO_SHORT = 0.01   # runs stopping before this fraction of it are too short for any verdict (smoke: 30 of 64,000)
NEAR_CHANCE = 10.0  # points: a shallow net whose training error is this close to chance has not learned yet
CLASSES = 10        # CIFAR-10; chance is 90% error


# ---- caveats: how far the runs got, and so how strong a verdict they carry ------------------------

class Strength(str, Enum):
    verdict = "verdict"            # the runs reach (nearly) the paper's length
    provisional = "provisional"    # far shorter, but the nets learned: the direction, not the size
    too_short = "too_short"        # too short to judge, or the nets are still near chance


@dataclass(frozen=True)
class Caveats:
    from_unfinished: bool         # some numbers are the last epoch of unfinished runs
    last_iteration: int | None    # where the runs stop, when that is well short of the paper
    paper_iterations: int | None  # the paper's training length (peers.csv); None for another family's runs
    strength: Strength = Strength.verdict
    best_train: float | None = None  # the lowest final training error, when it is near chance


def caveats(rows: pd.DataFrame, paper: bool = True) -> Caveats:
    """`paper`: the rows are the paper's family, whose reference length is the paper's (another family's is not
    known here, so only chance can make its runs too short)."""
    reference, last = paper_iterations() if paper else None, rows["final_iteration"].max()
    best = rows["train_err_mean"].min() if len(rows) else float("nan")
    near_chance = not pd.isna(best) and best >= 100.0 * (1 - 1 / CLASSES) - NEAR_CHANCE
    fraction = last / reference if reference and not pd.isna(last) else None
    if not paper:  # another family: provisional when short of the paper's length, too short only by chance
        fraction = last / paper_iterations() if paper_iterations() and not pd.isna(last) else None
    strength = (Strength.too_short if near_chance or (paper and fraction is not None and fraction < TOO_SHORT)
                else Strength.provisional if fraction is not None and fraction < PROVISIONAL else Strength.verdict)
    return Caveats(bool(rows["from_unfinished"].any()),
                   int(last) if fraction is not None and fraction < PROVISIONAL or near_chance else None,
                   reference, strength, float(best) if near_chance else None)


def say_length(c: Caveats) -> str:
    """'1,000 iterations, 1.6% of the paper's 64,000'."""
    if c.last_iteration is None:
        return ""
    if c.paper_iterations is None:  # another family: the paper's length is no reference for it
        return f"{c.last_iteration:,} iterations"
    return (f"{c.last_iteration:,} iterations, {100 * c.last_iteration / c.paper_iterations:.2g}% of the paper's "
            f"{c.paper_iterations:,}")


def say_caveats(c: Caveats) -> str:
    notes = ["some of these numbers come from unfinished runs"] if c.from_unfinished else []
    return (" Caveat: " + "; ".join(notes) + ".") if notes else ""


def _strong(label: str, head: str, c: Caveats | None, clauses: str) -> str:
    """A verdict (`label`: "Verdict", a family's title) and its comparisons, as strong as the runs' length allows."""
    if c is None or c.strength is Strength.verdict:
        return f"**{label}: {head}.** {clauses}." + (say_caveats(c) if c else "")
    if c.strength is Strength.provisional:
        return (f"**{label}, provisional after {say_length(c)}: {head}.** {clauses}: the direction, not the size the "
                "paper's length would give." + say_caveats(c))
    chance = (f"; the best final training error is {pct(c.best_train)}, near chance ({pct(100 * (1 - 1 / CLASSES))})"
              if c.best_train is not None else "")
    return (f"No verdict: these runs are too short to judge ({say_length(c)}{chance}). So far, {clauses}."
            + say_caveats(c))


# ---- the verdicts ---------------------------------------------------------------------------------

class VerdictKind(str, Enum):
    cannot_judge = "cannot judge"            # fewer than two plain nets
    reproduced = "reproduced"                # deeper plain trains and tests worse; ResNets as in the paper
    reproduced_plain = "reproduced_plain"    # the same, with no ResNet to compare
    resnets_differ = "resnets_differ"        # plain nets degrade, the ResNets do not behave as in the paper
    degrades_unsettled = "degrades_unsettled"  # the deeper plain net trains worse; the rest is within the epoch spread
    train_only = "train_only"                # the deeper plain net trains worse but does not test worse
    not_reproduced = "not_reproduced"        # the deeper plain net does not have higher training error
    unsettled = "unsettled"                  # the plain nets' training errors are within their epoch-to-epoch spread


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    comparisons: tuple = ()   # deep vs shallow plain (train, test), then the ResNets' where present
    plain_nets: tuple = ()    # the plain nets with results (what "cannot judge" had)
    caveats: Caveats | None = None


def find_verdict(table: pd.DataFrame) -> Verdict:
    """Is the degradation problem (He et al. 2016 §4.2) there in the paper's family? A comparison within the runs'
    epoch-to-epoch spread counts neither way (Comparison.settled): it is said, and left open."""
    plain, res = nets(table, False), nets(table, True)
    pair = ends(plain)
    if pair is None:
        return Verdict(VerdictKind.cannot_judge, plain_nets=tuple(plain["net"]))
    shallow, deep = pair
    train, test = comparison(deep, shallow, "train_err"), comparison(deep, shallow, "test_err")
    found = [train, test]
    res_pair = ends(res)
    if res_pair is not None:  # the deeper ResNet should test better
        found.append(comparison(res_pair[1], res_pair[0], "test_err"))
    same = res[res["depth"] == deep["depth"]]
    if len(same):  # the ResNet should train better than the plain net of its depth
        found.append(comparison(same.iloc[0], deep, "train_err"))
    resnets = found[2:]
    if train.within_spread:
        kind = VerdictKind.unsettled
    elif train.sign <= 0:
        kind = VerdictKind.not_reproduced
    elif test.settled <= 0 and not test.within_spread:
        kind = VerdictKind.train_only
    elif any(c.settled >= 0 and not c.within_spread for c in resnets):
        kind = VerdictKind.resnets_differ
    elif test.within_spread or any(c.within_spread for c in resnets):
        kind = VerdictKind.degrades_unsettled
    else:
        kind = VerdictKind.reproduced if resnets else VerdictKind.reproduced_plain
    return Verdict(kind, tuple(found), tuple(plain["net"]), caveats(pd.concat([plain, res])))


_VERDICT_HEADS = {
    VerdictKind.reproduced: "degradation problem reproduced",
    VerdictKind.reproduced_plain: "degradation problem reproduced for plain nets (no ResNets to compare)",
    VerdictKind.resnets_differ: "partly reproduced: plain nets degrade with depth, but the ResNets do not "
                                "behave as in the paper",
    VerdictKind.degrades_unsettled: "partly settled: the deeper plain net {worse}, as in the paper; not settled "
                                    "yet (within the epoch-to-epoch spread)",
    VerdictKind.train_only: "partly reproduced: the deeper plain net trains worse, but does not test worse",
    VerdictKind.not_reproduced: "not reproduced: the deeper plain net does not have higher training error",
    VerdictKind.unsettled: "not settled yet: the deeper plain net's training error is within the epoch-to-epoch "
                           "spread of the shallower one's",
}


def say_verdict(v: Verdict) -> str:
    if v.kind is VerdictKind.cannot_judge:
        return ("**Verdict: cannot judge the degradation problem yet**: it needs plain nets at two "
                f"depths (plain nets with results: {', '.join(v.plain_nets) or 'none'}).")
    head = _VERDICT_HEADS[v.kind]
    if v.kind is VerdictKind.degrades_unsettled:  # what is settled (the test error's order too?), what is open
        head = (head.format(worse="trains and tests worse" if v.comparisons[1].settled > 0 else "trains worse")
                + ": " + ", ".join(say_pair(c) for c in v.comparisons if c.within_spread))
    return _strong("Verdict", head, v.caveats, "; ".join(map(say_comparison, v.comparisons)))


def verdict(table: pd.DataFrame) -> str:
    return say_verdict(find_verdict(table))


@dataclass(frozen=True)
class FamilyVerdict:
    """The same question for another family: does its plain net degrade with depth?"""
    family: Family
    degrades: bool | None              # None: fewer than two plain nets, or their training errors within the spread
    plain: Comparison | None = None    # deepest vs shallowest plain net, training error
    residual: Comparison | None = None  # the same for its residual nets
    caveats: Caveats | None = None


def find_family_verdict(table: pd.DataFrame, family: str) -> FamilyVerdict:
    fam = families.in_frame(table, family)
    plain_rows, res_rows = nets(table, False, family), nets(table, True, family)
    plain, res = ends(plain_rows), ends(res_rows)
    if plain is None:
        return FamilyVerdict(fam, None)
    p = comparison(plain[1], plain[0], "train_err")
    r = comparison(res[1], res[0], "train_err") if res is not None else None
    return FamilyVerdict(fam, None if p.within_spread else p.sign > 0, p, r,
                         caveats(pd.concat([plain_rows, res_rows]), fam.paper))


def say_family_verdict(v: FamilyVerdict) -> str:
    if v.plain is None:
        return f"**{v.family.title}: cannot judge**: it needs plain nets at two depths."
    head = ("not settled yet: the deeper plain net's training error is within the epoch-to-epoch spread"
            if v.degrades is None else "the deeper plain net trains worse (degradation)" if v.degrades
            else "no degradation of the plain nets")
    clauses = [say_comparison(c) for c in (v.plain, v.residual) if c is not None]
    return _strong(v.family.title, head, v.caveats, "; ".join(clauses))


def family_verdict(table: pd.DataFrame, family: str) -> str:
    return say_family_verdict(find_family_verdict(table, family))


# ---- Figure 1 -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Fig1Finding:
    train: Comparison                # deep vs shallow plain net at the last epoch
    test: Comparison
    fraction_above: float | None     # share of logged iterations where the deep net trains worse


def find_fig1(table: pd.DataFrame, frame: pd.DataFrame) -> Fig1Finding:
    shallow, deep = ends(nets(table, False))
    return Fig1Finding(comparison(deep, shallow, "train_err"), comparison(deep, shallow, "test_err"),
                       _fraction_above(frame, deep["net"], shallow["net"], "train_err"))


def _fraction_above(frame: pd.DataFrame, deep: str, shallow: str, column: str):
    rows = frame[frame["finished"].astype(bool)] if frame["finished"].any() else frame
    wide = rows[rows["net"].isin([deep, shallow])].pivot_table(
        index="iteration", columns="net", values=column, aggfunc="mean").dropna()
    if wide.empty or deep not in wide or shallow not in wide:
        return None
    return float((wide[deep] > wide[shallow]).mean())


def say_fig1(f: Fig1Finding) -> str:
    text = ""  # the final errors of these two nets are the verdict's (each fact once): this says what the curves add
    if f.fraction_above is not None:
        text += (f"Over training, {f.train.net}'s training error is above {f.train.other}'s at "
                 f"{f.fraction_above:.0%} of the logged epochs.")
    return (text + " In the paper's Figure 1 the 56-layer plain net has higher training and test "
                   "error than the 20-layer one throughout training.").lstrip()


def fig1_paragraph(table: pd.DataFrame, frame: pd.DataFrame) -> str:
    return say_fig1(find_fig1(table, frame))


@dataclass(frozen=True)
class SeriesTrends:
    series: str   # "plain nets", "ResNets", "WRN-res nets"
    test: Trend
    train: Trend



def find_fig6(table: pd.DataFrame, family: str = PAPER_FAMILY) -> list[SeriesTrends]:
    fam, found = families.in_frame(table, family), []
    for residual in (False, True):
        rows = nets(table, residual, family)
        if len(rows):
            found.append(SeriesTrends(fam.plural(residual), trend(rows["net"], rows["test_err_mean"]),
                                      trend(rows["net"], rows["train_err_mean"])))
    return found



def say_fig6(found: list[SeriesTrends], paper: PaperEnds | None = None) -> str:
    text = " ".join(capital(f"{s.series}, final test error: {say_trend(s.test)}; final training error: "
                             f"{say_trend(s.train)}.") for s in found)
    return text + (say_paper_ends(paper) if paper is not None else "")


def fig6_paragraph(table: pd.DataFrame, family: str = PAPER_FAMILY) -> str:
    # the paper's trends beside ours only when ours were trained as long (tables.paper_length)
    long = family == PAPER_FAMILY and len(table) and table["paper_length"].any()
    return say_fig6(find_fig6(table, family), paper_ends() if long else None)


# ---- final error against depth --------------------------------------------------------------------

@dataclass(frozen=True)
class DepthSpan:
    series: str          # "plain nets", "ResNets"
    shallow_depth: int
    deep_depth: int
    shallow_train: float  # final training error, mean over runs
    deep_train: float


@dataclass(frozen=True)
class ResidualGap:
    """The deepest depth with both a plain and a residual net: their final test errors."""
    depth: int
    plain_test: float
    residual_test: float


def find_degradation(table: pd.DataFrame, family: str = PAPER_FAMILY) -> tuple[list[DepthSpan], ResidualGap | None]:
    fam = families.in_frame(table, family)
    plain, res = nets(table, False, family), nets(table, True, family)
    spans = []
    for rows, residual in [(plain, False), (res, True)]:
        pair = ends(rows)
        if pair is not None:
            a, b = pair
            spans.append(DepthSpan(fam.plural(residual), int(a["depth"]), int(b["depth"]),
                                   float(a["train_err_mean"]), float(b["train_err_mean"])))
    both = sorted(set(plain["depth"]) & set(res["depth"]))
    gap = None
    if both:
        d = both[-1]
        p, r = plain[plain["depth"] == d].iloc[0], res[res["depth"] == d].iloc[0]
        gap = ResidualGap(int(d), float(p["test_err_mean"]), float(r["test_err_mean"]))
    return spans, gap


def say_degradation(spans: list[DepthSpan], gap: ResidualGap | None, listed: bool = False) -> str:
    """`listed`: the final errors were listed already (Figure 6's paragraph): say only what this figure adds, the
    changes across depth and the gap between plain and residual nets, not the errors again."""
    if listed:
        parts = [f"{s.series}: final training error {s.deep_train - s.shallow_train:+.2f} points from depth "
                 f"{s.shallow_depth} to {s.deep_depth}" for s in spans]
    else:
        parts = [f"{s.series}: final training error goes from {pct(s.shallow_train)} at depth {s.shallow_depth} "
                 f"to {pct(s.deep_train)} at depth {s.deep_depth} ({s.deep_train - s.shallow_train:+.2f} points)"
                 for s in spans]
    if gap is not None:
        below = gap.plain_test - gap.residual_test
        parts.append(f"at depth {gap.depth} the residual net's final test error is {abs(below):.2f} points "
                     f"{'below' if below > 0 else 'above'} the plain net's"
                     + ("" if listed else f" ({pct(gap.residual_test)} vs {pct(gap.plain_test)})"))
    if not parts:
        return "Too few nets to compare across depth."
    return capital("; ".join(parts) + ".")


def degradation_paragraph(table: pd.DataFrame, family: str = PAPER_FAMILY, listed: bool = False) -> str:
    return say_degradation(*find_degradation(table, family), listed)


def missing_cells(table: pd.DataFrame, depths=EXPECTED_DEPTHS) -> list[str]:
    have = set(nets(table, False)["depth"]), set(nets(table, True)["depth"])
    return ([families.PAPER.net(d, False) for d in depths if d not in have[0]]
            + [families.PAPER.net(d, True) for d in depths if d not in have[1]])
