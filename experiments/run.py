"""One training run (or, with -m, a sweep of them): `python -m experiments.run depth=56 residual=false`.

The only module that sees a DictConfig (with the launchers it hands jobs to): Hydra composes conf/ and names
the run directory (see conf/config.yaml); `job_from` turns that into the typed `Config` everything else
takes; experiments.runner opens, trains and closes the run.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Optional

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments.config import CONF_DIR, Config, compose, register
from experiments.errors import UserError
from experiments.harness.cell import Job, Result
from experiments.harness.rundir import override_key, run_name
from experiments.harness.runner import run_jobs
from experiments.nets import families
from runformat import Status

log = logging.getLogger("experiments")


def name_of(cfg: DictConfig, overrides: list, conf_dir: Optional[Path] = None) -> str:
    """The run directory name of the composed `cfg` (rundir.run_name): each overridden key whose resolved value is
    not what its groups give it anyway (`protocol=quick protocol.lr=0.1` is `protocol=quick`), the data by their
    fingerprint. The precheck names every cell with it before Hydra starts (`conf_dir`: its conf/)."""
    from experiments.config import DataConfig, Source
    from experiments.data.datasets import data_fingerprint

    def value(key, node=cfg):
        v = OmegaConf.select(node, key, default=None)
        return OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v
    groups = [o for o in overrides if "." not in override_key(o) and isinstance(value(override_key(o)), dict)]
    defaults = _default_choices(conf_dir)
    # a group's choice is a change unless it is the default one; a key, unless its groups give it that value anyway
    changed = [o for o in groups if o.partition("=")[2] != defaults.get(override_key(o))]
    keys = [o for o in overrides if o not in groups]
    if keys:
        base = _baseline(groups, conf_dir)
        changed += [o for o in keys if value(override_key(o)) != value(override_key(o), base)]
    family = families.get(cfg.arch.name)
    source = value("data.source")  # an Enum, or its value where a launcher's config lost the schema's types
    data = DataConfig(source=Source(getattr(source, "value", source)), root=value("data.root"))
    return run_name(family.name_head(cfg.arch, cfg.depth), cfg.residual, cfg.seed, changed, family.size_keys,
                    value, data_fingerprint(data))


_BASES: dict = {}  # (conf dir, groups) -> the config those group choices give: composed once per process (0.13 s)


def _baseline(groups: list, conf_dir: Optional[Path]) -> DictConfig:
    """The config of the group choices alone, from `conf_dir` (None: conf/, the app's). Inside the Hydra app
    (the run name's resolver) it is composed by the app's own Hydra, unless the precheck composed it already."""
    from hydra.core.global_hydra import GlobalHydra
    key = (str(conf_dir or CONF_DIR), tuple(sorted(groups)))
    if key not in _BASES:
        if conf_dir is None and GlobalHydra.instance().is_initialized():
            from hydra import compose as hydra_compose
            _BASES[key] = hydra_compose("config", overrides=list(groups))
        else:
            _BASES[key] = compose(list(groups), Path(conf_dir or CONF_DIR))
    return _BASES[key]


def _default_choices(conf_dir: Optional[Path]) -> dict:
    """{group: its default choice} from config.yaml's defaults list (`data: cifar10`)."""
    entries = OmegaConf.load(Path(conf_dir or CONF_DIR) / "config.yaml").get("defaults", [])
    return {k: str(v) for e in entries if OmegaConf.is_dict(e) for k, v in e.items() if "/" not in k and " " not in k}


def _run_name(*, _root_) -> str:
    return name_of(_root_, list(OmegaConf.select(_root_, "hydra.overrides.task", default=None) or []))


register()
OmegaConf.register_new_resolver("run_name", _run_name, replace=True)


def job_from(cfg: DictConfig, run_dir: Path, overrides: list) -> Job:
    """The composed config as the typed Config (a family's ArchConfig subclass for `arch`), with its run dir."""
    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    # A launcher's sweep config has lost its schema types: merge it onto the schema again, with the family's
    # own ArchConfig subclass in `arch`, so every value is checked and Enums come back as Enums.
    schema = OmegaConf.structured(Config(arch=families.get(cfg.arch.name).config()))
    return Job(OmegaConf.to_object(OmegaConf.merge(schema, task)), Path(run_dir), list(overrides))


@hydra.main(config_path="conf", config_name="config", version_base="1.3")
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


def run_overrides(overrides: list, run_dir: Path) -> Result:
    """What `python -m experiments.run OVERRIDES hydra.run.dir=RUN_DIR` does, in this process (the bench,
    the tests); a UserError propagates."""
    return run_jobs([job_from(compose(overrides), run_dir, overrides)])[0]


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
