"""One training run (or, with -m, a sweep of them): `python -m experiments.run depth=56 residual=false`.

The only module that sees a DictConfig. It resolves the run directory, resumes or starts, trains, and
writes run.json, metrics.csv and checkpoint.pt there.
"""
from __future__ import annotations

import datetime
import logging
import platform
import signal
import sys
import time
from pathlib import Path

import hydra
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from experiments import data as data_mod
from experiments.config import register
from experiments.loader import TrainStream, make_normalizer
from experiments.models import build_model, num_params
from experiments.probes import Probes
from experiments.rundir import RunDir, RunError, config_diff, git_commit, run_name
from experiments.train import Trainer, fit

log = logging.getLogger("experiments")


class UserError(Exception):
    pass


def _run_name(*, _root_) -> str:
    overrides = OmegaConf.select(_root_, "hydra.overrides.task", default=None) or []
    return run_name(_root_.depth, _root_.residual, _root_.seed, _root_.arch.name, _root_.arch.units_per_stage,
                    list(overrides))


register()
OmegaConf.register_new_resolver("run_name", _run_name, replace=True)


def now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def resolve_device(name: str) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError("device=cuda but no CUDA device is visible to torch: use device=cpu (or device=auto)")
    return torch.device("cuda" if name == "cuda" or (name == "auto" and torch.cuda.is_available()) else "cpu")


def speed_on(value: str, device: torch.device) -> bool:
    return value == "on" or (value == "auto" and device.type == "cuda")


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


def versions() -> dict:
    import torchvision
    return {"python": platform.python_version(), "torch": torch.__version__, "torchvision": torchvision.__version__,
            "hydra": hydra.__version__}


def execute(cfg: DictConfig, run_dir: Path, overrides: list) -> str:
    """Train (or resume) the run in `run_dir`; returns its final status."""
    if cfg.data.source.value == "imagefolder" and OmegaConf.is_missing(cfg.data, "root"):
        raise UserError("data=imagefolder needs data.root=PATH (a folder with train/ and test/, or a .tar.gz)")
    config = OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    device = resolve_device(cfg.device.value)
    try:
        model, depth = build_model(cfg.arch.name, cfg.depth, cfg.residual, cfg.shortcut.value, cfg.arch.units_per_stage)
    except ValueError as e:
        raise UserError(str(e)) from e

    rd = RunDir(run_dir)
    rd.lock()
    try:
        return _execute_locked(cfg, config, rd, model, depth, device, overrides)
    finally:
        rd.unlock()


def _execute_locked(cfg, config, rd: RunDir, model, depth, device, overrides) -> str:
    info = rd.read_info()
    if info and info.get("status") in ("completed", "diverged"):
        log.info("%s: already %s (%s); nothing to do. Delete the directory to run it again.",
                 rd.path, info["status"], info.get("message", ""))
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
    try:
        ds = data_mod.load(cfg.data)
    except data_mod.DataError as e:
        raise UserError(str(e)) from e
    train, test = ds.train.to(device), ds.test.to(device)
    val = ds.val.to(device) if ds.val is not None else None

    torch.manual_seed(cfg.seed)  # the weights: the same seed gives the same initial network
    model, _ = build_model(cfg.arch.name, cfg.depth, cfg.residual, cfg.shortcut.value, cfg.arch.units_per_stage)
    model.to(device)
    channels_last = speed_on(cfg.speed.channels_last, device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if speed_on(cfg.speed.bf16, device) else None
    p = cfg.protocol
    probes = Probes(model, cfg.probes.grad_every) if cfg.probes.enabled else None
    trainer = Trainer(model, p, warmup=depth >= p.warmup_min_depth and p.optimizer == "sgd",
                      fused=speed_on(cfg.speed.fused_optimizer, device), autocast=autocast, probes=probes)
    stream = TrainStream(train, make_normalizer(p.normalize, train.x), p.batch_size, p.augment, cfg.seed)

    extra = {"arch": cfg.arch.name, "depth": depth, "residual": cfg.residual, "shortcut": cfg.shortcut.value,
             "seed": cfg.seed, "protocol": p.name}
    if ckpt:
        trainer.load_state_dict(ckpt["trainer"])
        torch.set_rng_state(ckpt["rng"])
        for name, rows in tables(trainer).items():
            rd.write_table(name, rows, extra)  # drops any row written after the last checkpoint
        log.info("%s: resuming at iteration %d (epoch %d)", rd.path, trainer.iteration, len(trainer.history))
    else:
        for name in tables(trainer):
            rd.write_table(name, [], extra)

    info = {**(info or {}), "status": "running", "config": config, "overrides": overrides,
            "num_params": num_params(model), "depth": depth, "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "versions": versions(), "git_commit": git_commit(), "data_description": ds.description,
            "data_sizes": {"train": len(train), "val": len(val) if val is not None else 0, "test": len(test)},
            "steps_per_epoch": stream.steps_per_epoch, "run_dir": str(rd.path), "command": " ".join(sys.argv),
            "ended_at": None, "message": ""}
    info.setdefault("started_at", now())
    info.setdefault("sessions", []).append({"started_at": now(), "from_iteration": trainer.iteration})
    rd.write_info(info)

    progress = Progress(trainer, stream.steps_per_epoch, rd.path.name, cfg.progress)

    def on_epoch(t: Trainer, row: dict) -> None:
        if t.status == "diverged":
            return
        for name, rows in tables(t).items():
            rd.append_table(name, [row] if name == "metrics.csv" else [r for r in rows if r["epoch"] == row["epoch"]],
                            extra)
        rd.save_checkpoint({"trainer": t.state_dict(), "rng": torch.get_rng_state()})
        progress.epoch(row)

    status, code = "failed", None
    try:
        with StopFlag() as stop:
            done = fit([trainer], stream, test, val, on_epoch, stop)
        if not done:
            rd.save_checkpoint({"trainer": trainer.state_dict(), "rng": torch.get_rng_state()})
            status, info["message"] = "interrupted", (f"stopped by {signal.Signals(stop.signum).name} at iteration "
                                                      f"{trainer.iteration}; rerun the same command to resume")
            code = 128 + stop.signum
        elif trainer.status == "diverged":
            status = "diverged"
            info["message"] = (f"loss became NaN/inf in epoch {len(trainer.history) + 1} (by iteration "
                               f"{trainer.iteration}); the rows before it are kept. Try a lower protocol.lr")
        else:
            status, last = "completed", trainer.history[-1]
            info["message"] = f"final train error {last['train_err']:.2f}%, test error {last['test_err']:.2f}%"
        return status
    except BaseException as e:
        info["message"] = f"{type(e).__name__}: {e}"
        raise
    finally:
        info.update(status=status, ended_at=now(), iterations_done=trainer.iteration, epochs_done=len(trainer.history))
        rd.write_info(info)
        (log.warning if status != "completed" else log.info)("%s: %s. %s", rd.path, status, info["message"])
        if code is not None:
            raise SystemExit(code)


def tables(t: Trainer) -> dict:
    """Each CSV of the run directory and its rows so far."""
    out = {"metrics.csv": t.history}
    if t.probes:
        out.update({"layer_stats.csv": t.probes.layer_rows, "grad_norms.csv": t.probes.grad_rows})
    return out


class Progress:
    """One line per epoch: quiet enough for a log file, with the ETA of this run."""

    def __init__(self, trainer: Trainer, steps_per_epoch: int, name: str, enabled: bool):
        self.t, self.spe, self.name, self.enabled = trainer, steps_per_epoch, name, enabled
        self.start_time, self.start_iter = time.perf_counter(), trainer.iteration

    def epoch(self, row: dict) -> None:
        if not self.enabled:
            return
        total = self.t.protocol.iterations
        done = row["iteration"] - self.start_iter
        rate = (time.perf_counter() - self.start_time) / max(done, 1)
        epochs = -(-total // self.spe)
        log.info("%s  epoch %d/%d  it %d/%d  lr %.3g  loss %.3f  train %.2f%%  test %.2f%%%s  %.1fs  ETA %s",
                 self.name, row["epoch"], epochs, row["iteration"], total, row["lr"], row["train_loss"],
                 row["train_err"], row["test_err"],
                 f"  val {row['val_err']:.2f}%" if row["val_err"] is not None else "",
                 row["epoch_time_s"], fmt_duration(rate * (total - row["iteration"])))


def fmt_duration(s: float) -> str:
    s = int(round(s))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"


@hydra.main(config_path="../conf", config_name="config", version_base="1.3")
def main(cfg: DictConfig) -> str:
    hc = HydraConfig.get()
    try:
        return execute(cfg, Path(hc.runtime.output_dir), list(hc.overrides.task))
    except (UserError, RunError) as e:
        RunDir(hc.runtime.output_dir).remove_if_empty()
        if hc.mode == RunMode.MULTIRUN:  # one bad cell must not stop the sweep; the summary lists it
            log.error("error: %s", e)
            return f"failed ({e})"
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)
    except Exception as e:
        if hc.mode == RunMode.MULTIRUN:
            log.exception("%s failed", hc.runtime.output_dir)
            return f"failed ({type(e).__name__}: {e})"
        raise


def cli() -> None:
    from experiments.precheck import check
    problem = check(sys.argv[1:])
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        raise SystemExit(2)
    main()
    from experiments.sweep import SweepSummary
    if SweepSummary.failed():
        raise SystemExit(1)


if __name__ == "__main__":
    cli()
