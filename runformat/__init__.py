"""The run-file format: what a run directory holds, for the writer (`experiments/`) and the reader
(`analysis/`) alike. Standard library only, so that `analysis/` can import it without `experiments/`
(and without torch or Hydra), and so that anyone can write runs the analysis will read.

A run directory holds

    run.json          status, resolved config and provenance (`RunInfo` below)
    metrics.csv       one row per epoch (`METRICS`)
    layer_stats.csv   Figure 7's layer responses, one row per epoch and 3x3 layer (`LAYER_STATS`)
    grad_norms.csv    gradient norms, one row per epoch, layer and kind (`GRAD_NORMS`)
    checkpoint.pt     the writer's own state (never read by the analysis)

Every CSV repeats the identity columns (`IDENTITY_COLUMNS`) on every row, so a file stands alone.

**The minimal schema the analysis accepts**, from this harness, an older version of it, or a user's own
training code: a `metrics.csv` with the columns of `METRICS.required`

    epoch, iteration, train_err, test_err, depth, residual

(errors in percent; one row per logged epoch; extra columns are ignored, missing optional ones are empty)
and, beside it, optionally a `run.json` object. Without `arch` in either file a run belongs to the
paper's family (`PAPER_FAMILY`); without `run.json` its status is unknown and it counts as unfinished;
a run is finished only if its status is `completed` *and* its rows reach its protocol's iterations
(`config.protocol.iterations`) where run.json gives them.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Optional, TypedDict

PAPER_FAMILY = "resnet_cifar"  # He et al. 2016 §4.2: the only family compared with Table 6


class Status(str, Enum):
    """A run's status in run.json (and what a run or a sweep cell ends with)."""
    running = "running"          # being trained, or killed without a chance to say so (SIGKILL)
    completed = "completed"      # trained to its protocol's last iteration
    diverged = "diverged"        # the loss became NaN/inf; the rows before it are kept
    failed = "failed"            # an error ended it; `message` says which
    interrupted = "interrupted"  # SIGINT/SIGTERM: checkpointed, the same command resumes it

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """Nothing is left to do: a rerun of the same command changes nothing."""
        return self in (Status.completed, Status.diverged)


# ---- the CSV tables ---------------------------------------------------------------------------------

IDENTITY_COLUMNS = ("arch", "depth", "residual", "shortcut", "seed", "protocol")


@dataclass(frozen=True)
class Table:
    file: str
    columns: tuple   # in the order the writer writes them, identity columns last
    required: tuple  # a row without any of these cannot be placed on a figure or in a table
    numeric: tuple   # parsed as numbers by the reader
    key: tuple       # what identifies a row within one run: a repeated key keeps the later row


METRICS = Table(
    "metrics.csv",
    columns=("epoch", "iteration", "lr", "train_loss", "train_err", "test_loss", "test_err", "val_loss",
             "val_err", "epoch_time_s") + IDENTITY_COLUMNS,
    required=("epoch", "iteration", "train_err", "test_err", "depth", "residual"),
    numeric=("epoch", "iteration", "lr", "train_loss", "train_err", "test_loss", "test_err", "val_loss",
             "val_err", "epoch_time_s", "depth", "seed"),
    key=("iteration",),
)
LAYER_STATS = Table(
    "layer_stats.csv",
    columns=("epoch", "layer", "name", "stage", "std") + IDENTITY_COLUMNS,
    required=("epoch", "layer", "std", "depth", "residual"),
    numeric=("epoch", "layer", "stage", "std", "depth", "seed"),
    key=("epoch", "layer"),
)
GRAD_NORMS = Table(
    "grad_norms.csv",
    columns=("epoch", "layer", "name", "stage", "kind", "norm", "samples") + IDENTITY_COLUMNS,
    required=("epoch", "layer", "kind", "norm", "depth", "residual"),
    numeric=("epoch", "layer", "stage", "norm", "samples", "depth", "seed"),
    key=("kind", "epoch", "layer"),
)
TABLES = {t.file: t for t in (METRICS, LAYER_STATS, GRAD_NORMS)}

# ---- run.json ---------------------------------------------------------------------------------------

RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"


class FamilyInfo(TypedDict, total=False):
    name: str   # the `arch` column: conf/arch/<name>.yaml
    label: str  # what a net of the family is called in figures: `MiniModel` -> `MiniModel-plain-26`
    title: str  # the family in headings: "MiniModel (Keras-tutorial family, not the paper's nets)"


class RunInfo(TypedDict, total=False):
    """The keys of run.json. Every key is optional to a reader: older or other writers omit some."""
    status: str                # a Status value
    message: str               # one line: the final errors, or why it stopped and what to do
    config: dict               # the resolved configuration (config.arch.name, config.protocol.iterations, ...)
    overrides: list            # the command-line overrides that named the run
    family: FamilyInfo
    num_params: int
    depth: int                 # weighted layers, as the CSVs' `depth`
    device: str                # `cpu`, `cuda`, `cuda:1`
    device_name: str           # `NVIDIA H100 80GB HBM3`, or the CPU
    speed: dict                # the speed switches as they applied: channels_last, bf16, cuda_graphs, compile, ...
    versions: dict             # python, torch, torchvision, hydra
    git_commit: Optional[str]  # `+dirty` when the tree had uncommitted changes
    data_description: str      # which images: says when a copy is not the original CIFAR-10 files
    data_sizes: dict           # train / val / test images actually used
    steps_per_epoch: int
    run_dir: str
    command: str
    started_at: str            # ISO 8601 with the time zone
    ended_at: Optional[str]
    sessions: list             # one entry per process that trained it: started_at, from_iteration
    iterations_done: int
    epochs_done: int
    notes: list                # sentences a reader must see beside the numbers, e.g. that the probe files
                               # stop early because a resume switched the probes off
