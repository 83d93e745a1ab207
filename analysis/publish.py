"""`make reference` (`python -m analysis.publish`): a GPU sweep's files, as `scripts/gpu-session` packs them,
published as a reference set in `results/reference/<name>/`, finished or not, with the unfinished sweep's state
kept beside them so that any later GPU machine continues it (issue 28).

    python -m analysis.publish --from sweep.tar.gz [--resume DIR] [--name paper-cifar10jpeg] [--results results]
    python -m analysis.publish --unpack results/reference/paper-cifar10jpeg/resume --into RUNS
    python -m analysis.publish --handoff FILES --into .carry/resume

**Between two calls of one GPU session** (`make gpu-handoff FROM=<the first call's files>`): a lent machine is
given back 30 s after a call ends, and the next call may find a fresh one with no sweep on it, which would start
the sweep afresh. So the first call's parts, checked against its `sweep.tar.gz` as `--from` checks them, go into
`.carry/resume/` with a `state.json`, replacing what was there; carried with the next call, `gpu-session start`
continues from them on a fresh machine (a warm one keeps its own runs). `make reference` removes that folder:
once published, the committed state is the newest.

**Publish.** `sweep.tar.gz` holds `runs/<run>/` (run.json and the CSVs; no checkpoints) and `logs/`. Its runs go
to `results/reference/<name>/runs/`, merged with what an earlier archive of the same sweep put there: a CSV keeps
each row once (runformat's `key` of its table), the newer run's row where both have one; run.json and every other
file come from the newer run (more sessions, then further rows). Then the figures, Table 6 and the report are
drawn over the whole set (`analysis.report`), unfinished runs faint as anywhere else.

**The state.** With `--resume DIR` (the `resume.tar.part-*` files `collect` wrote beside `sweep.tar.gz`: the runs'
checkpoints and files, a gzip'd tar in 15 MiB parts), an unfinished sweep's parts are stored as they are in
`results/reference/<name>/resume/`, with `state.json` (each part's sha256, each run's last epoch), and committed:
`scripts/gpu-session start` on any fresh machine unpacks them (`--unpack`) and continues the sweep, with nothing
carried by hand. When every run of the set is finished, the state is removed.

**Files from elsewhere are data.** Before anything is written the archive and the parts are read whole and
checked: only regular files and folders, `runs/` and `logs/` only, one safe name per path component, no links,
no absolute paths, no `..`, sizes within bounds; the parts are one whole gzip'd tar whose runs are the archive's,
and match the sha256s `collect` recorded in the archive (`logs/resume.sha256`). Anything else is one line naming
the member or part, exit 2, and nothing written. Members are read, never extracted by tarfile. Every file is
written to a temporary name and renamed into place, so a kill leaves each file old or new, never half, and the
same command again finishes the job.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from runformat import METRICS, RUN_JSON, TABLES, Status

from . import outputs

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")  # a reference set's name: one plain path component
# a run directory's or a file's name: what experiments/harness/rundir.py writes (`depth=56-residual=false-seed=0-lr=0.01`)
COMPONENT = re.compile(r"^[A-Za-z0-9_.,+=@%-]{1,255}$")
PARTS = "resume.tar.part-*"
MANIFEST = "resume.sha256"  # in the archive's logs/: sha256 and name of each part packed with it
STATE = "state.json"
MAX_FILE = 256 << 20  # a run's CSV or a checkpoint is a few MB; more is not a sweep's file
MAX_TOTAL = 2 << 30


class PublishError(ValueError):
    """One line: what is wrong with the input, and the way out. Nothing has been written."""


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.publish",
        description="Publish a GPU sweep's archive (scripts/gpu-session collect) as results/reference/NAME/, "
                    "finished or not, with an unfinished sweep's state; or unpack a stored state to continue it.")
    parser.add_argument("--from", dest="archive", help="the sweep.tar.gz that scripts/gpu-session wrote")
    parser.add_argument("--resume", default="", help="the folder holding the resume.tar.part-* files written with it")
    parser.add_argument("--name", default="paper-cifar10jpeg", help="the reference set: results/reference/NAME")
    parser.add_argument("--results", default="results", help="the results folder holding reference/")
    parser.add_argument("--unpack", metavar="DIR", help="a stored state (results/reference/NAME/resume) to unpack")
    parser.add_argument("--into", metavar="RUNS", help="with --unpack: the sweep's runs folder (must not exist); "
                                                        "with --handoff: the folder the parts go to (replaced)")
    parser.add_argument("--handoff", metavar="FILES", help="a call's files (sweep.tar.gz and its resume parts): the "
                                                          "parts, checked, into --into for the next call to carry")
    args = parser.parse_args(argv)
    try:
        if args.unpack:
            if not args.into:
                raise PublishError("--unpack needs --into RUNS: the folder the sweep runs in")
            runs = unpack(Path(args.unpack), Path(args.into))
            print(f"unpacked the stored sweep state ({len(runs)} runs) into {args.into}")
            return 0
        if args.handoff:
            if not args.into:
                raise PublishError("--handoff needs --into DIR: the folder the next call carries (.carry/resume)")
            runs = handoff(Path(args.handoff), Path(args.into))
            print(f"{args.into}: the state of {len(runs)} runs, checked against {Path(args.handoff) / 'sweep.tar.gz'}; "
                  f"carry it with the next call (carry .carry) and it continues from them on any machine")
            return 0
        if not args.archive:
            raise PublishError("give --from sweep.tar.gz (make reference FROM=...): the archive scripts/gpu-session "
                               "collect wrote")
        published = publish(Path(args.archive), Path(args.resume) if args.resume else None, args.name,
                            Path(args.results))
    except PublishError as why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    for line in published.lines():
        print(line)
    from . import report  # the figures, Table 6 and report over the whole set
    return report.main(["--runs", str(published.runs_dir), "--out", str(published.runs_dir.parent)])


# ---- reading what came back, checked whole before anything is written -----------------------------------------

@dataclass
class Sweep:
    runs: dict            # run name -> {file name: bytes}
    top: dict             # files directly in runs/ (Hydra's multirun.yaml)
    manifest: dict | None  # part name -> sha256, from logs/resume.sha256 (None: an archive packed without one)


def read_archive(path: Path) -> Sweep:
    way_out = "give the sweep.tar.gz that scripts/gpu-session collect wrote"
    if not path.is_file():
        raise PublishError(f"FROM={path} is not a file: {way_out}")
    runs, top, manifest = {}, {}, None
    for member, data in _members(path, way_out):
        parts = member.name.split("/")
        if parts[0] == "logs":  # the session's logs: only the manifest is read
            if member.name == f"logs/{MANIFEST}" and data is not None:
                manifest = _manifest(data, path)
            continue
        if parts[0] != "runs":
            raise PublishError(f"{path}: member {member.name!r} is outside runs/ and logs/: {way_out}")
        if len(parts) == 2 and data is not None:
            top[parts[1]] = data
        elif len(parts) == 2:
            runs.setdefault(parts[1], {})
        elif len(parts) == 3 and data is not None:
            runs.setdefault(parts[1], {})[parts[2]] = data
        elif len(parts) > 2:
            raise PublishError(f"{path}: member {member.name!r} is deeper than runs/<run>/<file>: {way_out}")
    if not runs:
        raise PublishError(f"{path} holds no runs/ folder with runs in it: {way_out}")
    for run, files in runs.items():
        if METRICS.file not in files and RUN_JSON not in files:
            raise PublishError(f"{path}: runs/{run}/ has neither {METRICS.file} nor {RUN_JSON}: {way_out}")
    return Sweep(runs, top, manifest)


def _members(path: Path, way_out: str, fileobj=None):
    """(member, its bytes or None for a folder) of a gzip'd tar, every one checked: regular files and folders
    only, each path component a plain name, within the size limits. PublishError otherwise, or if the archive
    is not a whole gzip'd tar."""
    total, out = 0, []
    try:
        with tarfile.open(name=None if fileobj else path, fileobj=fileobj, mode="r:gz") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                name = name.rstrip("/")
                if name in ("", "."):
                    continue
                bad = _bad_path(name)
                if bad:
                    raise PublishError(f"{path}: member {member.name!r} {bad}: nothing was written")
                if not (member.isfile() or member.isdir()):
                    kind = "a link" if member.issym() or member.islnk() else "not a regular file or folder"
                    raise PublishError(f"{path}: member {member.name!r} is {kind}: nothing was written")
                if member.isfile() and member.size > MAX_FILE:
                    raise PublishError(f"{path}: member {member.name!r} has {member.size:,} bytes, more than a "
                                       f"sweep's file ({MAX_FILE:,}): nothing was written")
                total += member.size
                if total > MAX_TOTAL:
                    raise PublishError(f"{path} unpacks to more than {MAX_TOTAL:,} bytes: not a sweep's archive")
                member.name = name
                out.append((member, tar.extractfile(member).read() if member.isfile() else None))
    except (tarfile.TarError, EOFError, OSError, zlib.error) as e:
        raise PublishError(f"{path} is not a whole gzip'd tar ({type(e).__name__}: {' '.join(str(e).split())[:120]}): "
                           f"{way_out}") from None
    return out


def _bad_path(name: str) -> str:
    if name.startswith("/"):
        return "is an absolute path"
    for part in name.split("/"):
        if part in ("", ".", ".."):
            return "has an empty, '.' or '..' path component"
        if not COMPONENT.match(part):
            return f"has a path component {part!r} that is not a plain name ({COMPONENT.pattern})"
    return ""


def _manifest(data: bytes, path: Path) -> dict:
    out = {}
    for line in data.decode("utf-8", "replace").splitlines():
        digest, _, name = line.strip().partition("  ")
        if not (re.fullmatch(r"[0-9a-f]{64}", digest) and COMPONENT.match(name)):
            raise PublishError(f"{path}: logs/{MANIFEST} has a line that is not 'sha256  part': {line[:80]!r}")
        out[name] = digest
    return out


@dataclass
class State:
    parts: dict    # part file name -> bytes, as collect split them
    runs: dict     # run name -> its last epoch in the state (from its metrics.csv), None without rows
    members: list  # (tarinfo, bytes or None) of the tar the parts make, checked


def read_state(folder: Path, sweep: Sweep | None, way_out: str = "", expected: dict | None = None) -> State:
    """The resume parts in `folder`, checked: regular files, each the one recorded for them (`expected`, or the
    sha256s `collect` packed into the archive: `sweep.manifest`), one whole gzip'd tar of runs, the archive's."""
    way_out = way_out or ("give the folder holding every resume.tar.part-* written with this sweep.tar.gz (by the "
                          "same collect), or leave RESUME out to publish the runs without their state")
    if not folder.is_dir():
        raise PublishError(f"RESUME={folder} is not a folder: {way_out}")
    parts = {}
    for p in sorted(folder.glob(PARTS)):
        if not stat.S_ISREG(os.lstat(p).st_mode):
            raise PublishError(f"{p} is not a regular file (a link, a pipe, ...): {way_out}")
        if p.stat().st_size > MAX_FILE:
            raise PublishError(f"{p} has {p.stat().st_size:,} bytes, more than a part: {way_out}")
        parts[p.name] = p.read_bytes()
    if not parts:
        raise PublishError(f"{folder} holds no {PARTS} files: {way_out}")
    expected = expected if expected is not None else sweep.manifest if sweep is not None else None
    if expected is not None:
        digests = {name: hashlib.sha256(data).hexdigest() for name, data in parts.items()}
        if digests != expected:
            differ = sorted(n for n in digests.keys() | expected.keys() if digests.get(n) != expected.get(n))
            raise PublishError(f"the parts in {folder} are not the ones recorded with them (differ: "
                               f"{', '.join(differ)}): {way_out}")
    members = _members(folder / PARTS, way_out, io.BytesIO(b"".join(parts.values())))
    runs = {}
    for member, data in members:
        names = member.name.split("/")
        if len(names) > 2:
            raise PublishError(f"{folder}: member {member.name!r} is deeper than <run>/<file>: {way_out}")
        if len(names) == 2 and names[1] == METRICS.file and data is not None:
            runs[names[0]] = _last_epoch(data)
        elif len(names) == 2 or (len(names) == 1 and data is None):
            runs.setdefault(names[0], None)
    if not runs:
        raise PublishError(f"the parts in {folder} hold no runs: {way_out}")
    if sweep is not None and not set(runs) <= set(sweep.runs):
        raise PublishError(f"the parts in {folder} hold runs the archive does not "
                           f"({', '.join(sorted(set(runs) - set(sweep.runs)))}): {way_out}")
    return State(parts, runs, members)


def _last_epoch(data: bytes):
    rows = _rows(data)[1]
    epochs = [r.get("epoch") for r in rows if r.get("epoch")]
    return int(float(epochs[-1])) if epochs else None


# ---- merging into the set ------------------------------------------------------------------------------------

def _rows(data: bytes) -> tuple[list, list]:
    """(header, rows) of a CSV, without a last line that a kill cut short (no newline), as the analysis reads it."""
    text = data.decode("utf-8", "replace")
    if text and not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    reader = csv.DictReader(io.StringIO(text))
    rows = list(reader)
    return list(reader.fieldnames or []), rows


def _key(row: dict, key: tuple) -> tuple:
    out = []
    for k in key:
        v = row.get(k) or ""
        try:
            out.append((0, float(v), ""))
        except ValueError:
            out.append((1, 0.0, v))
    return tuple(out)


def merge_csv(name: str, older: bytes, newer: bytes) -> bytes:
    """Each row once (the table's key), the newer file's where both have it, in key order. A file of another
    layout (an older writer's columns) is replaced whole by the newer."""
    table = TABLES.get(name)
    h_old, r_old = _rows(older)
    h_new, r_new = _rows(newer)
    if table is None or h_old != h_new:
        return newer
    merged = {_key(r, table.key): r for r in r_old}
    merged.update({_key(r, table.key): r for r in r_new})
    out = io.StringIO()
    writer = csv.DictWriter(out, h_new, lineterminator="\n")
    writer.writeheader()
    writer.writerows(merged[k] for k in sorted(merged))
    return out.getvalue().encode("utf-8")


def progress(files: dict) -> tuple:
    """How far a run's files go, for choosing the newer of two copies: its sessions (one per start or resume),
    then its last row's iteration."""
    info = _json(files.get(RUN_JSON))
    sessions = info.get("sessions")
    rows = _rows(files[METRICS.file])[1] if METRICS.file in files else []
    last = max((float(r["iteration"]) for r in rows if _number(r.get("iteration"))), default=-1.0)
    return len(sessions) if isinstance(sessions, list) else 0, last


def merge_run(old: dict, new: dict) -> dict:
    """One run's files after publishing `new` over `old` (name -> bytes)."""
    if not old:
        return dict(new)
    newer, older = (new, old) if progress(new) >= progress(old) else (old, new)
    out = dict(older)
    out.update(newer)
    for name in older.keys() & newer.keys():
        if name.endswith(".csv"):
            out[name] = merge_csv(name, older[name], newer[name])
    return out


def finished(files: dict) -> bool:
    """Nothing left to train: run.json says `completed` (or `diverged`) and, completed, its rows reach its
    protocol's iterations (the analysis' rule, runformat)."""
    info = _json(files.get(RUN_JSON))
    try:
        status = Status(info.get("status"))
    except ValueError:
        return False
    if status == Status.diverged:
        return True
    iterations = ((info.get("config") or {}).get("protocol") or {}).get("iterations")
    rows = _rows(files[METRICS.file])[1] if METRICS.file in files else []
    last = max((float(r["iteration"]) for r in rows if _number(r.get("iteration"))), default=-1.0)
    return status == Status.completed and (not _number(iterations) or last >= float(iterations))


def _json(data) -> dict:
    try:
        value = json.loads(data) if data is not None else {}
    except (ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def _number(value) -> bool:
    try:
        float(value)
        return True
    except (TypeError, ValueError):
        return False


# ---- writing --------------------------------------------------------------------------------------------------

@dataclass
class Published:
    runs_dir: Path
    finished: list = field(default_factory=list)
    unfinished: list = field(default_factory=list)
    state: str = ""  # what happened to the resume state, in one sentence

    def lines(self) -> list:
        out = [f"published {len(self.finished) + len(self.unfinished)} runs into {self.runs_dir} "
               f"({len(self.finished)} finished, {len(self.unfinished)} unfinished)"]
        out += [f"  unfinished: {r}" for r in self.unfinished]
        return out + [self.state] if self.state else out


def publish(archive: Path, resume: Path | None, name: str, results: Path) -> Published:
    if not NAME.match(name):
        raise PublishError(f"NAME={name!r} is not a plain folder name (letters, digits, '.', '_', '-'; at most 64): "
                           f"choose another")
    sweep = read_archive(archive)
    state = read_state(resume, sweep) if resume is not None else None
    home = results / "reference" / name
    runs_dir = home / "runs"
    if runs_dir.exists() and not runs_dir.is_dir():
        raise PublishError(f"{runs_dir} is in the way (not a folder): move it aside and publish again")
    existing = {d.name: _read_run(d) for d in sorted(runs_dir.iterdir())
                if not d.name.startswith(".") and (d.is_dir() or d.name in sweep.runs)} if runs_dir.exists() else {}
    merged = {run: merge_run(existing.get(run, {}), files) for run, files in sweep.runs.items()}
    # everything checked: from here on, only writing
    for run, files in merged.items():
        for file_name, data in files.items():
            if existing.get(run, {}).get(file_name) != data:
                write_atomic(runs_dir / run / file_name, data)
    for file_name, data in sweep.top.items():
        write_atomic(runs_dir / file_name, data)
    every = {**existing, **merged}
    done = sorted(r for r, files in every.items() if finished(files))
    open_ = sorted(r for r in every if r not in done)
    out = Published(runs_dir, done, open_)
    folder = home / "resume"
    if not open_:
        if folder.exists():
            shutil.rmtree(folder)
            out.state = f"every run is finished: the stored sweep state in {folder} is removed"
    elif state is not None:
        _store_state(folder, state, archive)
        size = sum(len(d) for d in state.parts.values())
        out.state = (f"the sweep is unfinished: its state ({len(state.parts)} part(s), {size / 1e6:.1f} MB) is stored "
                     f"in {folder}: commit it, and scripts/gpu-session start continues from it on any machine")
    elif folder.exists():
        out.state = (f"no RESUME given: the state stored earlier in {folder} is kept; a continuation from it "
                     f"retrains what came after it")
    else:
        out.state = ("no RESUME given and none stored: the next GPU session starts these runs again (give RESUME=DIR "
                     "with the resume.tar.part-* files written with this archive to keep their state)")
    return out


def _read_run(run_dir: Path) -> dict:
    files = {}
    if not run_dir.is_dir() or run_dir.is_symlink():
        raise PublishError(f"{run_dir} is in the way (not a folder): move it aside and publish again")
    for p in sorted(run_dir.iterdir()):
        if p.name.startswith("."):
            continue  # a temporary file a killed publish left
        if not stat.S_ISREG(os.lstat(p).st_mode):
            raise PublishError(f"{p} is not a regular file (a link, a pipe, ...): move it aside and publish again")
        files[p.name] = p.read_bytes()
    return files


def _store_state(folder: Path, state: State, archive: Path) -> None:
    """The parts as they are, then state.json, in a new folder that replaces the old one by renames."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    new = folder.with_name(f".resume.new{os.getpid()}")
    old = folder.with_name(f".resume.old{os.getpid()}")
    shutil.rmtree(new, ignore_errors=True)
    new.mkdir()
    for part, data in state.parts.items():
        write_atomic(new / part, data)
    info = {"parts": {p: hashlib.sha256(d).hexdigest() for p, d in state.parts.items()},
            "runs": state.runs, "from": archive.name}
    write_atomic(new / STATE, (json.dumps(info, indent=2, sort_keys=True) + "\n").encode())
    if folder.exists():
        folder.rename(old)
    new.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    outputs.write_bytes(path, data)


# ---- continuing: a stored state back into a runs folder ---------------------------------------------------------

def unpack(folder: Path, runs: Path) -> list:
    """The stored state's runs, checked (state.json's sha256s where it is there: parts carried by hand in
    `.carry/resume/` have none; then as `read_state` checks parts), written into `runs`, which must not exist: a
    new folder renamed into place, so a kill leaves none or all of it."""
    way_out = f"restore {folder} from git (git checkout -- {folder}), or remove it to start the sweep afresh"
    if runs.exists():
        raise PublishError(f"{runs} exists: a sweep is already there (remove it to continue from {folder})")
    stored = folder / STATE
    expected = _json(stored.read_bytes()).get("parts") if stored.is_file() else None
    if stored.exists() and (not isinstance(expected, dict) or not expected):
        raise PublishError(f"{stored} is not a state's description (no parts listed): {way_out}")
    state = read_state(folder, None, way_out, expected)
    tmp = runs.with_name(f".{runs.name}.unpack{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    for member, data in state.members:
        target = tmp / member.name
        if data is None:
            target.mkdir(parents=True, exist_ok=True)
        else:
            write_atomic(target, data)
    runs.parent.mkdir(parents=True, exist_ok=True)
    tmp.rename(runs)
    return sorted(state.runs)


def handoff(files: Path, into: Path) -> list:
    """A call's resume parts, checked against the archive packed with them, stored in `into` (parts and state.json,
    replacing the folder by renames) for the next call to carry."""
    way_out = ("give the folder of one call's files (sweep.tar.gz and every resume.tar.part-* that call brought "
               "back); a call that ended with the sweep finished has no parts: publish it with make reference")
    archive = files / "sweep.tar.gz"
    if not archive.is_file():
        raise PublishError(f"{archive} is not there: {way_out}")
    sweep = read_archive(archive)
    if sweep.manifest is None:
        raise PublishError(f"{archive} records no resume parts (logs/{MANIFEST}): {way_out}")
    state = read_state(files, sweep, way_out)
    _store_state(into, state, archive)
    return sorted(state.runs)


if __name__ == "__main__":
    sys.exit(main())
