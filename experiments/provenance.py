"""What produced a run, for its run.json: the code's commit, the library versions, the device, the times."""
from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from pathlib import Path
from typing import Optional

import torch


@functools.lru_cache(maxsize=None)
def git_commit() -> Optional[str]:
    """The commit of the code this process loaded (`+dirty` with uncommitted changes). Read once per process:
    a long sweep outlives later commits. The entry point reads it at start-up, before any run."""
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    import torchvision
    out = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__}
    try:
        import hydra
        out["hydra"] = hydra.__version__
    except ImportError:  # the ML core runs without Hydra
        pass
    return out


def device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
