"""`hydra/launcher=concurrent`: a sweep's cells trained together in one process (see experiments.launchers.concurrent).

Hydra finds launchers in the `hydra_plugins` namespace package; the work is done in `experiments`.
"""
from dataclasses import dataclass
from typing import Sequence

from hydra.core.config_store import ConfigStore
from hydra.plugins.launcher import Launcher


@dataclass
class ConcurrentLauncherConf:
    _target_: str = "hydra_plugins.concurrent_launcher.ConcurrentLauncher"


ConfigStore.instance().store(group="hydra/launcher", name="concurrent", node=ConcurrentLauncherConf,
                             provider="degradation")


class ConcurrentLauncher(Launcher):
    def __init__(self) -> None:
        self.config = self.hydra_context = self.task_function = None

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.hydra_context, self.task_function = config, hydra_context, task_function

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int):
        from experiments.launchers.concurrent import launch
        return launch(self.hydra_context, self.config, job_overrides, initial_job_idx)
