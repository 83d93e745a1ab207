"""A run's progress inside an epoch: a bar with images/s and ETA on a terminal, a line now and then in a log, nothing
of its own under a sweep (whose line advances instead)."""
import io
import logging
import re

from experiments.harness import progress
from tests.helpers.harness import run_inprocess


class Terminal(io.StringIO):
    def isatty(self):
        return True


def test_a_terminal_gets_a_bar_with_images_per_second_and_eta_redrawn_in_place(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    term = Terminal()
    p = progress.RunProgress("plain-56", 0, 1000, 100, batch_size=128, stream=term)
    clock[0] = 0.1
    p.step(1)
    assert term.getvalue() == ""  # not yet: at most every BAR_EVERY_S
    clock[0] = 25.0
    p.step(50)  # 50 steps of 128 images in 25 s: 256 img/s; 950 steps left at 0.5 s
    assert term.getvalue() == "\rplain-56  epoch 1/10 [##########..........] 50/100  256 img/s  ETA 7m55s\033[K"
    shown = term.getvalue()
    logging.getLogger("experiments").warning("SIGINT received")  # any log line: an epoch's, a signal's
    assert term.getvalue() == shown + "\r\033[K"  # the bar's line emptied first: the log line starts at the margin
    logging.getLogger("experiments").warning("again")
    assert term.getvalue() == shown + "\r\033[K"  # once


def test_a_log_gets_a_line_every_half_minute_and_a_sweep_only_its_own_line(monkeypatch, caplog):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    caplog.set_level(logging.INFO, logger="experiments")
    pipe = io.StringIO()  # not a terminal
    p = progress.RunProgress("plain-20", 200, 1000, 100, batch_size=128, stream=pipe)
    clock[0] = 29.0
    p.step(229)
    assert not caplog.messages
    clock[0] = 40.0
    p.step(240)  # resumed at 200: 40 steps in 40 s
    assert caplog.messages == ["plain-20  epoch 3/10  it 240/1000  40/100  128 img/s  ETA 12m40s"]
    assert pipe.getvalue() == ""  # no bar codes in a log
    monkeypatch.setattr(progress, "SWEEP", progress.SweepProgress())
    progress.SWEEP.start([1.0])
    progress.SWEEP.opened("plain-20", 1.0, 1000, 200)
    clock[0] = 100.0
    p.step(300 - 1)
    # the sweep's line speaks for its cells, mid-epoch too (at most every SweepProgress.EVERY_S)
    assert caplog.messages[1:] == ["sweep: 0/1 cells done, 1 running, 0 left; 30% of the work; ETA 7m05s"]


def test_a_short_runs_log_has_lines_with_a_rate_and_eta_inside_its_epochs(tiny, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(progress.RunProgress, "LOG_EVERY_S", 0.0)
    caplog.set_level(logging.INFO, logger="experiments")
    assert run_inprocess(tiny + ["depth=8"], tmp_path) == "completed"
    inside = [m for m in caplog.messages if " img/s " in m]
    # 4 steps an epoch, 2 epochs: steps 1-3 of each, the 4th ends the epoch and its line follows
    assert [re.search(r"  (\d/4)  ", m).group(1) for m in inside] == ["1/4", "2/4", "3/4"] * 2, inside
    assert all(re.search(r"[\d,]+ img/s  ETA \d+m\d\ds$", m) for m in inside), inside
