"""Run directories in, trained networks out: open each cell (lock, resume or start), train the cells that
can share a stream together, close each with its status. One cell is a single run; many are a sweep on
one GPU (the concurrent launcher).
"""
from __future__ import annotations

import datetime
import json
import logging
import platform
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch
from omegaconf import DictConfig, OmegaConf

from experiments import data as data_mod
from experiments.loader import TrainStream, make_normalizer
from experiments.models import build_model, num_params, weighted_depth
from experiments.probes import Probes
from experiments.rundir import RunDir, RunError, config_diff, git_commit
from experiments.train import Trainer, fit

log = logging.getLogger("experiments")


# The commit of the code this process loaded (read once: a long sweep outlives later commits).
COMMIT = git_commit()


class UserError(Exception):
    """Bad input: the message names the problem and the fix."""


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible to torch: use device=cpu (or device=auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def speed_on(value, device: torch.device) -> bool:
    value = getattr(value, "value", value)  # a Switch enum or its name
    return value == "on" or (value == "auto" and device.type == "cuda")


def versions() -> dict:
    import hydra
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "hydra": hydra.__version__}


_datasets: dict = {}


def load_data(cfg: DictConfig, device: torch.device) -> data_mod.Dataset:
    """The dataset on `device`, loaded once per process (a sweep's cells share it)."""
    key = (json.dumps(OmegaConf.to_container(cfg.data, enum_to_str=True), sort_keys=True), str(device))
    if key not in _datasets:
        try:
            ds = data_mod.load(cfg.data)
        except data_mod.DataError as e:
            raise UserError(str(e)) from e
        _datasets.clear()
        _datasets[key] = data_mod.Dataset(ds.train.to(device), ds.test.to(device),
                                          ds.val.to(device) if ds.val is not None else None, ds.classes, ds.description)
    return _datasets[key]


def make_trainer(model, depth: int, protocol, device: torch.device, speed, probe_every: int = 10) -> Trainer:
    """The model on `device` with the `speed` switches applied, wrapped in its Trainer: what every run (and
    `make bench`) trains. probe_every=0: no probes."""
    model.to(device)
    if speed_on(speed.channels_last, device):
        model.to(memory_format=torch.channels_last)
    # bf16 autocast keeps fp32 master weights, and BN runs (and keeps its statistics) in fp32 under it;
    # no cast cache, which a captured graph could not refresh
    autocast = (torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
                if speed_on(speed.bf16, device) else None)
    return Trainer(model, protocol, warmup=depth >= protocol.warmup_min_depth and protocol.optimizer == "sgd",
                   foreach=speed.foreach, autocast=autocast, probes=Probes(model, probe_every) if probe_every else None,
                   cuda_graph=speed_on(speed.cuda_graphs, device))


class StopFlag:
    """SIGINT/SIGTERM (a scheduler's preemption) ask the loop to stop after the current step."""

    def __init__(self):
        self.signum = None
        self._previous = {}

    def __call__(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second Ctrl-C: stop now
            raise KeyboardInterrupt
        self.signum = signum
        log.warning("%s received: stopping after this step and writing a checkpoint", signal.Signals(signum).name)

    def __enter__(self):
        for s in (signal.SIGINT, signal.SIGTERM):
            self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._previous.items():
            signal.signal(s, h)
        return False


@dataclass
class Cell:
    """One configuration being trained in its run directory."""
    cfg: DictConfig
    rd: RunDir
    trainer: Trainer
    ds: data_mod.Dataset
    extra: dict  # the identity columns of every CSV row
    info: dict
    progress: "Progress" = field(default=None)

    def tables(self) -> dict:
        t = self.trainer
        out = {"metrics.csv": t.history}
        if t.probes:
            out.update({"layer_stats.csv": t.probes.layer_rows, "grad_norms.csv": t.probes.grad_rows})
        return out

    def on_epoch(self, row: dict) -> None:
        for name, rows in self.tables().items():
            new = [row] if name == "metrics.csv" else [r for r in rows if r["epoch"] == row["epoch"]]
            self.rd.append_table(name, new, self.extra)
        self.save()
        self.progress.epoch(row)

    def save(self) -> None:
        self.rd.save_checkpoint({"trainer": self.trainer.state_dict(), "rng": torch.get_rng_state()})

    def stream_key(self) -> str:
        """Cells with equal keys see the same batches and can be trained together."""
        c = self.cfg
        return json.dumps([OmegaConf.to_container(c.data, enum_to_str=True), c.protocol.batch_size,
                           c.protocol.augment, c.protocol.normalize, c.seed, str(self.trainer.device)], sort_keys=True)


def open_cell(cfg: DictConfig, run_dir: Path, overrides: list):
    """Lock the run directory and build its trainer, resumed from the checkpoint if there is one.
    Returns the Cell, or the final status string of a run that has nothing left to do."""
    if cfg.data.source.value == "imagefolder" and OmegaConf.is_missing(cfg.data, "root"):
        raise UserError("data=imagefolder needs data.root=PATH (a folder with train/ and test/, or a .tar.gz)")
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    device = resolve_device(cfg.device.value)
    try:
        weighted_depth(cfg.arch.name, cfg.depth, cfg.arch.units_per_stage)
    except ValueError as e:
        raise UserError(str(e)) from e
    rd = RunDir(run_dir)
    rd.lock()
    try:
        return _open_locked(cfg, config, rd, device, overrides)
    except BaseException:
        rd.unlock()
        raise


def _open_locked(cfg, config, rd: RunDir, device, overrides):
    info = rd.read_info()
    if info and info.get("status") in ("completed", "diverged"):
        log.info("%s: already %s (%s); nothing to do. Delete the directory to run it again.",
                 rd.path, info["status"], info.get("message", ""))
        rd.unlock()
        return info["status"]
    ckpt = rd.load_checkpoint()
    if info and ckpt:
        diff = config_diff(info.get("config", {}), config)
        if diff:
            raise RunError(f"{rd.path} holds a run of a different configuration (differs in: {', '.join(diff)}): "
                           f"rerun with its settings, or use another hydra.run.dir")
    if cfg.speed.threads:
        torch.set_num_threads(cfg.speed.threads)
    torch.backends.cudnn.benchmark = bool(cfg.speed.cudnn_benchmark)
    ds = load_data(cfg, device)

    torch.manual_seed(cfg.seed)  # the weights: the same seed gives the same initial network
    model, depth = build_model(cfg.arch.name, cfg.depth, cfg.residual, cfg.shortcut.value, cfg.arch.units_per_stage)
    p = cfg.protocol
    trainer = make_trainer(model, depth, p, device, cfg.speed, cfg.probes.grad_every if cfg.probes.enabled else 0)
    extra = {"arch": cfg.arch.name, "depth": depth, "residual": cfg.residual, "shortcut": cfg.shortcut.value,
             "seed": cfg.seed, "protocol": p.name}
    cell = Cell(cfg, rd, trainer, ds, extra, info or {})
    if ckpt:
        trainer.load_state_dict(ckpt["trainer"])
        torch.set_rng_state(ckpt["rng"])
        log.info("%s: resuming at iteration %d (epoch %d)", rd.path, trainer.iteration, len(trainer.history))
    for name, rows in cell.tables().items():
        rd.write_table(name, rows, extra)  # on resume this drops any row written after the last checkpoint

    spe = len(ds.train) // p.batch_size
    cell.info.update({
        "status": "running", "config": config, "overrides": overrides, "num_params": num_params(model),
        "depth": depth, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "versions": versions(), "git_commit": COMMIT, "data_description": ds.description,
        "data_sizes": {"train": len(ds.train), "val": len(ds.val) if ds.val is not None else 0, "test": len(ds.test)},
        "steps_per_epoch": spe, "run_dir": str(rd.path), "command": " ".join(sys.argv), "ended_at": None,
        "message": ""})
    cell.info.setdefault("started_at", now())
    cell.info.setdefault("sessions", []).append({"started_at": now(), "from_iteration": trainer.iteration})
    rd.write_info(cell.info)
    cell.progress = Progress(trainer, spe, rd.path.name, cfg.progress)
    return cell


def close_cell(cell: Cell, stopped_by: Optional[int]) -> str:
    t, info = cell.trainer, cell.info
    if stopped_by is not None and not t.finished:
        cell.save()
        status, info["message"] = "interrupted", (f"stopped by {signal.Signals(stopped_by).name} at iteration "
                                                  f"{t.iteration}; rerun the same command to resume")
    elif t.status == "diverged":
        status, info["message"] = "diverged", (
            f"loss became NaN/inf in epoch {len(t.history) + 1} (by iteration {t.iteration}); the rows before it "
            f"are kept. Try a lower protocol.lr")
    elif t.status == "completed":
        last = t.history[-1]
        status, info["message"] = "completed", (f"final train error {last['train_err']:.2f}%, "
                                                f"test error {last['test_err']:.2f}%")
    else:
        status = "failed"
    finish(cell, status)
    return status


def finish(cell: Cell, status: str) -> None:
    cell.info.update(status=status, ended_at=now(), iterations_done=cell.trainer.iteration,
                     epochs_done=len(cell.trainer.history))
    cell.rd.write_info(cell.info)
    cell.rd.unlock()
    (log.info if status == "completed" else log.warning)("%s: %s. %s", cell.rd.path, status, cell.info["message"])


def train_cells(cells: list) -> list:
    """Train the cells (grouped by shared stream) to the end or to a signal; returns their statuses.
    Raises SystemExit(128 + signal) after checkpointing every cell when stopped."""
    groups: dict = {}
    for c in cells:
        groups.setdefault(c.stream_key(), []).append(c)
    stop, statuses = StopFlag(), {}
    with stop:
        for group in groups.values():
            if stop():
                break
            first = group[0]
            p, ds = first.cfg.protocol, first.ds
            stream = TrainStream(ds.train, make_normalizer(p.normalize, ds.train.x), p.batch_size, p.augment,
                                 first.cfg.seed)
            by_trainer = {id(c.trainer): c for c in group}
            try:
                fit([c.trainer for c in group], stream, ds.test, ds.val,
                    lambda t, row: t.status != "diverged" and by_trainer[id(t)].on_epoch(row), stop)
            except BaseException as e:
                for c in group:
                    c.info["message"] = f"{type(e).__name__}: {e}"
                    finish(c, "failed")
                raise
            for c in group:
                statuses[id(c)] = close_cell(c, stop.signum)
    for c in cells:  # groups never started because of a signal
        if id(c) not in statuses:
            statuses[id(c)] = close_cell(c, stop.signum)
    if stop.signum is not None:
        raise SystemExit(128 + stop.signum)
    return [statuses[id(c)] for c in cells]


def execute(cfg: DictConfig, run_dir: Path, overrides: list) -> str:
    """Train (or resume) the one run in `run_dir`; returns its final status."""
    cell = open_cell(cfg, run_dir, overrides)
    return cell if isinstance(cell, str) else train_cells([cell])[0]


class Progress:
    """One line per epoch: quiet enough for a log file, with the ETA of this run."""

    def __init__(self, trainer: Trainer, steps_per_epoch: int, name: str, enabled: bool):
        self.t, self.spe, self.name, self.enabled = trainer, steps_per_epoch, name, enabled
        self.start_time, self.start_iter = time.perf_counter(), trainer.iteration

    def epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        total = self.t.protocol.iterations
        rate = (time.perf_counter() - self.start_time) / max(row["iteration"] - self.start_iter, 1)
        log.info("%s  epoch %d/%d  it %d/%d  lr %.3g  loss %.3f  train %.2f%%  test %.2f%%%s  %.1fs  ETA %s",
                 self.name, row["epoch"], -(-total // self.spe), row["iteration"], total, row["lr"],
                 row["train_loss"], row["train_err"], row["test_err"],
                 f"  val {row['val_err']:.2f}%" if row["val_err"] is not None else "",
                 row["epoch_time_s"], fmt_duration(rate * (total - row["iteration"])))


def fmt_duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
