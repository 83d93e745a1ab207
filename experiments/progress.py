"""What a run prints: one line per epoch with its ETA, quiet enough for a log file."""
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
        if not self.enabled:
            return
        rate = (time.perf_counter() - self.start_time) / max(row["iteration"] - self.start_iter, 1)
        log.info("%s  epoch %d/%d  it %d/%d  lr %.3g  loss %.3f  train %.2f%%  test %.2f%%%s  %.1fs  ETA %s",
                 self.name, row["epoch"], -(-self.total // self.spe), row["iteration"], self.total, row["lr"],
                 row["train_loss"], row["train_err"], row["test_err"],
                 f"  val {row['val_err']:.2f}%" if row["val_err"] is not None else "",
                 row["epoch_time_s"], fmt_duration(rate * (self.total - row["iteration"])))
