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
        seconds = frame["epoch_time_s"].sum()
        spent = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
        lines.append(f"total training time: {spent} (sum of epoch times over all runs)")
    return lines


def _int(value) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if pd.isna(number) else int(number)
