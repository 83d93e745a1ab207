"""One training run (or, with -m, a sweep of them): `python -m experiments.run depth=56 residual=false`.

With experiments.runner, the only code that sees a DictConfig: Hydra composes and names the run directory
(see conf/config.yaml), the runner resumes or starts the run and writes run.json, the CSVs and
checkpoint.pt there. Models, data and the training loop take plain arguments.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.config import register
from experiments.rundir import RunDir, RunError, run_name
from experiments.runner import UserError, execute

log = logging.getLogger("experiments")


def _run_name(*, _root_) -> str:
    overrides = OmegaConf.select(_root_, "hydra.overrides.task", default=None) or []
    return run_name(_root_.depth, _root_.residual, _root_.seed, _root_.arch.name, _root_.arch.units_per_stage,
                    list(overrides))


register()
OmegaConf.register_new_resolver("run_name", _run_name, replace=True)


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    try:
        return execute(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    except (UserError, RunError) as e:
        RunDir(hc.runtime.output_dir).remove_if_empty()
        if hc.mode == RunMode.MULTIRUN:  # one bad cell must not stop the sweep; the summary lists it
            log.error("error: %s", e)
            return f"failed ({e})"
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except Exception as e:
        if hc.mode == RunMode.MULTIRUN:
            log.exception("%s failed", hc.runtime.output_dir)
            return f"failed ({type(e).__name__}: {e})"
        raise


def cli() -> None:
    from experiments.precheck import check
    problem = check(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    main()
    from experiments.sweep import SweepSummary
    if SweepSummary.failed():
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
