"""What a run prints: one line per epoch with its ETA, quiet enough for a log file; and, in a sweep, where the
sweep stands as a whole."""
from __future__ import annotations

import logging
import time

log = logging.getLogger("experiments")


def fmt_duration(s: float) -> str:
    """`4m05s`, `28h22m`: the one way this harness writes a duration."""
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class RunProgress:
    """One line per epoch: errors, lr, seconds, and the ETA of this run from its rate since it (re)started."""

    def __init__(self, name: str, iteration: int, total: int, steps_per_epoch: int, enabled: bool = True):
        self.name, self.total, self.spe, self.enabled = name, total, steps_per_epoch, enabled
        self.start_time, self.start_iter = time.perf_counter(), iteration

    def epoch(self, row: dict) -> None:
        SWEEP.advanced(self.name, row["iteration"])
        if not self.enabled:
            return
        rate = (time.perf_counter() - self.start_time) / max(row["iteration"] - self.start_iter, 1)
        log.info("%s  epoch %d/%d  it %d/%d  lr %.3g  loss %.3f  train %.2f%%  test %.2f%%%s  %.1fs  ETA %s",
                 self.name, row["epoch"], -(-self.total // self.spe), row["iteration"], self.total, row["lr"],
                 row["train_loss"], row["train_err"], row["test_err"],
                 f"  val {row['val_err']:.2f}%" if row["val_err"] is not None else "",
                 row["epoch_time_s"], fmt_duration(rate * (self.total - row["iteration"])))


class SweepProgress:
    """Where a sweep stands as a whole: cells done / running / left, and its ETA from the rate so far.

    A cell's work is its CPU-time estimate (iterations x weighted layers x its family's cost per layer, see
    experiments.harness.sweep.cell_cost): only its proportions matter, so the ETA divides the work left by the rate
    measured in this process. One per process (`SWEEP`), started by the entry point for a sweep; the runner
    and each run's progress report to it, for the basic and the concurrent launcher alike.
    """

    EVERY_S = 60.0  # a sweep line at most this often (and whenever a cell ends)

    def __init__(self):
        self.active = False

    def start(self, costs: list) -> None:
        self.active, self.planned = True, list(costs)
        # key -> [cost, iterations, start iteration, current iteration, closed, ended (closed and nothing left to do)]
        self.cells: dict = {}
        self.t0 = self.last = time.perf_counter()

    def opened(self, key: str, cost: float, iterations: int, iteration: int, finished: bool = False) -> None:
        if self.active:
            self.cells[key] = [cost, iterations, iteration, iterations if finished else iteration, finished, finished]

    def advanced(self, key: str, iteration: int) -> None:
        if self.active and key in self.cells:
            self.cells[key][3] = iteration
            if time.perf_counter() - self.last >= self.EVERY_S:
                self.report()

    def closed(self, key: str, ended: bool = True) -> None:
        """`ended`: the cell has nothing left to do (completed, diverged or failed), not interrupted to resume later:
        its whole cost is done work, wherever its iterations stopped."""
        if self.active and key in self.cells:
            self.cells[key][4] = True
            self.cells[key][5] = ended
            self.report()

    def line(self) -> str:
        done = sum(c[4] for c in self.cells.values())
        running = len(self.cells) - done
        left = max(len(self.planned) - len(self.cells), 0)
        # the plan's cells, priced as they are opened (same function): the unopened ones are what is left of it
        total = max(sum(self.planned), sum(c[0] for c in self.cells.values()))
        finished_work = sum(c[0] if c[5] else c[0] * c[3] / c[1] for c in self.cells.values())
        here = sum(c[0] * (c[3] - c[2]) / c[1] for c in self.cells.values())  # trained by this process
        elapsed = time.perf_counter() - self.t0
        eta = (f"ETA {fmt_duration((total - finished_work) * elapsed / here)}" if here > 0 and total > finished_work
               else "ETA after the first epoch" if total > finished_work else "done")
        share = f"{100 * finished_work / total:.0f}%" if total else "-"
        return f"sweep: {done}/{len(self.planned)} cells done, {running} running, {left} left; {share} of the work; {eta}"

    def report(self) -> None:
        self.last = time.perf_counter()
        log.info("%s", self.line())


SWEEP = SweepProgress()
