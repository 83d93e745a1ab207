"""Files -> one tidy frame: every epoch row of every run, with the run's metadata as columns.

A runs directory holds one sub-directory per run with `metrics.csv` (one row per epoch) and
`run.json` (status, family, parameter count, resolved config, provenance); `runformat` says what each
file holds. Directory names are never parsed: everything comes from the files. A run that is being
written, was killed mid-line or has a corrupt `run.json` must not stop the report, so each problem is
recorded and the rest is kept. What a file and a value must be to be read at all is `inputs.py`'s; the
rules for a table's rows are `read_table`'s.

The public pieces, which `probes_figures` and `inspection` read their own files with: `run_dirs`,
`run_name`, `has_files`, `read_meta`, `read_csv`/`read_table`, `name_nets`, `from_scratch`.
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from runformat import CONSTRUCTED, METRICS, PAPER_FAMILY, RUN_JSON, Status, Table, is_safe_name, recipe

from . import families, inputs
from .inputs import Unreadable, shown, text, visible

# what a name that becomes a file name may be, as the report says it (runformat.SAFE_NAME)
SAFE_NAME_RULE = "letters, digits and _ . -, at most 64, not starting with . or -"

# per-run columns the frame gets from run.json, beside the metrics.csv columns
RUN_COLUMNS = ["status", "finished", "family", "family_label", "family_title", "net", "num_params"]


@dataclass
class RunSet:
    frame: pd.DataFrame  # one row per epoch of every readable run
    runs: pd.DataFrame   # one row per run directory, readable or not
    problems: list[str] = field(default_factory=list)  # what was skipped or repaired, and why
    families: dict = field(default_factory=dict)       # arch name -> Family, for every family named
    variants: dict = field(default_factory=dict)       # run -> how its recipe differs (families.recipe_variants)


@dataclass
class RunMeta:
    """What run.json says about one run, as the reader needs it."""
    status: str                 # a `Status` value, or "unknown" without a readable run.json
    family: str | None          # the arch name: config.arch.name, else family.name, else the paper's; None when
                                # run.json names one that is not a safe name (runformat.is_safe_name)
    family_info: dict | None    # run.json's `family` object, when it has one: its name, label and title as read
    iterations: int | None      # config.protocol.iterations: where a completed run's rows must reach
    fallback: dict              # model columns for CSV rows that lack them
    columns: dict               # per-run columns for the frame (provenance, sizes, ...)
    problem: str = ""           # "run.json missing" / "run.json unreadable (not JSON: ...)"
    unchecked: bool = False     # run.json gives protocol.iterations in a shape that cannot be read: not finished
    notes: list = field(default_factory=list)  # run.json's `notes`: what a reader must see beside the numbers
    message: str | None = None                 # run.json's `message`: why it stopped, and what to do
    init: dict = field(default_factory=dict)   # run.json's `init` as read: run, depth, start (CONSTRUCTED's numbers)
    inspection: dict | None = None             # run.json's `inspection` as read: status, notes
    published: dict | None = None              # run.json's `published` as read: its text fields (PublishedInfo)
    info: dict = field(default_factory=dict)  # run.json itself (a reader of a key takes it through inputs.py)


def load_runs(runs_dir) -> pd.DataFrame:
    return scan_runs(runs_dir).frame


def scan_runs(runs_dir, warn: bool = True) -> RunSet:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return RunSet(_empty_frame(), _runs_table([]), [f"{shown(runs_dir)} does not exist"])
    frames, summaries = [], []
    problems = [f"{run_name(d)}: a link to a place outside {shown(_parent(runs_dir))}: not followed"
                for d in _subdirs(_parent(runs_dir)) if not inputs.inside(d, _parent(runs_dir))]
    for run_dir in run_dirs(runs_dir):
        try:
            rows, summary, run_problems = read_run(run_dir)
        except Exception as err:  # the last guard: whatever breaks one run costs only that run
            rows, run_problems = None, [f"not read ({err.__class__.__name__}: {visible(str(err))[:200]})"]
            summary = {"run": run_name(run_dir), "status": "unknown", "finished": False, "stopped_short": False,
                       "family": None, "family_info": None, "problem": run_problems[0], "unreadable": run_problems[0]}
        problems += [f"{run_name(run_dir)}: {p}" for p in run_problems]
        summaries.append(summary)
        if rows is not None:
            frames.append(rows)
    variants, kept_apart = families.recipe_variants((s["run"], s["family"], s.pop("recipe", None)) for s in summaries)
    problems += kept_apart
    if warn:
        for p in problems:
            warnings.warn(p, stacklevel=2)
    declared = [(s["family"], s.pop("family_info")) for s in summaries]
    found = families.resolve((name, info) for name, info in declared if name is not None)
    frame = name_nets(pd.concat(frames, ignore_index=True), found, variants) if frames else _empty_frame()
    runs = _runs_table(summaries)
    runs["family_label"] = [found[f].label if f in found else None for f in runs["family"]]
    runs["family_title"] = [found[f].title if f in found else None for f in runs["family"]]
    nets = frame.groupby("run")["net"].last() if len(frame) else pd.Series(dtype=object)
    runs["net"] = runs["run"].map(nets)
    return RunSet(frame, runs, problems, found, variants)


def run_dirs(runs_dir) -> list[Path]:
    """Every visible sub-directory of `runs_dir` (or of `runs_dir/runs`, so that results/quick works as
    well as results/quick/runs). One with neither file is a run that died before writing anything: it
    is listed as a problem, not silently ignored. A link to a directory outside is not one (inputs.py)."""
    parent = _parent(runs_dir)
    return [d for d in _subdirs(parent) if inputs.inside(d, parent)]


def _parent(runs_dir) -> Path:
    runs_dir = Path(runs_dir)
    if not any(map(has_files, _subdirs(runs_dir))) and (runs_dir / "runs").is_dir():
        return runs_dir / "runs"
    return runs_dir


def _subdirs(parent: Path) -> list[Path]:
    return sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith("."))


def run_name(run_dir: Path) -> str:
    """A run's name in the report: its directory's name, as text on one line (inputs.shown)."""
    return shown(Path(run_dir).name)


def has_files(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS.file).exists() or (Path(run_dir) / RUN_JSON).exists()


def read_run(run_dir: Path):
    """-> (epoch rows or None, one-line summary dict, list of problems)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    if not has_files(run_dir):
        problems.append("neither run.json nor metrics.csv: the run wrote nothing yet "
                        "(starting, or died before its first write)")
        return None, {"run": run_name(run_dir), "status": "unknown", "finished": False, "stopped_short": False,
                      "family": None,
                      "family_info": None, "problem": problems[0],
                      "unreadable": "neither run.json nor metrics.csv"}, problems
    meta = read_meta(run_dir, problems)
    rows = read_csv(run_dir, METRICS, meta.fallback, problems)
    if rows is not None and rows.empty:
        problems.append("metrics.csv has no complete epoch rows")
    summary = {"run": run_name(run_dir), "status": meta.status, "finished": False, "stopped_short": False,
               "family": meta.family, "notes": meta.notes, "message": meta.message,
               "family_info": meta.family_info, "iterations": meta.iterations,
               "recipe": _recipe(meta.info)}
    if rows is None or rows.empty:
        # the reasons in short, for a report that found nothing readable at all
        summary["unreadable"] = ", ".join(filter(None, [meta.problem, problems[-1]]))
        summary["problem"] = "; ".join(problems)
        return None, summary, problems
    rows = rows.sort_values(["iteration", "epoch"], kind="stable").reset_index(drop=True)
    last = rows.iloc[-1]
    finished, short = completion(meta.status, last["iteration"], meta.iterations)
    finished = finished and not meta.unchecked
    rows.insert(0, "run", run_name(run_dir))
    for key, value in meta.columns.items():
        rows[key] = value
    rows["status"], rows["finished"] = meta.status, finished
    rows["session_started_at"] = session_starts(meta.info, rows["iteration"])
    summary.update(finished=finished, stopped_short=short, seed=last["seed"], epochs=len(rows),
                   iteration=last["iteration"], train_err=last["train_err"], test_err=last["test_err"],
                   problem="; ".join(problems))
    return rows, summary, problems


def completion(status: str, last_iteration, iterations) -> tuple[bool, bool]:
    """-> (finished, stopped short). A run is finished only if run.json says `completed` and its rows
    reach its protocol's iterations: a `completed` run whose rows stop short (a metrics.csv cut back, or
    copied before its last epoch) would otherwise put its early, higher error into the means."""
    short = (status == Status.completed and iterations is not None
             and not pd.isna(last_iteration) and last_iteration < iterations)
    return status == Status.completed and not short, bool(short)


def read_meta(run_dir: Path, problems: list[str]) -> RunMeta:
    """run.json, as much of it as is there: any key may be missing or of another shape (older or other
    writers), and each is taken only in its own shape (inputs.py); its problems are appended to `problems`."""
    problem = ""
    try:
        info = inputs.parse_json(inputs.read_text(Path(run_dir) / RUN_JSON, run_dir))
        if not isinstance(info, dict):
            raise Unreadable(f"{_quoted(info) if isinstance(info, list) else 'a JSON ' + _JSON_KINDS[type(info)]}, "
                             "not an object")
    except FileNotFoundError:
        problem, info = "run.json missing", {}
        problems.append(f"{problem}: status unknown, treated as unfinished")
    except Unreadable as why:
        problem, info = f"run.json unreadable ({why})", {}
        problems.append(f"{problem}: status unknown, treated as unfinished")
    config = _dict(info, "config")
    data, protocol = _dict(config, "data"), _dict(config, "protocol")
    versions, sizes = _dict(info, "versions"), _dict(info, "data_sizes")
    arch = config.get("arch")
    arch = arch.get("name") if isinstance(arch, dict) else arch
    family_info = _family_info(info.get("family"), problems)
    # the minimal schema: a run that names no family is one of the paper's nets
    family = next((n for n in (arch, (family_info or {}).get("name")) if n not in (None, "")), PAPER_FAMILY)
    if not is_safe_name(family):
        problems.append(f"run.json names its family {_quoted(family)}, not one safe name ({SAFE_NAME_RULE}): "
                        "rows without a safe `arch` of their own are left out; rename the family")
        family = None
    iterations = inputs.whole(protocol.get("iterations"), low=1)
    if iterations is None and protocol.get("iterations") is not None:
        problems.append(f"run.json's config.protocol.iterations is {_quoted(protocol.get('iterations'))}, not a "
                        "whole number: where the run should end is unknown, so it counts as unfinished")
    init = _init(info.get("init"))
    fallback = {"arch": family, "depth": inputs.scalar(config.get("depth", info.get("depth"))),
                "residual": inputs.scalar(config.get("residual")), "shortcut": inputs.scalar(config.get("shortcut")),
                "seed": inputs.scalar(config.get("seed")), "protocol": text(protocol.get("name")),
                "init_depth": init.get("depth")}
    columns = {
        "num_params": inputs.whole(info.get("num_params")),
        "data_description": text(info.get("data_description")),
        "data_source": text(data.get("source")),
        "data_root": text(data.get("root")),  # which image folder or archive (reference.data_key matches on its name)
        # data_sizes: what the run actually used; the config's sizes may be null (= all)
        "train_size": inputs.whole(sizes.get("train", data.get("train_size"))),
        "val_size": inputs.whole(sizes.get("val", data.get("val_size"))),
        "test_size": inputs.whole(sizes.get("test", data.get("test_size"))),
        "protocol_name": text(protocol.get("name")),
        "protocol_iterations": iterations,
        "train_err_measure": text(info.get("train_err_measure"), 40),  # runformat.TrainErrMeasure; older runs omit it
        # a resumed run may have trained on several machines or commits: each, in order (run.json's sessions)
        "device_name": _over_sessions(info, "device_name"),
        "git_commit": _over_sessions(info, "git_commit"),
        "python_version": text(versions.get("python")),
        "torch_version": text(versions.get("torch")),
        "torchvision_version": text(versions.get("torchvision")),
        "started_at": text(info.get("started_at")),
        "ended_at": text(info.get("ended_at")),
    }
    inspection = info.get("inspection")
    inspection = {"status": text(inspection.get("status"), 40), "notes": inputs.texts(inspection.get("notes"))} \
        if isinstance(inspection, dict) else None
    return RunMeta(status=text(info.get("status"), 40) or "unknown", family=family, family_info=family_info,
                   iterations=iterations, fallback=fallback, columns=columns, problem=problem, info=info, init=init,
                   inspection=inspection, published=_published(info.get("published")),
                   notes=inputs.texts(info.get("notes")), message=text(info.get("message")),
                   unchecked=iterations is None and protocol.get("iterations") is not None)


_JSON_KINDS = {str: "string", int: "number", float: "number", bool: "true/false", type(None): "null"}


def _quoted(value) -> str:
    """A value from a file in a problem line: short, on one line; a list or an object by its shape."""
    if isinstance(value, (list, dict)):
        return "a JSON list" if isinstance(value, list) else "a JSON object"
    return repr(visible(str(value)))[:80]


def _family_info(value, problems: list[str]) -> dict | None:
    """run.json's `family` object as read: a name and label only if each is one safe name (they become file and net
    names), a title only as one line of text."""
    if not isinstance(value, dict) or not value:
        return None
    info = {"name": value.get("name"), "title": text(value.get("title"), 200)}
    label = value.get("label")
    if is_safe_name(label):
        info["label"] = label
    elif label is not None:
        problems.append(f"run.json's family.label {_quoted(label)} is not one safe name ({SAFE_NAME_RULE}): the "
                        "family's nets are named by its name instead")
    return {k: v for k, v in info.items() if v is not None}


def _published(value) -> dict | None:
    """run.json's `published` (another project's curve, runformat.PublishedInfo) as read: its text fields only."""
    if not isinstance(value, dict):
        return None
    return {k: t for k, v in value.items() if isinstance(k, str) and (t := text(v)) is not None}


def _init(value) -> dict:
    """run.json's `init` (a run started from a shallower one) as read: the source run's name, its depth, and the
    constructed net's numbers before the first step (CONSTRUCTED's columns, finite numbers only)."""
    if not isinstance(value, dict):
        return {}
    init = {"run": text(value.get("run")), "depth": inputs.whole(value.get("depth"), low=1)}
    start = value.get("start")
    if isinstance(start, dict):
        numbers = {k: inputs.number(start.get(k)) for k in CONSTRUCTED.numeric if k in start}
        init["start"] = {k: v for k, v in numbers.items() if v is not None}
    return init


def _recipe(info: dict) -> dict:
    """runformat.recipe of run.json's config, each value taken as the rules take text: a value becomes part of a net's
    name (`ResNet-20 (lr=0.01)`, families.recipe_variants) when its run was trained otherwise than its family's."""
    return {k: _short(v) for k, v in recipe(_dict(info, "config"), text(info.get("data_fingerprint"))).items()}


def _short(value):
    """A number, a bool, None or a short list of numbers as it is (milestones); anything else one line of text of at
    most 40 characters."""
    if value is None or isinstance(value, (int, float, bool)):
        return value
    if isinstance(value, list) and len(value) <= 8 and all(isinstance(v, (int, float)) for v in value):
        return value
    return text(value if isinstance(value, str) else str(value), 40)


def _over_sessions(info: dict, key: str):
    """`key`'s values over the run's sessions and run.json's top level (the last session's), in order, without
    repeats: one value as it is, several joined by " then "; None when none is recorded."""
    sessions = info.get("sessions") if isinstance(info.get("sessions"), list) else []
    values = []
    for v in [s.get(key) for s in sessions if isinstance(s, dict)] + [info.get(key)]:
        v = text(v) if isinstance(v, str) else None
        if v and v not in values:
            values.append(v)
    return " then ".join(values) if values else None


def _dict(parent: dict, key: str) -> dict:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def read_csv(run_dir: Path, table: Table, fallback: dict, problems: list[str]) -> pd.DataFrame | None:
    """One of a run's CSVs (`table.file`) through `read_table`; None, with the reason in `problems`,
    when the file is missing or cannot be read."""
    try:
        content = inputs.read_text(Path(run_dir) / table.file, run_dir)
    except FileNotFoundError:
        problems.append(f"{table.file} missing")
        return None
    except Unreadable as why:
        problems.append(f"{table.file} unreadable ({why})")
        return None
    except OSError as err:
        problems.append(f"{table.file} unreadable ({err.__class__.__name__})")
        return None
    return read_table(content, table, fallback, problems)


def read_table(content: str, table: Table, fallback: dict, problems: list[str]) -> pd.DataFrame | None:
    """A run's CSV, read as tolerantly as a half-written file needs and as strictly as a file from elsewhere needs.
    Each rule drops or empties what it must and says so in `problems`:
    - a cut-off last line, a malformed line, a line with a NUL byte: dropped;
    - model columns a writer omitted come from run.json;
    - a cell that is not what its column holds is empty: not a number, not finite (inf), a count or index that
      is not a whole number >= 0 (`table.whole`: epoch 1.5, depth 20.7), an error outside 0-100 % (`table.percent`);
    - a row without a required value, or whose family name (`arch`) is not one safe name, is dropped;
    - a repeated key keeps the later row (a resumed run may log an epoch twice); in metrics.csv a row followed by one
      at or before its iteration was superseded (a writer that resumed or started over), and epochs must grow with
      the iteration."""
    name = table.file
    content, nul = inputs.drop_nul_lines(content)
    if nul:
        problems.append(f"{name}: {nul} line(s) with NUL bytes dropped")
    # A run killed mid-write leaves a last line without its newline: its numbers may be cut short.
    if content and not content.endswith("\n") and content.count("\n") >= 1:
        content = content[: content.rfind("\n") + 1]
        problems.append(f"{name} truncated: incomplete last line dropped")
    bad_lines = []
    try:
        # every cell as the text it is: the rules below, not pandas' guesses, decide what it means
        rows = pd.read_csv(io.StringIO(content), engine="python", dtype=object,
                           on_bad_lines=lambda line: bad_lines.append(line))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        problems.append(f"{name} unparsable ({err.__class__.__name__})")
        return None
    if bad_lines:
        problems.append(f"{name}: {len(bad_lines)} malformed line(s) dropped")
    rows.columns = [visible(str(c)) for c in rows.columns]
    # Older, partial or other writers may omit model columns: take them from the resolved config.
    for column, value in fallback.items():
        if column not in rows:
            rows[column] = value
        elif value is not None:
            rows[column] = rows[column].where(rows[column].notna(), value)
    rows = rows.reindex(columns=list(dict.fromkeys([*rows.columns, *table.columns])))
    emptied = _numbers(rows, table)
    if emptied:
        problems.append(f"{name}: {'; '.join(emptied)}: made empty")
    rows["residual"] = rows["residual"].map(_as_bool)
    rows["shortcut"] = rows["shortcut"].astype(object).where(rows["shortcut"].notna(), None)
    complete = rows[list(table.required)].notna().all(axis=1)
    if not complete.all():
        problems.append(f"{name}: {int((~complete).sum())} row(s) with missing required "
                        f"values dropped (need {', '.join(table.required)})")
        rows = rows[complete].copy()
    safe = rows["arch"].map(is_safe_name).astype(bool)
    if not safe.all():
        problems.append(f"{name}: {int((~safe).sum())} row(s) whose family name (`arch`) is not one safe name "
                        f"({SAFE_NAME_RULE}; {_quoted(rows.loc[~safe, 'arch'].iloc[0])}) dropped: rename the family")
        rows = rows[safe].copy()
    if table.key == ("iteration",):
        rows = _in_order(rows, name, problems)  # a repeated iteration included
    else:
        repeated = rows.duplicated(subset=list(table.key), keep="last")
        if repeated.any():
            problems.append(f"{name}: {int(repeated.sum())} repeated {'/'.join(table.key)} row(s), "
                            "later rows kept")
            rows = rows[~repeated].copy()
    for column in table.whole:  # counts stay integers (`1000` in table6.csv, not `1000.0000`) where none is missing
        if rows[column].notna().all():
            rows[column] = rows[column].astype("int64")
    rows["depth"] = rows["depth"].astype(int)
    rows["residual"] = rows["residual"].astype(bool)
    rows["arch"] = rows["arch"].astype(str)
    return rows


def _numbers(rows: pd.DataFrame, table: Table) -> list[str]:
    """Parse `table.numeric` in place; a cell that is not a number its column can hold becomes empty. -> what was
    emptied, per kind of reason, for the problem line."""
    found: dict = {}
    for column in table.numeric:
        cells = rows[column]
        values = pd.to_numeric(cells, errors="coerce").astype(float)
        said = cells.notna() & ~cells.astype(str).str.strip().str.lower().isin(["", "nan"])  # "nan" is empty
        finite = values.notna() & ~np.isinf(values)
        checks = {"not a number": said & values.isna(), "not finite": np.isinf(values)}
        if column in table.whole:
            checks["not a whole number >= 0"] = finite & ((values % 1 != 0) | (values < 0) | (values > inputs.MAX_WHOLE))
        if column in table.percent:
            checks["an error outside 0-100 %"] = finite & ((values < 0) | (values > 100))
        for reason, bad in checks.items():
            if bad.any():
                found.setdefault(reason, []).append((column, int(bad.sum())))
                values = values.mask(bad)
        rows[column] = values
    return [f"{sum(n for _, n in cols)} cell(s) {reason} ({', '.join(c for c, _ in cols)})"
            for reason, cols in found.items()]


def _in_order(rows: pd.DataFrame, name: str, problems: list[str]) -> pd.DataFrame:
    """metrics.csv's rows in file order -> those that stand: a row is superseded by any later row at or before its
    iteration (the later writer's rows replace its from there on), and a row whose epoch does not grow with the
    iteration is dropped."""
    if rows.empty:
        return rows
    its = rows["iteration"].to_numpy()
    later_min = np.r_[np.minimum.accumulate(its[::-1])[::-1][1:], np.inf]
    superseded = later_min <= its
    if superseded.any():
        problems.append(f"{name}: {int(superseded.sum())} row(s) superseded by later rows at or before their "
                        "iteration (the writer resumed or started over), later rows kept")
        rows = rows[~superseded]
    epochs = rows["epoch"].to_numpy()
    before = np.r_[-np.inf, np.maximum.accumulate(epochs)[:-1]]
    backwards = epochs <= before
    if backwards.any():
        problems.append(f"{name}: {int(backwards.sum())} row(s) whose epoch does not grow with the iteration dropped")
        rows = rows[~backwards]
    return rows.copy()


def _as_bool(value):
    if isinstance(value, bool):
        return value
    word = str(value).strip().lower()
    return {"true": True, "1": True, "1.0": True, "false": False, "0": False,
            "0.0": False}.get(word)


def session_starts(info: dict, iterations: pd.Series) -> list:
    """When the process that wrote each epoch row started (run.json's `sessions`: one per start or resume, each
    with the iteration it started from), or None where run.json does not say."""
    listed = info.get("sessions") if isinstance(info.get("sessions"), list) else []
    sessions = [s for s in listed if isinstance(s, dict) and inputs.timestamp(s.get("started_at"))]
    out = []
    for it in iterations:
        # the last session that started before this row's iteration was reached wrote it
        mine = [s["started_at"] for s in sessions if _number(s.get("from_iteration")) < it]
        out.append(mine[-1] if mine else None)
    return out


def _number(value) -> float:
    found = inputs.number(value)
    return float("inf") if found is None else found


def name_nets(rows: pd.DataFrame, found: dict, variants: dict | None = None) -> pd.DataFrame:
    """Each row's family (its arch), the family's label and title, and its net's name (`plain-20`,
    `WRN-res-16`, `plain-56 (from plain-20)`), from `found` (arch name -> Family); an arch not in it is named by
    itself. `variants` (RunSet.variants): runs trained with another recipe than their family's other runs are
    another net, `ResNet-20 (lr=0.01)`, with that label in `recipe` ("" for the main recipe)."""
    fams = [found.get(a) or families.declared(a) for a in rows["arch"]]
    recipe = [(variants or {}).get(r, "") for r in rows["run"]] if "run" in rows else [""] * len(rows)
    return rows.assign(
        family=rows["arch"], family_label=[f.label for f in fams], family_title=[f.title for f in fams],
        net=[f.net(d, r, s, i) + (f" ({v})" if v else "") for f, d, r, s, i, v in
             zip(fams, rows["depth"], rows["residual"], rows["shortcut"], rows["init_depth"], recipe)],
        recipe=recipe)


def from_scratch(frame: pd.DataFrame) -> pd.Series:
    """Rows of the nets a family's figures and the paper compare: trained from their own initialisation (not started
    from a shallower run, `init_depth`) with their family's main recipe (not a variant kept apart, `recipe`)."""
    scratch = frame["init_depth"].isna() if "init_depth" in frame else pd.Series(True, index=frame.index)
    return scratch & (frame["recipe"].fillna("") == "") if "recipe" in frame else scratch


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Last epoch of each run (the paper reports the error at the end of training)."""
    if frame.empty:
        return frame.copy()
    ordered = frame.sort_values(["run", "iteration", "epoch"], kind="stable")
    return ordered.groupby("run", sort=False).tail(1).reset_index(drop=True)


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=["run", *METRICS.columns, *RUN_COLUMNS])


def _runs_table(summaries: list[dict]) -> pd.DataFrame:
    columns = ["run", "net", "family", "seed", "status", "finished", "stopped_short", "iterations",
               "epochs", "iteration", "train_err", "test_err", "problem", "unreadable", "notes", "message"]
    return pd.DataFrame(summaries, columns=columns)
