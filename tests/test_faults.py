"""Nothing lost, nothing wrong: the fault and bad-input cases that once corrupted a run or a table, each
reproduced with real processes or files."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import sys
import time
from pathlib import Path

import pytest
import torch

from analysis import report
from experiments import config
from experiments.config import Config
from experiments.errors import UserError
from experiments.harness.rundir import RunDir
from tests.helpers.harness import (
    LONG,
    cli,
    make_image_folder,
    metrics_rows,
    numbers,
    popen,
    run_inprocess,
    sigterm_as_epoch_ends,
    tiny_overrides,
    wait_for_rows,
)


def info(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def wait_for(predicate, proc, timeout=120, step=0.002):
    end = time.time() + timeout
    while time.time() < end and proc.poll() is None:
        if predicate():
            return True
        time.sleep(step)
    return False


# ---- wrong results ------------------------------------------------------------------------------------

@pytest.mark.slow
def test_a_refused_process_leaves_the_first_ones_run_alone(tmp_path):
    """Process A is stopped while it loads a data set (its directory holds only .lock); B and then C on the same
    directory are refused and touch nothing; A then finishes with every epoch once."""
    slow = make_image_folder(tmp_path / "many", per_class_train=400, per_class_test=6)  # decoding takes a while
    out = tmp_path / "run"
    a = popen(tiny_overrides(slow, tmp_path / "data") + LONG + ["protocol.iterations=16", f"hydra.run.dir={out}"])
    try:
        assert wait_for(lambda: (out / ".lock").exists() and "pid" in (out / ".lock").read_text(), a), a.stdout
        os.kill(a.pid, signal.SIGSTOP)  # as if its data took minutes to load
        assert {p.name for p in out.iterdir()} == {".lock"}
        for _ in ("B", "C"):
            r = cli(tiny_overrides(slow, tmp_path / "data2") + [f"hydra.run.dir={out}"])
            assert r.returncode == 2 and f"is in use by pid {a.pid}" in one_error_line(r.stderr)
            assert (out / ".lock").exists()  # the refused process removed nothing
    finally:
        os.kill(a.pid, signal.SIGCONT)
    log = a.communicate(timeout=300)[0]
    assert a.returncode == 0, log
    rows = metrics_rows(out)  # 1,600 images at batch 16: the 16 iterations are one epoch, written once
    assert [(r["epoch"], r["iteration"]) for r in rows] == [("1", "16")] and info(out)["status"] == "completed"


@pytest.mark.slow
def test_resuming_without_run_json_still_checks_the_configuration(tiny, tmp_path, reference):
    out = tmp_path / "run"
    args = tiny + LONG + [f"hydra.run.dir={out}"]
    p = popen(args)
    wait_for_rows(out, 3, p)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    (out / "run.json").unlink()

    changed = cli(args + ["protocol.lr=0.05"])
    assert changed.returncode == 2 and "differs in: protocol.lr" in one_error_line(changed.stderr)
    deeper = cli(args + ["depth=26"])  # a checkpoint that does not fit: named by the key, not a traceback
    assert deeper.returncode == 2 and "differs in: depth" in one_error_line(deeper.stderr)
    assert not (out / "run.json").exists()  # refused before anything was written

    r = cli(args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert numbers(out) == reference and info(out)["config"]["protocol"]["lr"] == 0.1


@pytest.mark.parametrize("end", ["completed", "diverged"])
def test_a_finished_run_refuses_a_different_configuration(tiny, tmp_path, end):
    extra = ["protocol.lr=1e30", "protocol.iterations=12", "protocol.milestones=[100]"] if end == "diverged" else []
    assert run_inprocess(tiny + extra, tmp_path) == end
    before = (tmp_path / "metrics.csv").read_text()
    with pytest.raises(UserError, match=r"differs in: depth, protocol.lr"):
        run_inprocess(tiny + extra + ["depth=56", "protocol.lr=0.05"], tmp_path)
    assert (tmp_path / "metrics.csv").read_text() == before and info(tmp_path)["status"] == end
    assert run_inprocess(tiny + extra, tmp_path) == end  # the same command: nothing to do


@pytest.mark.slow
def test_a_completed_run_whose_rows_stop_short_is_not_averaged_as_final(tiny, tmp_path):
    runs = tmp_path / "runs"
    for seed in (0, 1):
        assert run_inprocess(tiny + [f"seed={seed}", "protocol.iterations=12", "protocol.milestones=[6,9]"],
                             runs / f"s{seed}") == "completed"
    intact = metrics_rows(runs / "s0")[-1]
    cut = runs / "s1" / "metrics.csv"  # a bad copy: the last row is lost, run.json still says completed
    cut.write_text("".join(cut.read_text().splitlines(keepends=True)[:-1]))
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    table = (tmp_path / "out" / "table6.csv").read_text().splitlines()
    row = dict(zip(table[0].split(","), table[1].split(",")))
    assert row["n"] == "1" and float(row["test_err_mean"]) == pytest.approx(float(intact["test_err"]), abs=1e-4)
    assert "`s1` (run.json says completed but metrics.csv stops at iteration 8 of 12" in (
        tmp_path / "out" / "report.md").read_text()


# ---- bad input: one line, exit 2, no run directory ----------------------------------------------------

def out_of_range_values() -> list:
    """(key, a value outside its range) for every ranged numeric key of the schema and of each family."""
    from experiments.nets import families
    ranges = dict(config.numeric_ranges(Config))
    for family in families.all_families():
        ranges.update({f"arch.{f.name}": f.metadata["range"] for f in dataclasses.fields(family.config)
                       if "range" in f.metadata})
    cases = []
    for key, (lo, hi, lo_open, hi_open) in ranges.items():
        cases.append((key, lo if lo_open else lo - 1))
        if hi is not None:
            cases.append((key, hi if hi_open else hi + 1))
    return cases


def test_every_numeric_key_of_the_schema_has_a_range():
    numeric = [f"{prefix}{f.name}" for prefix, cls in [("", Config), *[(f"{f.name}.", f.default_factory)
                                                                     for f in dataclasses.fields(Config)
                                                                     if dataclasses.is_dataclass(f.default_factory)]]
               for f in dataclasses.fields(cls) if f.type in ("int", "float")]
    assert numeric and set(numeric) <= set(config.numeric_ranges(Config)), set(numeric) - set(config.numeric_ranges(Config))


@pytest.mark.parametrize("key, value", out_of_range_values())
def test_an_out_of_range_value_is_one_line_and_exit_2_with_no_run_directory(key, value, tmp_path, monkeypatch,
                                                                            capsys):
    from experiments import run
    arch = ["arch=minimodel"] if key == "arch.units_per_stage" else []  # a family's own key needs that family
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["run", *arch, f"{key}={value}", "data=imagefolder", f"data.root={tmp_path}"])
    with pytest.raises(SystemExit) as exit_:
        run.cli()
    assert exit_.value.code == 2
    line = one_error_line(capsys.readouterr().err)
    assert f"{key}={value!r}" in line or f"{key}=" in line, line
    assert "must be" in line or "milestone" in line
    assert not (tmp_path / "results").exists()


def test_batch_larger_than_the_training_set_is_refused_before_run_json(tiny, tmp_path):
    out = tmp_path / "run"
    r = cli(tiny + ["protocol.batch_size=1000", f"hydra.run.dir={out}"])
    assert r.returncode == 2
    assert "protocol.batch_size=1000 is more than the 64 training images" in one_error_line(r.stderr)
    assert not out.exists()  # it created the directory, so it removed it again


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_a_run_directory_that_cannot_be_created_is_one_line(tiny, tmp_path, where):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run" if where == "under-a-file" else Path("/proc/degradation-test/run")
    r = cli(tiny + [f"hydra.run.dir={out}"])
    assert r.returncode == 2 and "cannot create the run directory" in one_error_line(r.stderr)


def test_a_data_root_that_is_a_file_but_no_archive_says_so(tmp_path):
    not_archive = tmp_path / "images.txt"
    not_archive.write_text("these are not images\n")
    r = cli(["data=imagefolder", f"data.root={not_archive}", f"data.dir={tmp_path / 'data'}", "device=cpu",
             "protocol=smoke", f"hydra.run.dir={tmp_path / 'run'}"])
    line = one_error_line(r.stderr)
    assert r.returncode == 2 and "is a file but not a .tar.gz" in line and "copy it again" not in line
    assert not (tmp_path / "run").exists()


# ---- signals ------------------------------------------------------------------------------------------

def test_ctrl_c_during_start_up_leaves_nothing_behind(tmp_path):
    slow = make_image_folder(tmp_path / "many", per_class_train=400, per_class_test=6)
    out = tmp_path / "run"
    p = popen(tiny_overrides(slow, tmp_path / "data") + [f"hydra.run.dir={out}"])
    assert wait_for(lambda: (out / ".lock").exists(), p)
    p.send_signal(signal.SIGINT)
    log = p.communicate(timeout=60)[0]
    assert p.returncode == 128 + signal.SIGINT, log
    assert "Traceback" not in log and "during start-up" in log
    assert not out.exists()


@pytest.mark.slow
def test_a_second_ctrl_c_stops_at_once_keeps_the_last_checkpoint_and_resumes(tiny, tmp_path, reference,
                                                                            monkeypatch):
    """Two Ctrl-C a moment apart (in this process: real signals, delivered mid-step): the run ends at once as
    `interrupted`, exit 130, and the rerun continues from the last epoch's checkpoint with identical numbers."""
    from experiments.training.train import Trainer
    out = tmp_path / "run"
    original = Trainer.step

    def step(self, x, y):
        if self.iteration == 13:  # mid-epoch 4: the first Ctrl-C asks for a stop, the second stops at once
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)
        return original(self, x, y)
    monkeypatch.setattr(Trainer, "step", step)
    with pytest.raises(SystemExit) as exit_:
        run_inprocess(tiny + LONG, out)
    assert exit_.value.code == 128 + signal.SIGINT
    state = info(out)
    assert state["status"] == "interrupted" and "second SIGINT" in state["message"]
    assert state["iterations_done"] == 12 and "iteration 12 is kept" in state["message"]
    monkeypatch.undo()
    r = cli(tiny + LONG + [f"hydra.run.dir={out}"], timeout=300)
    assert r.returncode == 0, r.stderr
    assert numbers(out) == reference


def test_a_signal_as_the_last_epoch_ends_exits_0_with_the_run_completed(tiny, tmp_path, monkeypatch):
    from experiments.harness.progress import RunProgress
    original = RunProgress.epoch

    def epoch_then_sigterm(self, row):
        original(self, row)
        if row["iteration"] == 8:  # the last one: the signal arrives as the run completes
            os.kill(os.getpid(), signal.SIGTERM)
    monkeypatch.setattr(RunProgress, "epoch", epoch_then_sigterm)
    assert run_inprocess(tiny, tmp_path) == "completed"  # no SystemExit(143): the exit code agrees with run.json
    assert info(tmp_path)["status"] == "completed"


# ---- the epoch's files, written behind the training ----------------------------------------------------

def test_an_epochs_checkpoint_is_written_while_the_next_epoch_trains_and_holds_the_epoch_ends_state(tiny, tmp_path,
                                                                                                    monkeypatch):
    """The first epoch's checkpoint write is held until the second epoch has taken two steps: training must not
    wait for it, and what lands on disk is the weights and momentum as the epoch ended, not the live tensors the
    later steps changed in place."""
    import threading

    from experiments.harness.cell import Cell
    from experiments.training.train import Trainer
    at_end, seen = {}, {}
    two_more = threading.Event()
    on_epoch, step, save = Cell.on_epoch, Trainer.step, RunDir.save_checkpoint

    def record_on_epoch(self, row):
        if row["epoch"] == 1:
            at_end.update({k: v.clone() for k, v in self.trainer.model.state_dict().items()})
            at_end["momentum"] = [b.clone() for b in self.trainer.optimizer.bufs]
            seen["live"] = self.trainer
        on_epoch(self, row)

    def step_and_tell(self, x, y):
        step(self, x, y)
        if self.iteration == 6:
            two_more.set()

    def held_save(self, state):
        if state["trainer"]["iteration"] == 4:
            seen["trained_on"] = two_more.wait(timeout=30)  # False: training waited for this write
            live = seen["live"].model.state_dict()
            seen["same_as_epoch_end"] = all(torch.equal(state["trainer"]["model"][k], at_end[k]) for k in live)
            seen["live_moved"] = any(not torch.equal(live[k], at_end[k]) for k in live)
            seen["momentum_as_at_end"] = all(torch.equal(a, b) for a, b in zip(
                state["trainer"]["optimizer"]["momentum_buffers"], at_end["momentum"]))
        save(self, state)
    monkeypatch.setattr(Cell, "on_epoch", record_on_epoch)
    monkeypatch.setattr(Trainer, "step", step_and_tell)
    monkeypatch.setattr(RunDir, "save_checkpoint", held_save)
    assert run_inprocess(tiny, tmp_path) == "completed"
    assert seen == {"live": seen["live"], "trained_on": True, "same_as_epoch_end": True, "live_moved": True,
                    "momentum_as_at_end": True}
    assert len(metrics_rows(tmp_path)) == 2 and torch.load(tmp_path / "checkpoint.pt")["trainer"]["iteration"] == 8


def test_a_full_disk_ends_the_run_with_one_line_and_the_rerun_loses_no_finished_epoch(tiny, tmp_path, monkeypatch):
    """A checkpoint write that fails (no space left) surfaces at the next epoch end as a RunError naming the
    fix; run.json says failed; no half checkpoint is left; once there is room, the same command resumes from the
    last checkpoint written and ends with the uninterrupted run's numbers."""
    import errno
    three_epochs = tiny + ["protocol.iterations=12", "protocol.milestones=[6,9]"]
    assert run_inprocess(three_epochs, tmp_path / "whole") == "completed"
    out = tmp_path / "run"
    save = torch.save

    def full_at_epoch_2(obj, f, *args, **kwargs):
        save(obj, f, *args, **kwargs)  # half a checkpoint on disk...
        if isinstance(obj, dict) and obj.get("trainer", {}).get("iteration") == 8:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then the disk is full
    monkeypatch.setattr(torch, "save", full_at_epoch_2)
    with pytest.raises(UserError) as e:
        run_inprocess(three_epochs, out)
    message = str(e.value)
    assert "No space left on device" in message and "rerun the same command" in message
    assert "iteration 4" in message and "\n" not in message
    state = info(out)
    assert state["status"] == "failed" and "No space left" in state["message"]
    assert torch.load(out / "checkpoint.pt")["trainer"]["iteration"] == 4
    assert not list(out.glob(".checkpoint.tmp*"))
    monkeypatch.undo()
    assert run_inprocess(three_epochs, out) == "completed"
    assert numbers(out) == numbers(tmp_path / "whole")


# ---- leftovers ----------------------------------------------------------------------------------------

def test_temporary_files_a_killed_run_left_are_removed_by_the_next_owner(tiny, tmp_path, image_folder):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".checkpoint.tmp99999999").write_bytes(b"half a checkpoint")
    (out / ".run.json.tmp99999998").write_text("{")
    cache = tmp_path / "data" / "imagefolder"
    cache.mkdir(parents=True)
    (cache / "tiny-0123.tmp99999997").write_bytes(b"half a cache")  # a dead writer's
    live = cache / f"tiny-0123.tmp{os.getppid()}"
    live.write_bytes(b"a live writer's")
    assert run_inprocess(tiny + [f"data.dir={tmp_path / 'data'}"], out) == "completed"
    assert not list(out.glob(".*.tmp*")) and not list(out.glob(".checkpoint.tmp*"))
    assert [p.name for p in cache.glob("*.tmp*")] == [live.name]


def test_a_locked_directory_is_not_cleaned_by_a_refused_process(tiny, tmp_path):
    out = tmp_path / "run"
    holder = RunDir(out)
    holder.lock()
    (out / ".checkpoint.tmp99999999").write_bytes(b"the holder's business")
    try:
        with pytest.raises(UserError, match="is in use by"):
            run_inprocess(tiny, out)
    finally:
        holder.unlock()
    assert (out / ".checkpoint.tmp99999999").exists() and (out / ".lock").exists()


SIX_EPOCHS = ["protocol.iterations=24", "protocol.milestones=[12,18]"]


def stopped_after_epoch_3(overrides: list, out: Path, monkeypatch) -> None:
    """A run in this process that a SIGTERM stops as its third epoch ends (checkpointed, `interrupted`)."""
    sigterm_as_epoch_ends(monkeypatch, 3)
    with pytest.raises(SystemExit) as e:
        run_inprocess(overrides, out)
    assert e.value.code == 128 + signal.SIGTERM and info(out)["status"] == "interrupted"
    monkeypatch.undo()


@pytest.mark.slow
def test_switching_the_probes_off_on_resume_is_said_in_run_json_and_the_report(tiny, tmp_path, monkeypatch):
    runs = tmp_path / "runs"
    out = runs / "long"
    stopped_after_epoch_3(tiny + SIX_EPOCHS, out, monkeypatch)
    assert run_inprocess(tiny + SIX_EPOCHS + ["probes.enabled=false"], out) == "completed"
    notes = info(out)["notes"]
    assert len(notes) == 1 and "probes switched off" in notes[0] and "stop after epoch 3" in notes[0]
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "probes switched off" in (tmp_path / "out" / "report.md").read_text()


@pytest.mark.slow
def test_resuming_with_other_speed_switches_is_said_per_session_and_in_the_report(tiny, tmp_path, monkeypatch):
    """A GPU sweep resumed elsewhere (bf16 under `auto` on CUDA, fp32 on a CPU) computes its later epochs
    differently; run.json's top-level speed names only the last session's, so each session keeps its own and
    the change is a note."""
    runs = tmp_path / "runs"
    out = runs / "long"
    stopped_after_epoch_3(tiny + SIX_EPOCHS + ["speed.bf16=on"], out, monkeypatch)
    assert run_inprocess(tiny + SIX_EPOCHS + ["speed.bf16=off"], out) == "completed"
    run = info(out)
    first, second = run["sessions"]
    assert first["speed"]["bf16"] is True and second["speed"]["bf16"] is False
    assert first["device_name"] == second["device_name"] and second["from_iteration"] == 12
    assert len(run["notes"]) == 1
    note = run["notes"][0]
    assert note == (f"resumed at iteration {second['from_iteration']} with other speed switches (bf16 on -> off): "
                    "the epochs after it were computed differently")  # the same machine: no device named
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    assert "bf16 on -> off" in (tmp_path / "out" / "report.md").read_text()


def test_a_resume_on_another_device_names_both_and_a_same_place_resume_says_nothing():
    from experiments.harness.cell import _computed_elsewhere
    gpu = {"bf16": True, "channels_last": True, "cuda_graphs": True, "compile": False, "foreach": True}
    cpu = {**gpu, "bf16": False, "cuda_graphs": False}
    was = {"device_name": "NVIDIA H100 80GB HBM3", "speed": gpu}
    assert _computed_elsewhere(was, 47580, "AMD EPYC 9654", cpu) == (
        "resumed at iteration 47580 on AMD EPYC 9654, where the earlier session(s) ran on NVIDIA H100 80GB HBM3, "
        "with other speed switches (bf16 on -> off, cuda_graphs on -> off): the epochs after it were computed "
        "differently")
    assert _computed_elsewhere(was, 47580, "NVIDIA H100 80GB HBM3", dict(gpu)) is None
    assert _computed_elsewhere(was, 0, "AMD EPYC 9654", cpu) is None  # a fresh start computes nothing twice
    assert _computed_elsewhere({"speed": gpu}, 10, "AMD EPYC 9654", cpu) is None  # run.json before these keys


# ---- a real full disk ------------------------------------------------------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A file system that really fills up: a 4 MiB tmpfs (mounting needs root, as CI and the dev machines have)."""
    import subprocess
    where = tmp_path / "disk"
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or 'needs root'}): the full-disk tests need one")
    yield where
    subprocess.run(["umount", "-l", str(where)], capture_output=True)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(path: Path, leave: int = 0) -> Path:
    """A file that takes all the free room of `path`'s file system but `leave` bytes (to the page)."""
    filler = path / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while free_bytes(path) > leave + len(chunk):
                f.write(chunk)
                f.flush()
            while free_bytes(path) > leave:
                f.write(b"\0" * 4096)
                f.flush()
        except OSError:  # full before `leave` was reached: as full as it gets
            pass
    return filler


THREE_EPOCHS = ["depth=8", "protocol.iterations=12", "protocol.milestones=[6,9]"]


def test_a_full_disk_ends_the_run_in_one_line_with_exit_2_and_the_rerun_resumes_exactly(tiny, tmp_path, small_disk):
    """Room for one checkpoint and a half: the second epoch's checkpoint fills the disk. Once: about 60 lines of
    traceback, exit 1, run.json `running`, an empty .run.json.tmp, and a temporary checkpoint kept open by the
    failed torch.save (so that removing it freed nothing)."""
    assert run_inprocess(tiny + THREE_EPOCHS, tmp_path / "whole") == "completed"
    size = (tmp_path / "whole" / "checkpoint.pt").stat().st_size
    out = small_disk / "run"
    filler = fill(small_disk, leave=int(1.5 * size))
    r = cli(tiny + THREE_EPOCHS + [f"hydra.run.dir={out}"])
    assert r.returncode == 2, r.stdout + r.stderr
    line = one_error_line(r.stderr)
    assert "cannot write the epoch's files" in line and "No space left on device" in line, line
    assert "make room" in line and "iteration 4" in line, line
    assert "Traceback" not in r.stdout + r.stderr
    state = info(out)
    assert state["status"] == "failed" and "make room" in state["message"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == [".lock"]  # no temporary file left
    assert torch.load(out / "checkpoint.pt")["trainer"]["iteration"] == 4

    filler.unlink()  # room again: the same command resumes from the checkpoint of epoch 1
    r = cli(tiny + THREE_EPOCHS + [f"hydra.run.dir={out}"])
    assert r.returncode == 0, r.stderr
    assert numbers(out) == numbers(tmp_path / "whole") and info(out)["status"] == "completed"


def test_a_disk_that_stays_full_says_run_json_could_not_say_so_either(tiny, tmp_path, small_disk, monkeypatch):
    """The disk fills up entirely after the first epoch's files: the epoch's files fail, and so does run.json's
    `failed`; the one line says both, no temporary file is left, and the rerun resumes exactly once there is room."""
    from experiments.harness.cell import Cell
    assert run_inprocess(tiny + THREE_EPOCHS, tmp_path / "whole") == "completed"
    out, filled = small_disk / "run", []
    on_epoch = Cell.on_epoch

    def fill_after_epoch_1(cell, row):
        if row["epoch"] == 2:
            cell.flush()  # the first epoch's files are on disk
            filled.append(fill(small_disk))
        on_epoch(cell, row)
    monkeypatch.setattr(Cell, "on_epoch", fill_after_epoch_1)
    with pytest.raises(UserError) as e:
        run_inprocess(tiny + THREE_EPOCHS, out)
    message = str(e.value)
    assert "cannot write the epoch's files" in message and "No space left on device" in message and "\n" not in message
    assert "run.json could not be marked failed either" in message and "still says running" in message
    assert info(out)["status"] == "running"
    assert not [p for p in out.iterdir() if ".tmp" in p.name]
    monkeypatch.undo()
    filled[0].unlink()
    assert run_inprocess(tiny + THREE_EPOCHS, out) == "completed"
    assert numbers(out) == numbers(tmp_path / "whole")


# ---- only regular files are read from a run directory -------------------------------------------------------------

@pytest.mark.parametrize("name", ["run.json", "checkpoint.pt", ".lock"])
def test_a_fifo_in_a_run_directory_is_one_line_and_exit_2_never_a_hang(name, tiny, tmp_path):
    """A FIFO named run.json, checkpoint.pt or .lock once made the run wait forever for a writer."""
    out = tmp_path / "run"
    out.mkdir()
    if name != "run.json":  # a checkpoint is read only when run.json says the run is not finished
        (out / "run.json").write_text(json.dumps({"status": "interrupted"}))
    os.mkfifo(out / name)
    r = cli(tiny + ["depth=8", f"hydra.run.dir={out}"], timeout=60)
    assert r.returncode == 2 and "not a regular file" in one_error_line(r.stderr), r.stderr
    assert (out / name).is_fifo() and not (out / "metrics.csv").exists()  # nothing replaced or written


def test_a_linked_run_json_is_not_followed(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (tmp_path / "elsewhere.json").write_text(json.dumps({"status": "completed"}))
    (out / "run.json").symlink_to(tmp_path / "elsewhere.json")
    with pytest.raises(UserError, match="a symbolic link, not a regular file"):
        run_inprocess(tiny + ["depth=8"], out)


def test_a_fifo_named_metrics_csv_is_replaced_by_the_runs_own_file(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    os.mkfifo(out / "metrics.csv")
    assert run_inprocess(tiny + ["depth=8"], out) == "completed"
    assert (out / "metrics.csv").is_file() and len(metrics_rows(out)) == 2


def test_a_run_json_nested_too_deep_to_parse_is_one_line(tiny, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run.json").write_text("[" * 200_000 + "]" * 200_000)
    r = cli(tiny + ["depth=8", f"hydra.run.dir={out}"])
    assert r.returncode == 2 and "is not valid JSON (nested too deep)" in one_error_line(r.stderr)


# ---- config ranges, and text as UTF-8 whatever the locale ---------------------------------------------------------

@pytest.mark.parametrize("args, expected", [
    (["seed=1125899906842624"], "seed=1125899906842624 is outside what it can mean: it must be in [0, 4.29497e+09]"),
    (["depth=20.7"], "depth=20.7: Value '20.7' of type 'float' could not be converted to Integer"),
    (["protocol.name=../../../tmp/PWNED"], "protocol.name='../../../tmp/PWNED' names the folder results/<protocol.name>/"),
])
def test_a_value_that_would_fail_mid_run_or_escape_results_is_refused_up_front(args, expected, tiny, tmp_path):
    """seed=2**50 passed the check and failed in the first batch (int64 overflow); a protocol name is a folder."""
    r = cli(tiny + args, cwd=tmp_path)
    assert r.returncode == 2 and expected in one_error_line(r.stderr), r.stderr
    assert not (tmp_path / "results").exists() and not Path("/tmp/PWNED").exists()


def test_text_is_written_and_read_as_utf_8_under_an_ascii_locale(tiny, tmp_path):
    """Under LC_ALL=C without Python's UTF-8 coercion the default encoding is ASCII: every file names UTF-8."""
    import subprocess
    env = {"LC_ALL": "C", "LANG": "C", "PYTHONCOERCECLOCALE": "0", "PYTHONUTF8": "0", "PYTHONIOENCODING": "utf-8"}
    script = tmp_path / "write.py"  # a script is read as UTF-8 whatever the locale; a -c argument is not
    script.write_text(
        "import locale, sys\nfrom pathlib import Path\nfrom experiments.harness.rundir import RunDir, atomic_write\n"
        "assert locale.getpreferredencoding(False).lower() in ('ascii', 'ansi_x3.4-1968'), locale.getpreferredencoding()\n"
        "p = Path(sys.argv[1])\natomic_write(p / 'a.md', '± §4.2 ×\\n')\nrd = RunDir(p / 'r')\nrd.lock()\n"
        "rd.write_info({'title': 'paper §4.2'})\nprint(rd.read_info()['title'] == 'paper §4.2')\n", encoding="utf-8")
    r = subprocess.run([sys.executable, str(script), str(tmp_path)], env={**os.environ, **env, "PYTHONPATH": str(
        Path(__file__).resolve().parents[1])}, capture_output=True, encoding="utf-8")
    assert r.returncode == 0 and r.stdout.strip() == "True", r.stderr
    assert (tmp_path / "a.md").read_bytes() == "± §4.2 ×\n".encode()
    r = cli(tiny + ["depth=8", f"hydra.run.dir={tmp_path / 'run'}"], env=env)
    assert r.returncode == 0 and info(tmp_path / "run")["status"] == "completed", r.stderr


@pytest.mark.parametrize("after", ["open", "flock"])
def test_ctrl_c_while_the_run_directory_is_being_locked_leaves_nothing(tmp_path, monkeypatch, after):
    """The start-up window a clean clone's make test hit under load: .lock made, the lock not yet recorded as held
    (a Ctrl-C just after opening it, or just after flock succeeded). The directory goes, as after a later Ctrl-C."""
    from experiments.harness import rundir
    real, calls = rundir.fcntl.flock, []

    def flock(f, how):
        calls.append(how)
        if len(calls) == 1:
            if after == "flock":
                real(f, how)
            raise KeyboardInterrupt
        return real(f, how)
    monkeypatch.setattr(rundir.fcntl, "flock", flock)
    rd = rundir.RunDir(tmp_path / "run")
    with pytest.raises(KeyboardInterrupt):
        rd.lock()
    assert not (tmp_path / "run").exists() and rd._lock_file is None and rd._opening is None
    # a directory with a file of somebody else's is never removed
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        rundir.RunDir(tmp_path / "kept").lock()
    assert (tmp_path / "kept" / "notes.txt").read_text() == "mine"
