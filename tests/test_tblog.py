"""The optional TensorBoard logger: off by default, each epoch's scalars beside the CSVs when on, one line and exit 2
without the package."""
import importlib.util
import sys
import types

import pytest

from experiments.harness import tblog
from tests.helpers.harness import cli, metrics_rows, run_inprocess, sigterm_as_epoch_ends

HAVE_TENSORBOARD = importlib.util.find_spec("tensorboard") is not None


class FakeWriter:
    """torch's SummaryWriter as far as the logger uses it; every instance kept, with what it was given."""
    made: list = []

    def __init__(self, log_dir, purge_step=None):
        self.log_dir, self.purge_step, self.scalars, self.closed = log_dir, purge_step, [], False
        FakeWriter.made.append(self)

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass

    def close(self):
        self.closed = True


@pytest.fixture
def fake_tensorboard(monkeypatch):
    FakeWriter.made = []
    module = types.ModuleType("torch.utils.tensorboard")
    module.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", module)
    return FakeWriter


def test_each_epochs_errors_losses_and_lr_go_to_tensorboard_beside_the_csvs(tiny, tmp_path, fake_tensorboard):
    assert run_inprocess(tiny + ["depth=8", "log.tensorboard=true"], tmp_path) == "completed"
    (writer,) = fake_tensorboard.made
    assert writer.log_dir == str(tmp_path / tblog.DIR) and writer.purge_step is None and writer.closed
    rows = metrics_rows(tmp_path)  # the CSVs as ever
    expected = [(tag, float(r[col]), int(r["iteration"])) for r in rows for tag, col in tblog.SCALARS.items()
                if r[col] != ""]  # no validation split: no val_* tags
    assert [(t, pytest.approx(v), s) for t, v, s in writer.scalars] == expected
    assert {t for t, _, _ in writer.scalars} == {"error/train", "error/test", "loss/train", "loss/test", "lr",
                                                 "seconds/epoch"}


def test_tensorboard_is_off_by_default_and_not_part_of_the_runs_identity(tiny, tmp_path, fake_tensorboard,
                                                                         monkeypatch):
    sigterm_as_epoch_ends(monkeypatch, 1)
    with pytest.raises(SystemExit):
        run_inprocess(tiny + ["depth=8"], tmp_path)
    assert fake_tensorboard.made == [] and not (tmp_path / tblog.DIR).exists()
    monkeypatch.undo()
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", types.SimpleNamespace(SummaryWriter=FakeWriter))
    # switched on at the resume: the same run, its writer purging anything logged after the checkpoint (iteration 4)
    assert run_inprocess(tiny + ["depth=8", "log.tensorboard=true"], tmp_path) == "completed"
    (writer,) = fake_tensorboard.made
    assert writer.purge_step == 4 and [s for t, _, s in writer.scalars if t == "lr"] == [8]


@pytest.mark.skipif(HAVE_TENSORBOARD, reason="tensorboard is installed: the refusal cannot happen")
def test_switched_on_without_the_package_is_one_line_and_exit_2(tiny, tmp_path):
    out = tmp_path / "run"
    r = cli(tiny + ["depth=8", "log.tensorboard=true", f"hydra.run.dir={out}"])
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: log.tensorboard=true needs the tensorboard package: pip install -e '.[tensorboard]' (or leave "
        "log.tensorboard=false: the CSVs hold the same numbers)"], r.stderr
    assert not out.exists()


@pytest.mark.skipif(not HAVE_TENSORBOARD, reason="tensorboard is not installed (the fake writer tests stand in)")
def test_with_the_package_an_event_file_is_written(tiny, tmp_path):
    assert run_inprocess(tiny + ["depth=8", "log.tensorboard=true"], tmp_path) == "completed"
    assert list((tmp_path / tblog.DIR).glob("events.out.tfevents.*"))
