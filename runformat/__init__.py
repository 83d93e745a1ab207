"""The run-file format: what a run directory holds, for the writer (`experiments/`) and the reader
(`analysis/`) alike. Standard library only, so that `analysis/` can import it without `experiments/`
(and without torch or Hydra), and so that anyone can write runs the analysis will read.

A run directory holds

    run.json          status, resolved config and provenance (`RunInfo` below)
    metrics.csv       one row per epoch (`METRICS`)
    layer_stats.csv   Figure 7's layer responses, one row per epoch and 3x3 layer (`LAYER_STATS`)
    grad_norms.csv    gradient norms, one row per epoch, layer and kind (`GRAD_NORMS`)
    block_ratios.csv  after training: how far each block is from the identity (`BLOCK_RATIOS`)
    lesion.csv        after training: the test error with each block deleted (`LESION`)
    constructed.csv   after training: the deeper net built from this one with identity blocks (`CONSTRUCTED`)
    checkpoint.pt     the writer's own state (never read by the analysis); for imported weights (`ImportedInfo`)
                      the weights and config only

Every CSV repeats the identity columns (`IDENTITY_COLUMNS`) on every row, so a file stands alone.

**The minimal schema the analysis accepts**, from this harness, an older version of it, or a user's own
training code: a `metrics.csv` with the columns of `METRICS.required`

    epoch, iteration, train_err, test_err, depth, residual

(errors in percent; one row per logged epoch; extra columns are ignored, missing optional ones are empty)
and, beside it, optionally a `run.json` object. Without `arch` in either file a run belongs to the
paper's family (`PAPER_FAMILY`); without `run.json` its status is unknown and it counts as unfinished;
a run is finished only if its status is `completed` *and* its rows reach its protocol's iterations
(`config.protocol.iterations`) where run.json gives them.
A cell that is not what its column holds (inf, an epoch of 1.5: `Table.whole`, `Table.percent`) is empty to the
reader, and run.json is strict JSON in UTF-8.

**A run's identity** (`identity`, `recipe`, at the end): the config keys that change the numbers. The harness names
and resumes a run by them; the analysis averages runs of one net only if their recipes agree.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum
from typing import Optional, TypedDict

PAPER_FAMILY = "resnet_cifar"  # He et al. 2016 §4.2: the only family compared with Table 6

# A family's name (`arch`, config.arch.name, family.name) and label become parts of file names (`minimodel_fig6.png`)
# and of net names in tables and CSVs, so each must be one safe path component: letters, digits and `_ . -`, not
# starting with `.` or `-` (no hidden file, no option, no `..`), at most 64 characters; the rule the harness applies
# to the names it makes folders of (experiments/config.py's NAME).
SAFE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")


def is_safe_name(value) -> bool:
    return isinstance(value, str) and SAFE_NAME.fullmatch(value) is not None


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


class TrainErrMeasure(str, Enum):
    """run.json's `train_err_measure`: what a run's `train_err` column measures. The two give different numbers for
    one net (in training mode, on augmented batches while the weights still move, a net errs more than the same net
    evaluated after the epoch), so a comparison of training errors must say which each side recorded."""
    running = "running"                    # the running error over the epoch's training mini-batches, in training
                                           # mode, each batch as it was trained on: the paper's dashed curves (this
                                           # harness)
    eval_after_epoch = "eval_after_epoch"  # after each epoch, in eval mode, over the whole training set

    def __str__(self) -> str:
        return self.value


# ---- the CSV tables ---------------------------------------------------------------------------------

# init_depth: the depth of the trained net a run started from (`init.from=RUN_DIR`: that net deepened by identity
# blocks), empty for a run trained from scratch. Part of the net's identity: such a run is another net than the
# scratch run of its depth, and is never averaged with it.
IDENTITY_COLUMNS = ("arch", "depth", "residual", "shortcut", "seed", "protocol", "init_depth")
IDENTITY_NUMERIC = ("depth", "seed", "init_depth")


@dataclass(frozen=True)
class Table:
    file: str
    columns: tuple   # in the order the writer writes them, identity columns last
    required: tuple  # a row without any of these cannot be placed on a figure or in a table
    numeric: tuple   # parsed as numbers by the reader
    key: tuple       # what identifies a row within one run: a repeated key keeps the later row
    whole: tuple = ()    # counts and indices: whole numbers >= 0 (a cell that is not one is empty to the reader)
    percent: tuple = ()  # errors in percent: 0 to 100 (likewise)


METRICS = Table(
    "metrics.csv",
    columns=("epoch", "iteration", "lr", "train_loss", "train_err", "test_loss", "test_err", "val_loss",
             "val_err", "epoch_time_s") + IDENTITY_COLUMNS,
    required=("epoch", "iteration", "train_err", "test_err", "depth", "residual"),
    numeric=("epoch", "iteration", "lr", "train_loss", "train_err", "test_loss", "test_err", "val_loss",
             "val_err", "epoch_time_s") + IDENTITY_NUMERIC,
    key=("iteration",),
    whole=("epoch", "iteration") + IDENTITY_NUMERIC,
    percent=("train_err", "test_err", "val_err"),
)
LAYER_STATS = Table(
    "layer_stats.csv",
    columns=("epoch", "layer", "name", "stage", "std") + IDENTITY_COLUMNS,
    required=("epoch", "layer", "std", "depth", "residual"),
    numeric=("epoch", "layer", "stage", "std") + IDENTITY_NUMERIC,
    key=("epoch", "layer"),
    whole=("epoch", "layer", "stage") + IDENTITY_NUMERIC,
)
GRAD_NORMS = Table(
    "grad_norms.csv",
    columns=("epoch", "layer", "name", "stage", "kind", "norm", "samples") + IDENTITY_COLUMNS,
    required=("epoch", "layer", "kind", "norm", "depth", "residual"),
    numeric=("epoch", "layer", "stage", "norm", "samples") + IDENTITY_NUMERIC,
    key=("kind", "epoch", "layer"),
    whole=("epoch", "layer", "stage", "samples") + IDENTITY_NUMERIC,
)

# -- written once a run has completed (experiments.inspect), from its final weights. Each block has a `skip`: the
# map that is left when the block is deleted, and that it is compared with: `identity`; `zero-pad` (option A's
# identity, subsampled and padded with zero channels, for a block that changes the shape: a plain net's
# downsampling blocks get this one too); `projection` (a residual block's own learned 1x1 shortcut: option B,
# MiniModel). A block with no such map (a MiniModel plain unit that pools) has no row.
BLOCK_RATIOS = Table(
    "block_ratios.csv",
    # over the test images X, as norms of whole tensors: branch_ratio = ||F(X)|| / ||skip(X)|| with F the residual
    # branch (empty for a plain block, which has none); change_ratio = ||block(X) - skip(X)|| / ||skip(X)||
    columns=("block", "name", "stage", "skip", "branch_ratio", "change_ratio") + IDENTITY_COLUMNS,
    required=("block", "change_ratio", "depth", "residual"),
    numeric=("block", "stage", "branch_ratio", "change_ratio") + IDENTITY_NUMERIC,
    key=("block",),
    whole=("block", "stage") + IDENTITY_NUMERIC,
)
LESION = Table(
    "lesion.csv",
    # test error (%) and loss with one block replaced by its skip at test time, and the intact net's on every row
    columns=("block", "name", "stage", "skip", "test_err", "test_loss", "intact_test_err", "intact_test_loss")
    + IDENTITY_COLUMNS,
    required=("block", "test_err", "intact_test_err", "depth", "residual"),
    numeric=("block", "stage", "test_err", "test_loss", "intact_test_err", "intact_test_loss") + IDENTITY_NUMERIC,
    key=("block",),
    whole=("block", "stage") + IDENTITY_NUMERIC,
    percent=("test_err", "intact_test_err"),
)
CONSTRUCTED = Table(
    "constructed.csv",
    # One row per deeper depth: this net's trained blocks first in each stage, identity blocks after them.
    # test_*: eval mode on the test images, this (shallow) net and the constructed (deep) one, with the largest
    # absolute logit difference between them. train_*: training mode (BN normalises by batch statistics) on
    # `batches` training batches as training draws them; train_deviation = mean over those batches of
    # ||logits_deep - logits_shallow|| / ||logits_shallow||, 0 where the construction is exact in training mode too.
    columns=("deep_depth", "test_err_shallow", "test_err_deep", "test_loss_shallow", "test_loss_deep",
             "max_logit_diff", "train_err_shallow", "train_err_deep", "train_loss_shallow", "train_loss_deep",
             "train_deviation", "batches") + IDENTITY_COLUMNS,
    required=("deep_depth", "test_err_shallow", "test_err_deep", "depth", "residual"),
    numeric=("deep_depth", "test_err_shallow", "test_err_deep", "test_loss_shallow", "test_loss_deep",
             "max_logit_diff", "train_err_shallow", "train_err_deep", "train_loss_shallow", "train_loss_deep",
             "train_deviation", "batches") + IDENTITY_NUMERIC,
    key=("deep_depth",),
    whole=("deep_depth", "batches") + IDENTITY_NUMERIC,
    percent=("test_err_shallow", "test_err_deep", "train_err_shallow", "train_err_deep"),
)
TABLES = {t.file: t for t in (METRICS, LAYER_STATS, GRAD_NORMS, BLOCK_RATIOS, LESION, CONSTRUCTED)}
INSPECTION_TABLES = (BLOCK_RATIOS, LESION, CONSTRUCTED)

# ---- run.json ---------------------------------------------------------------------------------------

RUN_JSON = "run.json"
CHECKPOINT = "checkpoint.pt"
LOCK = ".lock"


class FamilyInfo(TypedDict, total=False):
    name: str   # the `arch` column: conf/arch/<name>.yaml
    label: str  # what a net of the family is called in figures: `MiniModel` -> `MiniModel-plain-26`
    title: str  # the family in headings: "MiniModel (Keras-tutorial family, not the paper's nets)"


class InitInfo(TypedDict, total=False):
    """run.json's `init`: the run started from another run's net, deepened by identity blocks (`init.from`)."""
    source: str      # init.from as given
    run: str         # the source run directory's name
    depth: int       # its weighted depth: the `init_depth` column
    start: dict      # the constructed net before the first step: a CONSTRUCTED row (test_err_deep, ...)


class InspectionInfo(TypedDict, total=False):
    """run.json's `inspection`: what the after-training inspection wrote, or why not."""
    status: str      # `done`, `not supported` (the family offers none of the measures), `failed`
    files: list      # the INSPECTION_TABLES files written
    notes: list      # one line per measure skipped, and why (`constructed: not supported for MiniModel ...`)
    seconds: float   # what it took (the cost it adds to a run)
    timings: dict    # seconds per measure: `blocks` (block ratios and lesions, one walk), `constructed`
    at: str          # ISO 8601, when


class PublishedInfo(TypedDict, total=False):
    """run.json's `published`: the run is another project's published curve, converted into this format
    (`analysis.published`), not a run this harness trained. Every number in metrics.csv comes from `file`."""
    repository: str     # `a-martyn/resnet`
    url: str
    commit: str         # the commit `file` was read at
    file: str           # its path in the repository
    sha256: str         # of the file's bytes
    values_sha256: str  # of its numbers, so that the converted rows can be checked without the file: sha256 of one
                        # UTF-8 line per row, `epoch,value,...\n` in the file's column order, the epoch as written and
                        # each value as Python's float.hex
    license: str        # its SPDX identifier; the text is beside the set (results/reference/<name>/LICENSE)
    schedule: str       # how it was trained, in words (config.protocol has the same as numbers)
    converted: str      # what the conversion did to the numbers


class ImportedInfo(TypedDict, total=False):
    """run.json's `imported`: the run's weights were trained by another project and imported (`experiments.pretrained`),
    not trained by this harness. Its metrics.csv has one row, this harness's evaluation of them on the run's own data
    (config.data; train_err in eval mode over the unaugmented training images), and its probe and inspection files
    come from the same weights on the same data."""
    repository: str        # `a-martyn/resnet`
    url: str
    commit: str            # the commit `file` was read at
    file: str              # its path in the repository: `pretrained/plainnet56.pt`
    sha256: str            # of the file's bytes
    license: str           # its SPDX identifier; the text is beside the set (LICENSE)
    epoch: Optional[int]   # the epoch of their schedule whose weights the file holds (1-based, as metrics.csv counts)
    epoch_evidence: str    # how that is known, in words
    trained_on: str        # the data the weights were trained on: not necessarily config.data, what they are
                           # evaluated on here
    normalize: dict        # the input normalisation they were trained with: `kind` (config's protocol.normalize) and
                           # `mean`, `std` (per channel); config.protocol has the same, and every evaluation uses it
    tensors: int           # how many tensors were mapped (by position, each one's kind and shape checked)
    source_errors_file: str   # the source's own curve for these weights (`results/plainnet56.csv`)
    source_train_err: float   # its errors (%) at `epoch`, on `trained_on`, as the source measured them
    source_test_err: float


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
    speed: dict                # the speed switches as they applied: channels_last, bf16, cuda_graphs, compile, fuse, ...
    speed_choice: dict         # the first-minute choice of the step (training.variants): `variant`, its `switches`,
                               # `seconds`, `device_type`, `device_name`, and per variant `passed`, `check`,
                               # `ms_per_step`, `seconds`; a resumed run keeps it
    versions: dict             # python, torch, torchvision, hydra
    git_commit: Optional[str]  # `+dirty` when the tree had uncommitted changes
    data_description: str      # which images: says when a copy is not the original CIFAR-10 files
    data_fingerprint: str      # the data by its content (an archive's sha256, or a folder's files'; `cifar10`: torchvision's
                               # checksummed files): part of the run's identity, checked on resume (since 2026-12-04)
    num_classes: int           # the classes of its data, which size the net's head (since 2026-12-04)
    data_sizes: dict           # train / val / test images actually used
    steps_per_epoch: int
    run_dir: str
    command: str
    started_at: str            # ISO 8601 with the time zone
    ended_at: Optional[str]
    sessions: list             # one entry per process that trained it: started_at, from_iteration, and (since
                               # 2026-11-23) device_name, speed, git_commit
    iterations_done: int
    epochs_done: int
    notes: list                # sentences a reader must see beside the numbers, e.g. that the probe files
                               # stop early because a resume switched the probes off
    init: InitInfo              # only for a run started with init.from
    inspection: InspectionInfo  # once the after-training inspection ran
    train_err_measure: str      # a TrainErrMeasure value: what `train_err` measures (runs written before it omit it)
    published: PublishedInfo    # only for another project's curve converted into this format
    renamed_from: str           # the name an older naming rule gave its directory (experiments.rename)
    imported: ImportedInfo      # only for another project's trained weights, imported and evaluated here


# ---- a run's identity: which config keys change the numbers ----------------------------------------------
# One rule for both sides: the harness refuses to resume or rerun a run directory with another identity, and the
# analysis never averages runs of one net whose recipes differ.

# Keys that say how a run is computed or where things live, not what it computes: they may change between a run and
# its resumption, and are left out of the directory name. `data.root` is where the data lives: the data itself is
# known by its content (run.json's `data_fingerprint`), so the same archive under another path is the same data.
NOT_IDENTITY = ("device", "data.dir", "data.download", "data.root", "progress", "speed", "probes", "force", "inspect",
                "log")
# Keys that say which net a run trains (the net's name in the analysis) and which seed: runs that differ only in
# these share a recipe. Everything else in the identity is the recipe.
NET_KEYS = ("arch", "depth", "residual", "shortcut", "init", "seed")


def excluded(key: str, keys) -> bool:
    """`key` is one of `keys` or under one of them (`speed.bf16` under `speed`)."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def identity(config: dict) -> dict:
    """The flattened resolved config (`protocol.lr`: 0.1) minus the keys that do not change the numbers."""
    flat = {}

    def walk(node, prefix):
        for k, v in node.items():
            key = f"{prefix}{k}"
            if isinstance(v, dict):
                walk(v, key + ".")
            elif not excluded(key, NOT_IDENTITY):
                flat[key] = v
    walk(config if isinstance(config, dict) else {}, "")
    return flat


def recipe(config: dict, data_fingerprint: Optional[str] = None) -> dict:
    """What runs of one net must share to be averaged: the identity minus the net and the seed, with the data
    (`data`) by its content where run.json records it (`data_fingerprint`), else by `data.root` as written."""
    flat = {k: v for k, v in identity(config).items() if not excluded(k, NET_KEYS)}
    data = config.get("data") if isinstance(config, dict) else None
    root = data.get("root") if isinstance(data, dict) else None
    if data_fingerprint or root:
        flat["data"] = data_fingerprint or root
    return flat


def differing(a: dict, b: dict, common_only: bool = False) -> list:
    """The keys whose values differ, sorted. `common_only`: only keys both have (a writer that omits a key says
    nothing about it)."""
    keys = a.keys() & b.keys() if common_only else a.keys() | b.keys()
    return sorted(k for k in keys if a.get(k) != b.get(k))
