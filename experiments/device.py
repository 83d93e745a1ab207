"""Which device a run uses, and what the `speed.*` switches mean on it."""
from __future__ import annotations

import torch


def resolve_device(name) -> torch.device:
    """`auto` (CUDA if torch sees it), `cpu` or `cuda` (a Device enum or its name); ValueError if CUDA is asked
    for and absent."""
    name = getattr(name, "value", name)
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device=cuda but no CUDA device is visible to torch: use device=cpu (or device=auto)")
    if name not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device={name!r}: expected auto, cpu or cuda")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def speed_on(value, device: torch.device) -> bool:
    """A `speed.*` Switch: `on`, `off`, or `auto` = on for CUDA, off for CPU."""
    value = getattr(value, "value", value)  # a Switch enum or its name
    return value == "on" or (value == "auto" and device.type == "cuda")
