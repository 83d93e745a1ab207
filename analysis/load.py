"""Files -> one tidy frame: every epoch row of every run, with the run's metadata as columns.

A runs directory holds one sub-directory per run with `metrics.csv` (one row per epoch) and
`run.json` (status, parameter count, resolved config, provenance). Directory names are never
parsed: everything comes from the files. A run that is being written, was killed mid-line or has a
corrupt `run.json` must not stop the report, so each problem is recorded and the rest is kept.
"""
from __future__ import annotations

import io
import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

PAPER_FAMILY = "resnet_cifar"  # the family of §4.2; only its nets may sit next to Table 6
FAMILY_NAMES = {
    "resnet_cifar": "CIFAR plain/ResNet (paper §4.2)",
    "minimodel": "MiniModel (Keras-tutorial family, not the paper's nets)",
}
# Without these a row cannot be placed on any figure or in the table.
REQUIRED = ["epoch", "iteration", "train_err", "test_err", "arch", "depth", "residual"]
OPTIONAL = ["lr", "train_loss", "test_loss", "val_loss", "val_err", "epoch_time_s",
            "shortcut", "seed", "protocol"]
NUMERIC = ["epoch", "iteration", "lr", "train_loss", "train_err", "test_loss", "test_err",
           "val_loss", "val_err", "epoch_time_s", "depth", "seed"]


@dataclass
class RunSet:
    frame: pd.DataFrame  # one row per epoch of every readable run
    runs: pd.DataFrame   # one row per run directory, readable or not
    problems: list[str] = field(default_factory=list)  # what was skipped or repaired, and why


def load_runs(runs_dir) -> pd.DataFrame:
    return scan_runs(runs_dir).frame


def scan_runs(runs_dir) -> RunSet:
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return RunSet(_empty_frame(), _runs_table([]), [f"{runs_dir} does not exist"])
    if not any(map(_has_files, _run_dirs(runs_dir))) and (runs_dir / "runs").is_dir():
        runs_dir = runs_dir / "runs"  # accept results/quick as well as results/quick/runs
    dirs = _run_dirs(runs_dir)
    frames, summaries, problems = [], [], []
    for run_dir in dirs:
        rows, summary, run_problems = read_run(run_dir)
        problems += [f"{run_dir.name}: {p}" for p in run_problems]
        summaries.append(summary)
        if rows is not None and len(rows):
            frames.append(rows)
    for p in problems:
        warnings.warn(p, stacklevel=2)
    frame = pd.concat(frames, ignore_index=True) if frames else _empty_frame()
    return RunSet(frame, _runs_table(summaries), problems)


def _run_dirs(parent: Path) -> list[Path]:
    # every visible sub-directory is a run: one with neither file is listed as a problem (a run
    # that died before writing anything), not silently ignored
    return sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith("."))


def _has_files(run_dir: Path) -> bool:
    return (run_dir / "metrics.csv").exists() or (run_dir / "run.json").exists()


def read_run(run_dir: Path):
    """-> (epoch rows or None, one-line summary dict, list of problems)."""
    run_dir = Path(run_dir)
    problems: list[str] = []
    if not _has_files(run_dir):
        problems.append("neither run.json nor metrics.csv: the run wrote nothing yet "
                        "(starting, or died before its first write)")
        return None, {"run": run_dir.name, "status": "unknown", "problem": problems[0]}, problems
    meta, fallback = _read_meta(run_dir / "run.json", problems)
    rows = _read_metrics(run_dir / "metrics.csv", fallback, problems)
    if rows is not None and rows.empty:
        problems.append("metrics.csv has no complete epoch rows")
    summary = {"run": run_dir.name, "status": meta["status"], "problem": "; ".join(problems)}
    if rows is None or rows.empty:
        return None, summary, problems
    rows.insert(0, "run", run_dir.name)
    for key, value in meta.items():
        rows[key] = value
    rows["finished"] = meta["status"] == "completed"
    rows["family"] = rows["arch"]
    rows["net"] = [net_label(a, d, r, s) for a, d, r, s in
                   zip(rows["arch"], rows["depth"], rows["residual"], rows["shortcut"])]
    last = rows.iloc[-1]
    summary.update(net=last["net"], family=last["family"], seed=last["seed"], epochs=len(rows),
                   iteration=last["iteration"], train_err=last["train_err"],
                   test_err=last["test_err"])
    return rows, summary, problems


def _read_meta(path: Path, problems: list[str]) -> tuple[dict, dict]:
    """-> (per-run columns for the frame, config values to fill model columns metrics.csv lacks)."""
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        problems.append("run.json missing: status unknown, treated as unfinished")
        info = {}
    except (OSError, ValueError) as err:
        problems.append(f"run.json unreadable ({err.__class__.__name__}): status unknown, "
                        "treated as unfinished")
        info = {}
    config = _dict(info, "config")
    data, protocol = _dict(config, "data"), _dict(config, "protocol")
    versions, sizes = _dict(info, "versions"), _dict(info, "data_sizes")
    arch = config.get("arch")
    fallback = {"arch": arch.get("name") if isinstance(arch, dict) else arch,
                "depth": config.get("depth", info.get("depth")), "residual": config.get("residual"),
                "shortcut": config.get("shortcut"), "seed": config.get("seed"),
                "protocol": protocol.get("name")}
    meta = {
        "status": str(info.get("status") or "unknown"),
        "num_params": info.get("num_params"),
        "data_description": info.get("data_description"),
        "data_source": data.get("source"),
        # data_sizes: what the run actually used; the config's sizes may be null (= all)
        "train_size": sizes.get("train", data.get("train_size")),
        "val_size": sizes.get("val", data.get("val_size")),
        "test_size": sizes.get("test", data.get("test_size")),
        "protocol_name": protocol.get("name"),
        "protocol_iterations": protocol.get("iterations"),
        "device_name": info.get("device_name"),
        "git_commit": info.get("git_commit"),
        "python_version": versions.get("python"),
        "torch_version": versions.get("torch"),
        "torchvision_version": versions.get("torchvision"),
        "started_at": info.get("started_at"),
        "ended_at": info.get("ended_at"),
    }
    return meta, fallback


def _dict(parent: dict, key: str) -> dict:
    # any key of run.json may be missing or of another shape (older or newer writers)
    value = parent.get(key)
    return value if isinstance(value, dict) else {}


def read_table(text: str, name: str, fallback: dict, columns, numeric, required,
               problems: list[str]) -> pd.DataFrame | None:
    """One of a run's CSVs, read as tolerantly as a half-written file needs: a cut-off last line or a
    malformed one is dropped, model columns a writer omitted come from run.json, and every drop is listed."""
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
    # Older or partial writers may omit model columns: take them from the resolved config.
    for column, value in fallback.items():
        if column not in rows:
            rows[column] = value
        elif value is not None:
            rows[column] = rows[column].fillna(value)
    for column in columns:
        if column not in rows:
            rows[column] = float("nan")
    for column in numeric:
        if column in rows:
            rows[column] = pd.to_numeric(rows[column], errors="coerce")
    rows["residual"] = rows["residual"].map(_as_bool)
    rows["shortcut"] = rows["shortcut"].astype(object).where(rows["shortcut"].notna(), None)
    complete = rows[required].notna().all(axis=1)
    if not complete.all():
        problems.append(f"{name}: {int((~complete).sum())} row(s) with missing required "
                        f"values dropped (need {', '.join(required)})")
        rows = rows[complete].copy()
    return rows


def _read_metrics(path: Path, fallback: dict, problems: list[str]) -> pd.DataFrame | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        problems.append("metrics.csv missing")
        return None
    except OSError as err:
        problems.append(f"metrics.csv unreadable ({err})")
        return None
    rows = read_table(text, "metrics.csv", fallback, OPTIONAL, NUMERIC, REQUIRED, problems)
    if rows is None:
        return None
    # a resumed run may log an epoch twice: the later row is the one the run continued from
    repeated = rows.duplicated(subset="iteration", keep="last")
    if repeated.any():
        problems.append(f"metrics.csv: {int(repeated.sum())} repeated iteration(s), later rows kept")
        rows = rows[~repeated].copy()
    rows["depth"] = rows["depth"].astype(int)
    rows["residual"] = rows["residual"].astype(bool)
    rows["arch"] = rows["arch"].astype(str)
    return rows.sort_values(["iteration", "epoch"], kind="stable").reset_index(drop=True)


def _as_bool(value):
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    return {"true": True, "1": True, "1.0": True, "false": False, "0": False,
            "0.0": False}.get(text)


def net_label(arch: str, depth, residual: bool, shortcut=None) -> str:
    """`plain-20` / `ResNet-56` as in the paper; other families say their name in every label."""
    suffix = " (B)" if residual and shortcut == "B" else ""  # the paper's CIFAR nets use option A
    if arch == PAPER_FAMILY:
        return f"{'ResNet' if residual else 'plain'}-{int(depth)}{suffix}"
    name = "MiniModel" if arch == "minimodel" else str(arch)
    return f"{name}-{'res' if residual else 'plain'}-{int(depth)}{suffix}"


def final_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """Last epoch of each run (the paper reports the error at the end of training)."""
    if frame.empty:
        return frame.copy()
    ordered = frame.sort_values(["run", "iteration", "epoch"], kind="stable")
    return ordered.groupby("run", sort=False).tail(1).reset_index(drop=True)


def _empty_frame() -> pd.DataFrame:
    return pd.DataFrame(columns=["run", *REQUIRED, *OPTIONAL, "status", "num_params",
                                 "finished", "family", "net"])


def _runs_table(summaries: list[dict]) -> pd.DataFrame:
    columns = ["run", "net", "family", "seed", "status", "epochs", "iteration", "train_err",
               "test_err", "problem"]
    return pd.DataFrame(summaries, columns=columns)
