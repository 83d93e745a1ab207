"""A sweep on one GPU: every cell opened in its own run directory, then trained together.

The eight Figure-6 networks are small; one alone leaves most of an H100 idle. Cells that share the data,
the batch size, the augmentation and the seed see exactly the same batches, so they are trained over one
shared stream, each network on its own CUDA stream, and each still writes exactly the files a single run
of it would (same directory, same CSVs, same checkpoint). On a CPU the same code steps them in turn, with
numbers identical to running the cells one by one.

Why not Hydra's `run_job`, as Hydra's own launchers do: `run_job` runs the task function for one job to its
end, and a launcher calls it once per job. Training cells together needs every cell opened before any step,
in one process, over one stream, so this launcher composes each job's config itself
(`load_sweep_config`), hands all of them to `experiments.harness.runner.run_jobs` (the same function a single run
goes through, with the same handling of bad cells, signals and crashes), and reports one JobReturn per job
to the callbacks, as `run_job` would. A group job of the grouped launcher (experiments.launchers.grouped) is this, for
its group's cells, in the job's process: `compose_jobs` and `job_return` serve both.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import open_dict, read_write

from experiments.harness.runner import job_from, run_jobs

log = logging.getLogger("experiments")


def compose_jobs(hydra_context, config, job_overrides, initial_job_idx: int = 0) -> list:
    """(Job, sweep config) for each job's overrides, composed as Hydra's launchers compose a job
    (`load_sweep_config`), its run directory the one `run_job` would give it (hydra.sweep.dir/subdir)."""
    composed = []
    for idx, overrides in enumerate(job_overrides, initial_job_idx):
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        run_dir = Path(sweep_config.hydra.sweep.dir) / str(sweep_config.hydra.sweep.subdir)
        with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
            sweep_config.hydra.runtime.output_dir = str(run_dir)  # what the sweep summary names
        composed.append((job_from(sweep_config, run_dir, list(overrides)), sweep_config))
    return composed


def job_return(job, sweep_config, result) -> JobReturn:
    """What `run_job` would have returned for this job, with its Result (a failed cell too: the sweep's
    summary lists it, and Hydra's sweeper must not re-raise)."""
    return JobReturn(overrides=job.overrides, cfg=sweep_config, hydra_cfg=sweep_config, working_dir=str(job.run_dir),
                     task_name=sweep_config.hydra.job.name, status=JobStatus.COMPLETED, _return_value=result)


def launch(hydra_context, config, job_overrides, initial_job_idx: int) -> list:
    setup_globals()
    configure_log(config.hydra.job_logging, config.hydra.verbose)
    log.info("Training %d cells together in one process", len(job_overrides))
    for idx, overrides in enumerate(job_overrides, initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
    composed = compose_jobs(hydra_context, config, job_overrides, initial_job_idx)
    returns = []
    for (job, sweep_config), result in zip(composed, run_jobs([job for job, _ in composed], keep_going=True)):
        ret = job_return(job, sweep_config, result)
        hydra_context.callbacks.on_job_end(config=sweep_config, job_return=ret)
        returns.append(ret)
    return returns
