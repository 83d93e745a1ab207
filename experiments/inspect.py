"""Why depth hurts plain nets, measured on completed runs' final weights (issue 12): the command line.

    python -m experiments.inspect RUN_DIR...            inspect these completed runs (again)
    python -m experiments.inspect --missing DIR...      every completed run under DIR not inspected yet (make plots)

A run is inspected as it completes (unless `inspect.enabled=false`: experiments.harness.inspection); this does it
for existing runs. The measures and the files they write are experiments/science/measures.py's.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from experiments.data.cache import DataCache
from experiments.harness.checkpoint import trained_net
from experiments.harness.inspection import write
from experiments.harness.rundir import RunDir, RunError, identity_columns, run_dirs
from experiments.nets import families
from experiments.science.measures import inspect_net
from experiments.training.device import resolve_device, resolve_speed
from runformat import Status


class Skipped(Exception):
    """A run with nothing to inspect yet (not completed), or already inspected (--missing): not a failure."""


class NoWeights(Skipped):
    """--missing: a completed run kept without its checkpoint (a committed or published run: run directories are
    committed without weights), so it cannot be inspected here by design; `make plots` says so once, not per run."""


def inspect_dir(path: Path, data, device, missing: bool) -> str:
    """Inspect one run directory; -> one line on what it wrote. Skipped, or UserError saying why it cannot."""
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
        if missing:
            raise NoWeights(f"no {rd.checkpoint.name}")
        raise RunError(f"{path} has no {rd.checkpoint.name} (not copied with the run?): no weights to inspect")
    rd.lock()
    try:
        info = rd.read_info()  # again, under the lock
        ckpt = rd.load_checkpoint()
        cfg, model = trained_net(ckpt, info)
        family = families.get(cfg.arch.name)
        started = time.perf_counter()
        ds = data.get(cfg.data, device)
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
    device, data, failed, unweighted = resolve_device(args.device), DataCache(), 0, []
    for path in [d for p in args.dirs for d in run_dirs(p)]:
        try:
            print(f"{path}: {inspect_dir(path, data, device, args.missing)}")
        except NoWeights:
            unweighted.append(path.name)
        except Skipped as why:
            print(f"{path}: skipped: {why}")
        except Exception as e:  # one run's problem (no data, no checkpoint, a bug) must not stop the others
            failed += 1
            print(f"{'warning' if args.missing else 'error'}: {path}: {type(e).__name__}: {e}", file=sys.stderr)
    if unweighted:
        print(f"not inspectable here, kept without their checkpoint.pt (as committed runs are): {len(unweighted)} "
              f"run(s) ({', '.join(unweighted)}); rerun a run where its weights are to inspect it")
    return 0 if args.missing or not failed else 1


if __name__ == "__main__":
    sys.exit(main())
