"""What a file from a runs directory must be to be read, and what a value from it must be to be used: the reading
rules, one home for every reader (load.py's run.json and metrics.csv, and through load.py the probe and inspection
CSVs). Runs come from other people and machines (a colleague's runs, `--reference DIR`, an archive), so a file may be
anything; each rule either reads it or refuses it with one reason, and a refusal costs only that file.

- A file is read only if it is a regular file of at most `MAX_BYTES`: a FIFO, a device, a socket or a directory under
  a run file's name is refused without blocking (opened with O_NONBLOCK, checked on the open descriptor).
- Links: a run file may be a symbolic link only to a place inside its own run directory, and a run directory only to a
  place inside the directory of runs given (--runs, --reference); a link out of them is refused, never followed. The
  directory given may itself be a link: the user named it.
- Text is UTF-8 (a BOM is dropped; other bytes make the file unreadable); CRLF and CR line ends read as LF; a line
  with a NUL byte is dropped (a machine that crashed can leave a block of zeros at the end of a file).
- run.json is strict JSON (RFC 8259): no NaN or Infinity, every number finite, no key twice in one object, nesting
  no deeper than Python's reader allows. Anything else makes the whole file unreadable, with the reason.
- Each value is used only in the shape its key has (`runformat.RunInfo`): `text`, `texts`, `whole`, `number`,
  `timestamp`, `scalar` below return None (or nothing) for any other shape, so a wrong shape costs that key only.
- Names that become file names (a family's) pass `runformat.is_safe_name`; text shown in the report is one line
  (`visible`) of at most `TEXT_LIMIT` characters.
"""
from __future__ import annotations

import json
import math
import os
import re
import stat
from datetime import datetime
from pathlib import Path

# a paper run's largest file, ResNet-1202's grad_norms.csv, is about half of this (estimated, not measured: 165 epochs
# of 1,801 rows of about 110 bytes)
MAX_BYTES = 64 * 2**20
TEXT_LIMIT = 500        # characters of one text value from run.json (a title, a note, a device name)
MAX_WHOLE = 2**53       # whole numbers above this are not exact as floats (pandas' numeric columns)


class Unreadable(ValueError):
    """A file that is there but is not read: one line, the reason."""


def read_text(path: Path, within: Path) -> str:
    """The text of the run file `path` (inside the directory `within`). FileNotFoundError when it is not there;
    Unreadable, with the reason, when it is there but breaks a rule above."""
    path = Path(path)
    if path.is_symlink() and not inside(path, within):
        raise Unreadable("a link to a place outside its run directory: not followed")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise
    except OSError as err:  # no permission, a device on a nodev mount, a link loop, ...
        raise Unreadable(f"cannot be opened ({err.strerror})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise Unreadable(f"not a regular file (a {_kind(info.st_mode)}): not read")
    with os.fdopen(fd, "rb") as f:
        if info.st_size > MAX_BYTES:
            raise Unreadable(f"{info.st_size / 2**20:,.0f} MiB, more than the {MAX_BYTES // 2**20} MiB a run file "
                             "may have: not read")
        try:
            data = f.read(MAX_BYTES + 1)  # a file that grows while it is read stops at the limit all the same
        except OSError as err:
            raise Unreadable(f"cannot be read ({err.strerror})") from None
    if len(data) > MAX_BYTES:
        raise Unreadable(f"more than the {MAX_BYTES // 2**20} MiB a run file may have: not read")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise Unreadable(f"not UTF-8 text (byte {err.start})") from None
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _kind(mode: int) -> str:
    return ("FIFO" if stat.S_ISFIFO(mode) else "socket" if stat.S_ISSOCK(mode)
            else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "directory" if stat.S_ISDIR(mode)
            else "special file")


def inside(path: Path, within: Path) -> bool:
    """Whether `path`, its links followed, is `within` (links followed) or under it."""
    real, root = os.path.realpath(path), os.path.realpath(within)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def drop_nul_lines(text: str) -> tuple[str, int]:
    """`text` without the lines that hold a NUL byte, and how many there were."""
    if "\0" not in text:
        return text, 0
    lines = text.splitlines(keepends=True)
    kept = [line for line in lines if "\0" not in line]
    return "".join(kept), len(lines) - len(kept)


# ---- run.json ----------------------------------------------------------------------------------------------------

def parse_json(text: str):
    """Strict JSON, or Unreadable with the reason."""
    try:
        return json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys)
    except RecursionError:
        raise Unreadable("nested deeper than a JSON reader allows") from None
    except Unreadable:
        raise
    except json.JSONDecodeError as err:
        raise Unreadable(f"not JSON: {err.msg} at line {err.lineno} column {err.colno}") from None
    except ValueError as err:  # an integer of more digits than Python converts
        raise Unreadable(f"not JSON: {visible(str(err))[:80]}") from None


def _no_constant(name: str):
    raise Unreadable(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise Unreadable(f"the number {text[:20]} is out of range")
    return value


def _unique_keys(pairs: list) -> dict:
    seen = set()
    for key, _ in pairs:
        if key in seen:
            raise Unreadable(f"the key {visible(key)[:40]!r} twice in one object")
        seen.add(key)
    return dict(pairs)


# ---- values, each in the one shape its key has --------------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")


def visible(text: str) -> str:
    """`text` on one line: control characters (a newline, an escape), line separators and undecodable bytes of a file
    name (lone surrogates) written as their Python escapes (`\\n`, `\\x1b`, `\\udcff`)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape", "backslashreplace").decode("ascii"), text)


def shown(name) -> str:
    """A file or directory name (or path) as text: its bytes decoded as UTF-8 whatever the locale (under LC_ALL=C
    Python hands out undecodable bytes as surrogates), on one line."""
    return visible(os.fsencode(name).decode("utf-8", "backslashreplace"))


def text(value, limit: int = TEXT_LIMIT) -> str | None:
    """A string (or a number, written out) as one line of at most `limit` characters; None for any other shape."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        return None
    value = visible(str(value))
    return value if len(value) <= limit else value[:limit] + f"… ({len(value) - limit:,} more characters)"


def texts(value) -> list[str]:
    """A list of strings (numbers written out); anything else in it is left out, and a value that is not a list is
    no list."""
    return [t for t in map(text, value) if t is not None] if isinstance(value, list) else []


def whole(value, low: int = 0, high: int = MAX_WHOLE) -> int | None:
    """A whole number in [low, high] (20 or 20.0, not 20.7, "20", True or inf); else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
        return None
    return int(value) if low <= value <= high else None


def number(value) -> float | None:
    """A finite number; else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an int beyond float's range
        return None
    return value if math.isfinite(value) else None


def scalar(value):
    """A value a CSV cell could hold (a string, a number, a bool, None); None for a list or an object."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else None


def timestamp(value) -> str | None:
    """An ISO 8601 time as run.json writes it (`2026-11-23T10:00:00+00:00`); None for anything else."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        datetime.fromisoformat(value)
    except ValueError:
        return None
    return value
