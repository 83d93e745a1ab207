"""A run's trained net, standing alone: `model, transform = load_model(run_dir)`.

checkpoint.pt holds the weights, the resolved config, the data's class count and the input normalisation the run
trained with (the training set's pixel mean, or the Keras recipe's mean and std), so using the net needs neither the
data set nor the harness's data code: `model(transform(x_uint8))` for images as uint8 tensors [B, 3, 32, 32].
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from experiments.data.loader import Normalizer
from experiments.errors import UserError
from experiments.harness.rundir import RunDir
from experiments.nets import families


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
    config = ckpt["config"]
    family = families.get(config["arch"]["name"])
    known = {f.name for f in dataclasses.fields(family.config)}
    arch = family.config(**{k: v for k, v in config["arch"].items() if k in known})
    model = family.build(arch, config["depth"], config["residual"], config["shortcut"], ckpt.get("num_classes") or 10)
    model.load_state_dict(ckpt["trainer"]["model"])
    device = torch.device(device)
    return model.to(device).eval(), Normalizer.from_state(ckpt["input"], device)
