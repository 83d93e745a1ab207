"""Jobs in, results out: open each job's cell, train the cells that can share a stream together, close each
with its status. Both ways of running use it: `experiments.run` (one job per process, or per sweep cell with
Hydra's basic launcher) and the concurrent launcher (every cell of a sweep in one process), so a bad cell,
a signal or a crash is handled the same way whichever ran it.
"""
from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Optional

from experiments.data.cache import DataCache
from experiments.data.loader import TrainStream, make_normalizer
from experiments.errors import UserError
from experiments.harness import provenance
from experiments.harness.cell import Job, Result, abandon, close_cell, finish, open_cell, rebuild, use_choice
from experiments.harness.compose import compose, typed
from experiments.harness.progress import SWEEP
from experiments.harness.rundir import RunError
from experiments.harness.sweep import cell_cost
from experiments.training import variants
from experiments.training.train import fit
from runformat import Status

log = logging.getLogger("experiments")


class StopFlag:
    """SIGINT/SIGTERM (Ctrl-C, a scheduler's preemption) and SIGUSR2 (what SLURM sends ahead of a time limit
    or, where the cluster is set up for it, a preemption, when a job asks for it as submitit's jobs do). While
    the cells open there is nothing to checkpoint, so a signal stops at once; while they train, the first asks
    the loop to stop after the current step and checkpoint, and a second stops at once (the last checkpoint
    stands). The handlers that were there before come back on exit, so a caller can hand the signal on to
    them afterwards (experiments.launchers.grouped gives USR2 to submitit, which requeues the job)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGUSR2)

    def __init__(self):
        self.signum: Optional[int] = None
        self.training = False
        self.hard = False
        self._previous = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.hard:  # already stopping at once: a third Ctrl-C must not break the last bookkeeping
            return
        first = self.signum is None
        self.signum = self.signum or signum
        if not self.training or not first:
            self.hard = True
            raise KeyboardInterrupt
        log.warning("%s received: stopping after this step and writing a checkpoint (again: stop at once)",
                    signal.Signals(signum).name)

    def __enter__(self):
        for s in self.SIGNALS:
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        return False


class Stopped(SystemExit):
    """A signal ended the cells, each checkpointed and marked (or left as it was if it never started): exits
    128 + signal like a process the signal ended, and tells a caller that catches it which signal and how each
    job ended."""

    def __init__(self, signum: int, results: list):
        super().__init__(128 + signum)
        self.signum, self.results = signum, results


def job_from(cfg, run_dir: Path, overrides: list) -> Job:
    """A composed config (the app's, or a launcher's sweep config) as a Job: the typed Config, with its run dir."""
    return Job(typed(cfg), Path(run_dir), list(overrides))


def run_overrides(overrides: list, run_dir: Path) -> Result:
    """What `python -m experiments.run OVERRIDES hydra.run.dir=RUN_DIR` does, in this process (the bench,
    the tests); a UserError propagates."""
    return run_jobs([job_from(compose(overrides), run_dir, overrides)])[0]


def run_jobs(jobs: list, keep_going: bool = False) -> list:
    """Run every job to the end (or to a signal); returns one Result per job, in order.

    keep_going (a sweep): a job refused for bad input or an unusable directory gets a `failed` Result and the
    others go on; otherwise the UserError propagates to the entry point, which prints it. A signal ends the
    process with 128 + signal (`Stopped`) after every cell is checkpointed and marked, unless every cell had
    finished."""
    provenance.git_commit()  # read before the first cell starts (it is cached for the process)
    data, stop = DataCache(), StopFlag()
    results: list = [None] * len(jobs)
    cells: list = []
    with stop:
        try:
            for i, job in enumerate(jobs):
                try:
                    cells.append((i, open_cell(job, data)))
                    c = cells[-1][1]
                    SWEEP.opened(c.rd.path.name, cell_cost(job.cfg), job.cfg.protocol.iterations,
                                 c.trainer.iteration if c.trainer else 0, finished=c.result is not None)
                except UserError as e:
                    if not keep_going:
                        raise
                    log.error("error: %s", e)
                    results[i] = Result(Status.failed, str(e), str(job.run_dir))
        except KeyboardInterrupt:
            for _, cell in cells:
                if cell.result is None:
                    abandon(cell, stop.signum or signal.SIGINT)
            signum = stop.signum or signal.SIGINT
            how = signal.Signals(signum).name
            log.error("interrupted by %s during start-up: nothing was trained; rerun the same command", how)
            opened = {i: cell.result for i, cell in cells}
            raise Stopped(signum, [opened.get(i) or results[i] or Result(
                Status.interrupted, f"{how} during start-up, before it was opened", str(job.run_dir))
                for i, job in enumerate(jobs)]) from None
        stop.training = True
        train_cells([c for _, c in cells if c.result is None], stop)
    for i, cell in cells:
        results[i] = cell.result
    if stop.signum is not None and any(r.status == Status.interrupted for r in results if r):
        raise Stopped(stop.signum, results)  # the exit code agrees with the status a scheduler reads
    return results


def train_cells(cells: list, stop: StopFlag) -> None:
    """Train the open cells, those that share a stream together, until they finish or a signal stops them;
    each cell ends closed, with its `result` set."""
    groups: dict = {}
    for c in cells:
        groups.setdefault(c.stream_key(), []).append(c)
    try:
        for group in groups.values():
            if stop():
                break
            train_group(group, stop)
    except KeyboardInterrupt:  # a second signal: stop at once, mid-step; the last checkpoints stand
        close_each(cells, lambda c: close_cell(c, stop.signum or signal.SIGINT, saved=False))
        return
    close_each(cells, lambda c: close_cell(c, stop.signum))  # groups never started because of a signal


def close_each(cells: list, close) -> None:
    """`close` every cell that is still open, even when closing one fails (its run.json could not be written: a
    full disk); then the first such failure."""
    failures = []
    for c in cells:
        if c.result is None:
            try:
                close(c)
            except RunError as e:
                failures.append(e)
    if failures:
        raise failures[0]


def train_group(group: list, stop: StopFlag) -> None:
    first = group[0]
    p, ds = first.cfg.protocol, first.ds
    stream = TrainStream(ds.train, make_normalizer(p, ds.train.x), p.batch_size, p.augment, first.cfg.seed)
    for c in group:
        c.normalizer = stream.normalize
    choose_step(group, stream)
    cell_of = {t: c for c in group for t in [c.trainer]}  # a Trainer hashes by identity

    def on_epoch(trainer, row):
        if trainer.status != Status.diverged:
            cell_of[trainer].on_epoch(row)
    try:
        fit([c.trainer for c in group], stream, ds.test, ds.val, on_epoch, stop,
            lambda: [c.progress.step(c.trainer.iteration) for c in group])
        for c in group:
            c.flush()  # the last epoch's files: a failed write fails the group as any error in training does
    except KeyboardInterrupt:
        raise  # a second signal: train_cells closes every cell
    except BaseException as e:
        why = f"{type(e).__name__}: {e}"
        try:
            close_each(group, lambda c: finish(c, Status.failed, why))
        except RunError as unwritten:  # the run.json that says so could not be written either: the one line says it
            if isinstance(e, UserError):
                raise RunError(f"{e}; {unwritten}") from e
            raise
        raise
    close_each(group, lambda c: close_cell(c, stop.signum))



def choose_step(group: list, stream: TrainStream) -> None:
    """The first-minute choice of the group's joint step (experiments.training.variants), where `speed.choose` asks for it
    (auto: on CUDA). A group some of whose cells kept a choice from their start (experiments.harness.cell.kept_choice) trains
    every cell with it instead: one sweep, one variant."""
    first = group[0]
    device, mode = first.trainer.device, first.cfg.speed.choose.value
    if mode == "off" or (mode == "auto" and device.type != "cuda"):
        return
    kept = next((c.info["speed_choice"] for c in group if mode == "auto" and "speed_choice" in c.info
                 and c.info["speed_choice"].get("device_type") == device.type), None)
    if kept is None:
        pos, spe = min(c.trainer.iteration for c in group), stream.steps_per_epoch
        states = [c.trainer.state_dict() for c in group]
        try:
            choice = variants.choose(lambda switches: [rebuild(c, switches, s) for c, s in zip(group, states)],
                                     lambda k: stream.batch(*divmod(pos + k, spe)),
                                     streams=len(group) > 1 and device.type == "cuda",
                                     budget=first.cfg.speed.choose_seconds)
        except Exception as e:  # the eager reference itself failed: train as configured, as before the choice existed
            log.warning("the first-minute choice of the step failed (%s: %s); training with the configured switches",
                        type(e).__name__, " ".join(str(e).split())[:200])
            return
        log.info("%s", variants.summary(choice))
        kept = {**choice.record(), "device_type": device.type, "device_name": provenance.device_name(device)}
    for c in group:
        use_choice(c, kept)
