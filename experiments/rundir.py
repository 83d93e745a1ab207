"""A run directory and what lives in it: the stable name, the lock, run.json, metrics.csv, the checkpoint.

Every write that a reader could catch half-done goes through a temporary file and os.replace.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import subprocess
from pathlib import Path
from typing import Optional

import torch

IDENTITY_COLUMNS = ["arch", "depth", "residual", "shortcut", "seed", "protocol"]  # so each file stands alone
COLUMNS = ["epoch", "iteration", "lr", "train_loss", "train_err", "test_loss", "test_err", "val_loss", "val_err",
           "epoch_time_s"] + IDENTITY_COLUMNS
TABLES = {  # file -> columns: one row per epoch (metrics) or per epoch and layer (probes)
    "metrics.csv": COLUMNS,
    "layer_stats.csv": ["epoch", "layer", "name", "stage", "std"] + IDENTITY_COLUMNS,
    "grad_norms.csv": ["epoch", "layer", "name", "stage", "kind", "norm", "samples"] + IDENTITY_COLUMNS,
}

# Keys that say how a run is computed or where things live, not what it computes: they are left out of the
# directory name and may change between a run and its resumption.
NOT_IDENTITY = ("device", "data.dir", "data.download", "progress", "speed", "probes", "force")
# Keys the name already spells out (or that select where results go).
IN_NAME = ("depth", "residual", "seed", "protocol", "arch", "arch.name", "arch.units_per_stage")
SAFE = re.compile(r"^[A-Za-z0-9_.,+-]{1,24}$")


class RunError(Exception):
    """A problem with the run directory: the message says what and how to get out of it."""


def _key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def _excluded(key: str, keys) -> bool:
    return any(key == k or key.startswith(k + ".") for k in keys)


def run_name(depth: int, residual: bool, seed: int, arch: str, units: int, overrides) -> str:
    """`depth=56-residual=false-seed=0`, plus each other number-changing override (values that are not short
    and plain, such as paths, become a short hash)."""
    head = f"depth={depth}" if arch == "resnet_cifar" else f"{arch}-units={units}"
    name = f"{head}-residual={str(residual).lower()}-seed={seed}"
    kept = [o.lstrip("+~") for o in overrides if not _excluded(_key(o), NOT_IDENTITY + IN_NAME + ("hydra",))]
    for o in sorted(kept, key=lambda o: _key(o).split(".")):  # a group's choice before its keys
        key, _, value = o.partition("=")
        short = value if SAFE.match(value) else hashlib.sha1(value.encode()).hexdigest()[:8]
        name += f"-{key.split('.')[-1] if key.startswith('data.') else key}={short}"
    return name


def identity(config: dict) -> dict:
    """The flattened config minus the keys that do not change the numbers."""
    flat = {}

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, key + ".")
            elif not _excluded(key, NOT_IDENTITY):
                flat[key] = v
    walk(config, "")
    return flat


def config_diff(saved: dict, current: dict) -> list:
    a, b = identity(saved), identity(current)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


def atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def git_commit() -> Optional[str]:
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


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self.run_json = self.path / "run.json"
        self.metrics = self.path / "metrics.csv"
        self.checkpoint = self.path / "checkpoint.pt"
        self._lock_file = None

    # -- lock: flock is released by the kernel when the holder dies, so a killed run never blocks a rerun
    def lock(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        f = open(self.path / ".lock", "a+")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()
            raise RunError(f"{self.path} is in use by {holder}: wait for it to finish, or stop it first "
                           f"(a killed run leaves no stale lock)")
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        f.flush()
        self._lock_file = f

    def unlock(self) -> None:
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None

    def remove_if_empty(self) -> None:
        """After a run that failed before writing anything: leave no empty directory behind."""
        if self.path.is_dir() and {p.name for p in self.path.iterdir()} <= {".lock"}:
            (self.path / ".lock").unlink(missing_ok=True)
            self.path.rmdir()

    # -- run.json
    def read_info(self) -> Optional[dict]:
        if not self.run_json.exists():
            return None
        try:
            return json.loads(self.run_json.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise RunError(f"{self.run_json} is not valid JSON ({e}): fix or delete it (the checkpoint and "
                           f"metrics.csv beside it are kept)") from e

    def write_info(self, info: dict) -> None:
        atomic_write(self.run_json, json.dumps(info, indent=2, default=str) + "\n")

    # -- the CSVs: appended and flushed per epoch; rewritten whole from the checkpoint on resume, which drops
    # any row written after the last checkpoint (so every epoch appears exactly once)
    def write_table(self, name: str, rows: list, extra: dict) -> None:
        cols = TABLES[name]
        atomic_write(self.path / name, "".join([_csv_line(cols)] + [_csv_line(_cells({**r, **extra}, cols)) for r in rows]))

    def append_table(self, name: str, rows: list, extra: dict) -> None:
        path, cols = self.path / name, TABLES[name]
        new = not path.exists()
        with open(path, "a") as f:
            if new:
                f.write(_csv_line(cols))
            f.write("".join(_csv_line(_cells({**r, **extra}, cols)) for r in rows))
            f.flush()
            os.fsync(f.fileno())

    # -- checkpoint
    def save_checkpoint(self, state: dict) -> None:
        tmp = self.checkpoint.with_name(f".checkpoint.tmp{os.getpid()}")
        torch.save(state, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, self.checkpoint)

    def load_checkpoint(self) -> Optional[dict]:
        if not self.checkpoint.exists():
            return None
        try:
            # weights_only: tensors and plain containers only, no arbitrary unpickling
            return torch.load(self.checkpoint, map_location="cpu", weights_only=True)
        except Exception as e:
            raise RunError(f"checkpoint {self.checkpoint} is truncated or corrupt ({type(e).__name__}): move it "
                           f"aside to restart this run from scratch (metrics.csv will be rewritten), or restore "
                           f"a good copy") from e


def _cells(row: dict, columns: list) -> list:
    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return repr(v)  # shortest exact form: a resumed run's rows compare equal to an uninterrupted one's
        return str(v)
    return [fmt(row.get(c)) for c in columns]


def _csv_line(cells) -> str:
    import io
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()
