"""What produced the results: protocol, data, machines, code and library versions (from run.json).

Every table and report says this next to its numbers, because a short protocol or a JPEG copy of
CIFAR-10 changes the errors and must not be mistaken for the paper's setting.
"""
from __future__ import annotations

import pandas as pd

from .load import final_rows

FULL_TRAIN, FULL_TEST = 50_000, 10_000  # CIFAR-10's official split


def _unique(values) -> list:
    seen = []
    for v in values:
        if v is None or (isinstance(v, float) and pd.isna(v)) or v in seen:
            continue
        seen.append(v)
    return seen


def protocols(frame: pd.DataFrame) -> list[str]:
    last = final_rows(frame)
    out = []
    for name, iters in zip(last["protocol"], last.get("protocol_iterations", [None] * len(last))):
        name = "unnamed" if name is None or pd.isna(name) else str(name)
        text = f"`{name}`" + (f" ({_int(iters):,} iterations)" if _int(iters) else "")
        out.append(text)
    return _unique(out)


def data_descriptions(frame: pd.DataFrame) -> list[str]:
    last = final_rows(frame)
    out = []
    for _, row in last.iterrows():
        desc = row.get("data_description")
        source = row.get("data_source")
        text = str(desc) if isinstance(desc, str) and desc else str(source or "unknown data")
        folder = source == "imagefolder" or "image-folder" in text.lower()
        if folder and "not the original" not in text:
            jpeg = "jpeg" in text.lower() or "jpg" in text.lower()
            text += (" (an image-folder " + ("JPEG " if jpeg else "")
                     + "copy, not the original CIFAR-10 files)")
        train, val, test = (_int(row.get(f"{k}_size")) for k in ("train", "val", "test"))
        sizes = ([f"train {train:,}"] if train else []) + ([f"val {val:,}"] if val else []) + (
            [f"test {test:,}"] if test else [])
        if sizes:
            # 45k is the paper's own train/val split, not a subset
            subset = (train and train < FULL_TRAIN - 5000) or (test and test < FULL_TEST)
            text += f"; {' / '.join(sizes)} images" + (" (a subset of CIFAR-10)" if subset else "")
        out.append(text)
    return _unique(out)


def uses_validation(frame: pd.DataFrame) -> bool:
    return "val_err" in frame and bool(frame["val_err"].notna().any())


def header_line(frame: pd.DataFrame) -> str:
    text = (f"Protocol(s): {', '.join(protocols(frame)) or 'unknown'}. "
            f"Data: {'; '.join(data_descriptions(frame)) or 'unknown'}. ")
    if uses_validation(frame):
        text += "A validation split was held out (val_err recorded); test error is on the test set. "
    return text.strip()


def machine_lines(frame: pd.DataFrame) -> list[str]:
    last = final_rows(frame)
    lines = []
    for label, column in [("device", "device_name"), ("git commit", "git_commit"),
                          ("python", "python_version"), ("torch", "torch_version"),
                          ("torchvision", "torchvision_version")]:
        values = _unique(last[column]) if column in last else []
        shown = ", ".join(f"`{v}`" for v in values) if values else "not recorded"
        lines.append(f"{label}: {shown}")
    started = _unique(last["started_at"]) if "started_at" in last else []
    ended = _unique(last["ended_at"]) if "ended_at" in last else []
    if started:
        lines.append(f"runs started {min(map(str, started))}"
                     + (f", last ended {max(map(str, ended))}" if ended else ""))
    if "epoch_time_s" in frame and frame["epoch_time_s"].notna().any():
        wall = training_wall_seconds(frame)
        if wall is not None:
            lines.append(f"training wall time: {_duration(wall)} (the time during which any run was training; runs "
                         "trained together count once, pauses between resumed sessions not at all)")
        lines.append(f"training time summed over runs: {_duration(frame['epoch_time_s'].sum())}")
    return lines


def training_wall_seconds(frame: pd.DataFrame) -> float | None:
    """The length of the union of every run's training spans: a span is one session of one run, from the
    session's start for as long as its epochs took. Runs trained together (the concurrent launcher) overlap
    and count once; one after another, they add up; a pause before a resume is in no span. None if run.json
    gives no session starts."""
    if "session_started_at" not in frame or frame["session_started_at"].isna().all():
        return None
    timed = frame.dropna(subset=["session_started_at", "epoch_time_s"])
    spans = []
    for (_, start), rows in timed.groupby(["run", "session_started_at"]):
        begin = pd.Timestamp(start).timestamp()
        spans.append((begin, begin + float(rows["epoch_time_s"].sum())))
    total, reach = 0.0, float("-inf")
    for begin, end in sorted(spans):
        if end > reach:
            total += end - max(begin, reach)
            reach = end
    return total


def _duration(seconds: float) -> str:
    return f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"


def _int(value) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(number) else int(number)
