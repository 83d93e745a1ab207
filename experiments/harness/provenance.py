"""What produced a run, for its run.json: the code's commit, the library versions, the device, the times."""
from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Optional

import torch


@functools.lru_cache(maxsize=None)
def git_commit() -> Optional[str]:
    """The commit of the code this process loaded (`+dirty` with uncommitted changes). Read once per process:
    a long sweep outlives later commits. The entry point reads it at start-up, before any run."""
    return commit_of(Path(__file__).resolve().parent)


def commit_of(where: Path) -> Optional[str]:
    """HEAD of the checkout holding `where`, `+dirty` when a tracked file outside `results/` differs from it.
    Changes under `results/` are runs (a sweep regenerating the committed ones deletes and rewrites them), not
    the code that made them."""
    try:
        text = {"cwd": where, "capture_output": True, "encoding": "utf-8", "timeout": 5}
        sha = subprocess.run(["git", "rev-parse", "HEAD"], **text)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":(top)",
                                ":(top,exclude)results"], **text)
        return sha.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return None


def versions() -> dict:
    # the installed version without importing torchvision: its import pulls in torch._dynamo, 6.5 of a quick
    # run's first 22 s on a 2-core CPU (measured), for a string
    try:
        tv = metadata.version("torchvision")
    except metadata.PackageNotFoundError:
        tv = None
    out = {"python": platform.python_version(), "torch": torch.__version__, "torchvision": tv}
    try:
        import hydra
        out["hydra"] = hydra.__version__
    except ImportError:  # the ML core runs without Hydra
        pass
    return out


def device_name(device: torch.device) -> str:
    """`NVIDIA H100 80GB HBM3`, or the CPU's model name (`AMD EPYC ...`) with the threads torch uses."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_model()} ({torch.get_num_threads()} threads)"


@functools.lru_cache(maxsize=None)
def cpu_model() -> str:
    try:  # Linux names the CPU here; platform.processor() is often empty there
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")
