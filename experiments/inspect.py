"""Why depth hurts plain nets, measured on a trained run's final weights (issue 12).

Run when a run completes (unless `inspect.enabled=false`), and on existing runs:

    python -m experiments.inspect RUN_DIR...            inspect these completed runs (again)
    python -m experiments.inspect --missing DIR...      every completed run under DIR not inspected yet (make plots)

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

import argparse
import logging
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.data.loader import TrainStream, iterate_eval, make_normalizer
from experiments.harness import provenance
from experiments.nets import families
from experiments.nets.families import NotSupported
from experiments.training.device import resolve_speed
from runformat import BLOCK_RATIOS, CONSTRUCTED, INSPECTION_TABLES, LESION, Status

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


# ---- one run ----------------------------------------------------------------------------------------------------

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


def write(rd, found: Inspection, extra: dict, started: float) -> dict:
    """Write the tables into the run directory (removing any an earlier inspection left that this one did not
    write); -> run.json's `inspection` (runformat.InspectionInfo)."""
    for t in INSPECTION_TABLES:
        if t.file in found.tables:
            rd.write_table(t.file, found.tables[t.file], extra)
        else:
            (rd.path / t.file).unlink(missing_ok=True)
    files = [t.file for t in INSPECTION_TABLES if t.file in found.tables]
    return {"status": "done" if files else "not supported", "files": files, "notes": found.notes,
            "seconds": round(time.perf_counter() - started, 3), "timings": found.seconds, "at": provenance.now()}


def after_run(cell) -> None:
    """The end of a completed run (experiments.cell.close_cell): inspect its final weights into its directory, with
    the run still locked; a failure is logged and recorded in run.json, never the run's."""
    if not cell.cfg.inspect.enabled:
        return
    started = time.perf_counter()
    try:
        found = inspect_net(cell.trainer.model, cell.cfg, cell.ds, cell.family)
        cell.info["inspection"] = info = write(cell.rd, found, cell.extra, started)
    except Exception as e:  # the run itself has completed: an inspection bug must not undo that
        log.exception("%s: the after-training inspection failed", cell.rd.path)
        cell.info["inspection"] = {"status": "failed", "notes": [f"{type(e).__name__}: {e}"],
                                   "seconds": round(time.perf_counter() - started, 3)}
        return
    log.info("%s: inspected in %.1f s: %s%s", cell.rd.path, info["seconds"], ", ".join(info["files"]) or "nothing",
             "".join(f"; {n}" for n in found.notes))


# ---- existing runs: python -m experiments.inspect -----------------------------------------------------------------

def typed_config(saved: dict):
    """run.json's / the checkpoint's resolved config as the typed Config (missing keys: the schema's defaults)."""
    from omegaconf import OmegaConf

    from experiments.config import Config
    arch = (saved.get("arch") or {}).get("name", "resnet_cifar")
    schema = OmegaConf.structured(Config(arch=families.get(arch).config()))
    return OmegaConf.to_object(OmegaConf.merge(schema, saved))


def run_dirs(path: Path) -> list:
    """`path` if it is a run directory, else the run directories directly under it."""
    from runformat import RUN_JSON
    if (path / RUN_JSON).exists() or not path.is_dir():
        return [path]
    return sorted(d for d in path.iterdir() if d.is_dir() and (d / RUN_JSON).exists())


class Skipped(Exception):
    """A run with nothing to inspect yet (not completed), or already inspected (--missing): not a failure."""


def inspect_dir(path: Path, data, device, missing: bool) -> str:
    """Inspect one run directory; -> one line on what it wrote. Skipped, or UserError saying why it cannot."""
    from experiments.harness.cell import identity_columns
    from experiments.harness.rundir import RunDir, RunError

    rd = RunDir(path)
    if not path.exists():
        raise RunError(f"{path} does not exist")
    if not rd.run_json.exists():
        raise RunError(f"{path} is not a run directory (no {rd.run_json.name})")
    info = rd.read_info()
    if info.get("status") != Status.completed.value:
        raise Skipped(f"it is {info.get('status', 'of unknown status')}, not completed")
    if missing and (info.get("inspection") or {}).get("status") in ("done", "not supported"):
        raise Skipped("already inspected")
    if not rd.checkpoint.exists():
        raise RunError(f"{path} has no {rd.checkpoint.name} (not copied with the run?): no weights to inspect")
    rd.lock()
    try:
        info = rd.read_info()  # again, under the lock
        ckpt = rd.load_checkpoint()
        cfg = typed_config(ckpt.get("config") or info["config"])
        family = families.get(cfg.arch.name)
        started = time.perf_counter()
        ds = data.get(cfg.data, device)
        classes = ckpt.get("num_classes") or info.get("num_classes") or 10  # a run from before `num_classes` had 10
        model = family.build(cfg.arch, cfg.depth, cfg.residual, cfg.shortcut.value, classes)
        model.load_state_dict(ckpt["trainer"]["model"])
        model.to(device)
        if resolve_speed(cfg.speed, device).channels_last:  # as the run trained and evaluated it
            model.to(memory_format=torch.channels_last)
        found = inspect_net(model, cfg, ds, family)
        extra = identity_columns(cfg, family.depth(cfg.arch, cfg.depth), (info.get("init") or {}).get("depth"))
        info["inspection"] = write(rd, found, extra, started)
        rd.write_info(info)
    finally:
        rd.release()
    i = info["inspection"]
    return f"{', '.join(i['files']) or 'nothing'} in {i['seconds']:.1f} s" + "".join(f"; {n}" for n in found.notes)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.inspect",
        description="Inspect completed runs' final weights: the constructed deeper net, how close each block is "
                    "to the identity, and the lesion study (constructed.csv, block_ratios.csv, lesion.csv in each "
                    "run directory).")
    parser.add_argument("dirs", nargs="+", type=Path, help="run directories, or directories of runs")
    parser.add_argument("--missing", action="store_true",
                        help="only runs not inspected yet, and problems are warnings (what `make plots` runs)")
    parser.add_argument("--device", default="auto", help="auto (CUDA if present), cpu, cuda")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from experiments.harness.cell import DataCache
    from experiments.training.device import resolve_device

    device, data, failed = resolve_device(args.device), DataCache(), 0
    for path in [d for p in args.dirs for d in run_dirs(p)]:
        try:
            print(f"{path}: {inspect_dir(path, data, device, args.missing)}")
        except Skipped as why:
            print(f"{path}: skipped: {why}")
        except Exception as e:  # one run's problem (no data, no checkpoint, a bug) must not stop the others
            failed += 1
            print(f"{'warning' if args.missing else 'error'}: {path}: {type(e).__name__}: {e}", file=sys.stderr)
    return 0 if args.missing or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
