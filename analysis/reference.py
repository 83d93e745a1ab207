"""Reference runs: a sweep of a protocol, drawn dotted beneath a user's runs so that one look says whether they
reproduce it (issue 14). A reference set is committed as `results/reference/<name>/runs/` (one run directory each,
the layout of --runs): the project's own GPU sweep once it is published (`paper-cifar10jpeg`), and a public
reproduction's published curves converted by `analysis.published` (`a-martyn-cifar10`, issue 30), whose run.json
says so (`published`).

The matching rule lives here and nowhere else:
- `--reference auto` (the default, what `make plots` passes): the sets under `ROOT` whose runs name the same
  protocol(s) as yours (config.protocol.name, the `protocol` column). Among them a finished set (every run reached its
  protocol's length) comes first: an unfinished one's curves stop early (`paper-cifar10jpeg` at 26,130 of 64,000
  iterations) and its ends are not the protocol's. Then one on the same data (`data_key`), then one of the project's
  own before a published one (ours measure the training error as yours do), then by name. A set on other data is still
  drawn, and every figure and the report say it differs, naming the reference's data; an unfinished set is still drawn
  when no finished one matches, and every figure and the report say where it stops; one passed over for a finished
  set that it would otherwise have come before is named in the report (`Choice.note`). None when your runs name no
  protocol, or no set has theirs.
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

from runformat import TrainErrMeasure

from . import inputs
from .load import final_rows, read_meta, run_dirs, scan_runs
from .tables import summarise

# the checkout's committed references, wherever the command runs from (`make plots RESULTS=/elsewhere` included)
ROOT = Path(__file__).resolve().parents[1] / "results" / "reference"
AUTO, NONE = "auto", "none"
# where the report compares each net's curves with the reference's, besides the end: the paper's lr drops (the ends of
# its first two stages), its end, and one point early in the first stage
POINTS = (10_000, 32_000, 48_000, 64_000)
# runformat.TrainErrMeasure in the report's words
MEASURES = {TrainErrMeasure.running: "the running error over each epoch's training mini-batches, in training mode",
            TrainErrMeasure.eval_after_epoch: "the error after each epoch, in eval mode, over the whole training set"}


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
    published: tuple = ()     # its runs' run.json `published` objects (runformat.PublishedInfo): another project's
                              # curves, converted; empty for the project's own runs
    finished: bool = True     # every run reached its protocol's length (load.completion)
    stops_at: int = 0         # its runs' last iteration (the latest of them)
    length: int | None = None  # its protocol's iterations (run.json), where known

    def curve_rows(self, family: str, net: str) -> pd.DataFrame:
        """Every epoch row of the completed runs of one net, as tables.summarise takes them: an unfinished run of a
        net that has a completed one stays out rather than pull the mean; a net with none (an unfinished set) has
        its unfinished ones."""
        f = self.frame
        rows = f[(f["family"] == family) & (f["net"] == net)]
        done = rows["finished"].astype(bool)
        return rows[done] if done.any() else rows

    def finals(self) -> pd.DataFrame:
        """One row per net, final errors over its completed runs, or its unfinished ones where it has none
        (tables.summarise's columns and rule)."""
        return summarise(self.frame)

    @property
    def source(self) -> str:
        """`a-martyn/resnet`: the repository that published its curves; "" for the project's own runs."""
        return ", ".join(dict.fromkeys(str(p.get("repository") or "unnamed source") for p in self.published))

    @property
    def data_names(self) -> str:
        return "; ".join(sorted({data_name(r) for _, r in final_rows(self.frame).iterrows()}))

    @property
    def label(self) -> str:
        """What a figure's legend calls it: `reference, paper-cifar10jpeg`, `reference, a-martyn/resnet, published
        (other data: original CIFAR-10)`, the data on a line of its own (one line ran across the next panel)."""
        name = f"{self.source}, published" if self.source else self.name
        return (f"reference, {name}" + (f"\n({self.say_unfinished()})" if not self.finished else "")
                + (f"\n(other data: {self.data_names})" if self.data_differs else ""))

    def say_unfinished(self) -> str:
        """`unfinished: stops at iteration 26,130 of 64,000`."""
        return f"unfinished: stops at iteration {self.stops_at:,}" + (f" of {self.length:,}" if self.length else "")


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


def data_name(row) -> str:
    """What a legend calls a run's images: `original CIFAR-10` (torchvision's files), else the archive's or folder's
    own name (`cifar10-jpeg.tar.gz`)."""
    source, root = _text(row.get("data_source")), _text(row.get("data_root"))
    if source == "cifar10":
        return "original CIFAR-10"
    return Path(root).name if root else source or "unknown data"


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
    # a finished set first, then the same data, then ours before a published set, then by name: sets are sorted by
    # name, the sort is stable
    best = sorted(found, key=lambda r: (not r.finished, r.data_differs, bool(r.published)))[0]
    # an unfinished set that would have come first but for that: the user should know it is there, and why not drawn
    passed = [r for r in found if not r.finished and (r.data_differs, bool(r.published)) < (best.data_differs,
                                                                                            bool(best.published))]
    note = ("Also there, not drawn: " + "; ".join(
        f"`{r.name}` ({'the same data, ' if not r.data_differs else ''}{r.say_unfinished()})" for r in passed)
        + f": a finished reference comes first (`--reference {_shown(root / passed[0].name / 'runs')}` draws "
          "it)." if passed else "")
    return Choice(best, note)


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
    published = tuple(p for d in run_dirs(path) if (p := read_meta(d, []).published) is not None)
    ends = final_rows(found.frame)
    length = pd.to_numeric(found.runs["iterations"], errors="coerce").max()
    return Reference(name, path, found.frame, protocols(found.frame), data, data != data_keys(frame), bool(ours),
                     published, bool(ends["finished"].astype(bool).all()), int(ends["iteration"].max()),
                     None if pd.isna(length) else int(length))


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
    """One net's final errors (mean over runs) and the reference's of the same net: its final errors too, or, where
    ours are unfinished and stop before the reference's end, its row at or before our last iteration (`at`): an end
    at 41% of the training beside one at 100% would measure mostly the training still missing."""
    net: str
    train: float
    test: float
    n: int
    unfinished: bool      # ours come from unfinished runs only
    ref_train: float
    ref_test: float
    ref_n: int
    at: int | None = None      # our last iteration, where the reference is taken; None: both sides' ends
    ref_at: int | None = None  # the reference's row used there (its latest, where its runs differ)

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
        t, ours = theirs.loc[key], (str(r["net"]), float(r["train_err_mean"]), float(r["test_err_mean"]), int(r["n"]),
                                    bool(r["from_unfinished"]))
        last = int(r["final_iteration"])
        if not r["from_unfinished"] or last >= t["final_iteration"]:  # both at their ends
            found.append(NetVsReference(*ours, float(t["train_err_mean"]), float(t["test_err_mean"]), int(t["n"])))
            continue
        rows = reference.curve_rows(*key)
        train, test = at_iteration(rows, "train_err", last), at_iteration(rows, "test_err", last)
        if train is None or test is None:  # ours stop before the reference's first logged epoch
            missing.append(str(r["net"]))
            continue
        found.append(NetVsReference(*ours, train.err, test.err, test.n, last, test.iteration))
    return found, missing


@dataclass(frozen=True)
class AtIteration:
    """One side's error of one net near one of POINTS: the mean, over the runs whose rows reach the point, of each
    run's row nearest to it at or before it."""
    iteration: int  # that row's iteration (the latest, where runs differ)
    err: float
    n: int


def at_iteration(rows: pd.DataFrame, column: str, point: int) -> AtIteration | None:
    """`rows`: one net's epoch rows (one or more runs). None when no run has a row at or before `point` and reaches
    it: a run that stopped before a point says nothing about it."""
    picked = []
    for _, run in rows.groupby("run"):
        before = run[run["iteration"] <= point]
        if run["iteration"].max() >= point and len(before):
            picked.append(before.sort_values("iteration").iloc[-1])
    if not picked:
        return None
    return AtIteration(int(max(r["iteration"] for r in picked)), float(pd.Series([r[column] for r in picked]).mean()),
                       len(picked))


@dataclass(frozen=True)
class NetAtPoints:
    """One net's error (`column`) against the reference's at each of POINTS."""
    net: str
    column: str
    ours: tuple    # AtIteration or None, one per point
    theirs: tuple


def at_points(frame: pd.DataFrame, reference: Reference, found: list[NetVsReference], family_of: dict,
              column: str) -> list[NetAtPoints]:
    """`found`: compare()'s nets; `family_of`: net -> family. The user's runs as tables.summarise takes them: the
    completed ones, or all where a net has none."""
    out = []
    for c in found:
        family = family_of[c.net]
        rows = frame[(frame["family"] == family) & (frame["net"] == c.net)]
        if rows["finished"].astype(bool).any():
            rows = rows[rows["finished"].astype(bool)]
        theirs = reference.curve_rows(family, c.net)
        out.append(NetAtPoints(c.net, column, tuple(at_iteration(rows, column, p) for p in POINTS),
                               tuple(at_iteration(theirs, column, p) for p in POINTS)))
    return out


def measures(frame: pd.DataFrame) -> tuple:
    """The training-error measures a set of runs recorded (run.json `train_err_measure`), "" for a run that did not
    say, in the order of its runs."""
    recorded = final_rows(frame)["train_err_measure"] if "train_err_measure" in frame else [""] * len(final_rows(frame))
    return tuple(dict.fromkeys(_text(v) for v in recorded))


def say_measures(ours: tuple, theirs: tuple) -> str:
    def words(values: tuple) -> str:
        return "; ".join(MEASURES[TrainErrMeasure(v)] if v in set(TrainErrMeasure) else f"`{v}`" if v else
                         "not recorded (run.json without `train_err_measure`)" for v in values)

    if ours == theirs and "" not in ours:
        return f"Training error: both sides record {words(ours)}."
    text = f"Training error: these runs record {words(ours)}; the reference {words(theirs)}."
    if "" in ours + theirs:
        return text + " Where one is not recorded, whether the two measure alike is not known."
    return text + (" These are not the same measure (the running error is taken in training mode while the weights "
                   "still change), so a training-error difference mixes the nets' difference with the measures'; "
                   "the test errors are measured alike.")


def report_blocks(table: pd.DataFrame, frame: pd.DataFrame, reference: Reference | None) -> list:
    """The report's section comparing each net with the reference; nothing when there is none."""
    if reference is None:
        return []
    found, missing = compare(table, reference)
    text = (f"Reference runs: **{reference.name}** (`{inputs.shown(reference.runs_dir)}`, "
            f"protocol {_listed(reference.protocols)}), "
            "drawn dotted in the curves and as hollow markers against depth. Final errors (%) are means over "
            "completed runs (n); a difference is these runs' error minus the reference's, in points.")
    sources = dict.fromkeys(tuple(_text(p.get(k)) for k in ("repository", "commit", "license", "url"))
                            for p in reference.published)
    for repository, commit, licence, url in sources:
        text += (f" **Published curves, not runs of this harness**: {repository or 'an unnamed source'}"
                 + (f" at commit `{commit[:7]}`" if commit else "") + (f" ({licence})" if licence else "")
                 + (f", {url}" if url else "") + ", converted by `analysis.published` (the set's README.md says how).")
    if not reference.finished:
        text += (f" **The reference is unfinished** ({reference.say_unfinished()} iterations): its last epochs are "
                 "not the end of its protocol, and its curves stop there.")
    if reference.data_differs:
        text += (f" **The data differ**: the reference used {'; '.join(sorted(reference.data))}; these runs "
                 f"{'; '.join(sorted(data_keys(frame)))}.")
    if not reference.protocol_checked:
        text += (f" These runs name no protocol: the reference's {_listed(reference.protocols)} was taken on "
                 "trust.")
    text += " " + say_measures(measures(frame), measures(reference.frame))
    short = [c for c in found if c.at is not None]
    if short:
        ends = reference.finals()["final_iteration"]
        text += (f" **These runs stop short of the reference's end** ({iterations_span({c.at for c in short})} of its "
                 f"{iterations_span({int(e) for e in ends})} iterations): "
                 + ("each net" if len(short) == len(found) else ", ".join(c.net for c in short))
                 + " is compared with the reference's row at or before its last iteration (the reference's "
                 f"{iterations_span({c.ref_at for c in short})}), not with the reference's end, which would measure mostly "
                 "the training still missing.")
    blocks = [("h", 2, "Against the reference runs"), ("p", text)]
    if found:
        ref = "reference" + (f" at {iterations_span({c.at for c in short})}" if short else "")
        blocks.append(("table", ["net", "train err.", ref, "diff. (points)", "test err.", ref, "diff. (points)"],
                       [[c.net + (" †" if c.unfinished else ""), f"{c.train:.2f} (n={c.n})",
                         f"{c.ref_train:.2f} (n={c.ref_n})", f"{c.train_diff:+.2f}", f"{c.test:.2f} (n={c.n})",
                         f"{c.ref_test:.2f} (n={c.ref_n})", f"{c.test_diff:+.2f}"] for c in found]))
    if any(c.unfinished for c in found):
        blocks.append(("p", "† no completed run of this net: its errors are those of unfinished runs."))
    if missing:
        blocks.append(("p", f"No reference for: {', '.join(missing)}."))
    if found:
        blocks += _points_blocks(frame, reference, found, table)
    return blocks


def _points_blocks(frame: pd.DataFrame, reference: Reference, found: list[NetVsReference],
                   table: pd.DataFrame) -> list:
    """The differences along the curves, at the POINTS both sides reach for some net (none for a protocol shorter
    than the first: then the finals above say it all)."""
    family_of = dict(zip(table["net"], table["family"]))
    by_column = {column: at_points(frame, reference, found, family_of, column) for column in ("test_err", "train_err")}
    kept = [i for i in range(len(POINTS)) if any(n.ours[i] and n.theirs[i] for ns in by_column.values() for n in ns)]
    if not kept:
        return []
    points = [POINTS[i] for i in kept]
    short = {c.at for c in found if c.at is not None}  # where ours stop short, their "end" is the reference's row there
    blocks = [("h", 3, "Along the curves"),
              ("p", "Each net's error minus the reference's, in points (yours vs the reference's, %), near "
                    f"{', '.join(f'{p:,}' for p in points)} iterations and "
                    + ("at the end" if not short else f"at your last iteration ({iterations_span(short)})")
                    + ". At each point each side's row "
                    "nearest to it at or before it is used (mean over the runs whose rows reach the point; – where "
                    "a side has none): the two sides' epochs end at different iterations.")]
    end = "end" if not short else f"at {iterations_span(short)}"
    header = ["net"] + [f"{p // 1000}k" if p % 1000 == 0 else f"{p:,}" for p in points] + [end]
    used = {}  # (point, side) -> the iterations of the rows used
    for (column, nets), what in zip(by_column.items(), ("Test error", "Training error")):
        rows = []
        for n, c in zip(nets, found):
            end = (c.test, c.ref_test) if column == "test_err" else (c.train, c.ref_train)
            rows.append([n.net, *(_diff(n.ours[i], n.theirs[i]) for i in kept),
                         f"{end[0] - end[1]:+.2f} ({end[0]:.2f} vs {end[1]:.2f})"])
            for i in kept:
                if n.ours[i] and n.theirs[i]:
                    used.setdefault((POINTS[i], "ours"), set()).add(n.ours[i].iteration)
                    used.setdefault((POINTS[i], "theirs"), set()).add(n.theirs[i].iteration)
        blocks += [("p", f"**{what}**:"), ("table", header, rows)]
    said = [f"near {p:,}: yours {iterations_span(used[(p, 'ours')])}, the reference's {iterations_span(used[(p, 'theirs')])}"
            for p in points]
    if short:
        said.append(f"at {iterations_span(short)}: the reference's {iterations_span({c.ref_at for c in found if c.at})}")
    blocks.append(("p", "Rows used (iteration): " + "; ".join(said) + "."))
    return blocks


def _diff(ours: AtIteration | None, theirs: AtIteration | None) -> str:
    if ours is None or theirs is None:
        return "–"
    return f"{ours.err - theirs.err:+.2f} ({ours.err:.2f} vs {theirs.err:.2f})"


def iterations_span(values) -> str:
    """`26,130`, or `25,740–26,130` where the values differ."""
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,}"
