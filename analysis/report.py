"""`python -m analysis.report --runs DIR --out DIR`: figures, Table 6, report.md and index.html.

Partial results are the normal case while a sweep runs, so nothing here assumes a complete grid:
absent nets skip their figure with a note, and every missing, unfinished or unreadable run is
listed in the report. `--reference` (default `auto`) draws the matching reference runs beneath the
user's (reference.py has the rule). The outputs replace the old ones only once all are written
(outputs.staged): a write that fails (a full disk, a read-only or vanished --out) or a SIGTERM/Ctrl-C
leaves the previous outputs as they were, with one line saying why.
"""
from __future__ import annotations

import argparse
import signal
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import matplotlib
import pandas as pd

from runformat import PAPER_FAMILY

from . import degradation_text, figures, imported, inspection, outputs, paper_text, probes_figures, reference, text
from .inputs import shown
from .load import RunSet, scan_runs
from .provenance import header_line, machine_lines
from .render import to_html, to_markdown
from .tables import table6, table6_blocks, write_table6

TITLE = "He et al. 2016 §4.2 on CIFAR-10: plain vs residual nets (the degradation problem)"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.report",
        description="Read every run under --runs (metrics.csv + run.json per run directory) and "
                    "write the paper's figures, Table 6, report.md and index.html into --out.")
    parser.add_argument("--runs", required=True, help="directory holding one sub-directory per run")
    parser.add_argument("--out", required=True, help="directory for figures, tables and the report")
    parser.add_argument("--depths", default="20,32,44,56",
                        help="depths expected for plain and ResNet (missing ones are listed)")
    parser.add_argument("--reference", default=reference.AUTO, metavar="DIR|auto|none",
                        help="runs to draw dotted beneath these (the layout of --runs); `auto` (default): the "
                             "set under results/reference/ with these runs' protocol, same data preferred; "
                             "`none`: no overlay")
    args = parser.parse_args(argv)
    for stream in (sys.stdout, sys.stderr):  # under LC_ALL=C a name or title the terminal cannot show is escaped
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    runs_dir, out_dir = Path(args.runs), Path(args.out)
    if not runs_dir.is_dir():
        why = "not a directory" if runs_dir.exists() else "directory does not exist"
        print(f"error: no runs found under {shown(runs_dir)} ({why}): run `make sweep` first", file=sys.stderr)
        return 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the problems are listed in the report instead
        runset = scan_runs(runs_dir)
    if runset.frame.empty:
        print(f"error: {_nothing_readable(runset, runs_dir)}", file=sys.stderr)
        return 2
    depths = tuple(int(d) for d in args.depths.split(",") if d.strip())
    try:  # before anything is written: a --reference that cannot serve leaves --out as it was
        choice = reference.choose(args.reference, runset.frame, runs_dir)
    except reference.ReferenceError as why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    try:
        with _stopped_by(signal.SIGTERM):
            written = build_report(runset, runs_dir, out_dir, depths, choice)
    except outputs.OutputError as err:
        kept = f"; the previous outputs in {shown(out_dir)} are as they were" if out_dir.is_dir() else ""
        print(f"error: cannot write {shown(err.path)}: {err.strerror}: {err.fix}{kept}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as stop:  # Ctrl-C, or SIGTERM (Stopped)
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        print(f"stopped by {signal.Signals(signum).name}: nothing written, the previous outputs in {shown(out_dir)} "
              "are as they were", file=sys.stderr)
        return 128 + signum
    for problem in runset.problems:
        print(f"warning: {problem}", file=sys.stderr)
    if choice.note:
        print(f"note: {choice.note}", file=sys.stderr)
    if choice.reference is not None:
        print(f"reference (dotted): {shown(choice.reference.runs_dir)}")
    print("wrote:")
    for path in written:
        print(f"  {shown(path)}")
    return 0


class Stopped(KeyboardInterrupt):
    """A SIGTERM while the outputs are written: raised where the process is, so that the staging folder goes."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _stop(signum, frame):
    raise Stopped(signum)


@contextmanager
def _stopped_by(signum):
    """Within it, `signum` raises Stopped (a Ctrl-C raises KeyboardInterrupt as always); the old handler after."""
    try:
        old = signal.signal(signum, _stop)
    except ValueError:  # not the main thread: signals are not ours to catch there
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signum, old)


def _nothing_readable(runset: RunSet, runs_dir: Path) -> str:
    """One line: no run directory at all (then a sweep is what is missing), or why none could be read."""
    runs = runset.runs
    if runs.empty:
        return f"no runs found under {shown(runs_dir)} (no run directories): run `make sweep` first"
    reasons = "; ".join(f"{r['run']}: {r['unreadable'] or r['problem']}" for _, r in runs.iterrows())
    return f"none of the {len(runs)} run directories under {shown(runs_dir)} is readable: {reasons}"


def build_report(runset: RunSet, runs_dir: Path, out_dir: Path, depths=text.EXPECTED_DEPTHS,
                 choice: reference.Choice | None = None) -> list[Path]:
    """Every output into `out_dir`, all at once (outputs.staged) -> their paths. Raises outputs.OutputError."""
    # text from run files in a figure (a family's title) stays text: `$...$` is not mathtext
    with outputs.staged(out_dir) as stage, matplotlib.rc_context({"text.parse_math": False}):
        written = _write_report(runset, runs_dir, stage, depths, choice)
    return [Path(out_dir) / p.name for p in written]


def _write_report(runset: RunSet, runs_dir: Path, out_dir: Path, depths, choice: reference.Choice | None) -> list:
    choice = choice or reference.Choice(None)
    frame, ref = runset.frame, choice.reference
    table = table6(frame)
    written = write_table6(table, frame, out_dir)
    families = list(dict.fromkeys(frame["family"]))
    paper_present = PAPER_FAMILY in families and not figures.select(frame, PAPER_FAMILY).empty
    blocks = [("h", 1, TITLE)]
    weights = imported.scan(runs_dir, runset)
    # imported weights only (experiments.pretrained): one evaluation a run, no curves; their section leads, with Figure
    # 7 and the inspection in it
    fully_trained = imported.only_imported(weights, runset)
    if fully_trained and imported.elsewhere(weights):  # evaluated on other data: no verdict from those numbers
        blocks.append(("p", imported.verdict(weights)))
    elif paper_present:
        blocks.append(("p", degradation_text.verdict(table)))
    else:
        blocks.append(("p", "**Verdict on the paper's nets: cannot judge**: no run of them "
                       f"(`{PAPER_FAMILY}`); only {', '.join(families)}."))
    for family in families:
        if family != PAPER_FAMILY:
            blocks.append(("p", degradation_text.family_verdict(table, family)))
    blocks.append(("p", _status_line(runset, runs_dir)))
    if choice.note:
        blocks.append(("p", choice.note))
    if fully_trained:
        section, files = imported.report_blocks(runs_dir, out_dir, runset, table, weights)
        blocks += section
        written += files

    sections = []
    if paper_present and not fully_trained:
        sections += [
            (figures.fig1_heading(frame), "fig1_plain",
             lambda: figures.fig1_plain(frame, reference=ref), lambda: degradation_text.fig1_paragraph(table, frame)),
            ("Figure 6: training curves, plain vs ResNet", "fig6",
             lambda: figures.fig6(frame, reference=ref), lambda: degradation_text.fig6_paragraph(table)),
        ]
    if paper_present:
        sections.append(("Final error against depth", "degradation", lambda: figures.degradation(frame, reference=ref),
                         lambda: degradation_text.degradation_paragraph(table, listed=not fully_trained)))
    for family in families:
        if family == PAPER_FAMILY:
            continue
        name = runset.families[family].title
        sections += [
            (f"{name}: Figure-6 style curves", f"{family}_fig6",
             lambda f=family: figures.fig6(frame, f, reference=ref),
             lambda f=family: degradation_text.fig6_paragraph(table, f)),
            (f"{name}: final error against depth", f"{family}_degradation",
             lambda f=family: figures.degradation(frame, f, reference=ref),
             lambda f=family: degradation_text.degradation_paragraph(table, f, listed=True)),
        ]
    for heading, stem, draw, describe in sections:
        blocks.append(("h", 2, heading))
        try:
            fig = draw()
        except figures.NothingToPlot as why:
            blocks.append(("p", f"Figure skipped: {why}."))
            continue
        written += figures.save(fig, out_dir, stem)
        blocks += [("img", f"{stem}.png", heading), ("p", describe())]

    blocks += table6_blocks(table, frame, level=2)
    if paper_present:
        blocks.append(("p", paper_text.table_paragraph(table)))
    blocks += reference.report_blocks(table, frame, ref)
    if not fully_trained:  # else in their section above
        probe_blocks, probe_files = probes_figures.report_blocks(runs_dir, out_dir, runset)  # Fig. 7, gradients
        blocks += probe_blocks
        written += probe_files
        inspection_blocks, inspection_files = inspection.report_blocks(runs_dir, out_dir, runset, table)  # issue 12
        blocks += inspection_blocks
        written += inspection_files
    blocks += _runs_blocks(runset, table, depths if paper_present else ())
    blocks += [("h", 2, "What produced these results"), ("p", header_line(frame)),
               ("ul", machine_lines(frame))]

    md_path, html_path = out_dir / "report.md", out_dir / "index.html"
    outputs.write_text(md_path, to_markdown(blocks))
    outputs.write_text(html_path, to_html(blocks, TITLE))
    return written + [md_path, html_path]


def _status_line(runset: RunSet, runs_dir: Path) -> str:
    counts = runset.runs["status"].value_counts()
    listed = ", ".join(f"{n} {status}" for status, n in counts.items())
    text_ = (f"{len(runset.runs)} run directories under `{shown(runs_dir)}` ({listed}); "
             f"{runset.frame['run'].nunique()} with readable epoch rows. Final errors are those of "
             "the last logged epoch; figures average completed runs and draw unfinished ones faint.")
    short = int(runset.runs["stopped_short"].fillna(False).astype(bool).sum())
    if short:
        text_ += (f" {short} run(s) marked completed stop short of their protocol's iterations and "
                  "count as unfinished.")
    frame = runset.frame
    option_b = sorted(set(frame.loc[(frame["family"] == PAPER_FAMILY)
                                    & frame["net"].astype(str).str.endswith("(B)"), "net"]))
    if option_b:
        text_ += (f" Option-B ResNets ({', '.join(option_b)}) are in the table only: the figures "
                  "show option A, as the paper's CIFAR-10 figures do.")
    return text_


def _runs_blocks(runset: RunSet, table: pd.DataFrame, depths) -> list:
    runs = runset.runs
    blocks = [("h", 2, "Runs: missing, unfinished and unreadable")]
    missing = degradation_text.missing_cells(table, depths) if depths else []
    blocks.append(("p", ("Missing cells (no run at all): " + ", ".join(missing) + ".") if missing
                   else "Missing cells: none of the expected nets is missing." if depths
                   else "Missing cells: not checked (no run of the paper's family)."))
    unfinished = runs[~runs["finished"].fillna(False).astype(bool)]
    blocks.append(("p", "Unfinished runs (drawn faint, left out of the means when the net has a "
                   "completed run): " + (", ".join(
                       f"`{r['run']}` ({_why_unfinished(r)})" for _, r in unfinished.iterrows())
                       if len(unfinished) else "none") + "."))
    notes = [f"`{r['run']}`: {n}" for _, r in runs.iterrows() for n in (r["notes"] if isinstance(r["notes"], list) else [])]
    if notes:
        blocks += [("p", "Notes the runs recorded (run.json):"), ("ul", notes)]
    blocks.append(("p", "Problems while reading (skipped or repaired):"))
    blocks.append(("ul", runset.problems or ["none"]))
    rows = [[f"`{r['run']}`", _text(r["net"]), _int_text(r["seed"]), r["status"],
             _int_text(r["epochs"]), _int_text(r["iteration"]), _num(r["train_err"]),
             _num(r["test_err"]), _text(r["problem"]) or "-"] for _, r in runs.iterrows()]
    blocks.append(("table", ["run", "net", "seed", "status", "epochs", "last iteration",
                             "final train err. (%)", "final test err. (%)", "problems"], rows))
    return blocks


def _why_unfinished(run) -> str:
    if run["stopped_short"]:
        return (f"run.json says completed but metrics.csv stops at iteration {_int_text(run['iteration'])} "
                f"of {_int_text(run['iterations'])}: counted as unfinished")
    message = f": {run['message']}" if isinstance(run["message"], str) and run["message"] else ""
    return f"{run['status']}, {_int_text(run['epochs'])} epochs{message}"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _int_text(value) -> str:
    try:
        return f"{int(value)}"
    except (TypeError, ValueError):
        return "-"


def _num(value) -> str:
    try:
        return "-" if pd.isna(float(value)) else f"{float(value):.2f}"
    except (TypeError, ValueError):
        return "-"


if __name__ == "__main__":
    sys.exit(main())
