"""One run directory's life: opened (checked, locked, resumed or started), trained by the runner, closed with
its status. A single run is one cell; a sweep on one GPU opens many and trains them together.

Everything that can refuse a run is checked before the directory is touched (the config) or before run.json
says `running` (the directory, the checkpoint, the data); a refused run leaves behind nothing it did not find.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import signal
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from experiments.config import Config, Switch, checked_ranges, to_dict
from experiments.data import datasets as data_mod
from experiments.data.cache import DataCache
from experiments.data.loader import Normalizer
from experiments.errors import UserError
from experiments.harness import init_from, inspection, provenance, tblog
from experiments.harness.checkpoint import classes_of
from experiments.harness.progress import SWEEP, RunProgress
from experiments.harness.rundir import RunDir, RunError, config_diff, host_copy, identity_columns
from experiments.nets import families
from experiments.nets.resnet_cifar import num_params
from experiments.science import measures
from experiments.training.device import resolve_device
from experiments.training.train import Trainer, applied_speed, make_trainer
from experiments.training.variants import with_switches
from runformat import GRAD_NORMS, LAYER_STATS, METRICS, Status, TrainErrMeasure

log = logging.getLogger("experiments")


@dataclass
class Job:
    """What to run, and where: the config, the overrides that named it, its run directory."""
    cfg: Config
    run_dir: Path
    overrides: list

    @property
    def config(self) -> dict:
        return to_dict(self.cfg)  # the resolved config as run.json records it (and resume compares)


@dataclass
class Result:
    """How a cell ended (or why it never started): what a run returns and a sweep's summary lists."""
    status: Status
    message: str = ""
    run_dir: str = ""

    def __str__(self) -> str:
        return self.status.value + (f" ({self.message})" if self.message else "")


@dataclass
class Cell:
    job: Job
    rd: RunDir
    family: families.Family
    depth: int  # weighted layers
    info: dict = field(default_factory=dict)  # run.json
    trainer: Optional[Trainer] = None
    ds: Optional[data_mod.Dataset] = None
    extra: dict = field(default_factory=dict)  # the identity columns of every CSV row
    progress: Optional[RunProgress] = None
    saved_at: int = 0  # the iteration of the checkpoint on disk
    result: Optional[Result] = None  # set once the cell has nothing (more) to do
    writes: Optional[Future] = None  # the last epoch's files, being written behind the training
    writer: Optional[ThreadPoolExecutor] = None
    normalizer: Optional[Normalizer] = None  # the stream's input normalisation, which the checkpoint keeps
    scalars: Optional[tblog.EpochScalars] = None  # log.tensorboard

    @property
    def cfg(self) -> Config:
        return self.job.cfg

    def tables(self) -> dict:
        t = self.trainer
        out = {METRICS.file: t.history}
        if t.probes:
            out.update({LAYER_STATS.file: t.probes.layer_rows, GRAD_NORMS.file: t.probes.grad_rows})
        return out

    def on_epoch(self, row: dict) -> None:
        new = {name: [row] if name == METRICS.file else [r for r in rows if r["epoch"] == row["epoch"]]
               for name, rows in self.tables().items()}
        self.write_behind(new)
        if self.scalars:
            self.scalars.epoch(row)
        self.progress.epoch(row)

    def save(self) -> None:
        """The checkpoint now, on disk when this returns (a stop's)."""
        self.write_behind({})
        self.flush()

    def write_behind(self, tables: dict) -> None:
        """Append `tables`' rows to the CSVs, then write the checkpoint, in a thread while training goes on: the
        files were 0.29 s of every epoch end on an H100 (8 nets), with the GPU idle. The state is copied to the
        host first, since the next steps change the tensors in place. One write at a time, in order: the next
        waits for the last, and a failed write (a full disk) ends the run at the next epoch end, or when it
        closes, as a RunError. A kill mid-write loses nothing finished: the checkpoint is renamed into place
        whole, and a resume rewrites the CSVs from it (an appended row without its checkpoint is dropped)."""
        self.flush()
        # the config travels with the weights: a run's identity never depends on run.json surviving
        # and the input normalisation (experiments.harness.checkpoint.load_model): the weights mean nothing without it
        state = host_copy({"trainer": self.trainer.state_dict(), "rng": torch.get_rng_state(),
                           "config": self.job.config, **{k: self.info[k] for k in CHECKPOINTED if k in self.info},
                           **({"input": self.normalizer.state_dict()} if self.normalizer else {})})
        iteration, rd, extra = self.trainer.iteration, self.rd, self.extra

        def write() -> int:
            for name, rows in tables.items():
                rd.append_table(name, rows, extra)
            rd.save_checkpoint(state)
            return iteration
        self.writer = self.writer or ThreadPoolExecutor(1, thread_name_prefix="write-behind")
        self.writes = self.writer.submit(write)

    def flush(self, quiet: bool = False) -> None:
        """Wait for the write in flight; `saved_at` then names the checkpoint on disk. A failed write is a
        RunError naming the fix (`quiet`: logged instead, for a run that is ending anyway)."""
        if self.writes is None:
            return
        try:
            self.saved_at = self.writes.result()
        except (OSError, RuntimeError) as e:  # torch.save reports a failed write as RuntimeError
            error = RunError(f"cannot write the epoch's files in {self.rd.path} ({' '.join(str(e).split())[:200]}): "
                             f"make room (or fix the directory), then rerun the same command: it resumes from "
                             f"the checkpoint of iteration {self.saved_at}")
            if not quiet:
                raise error from e
            log.error("%s", error)
        finally:
            if self.writes.done():
                self.writes = None

    def stream_key(self) -> str:
        return stream_key(self.cfg, str(self.trainer.device))


def stream_key(c: Config, device: str) -> str:
    """Cells with equal keys see the same batches and can be trained together (the grouped launcher groups a
    sweep's cells into jobs by it before any device is resolved, passing `c.device`)."""
    return json.dumps([to_dict(c.data), c.protocol.batch_size, c.protocol.augment.value, c.protocol.normalize.value,
                       c.protocol.normalize_mean, c.protocol.normalize_std, c.seed, device], sort_keys=True)


def check(cfg: Config) -> tuple:
    """(family, weighted depth) of a config, or a UserError naming what cannot work. Touches nothing."""
    problem = checked_ranges(cfg)
    if problem:
        raise UserError(problem)
    try:
        family = families.get(cfg.arch.name)
        depth = family.depth(cfg.arch, cfg.depth)
    except ValueError as e:
        raise UserError(str(e)) from e
    if cfg.data.source.value == "imagefolder" and not cfg.data.root:
        raise UserError("data=imagefolder needs data.root=PATH (a folder with train/ and test/, or a .tar.gz of one)")
    problem = init_from.check(cfg, family, depth) or measures.check(cfg, family)  # issue 12's keys
    if problem:
        raise UserError(problem)
    if cfg.log.tensorboard:
        tblog.writer_class()  # the package is there, or one line before anything runs
    return family, depth


def open_cell(job: Job, data: DataCache) -> Cell:
    """Lock the run directory and build its trainer, resumed from the checkpoint if there is one. A run with
    nothing left to do comes back with its `result` set and its directory unlocked."""
    family, depth = check(job.cfg)
    try:
        device = resolve_device(job.cfg.device)
    except ValueError as e:
        raise UserError(str(e)) from e
    rd = RunDir(job.run_dir)
    cell = Cell(job, rd, family, depth)
    try:
        rd.lock()
        _open_locked(cell, device, data)
    except BaseException:
        rd.release(discard=True)  # removes only what this process made, in a directory it created
        raise
    return cell


def _open_locked(cell: Cell, device: torch.device, data: DataCache) -> None:
    rd, job, cfg = cell.rd, cell.job, cell.cfg
    removed = rd.clean_temporaries()
    if removed:
        log.info("%s: removed what a killed run left: %s", rd.path, ", ".join(removed))
    info = rd.read_info() or {}
    status = _status(info.get("status"))
    ckpt = None if status is not None and status.final else rd.load_checkpoint()
    saved = info.get("config") or (ckpt or {}).get("config")
    if ckpt and not saved:
        raise RunError(f"{rd.path} has a checkpoint but no run.json, and the checkpoint does not say which "
                       f"configuration it belongs to: restore run.json, or move checkpoint.pt aside to start over")
    if saved:
        diff = config_diff(saved, job.config)
        if diff:
            raise RunError(f"{rd.path} holds a run of a different configuration (differs in: {', '.join(diff)}): "
                           f"rerun with its settings, or use another hydra.run.dir")
    fingerprint = data_mod.data_fingerprint(cfg.data)
    if saved:
        _check_data(rd, cfg, saved, info.get("data_fingerprint") or (ckpt or {}).get("data_fingerprint"), fingerprint)
    if status is not None and status.final:
        cell.result = Result(status, info.get("message", ""), str(rd.path))
        log.info("%s: already %s (%s); nothing to do. Delete the directory to run it again.", rd.path,
                 status.value, info.get("message", ""))
        rd.release()
        return

    if cfg.speed.threads:
        torch.set_num_threads(cfg.speed.threads)
    torch.backends.cudnn.benchmark = bool(cfg.speed.cudnn_benchmark)
    ds = data.get(cfg.data, device)
    p = cfg.protocol
    if len(ds.train) < p.batch_size:
        raise UserError(f"protocol.batch_size={p.batch_size} is more than the {len(ds.train)} training images: "
                        f"lower it, or use more images (data.train_size)")

    classes = len(ds.classes)
    if ckpt:  # a head sized for other data cannot be resumed on these
        had = classes_of(ckpt, info)
        if had != classes:
            raise RunError(f"{rd.checkpoint} is a net with a {had}-class head, and the data ({_data_name(cfg)}) have "
                           f"{classes} classes: rerun with the run's own data, or use another hydra.run.dir")
    torch.manual_seed(cfg.seed)  # the weights: the same seed gives the same initial network
    model = cell.family.build(cfg.arch, cfg.depth, cfg.residual, cfg.shortcut.value, classes)
    if cfg.init.get("from"):  # issue 12: a shallower run's net deepened by identity blocks, unless resuming
        info["init"] = init_from.prepare(model, cfg, ds, fresh=ckpt is None, known=info.get("init"))
    kept = kept_choice(info, cfg, device) if ckpt else None  # a resumed run keeps its step variant
    trainer = make_trainer(model, cell.depth, p, device, with_switches(cfg.speed, (kept or {}).get("switches")),
                           cfg.probes.grad_every if cfg.probes.enabled else 0)
    if ckpt:
        try:
            trainer.load_state_dict(ckpt["trainer"])
            torch.set_rng_state(ckpt["rng"])
        except (RuntimeError, KeyError, ValueError, TypeError) as e:
            first = " ".join(str(e).split())[:160]
            raise RunError(f"{rd.checkpoint} does not fit this configuration ({type(e).__name__}: {first}): rerun "
                           f"with the run's own settings, or move the checkpoint aside to start over") from e
        cell.saved_at = trainer.iteration
        log.info("%s: resuming at iteration %d (epoch %d)", rd.path, trainer.iteration, len(trainer.history))
        _keep_session_provenance(info)  # before info.update below gives the top level to this session
        for note in (_probes_switched(bool(ckpt["trainer"].get("probes")), cfg.probes.enabled, trainer),
                     _computed_elsewhere(info, trainer.iteration, provenance.device_name(device),
                                         trainer.speed.as_dict())):
            if note:
                info.setdefault("notes", []).append(note)
                log.warning("%s: %s", rd.path, note)
    cell.trainer, cell.ds = trainer, ds
    cell.extra = identity_columns(cfg, cell.depth, (info.get("init") or {}).get("depth"))
    try:
        for name, rows in cell.tables().items():
            rd.write_table(name, rows, cell.extra)  # on resume this drops any row written after the last checkpoint
    except OSError as e:
        raise RunError(f"cannot write in {rd.path} ({' '.join(str(e).split())[:200]}): make room (or fix the "
                       f"directory), then rerun the same command") from e

    spe = len(ds.train) // p.batch_size
    f = cell.family
    info.update({
        "status": Status.running.value, "config": job.config, "overrides": job.overrides,
        "family": {"name": f.name, "label": f.label, "title": f.title},
        "num_params": num_params(model), "depth": cell.depth, "device": str(device),
        "speed": trainer.speed.as_dict(),  # what `speed.*` meant on this device: how the numbers were computed
        "device_name": provenance.device_name(device), "versions": provenance.versions(),
        "git_commit": provenance.git_commit(), "data_description": ds.description,
        "data_fingerprint": fingerprint, "num_classes": classes,
        "data_sizes": {"train": len(ds.train), "val": len(ds.val) if ds.val is not None else 0, "test": len(ds.test)},
        "steps_per_epoch": spe, "run_dir": str(rd.path), "command": " ".join(sys.argv), "ended_at": None,
        "message": "",
        # train.end_epochs: the epoch's own batches as they were trained on, so that a report comparing training
        # errors with a published curve can say which measure each side is
        "train_err_measure": TrainErrMeasure.running.value})
    info.setdefault("started_at", provenance.now())
    info.setdefault("sessions", []).append({"started_at": provenance.now(), "from_iteration": trainer.iteration,
                                            **{key: info[key] for key in SESSION_KEYS}})
    cell.info = info
    try:
        rd.write_info(info)  # last: a run that says `running` has passed every check
    except OSError as e:
        raise RunError(f"cannot write {rd.run_json} ({' '.join(str(e).split())[:200]}): make room (or fix the "
                       f"directory), then rerun the same command") from e
    cell.progress = RunProgress(rd.path.name, trainer.iteration, p.iterations, spe, cfg.progress, p.batch_size)
    cell.scalars = tblog.EpochScalars(rd.path, trainer.iteration) if cfg.log.tensorboard else None


SESSION_KEYS = ("device_name", "speed", "git_commit")
CHECKPOINTED = ("data_fingerprint", "num_classes")  # run.json keys the checkpoint carries too, for a lost run.json


def _data_name(cfg: Config) -> str:
    return f"data.root={cfg.data.root}" if cfg.data.root else f"data={cfg.data.source.value}"


def _check_data(rd: RunDir, cfg: Config, saved: dict, had: Optional[str], fingerprint: str) -> None:
    """The data a run was trained on must be the data it resumes (or reruns) on, whatever path names them: by content
    where the run recorded its data's fingerprint, else (a run from before fingerprints) by `data.root` as typed."""
    if had and had != fingerprint:
        raise RunError(f"{rd.path} was trained on other data than {_data_name(cfg)} holds now (their content differs: "
                       f"fingerprint {fingerprint[:12]}, the run's {had[:12]}): put the run's data back, or use "
                       f"another hydra.run.dir")
    root = (saved.get("data") or {}).get("root") if isinstance(saved.get("data"), dict) else None
    if not had and root != cfg.data.root:
        raise RunError(f"{rd.path} holds a run of a different configuration (differs in: data.root): rerun with its "
                       f"settings, or use another hydra.run.dir")


def kept_choice(info: dict, cfg: Config, device: torch.device) -> Optional[dict]:
    """The step variant a run chose when it started (run.json's `speed_choice`), if it keeps it: on the same kind of
    device, unless `speed.choose` says otherwise (`on`: choose again; `off`: the switches as configured)."""
    choice = info.get("speed_choice")
    if cfg.speed.choose != Switch.auto or not isinstance(choice, dict) or choice.get("device_type") != device.type:
        return None
    switches = choice.get("switches")
    keys = {f.name for f in dataclasses.fields(cfg.speed)}
    ok = isinstance(switches, dict) and all(k in keys and v in {s.value for s in Switch} for k, v in switches.items())
    return choice if ok else None


def rebuild(cell: Cell, switches: dict, state: dict) -> Trainer:
    """A new trainer of the cell's net with a step variant's switches, at `state` (a Trainer.state_dict): for the
    first-minute choice's copies, and for the cell itself once a variant is chosen. The global RNG is left as it was
    (building a net draws its initial weights, which `state` then replaces)."""
    cfg = cell.cfg
    with torch.random.fork_rng(devices=[]):
        model = cell.family.build(cfg.arch, cfg.depth, cfg.residual, cfg.shortcut.value, len(cell.ds.classes))
    trainer = make_trainer(model, cell.depth, cfg.protocol, cell.trainer.device, with_switches(cfg.speed, switches),
                           cfg.probes.grad_every if cfg.probes.enabled else 0)
    trainer.load_state_dict(state)
    return trainer


def use_choice(cell: Cell, record: dict) -> None:
    """Train the cell with the chosen variant from here on, and say so in run.json (its `speed`, this session's)."""
    t = cell.trainer
    if t.speed != applied_speed(with_switches(cell.cfg.speed, record["switches"]), t.device, t.model):
        cell.trainer = rebuild(cell, record["switches"], t.state_dict())
    cell.info["speed_choice"] = record
    cell.info["speed"] = cell.trainer.speed.as_dict()
    if cell.info.get("sessions"):
        cell.info["sessions"][-1]["speed"] = cell.info["speed"]
    cell.rd.write_info(cell.info)


def _keep_session_provenance(info: dict) -> None:
    """Before a resume overwrites run.json's top-level device, speed and commit with its own: the last session
    keeps them, where a run.json from before per-session keys (2026-11-23) has them only at the top."""
    sessions = info.get("sessions")
    if isinstance(sessions, list) and sessions and isinstance(sessions[-1], dict):
        for key in SESSION_KEYS:
            if key not in sessions[-1] and key in info:
                sessions[-1][key] = info[key]


def _computed_elsewhere(info: dict, iteration: int, device_name: str, speed: dict) -> Optional[str]:
    """A run resumed on another device, or with other speed switches (bf16 on a GPU, off on a CPU under `auto`),
    computes its later epochs differently: run.json's top-level `device_name` and `speed` would name only the
    last session's, so the change is a note the report shows."""
    if not iteration or "device_name" not in info:  # a fresh run, or a run.json from before these keys
        return None
    was_dev, was_speed = info.get("device_name"), info.get("speed") or {}
    changed = [f"{k} {'on' if was_speed[k] else 'off'} -> {'on' if v else 'off'}"
               for k, v in speed.items() if k in was_speed and was_speed[k] != v and k not in ("foreach", "cudnn_benchmark")]
    if was_dev == device_name and not changed:
        return None
    where = f" on {device_name}, where the earlier session(s) ran on {was_dev}," if was_dev != device_name else ""
    how = f" with other speed switches ({', '.join(changed)})" if changed else ""
    return f"resumed at iteration {iteration}{where}{how}: the epochs after it were computed differently"


def _probes_switched(had: bool, has: bool, trainer: Trainer) -> Optional[str]:
    """A resume that switches the probes off (or on) changes what the probe files cover: say so in run.json,
    where the report reads it, rather than let the files silently stop (or start) mid-run."""
    epoch = len(trainer.history)
    if had and not has:
        return (f"probes switched off on resuming at iteration {trainer.iteration}: layer_stats.csv and "
                f"grad_norms.csv stop after epoch {epoch}")
    if has and not had and trainer.iteration:
        return (f"probes switched on on resuming at iteration {trainer.iteration}: layer_stats.csv and "
                f"grad_norms.csv start at epoch {epoch + 1}")
    return None


def _status(value) -> Optional[Status]:
    try:
        return Status(value)
    except ValueError:
        return None


def close_cell(cell: Cell, stopped_by: Optional[int], saved: bool = True) -> Result:
    """Write the cell's final status into run.json and unlock it. `stopped_by`: the signal that stopped the
    sweep; `saved=False`: stopped without a new checkpoint (a second signal), so the last one stands."""
    t, info = cell.trainer, cell.info
    cell.flush(quiet=True)  # `saved_at` names the checkpoint on disk
    if stopped_by is not None and not t.finished:
        how = signal.Signals(stopped_by).name
        if saved:
            cell.save()
            message = f"stopped by {how} at iteration {t.iteration}; rerun the same command to resume"
        else:
            message = (f"stopped at once by a second {how}; the checkpoint of iteration {cell.saved_at} is kept: "
                       f"rerun the same command to resume from there")
        status = Status.interrupted
    elif t.status == Status.diverged:
        status, message = Status.diverged, (
            f"loss became NaN/inf in epoch {len(t.history) + 1} (by iteration {t.iteration}); the rows before it "
            f"are kept. Try a lower protocol.lr")
    elif t.status == Status.completed:
        last = t.history[-1]
        status, message = Status.completed, (f"final train error {last['train_err']:.2f}%, "
                                             f"test error {last['test_err']:.2f}%")
        inspection.after_run(cell)  # issue 12: from the final weights, into the run directory, still locked
    else:
        status, message = Status.failed, info.get("message") or "ended early"
    return finish(cell, status, message)


def finish(cell: Cell, status: Status, message: str) -> Result:
    if cell.scalars:
        cell.scalars.close()
    if cell.writer:
        cell.flush(quiet=True)
        cell.writer.shutdown()
    done = cell.saved_at if status == Status.interrupted else cell.trainer.iteration
    cell.info.update(status=status.value, message=message, ended_at=provenance.now(), iterations_done=done,
                     epochs_done=sum(r["iteration"] <= done for r in cell.trainer.history))
    unwritten = None
    try:
        cell.rd.write_info(cell.info)
    except OSError as e:  # a disk still full: run.json keeps saying `running`, and the rerun resumes all the same
        unwritten = (f"{cell.rd.run_json} could not be marked {status.value} either ({e.strerror or e}): it still says "
                     f"running; make room, then rerun the same command")
        status, message = Status.failed, unwritten
    cell.rd.release()
    (log.info if status == Status.completed else log.warning)("%s: %s. %s", cell.rd.path, status.value, message)
    cell.result = Result(status, message, str(cell.rd.path))
    SWEEP.closed(cell.rd.path.name, ended=status != Status.interrupted)
    if unwritten:
        raise RunError(unwritten)
    return cell.result


def abandon(cell: Cell, signum: int) -> Result:
    """Start-up was interrupted before this cell trained: remove what it made, or mark it interrupted."""
    how = signal.Signals(signum).name
    if cell.rd.created:
        cell.rd.release(discard=True)
        cell.result = Result(Status.interrupted, f"{how} during start-up; nothing was trained or kept")
        return cell.result
    return finish(cell, Status.interrupted, f"{how} during start-up, before training; rerun the same command")
