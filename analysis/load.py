"""Files -> one tidy frame: every epoch row of every run, with the run's metadata as columns.

A runs directory holds one sub-directory per run with `metrics.csv` (one row per epoch) and
`run.json` (status, family, parameter count, resolved config, provenance); `runformat` says what each
file holds. Directory names are never parsed: everything comes from the files. A run that is being
written, was killed mid-line or has a corrupt `run.json` must not stop the report, so each problem is
recorded and the rest is kept.

The public pieces, which `probes_figures` and `inspection` read their own files with: `run_dirs`,
`has_files`, `read_meta`, `read_csv`/`read_table`, `name_nets`, `from_scratch`.
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from runformat import METRICS, PAPER_FAMILY, RUN_JSON, Status, Table, recipe

from . import families

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
    family: str                 # the arch name: config.arch.name, else family.name, else the paper's
    family_info: dict | None    # run.json's `family` object, when it has one
    iterations: int | None      # config.protocol.iterations: where a completed run's rows must reach
    fallback: dict              # model columns for CSV rows that lack them
    columns: dict               # per-run columns for the frame (provenance, sizes, ...)
    problem: str = ""           # "run.json missing" / "run.json unreadable (JSONDecodeError)"
    notes: list = field(default_factory=list)  # run.json's `notes`: what a reader must see beside the numbers
    info: dict = field(default_factory=dict)  # run.json itself, for keys only some runs have (`init`, `inspection`)


def load_runs(runs_dir) -> pd.DataFrame:
    return scan_runs(runs_dir).frame


def scan_runs(runs_dir, warn: bool = True) -> RunSet:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return RunSet(_empty_frame(), _runs_table([]), [f"{runs_dir} does not exist"])
    frames, summaries, problems = [], [], []
    for run_dir in run_dirs(runs_dir):
        rows, summary, run_problems = read_run(run_dir)
        problems += [f"{run_dir.name}: {p}" for p in run_problems]
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
    is listed as a problem, not silently ignored."""
    runs_dir = Path(runs_dir)
    dirs = _subdirs(runs_dir)
    if not any(map(has_files, dirs)) and (runs_dir / "runs").is_dir():
        dirs = _subdirs(runs_dir / "runs")
    return dirs


def _subdirs(parent: Path) -> list[Path]:
    return sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith("."))


def has_files(run_dir: Path) -> bool:
    return (Path(run_dir) / METRICS.file).exists() or (Path(run_dir) / RUN_JSON).exists()


def read_run(run_dir: Path):
    """-> (epoch rows or None, one-line summary dict, list of problems)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    if not has_files(run_dir):
        problems.append("neither run.json nor metrics.csv: the run wrote nothing yet "
                        "(starting, or died before its first write)")
        return None, {"run": run_dir.name, "status": "unknown", "finished": False, "stopped_short": False,
                      "family": None,
                      "family_info": None, "problem": problems[0],
                      "unreadable": "neither run.json nor metrics.csv"}, problems
    meta = read_meta(run_dir, problems)
    rows = read_csv(run_dir, METRICS, meta.fallback, problems)
    if rows is not None and rows.empty:
        problems.append("metrics.csv has no complete epoch rows")
    summary = {"run": run_dir.name, "status": meta.status, "finished": False, "stopped_short": False,
               "family": meta.family, "notes": meta.notes,
               "family_info": meta.family_info, "iterations": meta.iterations,
               "recipe": recipe(_dict(meta.info, "config"), meta.info.get("data_fingerprint"))}
    if rows is None or rows.empty:
        # the reasons in short, for a report that found nothing readable at all
        summary["unreadable"] = ", ".join(filter(None, [meta.problem, problems[-1]]))
        summary["problem"] = "; ".join(problems)
        return None, summary, problems
    rows = rows.sort_values(["iteration", "epoch"], kind="stable").reset_index(drop=True)
    last = rows.iloc[-1]
    finished, short = completion(meta.status, last["iteration"], meta.iterations)
    rows.insert(0, "run", run_dir.name)
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
    writers); its problems are appended to `problems`."""
    path, problem = Path(run_dir) / RUN_JSON, ""
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        problem, info = "run.json missing", {}
        problems.append(f"{problem}: status unknown, treated as unfinished")
    except (OSError, ValueError) as err:
        problem, info = f"run.json unreadable ({err.__class__.__name__})", {}
        problems.append(f"{problem}: status unknown, treated as unfinished")
    config = _dict(info, "config")
    data, protocol = _dict(config, "data"), _dict(config, "protocol")
    versions, sizes = _dict(info, "versions"), _dict(info, "data_sizes")
    arch, family_info = config.get("arch"), _dict(info, "family") or None
    arch = arch.get("name") if isinstance(arch, dict) else arch
    # the minimal schema: a run that names no family is one of the paper's nets
    family = arch or (family_info or {}).get("name") or PAPER_FAMILY
    iterations = pd.to_numeric(protocol.get("iterations"), errors="coerce")
    fallback = {"arch": family, "depth": config.get("depth", info.get("depth")),
                "residual": config.get("residual"), "shortcut": config.get("shortcut"),
                "seed": config.get("seed"), "protocol": protocol.get("name"),
                "init_depth": _dict(info, "init").get("depth")}
    columns = {
        "num_params": info.get("num_params"),
        "data_description": info.get("data_description"),
        "data_source": data.get("source"),
        "data_root": data.get("root"),  # which image folder or archive (reference.data_key matches on its name)
        # data_sizes: what the run actually used; the config's sizes may be null (= all)
        "train_size": sizes.get("train", data.get("train_size")),
        "val_size": sizes.get("val", data.get("val_size")),
        "test_size": sizes.get("test", data.get("test_size")),
        "protocol_name": protocol.get("name"),
        "protocol_iterations": protocol.get("iterations"),
        "train_err_measure": info.get("train_err_measure"),  # runformat.TrainErrMeasure; older runs omit it
        # a resumed run may have trained on several machines or commits: each, in order (run.json's sessions)
        "device_name": _over_sessions(info, "device_name"),
        "git_commit": _over_sessions(info, "git_commit"),
        "python_version": versions.get("python"),
        "torch_version": versions.get("torch"),
        "torchvision_version": versions.get("torchvision"),
        "started_at": info.get("started_at"),
        "ended_at": info.get("ended_at"),
    }
    notes = info.get("notes")
    return RunMeta(status=str(info.get("status") or "unknown"), family=str(family),
                   family_info=family_info, iterations=None if pd.isna(iterations) else int(iterations),
                   fallback=fallback, columns=columns, problem=problem, info=info,
                   notes=[str(n) for n in notes] if isinstance(notes, list) else [])


def _over_sessions(info: dict, key: str):
    """`key`'s values over the run's sessions and run.json's top level (the last session's), in order, without
    repeats: one value as it is, several joined by " then "; None when none is recorded."""
    sessions = info.get("sessions") if isinstance(info.get("sessions"), list) else []
    values = []
    for v in [s.get(key) for s in sessions if isinstance(s, dict)] + [info.get(key)]:
        if isinstance(v, str) and v and v not in values:
            values.append(v)
    return " then ".join(values) if values else None


def _dict(parent: dict, key: str) -> dict:
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def read_csv(run_dir: Path, table: Table, fallback: dict, problems: list[str]) -> pd.DataFrame | None:
    """One of a run's CSVs (`table.file`) through `read_table`; None, with the reason in `problems`,
    when the file is missing or cannot be read."""
    try:
        text = (Path(run_dir) / table.file).read_text()
    except FileNotFoundError:
        problems.append(f"{table.file} missing")
        return None
    except OSError as err:
        problems.append(f"{table.file} unreadable ({err.__class__.__name__})")
        return None
    return read_table(text, table, fallback, problems)


def read_table(text: str, table: Table, fallback: dict, problems: list[str]) -> pd.DataFrame | None:
    """A run's CSV, read as tolerantly as a half-written file needs: a cut-off last line or a malformed
    one is dropped, model columns a writer omitted come from run.json, a repeated key keeps the later
    row (a resumed run may log an epoch twice), and every drop is listed."""
    name = table.file
    # A run killed mid-write leaves a last line without its newline: its numbers may be cut short.
    if text and not text.endswith("\n") and text.count("\n") >= 1:
        text = text[: text.rfind("\n") + 1]
        problems.append(f"{name} truncated: incomplete last line dropped")
    bad_lines = []
    try:
        rows = pd.read_csv(io.StringIO(text), engine="python",
                           on_bad_lines=lambda line: bad_lines.append(line))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        problems.append(f"{name} unparsable ({err.__class__.__name__})")
        return None
    if bad_lines:
        problems.append(f"{name}: {len(bad_lines)} malformed line(s) dropped")
    # Older, partial or other writers may omit model columns: take them from the resolved config.
    for column, value in fallback.items():
        if column not in rows:
            rows[column] = value
        elif value is not None:
            rows[column] = rows[column].fillna(value)
    rows = rows.reindex(columns=list(dict.fromkeys([*rows.columns, *table.columns])))
    for column in table.numeric:
        rows[column] = pd.to_numeric(rows[column], errors="coerce")
    rows["residual"] = rows["residual"].map(_as_bool)
    rows["shortcut"] = rows["shortcut"].astype(object).where(rows["shortcut"].notna(), None)
    complete = rows[list(table.required)].notna().all(axis=1)
    if not complete.all():
        problems.append(f"{name}: {int((~complete).sum())} row(s) with missing required "
                        f"values dropped (need {', '.join(table.required)})")
        rows = rows[complete].copy()
    repeated = rows.duplicated(subset=list(table.key), keep="last")
    if repeated.any():
        problems.append(f"{name}: {int(repeated.sum())} repeated {'/'.join(table.key)} row(s), "
                        "later rows kept")
        rows = rows[~repeated].copy()
    rows["depth"] = rows["depth"].astype(int)
    rows["residual"] = rows["residual"].astype(bool)
    rows["arch"] = rows["arch"].astype(str)
    return rows


def _as_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "1.0": True, "false": False, "0": False,
            "0.0": False}.get(text)


def session_starts(info: dict, iterations: pd.Series) -> list:
    """When the process that wrote each epoch row started (run.json's `sessions`: one per start or resume, each
    with the iteration it started from), or None where run.json does not say."""
    sessions = [s for s in info.get("sessions") or [] if isinstance(s, dict) and s.get("started_at")]
    out = []
    for it in iterations:
        # the last session that started before this row's iteration was reached wrote it
        mine = [s["started_at"] for s in sessions if _number(s.get("from_iteration")) < it]
        out.append(mine[-1] if mine else None)
    return out


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("inf")


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
               "epochs", "iteration", "train_err", "test_err", "problem", "unreadable", "notes"]
    return pd.DataFrame(summaries, columns=columns)
