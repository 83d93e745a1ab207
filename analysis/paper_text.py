"""The paper's numbers against ours: the paper's training length, its Figure 6 trends, and Table 6 beside our
finals (peers.csv, through tables.load_peers)."""
from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from .tables import comparable_with_paper, load_peers, paper_iterations
from .text import EXPECTED_DEPTHS, Direction, Trend, pct, trend


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



# ---- Table 6 against the paper and reproductions --------------------------------------------------

@dataclass(frozen=True)
class TableFinding:
    any_paper_nets: bool
    against_paper: tuple = ()   # ((net, ours, paper's Table 6), ...) for the ResNets the paper lists
    reproductions: tuple | None = None  # (net, lowest, highest) public reproductions of our deepest
    params_checked: int = 0     # nets with both our and the paper's parameter count
    params_differ: tuple = ()   # ((net, ours, paper's), ...)
    has_plain: bool = False     # plain nets, which have no paper number
    short_of: tuple | None = None  # (the runs' last iteration, the paper's): too short for the paper's numbers


def find_table(table: pd.DataFrame, peers: pd.DataFrame | None = None) -> TableFinding:
    ours = table[table.apply(comparable_with_paper, axis=1)] if len(table) else table
    if ours.empty:
        return TableFinding(False)
    peers = load_peers() if peers is None else peers
    if not ours["paper_length"].any():
        return TableFinding(True, short_of=(int(ours["final_iteration"].max()), paper_iterations(peers)))
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
    if f.short_of is not None:
        return (f"No gap to the paper's Table 6: its numbers are for {f.short_of[1]:,} iterations, these runs stop at "
                f"{f.short_of[0]:,}; the verdict above says what they show so far.")
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
