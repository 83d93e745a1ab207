"""The optional TensorBoard view of a run (`log.tensorboard=true`): each epoch's scalars, beside the CSVs and never
instead, in RUN_DIR/tensorboard/, so that `tensorboard --logdir results/<protocol>/runs` shows every run of a sweep
live. TensorBoard is an extra (`pip install -e '.[tensorboard]'`), imported only when switched on."""
from __future__ import annotations

from pathlib import Path

from experiments.errors import UserError

DIR = "tensorboard"
# tag -> metrics.csv column; a run without a validation split has no val_* values and gets no val tags
SCALARS = {"error/train": "train_err", "error/test": "test_err", "error/val": "val_err", "loss/train": "train_loss",
           "loss/test": "test_loss", "loss/val": "val_loss", "lr": "lr", "seconds/epoch": "epoch_time_s"}


def writer_class():
    """torch's SummaryWriter, or the one line that says how to get it (torch.utils.tensorboard needs the package)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:
        raise UserError("log.tensorboard=true needs the tensorboard package: pip install -e '.[tensorboard]' "
                        "(or leave log.tensorboard=false: the CSVs hold the same numbers)") from e
    return SummaryWriter


class EpochScalars:
    """One run's writer, made at its first epoch end in this process (a run stopped during start-up leaves no folder).
    A resumed run purges what the killed one logged after its last checkpoint, as its metrics.csv drops those rows."""

    def __init__(self, run_dir: Path, iteration: int):
        self.run_dir, self.start, self.writer = Path(run_dir), iteration, None

    def epoch(self, row: dict) -> None:
        if self.writer is None:
            self.writer = writer_class()(str(self.run_dir / DIR), purge_step=self.start or None)
        for tag, column in SCALARS.items():
            if row.get(column) is not None:
                self.writer.add_scalar(tag, row[column], row["iteration"])
        self.writer.flush()  # a live view: the epoch is on disk now, not at the writer's next timed flush

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
