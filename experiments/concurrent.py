"""A sweep on one GPU: every cell opened in its own run directory, then trained together.

The eight Figure-6 networks are small; one alone leaves most of an H100 idle. Cells that share the data,
the batch size, the augmentation and the seed see exactly the same batches, so they are trained over one
shared stream, each network on its own CUDA stream, and each still writes exactly the files a single run
of it would (same directory, same CSVs, same checkpoint). On a CPU the same code steps them in turn, with
numbers identical to running the cells one by one.
"""
from __future__ import annotations

import logging
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, setup_globals
from omegaconf import OmegaConf, open_dict, read_write

from experiments.rundir import RunDir, RunError
from experiments.runner import UserError, open_cell, train_cells

log = logging.getLogger("experiments")


def launch(hydra_context, config, job_overrides, initial_job_idx: int) -> list:
    setup_globals()
    configure_log(config.hydra.job_logging, config.hydra.verbose)
    log.info("Training %d cells together in one process", len(job_overrides))
    jobs, cells = [], []  # jobs: (overrides, sweep_config, run_dir, Cell | final status)
    for idx, overrides in enumerate(job_overrides, initial_job_idx):
        log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
        sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
        HydraConfig.instance().set_config(sweep_config)
        run_dir = Path(sweep_config.hydra.sweep.dir) / str(sweep_config.hydra.sweep.subdir)
        task_cfg = OmegaConf.masked_copy(sweep_config, [k for k in sweep_config if k != "hydra"])
        try:
            cell = open_cell(task_cfg, run_dir, list(overrides))
        except (UserError, RunError) as e:  # one bad cell does not stop the others
            log.error("error: %s", e)
            RunDir(run_dir).remove_if_empty()
            cell = f"failed ({e})"
        if not isinstance(cell, str):
            cells.append(cell)
        jobs.append((list(overrides), sweep_config, run_dir, cell))

    statuses = dict(zip(map(id, cells), train_cells(cells))) if cells else {}
    returns = []
    for overrides, sweep_config, run_dir, cell in jobs:
        with read_write(sweep_config.hydra.runtime), open_dict(sweep_config.hydra.runtime):
            sweep_config.hydra.runtime.output_dir = str(run_dir)  # what the sweep summary names
        ret = JobReturn(overrides=overrides, cfg=sweep_config, hydra_cfg=sweep_config, working_dir=str(run_dir),
                        task_name=sweep_config.hydra.job.name, status=JobStatus.COMPLETED,
                        _return_value=cell if isinstance(cell, str) else statuses[id(cell)])
        hydra_context.callbacks.on_job_end(config=sweep_config, job_return=ret)
        returns.append(ret)
    return returns
