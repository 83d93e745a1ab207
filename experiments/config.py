"""The config schema (Hydra structured configs). Composition checks every override against it, so
`depth=abc`, `residul=false` or `shortcut=C` fail before anything runs, with the key named.

Only `experiments.run` sees a DictConfig; everything else takes these dataclasses or plain values.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import List, Optional

from hydra.core.config_store import ConfigStore


class Shortcut(str, Enum):
    A = "A"  # zero-padded identity, no parameters (the paper's CIFAR choice)
    B = "B"  # 1x1 projection + BN where shapes change


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Switch(str, Enum):
    auto = "auto"  # on for CUDA, off for CPU
    on = "on"
    off = "off"


class Source(str, Enum):
    cifar10 = "cifar10"
    imagefolder = "imagefolder"


@dataclass
class ArchConfig:
    name: str = "resnet_cifar"  # resnet_cifar (the paper's) | minimodel (the Keras tutorial's)
    units_per_stage: int = 3  # minimodel only; resnet_cifar takes its size from `depth`


@dataclass
class DataConfig:
    source: Source = Source.cifar10
    root: Optional[str] = None  # imagefolder: a folder with train/ and test/, or a .tar.gz of one
    dir: str = "data"  # shared by every run: torchvision's download and the decoded image-folder cache
    download: bool = False
    val_size: int = 0  # 5000: the paper's 45k/5k split; val_* columns are reported, the test set selects nothing
    train_size: int = 0  # 0 = all; else a fixed class-balanced random subset, the same for every run
    test_size: int = 0
    subset_seed: int = 0  # fixes the subsets and the validation split, independent of the run's seed


@dataclass
class ProtocolConfig:
    name: str = "custom"
    iterations: int = 64000
    milestones: List[int] = field(default_factory=lambda: [32000, 48000])
    lr: float = 0.1
    lr_decay: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    weight_decay: float = 1e-4
    optimizer: str = "sgd"  # sgd | adam (the Keras tutorial's recipe)
    # Sec. 4.2, 110 layers: lr 0.01 until training error < 80%, then back to lr. Applies from this depth on.
    warmup_min_depth: int = 110
    warmup_lr: float = 0.01
    warmup_until_err: float = 80.0
    warmup_check_every: int = 50
    augment: str = "crop_flip"  # crop_flip (paper) | keras (ImageDataGenerator-like) | none
    normalize: str = "pixel_mean"  # pixel_mean (paper) | keras (scalar mean, per-pixel std)
    eval_batch_size: int = 1000


@dataclass
class SpeedConfig:
    # How a run is computed, never what it computes: none of these is part of a run's identity.
    # "auto" = on for CUDA, off for CPU.
    channels_last: Switch = Switch.auto
    bf16: Switch = Switch.auto  # autocast to bf16 with fp32 master weights; BN statistics stay fp32
    foreach: bool = True  # SGD as multi-tensor ops (off: a per-parameter loop; same math)
    cudnn_benchmark: bool = True
    cuda_graphs: Switch = Switch.auto  # capture the training step once and replay it (CUDA, SGD)
    threads: int = 0  # CPU threads for torch; 0 = torch's default


@dataclass
class ProbesConfig:
    # Fig. 7 layer responses (from the test pass of every epoch) and gradient norms (sampled steps).
    enabled: bool = True
    grad_every: int = 10  # measure gradient norms on every 10th step: the epoch mean over those steps


@dataclass
class Config:
    depth: int = 20
    residual: bool = True
    shortcut: Shortcut = Shortcut.A
    seed: int = 0
    device: Device = Device.auto
    arch: ArchConfig = field(default_factory=ArchConfig)
    data: DataConfig = field(default_factory=DataConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    probes: ProbesConfig = field(default_factory=ProbesConfig)
    progress: bool = True
    force: bool = False  # start a sweep even when it would run for days on a CPU


def register() -> None:
    # The group YAMLs merge into the typed nodes of `Config`, so they are checked against it too.
    ConfigStore.instance().store(name="schema", node=Config)
