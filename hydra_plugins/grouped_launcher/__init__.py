"""`hydra/launcher=grouped`: a sweep's cells packed into jobs of several cells, each job handed to an inner
launcher (see experiments.launchers.grouped for why and how). The presets in conf/hydra/launcher/ build on it:
`slurm` (submitit_slurm inside, one GPU per job) and `gpus` (submitit_local inside, one group per GPU).

Hydra finds launchers in the `hydra_plugins` namespace package; the work is done in `experiments`, imported
only when a sweep launches so that plugin discovery stays fast.
"""
from dataclasses import dataclass, field
from typing import Any, List, Optional, Sequence

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class GroupedLauncherConf:
    _target_: str = "hydra_plugins.grouped_launcher.GroupedLauncher"
    # at most this many cells in one job; null: one job for all the cells that share a stream of batches
    cells_per_job: Optional[int] = None
    # GPUs of this machine to keep busy, one group on each at a time (needs the inner launcher submitit_local);
    # null: every group is handed to the inner launcher at once (SLURM's scheduler places them)
    gpus: Optional[int] = None
    # the launcher that runs each group as one job: any Hydra launcher's config (Hydra instantiates it)
    inner: Any = field(default_factory=lambda: {"_target_": "hydra._internal.core_plugins.basic_launcher.BasicLauncher"})
    # set by this launcher on each group job, never by hand: the overrides of the cells that job trains
    cells: Optional[List[List[str]]] = None


ConfigStore.instance().store(group="hydra/launcher", name="grouped", node=GroupedLauncherConf, provider="degradation")


class GroupedLauncher(Launcher):
    def __init__(self, inner: Launcher, cells_per_job: Optional[int] = None, gpus: Optional[int] = None,
                 cells: Any = None) -> None:
        self.inner, self.cells_per_job, self.gpus = inner, cells_per_job, gpus
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        from experiments.launchers.grouped import setup
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function
        setup(self)

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from experiments.launchers.grouped import launch
        return launch(self, job_overrides, initial_job_idx)
