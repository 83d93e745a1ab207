"""`make inspect-bench`: what the after-training inspection (experiments.inspect) adds to a run, on this machine.

    python -m experiments.inspect_bench [--nets plain-20,plain-56] [--steps N] [OVERRIDES ...]
    python -m experiments.inspect_bench --runs DIR ...

The first form composes a run's config from OVERRIDES (default `protocol=quick`) and, for each net, times `steps`
training steps (after two untimed ones) and one evaluation of the test split, projects the run's training time
from them (iterations x step + epochs x evaluation), then times the inspection exactly as the end of that run
would make it, and prints its share. Without data overrides the images are random, of the protocol's sizes
(6,400 / 2,000 for quick): the cost of every measure depends on the sizes, not on the pixels. The second form
reads what finished runs recorded: run.json's `inspection.seconds` against the sum of metrics.csv's epoch times.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import torch

from experiments.data.datasets import Dataset, Split
from experiments.data.loader import TrainStream, make_normalizer
from experiments.harness.rundir import read_regular, run_dirs
from experiments.nets import families
from experiments.science.measures import inspect_net
from experiments.training.device import resolve_device
from experiments.training.train import evaluate, make_trainer
from runformat import METRICS, RUN_JSON


def random_data(train: int, test: int, device) -> Dataset:
    g = torch.Generator().manual_seed(0)
    split = [Split(torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=g),
                   torch.randint(0, 10, (n,), generator=g)).to(device) for n in (train, test)]
    return Dataset(split[0], split[1], None, list(range(10)), "random images")


def measure(net: str, overrides: list, steps: int, device, data=None) -> dict:
    """One net (`plain-20`, `resnet-56`): its projected training time and what inspecting it takes."""
    from omegaconf import OmegaConf

    from experiments.harness.compose import compose
    kind, depth = net.rsplit("-", 1)
    cfg = OmegaConf.to_object(compose([f"depth={depth}", f"residual={kind.lower() != 'plain'}", *overrides]))
    family, p = families.get(cfg.arch.name), cfg.protocol
    ds = data.get(cfg.data, device) if data else random_data(cfg.data.train_size or 6400, cfg.data.test_size or 2000,
                                                             device)
    torch.manual_seed(cfg.seed)
    model = family.build(cfg.arch, cfg.depth, cfg.residual, cfg.shortcut.value, len(ds.classes))
    trainer = make_trainer(model, family.depth(cfg.arch, cfg.depth), p, device, cfg.speed,
                           cfg.probes.grad_every if cfg.probes.enabled else 0)
    normalize = make_normalizer(p, ds.train.x)
    stream = TrainStream(ds.train, normalize, p.batch_size, p.augment, cfg.seed)
    for k in range(2):  # untimed: first-step set-up (and the captured graph on CUDA)
        trainer.step(*stream.batch(0, k))
    trainer.sums.sum().item()  # waits for the device
    clock = time.perf_counter()
    for k in range(2, 2 + steps):
        trainer.step(*stream.batch(0, k % stream.steps_per_epoch))
    trainer.sums.sum().item()
    step_s = (time.perf_counter() - clock) / steps
    clock = time.perf_counter()
    evaluate(model, ds.test, normalize, p.eval_batch_size)
    eval_s = time.perf_counter() - clock
    projected = p.iterations * step_s + math.ceil(p.iterations / stream.steps_per_epoch) * eval_s
    clock = time.perf_counter()
    found = inspect_net(model, cfg, ds, family)
    inspect_s = time.perf_counter() - clock
    return {"net": net, "step_s": step_s, "eval_s": eval_s, "projected_run_s": projected, "inspect_s": inspect_s,
            **{f"{k}_s": v for k, v in found.seconds.items()}, "overhead": inspect_s / projected,
            "notes": "; ".join(found.notes)}


def recorded(paths: list) -> list:
    """What finished runs recorded: their inspection's seconds against their training's."""
    rows = []
    for run in [d for p in paths for d in run_dirs(Path(p))]:
        try:  # regular files only: a FIFO would wait forever
            info = json.loads(read_regular(run / RUN_JSON).decode("utf-8"))
            metrics = read_regular(run / METRICS.file).decode("utf-8").splitlines()
            train_s = sum(float(r["epoch_time_s"]) for r in csv.DictReader(metrics))
        except (OSError, ValueError, KeyError, RecursionError):
            continue
        if not isinstance(info, dict):
            continue
        seconds = (info.get("inspection") or {}).get("seconds")
        if seconds is not None:
            timings = info["inspection"].get("timings") or {}
            rows.append({"net": run.name, "projected_run_s": train_s, "inspect_s": seconds,
                         **{f"{k}_s": v for k, v in timings.items()}, "overhead": seconds / train_s})
    return rows


def table(rows: list, measured: bool) -> str:
    run = "projected run (s)" if measured else "training (s, epoch times)"
    lines = [f"| net | {run} | inspection (s) | ratios + lesions (s) | constructed (s) | overhead |",
             "| --- | --- | --- | --- | --- | --- |"]
    for r in rows:
        lines.append(f"| {r['net']} | {r['projected_run_s']:.1f} | {r['inspect_s']:.2f} | "
                     f"{r.get('blocks_s', float('nan')):.2f} | {r.get('constructed_s', float('nan')):.2f} | "
                     f"{100 * r['overhead']:.1f}% |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.inspect_bench", description=__doc__.split("\n\n")[0])
    ap.add_argument("--nets", default="plain-20,plain-56", help="comma-separated: plain-20, resnet-56, ...")
    ap.add_argument("--steps", type=int, default=10, help="timed training steps per net")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--runs", nargs="+", metavar="DIR", help="instead: report what these finished runs recorded")
    ap.add_argument("overrides", nargs="*", help="as for experiments.run (default protocol=quick, random images)")
    args = ap.parse_args(argv)
    if args.runs:
        print(table(recorded(args.runs), measured=False))
        return 0
    device = resolve_device(args.device)
    overrides = args.overrides or ["protocol=quick"]
    data = None
    if any(o.split("=")[0].startswith("data") for o in overrides):
        from experiments.data.cache import DataCache
        data = DataCache()
    rows = [measure(net.strip(), [*overrides, f"device={device.type}", "progress=false"], args.steps, device, data)
            for net in args.nets.split(",")]
    print(f"inspection cost on {device.type}, {', '.join(overrides)}"
          f"{'' if data else ' (random images of the protocol sizes)'}, torch {torch.__version__}")
    print(table(rows, measured=True))
    for r in rows:
        if r["notes"]:
            print(f"{r['net']}: {r['notes']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
