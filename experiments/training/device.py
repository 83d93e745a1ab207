"""Which device a run uses, and what the `speed.*` switches mean on it.

`auto` means what `make bench` measured to be faster on that kind of device and to leave the numbers alone,
never a guess by name: on CUDA every switch of the fast path; on a CPU channels_last only (1.3-1.4x per
step on 2 cores of an AMD EPYC, float rounding apart the same math).

bf16 autocast is opt-in on a CPU (`speed.bf16=on`), even where the CPU computes in bf16 natively (AVX-512
BF16 or AMX, `native_bf16`) and it is 1.6x faster again: it passed `bench --compare 3` on plain-20 (2.3 points
worse, within two seed-stds), but the same seeds' plain-56 ended 11.5 and 14.2 points worse than in fp32
(quick protocol, seeds 0 and 1, measured), so it changes the size of the very effect this harness shows.
torch.compile is off under `auto` everywhere: on a CPU its compile time outweighs what it saves on a quick
run, and on a GPU it is unmeasured. See README, Speed.
"""
from __future__ import annotations

import functools
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

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


@functools.lru_cache(maxsize=None)
def native_bf16() -> bool:
    """The CPU has bf16 arithmetic (AVX-512 BF16 or AMX): there autocast to bf16 pays; elsewhere it is emulated."""
    if platform.system() != "Linux":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text(encoding="utf-8")
    except OSError:
        return False
    return ("avx512_bf16" in flags or "amx_bf16" in flags) and torch.ops.mkldnn._is_mkldnn_bf16_supported()


def auto(feature: str, device: torch.device) -> bool:
    """What `speed.<feature>=auto` means on `device` (see the module docstring)."""
    if device.type == "cuda":
        return feature not in ("compile", "fuse")  # variants the first-minute choice may turn on (training.variants)
    return feature == "channels_last"  # bf16: see the module docstring


def speed_on(feature: str, value, device: torch.device) -> bool:
    """A `speed.*` Switch (an enum or its name): `on`, `off`, or `auto` (see `auto`)."""
    value = getattr(value, "value", value)
    return value == "on" or (value == "auto" and auto(feature, device))


@dataclass(frozen=True)
class Speed:
    """The switches as they apply on one device: what run.json records and the trainer is built with."""
    channels_last: bool
    bf16: bool
    cuda_graphs: bool
    compile: bool
    foreach: bool
    cudnn_benchmark: bool
    fuse: bool = False  # BN fused with ReLU and addition (experiments.nets.fused), where the family has such a forward

    def as_dict(self) -> dict:
        return asdict(self)

    def autocast(self, device: torch.device):
        """The bf16 autocast context every forward of a run uses (training, evaluation, inspection), or None.
        No cast cache: a captured graph could not refresh it."""
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False) if self.bf16 else None


def resolve_speed(speed, device: torch.device) -> Speed:
    """`speed`: a SpeedConfig. CUDA graphs need CUDA whatever the switch says."""
    return Speed(channels_last=speed_on("channels_last", speed.channels_last, device),
                 bf16=speed_on("bf16", speed.bf16, device),
                 cuda_graphs=device.type == "cuda" and speed_on("cuda_graphs", speed.cuda_graphs, device),
                 compile=speed_on("compile", speed.compile, device),
                 foreach=bool(speed.foreach), cudnn_benchmark=bool(speed.cudnn_benchmark),
                 fuse=speed_on("fuse", speed.fuse, device))
