"""One training run (or, with -m, a sweep of them): `python -m experiments.run depth=56 residual=false`.

The only module that sees a DictConfig (with the launchers it hands jobs to): Hydra composes conf/ and names
the run directory (see conf/config.yaml, and experiments.harness.compose for the name); `job_from` turns that
into the typed `Config` everything else takes; experiments.harness.runner opens, trains and closes the run.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.errors import UserError
from experiments.harness.cell import Result
from experiments.harness.compose import CONF_DIR, name_of, register
from experiments.harness.runner import job_from, run_jobs
from runformat import Status

log = logging.getLogger("experiments")


def _run_name(*, _root_) -> str:
    return name_of(_root_, list(OmegaConf.select(_root_, "hydra.overrides.task", default=None) or []))


register()
OmegaConf.register_new_resolver("run_name", _run_name, replace=True)


# an absolute path: Hydra reads it as a folder whether the app starts as `python -m` or as the console script
@hydra.main(config_path=str(CONF_DIR), config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> Result:
    hc = HydraConfig.get()
    job = job_from(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    if hc.mode != RunMode.MULTIRUN:
        try:
            return run_jobs([job])[0]
        except UserError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
    try:  # a sweep cell: one bad cell must not stop the sweep; the summary lists it
        return run_jobs([job], keep_going=True)[0]
    except UserError as e:  # a full disk mid-run: one line, as for a single run
        log.error("error: %s", e)
        return Result(Status.failed, str(e), str(job.run_dir))
    except Exception as e:
        log.exception("%s failed", job.run_dir)
        return Result(Status.failed, f"{type(e).__name__}: {e}", str(job.run_dir))


def cli() -> None:
    from experiments.harness.precheck import plan
    from experiments.harness.progress import SWEEP
    from experiments.harness.sweep import cell_cost
    try:
        cells = plan(sys.argv[1:])
        if cells.problem:
            print(f"error: {cells.problem}", file=sys.stderr)
            raise SystemExit(2)
        if cells.multirun:
            SWEEP.start([cell_cost(c) for c in cells.configs])
        main()
    except KeyboardInterrupt:  # Ctrl-C before any run opened (imports, composition): nothing to clean up
        print("interrupted before any run started: nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    from experiments.harness.sweep import SweepSummary
    if SweepSummary.failed():
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
