"""Run directories with known numbers, written as the harness writes them (runformat's files), for the
analysis tests: `write_run` (metrics.csv + run.json), `edit_run_json`, `write_grid` (the paper's 8 nets over seeds),
`write_probes` (layer_stats.csv + grad_norms.csv) and `write_inspection` (block_ratios.csv, lesion.csv,
constructed.csv and run.json's `inspection`)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from runformat import BLOCK_RATIOS, CONSTRUCTED, GRAD_NORMS, LAYER_STATS, LESION, METRICS, RUN_JSON
from tests.helpers.harness import PARAMS  # the option-A nets' exact counts

# 6 logged epochs that reach the paper's 64,000 iterations (64,002): runs as long as the paper's, whose errors the
# report sets beside the paper's numbers and judges with a full verdict (a test of shorter runs writes its own)
EPOCHS, ITERS_PER_EPOCH = 6, 10_667
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
# what the harness's family table says (experiments/nets/families.py), written into run.json
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
              family: bool | dict = True, init_depth: int | None = None, start: dict | None = None,
              protocol: str = "quick", data: dict | None = None, wiggle: tuple[float, float] = (0.0, 0.0)) -> Path:
    """`iterations`: the protocol's, in run.json (default: where `epochs` epochs end for a completed run, so that it
    is complete; the grid's EPOCHS for an unfinished one, which shares the others' protocol). `family`: run.json's
    family object (True: the harness's for `arch`; False: none, as older harnesses wrote). `init_depth`, `start`: a
    run started with init.from from a net of that depth, and the constructed net's numbers before its first step
    (run.json's `init.start`). `protocol`: its name in both files; `data`: keys that replace run.json's config.data
    (the image folder below). `wiggle`: (train, test) points the errors swing by, up and down in turn, at every epoch
    before the last (which stays `final`): an epoch-to-epoch scatter about the smooth curve."""
    name = name or f"{arch}-depth={depth}-residual={str(residual).lower()}-seed={seed}" + (
        f"-init=from-depth{init_depth}" if init_depth else "")
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    train, test = ([v + w * (-1) ** (epochs - e) * (e < epochs) for e, v in enumerate(curve(f)[:epochs], 1)]
                   for f, w in zip(final, wiggle))
    rows = [{"epoch": e, "iteration": e * ITERS_PER_EPOCH, "lr": 0.1, "train_loss": 1.0,
             "train_err": train[e - 1], "test_loss": 1.0, "test_err": test[e - 1],
             "val_loss": None, "val_err": None, "epoch_time_s": 10.0, "arch": arch,
             "depth": depth, "residual": residual, "shortcut": "A", "seed": seed,
             "protocol": protocol, "init_depth": init_depth} for e in range(1, epochs + 1)]
    pd.DataFrame(rows, columns=list(METRICS.columns)).to_csv(run_dir / METRICS.file, index=False)
    # the shape experiments/ writes (only the keys analysis/ reads, plus a few)
    info = {"status": status, "num_params": params or PARAMS.get(depth, 1000 * depth),
            "config": {"depth": depth, "residual": residual, "shortcut": "A", "seed": seed,
                       "arch": {"name": arch},
                       "protocol": {"name": protocol, "iterations": iterations or (
                           epochs if status == "completed" else max(epochs, EPOCHS)) * ITERS_PER_EPOCH},
                       "data": {"source": "imagefolder", "root": "../shared/datasets",
                                "train_size": None, "test_size": None, **(data or {})}},
            "data_sizes": {"train": 50000, "val": 0, "test": 10000},
            "data_description": "image-folder copy at ../shared/datasets/cifar10-jpeg/cifar10-jpeg.tar.gz",
            "device_name": "Test GPU", "versions": {"python": "3.11", "torch": "2.4", "torchvision": "0.19"},
            "git_commit": "abc1234", "started_at": "2024-01-01T00:00:00", "ended_at": None,
            "train_err_measure": "running",
            "run_dir": str(run_dir)}
    family = FAMILIES.get(arch) if family is True else family
    if family:
        info["family"] = family
    if init_depth:
        info["config"]["init"] = {"from": f"runs/depth={init_depth}"}
        info["init"] = {"source": f"runs/depth={init_depth}", "run": f"depth={init_depth}", "depth": init_depth,
                        "start": start or {}}
    (run_dir / RUN_JSON).write_text(json.dumps(info))
    return run_dir


def edit_run_json(run_dir: Path, change) -> dict:
    """Apply `change` (a function that alters the dict in place) to a run's run.json; -> the new contents."""
    info = json.loads((Path(run_dir) / RUN_JSON).read_text())
    change(info)
    (Path(run_dir) / RUN_JSON).write_text(json.dumps(info))
    return info


def write_grid(runs_dir: Path, finals=FINALS, skip=(), **run) -> Path:
    """`run`: write_run's keywords for every run (`protocol=`, `data=`)."""
    for (depth, residual), values in finals.items():
        if (depth, residual) in skip:
            continue
        for seed, final in enumerate(values):
            write_run(runs_dir, depth, residual, seed, final, **run)
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


# ---- inspection files -----------------------------------------------------------------------------------------------

def inspection_blocks(depth: int) -> list[tuple[int, str, int, str]]:
    """(block, name, stage, skip) of a paper-family net: n blocks per stage, the first of stages 2 and 3 downsample."""
    n = (depth - 2) // 6
    return [(s * n + b + 1, f"stage{s + 1}.{b}", s + 1, "zero-pad" if s and not b else "identity")
            for s in range(3) for b in range(n)]


def write_inspection(run_dir, depth, residual, seed=0, change=None, branch=None, lesion=None, intact=(10.0, 0.5),
                     constructed=(), status="done", notes=(), arch="resnet_cifar"):
    """change(block), branch(block) and lesion(block) give the values (1-based blocks as the harness writes them);
    `constructed`: rows of constructed.csv without the identity columns; run.json gets `inspection`."""
    ident = {"arch": arch, "depth": depth, "residual": residual, "shortcut": "A", "seed": seed,
             "protocol": "quick", "init_depth": None}
    ratios, lesions = [], []
    for block, name, stage, skip in inspection_blocks(depth):
        where = {"block": block, "name": name, "stage": stage, "skip": skip, **ident}
        ratios.append({**where, "branch_ratio": branch(block) if residual and branch else None,
                       "change_ratio": change(block) if change else 1.0})
        lesions.append({**where, "test_err": lesion(block) if lesion else 90.0, "test_loss": 2.0,
                        "intact_test_err": intact[0], "intact_test_loss": intact[1]})
    files = []
    for table, rows in ((BLOCK_RATIOS, ratios), (LESION, lesions), (CONSTRUCTED, [{**r, **ident} for r in constructed])):
        if rows:
            pd.DataFrame(rows, columns=list(table.columns)).to_csv(Path(run_dir) / table.file, index=False)
            files.append(table.file)
    info = json.loads((Path(run_dir) / RUN_JSON).read_text())
    info["inspection"] = {"status": status, "files": files, "notes": list(notes), "seconds": 1.0}
    (Path(run_dir) / RUN_JSON).write_text(json.dumps(info))


def constructed_row(deep_depth, test_err, train=(10.0, 10.0), deviation=0.0, diff=2e-6, batches=4):
    """A constructed.csv row whose constructed net has exactly the shallow net's test error."""
    return {"deep_depth": deep_depth, "test_err_shallow": test_err, "test_err_deep": test_err,
            "test_loss_shallow": 0.5, "test_loss_deep": 0.5, "max_logit_diff": diff, "train_err_shallow": train[0],
            "train_err_deep": train[1], "train_loss_shallow": 0.3, "train_loss_deep": 0.31,
            "train_deviation": deviation, "batches": batches}
