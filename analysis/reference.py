"""Reference runs: the project's own sweep of a protocol, drawn dotted beneath a user's runs so that one look
says whether they reproduce it (issue 14). A reference set is committed as `results/reference/<name>/runs/`
(one run directory each, the layout of --runs) once the GPU sweep is published; none is there yet.

The matching rule lives here and nowhere else:
- `--reference auto` (the default, what `make plots` passes): the sets under `ROOT` whose runs name the same
  protocol(s) as yours (config.protocol.name, the `protocol` column). Among them one on the same data (`data_key`)
  comes first, then by name; a set on other data is still drawn, and every figure and the report say it differs.
  None when your runs name no protocol, or no set has theirs.
- `--reference DIR`: that directory of runs. Another protocol is refused: its curves follow another schedule
  (iterations, lr drops), so a difference would say nothing. Runs that name no protocol (runformat's minimal
  schema) take the reference's on trust, and the report says so.
- `--reference none`: no overlay.
A reference that shares a run directory with --runs is never drawn over itself (auto skips it; DIR is ignored,
with a note).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from . import inputs
from .load import final_rows, run_dirs, scan_runs
from .tables import summarise

# the checkout's committed references, wherever the command runs from (`make plots RESULTS=/elsewhere` included)
ROOT = Path(__file__).resolve().parents[1] / "results" / "reference"
AUTO, NONE = "auto", "none"


class ReferenceError(ValueError):
    """A --reference the user named cannot be used: one line, with the way out."""


@dataclass(frozen=True)
class Reference:
    name: str                 # the set's name: `paper-cifar10jpeg` for results/reference/paper-cifar10jpeg/runs
    runs_dir: Path            # as found or given
    frame: pd.DataFrame       # load.py's frame of its runs
    protocols: frozenset      # its runs' protocol names
    data: frozenset           # its runs' data_key values
    data_differs: bool        # its data is not the user's (the figures say "other data")
    protocol_checked: bool    # False: the user's runs name no protocol, so it was taken on trust

    def curve_rows(self, family: str, net: str) -> pd.DataFrame:
        """Every epoch row of the completed runs of one net (a published reference is complete; a run of it
        that is not stays out rather than pull the mean)."""
        f = self.frame
        return f[(f["family"] == family) & (f["net"] == net) & f["finished"].astype(bool)]

    def finals(self) -> pd.DataFrame:
        """One row per net, final errors over its completed runs (tables.summarise's columns)."""
        return summarise(self.frame[self.frame["finished"].astype(bool)])

    @property
    def label(self) -> str:
        """What a figure's legend calls it: `reference, paper-cifar10jpeg (other data)`."""
        return f"reference, {self.name}" + (" (other data)" if self.data_differs else "")


@dataclass(frozen=True)
class Choice:
    reference: Reference | None
    note: str = ""  # one line for the report when none is drawn but the user should know why (else "")


# ---- what a set of runs was trained on --------------------------------------------------------------

def protocols(frame: pd.DataFrame) -> frozenset:
    return frozenset(frame["protocol"].dropna().astype(str)) if "protocol" in frame else frozenset()


def data_key(row) -> str:
    """`imagefolder cifar10-jpeg.tar.gz (train 50,000 / test 10,000)`: the source, the archive's or folder's own
    name (the path before it differs from machine to machine: `.carry/` on the GPU, `../shared/datasets/` here)
    and the images a run used."""
    source = _text(row.get("data_source")) or "unknown source"
    root = _text(row.get("data_root"))
    sizes = [f"{k} {int(n):,}" for k in ("train", "val", "test") if (n := _count(row.get(f"{k}_size")))]
    return source + (f" {Path(root).name}" if root else "") + (f" ({' / '.join(sizes)})" if sizes else "")


def data_keys(frame: pd.DataFrame) -> frozenset:
    return frozenset(data_key(r) for _, r in final_rows(frame).iterrows())


# ---- choosing the reference -------------------------------------------------------------------------

def choose(option: str, frame: pd.DataFrame, runs_dir, root: Path | None = None) -> Choice:
    """`option`: --reference (`auto`, `none` or a directory); `frame`, `runs_dir`: the user's runs. Raises
    ReferenceError for a directory that cannot serve, before anything is written."""
    if option == NONE:
        return Choice(None)
    if option == AUTO:
        return _auto(frame, Path(runs_dir), ROOT if root is None else root)
    return _given(Path(option), frame, Path(runs_dir))


def _auto(frame: pd.DataFrame, runs_dir: Path, root: Path) -> Choice:
    sets = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")) if root.is_dir() else []
    if not sets:
        return Choice(None)  # nothing published: nothing to say
    ours, shown = protocols(frame), _shown(root)
    if not ours:
        return Choice(None, f"Reference runs under `{shown}` not drawn: these runs name no protocol to match.")
    found, seen = [], []
    for path in sets:
        if _shares_runs(path, runs_dir):
            continue  # these are the reference's own runs: never drawn over themselves
        candidate = _read(_shown(path), path.name, frame, ours)
        if candidate is None:
            continue
        seen.append(f"{path.name} ({', '.join(sorted(candidate.protocols)) or 'no protocol'})")
        if candidate.protocols == ours:
            found.append(candidate)
    if not found:
        there = f" (there: {'; '.join(seen)})" if seen else ""
        return Choice(None, f"No reference runs of protocol {_listed(ours)} under `{shown}`{there}.")
    # the same data first, then by name: sets are sorted by name and the sort is stable
    return Choice(sorted(found, key=lambda r: r.data_differs)[0])


def _given(path: Path, frame: pd.DataFrame, runs_dir: Path) -> Choice:
    way_out = "give a directory of runs (the layout of --runs, e.g. results/reference/<name>/runs), or --reference none"
    if not path.is_dir():
        raise ReferenceError(f"--reference {path}: no such directory; {way_out}")
    if _shares_runs(path, runs_dir):
        return Choice(None, f"`{path}` holds the same runs as --runs: not drawn over themselves.")
    ours = protocols(frame)
    reference = _read(path, _name(path), frame, ours)
    if reference is None:
        raise ReferenceError(f"--reference {path}: no readable runs there (no sub-directory with a metrics.csv "
                             f"that has epoch rows); {way_out}")
    if ours and reference.protocols != ours:
        raise ReferenceError(f"--reference {path}: its runs are protocol {_listed(reference.protocols)}, yours "
                             f"{_listed(ours)}: curves of another schedule cannot be compared; give a reference of "
                             f"protocol {_listed(ours)}, or --reference none")
    return Choice(reference)


def _read(path: Path, name: str, frame: pd.DataFrame, ours: frozenset) -> Reference | None:
    """`name`: the set's directory name, shown in legends and the report as text (inputs.shown)."""
    name = inputs.shown(name)
    found = scan_runs(path, warn=False)  # a reference's reading problems are its publisher's, not the user's
    if found.frame.empty:
        return None
    data = data_keys(found.frame)
    return Reference(name, path, found.frame, protocols(found.frame), data, data != data_keys(frame), bool(ours))


def _shares_runs(a: Path, b: Path) -> bool:
    """Whether two directories of runs hold a run directory in common: the same directory, `X` and `X/runs`,
    or a link to it."""
    mine = {d.resolve() for d in run_dirs(a)} if a.is_dir() else set()
    return bool(mine) and b.is_dir() and bool(mine & {d.resolve() for d in run_dirs(b)})


def _shown(path: Path) -> Path:
    """`results/reference/x` when under the working directory, as `make plots` runs it: a committed report names no
    machine's absolute paths."""
    try:
        return path.resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path


def _name(path: Path) -> str:
    """`results/reference/paper-cifar10jpeg/runs` and `results/reference/paper-cifar10jpeg` are both
    `paper-cifar10jpeg`."""
    path = path.resolve()
    return path.parent.name if path.name == "runs" else path.name


def _listed(names) -> str:
    return ", ".join(f"`{n}`" for n in sorted(names)) or "none"


def _text(value) -> str:
    return "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)


def _count(value) -> int:
    number = pd.to_numeric(value, errors="coerce")
    return 0 if pd.isna(number) else int(number)


# ---- the report: each net against the reference's -------------------------------------------------------

@dataclass(frozen=True)
class NetVsReference:
    """One net's final errors (mean over runs) and the reference's of the same net."""
    net: str
    train: float
    test: float
    n: int
    unfinished: bool      # ours come from unfinished runs only
    ref_train: float
    ref_test: float
    ref_n: int

    @property
    def train_diff(self) -> float:
        return self.train - self.ref_train

    @property
    def test_diff(self) -> float:
        return self.test - self.ref_test


def compare(table: pd.DataFrame, reference: Reference) -> tuple[list[NetVsReference], list[str]]:
    """`table`: the user's per-net table (tables.table6). -> (nets with a reference, in the table's order; the
    names of those without one). Nets match by family and name, so option B, `init.from` runs and other families
    meet only their own kind."""
    theirs = reference.finals().set_index(["family", "net"])
    found, missing = [], []
    for _, r in table.iterrows():
        key = (r["family"], r["net"])
        if key not in theirs.index:
            missing.append(str(r["net"]))
            continue
        t = theirs.loc[key]
        found.append(NetVsReference(str(r["net"]), float(r["train_err_mean"]), float(r["test_err_mean"]), int(r["n"]),
                                    bool(r["from_unfinished"]), float(t["train_err_mean"]), float(t["test_err_mean"]),
                                    int(t["n"])))
    return found, missing


def report_blocks(table: pd.DataFrame, frame: pd.DataFrame, reference: Reference | None) -> list:
    """The report's section comparing each net with the reference; nothing when there is none."""
    if reference is None:
        return []
    found, missing = compare(table, reference)
    text = (f"Reference runs: **{reference.name}** (`{inputs.shown(reference.runs_dir)}`, "
            f"protocol {_listed(reference.protocols)}), "
            "drawn dotted in the curves and as hollow markers against depth. Final errors (%) are means over "
            "completed runs (n); a difference is these runs' error minus the reference's, in points.")
    if reference.data_differs:
        text += (f" **The data differ**: the reference used {'; '.join(sorted(reference.data))}; these runs "
                 f"{'; '.join(sorted(data_keys(frame)))}.")
    if not reference.protocol_checked:
        text += (f" These runs name no protocol: the reference's {_listed(reference.protocols)} was taken on "
                 "trust.")
    blocks = [("h", 2, "Against the reference runs"), ("p", text)]
    if found:
        blocks.append(("table", ["net", "train err.", "reference", "diff. (points)", "test err.", "reference",
                                 "diff. (points)"],
                       [[c.net + (" †" if c.unfinished else ""), f"{c.train:.2f} (n={c.n})",
                         f"{c.ref_train:.2f} (n={c.ref_n})", f"{c.train_diff:+.2f}", f"{c.test:.2f} (n={c.n})",
                         f"{c.ref_test:.2f} (n={c.ref_n})", f"{c.test_diff:+.2f}"] for c in found]))
    if any(c.unfinished for c in found):
        blocks.append(("p", "† no completed run of this net: its errors are those of unfinished runs."))
    if missing:
        blocks.append(("p", f"No reference for: {', '.join(missing)}."))
    return blocks
