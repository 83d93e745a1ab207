"""What a run prints: inside an epoch a bar (images/s, ETA) on a terminal or a line every half minute in a log, one line
per epoch with its ETA; and, in a sweep, where the sweep stands as a whole instead of each run's bar."""
from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("experiments")


def fmt_duration(s: float) -> str:
    """`4m05s`, `28h22m`: the one way this harness writes a duration."""
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


class RunProgress:
    """One run's progress: `step` after every training step (a bar on a terminal, else a log line now and then), and
    one line per epoch: errors, lr, seconds. Rates and ETAs are from this process's steps since the run (re)started,
    epoch ends included. Under a sweep (`SWEEP.active`) only the epoch lines: the sweep's own line says the rest."""

    BAR_EVERY_S = 0.25  # a terminal's bar is redrawn at most this often
    LOG_EVERY_S = 30.0  # not a terminal (a log file, a pipe): a line at most this often, and none in the first 30 s

    def __init__(self, name: str, iteration: int, total: int, steps_per_epoch: int, enabled: bool = True,
                 batch_size: int = 0, stream=None):
        self.name, self.total, self.spe, self.enabled, self.batch = name, total, steps_per_epoch, enabled, batch_size
        self.stream = stream or sys.stdout
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start_time, self.start_iter = time.perf_counter(), iteration
        self.shown, self.bar_on = self.start_time, False

    def _eta(self, iteration: int, now: float) -> str:
        done = iteration - self.start_iter
        return fmt_duration((now - self.start_time) / done * (self.total - iteration)) if done > 0 else "-"

    def step(self, iteration: int) -> None:
        SWEEP.advanced(self.name, iteration)
        if not self.enabled or SWEEP.active:
            return
        now = time.perf_counter()
        if now - self.shown < (self.BAR_EVERY_S if self.tty else self.LOG_EVERY_S):
            return
        self.shown = now
        epoch, k = divmod(iteration, self.spe)
        if k == 0:  # the epoch just ended: its line says it
            return
        done = k / self.spe
        rate = self.batch * (iteration - self.start_iter) / (now - self.start_time)
        where = f"epoch {epoch + 1}/{-(-self.total // self.spe)}"
        tail = f"{k}/{self.spe}  {rate:,.0f} img/s  ETA {self._eta(iteration, now)}"
        if self.tty:
            bar = "#" * int(20 * done) + "." * (20 - int(20 * done))
            self.stream.write(f"\r{self.name}  {where} [{bar}] {tail}\033[K")
            self.stream.flush()
            self.bar_on = True
            _BAR[0] = self
        else:
            log.info("%s  %s  it %d/%d  %s", self.name, where, iteration, self.total, tail)

    def clear(self) -> None:
        """The bar's line emptied, so that the next log line starts at the margin."""
        if self.bar_on:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self.bar_on = False

    def epoch(self, row: dict) -> None:
        SWEEP.advanced(self.name, row["iteration"])
        if not self.enabled:
            return
        log.info("%s  epoch %d/%d  it %d/%d  lr %.3g  loss %.3f  train %.2f%%  test %.2f%%%s  %.1fs  ETA %s",
                 self.name, row["epoch"], -(-self.total // self.spe), row["iteration"], self.total, row["lr"],
                 row["train_loss"], row["train_err"], row["test_err"],
                 f"  val {row['val_err']:.2f}%" if row["val_err"] is not None else "",
                 row["epoch_time_s"], self._eta(row["iteration"], time.perf_counter()))


_BAR: list = [None]  # the RunProgress whose bar is on the terminal's last line


class _ClearBar(logging.Filter):
    """Every log line (an epoch's, a signal's warning, the run's end) starts at the margin, not after a bar."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _BAR[0] is not None:
            _BAR[0].clear()
            _BAR[0] = None
        return True


log.addFilter(_ClearBar())


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
