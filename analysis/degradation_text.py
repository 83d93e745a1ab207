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
from .text import EXPECTED_DEPTHS, Comparison, Trend, capital, comparison, ends, nets, pct, say_comparison, say_trend, trend

PROVISIONAL = 0.9  # runs stopping before this fraction of the paper's iterations are provisional


# ---- caveats --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Caveats:
    from_unfinished: bool         # some numbers are the last epoch of unfinished runs
    last_iteration: int | None    # where the runs stop, when that is well short of the paper
    paper_iterations: int | None  # the paper's training length (peers.csv)


def caveats(rows: pd.DataFrame) -> Caveats:
    paper, last = paper_iterations(), rows["final_iteration"].max()
    short = paper is not None and not pd.isna(last) and last < PROVISIONAL * paper
    return Caveats(bool(rows["from_unfinished"].any()), int(last) if short else None, paper)


def say_caveats(c: Caveats) -> str:
    notes = []
    if c.from_unfinished:
        notes.append("some of these numbers come from unfinished runs")
    if c.last_iteration is not None:
        notes.append(f"runs stop at {c.last_iteration:,} iterations where the paper trains for "
                     f"{c.paper_iterations:,}, so this is provisional")
    return (" Caveat: " + "; ".join(notes) + ".") if notes else ""


# ---- the verdicts ---------------------------------------------------------------------------------

class VerdictKind(str, Enum):
    cannot_judge = "cannot judge"            # fewer than two plain nets
    reproduced = "reproduced"                # deeper plain trains and tests worse; ResNets as in the paper
    reproduced_plain = "reproduced_plain"    # the same, with no ResNet to compare
    resnets_differ = "resnets_differ"        # plain nets degrade, the ResNets do not behave as in the paper
    train_only = "train_only"                # the deeper plain net trains worse but does not test worse
    not_reproduced = "not_reproduced"        # the deeper plain net does not have higher training error


@dataclass(frozen=True)
class Verdict:
    kind: VerdictKind
    comparisons: tuple = ()   # deep vs shallow plain (train, test), then the ResNets' where present
    plain_nets: tuple = ()    # the plain nets with results (what "cannot judge" had)
    caveats: Caveats | None = None


def find_verdict(table: pd.DataFrame) -> Verdict:
    """Is the degradation problem (He et al. 2016 §4.2) there in the paper's family?"""
    plain, res = nets(table, False), nets(table, True)
    pair = ends(plain)
    if pair is None:
        return Verdict(VerdictKind.cannot_judge, plain_nets=tuple(plain["net"]))
    shallow, deep = pair
    train, test = comparison(deep, shallow, "train_err"), comparison(deep, shallow, "test_err")
    found, res_ok = [train, test], None
    res_pair = ends(res)
    if res_pair is not None:  # the deeper ResNet should test better
        found.append(comparison(res_pair[1], res_pair[0], "test_err"))
        res_ok = found[-1].sign < 0
    same = res[res["depth"] == deep["depth"]]
    if len(same):  # the ResNet should train better than the plain net of its depth
        found.append(comparison(same.iloc[0], deep, "train_err"))
        res_ok = (res_ok is not False) and found[-1].sign < 0
    if train.sign > 0 and test.sign > 0 and res_ok is not False:
        kind = VerdictKind.reproduced if res_ok else VerdictKind.reproduced_plain
    elif train.sign > 0 and test.sign > 0:
        kind = VerdictKind.resnets_differ
    elif train.sign > 0:
        kind = VerdictKind.train_only
    else:
        kind = VerdictKind.not_reproduced
    return Verdict(kind, tuple(found), tuple(plain["net"]), caveats(pd.concat([plain, res])))


_VERDICT_HEADS = {
    VerdictKind.reproduced: "degradation problem reproduced",
    VerdictKind.reproduced_plain: "degradation problem reproduced for plain nets (no ResNets to compare)",
    VerdictKind.resnets_differ: "partly reproduced: plain nets degrade with depth, but the ResNets do not "
                                "behave as in the paper",
    VerdictKind.train_only: "partly reproduced: the deeper plain net trains worse, but does not test worse",
    VerdictKind.not_reproduced: "not reproduced: the deeper plain net does not have higher training error",
}


def say_verdict(v: Verdict) -> str:
    if v.kind is VerdictKind.cannot_judge:
        return ("**Verdict: cannot judge the degradation problem yet**: it needs plain nets at two "
                f"depths (plain nets with results: {', '.join(v.plain_nets) or 'none'}).")
    return (f"**Verdict: {_VERDICT_HEADS[v.kind]}.** " + "; ".join(map(say_comparison, v.comparisons))
            + "." + say_caveats(v.caveats))


def verdict(table: pd.DataFrame) -> str:
    return say_verdict(find_verdict(table))


@dataclass(frozen=True)
class FamilyVerdict:
    """The same question for another family: does its plain net degrade with depth?"""
    family: Family
    degrades: bool | None              # None: fewer than two plain nets
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
    return FamilyVerdict(fam, p.sign > 0, p, r, caveats(pd.concat([plain_rows, res_rows])))


def say_family_verdict(v: FamilyVerdict) -> str:
    if v.degrades is None:
        return f"**{v.family.title}: cannot judge**: it needs plain nets at two depths."
    head = "the deeper plain net trains worse (degradation)" if v.degrades else "no degradation of the plain nets"
    clauses = [say_comparison(c) for c in (v.plain, v.residual) if c is not None]
    return f"**{v.family.title}: {head}.** " + "; ".join(clauses) + "." + say_caveats(v.caveats)


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
    text = "At the last epoch, " + "; ".join(map(say_comparison, (f.train, f.test))) + "."
    if f.fraction_above is not None:
        text += (f" Over training, {f.train.net}'s training error is above {f.train.other}'s at "
                 f"{f.fraction_above:.0%} of the logged epochs.")
    return text + (" In the paper's Figure 1 the 56-layer plain net has higher training and test "
                   "error than the 20-layer one throughout training.")


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
    return say_fig6(find_fig6(table, family), paper_ends() if family == PAPER_FAMILY else None)


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


def say_degradation(spans: list[DepthSpan], gap: ResidualGap | None) -> str:
    parts = [f"{s.series}: final training error goes from {pct(s.shallow_train)} at depth {s.shallow_depth} "
             f"to {pct(s.deep_train)} at depth {s.deep_depth} ({s.deep_train - s.shallow_train:+.2f} points)"
             for s in spans]
    if gap is not None:
        below = gap.plain_test - gap.residual_test
        parts.append(f"at depth {gap.depth} the residual net's final test error is {abs(below):.2f} points "
                     f"{'below' if below > 0 else 'above'} the plain net's "
                     f"({pct(gap.residual_test)} vs {pct(gap.plain_test)})")
    if not parts:
        return "Too few nets to compare across depth."
    return capital("; ".join(parts) + ".")


def degradation_paragraph(table: pd.DataFrame, family: str = PAPER_FAMILY) -> str:
    return say_degradation(*find_degradation(table, family))


def missing_cells(table: pd.DataFrame, depths=EXPECTED_DEPTHS) -> list[str]:
    have = set(nets(table, False)["depth"]), set(nets(table, True)["depth"])
    return ([families.PAPER.net(d, False) for d in depths if d not in have[0]]
            + [families.PAPER.net(d, True) for d in depths if d not in have[1]])
