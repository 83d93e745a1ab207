"""The paper's figures from the tidy frame: Fig. 1 (plain-20 vs plain-56), Fig. 6 (plain vs ResNet
curves) and final error against depth. Each function returns a Figure and draws only nets present.

Curves are the mean over completed runs of a net at each iteration, shaded min-max when there are
several; unfinished runs are drawn one by one as faint lines so they are seen but not averaged in. With a
reference (`reference.py`), each net that has one gets the reference's curve of the same net beneath its own:
same colour, dotted, thinner.
"""
from __future__ import annotations

import itertools
import math
from pathlib import Path

import matplotlib
import pandas as pd

# Figures are built as plain `Figure` objects, not through pyplot: no backend to choose (savefig
# renders with the Agg/SVG canvas the file's format needs), no global figure registry to leak memory
# when a report draws many, and nothing to close.
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from runformat import PAPER_FAMILY

from . import families, outputs
from .load import from_scratch
from .reference import Reference, compare, iterations_span
from .tables import load_peers, paper_length, summarise

PAPER_YMAX = 20.0  # Fig. 1 and Fig. 6 show 0-20 % error
# One palette, one meaning, in every figure: colour = depth; plain vs ResNet by line style (dashed / solid) or panel.
# Okabe & Ito's colour-blind-safe set, in an order whose neighbours contrast (no orange beside red).
PALETTE = ["#0072B2", "#009E73", "#E69F00", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442"]
DEPTH_COLOURS = dict(zip((20, 32, 44, 56, 110, 1202), PALETTE))  # the paper's depths look the same everywhere
SERIES_STYLES = {False: ("--", "o"), True: ("-", "s")}  # plain, residual: line style and marker
SERIES_GREY = {False: "0.45", True: "black"}  # a line across depths (error against depth) has no one depth's colour
# A reference curve sits beneath the user's (default lines are at zorder 2, the min-max shading at 1) and is thinner,
# so that where the two agree the user's curve is the one seen.
REFERENCE_ZORDER, REFERENCE_WIDTH = 1.5, 0.6
THOUSANDS_FROM = 2000  # runs this long are read in thousands of iterations (the paper's 64k); shorter ones as counted


def iteration_axis(last) -> tuple[float, str]:
    """(divisor, x label) for curves whose last iteration is `last`: honest units, never "(1e4)" over ticks 0-0.1."""
    if math.isfinite(float(last)) and float(last) >= THOUSANDS_FROM:
        return 1e3, "iterations (thousands)"
    return 1.0, "iterations"


class NothingToPlot(ValueError):
    """The nets a figure needs are absent; the report notes it and goes on."""


def select(frame: pd.DataFrame, family: str) -> pd.DataFrame:
    # nets trained from scratch only: a run started from a shallower net (init.from) has figures of its own
    rows = frame[(frame["family"] == family) & from_scratch(frame)]
    if family == PAPER_FAMILY:  # the paper's curves are option-A ResNets; option B is table-only
        rows = rows[~rows["net"].astype(str).str.endswith("(B)")]
    return rows


def depth_colours(depths) -> dict:
    """{depth: colour}: the paper's depths their own colours, others (another family's) the palette in order of depth,
    repeating rather than running out."""
    spare = itertools.cycle(PALETTE)
    return {d: DEPTH_COLOURS[d] if d in DEPTH_COLOURS else next(spare) for d in sorted(set(depths))}


def _mean_curve(runs: pd.DataFrame, column: str, unit: float):
    wide = runs.pivot_table(index="iteration", columns="run", values=column, aggfunc="mean")
    return wide.index.to_numpy() / unit, wide.mean(axis=1), wide.min(axis=1), wide.max(axis=1)


def _draw_net(ax, rows: pd.DataFrame, column: str, colour, style: str, width: float, unit: float) -> list:
    """Draw one net's curve; return the y values that must stay visible (for the y limit)."""
    finished = rows[rows["finished"].astype(bool)]
    ends = []
    if len(finished):
        x, mean, low, high = _mean_curve(finished, column, unit)
        ax.plot(x, mean, color=colour, linestyle=style, linewidth=width)
        if finished["run"].nunique() > 1:
            ax.fill_between(x, low, high, color=colour, alpha=0.15, linewidth=0)
        ends.append(mean.iloc[-1])
    for _, run in rows[~rows["finished"].astype(bool)].groupby("run"):
        ax.plot(run["iteration"] / unit, run[column], color=colour, linestyle=style,
                linewidth=width * 0.6, alpha=0.35)
        if finished.empty:
            ends.append(run[column].iloc[-1])
    return ends


def _draw_reference(ax, reference: Reference | None, net_rows: pd.DataFrame, column: str, colour,
                    width: float, unit: float) -> bool:
    """Draw the reference's curve of the net in `net_rows` (mean over its completed runs); whether it has one."""
    if reference is None:
        return False
    rows = reference.curve_rows(net_rows["family"].iloc[0], net_rows["net"].iloc[0])
    if rows.empty:
        return False
    x, mean, _, _ = _mean_curve(rows, column, unit)
    ax.plot(x, mean, color=colour, linestyle=":", linewidth=width * REFERENCE_WIDTH, zorder=REFERENCE_ZORDER)
    return True


def _legend(ax, rows: pd.DataFrame, colours: dict, reference: Reference | None = None) -> None:
    """One entry per net (not per line style), below the axes where it can never hide a curve, and one for the
    dotted curves when the panel has any (`reference`)."""
    handles = []
    for group in _by_depth(rows):
        net = group["net"].iloc[0]
        unfinished = not group["finished"].astype(bool).any()
        handles.append(Line2D([], [], color=colours[int(group["depth"].iloc[0])], linewidth=2,
                              alpha=0.5 if unfinished else 1.0,
                              label=net + (" (unfinished)" if unfinished else "")))
    if reference is not None:
        handles.append(Line2D([], [], color="0.3", linestyle=":", linewidth=1.5, label=f"dotted: {reference.label}"))
    # at most two columns from four entries on: three columns of "plain-20 (unfinished)" run wider than a panel,
    # into the next panel's legend (seen on the first H100 sweep's 8 nets)
    ncol = len(handles) if len(handles) <= 3 else 2
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.16), ncol=ncol, frameon=False)


def _limits(axes, ends, rows: pd.DataFrame, unit: float) -> bool:
    """The paper's 0-20 %, unless a curve ends above it (e.g. a short CPU run): then show all of
    every curve. Same limits on every panel, as in the paper. Returns whether it widened."""
    # the loader keeps inf and nan out of the frame; a limit is finite whatever reaches this all the same
    widened = max((e for e in ends if math.isfinite(e)), default=0.0) > PAPER_YMAX
    top = PAPER_YMAX
    if widened:
        peak = max((y for ax in axes for line in ax.get_lines() for y in map(float, line.get_ydata())
                    if math.isfinite(y)), default=0.0)
        top = float(min(100.0, math.ceil((peak + 2) / 10) * 10))
    for ax in axes:
        ax.set_ylim(0, top)
        last = float(rows["iteration"].max())
        ax.set_xlim(0, last / unit * 1.02 if math.isfinite(last) and last > 0 else 1.0)
    return widened


def _by_depth(rows: pd.DataFrame) -> list[pd.DataFrame]:
    return [g for _, g in sorted(rows.groupby("net"), key=lambda kv: (kv[1]["depth"].iloc[0], kv[0]))]


def _notes(rows: pd.DataFrame, widened: bool) -> str:
    notes = []
    if rows["run"].nunique() > rows["net"].nunique():
        notes.append("mean over seeds, shaded min-max")
    if not rows["finished"].astype(bool).all():
        notes.append("faint: unfinished runs")
    if widened:
        notes.append(f"y-axis widened beyond the paper's 0-{PAPER_YMAX:g}%: curves end above it")
    return "; ".join(notes)


def fig1_depths(frame: pd.DataFrame, family: str = PAPER_FAMILY) -> tuple:
    """The two plain nets' depths Figure 1 draws: the paper's 20 and 56 when both ran, else the shallowest and the
    deepest present (what the report's heading and paragraph name too)."""
    plain = select(frame, family)
    present = sorted(int(d) for d in plain.loc[~plain["residual"].astype(bool), "depth"].unique())
    paper_pair = family == PAPER_FAMILY and {20, 56} <= set(present)
    return (20, 56) if paper_pair else tuple(present[:1] + present[-1:])


def fig1_heading(frame: pd.DataFrame, family: str = PAPER_FAMILY) -> str:
    depths = fig1_depths(frame, family)
    if len(set(depths)) < 2:
        return "Figure 1: the shallowest vs the deepest plain net"
    fam = families.in_frame(frame, family)
    return f"Figure 1: {' vs '.join(fam.net(d, False) for d in depths)}"


def fig1_plain(frame: pd.DataFrame, family: str = PAPER_FAMILY, depths=None,
               reference: Reference | None = None) -> Figure:
    fam = families.in_frame(frame, family)
    plain = select(frame, family)
    plain = plain[~plain["residual"].astype(bool)]
    depths = fig1_depths(frame, family) if depths is None else depths
    wanted = [fam.net(d, False) for d in depths]
    missing = [name for name, d in zip(wanted, depths) if d not in set(plain["depth"])]
    if missing or len(set(depths)) < 2:
        raise NothingToPlot(f"Figure 1 needs two plain nets (the paper's are plain-20 and plain-56); "
                            f"present: {', '.join(wanted) or 'none'}")
    rows = plain[plain["depth"].isin(depths)]
    colours = depth_colours(depths)
    unit, xlabel = iteration_axis(rows["iteration"].max())
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    ends = []
    for ax, column, what in [(axes[0], "train_err", "training error (%)"),
                             (axes[1], "test_err", "test error (%)")]:
        drawn = False
        for net_rows in _by_depth(rows):
            colour = colours[int(net_rows["depth"].iloc[0])]
            drawn |= _draw_reference(ax, reference, net_rows, column, colour, 1.6, unit)
            ends += _draw_net(ax, net_rows, column, colour, "-", 1.6, unit)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(what)
        ax.set_title(what.split(" (")[0])
        ax.grid(alpha=0.3)
        _legend(ax, rows, colours, reference if drawn else None)
    widened = _limits(axes, ends, rows, unit)
    title = f"Figure 1 (He et al. 2016) on CIFAR-10: {' vs '.join(wanted)}"
    if family != PAPER_FAMILY:
        title += f" - {fam.title}"
    note = _notes(rows, widened)
    fig.suptitle(title + (f"\n({note})" if note else ""))
    return fig


def fig6(frame: pd.DataFrame, family: str = PAPER_FAMILY, reference: Reference | None = None) -> Figure:
    fam, rows = families.in_frame(frame, family), select(frame, family)
    if rows.empty:
        raise NothingToPlot(f"Figure 6: no {fam.title} runs")
    colours = depth_colours(rows["depth"].unique())  # same colour per depth in both panels
    unit, xlabel = iteration_axis(rows["iteration"].max())
    fig = Figure(figsize=(12, 5.2), layout="constrained")
    axes = fig.subplots(1, 2)
    ends = []
    for ax, residual in [(axes[0], False), (axes[1], True)]:
        panel, drawn = rows[rows["residual"] == residual], False
        for net_rows in _by_depth(panel):
            colour = colours[int(net_rows["depth"].iloc[0])]
            for column, width in (("train_err", 1.2), ("test_err", 2.4)):
                drawn |= _draw_reference(ax, reference, net_rows, column, colour, width, unit)
            # Fig. 6: dashed = training error, bold = test error
            ends += _draw_net(ax, net_rows, "train_err", colour, "--", 1.2, unit)
            ends += _draw_net(ax, net_rows, "test_err", colour, "-", 2.4, unit)
        name = fam.plural(residual)
        ax.set_title(name if len(panel) else f"{name}: no runs")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("error (%)")
        ax.grid(alpha=0.3)
        if len(panel):
            _legend(ax, panel, colours, reference if drawn else None)
    widened = _limits(axes, ends, rows, unit)
    title = "Figure 6 (He et al. 2016) on CIFAR-10: dashed = training error, bold = test error"
    if family != PAPER_FAMILY:
        title = f"{fam.title}: Figure-6 style; dashed = training error, bold = test error"
    note = _notes(rows, widened)
    fig.suptitle(title + (f"\n({note})" if note else ""))
    return fig


def degradation(frame: pd.DataFrame, family: str = PAPER_FAMILY, reference: Reference | None = None) -> Figure:
    fam, rows = families.in_frame(frame, family), select(frame, family)
    if rows.empty:
        raise NothingToPlot(f"error vs depth: no {fam.title} runs")
    table = summarise(rows)
    # the reference's errors of the same nets: at its end, or, where ours stop short of it, at our last iteration
    # (reference.compare's rule: an end at 41% beside one at 100% would show mostly the training still missing)
    theirs = {f.net: f for f in (compare(table, reference)[0] if reference is not None else [])}
    points = sorted({f.at for f in theirs.values() if f.at is not None})
    where = f"\n(at iteration {iterations_span(points)}, where ours stop)" if points else ""
    # taller with the reference's entries below the axes: the panels keep their height
    fig = Figure(figsize=(11, 6.4 if theirs else 4.8), layout="constrained")
    axes = fig.subplots(1, 2)
    colours = depth_colours(table["depth"])
    all_unfinished = bool(table["from_unfinished"].all())  # said once in the title, not at every point
    for ax, column, what in [(axes[0], "train_err", "final training error (%)"),
                             (axes[1], "test_err", "final test error (%)")]:
        for residual, (style, marker) in SERIES_STYLES.items():
            part = table[table["residual"] == residual].sort_values("depth")
            if part.empty:
                continue
            colour = SERIES_GREY[residual]
            ax.errorbar(part["depth"], part[f"{column}_mean"],
                        yerr=part[f"{column}_std"].fillna(0.0), color=colour, marker=marker, linestyle=style,
                        markersize=8, capsize=4, linewidth=1.6, label=fam.series(residual))
            # each depth's point in that depth's colour, as its curves elsewhere
            ax.scatter(part["depth"], part[f"{column}_mean"], c=[colours[d] for d in part["depth"]], marker=marker,
                       s=30, zorder=3)
            for _, r in part[part["from_unfinished"] & (not all_unfinished)].iterrows():
                ax.annotate("unfinished", (r["depth"], r[f"{column}_mean"]),
                            textcoords="offset points", xytext=(4, 6), fontsize=8, color=colour)
            # the reference's final errors of the same nets: hollow markers on a dotted line, beneath ours
            ref = [(d, getattr(theirs[n], f"ref_{column.split('_')[0]}")) for n, d in zip(part["net"], part["depth"])
                   if n in theirs]
            if ref:
                ax.plot(*zip(*ref), color=colour, marker=marker, markerfacecolor="none",
                        linestyle=":", linewidth=1.6 * REFERENCE_WIDTH, zorder=REFERENCE_ZORDER,
                        label=f"{fam.series(residual)}: {reference.label}{where}")
        if column == "test_err" and family == PAPER_FAMILY:  # only beside runs as long as the paper's
            _paper_points(ax, table[paper_length(table)])
        ax.set_xticks(sorted(table["depth"].unique()))
        ax.set_xlabel("depth (weighted layers)")
        ax.set_ylabel(what)
        ax.set_title(what.replace("final ", "").split(" (")[0] + " at the last epoch")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        # ours first: matplotlib lists plain lines (the reference's) before error bars (ours)
        order = sorted(range(len(labels)), key=lambda i: reference is not None and reference.label in labels[i])
        # below the axes, as Figure 6's, where it can never hide a point (inside, "best" still covered ResNet-32/44
        # once the reference's entries grew to three lines each)
        ax.legend([handles[i] for i in order], [labels[i] for i in order], loc="upper center",
                  bbox_to_anchor=(0.5, -0.16), ncol=1 if reference is not None and len(labels) > 2 else 2,
                  frameon=False)
    several = (table["n"] > 1).any()
    title = "Degradation on CIFAR-10: final error against depth, plain vs residual"
    if family != PAPER_FAMILY:
        title = f"{fam.title}: final error against depth"
    stops = sorted(set(table["final_iteration"].astype(int)))
    unfinished = f"; every run unfinished, at iteration {iterations_span(stops)}" if all_unfinished else ""
    fig.suptitle(title + ("\n(error bars: sample std over seeds" if several else "\n(one run per net") + unfinished + ")")
    return fig


def _paper_points(ax, table: pd.DataFrame) -> None:
    """The paper's numbers at the depths we ran: Table 6 for ResNets, Fig. 6 read-offs for plain."""
    peers = load_peers()
    res_depths, plain_depths = (table.loc[table["residual"] == r, "depth"] for r in (True, False))
    paper = peers[(peers["kind"] == "paper_table") & peers["depth"].isin(res_depths)]
    if len(paper):
        ax.plot(paper["depth"], paper["test_err"], linestyle="none", marker="x", markersize=8,
                color="black", zorder=4, label="ResNet, paper Table 6")
    read = peers[(peers["kind"] == "paper_figure_readoff") & peers["depth"].isin(plain_depths)]
    if len(read):
        mid = (read["test_err_low"] + read["test_err_high"]) / 2
        ax.errorbar(read["depth"], mid, yerr=(read["test_err_high"] - read["test_err_low"]) / 2,
                    linestyle="none", marker="o", markerfacecolor="none", color="black",
                    capsize=3, zorder=4, label="plain, read off paper Fig. 6 (approx.)")


# A redraw of unchanged data writes the same bytes (no diff in a committed report): no date in the files, and the SVG's
# element ids hashed with a fixed salt instead of a random one.
SVG_RC = {"svg.hashsalt": "analysis"}
NO_DATE = {"svg": {"Date": None}, "png": {}}


def save(fig: Figure, out_dir, stem: str) -> list[Path]:
    out_dir = Path(out_dir)
    out_dir.mkdir(exist_ok=True)  # not its parents: a report's folder removed mid-write is an error, not made again
    with matplotlib.rc_context(SVG_RC):
        return [outputs.save_figure(fig, out_dir / f"{stem}.png", dpi=200, bbox_inches="tight",
                                    metadata=NO_DATE["png"]),
                outputs.save_figure(fig, out_dir / f"{stem}.svg", bbox_inches="tight", metadata=NO_DATE["svg"])]
