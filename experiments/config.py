"""The config schema. Hydra composes conf/ against it, so `depth=abc`, `residul=false`, `shortcut=C` or
`protocol.augment=crop` fail at composition, before anything runs, with the key and the valid values named.

Closed choices are Enums; a network family's own knobs are its `ArchConfig` subclass (conf/arch/<name>.yaml
starts from it: see `experiments.nets.families`); numeric keys carry their valid range (`checked_ranges`).
It imports nothing of the project and no Hydra: Hydra's side (putting the schema in its ConfigStore, composing
conf/) is experiments.harness.compose, and only the Hydra entry point (experiments.run) and the launchers hand
anything but these dataclasses around.
"""
from __future__ import annotations

import dataclasses
import math
import re
from dataclasses import dataclass, field
from enum import Enum
from typing import Dict, List, Optional


class Shortcut(str, Enum):
    A = "A"  # zero-padded identity, no parameters (the paper's CIFAR choice)
    B = "B"  # 1x1 projection + BN where shapes change


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Switch(str, Enum):
    auto = "auto"  # what make bench measured to be faster on the device (experiments.training.device.auto)
    on = "on"
    off = "off"


class Source(str, Enum):
    cifar10 = "cifar10"
    imagefolder = "imagefolder"


class Optimizer(str, Enum):
    sgd = "sgd"  # the paper's: momentum SGD with weight decay
    adam = "adam"  # the Keras tutorial's


class Augment(str, Enum):
    crop_flip = "crop_flip"  # the paper's: 4-pixel pad, random 32x32 crop, horizontal flip
    keras = "keras"  # ImageDataGenerator-like rotation, shifts, flip
    none = "none"


class Normalize(str, Enum):
    pixel_mean = "pixel_mean"  # the paper's: subtract the training set's mean image
    keras = "keras"  # the Keras tutorial's: scalar mean, per-pixel std
    # a given mean and std (protocol.normalize_mean / normalize_std), not taken from the data: what weights trained
    # elsewhere were fed (experiments.pretrained), and must be fed again wherever they are evaluated
    fixed = "fixed"


SEED_MAX = 2**32 - 1
# A name that becomes a folder (results/<protocol.name>/runs/, conf/arch/<name>.yaml): one plain path component.
NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$")


def ranged(default, lo=None, hi=None, *, lo_open: bool = False, hi_open: bool = False, **kw):
    """A numeric field with the range a protocol can mean (checked by `checked_ranges`)."""
    return field(default=default, metadata={"range": (lo, hi, lo_open, hi_open)}, **kw)


@dataclass
class ArchConfig:
    """A network family (conf/arch/<name>.yaml). A family with knobs of its own subclasses this."""
    name: str = "resnet_cifar"


@dataclass
class DataConfig:
    source: Source = Source.cifar10
    root: Optional[str] = None  # imagefolder: a folder with train/ and test/, or a .tar.gz of one
    dir: str = "data"  # shared by every run: torchvision's download and the decoded image-folder cache
    download: bool = True  # cifar10: fetch it into `dir` when it is not there (checked against torchvision's checksums)
    val_size: int = ranged(0, 0)  # 5000: the paper's 45k/5k split; val_* columns are reported, the test set selects nothing
    train_size: int = ranged(0, 0)  # 0 = all; else a fixed class-balanced random subset, the same for every run
    test_size: int = ranged(0, 0)
    subset_seed: int = ranged(0, 0, SEED_MAX)  # fixes the subsets and the validation split, independent of the run's seed


@dataclass
class ProtocolConfig:
    name: str = "custom"
    iterations: int = ranged(64000, 1)
    milestones: List[int] = field(default_factory=lambda: [32000, 48000])
    lr: float = ranged(0.1, 0, lo_open=True)
    lr_decay: float = ranged(0.1, 0, 1, lo_open=True)
    batch_size: int = ranged(128, 1)
    momentum: float = ranged(0.9, 0, 1, hi_open=True)
    weight_decay: float = ranged(1e-4, 0)
    optimizer: Optimizer = Optimizer.sgd
    # Sec. 4.2, 110 layers: lr 0.01 until training error < 80%, then back to lr. Applies from this depth on.
    warmup_min_depth: int = ranged(110, 1)
    warmup_lr: float = ranged(0.01, 0, lo_open=True)
    warmup_until_err: float = ranged(80.0, 0, 100)
    warmup_check_every: int = ranged(50, 1)
    augment: Augment = Augment.crop_flip
    normalize: Normalize = Normalize.pixel_mean
    # normalize=fixed: x / 255 minus `normalize_mean`, divided by `normalize_std`; one value for all channels, or one
    # per channel. None (the default) for the other choices, which take their statistics from the training images
    normalize_mean: Optional[List[float]] = None
    normalize_std: Optional[List[float]] = None
    eval_batch_size: int = ranged(1000, 1)


@dataclass
class SpeedConfig:
    # How a run is computed, not what it computes: none of these is part of a run's identity. "auto" = what
    # make bench measured to be faster on the device and to leave the numbers alone (experiments.training.device): CUDA:
    # all but compile; CPU: channels_last (bf16 is opt-in there: it makes plain-56 worse). run.json records
    # what applied.
    channels_last: Switch = Switch.auto
    bf16: Switch = Switch.auto  # autocast to bf16 with fp32 master weights; BN statistics stay fp32
    foreach: bool = True  # SGD as multi-tensor ops (off: a per-parameter loop; same math)
    cudnn_benchmark: bool = True
    cuda_graphs: Switch = Switch.auto  # capture the training step once and replay it (CUDA, SGD)
    compile: Switch = Switch.auto  # torch.compile the training forward (auto: off; see experiments.training.device)
    fuse: Switch = Switch.auto  # each BN fused with its ReLU and addition (experiments.nets.fused; auto: off)
    threads: int = ranged(0, 0)  # CPU threads for torch; 0 = torch's default
    # The first-minute choice (experiments.training.variants): each ready step variant checked against the eager step and
    # timed, the fastest that passes trained with; a resumed run keeps its choice. auto: on CUDA (a sweep of hours),
    # off on a CPU; `on` chooses again, on resume too
    choose: Switch = Switch.auto
    choose_seconds: float = ranged(60.0, 0, lo_open=True)  # the choice's budget, checks and timings included


@dataclass
class ProbesConfig:
    # Fig. 7 layer responses (from the test pass of every epoch) and gradient norms (sampled steps).
    enabled: bool = True
    grad_every: int = ranged(10, 1)  # measure gradient norms on every 10th step: the epoch mean over those steps


@dataclass
class InspectConfig:
    # After a run completes (experiments.inspect): the identity construction, branch sizes and the lesion study,
    # from the final weights. How much is measured, never what the run computes: not part of a run's identity.
    enabled: bool = True  # false: nothing after training; `make plots` or `python -m experiments.inspect` does it later
    # the deeper nets to construct (those > depth): Figure 1's plain-56 by default; [32,44,56] for the whole
    # grid costs about 2.4x as much (each is an fp32 test pass of the deeper net)
    deeper: List[int] = field(default_factory=lambda: [56])
    train_batches: int = ranged(4, 1)  # training batches for the BN statistics, and again for the train-mode deviation


@dataclass
class LogConfig:
    # Live views of a run beside its CSVs (never instead); not part of a run's identity.
    # tensorboard: each epoch's scalars into RUN_DIR/tensorboard/ (the `tensorboard` extra: experiments.harness.tblog)
    tensorboard: bool = False


# `init.from=RUN_DIR` (a deeper run started from a shallower one's net, deepened by identity blocks) is the key a
# user types; `from` is a Python keyword, so it cannot be a dataclass field. A typed dict node keeps the key as
# typed and its value an Optional[str]; its keys are checked in one line by experiments.harness.init_from.check.
INIT_KEYS = ("from",)


@dataclass
class Config:
    depth: int = ranged(20, 1)  # weighted layers; each family says which depths it can build
    residual: bool = True
    shortcut: Shortcut = Shortcut.A
    # the batch order's generators are seeded with seed * 1,000,003 + ..., an int64: 2**32 - 1 leaves room for it
    seed: int = ranged(0, 0, SEED_MAX)
    device: Device = Device.auto
    arch: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    inspect: InspectConfig = field(default_factory=InspectConfig)
    init: Dict[str, Optional[str]] = field(default_factory=lambda: dict.fromkeys(INIT_KEYS))
    progress: bool = True
    log: LogConfig = field(default_factory=LogConfig)
    force: bool = False  # start a sweep even when it would run for days on a CPU


# ---- checks the schema's types cannot express --------------------------------------------------------

def numeric_ranges(cls=Config, prefix: str = "") -> dict:
    """{dotted key: (lo, hi, lo_open, hi_open)} for every ranged numeric key of the schema."""
    out = {}
    for f in dataclasses.fields(cls):
        if "range" in f.metadata:
            out[prefix + f.name] = f.metadata["range"]
        elif dataclasses.is_dataclass(f.default_factory):
            out.update(numeric_ranges(f.default_factory, f"{prefix}{f.name}."))
    return out


def _describe(lo, hi, lo_open, hi_open) -> str:
    if hi is None:
        return f"{'>' if lo_open else '>='} {lo:g}"
    return f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def checked_ranges(cfg: Config) -> Optional[str]:
    """The first value outside what the protocol can mean, said in one line with the valid range; None if all
    are fine. `protocol.lr=-1` would train by gradient ascent; `protocol.batch_size=0` divides by zero."""
    ranges = numeric_ranges(type(cfg))
    for f in dataclasses.fields(cfg.arch):  # a family's own knobs carry their ranges too
        if "range" in f.metadata:
            ranges[f"arch.{f.name}"] = f.metadata["range"]
    for key, (lo, hi, lo_open, hi_open) in ranges.items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        bad = not math.isfinite(value) or (lo is not None and (value <= lo if lo_open else value < lo)) or (
            hi is not None and (value >= hi if hi_open else value > hi))
        if bad:
            return f"{key}={value!r} is outside what it can mean: it must be {_describe(lo, hi, lo_open, hi_open)}"
    bad = [m for m in cfg.protocol.milestones if m < 1]
    if bad:
        return f"protocol.milestones={list(cfg.protocol.milestones)}: each milestone must be an iteration >= 1"
    if not NAME.match(cfg.protocol.name):
        return (f"protocol.name={cfg.protocol.name!r} names the folder results/<protocol.name>/: use letters, digits "
                f"and _.- only (at most 64, not starting with . or -)")
    return checked_normalize(cfg.protocol)


def checked_normalize(p: ProtocolConfig) -> Optional[str]:
    """protocol.normalize=fixed has its mean and std (1 or 3 values each, finite, the std above 0); the other choices
    have neither, since they take theirs from the training images. None if that holds, else the one line."""
    given = {k: getattr(p, k) for k in ("normalize_mean", "normalize_std")}
    if p.normalize != Normalize.fixed:
        extra = next((k for k, v in given.items() if v is not None), None)
        return None if extra is None else (
            f"protocol.{extra} applies to protocol.normalize=fixed only (this protocol normalises by "
            f"{p.normalize.value}, from the training images): drop it, or add protocol.normalize=fixed")
    for key, values in given.items():
        if values is None:
            return (f"protocol.normalize=fixed needs protocol.{key}: one value for all channels, or one per channel "
                    f"(e.g. protocol.{key}=[0.5])")
        each = "above 0" if key == "normalize_std" else "finite"
        if len(values) not in (1, 3) or not all(math.isfinite(v) and (v > 0 or key == "normalize_mean") for v in values):
            return (f"protocol.{key}={list(values)}: give one value for all channels or one per channel (3), "
                    f"each {each}")
    return None


def to_dict(obj) -> dict:
    """A config dataclass as plain JSON-able values (Enums by value): what run.json records."""
    def plain(v):
        if isinstance(v, Enum):
            return v.value
        if isinstance(v, dict):
            return {k: plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v
    return plain(dataclasses.asdict(obj))
