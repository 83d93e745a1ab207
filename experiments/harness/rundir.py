"""A run directory and what lives in it: the stable name, the lock, run.json, the CSVs, the checkpoint.

The format of each file is `runformat`'s; this module writes it. Every write that a reader could catch
half-done goes through a temporary file and os.replace, and a process only ever removes what it made.
"""
from __future__ import annotations

import csv
import errno
import fcntl
import hashlib
import io
import json
import math
import os
import re
import stat
from enum import Enum
from pathlib import Path
from typing import Optional

import torch

from experiments.data.datasets import CIFAR10_FINGERPRINT
from experiments.errors import UserError
from runformat import CHECKPOINT, LOCK, NOT_IDENTITY, RUN_JSON, TABLES, differing, excluded, identity

# Keys the name always spells first (the family's head, residual, seed) or that select where results go
# (`protocol`: results/<protocol>/runs/); a family adds its size keys (`arch.units_per_stage`).
IN_NAME = ("depth", "residual", "seed", "protocol", "arch", "arch.name")
SAFE = re.compile(r"^[A-Za-z0-9_.,+-]{1,24}$")  # a value spelled as it is; any other becomes a short hash
COMPONENT = re.compile(r"^[A-Za-z0-9_.,+=-]{1,200}$")  # what a run directory's name may be: one plain path component
TEMPORARY = re.compile(r"^\..*\.tmp(\d+)$")  # what atomic writes leave behind when a process is killed
SHORT_PREFIXES = ("data.", "protocol.")  # `-lr=0.01`, not `-protocol.lr=0.01` (each key spelled once either way)


class RunError(UserError):
    """A problem with the run directory: the message says what and how to get out of it."""


def override_key(override: str) -> str:
    return override.lstrip("+~").split("=", 1)[0]


def run_name(head: str, residual: bool, seed: int, overrides, size_keys=(), value=None,
             data: Optional[str] = None) -> str:
    """`depth=56-residual=false-seed=0`, then `-key=value` for each other key the overrides set that changes the
    numbers (runformat.identity), each once, sorted by key (a group's choice before its keys):
    `...-data=imagefolder-root=45b041e8-augment=none-lr=0.01`. `value(key)` gives the resolved value (so `1e-2` and
    `0.01` are one name; without it, the override's text); one that is not short and plain becomes a short hash of
    it. The data are named by their content: `data` is their fingerprint (data.data_fingerprint), spelled as
    `root=` + its first 8 hex digits for an image folder, whatever path names it. `head` is the family's
    (`depth=56`, `minimodel-units=3`). ValueError if the result is not one plain path component."""
    name = f"{head}-residual={str(residual).lower()}-seed={seed}"
    size = tuple(f"arch.{k}" for k in size_keys)
    given = {}
    for o in overrides:
        key = override_key(o)
        if key in IN_NAME + size or excluded(key, NOT_IDENTITY + ("hydra",)):
            continue
        text = o.partition("=")[2]
        resolved = value(key) if value else text
        given[key] = text if isinstance(resolved, dict) else resolved  # a group's choice (`data=imagefolder`) as typed
    if data and data != CIFAR10_FINGERPRINT:
        given["data.root"] = data[:8]
    shorts = [k[len(p):] for k in given for p in SHORT_PREFIXES if k.startswith(p)]
    for key in sorted(given, key=lambda k: k.split(".")):  # a group's choice before its keys
        v = given[key]
        if key == "init.from":
            name += f"-init={init_label(v if value else _unquoted(v))}"
            continue
        short = next((key[len(p):] for p in SHORT_PREFIXES if key.startswith(p)), key)
        if shorts.count(short) > 1 or short in given:  # two keys would read the same: spell both in full
            short = key
        text = _spelled(v)
        name += f"-{short.replace('/', '.')}={text if SAFE.match(text) else hashlib.sha1(text.encode()).hexdigest()[:8]}"
    if not COMPONENT.match(name) or name in (".", ".."):
        raise ValueError(f"the run directory name {name!r} is not one plain path component (letters, digits and "
                         f"_.,+=- only): check the family's name_head")
    return name


def _spelled(v) -> str:
    """A resolved value as the name spells it: `true`, `0.01`, `500,750`, `none`."""
    if isinstance(v, Enum):
        v = v.value
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, (list, tuple)):
        return ",".join(map(_spelled, v))
    return "null" if v is None else str(v)


def _unquoted(value: str) -> str:
    """An override's value as Hydra reads it: `'a=b'` and `a\\=b` are `a=b`."""
    quoted = len(value) >= 2 and value[0] == value[-1] and value[0] in "'\""
    return value[1:-1] if quoted else re.sub(r"\\(.)", r"\1", value)


def init_label(path: str) -> str:
    """`from-depth20-1a2b3c4d` for `init.from=PATH`: the depth of the run there (from its run.json) and a short hash of
    the path, since runs of one depth differ (seed, data); `from-1a2b3c4d` when that run cannot be read."""
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    try:
        depth = json.loads(read_regular(Path(path) / RUN_JSON)).get("depth")
    except (OSError, ValueError, RecursionError, AttributeError):
        depth = None
    return f"from-depth{depth}-{digest}" if isinstance(depth, int) and not isinstance(depth, bool) else f"from-{digest}"


def identity_columns(cfg, depth: int, init_depth: Optional[int] = None) -> dict:
    """The identity columns (runformat.IDENTITY_COLUMNS) of every CSV row a run writes."""
    return {"arch": cfg.arch.name, "depth": depth, "residual": cfg.residual, "shortcut": cfg.shortcut.value,
            "seed": cfg.seed, "protocol": cfg.protocol.name, "init_depth": init_depth}


def config_diff(saved: dict, current: dict) -> list:
    """The keys of the two resolved configs that change the numbers and differ (runformat.identity)."""
    return differing(identity(saved), identity(current))


def read_regular(path: Path) -> bytes:
    """The bytes of `path` if it is a regular file; OSError otherwise. A FIFO would make a plain open wait forever for a
    writer, and a link could point anywhere: neither is followed (O_NOFOLLOW, O_NONBLOCK, then fstat)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link, not a regular file", str(path)) from None
        raise
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(errno.EINVAL, f"not a regular file (a {_kind(mode)})", str(path))
        return f.read()


def _kind(mode: int) -> str:
    return ("FIFO" if stat.S_ISFIFO(mode) else "directory" if stat.S_ISDIR(mode) else "device"
            if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "socket" if stat.S_ISSOCK(mode) else "special file")


def atomic_write(path: Path, text: str) -> None:
    """`text` (UTF-8) into `path` whole or not at all. On failure (a full disk) the temporary file is removed before
    the OSError goes on: it would only take the room a rerun needs."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _short(e: OSError) -> str:
    return e.strerror or " ".join(str(e).split())[:200]


def run_dirs(path: Path) -> list:
    """`path` if it is a run directory, else the run directories directly under it."""
    if (path / RUN_JSON).exists() or not path.is_dir():
        return [path]
    return sorted(d for d in path.iterdir() if d.is_dir() and (d / RUN_JSON).exists())


class RunDir:
    def __init__(self, path):
        self.path = Path(path)
        self.run_json = self.path / RUN_JSON
        self.checkpoint = self.path / CHECKPOINT
        self._lock_file = None
        # The directory held nothing when this process locked it (made by it, or by Hydra just before): what is
        # in it is all this process's, so it may remove it again if the run ends before training anything.
        self.created = False
        self._opening = None  # the .lock file while lock() takes it

    # -- lock: flock is released by the kernel when the holder dies, so a killed run never blocks a rerun
    def lock(self) -> None:
        try:
            self.path.mkdir(parents=True)
            self.created = True
        except FileExistsError:
            if not self.path.is_dir():
                raise RunError(f"cannot use {self.path} as a run directory: it is a file; choose another "
                               f"hydra.run.dir") from None
        except OSError as e:
            raise RunError(f"cannot create the run directory {self.path} ({e.strerror}): choose another "
                           f"hydra.run.dir (or fix the parent's permissions)") from e
        try:
            self._take_lock()
        except BaseException:
            # a Ctrl-C between making the directory and holding its lock (a clean clone's make test saw it under load):
            # the directory goes as release(discard=True) would have removed it, unless somebody else holds the lock
            if self._opening is not None:  # opened, perhaps flocked, not yet recorded: ours to close
                self._opening.close()
            if self._lock_file is None:  # release's rule: a directory holding nothing but its .lock is this run's
                self._discard_unheld()
            raise
        finally:
            self._opening = None

    def _discard_unheld(self) -> None:
        """The run directory, when it holds nothing but a .lock, removed if that lock can be taken."""
        try:
            if any(p.name != LOCK for p in self.path.iterdir()):
                return
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                (self.path / LOCK).unlink(missing_ok=True)
            finally:
                os.close(fd)
            self.path.rmdir()
        except OSError:  # held by another process, or not ours to remove: left as it is
            pass

    def _take_lock(self) -> None:
        try:
            # a FIFO or a link named .lock is refused, never waited on or followed
            fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise OSError(errno.EINVAL, "its .lock is not a regular file")
            f = self._opening = os.fdopen(fd, "a+", encoding="utf-8")
        except OSError as e:
            raise RunError(f"cannot write in the run directory {self.path} ({_short(e)}): choose another "
                           f"hydra.run.dir (or move {LOCK} aside)") from e
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            f.seek(0)
            holder = f.read().strip() or "another process"
            f.close()  # refused: nothing here is ours, so nothing is touched
            raise RunError(f"{self.path} is in use by {holder}: wait for it to finish, or stop it first "
                           f"(a killed run leaves no stale lock)") from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()} on {os.uname().nodename}\n")
        f.flush()
        self._lock_file = f
        self.created = self.created or all(p.name == LOCK for p in self.path.iterdir())

    def unlock(self) -> None:
        if self._lock_file:
            self._lock_file.close()
            self._lock_file = None

    def release(self, discard: bool = False) -> None:
        """Unlock. With `discard`, first remove what this process wrote in a directory it created (a run that
        ended before training anything leaves nothing a rerun would trip over); never anything else."""
        if discard and self.created and self._lock_file:
            for p in self.path.iterdir():
                if p.name != LOCK and p.is_file():
                    p.unlink(missing_ok=True)
            (self.path / LOCK).unlink(missing_ok=True)  # still held: nobody else can have it
            self.unlock()
            try:
                self.path.rmdir()
            except OSError:  # another process has started writing here since: it is theirs now
                pass
        self.unlock()

    def clean_temporaries(self) -> list:
        """Remove the temporary files a killed writer left (`.checkpoint.tmp<pid>`, ...). Call with the lock held."""
        removed = []
        for p in self.path.iterdir():
            m = TEMPORARY.match(p.name)
            if m and int(m.group(1)) != os.getpid():
                p.unlink(missing_ok=True)
                removed.append(p.name)
        return removed

    # -- run.json
    def _read(self, path: Path, fix: str) -> Optional[bytes]:
        """The bytes of one of the run's files (regular files only), None if there is none; unreadable: one line."""
        try:
            return read_regular(path)
        except FileNotFoundError:
            return None
        except OSError as e:
            raise RunError(f"cannot read {path} ({_short(e)}): {fix}") from e

    def read_info(self) -> Optional[dict]:
        text = self._read(self.run_json, "move it aside (the checkpoint beside it says which configuration the run is)")
        if text is None:
            return None
        try:
            info = json.loads(text.decode("utf-8"))
        except (ValueError, RecursionError) as e:  # not JSON, not UTF-8, or nested too deep to parse
            why = "nested too deep" if isinstance(e, RecursionError) else " ".join(str(e).split())[:120]
            raise RunError(f"{self.run_json} is not valid JSON ({why}): fix or delete it (the checkpoint and "
                           f"metrics.csv beside it are kept)") from None
        if not isinstance(info, dict):
            raise RunError(f"{self.run_json} is not a JSON object: fix or delete it (the checkpoint and "
                           f"metrics.csv beside it are kept)")
        return info

    def write_info(self, info: dict) -> None:
        atomic_write(self.run_json, json.dumps(info, indent=2, default=str) + "\n")

    # -- the CSVs: appended and flushed per epoch; rewritten whole from the checkpoint on resume, which drops
    # any row written after the last checkpoint (so every epoch appears exactly once)
    def write_table(self, name: str, rows: list, extra: dict) -> None:
        cols = TABLES[name].columns
        atomic_write(self.path / name, "".join([_csv_line(cols)] + [_csv_line(_cells({**r, **extra}, cols)) for r in rows]))

    def append_table(self, name: str, rows: list, extra: dict) -> None:
        path, cols = self.path / name, TABLES[name].columns
        # O_NONBLOCK: a FIFO put there since is refused at once (no reader), never waited on; no link is followed
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK, 0o644)
        with os.fdopen(fd, "a", encoding="utf-8") as f:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise OSError(errno.EINVAL, "not a regular file", str(path))
            if os.fstat(fd).st_size == 0:
                f.write(_csv_line(cols))
            f.write("".join(_csv_line(_cells({**r, **extra}, cols)) for r in rows))
            f.flush()
            os.fsync(f.fileno())

    # -- checkpoint
    def save_checkpoint(self, state: dict) -> None:
        tmp = self.checkpoint.with_name(f".checkpoint.tmp{os.getpid()}")
        try:
            # the file is opened here, not by torch.save: a failed write (a full disk) must close it, or removing it
            # frees nothing while the traceback keeps torch's writer alive
            with open(tmp, "wb") as f:
                writes = _Writes(f)
                try:
                    torch.save(state, writes)
                except RuntimeError:
                    if writes.error:  # torch says "unexpected pos ..."; the cause is this (a full disk)
                        raise writes.error from None
                    raise
                f.flush()
                os.fsync(f.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)  # half a checkpoint on a full disk only takes the room a rerun needs
            raise
        os.replace(tmp, self.checkpoint)

    def load_checkpoint(self) -> Optional[dict]:
        data = self._read(self.checkpoint, "move it aside to restart this run from scratch (metrics.csv will be "
                                           "rewritten), or restore a good copy")
        if data is None:
            return None
        try:
            # weights_only: tensors and plain containers only, no arbitrary unpickling
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:
            raise RunError(f"checkpoint {self.checkpoint} is truncated or corrupt ({type(e).__name__}): move it "
                           f"aside to restart this run from scratch (metrics.csv will be rewritten), or restore "
                           f"a good copy") from e


class _Writes:
    """What torch.save writes to: the file, keeping the OSError of a failed write, which torch reports as an unrelated
    RuntimeError ("unexpected pos 166656 vs 166552")."""

    def __init__(self, f):
        self.f, self.error = f, None

    def write(self, data) -> int:
        try:
            return self.f.write(data)
        except OSError as e:
            self.error = e
            raise

    def flush(self) -> None:
        self.f.flush()


def host_copy(state):
    """`state` (nested dicts, lists and tensors) with every tensor copied to host memory, for writing while
    training goes on: a state_dict's tensors are the live ones, changed in place by the next step. Device
    tensors come over in one batch of non-blocking copies and one wait, not a sync each."""
    cuda = []

    def copy(v):
        if isinstance(v, torch.Tensor):
            if v.is_cuda:
                cuda.append(v.device)
                return v.detach().to("cpu", non_blocking=True)
            return v.detach().clone()
        if isinstance(v, dict):
            return {k: copy(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return type(v)(copy(x) for x in v)
        return v
    out = copy(state)
    for device in set(cuda):
        torch.cuda.synchronize(device)  # the non-blocking copies have landed
    return out


def _cells(row: dict, columns) -> list:
    def fmt(v):
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return ""
        if isinstance(v, float):
            return repr(v)  # shortest exact form: a resumed run's rows compare equal to an uninterrupted one's
        return str(v)
    return [fmt(row.get(c)) for c in columns]


def _csv_line(cells) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerow(cells)
    return buf.getvalue()
