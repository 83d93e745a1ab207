"""What a sweep adds to single runs: a summary of every cell at the end, and a guard against starting
a multi-day job on a CPU by accident. Resume needs nothing here: each cell resumes its own run directory.
"""
from __future__ import annotations

import logging
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from experiments.harness.cell import Result
from runformat import Status

log = logging.getLogger("experiments")

# Seconds per training iteration at batch 128 on 2 CPU cores (AMD EPYC), epochs' evaluations included, with
# the CPU defaults (fp32, channels_last): plain-56 0.68 s (a quick epoch of 50 iterations in 34.1 s, measured);
# depth-linear, as the bf16 sweep showed (plain-20 0.139 s, plain-56 0.412 s with speed.bf16=on).
CPU_SECONDS_PER_ITER_PER_LAYER = 0.012
CPU_LIMIT_S = 2 * 3600


def cpu_estimate_s(iterations: int, depth: int, batch_size: int, cost_per_layer: float = 1.0) -> float:
    return iterations * depth * cost_per_layer * CPU_SECONDS_PER_ITER_PER_LAYER * batch_size / 128


def cell_cost(cfg) -> float:
    """A cell's whole training on this CPU, estimated (seconds): the CPU guard's total and the sweep ETA's weights."""
    from experiments.nets import families
    family = families.get(cfg.arch.name)
    return cpu_estimate_s(cfg.protocol.iterations, family.depth(cfg.arch, cfg.depth), cfg.protocol.batch_size,
                          family.cpu_cost_per_layer)


class SweepSummary(Callback):
    """Collects each cell's Result; at the end prints the cells that did not complete, and remembers whether
    any failed or was interrupted (the process then exits 1)."""

    results: list = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        SweepSummary.results = []

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        hydra_cfg = job_return.hydra_cfg or {}
        name = OmegaConf.select(hydra_cfg, "hydra.runtime.output_dir", default=None) or job_return.working_dir
        if job_return.status == JobStatus.COMPLETED and isinstance(job_return._return_value, Result):
            result = job_return._return_value
        else:  # the task raised: Hydra keeps the exception as the return value
            error = job_return._return_value
            result = Result(Status.failed, f"{type(error).__name__}: {error}", str(name))
        SweepSummary.results.append((name, result))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        bad = [(n, r) for n, r in SweepSummary.results if r.status != Status.completed]
        log.info("sweep: %d cells, %d completed%s", len(SweepSummary.results),
                 len(SweepSummary.results) - len(bad), "" if bad else ".")
        for name, result in bad:
            log.warning("  %s: %s", result, name)

    @staticmethod
    def failed() -> bool:
        """A cell failed, or was interrupted in a job of its own (a sweep signalled itself exits 128 + signal
        before this is asked): the sweep's work is not done."""
        return any(r.status in (Status.failed, Status.interrupted) for _, r in SweepSummary.results)
