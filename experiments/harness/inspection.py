"""The after-training inspection's run side: a completed run's final weights measured (experiments.science.measures)
and the tables written into its directory, with run.json's `inspection` record. Called as a run closes
(experiments.harness.cell) and by `python -m experiments.inspect` for existing runs.
"""
from __future__ import annotations

import logging
import time

from experiments.harness import provenance
from experiments.science.measures import Inspection, inspect_net
from runformat import INSPECTION_TABLES

log = logging.getLogger("experiments")


def write(rd, found: Inspection, extra: dict, started: float) -> dict:
    """Write the tables into the run directory (removing any an earlier inspection left that this one did not
    write); -> run.json's `inspection` (runformat.InspectionInfo)."""
    for t in INSPECTION_TABLES:
        if t.file in found.tables:
            rd.write_table(t.file, found.tables[t.file], extra)
        else:
            (rd.path / t.file).unlink(missing_ok=True)
    files = [t.file for t in INSPECTION_TABLES if t.file in found.tables]
    return {"status": "done" if files else "not supported", "files": files, "notes": found.notes,
            "seconds": round(time.perf_counter() - started, 3), "timings": found.seconds, "at": provenance.now()}


def after_run(cell) -> None:
    """The end of a completed run (experiments.harness.cell.close_cell): inspect its final weights into its directory, with
    the run still locked; a failure is logged and recorded in run.json, never the run's."""
    if not cell.cfg.inspect.enabled:
        return
    started = time.perf_counter()
    try:
        found = inspect_net(cell.trainer.model, cell.cfg, cell.ds, cell.family)
        cell.info["inspection"] = info = write(cell.rd, found, cell.extra, started)
    except Exception as e:  # the run itself has completed: an inspection bug must not undo that
        log.exception("%s: the after-training inspection failed", cell.rd.path)
        cell.info["inspection"] = {"status": "failed", "notes": [f"{type(e).__name__}: {e}"],
                                   "seconds": round(time.perf_counter() - started, 3)}
        return
    log.info("%s: inspected in %.1f s: %s%s", cell.rd.path, info["seconds"], ", ".join(info["files"]) or "nothing",
             "".join(f"; {n}" for n in found.notes))
