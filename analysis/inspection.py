"""Inspection files -> the report's sections on why depth hurts plain nets (issue 12).

A completed run directory may hold, beside metrics.csv and run.json, what `experiments.inspect` wrote from its
final weights (runformat's CONSTRUCTED, BLOCK_RATIOS and LESION tables), and its run.json says what was written
or why not (`inspection`). A run started with `init.from` has `init` in run.json, with the constructed net's errors
before its first step. Like load.py, a malformed file loses only its bad lines, and a run without the files is
listed, never fatal.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from runformat import (
    BLOCK_RATIOS,
    CHECKPOINT,
    CONSTRUCTED,
    IDENTITY_NUMERIC,
    INSPECTION_TABLES,
    LESION,
    PAPER_FAMILY,
    Status,
    Table,
)

from . import families
from . import inspection_text as words
from .figures import SERIES_STYLES, NothingToPlot, depth_colours, iteration_axis, save, select
from .load import RunSet, name_nets, read_csv, read_meta, run_dirs, run_name, scan_runs

PER_NET = ["family", "family_label", "family_title", "net", "depth", "residual", "shortcut"]


@dataclass
class InspectionSet:
    tables: dict                                       # file -> every run's rows, with run, family and net
    starts: pd.DataFrame                               # one row per run started with init.from: start_* numbers
    missing: list[str] = field(default_factory=list)   # completed runs without inspection files, and why
    no_weights: list[str] = field(default_factory=list)  # completed runs never inspected whose weights are not here
    problems: list[str] = field(default_factory=list)  # what was skipped or repaired while reading, and why

    def frame(self, table: Table) -> pd.DataFrame:
        return self.tables[table.file]


def scan_inspection(runs_dir, runs: RunSet | None = None) -> InspectionSet:
    """`runs`: load.py's scan of the same directory (read here when not given): the families' names."""
    runs_dir = Path(runs_dir)
    runs = scan_runs(runs_dir, warn=False) if runs is None else runs
    found: dict = {t.file: [] for t in INSPECTION_TABLES}
    starts, missing, problems, no_weights = [], [], [], []
    net_of = dict(zip(runs.runs["run"], runs.runs["net"]))
    for run_dir in run_dirs(runs_dir) if runs_dir.is_dir() else []:
        name = run_name(run_dir)
        meta = read_meta(run_dir, [])  # run.json's own problems are load.py's to list
        for t in INSPECTION_TABLES:
            if (run_dir / t.file).exists():
                run_problems: list = []
                try:
                    rows = read_csv(run_dir, t, meta.fallback, run_problems)
                except Exception as err:  # as load.scan_runs: one run's file costs only that file
                    rows, run_problems = None, [f"{t.file} not read ({err.__class__.__name__})"]
                problems += [f"{name}: {p}" for p in run_problems]
                if rows is not None and len(rows):
                    found[t.file].append(rows.assign(run=name))
        present = [t.file for t in INSPECTION_TABLES if (run_dir / t.file).exists()]
        why = _why_not(meta, present)
        if why and meta.inspection is None and not present and not (run_dir / CHECKPOINT).exists():
            no_weights.append(name)  # by design (a copied or committed run keeps no weights): one line, not one each
        elif why:
            missing.append(f"`{name}`: {why}")
        start = meta.init.get("start")
        # the report's sentence needs the constructed and the shallow net's test errors; the rest may be missing
        if start is not None and {"test_err_deep", "test_err_shallow"} <= set(start) and net_of.get(name):
            starts.append({"run": name, "net": net_of[name], "source_run": meta.init.get("run"),
                           **{f"start_{k}": v for k, v in start.items()}})
    tables = {t.file: name_nets(pd.concat(found[t.file], ignore_index=True), runs.families, runs.variants) if found[t.file]
              else pd.DataFrame(columns=["run", *t.columns, *PER_NET[:4]]) for t in INSPECTION_TABLES}
    starts = pd.DataFrame(starts, columns=["run", "net", "source_run", *(f"start_{c}" for c in CONSTRUCTED.numeric)])
    return InspectionSet(tables, starts, missing, no_weights=no_weights, problems=problems)


def _why_not(meta, present: list) -> str:
    """Why a completed run lacks (some) inspection files; "" when it has what it can have."""
    if meta.status != Status.completed.value:
        return ""  # load.py lists unfinished runs; they are inspected once they complete
    info = meta.inspection
    if info is None:
        return ("not inspected yet (inspect.enabled=false, or it ran before the inspection existed): "
                "`python -m experiments.inspect RUN_DIR` or `make plots` writes its files") if not present else ""
    notes = [n for n in info["notes"] if "not supported" in n or info["status"] != "done"]
    if info["status"] == "done":
        return "; ".join(notes)
    return f"inspection {info['status'] or 'unknown'}" + (f": {'; '.join(notes)}" if notes else "")


# ---- per-net tables -------------------------------------------------------------------------------------------------

def per_block(frame: pd.DataFrame, values: list) -> pd.DataFrame:
    """One row per (net, block): the mean over the net's runs (seeds); `runs` counts them."""
    keys = [*PER_NET[:6], "block"]
    if frame.empty:
        return pd.DataFrame(columns=[*keys, "name", "skip", *values, "runs"])
    out = frame.groupby(keys, as_index=False).agg(name=("name", "first"), skip=("skip", "first"),
                                                  runs=("run", "nunique"), **{v: (v, "mean") for v in values})
    return out.sort_values(["residual", "depth", "net", "block"], kind="stable", ignore_index=True)


def constructed_profile(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per (shallow net, deeper depth): the mean over the shallow net's runs, the largest logit difference."""
    values = [c for c in CONSTRUCTED.numeric if c not in CONSTRUCTED.key + IDENTITY_NUMERIC]
    if frame.empty:
        return pd.DataFrame(columns=[*PER_NET, "deep_depth", *values, "runs"])
    rows = frame.assign(shortcut=frame["shortcut"].fillna("A"))
    out = rows.groupby([*PER_NET, "deep_depth"], as_index=False).agg(
        runs=("run", "nunique"), **{v: (v, "max" if v == "max_logit_diff" else "mean") for v in values})
    return out.sort_values(["residual", "depth", *CONSTRUCTED.key], ignore_index=True)


# ---- figures ----------------------------------------------------------------------------------------------------------

def _by_depth(prof: pd.DataFrame, what: str):
    """A Figure with one panel per depth (shared y), and the panels' (axes, that depth's rows)."""
    depths = sorted(int(d) for d in prof["depth"].unique())
    fig = Figure(figsize=(3.6 * len(depths) + 1.8, 4.8), layout="constrained")
    axes = fig.subplots(1, len(depths), sharey=True, squeeze=False)[0]
    for ax, d in zip(axes, depths):
        ax.set_title(f"depth {d}")
        ax.set_xlabel(what)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # blocks are counted
        ax.grid(alpha=0.3)
    return fig, [(ax, prof[prof["depth"] == d]) for ax, d in zip(axes, depths)]


def _nets(rows: pd.DataFrame) -> list:
    return [g.sort_values("block") for _, g in sorted(rows.groupby("net"), key=lambda kv: (
        bool(kv[1]["residual"].iloc[0]), kv[0]))]


def _downsampling(ax, rows: pd.DataFrame) -> None:
    """A faint line before each block whose skip is not the identity: where a stage starts."""
    for block in sorted(set(rows.loc[rows["skip"] != "identity", "block"])):
        ax.axvline(block - 0.5, color="grey", linewidth=0.6, linestyle=":")


def _notes(prof: pd.DataFrame) -> str:
    notes = ["dotted verticals: blocks that downsample"]
    if (prof["runs"] > 1).any():
        notes.insert(0, "mean over seeds")
    return "; ".join(notes)


def block_ratios(frame: pd.DataFrame, family: str) -> Figure:
    rows = select(frame, family) if len(frame) else frame
    if rows.empty:
        raise NothingToPlot(f"block ratios: no {BLOCK_RATIOS.file} rows for "
                            f"{families.in_frame(frame, family).title}")
    prof = per_block(rows, ["change_ratio", "branch_ratio"])
    fig, panels = _by_depth(prof, "block index")
    colours = depth_colours(prof["depth"])
    for ax, at in panels:
        for g in _nets(at):
            residual = bool(g["residual"].iloc[0])
            colour, (style, marker) = colours[int(g["depth"].iloc[0])], SERIES_STYLES[residual]
            ax.plot(g["block"], g["change_ratio"], color=colour, linestyle=style, marker=marker, markersize=3,
                    label=f"{g['net'].iloc[0]}: ||block(x) − x|| / ||x||")
            if residual:
                ax.plot(g["block"], g["branch_ratio"], color=colour, linestyle=":", linewidth=1.6, marker="s",
                        markersize=3, markerfacecolor="none",
                        label=f"{g['net'].iloc[0]}: ||F(x)|| / ||x||")
        _downsampling(ax, at)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    values = pd.concat([prof["change_ratio"], prof["branch_ratio"]]).dropna()
    values = values[values > 0]
    if len(values) and values.max() / values.min() > 30:  # one net far from the identity would flatten the rest
        for ax, _ in panels:
            ax.set_yscale("log")
    else:
        panels[0][0].set_ylim(bottom=0)
    panels[0][0].set_ylabel("ratio of norms over the test images")
    fam = families.in_frame(rows, family)
    fig.suptitle(f"{'' if fam.paper else fam.title + ': '}how close each block is to the identity, "
                 f"{fam.plural(False)} vs {fam.plural(True)}\n(x: the block's input, or option A's zero-padded "
                 f"subsampled input where it downsamples; {_notes(prof)})")
    return fig


def lesion(frame: pd.DataFrame, family: str) -> Figure:
    rows = select(frame, family) if len(frame) else frame
    if rows.empty:
        raise NothingToPlot(f"lesion study: no {LESION.file} rows for {families.in_frame(frame, family).title}")
    prof = per_block(rows, ["test_err", "intact_test_err"])
    fig, panels = _by_depth(prof, "deleted block")
    colours = depth_colours(prof["depth"])
    for ax, at in panels:
        for g in _nets(at):
            colour, (style, marker) = colours[int(g["depth"].iloc[0])], SERIES_STYLES[bool(g["residual"].iloc[0])]
            net = g["net"].iloc[0]
            ax.plot(g["block"], g["test_err"], color=colour, linestyle=style, marker=marker, markersize=3,
                    label=f"{net}, one block deleted")
            ax.axhline(g["intact_test_err"].mean(), color=colour, linestyle=style, linewidth=0.8, alpha=0.6,
                       label=f"{net}, intact")
        _downsampling(ax, at)
        ax.set_ylim(0, 100)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False, fontsize=8)
    panels[0][0].set_ylabel("test error (%)")
    fam = families.in_frame(rows, family)
    fig.suptitle(f"{'' if fam.paper else fam.title + ': '}lesion study: test error with one block replaced by its "
                 f"skip, {fam.plural(False)} vs {fam.plural(True)}\n(Veit et al., NeurIPS 2016; {_notes(prof)})")
    return fig


def _curve(rows: pd.DataFrame, column: str, unit: float):
    done = rows[rows["finished"].astype(bool)]
    wide = (done if len(done) else rows).pivot_table(index="iteration", columns="run", values=column, aggfunc="mean")
    return wide.index.to_numpy() / unit, wide.mean(axis=1).to_numpy()


def init_runs(frame: pd.DataFrame, starts: pd.DataFrame, family: str) -> Figure:
    """Per net started from a constructed one: its training and test error against iterations, beside the net it
    started from and the scratch net of its depth, and where it started (iteration 0)."""
    rows = frame[(frame["family"] == family) & frame["init_depth"].notna()] if len(frame) else frame
    if rows.empty:
        raise NothingToPlot("no run started from a constructed net (init.from)")
    fam = families.in_frame(frame, family)
    scratch = frame[(frame["family"] == family) & frame["init_depth"].isna()]
    nets = sorted(set(rows["net"]), key=lambda n: (n.startswith(fam.series(True)), n))
    unit, xlabel = iteration_axis(rows["iteration"].max())
    fig = Figure(figsize=(11, 4.2 * len(nets)), layout="constrained")
    axes = fig.subplots(len(nets), 2, squeeze=False)
    for (left, right), net in zip(axes, nets):
        own = rows[rows["net"] == net]
        first = own.iloc[0]
        deep, shallow = int(first["depth"]), int(first["init_depth"])
        colours = depth_colours([deep, shallow])
        # colour = depth: the run started from the shallow net is of the deep net's depth, told apart by dash-dots
        lines = [(fam.net(shallow, first["residual"], first["shortcut"]), colours[shallow], "-"),
                 (fam.net(deep, first["residual"], first["shortcut"]), colours[deep], "-"), (net, colours[deep], "-.")]
        start = starts[starts["net"] == net]
        for ax, column, what in [(left, "train_err", "training error (%)"), (right, "test_err", "test error (%)")]:
            for name, colour, style in lines:
                part = own if name == net else scratch[scratch["net"] == name]
                if not len(part):
                    continue
                x, y = _curve(part, column, unit)
                y0 = start[f"start_{'train' if column == 'train_err' else 'test'}_err_deep"].astype(float).mean()
                if name == net and np.isfinite(y0):  # from where it started: the constructed net before the first step
                    x, y = np.r_[0.0, x], np.r_[y0, y]
                    ax.plot([0], [y0], marker="*", markersize=12, color=colour, linestyle="none",
                            label="start: the constructed net" + (" (training mode, a few batches)"
                                                                 if column == "train_err" else ""))
                ax.plot(x, y, color=colour, linestyle=style, linewidth=2.2 if name == net else 1.4,
                        label=name + ("" if name == net else " (from scratch)"))
            ax.set_xlabel(xlabel)
            ax.set_ylabel(what)
            ax.set_title(f"{net}: {what.split(' (')[0]}")
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            ax.legend(loc="upper right", frameon=False, fontsize=8)
    fig.suptitle(f"{'' if fam.paper else fam.title + ': '}does SGD keep the constructed solution? Deeper nets started "
                 "from a trained shallower one plus identity blocks (init.from)")
    return fig


# ---- report ---------------------------------------------------------------------------------------------------------

def report_blocks(runs_dir, out_dir, runs: RunSet, table: pd.DataFrame, level: int = 2) -> tuple[list, list[Path]]:
    """The report's sections on why depth hurts plain nets: -> (blocks, files written). `table`: tables.table6;
    `level`: the heading level of the section (its parts one below)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the problems are listed in the report instead
        found = scan_inspection(runs_dir, runs)
    frame = runs.frame
    names = words.paper_first([*found.frame(CONSTRUCTED)["family"], *found.frame(BLOCK_RATIOS)["family"],
                               *found.frame(LESION)["family"], *frame.loc[frame["init_depth"].notna(), "family"]])
    blocks = [("h", level, "Why depth hurts plain nets"),
              ("p", "From each completed run's final weights (`experiments/inspect.py`, run as the run completes, or "
                    "later by `python -m experiments.inspect RUN_DIR` and `make plots`): the deeper net constructed "
                    "from it, runs started from that net, how far each block is from the identity, and its test error "
                    "with one block deleted.")]
    written: list = []
    if not names:
        blocks.append(("p", "No run has inspection files yet."))
    for family in names:
        title = families.in_frame(frame, family).title
        prefix = "" if family == PAPER_FAMILY else f"{title}: "
        stem = "" if family == PAPER_FAMILY else f"{family}_"
        profile = constructed_profile(select(found.frame(CONSTRUCTED), family))
        blocks.append(("h", level + 1,
                       f"{prefix}The constructed deeper net: shallow net, constructed, trained from scratch"))
        if len(profile):
            blocks += [("table", *_constructed_table(profile, table)),
                       ("p", words.constructed_paragraph(profile, table))]
        else:
            blocks.append(("p", f"No run of this family has `{CONSTRUCTED.file}` (see below why)."))
        sections = [
            ("Does SGD keep it? Deeper runs started from the constructed net", "init_runs",
             lambda f: init_runs(frame, found.starts, f),
             lambda f: words.init_paragraph(found.starts[found.starts["net"].isin(select_nets(frame, f))], table)),
            ("How close each block is to the identity", "block_ratios",
             lambda f: block_ratios(found.frame(BLOCK_RATIOS), f),
             lambda f: words.ratios_paragraph(per_block(select(found.frame(BLOCK_RATIOS), f),
                                                        ["change_ratio", "branch_ratio"]))),
            ("Lesion study: one block deleted at test time", "lesion",
             lambda f: lesion(found.frame(LESION), f),
             lambda f: words.lesions_paragraph(per_block(select(found.frame(LESION), f),
                                                         ["test_err", "intact_test_err"]))),
        ]
        for heading, name, draw, describe in sections:
            blocks.append(("h", level + 1, prefix + heading))
            try:
                fig = draw(family)
            except NothingToPlot as why:
                blocks.append(("p", f"Figure skipped: {why}. " + (describe(family) if name == "init_runs" else "")))
                continue
            written += save(fig, out_dir, stem + name)
            blocks += [("img", f"{stem}{name}.png", prefix + heading), ("p", describe(family))]
    if found.no_weights:
        blocks.append(("p", f"{len(found.no_weights)} completed run(s) have no inspection files and no weights here "
                       f"({CHECKPOINT} is not kept when a run is copied or committed), so they cannot be inspected "
                       "here: " + ", ".join(f"`{n}`" for n in found.no_weights) + "."))
    if found.missing:
        blocks += [("p", "Completed runs without (some) inspection files, and why:"), ("ul", found.missing)]
    if found.problems:
        blocks += [("p", "Problems while reading the inspection files (skipped or repaired):"), ("ul", found.problems)]
    return blocks, written


def select_nets(frame: pd.DataFrame, family: str) -> set:
    return set(frame.loc[frame["family"] == family, "net"])


def _constructed_table(profile: pd.DataFrame, table: pd.DataFrame) -> tuple[list, list]:
    finding = words.find_constructions(profile, table)
    header = ["shallow → deeper", "test err. (%): shallow", "constructed", "from scratch", "from the shallow net",
              "train err. (%): shallow", "from scratch", "from the shallow net", "largest logit diff.",
              "train mode: shallow / constructed err. (%), logit deviation"]
    rows = [[f"{c.shallow} → {c.deep}" + (f" (n={c.runs})" if c.runs > 1 else ""), f"{c.shallow_test:.2f}",
             f"{c.constructed_test:.2f}", _num(c.scratch_test), _num(c.started_test), _num(c.shallow_final_train),
             _num(c.scratch_train), _num(c.started_train), f"{c.max_logit_diff:.1e}",
             f"{c.train_shallow:.2f} / {c.train_constructed:.2f}, {100 * c.deviation:.2f}% ({c.batches} batches)"]
            for c in finding.pairs]
    return header, rows


def _num(value) -> str:
    return "–" if value is None or np.isnan(value) else f"{value:.2f}"
