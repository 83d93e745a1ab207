"""a-martyn/resnet (BSD-3-Clause), the published source both sides read: its facts (repository, commit, licence,
schedule, the eight nets' files) and the checks of a clone of it. `analysis.published` converts its curves into
runs; `experiments.pretrained` imports its trained weights as runs. Here, in the standard-library-only runformat,
because experiments/ must not import analysis/ (nor analysis/ experiments/): one home both may import.
"""
from __future__ import annotations

import csv
import io
import math
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path

REPOSITORY = "a-martyn/resnet"
URL = "https://github.com/a-martyn/resnet"
COMMIT = "a9779154427bc5d28d89c213e1ae73613c353f74"  # 2023-10-10, "Create LICENSE": the results are of 2019
LICENSE_ID = "BSD-3-Clause"
NAME = "a-martyn-cifar10"
HOME = f"results/reference/{NAME}"  # where the set is committed, as its README names it
HEADER = "epoch,train_loss,train_err,test_err"  # the source's columns, in its order
PERCENT = ("train_err", "test_err")
# their main.ipynb: batch 128 over the 50,000 training images, the last, short batch (80 images) kept, so 391
# iterations an epoch; 164 epochs; MultiStepLR(milestones=[82, 123], gamma=0.1) stepped after each epoch, so the
# lr is 0.01 from epoch 82 (0-based) on and 0.001 from epoch 123 on
ITERS_PER_EPOCH, EPOCHS, DROP_EPOCHS = 391, 164, (82, 123)
TRAIN_IMAGES, TEST_IMAGES = 50_000, 10_000
# results/<stem>.csv -> (depth, residual)
NETS = {f"{'resnet' if residual else 'plainnet'}{depth}": (depth, residual)
        for residual in (False, True) for depth in (20, 32, 44, 56)}

SCHEDULE = (f"{EPOCHS} epochs of {ITERS_PER_EPOCH} iterations ({EPOCHS * ITERS_PER_EPOCH:,}), batch 128, SGD with "
            f"momentum 0.9 and weight decay 1e-4, lr 0.1 divided by 10 after {DROP_EPOCHS[0]} and "
            f"{DROP_EPOCHS[1]} epochs (iterations {DROP_EPOCHS[0] * ITERS_PER_EPOCH:,} and "
            f"{DROP_EPOCHS[1] * ITERS_PER_EPOCH:,}); 4-pixel padding, random 32x32 crop and horizontal flip; inputs "
            "normalised per channel by a mean and std taken over the training and test images together; He "
            "(fan-out) initialisation; one unseeded run per net (their main.ipynb, train.py, resnet.py)")
CONVERTED = (f"their epoch e (0-based) is our epoch e + 1, ending at iteration {ITERS_PER_EPOCH} x (e + 1); "
             "train_err and test_err times 100 in decimal arithmetic (percent / 100 is the source's number "
             "exactly); train_loss as written: the loss of the epoch's last mini-batch, not a mean over the epoch; "
             "lr, test_loss and the other columns the source has not are empty")
DATA = ("the original CIFAR-10 (torchvision.datasets.CIFAR10, as the source's main.ipynb loads it: 50,000 training "
        "and 10,000 test images)")
TRAIN_ERR_NOTE = ("train_err is theirs: measured after each epoch in eval mode over the 50,000 training images as "
                  "the training loader draws them (randomly cropped and flipped), not this harness's running error "
                  "of the epoch's mini-batches in training mode")


class PublishedError(ValueError):
    """The source cannot be converted: one line, with the way out."""


def percent(text: str) -> str:
    """`0.61566` -> `61.566`: exact, so that percent / 100 gives back the source's number."""
    return format(Decimal(text).scaleb(2), "f")


def check_rows(path: Path, data: bytes) -> list:
    """The rows of one source file as texts, each checked: consecutive epochs from 0, at most the schedule's,
    finite numbers, errors between 0 and 1."""
    try:
        text = data.decode()
    except UnicodeDecodeError:
        raise PublishedError(f"{path}: not UTF-8 text: not a results file of {REPOSITORY}") from None
    lines = list(csv.reader(io.StringIO(text)))
    if not lines or ",".join(lines[0]) != HEADER:
        found = ",".join(lines[0]) if lines else "nothing"
        raise PublishedError(f"{path}: its header is `{found}`, not `{HEADER}`: not a results file of {REPOSITORY}")
    rows = lines[1:]
    if not rows:
        raise PublishedError(f"{path}: no epoch rows under the header: give the file as {REPOSITORY} commits it")
    if len(rows) > EPOCHS:
        raise PublishedError(f"{path}: {len(rows)} epoch rows, more than the {EPOCHS} of the schedule this "
                             f"conversion describes: give the file as {REPOSITORY} commits it at {COMMIT[:7]}")
    for number, row in enumerate(rows):
        where = f"{path} line {number + 2}"
        if len(row) != len(HEADER.split(",")):
            raise PublishedError(f"{where}: {len(row)} fields, expected {len(HEADER.split(','))} ({HEADER})")
        if row[0] != str(number):
            raise PublishedError(f"{where}: epoch `{row[0]}` where {number} was expected (consecutive from 0)")
        for name, value in zip(HEADER.split(",")[1:], row[1:]):
            try:
                finite = math.isfinite(float(value)) and Decimal(value).is_finite()
            except (ValueError, InvalidOperation):
                finite = False
            if not finite:
                raise PublishedError(f"{where}: {name} `{value}` is not a finite number")
            if name in PERCENT and not 0 <= Decimal(value) <= 1:
                raise PublishedError(f"{where}: {name} {value} is not a fraction between 0 and 1")
    return rows


def checked_out(source: Path) -> str | None:
    """The commit a git clone at `source` has checked out, read from its files (.git/HEAD, the branch's ref or
    packed-refs); None when `source` is no clone (the files copied elsewhere) or the commit cannot be read."""
    git = source / ".git"
    try:
        head = (git / "HEAD").read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if re.fullmatch(r"[0-9a-f]{40}", head):
        return head  # detached, as `git checkout <commit>` leaves it
    ref = head.removeprefix("ref: ").strip()
    try:
        return (git / ref).read_text(encoding="utf-8").strip()
    except OSError:
        pass
    try:
        packed = (git / "packed-refs").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    return next((line.split()[0] for line in packed if line.endswith(f" {ref}")), None)
