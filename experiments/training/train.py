"""The training loop: SGD on a device-resident stream, metrics kept on the device and read once an epoch.

`Trainer` is one network's optimisation state; `fit` drives one or several of them over one shared stream
(several = the concurrent sweep: cells with the same seed see the same batches, exactly as they would alone).
"""
from __future__ import annotations

import dataclasses
import math
import time
from contextlib import nullcontext
from typing import Callable, Optional

import torch
import torch.nn as nn
import torch.nn.functional as F

from experiments.config import Optimizer, ProtocolConfig, SpeedConfig
from experiments.data.datasets import Split
from experiments.data.loader import Normalizer, TrainStream, iterate_eval
from experiments.training.device import resolve_speed
from experiments.training.optim import ForeachSGD
from experiments.training.probes import Probes
from runformat import Status


def lr_at(iteration: int, p: ProtocolConfig, warming: bool = False) -> float:
    """The lr for the step after `iteration` completed steps: divided by 10 at each milestone (Sec. 4.2)."""
    if warming:
        return p.warmup_lr
    lr = p.lr * p.lr_decay ** sum(iteration >= m for m in p.milestones)
    return float(f"{lr:.12g}")  # 0.001, not 0.0010000000000000002, in the CSV


class AdamWithSetLR(torch.optim.Adam):
    def set_lr(self, lr: float) -> None:
        for group in self.param_groups:
            group["lr"] = lr


def make_optimizer(model: nn.Module, p: ProtocolConfig, foreach: bool = True):
    if p.optimizer == Optimizer.sgd:
        # Weight decay on every parameter, BN's included, as in the paper's Torch/Caffe setups.
        return ForeachSGD(model.parameters(), p.lr, p.momentum, p.weight_decay, foreach)
    if p.optimizer == Optimizer.adam:
        # Keras defaults: beta 0.9 / 0.999, epsilon 1e-7.
        return AdamWithSetLR(model.parameters(), lr=p.lr, eps=1e-7, weight_decay=p.weight_decay)
    raise ValueError(f"protocol.optimizer={p.optimizer!r}: expected sgd or adam")


@torch.no_grad()
def eval_sums(model: nn.Module, split: Split, normalize: Normalizer, batch_size: int, autocast=None) -> torch.Tensor:
    """[summed loss, wrong] over a whole split, in eval mode (BN uses its running statistics), left on the device:
    no host sync, so several networks' passes can be enqueued before any is read (`end_epochs`)."""
    was_training = model.training
    model.eval()
    sums = torch.zeros(2, device=split.y.device)
    for x, y in iterate_eval(split, normalize, batch_size):
        with autocast or nullcontext():
            out = model(x).float()
        sums += torch.stack([F.cross_entropy(out, y, reduction="sum"), (out.argmax(1) != y).sum()])
    model.train(was_training)
    return sums


def evaluate(model: nn.Module, split: Split, normalize: Normalizer, batch_size: int, autocast=None):
    """(mean loss, error %) over a whole split, in eval mode (BN uses its running statistics)."""
    loss, wrong = eval_sums(model, split, normalize, batch_size, autocast).tolist()  # the one host sync
    return loss / len(split), 100.0 * wrong / len(split)


class Trainer:
    """One network: model, optimizer, schedule position and this epoch's running sums (kept on the device)."""

    def __init__(self, model: nn.Module, protocol: ProtocolConfig, warmup: bool = False,
                 foreach: bool = True, autocast=None, probes=None, cuda_graph: bool = False):
        self.model, self.protocol, self.autocast, self.probes = model, protocol, autocast, probes
        self.optimizer = make_optimizer(model, protocol, foreach)
        self.device = next(model.parameters()).device
        self.iteration = 0
        self.warming = warmup  # Sec. 4.2, 110 layers: lr 0.01 until training error < 80%
        self.sums = torch.zeros(3, device=self.device)  # [loss * B, wrong, seen] this epoch
        self.window = torch.zeros(2, device=self.device)  # [wrong, seen] since the last warm-up check
        self.history: list[dict] = []
        self.status = Status.running
        self.epoch_started = time.perf_counter()
        self._lr = None
        # CUDA graphs: the whole step captured once, replayed on static input buffers (SGD only)
        self.graphed = None if cuda_graph and protocol.optimizer == Optimizer.sgd and self.device.type == "cuda" else False
        self.cuda_stream = None  # set by fit() when several trainers share the GPU
        self.forward = model  # the training forward: the model, or its torch.compile'd twin (speed.compile)
        self.speed = None  # the speed switches as they apply (experiments.training.device.Speed), set by make_trainer

    @property
    def finished(self) -> bool:
        return self.status != Status.running or self.iteration >= self.protocol.iterations

    def set_lr(self, lr: float) -> None:
        if lr != self._lr:
            self.optimizer.set_lr(lr)
            self._lr = lr

    def step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.set_lr(lr_at(self.iteration, self.protocol, self.warming))
        if not self.model.training:  # evaluate() restores the mode; train() walks every module (0.7 ms, ResNet-56)
            self.model.train()
        probe = self.probes is not None and self.probes.wants(self.iteration)
        if self.graphed is None:
            from experiments.training.fastpath import CapturedStep
            self.graphed = CapturedStep.capture(self, x, y)
        if not (self.graphed and self.graphed.replay(x, y, probe)):
            self._step(x, y, probe)  # eager: no graph, or no graph for a probed step
        if probe:
            self.probes.samples += 1
        self.iteration += 1
        if self.warming and self.iteration % self.protocol.warmup_check_every == 0:
            wrong, seen = self.window.tolist()
            self.window.zero_()
            if 100.0 * wrong / seen < self.protocol.warmup_until_err:
                self.warming = False  # and back to protocol.lr, as the paper does

    def _step(self, x: torch.Tensor, y: torch.Tensor, probe: bool = False) -> None:
        """Forward, backward, update, running sums: all on the device, no host sync (what a graph captures)."""
        with self.probes.input_grads() if probe else nullcontext():
            with self.autocast or nullcontext():
                out = self.model(x) if probe else self.forward(x)
                loss = self.loss(out, y)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        if probe:
            self.probes.add_weight_grads()
        self.optimizer.step()
        with torch.no_grad():  # no .item(): the sums stay on the device until the epoch ends
            wrong, seen = self.errors(out, y)
            self.sums += torch.stack([loss.detach().float() * len(y), wrong, seen])
            if self.warming:  # warming only ever ends, so a graph captured without this never needs it
                self.window += torch.stack([wrong, seen])

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The batch's training loss (a model with another output overrides it: experiments.tools.stacked)."""
        return F.cross_entropy(out.float(), y)

    def errors(self, out: torch.Tensor, y: torch.Tensor) -> tuple:
        """(wrong, seen) of the batch, as device scalars."""
        wrong = (out.argmax(1) != y).sum().float()
        return wrong, torch.full_like(wrong, len(y))  # a fill kernel, not a host-to-device copy (graph-safe)

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "iteration": self.iteration, "warming": self.warming, "sums": self.sums.cpu(),
                "window": self.window.cpu(), "history": self.history, "status": self.status.value,
                "probes": self.probes.state_dict() if self.probes else None}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.iteration, self.warming, self.status = state["iteration"], state["warming"], Status(state["status"])
        self.sums.copy_(state["sums"])
        self.window.copy_(state["window"])
        self.history = list(state["history"])
        if self.probes and state.get("probes"):
            self.probes.load_state_dict(state["probes"])


def applied_speed(speed: SpeedConfig, device: torch.device, model: nn.Module):
    """What `speed` means for `model` on `device` (training.device.Speed): fused BN only where the family has that
    forward (`forward_fused`), and never under compile, which fuses the whole forward."""
    on = resolve_speed(speed, device)
    return dataclasses.replace(on, fuse=on.fuse and not on.compile and hasattr(model, "forward_fused"))


def make_trainer(model: nn.Module, depth: int, protocol: ProtocolConfig, device: torch.device,
                 speed: SpeedConfig, probe_every: int = 10, trainer_class: type = Trainer) -> Trainer:
    """The model on `device` with the `speed` switches applied, wrapped in its Trainer: what every run (and
    `make bench`) trains. probe_every=0: no probes. `trainer_class`: a Trainer with another loss and error
    count (experiments.tools.stacked)."""
    on = applied_speed(speed, device, model)
    model.to(device)
    if on.channels_last:
        model.to(memory_format=torch.channels_last)
    # bf16 autocast keeps fp32 master weights, and BN runs (and keeps its statistics) in fp32 under it
    autocast = on.autocast(device)
    warmup = depth >= protocol.warmup_min_depth and protocol.optimizer == Optimizer.sgd
    trainer = trainer_class(model, protocol, warmup=warmup, foreach=on.foreach, autocast=autocast,
                            probes=Probes(model, probe_every) if probe_every else None, cuda_graph=on.cuda_graphs)
    if on.compile:
        # the unprobed training forward only: probed steps and evaluations run the module itself, whose hooks
        # a compiled graph would not see
        trainer.forward = torch.compile(model)
    elif on.fuse:
        trainer.forward = model.forward_fused  # the same hooks-free training forward, BN fused (experiments.nets.fused)
    trainer.speed = on
    return trainer


def step_all(trainers: list, x: torch.Tensor, y: torch.Tensor, streams: bool = False) -> None:
    """One step of each trainer on the same batch; with `streams`, each network on its own CUDA stream so
    their small kernels overlap on the GPU."""
    if not streams:
        for t in trainers:
            t.step(x, y)
        return
    main = torch.cuda.current_stream()
    for t in trainers:  # every stream before any step: a graph capture (at a first step) uses its network's
        t.cuda_stream = t.cuda_stream or torch.cuda.Stream()  # stream, and torch's pool hands out 32 in turn
    for t in trainers:
        t.cuda_stream.wait_stream(main)  # the batch is ready
        with torch.cuda.stream(t.cuda_stream):
            t.step(x, y)
    for t in trainers:
        main.wait_stream(t.cuda_stream)  # nothing on the main stream overtakes a step


def end_epochs(trainers: list, epoch: int, test: Split, val: Optional[Split], normalize: Normalizer,
               streams: bool = False) -> list:
    """Close epoch `epoch` (1-based) of each trainer: its row of metrics.csv, or, where the epoch's loss is not
    finite, a row of the training columns only and status 'diverged'.

    All the nets' evaluations are enqueued before any is read, each on its net's CUDA stream with `streams`,
    and the epoch end waits for the device twice in all: once for the epoch's sums, once for every test (and
    val) pass. One net after another, each pass ending in its own host sync, left the GPU idle between small
    passes (H100, 8 nets: 1.32 s of test passes an epoch, 18% of an epoch)."""
    sums = torch.stack([t.sums for t in trainers]).tolist()  # sync 1: the epoch's last steps are done
    main = torch.cuda.current_stream() if streams else None
    rows, passes = [], []
    for t, (loss_sum, wrong, seen) in zip(trainers, sums):
        t.sums.zero_()
        row = {"epoch": epoch, "iteration": t.iteration, "lr": t._lr,
               "train_loss": loss_sum / seen, "train_err": 100.0 * wrong / seen}
        rows.append(row)
        if not math.isfinite(row["train_loss"]):
            t.status = Status.diverged  # no evaluation: its row stops here
            passes.append(None)
            continue
        if streams:
            t.cuda_stream.wait_stream(main)  # after the zero_ above, on the main stream
        bs = t.protocol.eval_batch_size
        with torch.cuda.stream(t.cuda_stream) if streams else nullcontext():
            with t.probes.responses() if t.probes else nullcontext():  # Fig. 7 from the test pass we make anyway
                split_sums = [eval_sums(t.model, test, normalize, bs, t.autocast)]
            if val is not None:
                split_sums.append(eval_sums(t.model, val, normalize, bs, t.autocast))
            passes.append(torch.cat(split_sums))
    if streams:
        for t in trainers:
            main.wait_stream(t.cuda_stream)
    read = [p for p in passes if p is not None]
    values = iter(torch.stack(read).tolist() if read else [])  # sync 2: every net's passes
    now = time.perf_counter()
    for t, row, p in zip(trainers, rows, passes):
        if p is None:
            continue
        v = next(values)
        row["test_loss"], row["test_err"] = v[0] / len(test), 100.0 * v[1] / len(test)
        row["val_loss"], row["val_err"] = (v[2] / len(val), 100.0 * v[3] / len(val)) if val is not None else (None, None)
        if t.probes:
            t.probes.end_epoch(epoch)
        row["epoch_time_s"] = now - t.epoch_started
        t.epoch_started = now
        t.history.append(row)
        if t.iteration >= t.protocol.iterations:
            t.status = Status.completed
    return rows


def fit(trainers: list, stream: TrainStream, test: Split, val: Optional[Split],
        on_epoch: Callable[[Trainer, dict], None], should_stop: Callable[[], bool] = lambda: False,
        on_step: Callable[[], None] = lambda: None) -> bool:
    """Train every unfinished trainer to its protocol's end on the one stream. Trainers that are further along
    (a resumed sweep) wait until the stream reaches them. Returns False if `should_stop` ended it early. `on_step`
    after every step (progress inside an epoch; it must not wait for the device)."""
    spe = stream.steps_per_epoch
    active = [t for t in trainers if not t.finished]
    pos = min((t.iteration for t in active), default=0)
    streams = len(active) > 1 and stream.split.x.is_cuda
    while active:
        epoch, k = divmod(pos, spe)
        x, y = stream.batch(epoch, k)
        stepped = [t for t in active if t.iteration == pos]
        step_all(stepped, x, y, streams)
        pos += 1
        on_step()
        ending = [t for t in stepped if pos % spe == 0 or pos >= t.protocol.iterations]
        if ending:
            for t, row in zip(ending, end_epochs(ending, epoch + 1, test, val, stream.normalize, streams)):
                on_epoch(t, row)
        active = [t for t in active if not t.finished]
        if active and should_stop():
            return False
    return True
