"""A sweep as jobs of several cells: `hydra/launcher=slurm` (one SLURM job per group, one GPU each),
`hydra/launcher=gpus` (one group per GPU of this machine), or `hydra/launcher=grouped` over any launcher.

Why a launcher around a launcher. The paper's nets are small: one GPU trains several together over one
stream of batches (experiments.launchers.concurrent), so the unit to submit is a group of cells, not a cell. Hydra's
launchers (basic, submitit_local, submitit_slurm, joblib) already submit a job, wait for it, bring back its
result and, for submitit, checkpoint and requeue it; what none of them does is grouping. So this launcher
packs the sweep's cells into groups and hands the *groups* to an inner launcher chosen by config, each group
one job whose overrides are `hydra.launcher.cells=[[cell overrides], ...]` (its cells, quoted) and
`hydra.sweep.subdir=.` (a group has no run directory of its own). The inner launcher composes that job and
runs `GroupTask` in it as it would run any task function; the task composes each cell as the concurrent
launcher does and trains them with `run_jobs`, so each cell writes exactly the run directory a basic sweep
gives it. Back in the submitting process each group's results are dealt back to its cells, and the sweep's
callbacks see one job per cell, so the summary lists every cell. (Subclassing submitit's launcher instead
would tie grouping to one inner launcher, and still need all of the above.)

Groups. Cells that share a stream (same data, batch size, augmentation, normalisation and seed:
`cell.stream_key`) see the same batches and are trained together; by default each such set is one job (the
paper's 8 nets of a seed: one job per seed). `cells_per_job=K` splits each set into ceil(n/K) jobs of at
most K cells, dealt round-robin so that each gets a similar mix of depths (a sweep lists a depth's cells
together). Cells of different streams never share a job: one process would train one stream after the other,
which only makes the job longer than two jobs side by side.

The GPUs of one machine (`gpus=N`). submitit's LocalExecutor gives every job the same GPUs
(CUDA_VISIBLE_DEVICES = `visible_gpus[:gpus_per_node]`, or 0..gpus_per_node-1) and starts every job at once:
it neither spreads jobs over GPUs nor queues them. So the groups go to it in waves of N, the i-th of a wave
with `+hydra.job.env_set.CUDA_VISIBLE_DEVICES=<the i-th GPU>`, which Hydra sets around the task in the job's
fresh process, before torch first touches CUDA: one group per GPU, never two processes of a sweep on one
GPU, and with one GPU the groups queue. A wave ends when its slowest group does; with the default grouping a
sweep's groups are the same nets under other seeds and take about as long.

Preemption and time limits (submitit). submitit's job process answers USR2 by calling the job's
`checkpoint()` and requeueing it (SLURM: scontrol requeue; locally: exit 144, and the controller starts it
again), and ignores SIGTERM. Here `run_jobs` catches USR2 first (runner.StopFlag): each cell finishes its step,
writes its checkpoint and says `interrupted`; then `GroupTask` hands USR2 to submitit's handler, which
requeues the same group job, and that job resumes each cell in its run directory, each epoch once (finished
cells say "nothing to do"). A SIGTERM (scancel, or a preemption without USR2) checkpoints and marks the
cells the same way, then the job ends with them as they are: the summary lists them as interrupted, and the
same sweep command resumes them.
"""
from __future__ import annotations

import logging
import math
import os
import re
import signal
import socket
import time
from dataclasses import dataclass, replace
from typing import Optional

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import OmegaConf

from experiments.errors import UserError
from experiments.harness.cell import Result, stream_key
from experiments.harness.progress import fmt_duration
from experiments.harness.rundir import RunDir, RunError
from experiments.harness.runner import Stopped, run_jobs
from experiments.launchers.concurrent import compose_jobs, job_return
from runformat import Status

log = logging.getLogger("experiments")


# ---- groups -------------------------------------------------------------------------------------------

def group_cells(cfgs: list, cells_per_job: Optional[int] = None) -> list:
    """The indices of the cells each job trains, for the cells' typed Configs in sweep order."""
    streams: dict = {}
    for i, c in enumerate(cfgs):
        streams.setdefault(stream_key(c, c.device.value), []).append(i)
    groups = []
    for cells in streams.values():
        n = math.ceil(len(cells) / cells_per_job) if cells_per_job else 1
        groups += [cells[j::n] for j in range(n)]  # dealt round-robin: each job a mix of the sweep's depths
    return groups


def quoted(s: str) -> str:
    """`s` as a quoted string in a Hydra override: a backslash escapes a quote, so any run of backslashes
    before a quote (or before the closing quote) is doubled."""
    s = re.sub(r"(\\*)'", lambda m: m.group(1) * 2 + "\\'", s)
    s = re.sub(r"(\\+)$", lambda m: m.group(1) * 2, s)
    return f"'{s}'"


def group_overrides(cells: list, gpu: Optional[str] = None) -> list:
    """The overrides of the job that trains `cells` (each a list of overrides), on `gpu` if given."""
    listed = ",".join("[" + ",".join(quoted(o) for o in cell) + "]" for cell in cells)
    overrides = [f"hydra.launcher.cells=[{listed}]", "hydra.sweep.subdir=."]
    if gpu is not None:
        overrides.append(f"+hydra.job.env_set.CUDA_VISIBLE_DEVICES={quoted(gpu)}")
    return overrides


def gpu_ids(n: int, visible: Optional[str]) -> list:
    """The first n GPUs this process may use, named as CUDA_VISIBLE_DEVICES names them (`visible`, if set)."""
    ids = [g.strip() for g in visible.split(",") if g.strip()] if visible is not None else [str(i) for i in range(n)]
    if n > len(ids):
        raise UserError(f"hydra.launcher.gpus={n}, but CUDA_VISIBLE_DEVICES={visible} names only {len(ids)}: "
                        f"ask for at most {len(ids)} (make sweep GPUS={len(ids)})")
    return ids[:n]


# ---- in the job ---------------------------------------------------------------------------------------

@dataclass
class GroupReport:
    """What a group job sends back: each cell's Result in the group's order, and where and when it ran."""
    results: list
    host: str
    gpu: Optional[str]  # CUDA_VISIBLE_DEVICES in the job
    started: float  # time.time()
    ended: float


class GroupTask:
    """The task function of a group job, called by the inner launcher (in a job process of its own, or in
    this one for `basic`): compose each of the group's cells and train them together."""

    def __init__(self, hydra_context, config):
        self.hydra_context, self.config = hydra_context, config

    def __call__(self, cfg) -> GroupReport:
        started = time.time()
        # raw: an interpolation in a cell's override is the cell's config to resolve, not this node's
        cells = OmegaConf.to_container(HydraConfig.get().launcher.cells, resolve=False)
        gpu = os.environ.get("CUDA_VISIBLE_DEVICES")
        log.info("Training %d cells together on %s%s", len(cells), socket.gethostname(), f", GPU {gpu}" if gpu else "")
        composed = compose_jobs(self.hydra_context, self.config, cells)
        try:
            results = run_jobs([job for job, _ in composed], keep_going=True)
        except Stopped as stopped:
            results = after_signal(stopped)
        return GroupReport(results, socket.gethostname(), gpu, started, time.time())


def after_signal(stopped: Stopped) -> list:
    """The cells are checkpointed and marked; what the job does next. In the sweep's own process (an
    in-process inner launcher) the signal ends the sweep, as it does a basic sweep. In a submitit job, USR2 goes
    on to submitit's handler, back in place now, which calls `checkpoint()` and requeues the job (it exits
    here) or, if it will not requeue (timed out too often), raises: the group then reports its cells from
    their run directories. Any other signal ends the job with the cells as they are."""
    env = submitit_job()
    if env is None:
        raise stopped
    if stopped.signum == getattr(signal, "SIG" + env.USR_SIG):
        log.warning("%s: every cell is checkpointed; handing the signal to submitit to requeue this job",
                    signal.Signals(stopped.signum).name)
        handler = signal.getsignal(stopped.signum)
        if callable(handler):
            handler(stopped.signum, None)
    return stopped.results


def submitit_job():
    """submitit's JobEnvironment if this process is a submitit job, else None."""
    if not os.environ.get("SUBMITIT_EXECUTOR"):
        return None
    import submitit
    try:
        return submitit.JobEnvironment()
    except RuntimeError:
        return None


# ---- in the submitting process ------------------------------------------------------------------------

def setup(launcher) -> None:
    """Checks what the launcher was given, before anything is composed or submitted."""
    if launcher.cells_per_job is not None and launcher.cells_per_job < 1:
        raise UserError(f"hydra.launcher.cells_per_job={launcher.cells_per_job}: give a number of cells >= 1, "
                        f"or null for one job per stream")
    if launcher.gpus is not None and launcher.gpus < 1:
        raise UserError(f"hydra.launcher.gpus={launcher.gpus}: give a number of GPUs >= 1, or null to hand every "
                        f"group to the inner launcher at once")
    if launcher.gpus:
        from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher
        if not isinstance(launcher.inner, LocalLauncher):
            raise UserError("hydra.launcher.gpus needs an inner launcher that starts a fresh process per job on this "
                            "machine (submitit_local, as hydra/launcher=gpus has): a process that has used CUDA "
                            "cannot move to another GPU")
        import torch
        if torch.cuda.is_available() and launcher.gpus > torch.cuda.device_count():
            raise UserError(f"hydra.launcher.gpus={launcher.gpus}, but this machine has {torch.cuda.device_count()} "
                            f"GPUs visible")
        gpu_ids(launcher.gpus, os.environ.get("CUDA_VISIBLE_DEVICES"))
    from hydra._internal.callbacks import Callbacks  # Hydra's own class; Callbacks() holds none
    # The groups are not the sweep's jobs: the sweep's callbacks (the summary) hear of each cell from `launch`,
    # in this process, so the inner launcher's run_job (here, or in the job's process) gets none.
    inner_context = replace(launcher.hydra_context, callbacks=Callbacks())
    launcher.inner.setup(hydra_context=inner_context, task_function=GroupTask(launcher.hydra_context, launcher.config),
                         config=launcher.config)


def launch(launcher, job_overrides, initial_job_idx: int) -> list:
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.job_logging, config.hydra.verbose)
    composed = compose_jobs(launcher.hydra_context, config, job_overrides, initial_job_idx)
    groups = group_cells([job.cfg for job, _ in composed], launcher.cells_per_job)
    slots = gpu_ids(launcher.gpus, os.environ.get("CUDA_VISIBLE_DEVICES")) if launcher.gpus else [None] * len(groups)
    log.info("%d cells in %d jobs (%s)%s", len(composed), len(groups), type(launcher.inner).__name__,
             f", one at a time on each of GPUs {','.join(slots)}" if launcher.gpus else "")
    shared = set.intersection(*(set(job.overrides) for job, _ in composed))  # said once, not per cell
    if shared:
        log.info("\tevery cell: %s", " ".join(o for o in filter_overrides(composed[0][0].overrides) if o in shared))
    for g, cells in enumerate(groups):
        log.info("\tjob %d: %s", g, " | ".join(" ".join(o for o in filter_overrides(composed[i][0].overrides)
                                                        if o not in shared) for i in cells))

    name = type(launcher.inner).__name__
    returns: list = [None] * len(groups)
    why = [f"never submitted: the {name} launcher failed on an earlier job"] * len(groups)
    for start in range(0, len(groups), len(slots)):
        wave = list(range(start, min(start + len(slots), len(groups))))
        overrides = [group_overrides([composed[i][0].overrides for i in groups[g]], slot) for g, slot in zip(wave, slots)]
        try:
            for g, ret in zip(wave, launcher.inner.launch(overrides, initial_job_idx=start)):
                returns[g] = ret
        except Exception as e:  # cannot submit, or a job died without a result (killed): stop submitting
            log.error("%s launcher: %s: %s", name, type(e).__name__, e)
            for g in wave:
                why[g] = f"the {name} launcher raised {type(e).__name__}: {first_line(e)}"
            break

    results: list = [None] * len(composed)
    for g, cells in enumerate(groups):
        report = group_results(g, returns[g], [composed[i][0] for i in cells], why[g])
        for i, result in zip(cells, report):
            results[i] = result
    job_returns = []
    for (job, sweep_config), result in zip(composed, results):
        ret = job_return(job, sweep_config, result)
        launcher.hydra_context.callbacks.on_job_end(config=sweep_config, job_return=ret)
        job_returns.append(ret)
    return job_returns


def group_results(g: int, ret, jobs: list, why: str) -> list:
    """Each cell's Result from its group job's return, or from its run directory if the job brought none."""
    if ret is not None and ret.status == JobStatus.COMPLETED and isinstance(ret.return_value, GroupReport):
        r = ret.return_value
        log.info("job %d: %d cells on %s%s in %s", g, len(jobs), r.host, f", GPU {r.gpu}" if r.gpu else "",
                 fmt_duration(r.ended - r.started))
        return r.results
    if ret is not None:
        error = ret._return_value  # what the task raised (e.g. submitit refusing to requeue)
        why = f"its job raised {type(error).__name__}: {first_line(error)}"
        log.error("job %d: %s", g, why)
    return [from_disk(job, why) for job in jobs]


def first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [""])[0]


def from_disk(job, why: str) -> Result:
    """A cell's Result as its run.json tells it, when its job brought none back."""
    try:
        info = RunDir(job.run_dir).read_info() or {}
    except RunError as e:
        info = {"message": str(e)}
    try:
        status = Status(info.get("status"))
    except ValueError:
        status = None
    if status is None or status == Status.running:  # never opened, or its job was killed mid-run
        return Result(Status.failed, f"{why}; rerun the sweep to resume it", str(job.run_dir))
    return Result(status, info.get("message", ""), str(job.run_dir))
