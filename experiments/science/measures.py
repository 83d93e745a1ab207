"""Why depth hurts plain nets, measured on a trained run's final weights (issue 12).

The measures alone, on a model and its data (pure torch: nothing of the harness, no Hydra). A run's end
(experiments.harness.inspection.after_run) and `python -m experiments.inspect` (existing runs) run them and write
the files.

Each measure is one of runformat's INSPECTION_TABLES, written into the run directory:

- constructed.csv: the deeper net built from this one (`ProbedModel.deepened`: this net's blocks first in each stage,
  identity blocks after them). In eval mode it computes this net's function, so it has this net's errors: a deeper
  net at least as good exists (He et al. 2016, Sec. 1: "the added layers are identity mapping, and the other layers
  are copied from the learned shallower model"). In training mode BN normalises by each batch's own statistics, so
  a plain identity block is the identity only up to batch noise; that is measured on training batches.
- block_ratios.csv: for each block, on the test images, ||F(X)|| / ||skip(X)|| (the residual branch against what it
  is added to) and ||block(X) - skip(X)|| / ||skip(X)|| (how far the block is from the identity).
- lesion.csv: the test error with each block replaced by its skip, one block at a time (Veit et al., NeurIPS 2016).

The model offers what this needs through the family seam (`ProbedModel.block_parts`, `forward_stem`,
`forward_head`, `deepened`); a family that does not raises NotSupported, and its runs get no file for that measure.
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from experiments.data.loader import TrainStream, iterate_eval, make_normalizer
from experiments.nets.families import NotSupported
from experiments.training.device import resolve_speed
from runformat import BLOCK_RATIOS, CONSTRUCTED, LESION

log = logging.getLogger("experiments")

# Training batches of these stream epochs: the BN statistics of the identity blocks come from the first, the
# train-mode deviation is measured on the second, so that it is not measured on the batches it was fitted to.
CALIBRATION_EPOCH, MEASURE_EPOCH = 0, 1


def _walk_batch(model, parts, x, y, sums, norms) -> None:
    h = model.forward_stem(x)
    for k, part in enumerate(parts):
        out = part.block(h)
        if part.skip is not None:
            s = part.skip(h)
            f = part.branch(h).double().square().sum() if part.branch is not None else norms.new_zeros(())
            norms[k] += torch.stack([f, (out - s).double().square().sum(), s.double().square().sum()])
            z = s  # block k deleted: its skip, then the blocks after it as trained
            for later in parts[k + 1:]:
                z = later.block(z)
            sums[k] += _loss_wrong(model.forward_head(z), y)
        h = out
    sums[-1] += _loss_wrong(model.forward_head(h), y)


def _loss_wrong(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logits = logits.float()
    return torch.stack([F.cross_entropy(logits, y, reduction="sum"), (logits.argmax(1) != y).sum().float()]).double()


@contextmanager
def frozen_train_mode(*models):
    """Training mode (BN normalises by batch statistics) without a trace: BN's running statistics, which a
    training-mode forward updates, are put back afterwards."""
    saved = [({k: b.clone() for k, b in m.named_buffers()}, m.training) for m in models]
    try:
        for m in models:
            m.train()
        yield
    finally:
        for m, (buffers, training) in zip(models, saved):
            for k, b in m.named_buffers():
                b.copy_(buffers[k])
            m.train(training)


# ---- block ratios and lesions: one walk through the blocks ------------------------------------------------------

@torch.no_grad()
def walk_blocks(model, split, normalize, batch_size: int, autocast=None) -> dict:
    """Eval mode, over the whole split: the intact net's (loss, error %), and per block its ratios and the
    (loss, error %) with it deleted. Per batch the intact prefix is computed once and the lesion of block k runs
    only the blocks after it, so the study costs about half a test pass per block rather than a whole one.
    `autocast`: the run's own (bf16 where it trained and evaluated in bf16), so the intact error is its last test
    error and the study costs what its evaluations cost."""
    parts = model.block_parts()
    was_training = model.training
    model.eval()
    dev = next(model.parameters()).device
    sums = torch.zeros(len(parts) + 1, 2, dtype=torch.float64, device=dev)  # [loss sum, wrong]; the last: intact
    norms = torch.zeros(len(parts), 3, dtype=torch.float64, device=dev)  # ||F||^2, ||block - skip||^2, ||skip||^2
    for x, y in iterate_eval(split, normalize, batch_size):
        with autocast or nullcontext():
            _walk_batch(model, parts, x, y, sums, norms)
    model.train(was_training)
    n = len(split)
    loss_err = (sums / torch.tensor([n, n / 100.0], dtype=torch.float64, device=dev)).tolist()  # the one host sync
    ratios = (norms[:, :2] / norms[:, 2:]).sqrt().tolist()
    intact = loss_err[-1]
    ratio_rows, lesion_rows = [], []
    for k, part in enumerate(parts):
        if part.skip is None:
            continue
        where = {"block": k + 1, "name": part.name, "stage": part.stage, "skip": part.skip_kind}
        ratio_rows.append({**where, "branch_ratio": ratios[k][0] if part.branch is not None else None,
                           "change_ratio": ratios[k][1]})
        lesion_rows.append({**where, "test_loss": loss_err[k][0], "test_err": loss_err[k][1],
                            "intact_test_loss": intact[0], "intact_test_err": intact[1]})
    return {"intact": tuple(intact), "ratios": ratio_rows, "lesions": lesion_rows}


# ---- the constructed deeper net ---------------------------------------------------------------------------------

@torch.no_grad()
def stage_stats(model, stream: TrainStream, batches: int, epoch: int = CALIBRATION_EPOCH) -> dict:
    """{stage: (mean, var)}: per channel, the training-mode batch mean and biased batch variance (what training-mode
    BN normalises with) of each stage's last block's output, averaged over `batches` training batches of `epoch`."""
    last = {p.stage: p.block for p in model.block_parts()}  # the last block of each stage
    seen: dict = {s: [] for s in last}

    def record(stage):
        def hook(module, inputs, out):
            seen[stage].append(torch.stack([out.mean((0, 2, 3)), out.var((0, 2, 3), unbiased=False)]))
        return hook
    handles = [block.register_forward_hook(record(s)) for s, block in last.items()]
    try:
        with frozen_train_mode(model):
            for k in range(min(batches, stream.steps_per_epoch)):
                model(stream.batch(epoch, k)[0])
    finally:
        for h in handles:
            h.remove()
    return {s: tuple(torch.stack(v).mean(0)) for s, v in seen.items()}


def calibration(model, depth: int, stream: TrainStream, batches: int) -> dict:
    """The `input_stats` for `model.deepened`, from training batches; NotSupported (before any batch is spent) for
    a family that cannot deepen to `depth`."""
    model.deepened(depth)
    return stage_stats(model, stream, batches)


@torch.no_grad()
def outputs(model, test, normalize, batch_size: int, stream: TrainStream, batches: int,
            epoch: int = MEASURE_EPOCH) -> dict:
    """What `compare` compares: the net's eval-mode logits on the test images, and its training-mode logits on
    `batches` training batches of `epoch` (BN's running statistics left as they were), with the labels."""
    was = model.training
    model.eval()
    test_out = [(model(x), y) for x, y in iterate_eval(test, normalize, batch_size)]
    model.train(was)
    with frozen_train_mode(model):
        train_out = [(model(x), y) for x, y in (stream.batch(epoch, b) for b in range(min(batches,
                                                                                          stream.steps_per_epoch)))]
    return {"test": test_out, "train": train_out}


def _mean_loss_err(pairs: list) -> tuple:
    sums = torch.stack([_loss_wrong(z, y) for z, y in pairs]).sum(0)
    n = sum(len(y) for _, y in pairs)
    loss, wrong = sums.tolist()
    return loss / n, 100.0 * wrong / n


def compare(shallow, deep, test, normalize, batch_size: int, stream: TrainStream, batches: int,
            reference: dict | None = None) -> dict:
    """A CONSTRUCTED row (without its deep_depth and identity columns): the two nets on the test images in eval
    mode, and on training batches in training mode. `reference`: the shallow net's `outputs`, when already made
    (one inspection compares it with several deeper nets)."""
    ref = reference or outputs(shallow, test, normalize, batch_size, stream, batches)
    ours = outputs(deep, test, normalize, batch_size, stream, batches)
    (ls, es), (ld, ed) = _mean_loss_err(ref["test"]), _mean_loss_err(ours["test"])
    biggest = max((zd - zs).abs().max() for (zs, _), (zd, _) in zip(ref["test"], ours["test"]))
    (tls, tes), (tld, ted) = _mean_loss_err(ref["train"]), _mean_loss_err(ours["train"])
    deviation = torch.stack([(zd - zs).double().norm() / zs.double().norm()
                             for (zs, _), (zd, _) in zip(ref["train"], ours["train"])]).mean()
    return {"test_err_shallow": es, "test_err_deep": ed, "test_loss_shallow": ls, "test_loss_deep": ld,
            "max_logit_diff": biggest.item(), "train_err_shallow": tes, "train_err_deep": ted,
            "train_loss_shallow": tls, "train_loss_deep": tld, "train_deviation": deviation.item(),
            "batches": len(ref["train"])}


def check(cfg, family) -> str | None:
    """inspect.deeper names nets the family can build (a config check, before anything runs)."""
    if not family.sized_by_depth:
        return None  # no deeper nets by depth: the family says so when asked to deepen
    for d in cfg.inspect.deeper:
        try:
            family.depth(cfg.arch, d)
        except ValueError as e:
            return f"inspect.deeper={list(cfg.inspect.deeper)}: {e}"
    return None


@dataclass
class Inspection:
    """What `inspect_net` found: the rows of each measure that applies, why the others do not, what each took."""
    tables: dict = field(default_factory=dict)   # runformat table file -> rows (without the identity columns)
    notes: list = field(default_factory=list)    # one line per measure not written, and why
    seconds: dict = field(default_factory=dict)  # "blocks" (ratios and lesions: one walk), "constructed"


def inspect_net(model, cfg, ds, family) -> Inspection:
    """Every measure on `model` with `cfg`'s protocol (its typed Config) and data (`ds`, on the model's device)."""
    p, found = cfg.protocol, Inspection()
    normalize = make_normalizer(p, ds.train.x)
    device = next(model.parameters()).device
    speed = resolve_speed(cfg.speed, device)
    autocast = speed.autocast(device)
    clock = time.perf_counter()
    try:
        walked = walk_blocks(model, ds.test, normalize, p.eval_batch_size, autocast)
        found.tables[BLOCK_RATIOS.file], found.tables[LESION.file] = walked["ratios"], walked["lesions"]
        found.seconds["blocks"] = round(time.perf_counter() - clock, 3)
    except NotSupported as e:
        found.notes.append(f"block ratios and lesions: not supported for {family.label}: {e}")
    deeper = sorted({d for d in cfg.inspect.deeper if d > cfg.depth})
    if not deeper:
        found.notes.append(f"constructed: no depth in inspect.deeper={list(cfg.inspect.deeper)} above {cfg.depth}")
        return found
    clock = time.perf_counter()
    stream = TrainStream(ds.train, normalize, p.batch_size, p.augment, cfg.seed)
    try:
        stats = calibration(model, deeper[0], stream, cfg.inspect.train_batches)
    except NotSupported as e:
        found.notes.append(f"constructed: not supported for {family.label}: {e}")
        return found
    rows, k = [], cfg.inspect.train_batches
    reference = outputs(model, ds.test, normalize, p.eval_batch_size, stream, k)  # this net's, once for every depth
    for d in deeper:
        deep = model.deepened(d, stats)
        if speed.channels_last:  # the shallow net's layout: the same kernels, and 1.35x faster on a CPU
            deep.to(memory_format=torch.channels_last)
        rows.append({"deep_depth": family.depth(cfg.arch, d),
                     **compare(model, deep, ds.test, normalize, p.eval_batch_size, stream, k, reference)})
        del deep
    found.tables[CONSTRUCTED.file] = rows
    found.seconds["constructed"] = round(time.perf_counter() - clock, 3)
    return found
