"""Imported runs -> the report's section "Fully trained nets (published weights)" (issue 33).

A run whose run.json has `imported` (runformat.ImportedInfo) holds another project's trained weights, evaluated by
this harness on the run's data (`experiments.pretrained`): its metrics.csv is one evaluation, its layer_stats.csv
Figure 7 of those weights, its inspection files the why-experiments on them. A set of such runs has no curves to
draw, so the report leads with this section instead: where the weights come from and what they score here against
their own numbers, Figure 7 for every depth, then the inspection (the constructed deeper nets against the trained
ones, block ratios, lesions).
"""
from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from runformat import CONSTRUCTED, LAYER_STATS, PAPER_FAMILY

from . import imported_text, inspection, probes_figures, probes_text
from .figures import NothingToPlot, save, select
from .load import RunSet, read_meta, run_dirs
from .reference import data_name

HEADING = "Fully trained nets (published weights)"
COLUMNS = ["run", "net", "depth", "residual", "train_err", "test_err", "epoch", "epoch_evidence", "source_train_err",
           "source_test_err", "repository", "commit", "license", "trained_on", "data", "file"]


def scan(runs_dir, runs: RunSet) -> pd.DataFrame:
    """One row per readable run with `imported` in its run.json: its net, its errors here (metrics.csv's last row) and
    what run.json says of the weights."""
    found = runs.runs.set_index("run")
    rows = []
    for run_dir in run_dirs(runs_dir) if Path(runs_dir).is_dir() else []:
        meta = read_meta(run_dir, [])
        imp = meta.info.get("imported")
        if not isinstance(imp, dict) or run_dir.name not in found.index or pd.isna(found.loc[run_dir.name, "net"]):
            continue
        r = found.loc[run_dir.name]
        rows.append({"run": run_dir.name, "net": r["net"], "depth": meta.fallback["depth"],
                     "residual": bool(meta.fallback["residual"]), "train_err": float(r["train_err"]),
                     "test_err": float(r["test_err"]), "data": data_name(meta.columns),
                     **{k: imp.get(k) for k in COLUMNS if k in imp}})
    frame = pd.DataFrame(rows, columns=COLUMNS)
    return frame.sort_values(["residual", "depth", "run"], ignore_index=True)


def elsewhere(found: pd.DataFrame) -> bool:
    """The imported weights are evaluated here on other data than they were trained on (their source says which)."""
    return len(found) > 0 and any(str(t) != str(d) and not pd.isna(t) for t, d in zip(found["trained_on"], found["data"]))


def verdict(found: pd.DataFrame) -> str:
    return imported_text.say_imported_verdict(imported_text.find_imported(found))


def only_imported(found: pd.DataFrame, runs: RunSet) -> bool:
    """Every run with readable rows holds imported weights: nothing here was trained, so there are no curves."""
    return len(found) > 0 and set(found["run"]) == set(runs.frame["run"])


def report_blocks(runs_dir, out_dir, runs: RunSet, table: pd.DataFrame, found: pd.DataFrame) -> tuple[list, list[Path]]:
    """The section: what the weights are and score here, Figure 7 of every depth, the inspection beneath it."""
    blocks = [("h", 2, HEADING), ("p", imported_text.imported_paragraph(found)),
              ("table", ["net", "file", "epoch", "test err. here (%)", "theirs (%)", "difference",
                         "train err. here (%)", "theirs (%)"],
               [[r["net"], f"`{r['file']}`", _int(r["epoch"]), f"{r['test_err']:.2f}", _num(r["source_test_err"]),
                 _diff(r["test_err"], r["source_test_err"]), f"{r['train_err']:.2f}", _num(r["source_train_err"])]
                for _, r in found.iterrows()])]
    constructed = inspection.constructed_profile(select(inspection.scan_inspection(runs_dir, runs).frame(CONSTRUCTED),
                                                        PAPER_FAMILY))
    theirs = imported_text.their_constructions_paragraph(found, constructed)
    if theirs:
        blocks.append(("p", theirs))
    written: list = []
    heading = "Figure 7: standard deviations of the layer responses, every depth"
    blocks.append(("h", 3, heading))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the problems are listed in the report instead
        stats = probes_figures.scan_probes(runs_dir, LAYER_STATS, runs)
    try:
        depths = sorted(set(found["depth"].astype(int)))
        fig = probes_figures.fig7(stats.frame, PAPER_FAMILY, depths)
        written += save(fig, out_dir, "fig7")
        blocks += [("img", "fig7.png", heading),
                   ("p", probes_text.fig7_paragraph(probes_figures.final_profile(select(stats.frame, PAPER_FAMILY))))]
    except NothingToPlot as why:
        blocks.append(("p", f"Figure skipped: {why}."))
    more, files = inspection.report_blocks(runs_dir, out_dir, runs, table, level=3)
    return blocks + more, written + files


def _num(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{float(value):g}"


def _int(value) -> str:
    return "-" if value is None or pd.isna(value) else f"{int(value)}"


def _diff(ours, theirs) -> str:
    return "-" if theirs is None or pd.isna(theirs) else f"{float(ours) - float(theirs):+.2f}"
