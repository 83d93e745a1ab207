"""Every file the analysis writes (figures, table6.*, report.md, index.html), written so that a kill, a full disk or a
folder that vanishes never leaves half a file that could then be opened or committed. One home for writing, as
inputs.py is for reading:

- `write_bytes`, `write_text`, `write_csv`, `save_figure`: one file, written to a temporary file beside it
  (`.NAME.tmp.PID.HEX`), flushed to the disk, then renamed over the old one (os.replace, atomic on POSIX), so the path
  holds the old file or the whole new one. Text is UTF-8 whatever the locale.
- `staged(out_dir)`: a report's files together. Each is written into a hidden staging folder inside `out_dir`
  (`.report-staging.PID.HEX`), and only once every one is written are they renamed into place, in the order they
  were written (report.md and index.html, written last, arrive last). Any failure, SIGTERM or Ctrl-C on the way
  removes the staging folder and leaves `out_dir` as it was. A SIGKILL leaves the folder behind; the next report
  into the same `out_dir` removes the leftovers of processes that no longer run.
- `OutputError`: a write that failed, with the fix for its cause (`fix`).
"""
from __future__ import annotations

import errno
import os
import re
import secrets
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

STAGING = ".report-staging."
# what this module leaves only when killed: staging folders and temporary files, each with its writer's pid
LEFTOVER = re.compile(r"\.(?:report-staging|.+\.tmp)\.(\d+)\.[0-9a-z_]+")
# a cell a spreadsheet would run as a formula (=, +, -, @, and the tab and CR that hide one): kept as text
FORMULA = ("=", "+", "-", "@", "\t", "\r")


class OutputError(OSError):
    """A file the analysis could not write: where, why, and what to do (`fix`)."""

    def __init__(self, path, err: OSError):
        super().__init__(err.errno, err.strerror or str(err), str(path))
        self.path = Path(path)

    @property
    def fix(self) -> str:
        if self.errno in (errno.ENOSPC, errno.EDQUOT):
            return "free some space on that disk, or write to another folder"
        if self.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return "make it writable, or write to another folder"
        if self.errno in (errno.EEXIST, errno.ENOTDIR):
            return "a file stands where a folder must be: give a folder, or move that file"
        if self.errno == errno.ENOENT:
            return "the folder was removed while the files were written: run the command again"
        return "check the folder and run the command again"


def write_bytes(path, data: bytes) -> Path:
    return _atomic(path, lambda f: f.write(data))


def write_text(path, text: str) -> Path:
    # a name read under LC_ALL=C may hold surrogates for its bytes: written as escapes rather than failing
    return _atomic(path, lambda f: f.write(text.encode("utf-8", "backslashreplace")))


def write_csv(frame: pd.DataFrame, path, **to_csv) -> Path:
    """`frame` as CSV (no index, LF line ends); a text cell that a spreadsheet would run as a formula starts with `'`,
    since names and titles in it come from run files."""
    inert = frame.copy()
    for column in inert.columns:
        inert[column] = [f"'{v}" if isinstance(v, str) and v.startswith(FORMULA) else v for v in inert[column]]
    return write_text(path, inert.to_csv(index=False, lineterminator="\n", **to_csv))


def save_figure(fig, path, **savefig) -> Path:
    path = Path(path)
    return _atomic(path, lambda f: fig.savefig(f, format=path.suffix.lstrip("."), **savefig))


def _atomic(path, write) -> Path:
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        with open(tmp, "xb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        _remove(tmp)
        if isinstance(err, OSError) and not isinstance(err, OutputError):
            raise OutputError(path, err) from None
        raise
    return path


@contextmanager
def staged(out_dir):
    """Yields a staging folder to write the outputs into; on a normal exit every file in it is moved into `out_dir`.
    Raises OutputError when `out_dir` or a file cannot be written."""
    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        remove_leftovers(out_dir)
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGING}{os.getpid()}.", dir=out_dir))
        made = stage.stat().st_ino
    except OutputError:
        raise
    except OSError as err:
        raise OutputError(out_dir, err) from None
    try:
        try:
            yield stage
        except OSError as err:  # a write's (or a folder's) error, named by the file it was to be, not by the staging folder
            path = Path(err.path if isinstance(err, OutputError) else err.filename or "")
            if path != stage and path.parent != stage:
                raise
            raise OutputError(out_dir / path.name if path.parent == stage else out_dir, err) from None
        if not stage.is_dir() or stage.stat().st_ino != made:  # removed, and made again by a writer: files lost
            raise OutputError(out_dir, FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT)))
        for f in sorted(stage.iterdir(), key=lambda p: (p.stat().st_mtime_ns, p.name)):
            try:
                os.replace(f, out_dir / f.name)
            except OSError as err:
                raise OutputError(out_dir / f.name, err) from None
    finally:
        _remove(stage)


def remove_leftovers(out_dir: Path) -> list[Path]:
    """Remove the staging folders and temporary files in `out_dir` that killed processes left; -> what went."""
    gone = []
    for entry in out_dir.iterdir():
        match = LEFTOVER.fullmatch(entry.name)
        if match and not _running(int(match.group(1))):
            _remove(entry)
            gone.append(entry)
    return gone


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process with this pid: this one has none yet
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True  # another user's process (or no pid at all): not ours to judge
    return True


def _remove(path: Path) -> None:
    try:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink()
    except OSError:
        pass  # already gone (its folder removed), or cannot be: nothing more to do
