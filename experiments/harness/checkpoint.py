"""A run's trained net, standing alone: `model, transform = load_model(run_dir)`.

checkpoint.pt holds the weights, the resolved config, the data's class count and the input normalisation the run
trained with (the training set's pixel mean, or the Keras recipe's mean and std), so using the net needs neither the
data set nor the harness's data code: `model(transform(x_uint8))` for images as uint8 tensors [B, 3, 32, 32].
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from experiments.config import Config
from experiments.data.loader import Normalizer
from experiments.errors import UserError
from experiments.harness.compose import typed
from experiments.harness.rundir import RunDir
from experiments.nets import families


def classes_of(ckpt: dict, info: Optional[dict] = None) -> int:
    """The class count a checkpoint's head was built for (run.json's where the checkpoint lacks it; a run from before
    `num_classes` had 10)."""
    return ckpt.get("num_classes") or (info or {}).get("num_classes") or 10


def trained_net(ckpt: dict, info: Optional[dict] = None) -> tuple[Config, torch.nn.Module]:
    """(the typed config, the net with its weights, on the CPU) of a checkpoint: the one place a saved run becomes
    a net again (load_model, the inspection, init.from). run.json (`info`) stands in for what an older checkpoint
    lacks."""
    info = info or {}
    cfg, classes = typed(ckpt.get("config") or info["config"]), classes_of(ckpt, info)
    model = families.get(cfg.arch.name).build(cfg.arch, cfg.depth, cfg.residual, cfg.shortcut.value, classes)
    model.load_state_dict(ckpt["trainer"]["model"])
    return cfg, model


def load_model(run_dir, device="cpu") -> tuple:
    """(model in eval mode on `device`, its input transform: uint8 images -> the float inputs it was trained on) from
    RUN_DIR/checkpoint.pt, read with weights_only. The weights are those of the last epoch's end (or of a stop)."""
    rd = RunDir(Path(run_dir))
    ckpt = rd.load_checkpoint()
    if ckpt is None:
        raise UserError(f"{rd.checkpoint} does not exist: give a run directory whose run has finished an epoch")
    if "input" not in ckpt:
        raise UserError(f"{rd.checkpoint} was written before checkpoints kept their input normalisation: resume an "
                        f"unfinished run with this version (its next epoch end writes it), or normalise as its "
                        f"protocol.normalize says (experiments/data/loader.py)")
    _, model = trained_net(ckpt)
    device = torch.device(device)
    return model.to(device).eval(), Normalizer.from_state(ckpt["input"], device)
