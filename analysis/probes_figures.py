"""Probe files -> Figure 7 (std of the layer responses) and gradient norms by layer.

Each run directory may hold, beside metrics.csv and run.json:
- `layer_stats.csv`: per epoch and 3x3 layer, the std over the test set of the layer's output after BN
  and before ReLU/addition (the paper's "responses", §4.2 and Fig. 7); `layer` counts 3x3 layers in
  network order from 1 (`conv1`, then `stage1.0.conv1`, ...).
- `grad_norms.csv`: per epoch, the mean over sampled steps of the L2 norm of each 3x3 conv's weight
  gradient (`kind=weight`, `layer` as above) and of the gradient reaching each block's input
  (`kind=input`, `layer` = block index from 1).
Probes can be switched off, so either file may be absent: that is listed, never fatal. Like load.py,
a truncated or malformed file loses only its bad lines, and the run's identity comes from run.json
when the file lacks it.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from runformat import GRAD_NORMS, LAYER_STATS, PAPER_FAMILY, Table

from . import families, probes_text
from .figures import SERIES_STYLES, NothingToPlot, depth_colours, save, select
from .load import RunSet, has_files, name_nets, read_csv, read_meta, run_dirs, run_name, scan_runs

FIG7_DEPTHS = (20, 56, 110)  # the nets of the paper's Fig. 7
EDGE_LAYERS = 5  # first / last layers compared for vanishing gradients


@dataclass
class ProbeSet:
    frame: pd.DataFrame                                 # one row per (run, epoch, layer[, kind])
    problems: list[str] = field(default_factory=list)   # what was skipped or repaired, and why
    missing: list[str] = field(default_factory=list)    # runs without the file (probes off, or not yet)
    table: Table = LAYER_STATS

    @property
    def filename(self) -> str:
        return self.table.file


# ---- loading ------------------------------------------------------------------------------------

def load_layer_stats(runs_dir) -> pd.DataFrame:
    return scan_probes(runs_dir, LAYER_STATS).frame


def load_grad_norms(runs_dir) -> pd.DataFrame:
    return scan_probes(runs_dir, GRAD_NORMS).frame


def scan_probes(runs_dir, table: Table, runs: RunSet | None = None) -> ProbeSet:
    """`table`: runformat.LAYER_STATS or GRAD_NORMS. A run's status, whether it finished and its
    family's names are those load.py found (`runs`, read here when not given), so a probe figure
    counts the same runs as unfinished as the error figures do."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return ProbeSet(_empty(table), [f"{runs_dir} does not exist"], [], table)
    runs = scan_runs(runs_dir, warn=False) if runs is None else runs
    finished = dict(zip(runs.runs["run"], runs.runs["finished"].fillna(False).astype(bool)))
    frames, problems, missing = [], [], []
    for run_dir in run_dirs(runs_dir):
        name = run_name(run_dir)
        if not (run_dir / table.file).exists():
            if has_files(run_dir):  # a run that wrote nothing at all is load.py's to list
                missing.append(name)
            continue
        try:
            rows, run_problems = read_probe(run_dir, table)
        except Exception as err:  # as load.scan_runs: whatever breaks one run costs only that run
            rows, run_problems = None, [f"{table.file} not read ({err.__class__.__name__})"]
        problems += [f"{name}: {p}" for p in run_problems]
        if rows is not None and len(rows):
            frames.append(rows.assign(finished=finished.get(name, False)))
    for p in problems:
        warnings.warn(p, stacklevel=2)
    if missing:
        warnings.warn(f"{table.file} missing in {len(missing)} run(s): {', '.join(missing)}", stacklevel=2)
    frame = name_nets(pd.concat(frames, ignore_index=True), runs.families, runs.variants) if frames else _empty(table)
    return ProbeSet(frame, problems, missing, table)


def read_probe(run_dir: Path, table: Table):
    """-> (rows with the run's status, or None; list of problems). `finished`, `family` and `net` are
    the scan's to add (they depend on the other runs)."""
    run_dir, problems = Path(run_dir), []
    # run.json's own problems are already listed by load.py: not repeated for each probe file
    meta = read_meta(run_dir, [])
    rows = read_csv(run_dir, table, meta.fallback, problems)
    if rows is None:
        return None, problems
    by = [k for k in table.key if k not in ("epoch", "layer")]  # grad_norms.csv: each `kind` apart
    rows = _drop_partial_epochs(rows, by, table.file, problems)
    if rows.empty:
        problems.append(f"{table.file} has no complete rows")
        return None, problems
    rows["layer"] = rows["layer"].astype(int)
    rows.insert(0, "run", run_name(run_dir))
    rows["status"] = meta.status
    return rows.sort_values(list(table.key), kind="stable").reset_index(drop=True), problems


def _drop_partial_epochs(rows: pd.DataFrame, by: list, filename: str, problems: list) -> pd.DataFrame:
    """An epoch with fewer layers than the run's others was cut short: drawing it would shorten the
    net, so it goes (and is listed)."""
    if rows.empty:
        return rows
    counts = rows.groupby([*by, "epoch"])["layer"].transform("size")
    full = counts.groupby([rows[c] for c in by]).transform("max") if by else counts.max()
    partial = counts < full
    if partial.any():
        epochs = sorted(set(rows.loc[partial, "epoch"].astype(int)))
        problems.append(f"{filename}: epoch(s) {', '.join(map(str, epochs))} incomplete "
                        "(fewer layers than the other epochs), dropped")
        rows = rows[~partial].copy()
    return rows


def _empty(table: Table) -> pd.DataFrame:
    return pd.DataFrame(columns=["run", *table.columns, "status", "finished", "family", "family_label",
                                 "family_title", "net"])


# ---- per-net profiles ---------------------------------------------------------------------------

def profile(frame: pd.DataFrame, value: str, when: str = "last") -> pd.DataFrame:
    """One value per (net, layer) at each run's first or last logged epoch, mean over the net's
    completed runs (over its unfinished ones when it has no completed run, flagged `unfinished`)."""
    columns = ["family", "family_label", "family_title", "net", "depth", "residual", "layer", "value",
               "epoch", "runs", "unfinished"]
    if frame.empty:
        return pd.DataFrame(columns=columns)
    pick = frame.groupby("run")["epoch"].transform("max" if when == "last" else "min")
    rows = frame[frame["epoch"] == pick]
    done = rows.groupby("net")["finished"].transform(lambda f: f.astype(bool).any())
    rows = rows[rows["finished"].astype(bool) | ~done]
    out = rows.groupby(["family", "family_label", "family_title", "net", "depth", "residual", "layer"],
                       as_index=False).agg(
        value=(value, "mean"), epoch=("epoch", "max"), runs=("run", "nunique"))
    unfinished = rows.groupby("net")["finished"].agg(lambda f: not f.astype(bool).any())
    out["unfinished"] = out["net"].map(unfinished).astype(bool)
    return out[columns].sort_values(["residual", "depth", "net", "layer"], kind="stable",
                                    ignore_index=True)


def final_profile(stats: pd.DataFrame) -> pd.DataFrame:
    """Fig. 7's data: response std per layer at the final epoch."""
    return profile(stats, "std", "last")


def gradient_ratios(grads: pd.DataFrame, kind: str = "weight", edge: int = EDGE_LAYERS) -> pd.DataFrame:
    """Per net: mean norm of its first `edge` layers over that of its last `edge` (`early_ratio` at
    each run's first epoch, `late_ratio` at its last). Vanishing gradients would make this << 1."""
    columns = ["family", "family_label", "family_title", "net", "depth", "residual", "kind", "edge",
               "layers", "unfinished", "early_epoch", "early_ratio", "late_epoch", "late_ratio"]
    rows = grads[grads["kind"] == kind] if len(grads) else grads
    early, late = (profile(rows, "norm", when) for when in ("first", "last"))
    out = []
    for net, e in early.groupby("net", sort=False):
        l = late[late["net"] == net]
        k = min(edge, len(e) // 2, len(l) // 2)
        if k == 0:
            continue
        e, l = e.sort_values("layer")["value"], l.sort_values("layer")["value"]
        first = early[early["net"] == net].iloc[0]
        out.append({"family": first["family"], "family_label": first["family_label"],
                    "family_title": first["family_title"], "net": net, "depth": int(first["depth"]),
                    "residual": bool(first["residual"]), "kind": kind, "edge": k,
                    "layers": len(l), "unfinished": bool(first["unfinished"]),
                    "early_epoch": int(early.loc[early["net"] == net, "epoch"].max()),
                    "early_ratio": e.head(k).mean() / e.tail(k).mean(),
                    "late_epoch": int(late.loc[late["net"] == net, "epoch"].max()),
                    "late_ratio": l.head(k).mean() / l.tail(k).mean()})
    return pd.DataFrame(out, columns=columns).sort_values(["residual", "depth"], ignore_index=True)


# ---- figures ------------------------------------------------------------------------------------

def _chosen(frame: pd.DataFrame, family: str, depths) -> pd.DataFrame:
    rows = select(frame, family) if len(frame) else frame
    if depths is None:  # the paper's Fig. 7 nets when any is present, else every depth
        depths = FIG7_DEPTHS if family == PAPER_FAMILY else ()
    wanted = rows[rows["depth"].isin(depths)] if len(rows) else rows
    return wanted if len(wanted) else rows


def _style(p: pd.DataFrame, colours: dict) -> dict:
    # colour by depth as in fig6; plain dashed, ResNet solid
    residual = bool(p["residual"].iloc[0])
    unfinished = bool(p["unfinished"].iloc[0])
    return {"color": colours[int(p["depth"].iloc[0])], "linestyle": SERIES_STYLES[residual][0],
            "linewidth": 1.8 if residual else 1.4, "alpha": 0.5 if unfinished else 1.0,
            "label": p["net"].iloc[0] + (" (unfinished)" if unfinished else "")}


def _by_net(prof: pd.DataFrame) -> list[pd.DataFrame]:
    return [g.sort_values("layer") for _, g in
            sorted(prof.groupby("net"), key=lambda kv: (bool(kv[1]["residual"].iloc[0]),
                                                       int(kv[1]["depth"].iloc[0]), kv[0]))]


def _epoch_note(prof: pd.DataFrame, when: str) -> str:
    """'epoch 1, the first', or 'epochs 3-20, the last of each run' when runs stopped at different ones."""
    epochs = sorted(set(prof["epoch"].astype(int)))
    if len(epochs) == 1:
        return f"epoch {epochs[0]}, the {when}"
    return f"epochs {epochs[0]}-{epochs[-1]}, the {when} of each run"


def _notes(prof: pd.DataFrame) -> list[str]:
    notes = []
    if (prof["runs"] > 1).any():
        notes.append("mean over seeds")
    if prof["unfinished"].any():
        notes.append("faint: unfinished runs")
    return notes


def fig7(stats: pd.DataFrame, family: str = PAPER_FAMILY, depths=None) -> Figure:
    rows = _chosen(stats, family, depths)
    if rows.empty:
        raise NothingToPlot(f"Figure 7: no {LAYER_STATS.file} rows for "
                            f"{families.in_frame(stats, family).title}")
    prof = final_profile(rows)
    colours = depth_colours(prof["depth"].unique())
    fig = Figure(figsize=(9, 7.5), layout="constrained")
    top, bottom = fig.subplots(2, 1)
    for p in _by_net(prof):
        style = _style(p, colours)
        top.plot(p["layer"], p["value"], **style)
        ranked = np.sort(p["value"].to_numpy())[::-1]  # Fig. 7 bottom: descending
        bottom.plot(np.arange(1, len(ranked) + 1), ranked, **style)
    values = prof["value"][prof["value"] > 0]
    log = len(values) and values.max() / values.min() > 30  # one exploding net would flatten the rest
    for ax, xlabel in [(top, "layer index (original)"), (bottom, "layer index (sorted by magnitude)")]:
        ax.set_xlabel(xlabel)
        ax.set_ylabel("std")
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
    top.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    title = ("Figure 7 (He et al. 2016) on CIFAR-10: std of the 3x3 layer responses "
             "(after BN, before ReLU/addition)")
    if family != PAPER_FAMILY:
        title = f"{families.in_frame(rows, family).title}: Figure-7 style std of the 3x3 layer responses"
    notes = [_epoch_note(prof, "last"), *_notes(prof)] + (["log scale: values span > 30x"] if log else [])
    fig.suptitle(title + "\n(" + "; ".join(notes) + ")")
    return fig


def gradients(grads: pd.DataFrame, family: str = PAPER_FAMILY, depths=None) -> Figure:
    """Rows: 3x3 weight gradients, then block-input gradients (when logged); columns: first and last
    epoch. Log y: vanishing gradients would show as orders of magnitude between the ends."""
    rows = _chosen(grads, family, depths)
    if rows.empty:
        raise NothingToPlot(f"gradient norms: no {GRAD_NORMS.file} rows for "
                            f"{families.in_frame(grads, family).title}")
    kinds = [k for k in ("weight", "input") if (rows["kind"] == k).any()]
    colours = depth_colours(rows["depth"].unique())
    fig = Figure(figsize=(12, 4.4 * len(kinds)), layout="constrained")
    axes = fig.subplots(len(kinds), 2, sharey="row", squeeze=False)
    notes = []
    for r, kind in enumerate(kinds):
        for c, when in enumerate(("first", "last")):
            prof = profile(rows[rows["kind"] == kind], "norm", when)
            ax = axes[r][c]
            for p in _by_net(prof):
                ax.plot(p["layer"], p["value"], **_style(p, colours))
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            what = "3x3 conv weight gradients" if kind == "weight" else "gradients at block inputs"
            ax.set_title(f"{what}\n{'early' if when == 'first' else 'late'}: {_epoch_note(prof, when)}")
            ax.set_xlabel("layer index" if kind == "weight" else "block index")
            if c == 0:
                ax.set_ylabel("weight-gradient L2 norm" if kind == "weight" else "input-gradient L2 norm")
            notes += _notes(prof)
        axes[r][1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    title = "Gradient norms by layer, early vs late in training: plain (dashed) vs ResNet (solid)"
    if family != PAPER_FAMILY:
        fam = families.in_frame(rows, family)
        title = (f"{fam.title}: gradient norms by layer, early vs late: "
                 f"{fam.plural(False)} dashed, {fam.plural(True)} solid")
    notes = list(dict.fromkeys(notes + ["mean over the sampled steps of each epoch"]))
    fig.suptitle(title + "\n(" + "; ".join(notes) + ")")
    return fig


# ---- report -------------------------------------------------------------------------------------

def report_blocks(runs_dir, out_dir, runs: RunSet | None = None) -> tuple[list, list[Path]]:
    """The report's Figure 7 and gradient sections: -> (blocks, files written). `runs`: load.py's scan
    of the same directory, when the caller has it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the problems are listed in the report instead
        runs = scan_runs(runs_dir, warn=False) if runs is None else runs
        stats, grads = scan_probes(runs_dir, LAYER_STATS, runs), scan_probes(runs_dir, GRAD_NORMS, runs)
    names = list(dict.fromkeys([*stats.frame["family"], *grads.frame["family"]]))
    names.sort(key=lambda f: f != PAPER_FAMILY)  # the paper's nets first
    blocks, written = [], []
    sections = [("Figure 7: standard deviations of the layer responses", "fig7", stats, fig7,
                 lambda f: probes_text.fig7_paragraph(final_profile(select(stats.frame, f)))),
                ("Gradient norms by layer, early vs late in training", "gradients", grads, gradients,
                 lambda f: probes_text.gradients_paragraph(
                     gradient_ratios(select(grads.frame, f)),
                     gradient_ratios(select(grads.frame, f), kind="input")))]
    for heading, stem, probes, draw, describe in sections:
        for family in names or [PAPER_FAMILY]:
            title = families.in_frame(probes.frame, family).title
            name = heading if family == PAPER_FAMILY else f"{title}: {heading}"
            blocks.append(("h", 2, name))
            if probes.frame.empty:
                blocks.append(("p", f"Figure skipped: no run has a readable `{probes.filename}` "
                                    "(probes switched off, or not written yet)."))
                break
            try:
                fig = draw(probes.frame, family)
            except NothingToPlot as why:
                blocks.append(("p", f"Figure skipped: {why}."))
                continue
            fam_stem = stem if family == PAPER_FAMILY else f"{family}_{stem}"
            written += save(fig, out_dir, fam_stem)
            blocks += [("img", f"{fam_stem}.png", name), ("p", describe(family))]
        if probes.missing:
            blocks.append(("p", f"`{probes.filename}` missing in {len(probes.missing)} run(s) "
                                "(probes off, or the run has not finished an epoch): "
                           + ", ".join(f"`{m}`" for m in probes.missing) + "."))
        if probes.problems:
            blocks += [("p", f"Problems while reading `{probes.filename}` (skipped or repaired):"),
                       ("ul", probes.problems)]
    return blocks, written
