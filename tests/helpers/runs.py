"""Run directories with known numbers, written as the harness writes them (runformat's files), for the
analysis tests: `write_run` (metrics.csv + run.json), `write_grid` (the paper's 8 nets over seeds) and
`write_probes` (layer_stats.csv + grad_norms.csv)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from runformat import GRAD_NORMS, LAYER_STATS, METRICS, RUN_JSON
from tests.helpers.harness import PARAMS  # the option-A nets' exact counts

EPOCHS, ITERS_PER_EPOCH = 6, 391
# (depth, residual) -> final (train_err, test_err) per seed: plain nets degrade, ResNets improve.
FINALS = {
    (20, False): [(0.9, 9.5), (1.1, 9.8), (1.0, 9.6)],
    (32, False): [(1.6, 10.4), (1.8, 10.1)],
    (44, False): [(2.4, 11.9), (2.2, 12.2)],
    (56, False): [(3.1, 13.0), (3.5, 13.4), (2.9, 12.9)],
    (20, True): [(0.8, 8.6), (0.9, 8.9)],
    (32, True): [(0.6, 7.7)],
    (44, True): [(0.45, 7.3), (0.5, 7.2)],
    (56, True): [(0.3, 7.0), (0.35, 7.2)],
}
# what the harness's family table says (experiments/families.py), written into run.json
FAMILIES = {
    "resnet_cifar": {"name": "resnet_cifar", "label": "ResNet", "title": "CIFAR plain/ResNet (paper §4.2)"},
    "minimodel": {"name": "minimodel", "label": "MiniModel",
                  "title": "MiniModel (Keras-tutorial family, not the paper's nets)"},
}


def curve(final: float, start: float = 60.0) -> list[float]:
    # ends exactly at `final` in the last epoch, so the tests know every final value
    return [final + (start - final) * ((EPOCHS - e) / (EPOCHS - 1)) ** 2 for e in range(1, EPOCHS + 1)]


def write_run(runs_dir: Path, depth: int, residual: bool, seed: int, final: tuple[float, float],
              arch: str = "resnet_cifar", status: str = "completed", epochs: int = EPOCHS,
              name: str | None = None, params: int | None = None, iterations: int | None = None,
              family: bool | dict = True) -> Path:
    """`iterations`: the protocol's, in run.json (default: where `epochs` epochs end, so a completed run
    is complete). `family`: run.json's family object (True: the harness's for `arch`; False: none, as
    older harnesses wrote)."""
    name = name or f"{arch}-depth={depth}-residual={str(residual).lower()}-seed={seed}"
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    train, test = curve(final[0]), curve(final[1])
    rows = [{"epoch": e, "iteration": e * ITERS_PER_EPOCH, "lr": 0.1, "train_loss": 1.0,
             "train_err": train[e - 1], "test_loss": 1.0, "test_err": test[e - 1],
             "val_loss": None, "val_err": None, "epoch_time_s": 10.0, "arch": arch,
             "depth": depth, "residual": residual, "shortcut": "A", "seed": seed,
             "protocol": "quick"} for e in range(1, epochs + 1)]
    pd.DataFrame(rows, columns=list(METRICS.columns)).to_csv(run_dir / METRICS.file, index=False)
    # the shape experiments/ writes (only the keys analysis/ reads, plus a few)
    info = {"status": status, "num_params": params or PARAMS.get(depth, 1000 * depth),
            "config": {"depth": depth, "residual": residual, "shortcut": "A", "seed": seed,
                       "arch": {"name": arch},
                       "protocol": {"name": "quick", "iterations": iterations or epochs * ITERS_PER_EPOCH},
                       "data": {"source": "imagefolder", "root": "../shared/datasets",
                                "train_size": None, "test_size": None}},
            "data_sizes": {"train": 50000, "val": 0, "test": 10000},
            "data_description": "image-folder copy at ../shared/datasets/cifar10-jpeg/cifar10-jpeg.tar.gz",
            "device_name": "Test GPU", "versions": {"python": "3.11", "torch": "2.4", "torchvision": "0.19"},
            "git_commit": "abc1234", "started_at": "2024-01-01T00:00:00", "ended_at": None,
            "run_dir": str(run_dir)}
    family = FAMILIES.get(arch) if family is True else family
    if family:
        info["family"] = family
    (run_dir / RUN_JSON).write_text(json.dumps(info))
    return run_dir


def write_grid(runs_dir: Path, finals=FINALS, skip=()) -> Path:
    for (depth, residual), values in finals.items():
        if (depth, residual) in skip:
            continue
        for seed, final in enumerate(values):
            write_run(runs_dir, depth, residual, seed, final)
    return runs_dir


# ---- probe files ----------------------------------------------------------------------------------

PROBE_EPOCHS = 3


def layer_names(depth: int) -> list[tuple[str, int]]:
    n = (depth - 2) // 6  # 6n+2 layers: conv1, then 2n 3x3 layers in each of 3 stages
    return [("conv1", 0)] + [(f"stage{s}.{b}.conv{c}", s)
                             for s in (1, 2, 3) for b in range(n) for c in (1, 2)]


def write_probes(run_dir, depth, residual, seed=0, std=None, weight=None, inputs=True, epochs=PROBE_EPOCHS):
    """std(epoch, layer) and weight(epoch, layer) give the values; 1-based layers as the trainer writes."""
    std = std or (lambda e, l: 1.0)
    weight = weight or (lambda e, l: 1.0)
    ident = {"arch": "resnet_cifar", "depth": depth, "residual": residual, "shortcut": "A",
             "seed": seed, "protocol": "quick"}
    names = layer_names(depth)
    stats, grads = [], []
    for e in range(1, epochs + 1):
        for i, (name, stage) in enumerate(names, 1):
            stats.append({"epoch": e, "layer": i, "name": name, "stage": stage, "std": std(e, i), **ident})
            grads.append({"epoch": e, "layer": i, "name": name, "stage": stage, "kind": "weight",
                          "norm": weight(e, i), "samples": 4, **ident})
        if inputs:
            for b in range(1, (depth - 2) // 2 + 1):
                grads.append({"epoch": e, "layer": b, "name": f"block{b}", "stage": 1, "kind": "input",
                              "norm": 0.1, "samples": 4, **ident})
    pd.DataFrame(stats, columns=list(LAYER_STATS.columns)).to_csv(run_dir / LAYER_STATS.file, index=False)
    pd.DataFrame(grads, columns=list(GRAD_NORMS.columns)).to_csv(run_dir / GRAD_NORMS.file, index=False)
