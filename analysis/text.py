"""What the numbers say, and the sentences that say it, so the report says what the data says (even if
that is the opposite of the paper).

Two layers. Findings are pure functions of the per-net tables (`tables.table6`, or the probe tables of
`probes_figures`) that return small dataclasses: which nets were compared, which way it went, whether it
is within the seed-to-seed spread. Wording functions (`say_*`) turn a finding into sentences and decide
nothing. The `*_paragraph` and `verdict` functions the report calls are the two put together. The
paper's numbers come from peers.csv (`tables.load_peers`), never typed into a sentence.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import pandas as pd

from runformat import PAPER_FAMILY

from . import families
from .families import Family
from .load import from_scratch
from .tables import comparable_with_paper, load_peers

EXPECTED_DEPTHS = (20, 32, 44, 56)  # Fig. 6 left panel and Table 6's first rows
PROVISIONAL = 0.9  # runs stopping before this fraction of the paper's iterations are provisional
VANISHING_RATIO = 0.01  # first layers' gradient two orders of magnitude below the last layers'
WHAT = {"train_err": "training error", "test_err": "test error"}


def pct(value) -> str:
    return f"{value:.2f}%"


def times(ratio: float) -> str:
    """0.82x, 1,343x, 0.001x: enough digits to read an order of magnitude."""
    if pd.isna(ratio):
        return "n/a"
    if ratio >= 10:
        return f"{ratio:,.0f}x"
    return f"{ratio:.2f}x" if ratio >= 0.1 else f"{ratio:.2g}x"


def _capital(text: str) -> str:
    return text[0].upper() + text[1:]


# ---- selecting nets from the per-net table --------------------------------------------------------

def _nets(table: pd.DataFrame, residual: bool, family: str = PAPER_FAMILY) -> pd.DataFrame:
    rows = table[(table["family"] == family) & (table["residual"] == residual) & from_scratch(table)]
    if family == PAPER_FAMILY:
        rows = rows[rows.apply(comparable_with_paper, axis=1)] if len(rows) else rows
    return rows.sort_values("depth")


def _ends(rows: pd.DataFrame):
    """Shallowest and deepest net to compare, preferring the paper's 20 and 56 when present."""
    if len(rows) < 2:
        return None
    usual = rows[rows["depth"].isin(EXPECTED_DEPTHS)]
    pick = usual if len(usual) >= 2 else rows
    return pick.iloc[0], pick.iloc[-1]


# ---- one net against another ----------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """`net` against `other` on one final error (mean over runs)."""
    net: str
    other: str
    column: str        # "train_err" / "test_err"
    value: float
    other_value: float
    sign: int          # of value - other_value: 1 higher, -1 lower, 0 the same
    within_std: bool   # a difference no larger than the larger of the two seed-to-seed stds


def comparison(net, other, column: str) -> Comparison:
    """`net`, `other`: rows of the per-net table."""
    a, b = float(net[f"{column}_mean"]), float(other[f"{column}_mean"])
    sign = int(a > b) - int(a < b)
    spread = max(net[f"{column}_std"], other[f"{column}_std"])
    return Comparison(str(net["net"]), str(other["net"]), column, a, b, sign,
                      bool(sign and not pd.isna(spread) and abs(a - b) <= spread))


def say_comparison(c: Comparison) -> str:
    """'plain-56 ends with higher training error than plain-20: 3.17% vs 1.00%'."""
    word = {1: "higher", -1: "lower", 0: "the same"}[c.sign]
    text = (f"{c.net} ends with {word} {WHAT[c.column]} {'than' if c.sign else 'as'} {c.other}: "
            f"{pct(c.value)} vs {pct(c.other_value)}")
    return text + (" (a difference within the seed-to-seed std)" if c.within_std else "")


# ---- caveats --------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Caveats:
    from_unfinished: bool         # some numbers are the last epoch of unfinished runs
    last_iteration: int | None    # where the runs stop, when that is well short of the paper
    paper_iterations: int | None  # the paper's training length (peers.csv)


def paper_iterations(peers: pd.DataFrame | None = None) -> int | None:
    peers = load_peers() if peers is None else peers
    its = pd.to_numeric(peers.loc[peers["kind"] == "paper_table", "iterations"], errors="coerce").dropna()
    return int(its.max()) if len(its) else None


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
    plain, res = _nets(table, False), _nets(table, True)
    pair = _ends(plain)
    if pair is None:
        return Verdict(VerdictKind.cannot_judge, plain_nets=tuple(plain["net"]))
    shallow, deep = pair
    train, test = comparison(deep, shallow, "train_err"), comparison(deep, shallow, "test_err")
    found, res_ok = [train, test], None
    res_pair = _ends(res)
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
    plain_rows, res_rows = _nets(table, False, family), _nets(table, True, family)
    plain, res = _ends(plain_rows), _ends(res_rows)
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
    shallow, deep = _ends(_nets(table, False))
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


# ---- Figure 6: trends over depth ------------------------------------------------------------------

class Direction(str, Enum):
    rises = "rises with every step in depth"
    falls = "falls with every step in depth"
    mixed = "is not monotonic in depth"


@dataclass(frozen=True)
class Trend:
    nets: tuple       # in order of depth
    values: tuple
    direction: Direction | None  # None: a single net


def trend(nets, values) -> Trend:
    values = tuple(float(v) for v in values)
    steps = [b - a for a, b in zip(values, values[1:])]
    direction = (None if not steps else Direction.rises if all(s > 0 for s in steps)
                 else Direction.falls if all(s < 0 for s in steps) else Direction.mixed)
    return Trend(tuple(nets), values, direction)


def say_trend(t: Trend) -> str:
    listed = ", ".join(f"{net} {pct(v)}" for net, v in zip(t.nets, t.values))
    return listed if t.direction is None else f"{listed}: it {t.direction.value}"


@dataclass(frozen=True)
class SeriesTrends:
    series: str   # "plain nets", "ResNets", "WRN-res nets"
    test: Trend
    train: Trend


@dataclass(frozen=True)
class PaperEnds:
    """The paper's test errors at the shallowest and deepest of the usual depths (peers.csv)."""
    plain: tuple    # ((net, low, high), ...): read off Fig. 6, as ranges
    resnet: tuple   # ((net, test error), ...): Table 6
    plain_trend: Trend | None   # over the read-offs' midpoints
    resnet_trend: Trend | None


def paper_ends(peers: pd.DataFrame | None = None, depths=(EXPECTED_DEPTHS[0], EXPECTED_DEPTHS[-1])) -> PaperEnds:
    peers = load_peers() if peers is None else peers
    at = peers[peers["depth"].isin(depths)].sort_values("depth")
    read = at[at["kind"] == "paper_figure_readoff"]
    table = at[at["kind"] == "paper_table"]
    plain = tuple(zip(read["net"], read["test_err_low"], read["test_err_high"]))
    resnet = tuple(zip(table["net"], table["test_err"]))
    mids = (read["test_err_low"] + read["test_err_high"]) / 2
    return PaperEnds(plain, resnet, trend(read["net"], mids) if len(read) == 2 else None,
                     trend(table["net"], table["test_err"]) if len(table) == 2 else None)


def find_fig6(table: pd.DataFrame, family: str = PAPER_FAMILY) -> list[SeriesTrends]:
    fam, found = families.in_frame(table, family), []
    for residual in (False, True):
        rows = _nets(table, residual, family)
        if len(rows):
            found.append(SeriesTrends(fam.plural(residual), trend(rows["net"], rows["test_err_mean"]),
                                      trend(rows["net"], rows["train_err_mean"])))
    return found


def say_paper_ends(p: PaperEnds) -> str:
    """'In the paper (Fig. 6) plain nets get worse with depth (...), ResNets better (Table 6: ...).'"""
    if p.plain_trend is None or p.resnet_trend is None:
        return ""
    plain_how = {Direction.rises: "get worse", Direction.falls: "get better"}.get(
        p.plain_trend.direction, "do not change monotonically")
    res_how = {Direction.rises: "worse", Direction.falls: "better"}.get(p.resnet_trend.direction, "not monotonic")
    read = " to ".join(f"{f'{low:g}' if low == high else f'{low:g}-{high:g}'}% for {net}"
                       for net, low, high in p.plain)
    table = " to ".join(f"{pct(err)} for {net}" for net, err in p.resnet)
    return (f" In the paper (Fig. 6) plain nets {plain_how} with depth (test error read off as about {read}), "
            f"ResNets {res_how} (Table 6: {table}).")


def say_fig6(found: list[SeriesTrends], paper: PaperEnds | None = None) -> str:
    text = " ".join(_capital(f"{s.series}, final test error: {say_trend(s.test)}; final training error: "
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
    plain, res = _nets(table, False, family), _nets(table, True, family)
    spans = []
    for rows, residual in [(plain, False), (res, True)]:
        pair = _ends(rows)
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
    return _capital("; ".join(parts) + ".")


def degradation_paragraph(table: pd.DataFrame, family: str = PAPER_FAMILY) -> str:
    return say_degradation(*find_degradation(table, family))


# ---- Table 6 against the paper and reproductions --------------------------------------------------

@dataclass(frozen=True)
class TableFinding:
    any_paper_nets: bool
    against_paper: tuple = ()   # ((net, ours, paper's Table 6), ...) for the ResNets the paper lists
    reproductions: tuple | None = None  # (net, lowest, highest) public reproductions of our deepest
    params_checked: int = 0     # nets with both our and the paper's parameter count
    params_differ: tuple = ()   # ((net, ours, paper's), ...)
    has_plain: bool = False     # plain nets, which have no paper number


def find_table(table: pd.DataFrame, peers: pd.DataFrame | None = None) -> TableFinding:
    ours = table[table.apply(comparable_with_paper, axis=1)] if len(table) else table
    if ours.empty:
        return TableFinding(False)
    peers = load_peers() if peers is None else peers
    res = ours[ours["residual"] & ours["paper_test_err"].notna()]
    against = tuple((r["net"], float(r["test_err_mean"]), float(r["paper_test_err"])) for _, r in res.iterrows())
    reproductions = None
    if len(res):
        deepest = res.iloc[-1]["net"]
        theirs = peers[(peers["kind"] == "reproduction") & (peers["net"] == deepest)]["test_err"]
        if len(theirs):
            reproductions = (deepest, float(theirs.min()), float(theirs.max()))
    known = ours[ours["params"].notna() & ours["paper_params"].notna()]
    wrong = known[known["params"] != known["paper_params"]]
    return TableFinding(True, against, reproductions, len(known),
                        tuple((r["net"], int(r["params"]), int(r["paper_params"])) for _, r in wrong.iterrows()),
                        bool((~ours["residual"]).any()))


def say_table(f: TableFinding) -> str:
    if not f.any_paper_nets:
        return "No net of the paper's family: nothing to compare with Table 6."
    parts = []
    if f.against_paper:
        parts.append("Against the paper's Table 6: " + ", ".join(
            f"{net} {pct(ours)} vs {pct(paper)} ({ours - paper:+.2f})" for net, ours, paper in f.against_paper) + ".")
    if f.reproductions is not None:
        net, low, high = f.reproductions
        parts.append(f"Public reproductions report {pct(low)} to {pct(high)} for {net}.")
    if f.params_checked and not f.params_differ:
        parts.append(f"Parameter counts equal the paper's architecture for all {f.params_checked} nets.")
    elif f.params_differ:
        parts.append("Parameter counts differ from the paper's architecture for: " + ", ".join(
            f"{net} ({ours:,} vs {paper:,})" for net, ours, paper in f.params_differ) + ".")
    if f.has_plain:
        parts.append("Plain nets have no paper number: the paper shows them only as curves.")
    return " ".join(parts)


def table_paragraph(table: pd.DataFrame) -> str:
    return say_table(find_table(table))


def missing_cells(table: pd.DataFrame, depths=EXPECTED_DEPTHS) -> list[str]:
    have = set(_nets(table, False)["depth"]), set(_nets(table, True)["depth"])
    return ([families.PAPER.net(d, False) for d in depths if d not in have[0]]
            + [families.PAPER.net(d, True) for d in depths if d not in have[1]])


# ---- probes: Figure 7 (tables from probes_figures) ------------------------------------------------

def _epochs_text(first: int, last: int) -> str:
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


@dataclass(frozen=True)
class NetResponse:
    net: str
    depth: int
    residual: bool
    median: float      # median over layers of the response std at the last epoch
    unfinished: bool


@dataclass(frozen=True)
class ResponsePair:
    """A plain and a residual net of one depth."""
    depth: int
    residual_net: str
    plain_net: str
    residual_median: float
    plain_median: float
    smaller_layers: int | None  # layers where the residual net responds less (None: layer counts differ)
    layers: int | None

    @property
    def smaller(self) -> bool:
        return self.residual_median < self.plain_median


class Agreement(str, Enum):
    agrees = "agrees"
    disagrees = "disagrees"
    partly = "partly"
    cannot_compare = "cannot_compare"  # no depth with both a plain and a residual net


@dataclass(frozen=True)
class ResponseFinding:
    """Fig. 7: "ResNets have generally smaller responses than their plain counterparts" and "the deeper
    ResNet has smaller magnitudes of responses"; do our nets?"""
    family: Family
    epochs: tuple          # (first, last) of the last epochs the runs reached
    nets: tuple            # NetResponse, plain nets first, by depth
    pairs: tuple           # ResponsePair at each depth with both
    residual_trend: Trend | None   # the ResNets' medians over depth
    deepest_smaller: bool | None   # the deepest ResNet's median below the shallowest's
    agreement: Agreement

    @property
    def smaller_at(self) -> int:
        return sum(p.smaller for p in self.pairs)


def find_responses(profile: pd.DataFrame) -> ResponseFinding | None:
    """`profile`: probes_figures.final_profile (std per net and layer at the last epoch)."""
    if profile.empty:
        return None
    fam = families.in_frame(profile, profile["family"].iloc[0])
    nets = profile.groupby("net").agg(depth=("depth", "first"), residual=("residual", "first"),
                                      median=("value", "median"), unfinished=("unfinished", "any"))
    nets = nets.sort_values(["residual", "depth"])
    epochs = profile["epoch"].astype(int)
    plain, res = nets[~nets["residual"]], nets[nets["residual"]]
    pairs = []
    for d in sorted(set(plain["depth"]) & set(res["depth"])):
        p_net, r_net = plain.index[plain["depth"] == d][0], res.index[res["depth"] == d][0]
        p_val = profile.loc[profile["net"] == p_net].sort_values("layer")["value"].to_numpy()
        r_val = profile.loc[profile["net"] == r_net].sort_values("layer")["value"].to_numpy()
        same = len(p_val) == len(r_val)
        pairs.append(ResponsePair(int(d), r_net, p_net, float(res.loc[r_net, "median"]),
                                  float(plain.loc[p_net, "median"]),
                                  int((r_val < p_val).sum()) if same else None, len(r_val) if same else None))
    res_trend = trend(res.index, res["median"]) if len(res) >= 2 else None
    deepest_smaller = res_trend.values[-1] < res_trend.values[0] if res_trend else None
    smaller = sum(p.smaller for p in pairs)
    all_smaller = None if not pairs else True if smaller == len(pairs) else False if smaller == 0 else None
    if not pairs:
        agreement = Agreement.cannot_compare
    elif all_smaller is True and deepest_smaller is not False:
        agreement = Agreement.agrees
    elif all_smaller is False and deepest_smaller is not True:
        agreement = Agreement.disagrees
    else:
        agreement = Agreement.partly
    found = tuple(NetResponse(net, int(r["depth"]), bool(r["residual"]), float(r["median"]), bool(r["unfinished"]))
                  for net, r in nets.iterrows())
    return ResponseFinding(fam, (int(epochs.min()), int(epochs.max())), found, tuple(pairs), res_trend,
                           deepest_smaller, agreement)


def _responses_head(f: ResponseFinding) -> str:
    res_name, plain_name = f.family.plural(True), f.family.plural(False)
    if f.agreement is Agreement.cannot_compare:
        return f"{plain_name} and {res_name} cannot be compared (no depth with both)"
    if f.agreement is Agreement.agrees:
        return "as in the paper"
    if f.agreement is Agreement.disagrees:
        return "not as in the paper"
    if f.smaller_at == len(f.pairs):
        why = (f"{res_name} respond less than {plain_name}, but the deepest of them does not respond less "
               "than the shallowest")
    elif f.smaller_at:
        why = f"{res_name} respond less than {plain_name} at only some depths"
    else:
        why = f"{res_name} do not respond less than {plain_name}"
    return f"partly as in the paper ({why})"


def say_responses(f: ResponseFinding | None) -> str:
    if f is None:
        return "No layer responses to describe."
    res_name, plain_name = f.family.plural(True), f.family.plural(False)
    listing = ", ".join(f"{n.net} {n.median:.2f}" + (" (unfinished)" if n.unfinished else "") for n in f.nets)
    out = [f"At the last epoch ({_epochs_text(*f.epochs)}), median std of the 3x3 layer responses: {listing}."]
    if f.pairs:
        pairs = "; ".join(f"{p.residual_net} {p.residual_median:.2f} vs {p.plain_net} {p.plain_median:.2f}"
                          + (f", smaller at {p.smaller_layers} of {p.layers} layers" if p.layers is not None else "")
                          for p in f.pairs)
        out.append(f"{res_name}' median response is smaller than the {plain_name}' at {f.smaller_at} of "
                   f"{len(f.pairs)} depth(s) with both: {pairs}.")
    if f.residual_trend is not None:
        t = f.residual_trend
        out.append(f"Among {res_name}, the median {t.direction.value} ({t.nets[0]} {t.values[0]:.2f}, "
                   f"{t.nets[-1]} {t.values[-1]:.2f}).")
    text = f"**Layer responses: {_responses_head(f)}.** " + " ".join(out)
    if f.family.paper:
        text += (' The paper (Fig. 7) finds that "ResNets have generally smaller responses than '
                 'their plain counterparts" and that "the deeper ResNet has smaller magnitudes of '
                 'responses" (ResNet-20, 56 and 110).')
    return text


def fig7_paragraph(profile: pd.DataFrame) -> str:
    return say_responses(find_responses(profile))


# ---- probes: gradient norms -----------------------------------------------------------------------

@dataclass(frozen=True)
class RatioAt:
    epoch: int
    ratio: float  # mean gradient norm of the first `edge` layers over that of the last `edge`


@dataclass(frozen=True)
class NetRatios:
    net: str
    edge: int
    early: RatioAt  # at each run's first logged epoch
    late: RatioAt   # at its last


def _net_ratios(r) -> NetRatios:
    return NetRatios(str(r["net"]), int(r["edge"]), RatioAt(int(r["early_epoch"]), float(r["early_ratio"])),
                     RatioAt(int(r["late_epoch"]), float(r["late_ratio"])))


@dataclass(frozen=True)
class GradientFinding:
    """Does the plain net's gradient vanish toward its first layers (§4.1 says it does not, with BN)?"""
    family: Family
    judged: NetRatios | None      # plain-56 in the paper's family, else the deepest plain net; None: none
    ends: tuple = ()              # its RatioAt early and late (one when a single epoch was logged)
    vanishing: tuple = ()         # epochs where its ratio is below VANISHING_RATIO
    opposite: RatioAt | None = None  # the first end where its first layers get 1/VANISHING_RATIO times more
    paper_case_missing: bool = False  # the paper's family without plain-56 gradient norms
    twin: NetRatios | None = None     # the residual net of the same depth
    others: tuple = ()                # every other net's NetRatios
    inputs: NetRatios | None = None   # the judged net's ratio at block inputs
    unfinished: bool = False          # some nets have only unfinished runs

    @property
    def all_vanishing(self) -> bool:
        return bool(self.vanishing) and len(self.vanishing) == len(self.ends)


def find_gradients(ratios: pd.DataFrame, input_ratios: pd.DataFrame | None = None) -> GradientFinding | None:
    """`ratios`: probes_figures.gradient_ratios (first/last layers' weight-gradient norm per net);
    `input_ratios`: the same for the gradients at block inputs."""
    if ratios.empty:
        return None
    fam = families.in_frame(ratios, ratios["family"].iloc[0])
    plain, res = ratios[~ratios["residual"]], ratios[ratios["residual"]]
    if plain.empty:
        return GradientFinding(fam, None, others=tuple(map(_net_ratios, (r for _, r in ratios.iterrows()))))
    usual = plain[plain["depth"] == 56] if fam.paper else plain.iloc[0:0]
    p = (usual if len(usual) else plain).iloc[-1]  # plain-56 as in the paper, else the deepest
    judged = _net_ratios(p)
    ends = (judged.early, judged.late) if judged.early.epoch != judged.late.epoch else (judged.late,)
    vanishing = tuple(e.epoch for e in ends if e.ratio < VANISHING_RATIO)
    opposite = next((e for e in ends if e.ratio > 1 / VANISHING_RATIO), None)
    twin = res[res["depth"] == p["depth"]]
    others = ratios[~ratios["net"].isin([p["net"], *twin["net"]])]
    inputs = None
    if input_ratios is not None and len(input_ratios):
        q = input_ratios[input_ratios["net"] == p["net"]]
        inputs = _net_ratios(q.iloc[0]) if len(q) else None
    return GradientFinding(fam, judged, ends, vanishing, opposite, fam.paper and usual.empty,
                           _net_ratios(twin.iloc[0]) if len(twin) else None,
                           tuple(_net_ratios(r) for _, r in others.iterrows()), inputs,
                           bool(ratios["unfinished"].any()))


def _ratio_listing(nets) -> str:
    return "; ".join(f"{n.net} {times(n.early.ratio)} at epoch {n.early.epoch}, "
                     f"{times(n.late.ratio)} at epoch {n.late.epoch}" for n in nets)


def say_gradients(f: GradientFinding | None) -> str:
    if f is None:
        return "No weight-gradient norms to compare."
    if f.judged is None:
        return ("**Gradients: cannot judge vanishing in plain nets**: no plain net has gradient "
                "norms. " + _ratio_listing(f.others) + ".")
    p = f.judged
    if not f.vanishing:
        head = f"no vanishing gradients in {p.net}"
    elif f.all_vanishing:
        head = f"vanishing gradients in {p.net}"
    else:
        head = f"vanishing gradients in {p.net} at epoch {f.vanishing[0]} only"
    at = " and ".join(f"{times(e.ratio)} at epoch {e.epoch}" for e in f.ends)
    out = [f"**Gradients: {head}.** Mean weight-gradient norm of its first {p.edge} 3x3 layers over that "
           f"of its last {p.edge}: {at} (vanishing would be below {times(VANISHING_RATIO)}, two orders "
           "of magnitude)."]
    if f.paper_case_missing:
        out.append(f"(plain-56, the paper's case, has no gradient norms: {p.net} is the deepest "
                   "plain net with them.)")
    if f.opposite is not None:
        out.append(f"At epoch {f.opposite.epoch} its first layers get {times(f.opposite.ratio)} the gradient "
                   "norm of its last: the opposite of vanishing.")
    if f.twin is not None:
        r = f.twin
        out.append(f"{r.net}: {times(r.early.ratio)} at epoch {r.early.epoch} and "
                   f"{times(r.late.ratio)} at epoch {r.late.epoch}"
                   + (f"; {p.net}'s ratio at the last epoch is {times(p.late.ratio / r.late.ratio)} "
                      f"{r.net}'s." if r.late.ratio > 0 else "."))
    if f.others:
        out.append("Other nets (first/last, first and last epoch): " + _ratio_listing(f.others) + ".")
    if f.inputs is not None:
        q = f.inputs
        out.append(f"Gradient norm at the inputs of {p.net}'s first {q.edge} blocks over that at its last "
                   f"{q.edge}: {times(q.early.ratio)} at epoch {q.early.epoch}, {times(q.late.ratio)} at "
                   f"epoch {q.late.epoch}.")
    if f.family.paper:
        out.append("Norms are of whole tensors: a last-stage 3x3 weight has 16 times as many entries as "
                   "a first-stage one (64x64 vs 16x16 filters), so equal per-entry gradients would "
                   "already read about 0.25x.")
        claim = ('with BN "the backward propagated gradients exhibit healthy norms", so the '
                 'degradation "is unlikely to be caused by vanishing gradients"')
        if f.vanishing:
            out.append(f"This disagrees with the paper (§4.1): {claim}.")
        elif f.opposite is not None:
            out.append(f"No vanishing, as in the paper (§4.1: {claim}); but at epoch {f.opposite.epoch} "
                       f"{p.net}'s norms are far from even across depth, the other way.")
        else:
            out.append(f"This agrees with the paper (§4.1): {claim}.")
    if f.unfinished:
        out.append("Caveat: some nets have only unfinished runs; their last epoch is the last logged.")
    return " ".join(out)


def gradients_paragraph(ratios: pd.DataFrame, input_ratios: pd.DataFrame | None = None) -> str:
    return say_gradients(find_gradients(ratios, input_ratios))


# ---- imported weights (imported.scan's table) ------------------------------------------------------

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
