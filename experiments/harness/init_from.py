"""`init.from=RUN_DIR`: start a deeper run from a completed shallower run's net, deepened by identity blocks.

"Does SGD keep it?" The constructed net (experiments.inspect) is at least as good as the shallow one; a run started
from it and trained with its own protocol shows whether SGD keeps that solution, improves on it, or leaves it.
Such a run is another net than the scratch run of its depth: its directory name says `-init=from-depth20-<hash>`,
every CSV row has `init_depth`, run.json has `init` (runformat.InitInfo) with the constructed net's errors before
the first step, and the analysis labels it `plain-56 (from plain-20)` and never averages it with plain-56.

Only a fresh start is initialised this way: a resumed run continues from its own checkpoint. Its identity is the
`init.from` value as typed, and the source must stay where it is (a rerun checks it, as it checks data.root).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Optional

import torch

from experiments.config import INIT_KEYS
from experiments.data.loader import TrainStream, make_normalizer
from experiments.errors import UserError
from experiments.harness.checkpoint import classes_of, trained_net
from experiments.harness.rundir import RunDir, read_regular
from experiments.nets import families
from experiments.science.measures import calibration, compare
from runformat import CHECKPOINT, RUN_JSON, Status

log = logging.getLogger("experiments")


def check(cfg, family, depth: int) -> Optional[str]:
    """The one-line problem with `init`, or None. Reads the source's run.json only: cheap enough for every cell
    of a sweep, before any directory is made."""
    unknown = sorted(set(cfg.init) - set(INIT_KEYS))
    if unknown:
        return f"init.{unknown[0]}: unknown key: init takes only init.from=RUN_DIR (a completed shallower run)"
    source = cfg.init.get("from")
    if not source:
        return None
    path = Path(source)
    where = f"init.from={source}"
    try:
        info = json.loads(read_regular(path / RUN_JSON).decode("utf-8"))
        if not isinstance(info, dict):
            raise ValueError("not a JSON object")
    except FileNotFoundError:
        return f"{where}: no run there (no {RUN_JSON}): give the directory of a completed run"
    except (OSError, ValueError, RecursionError) as e:
        return f"{where}: its {RUN_JSON} is unreadable ({type(e).__name__}): give the directory of a completed run"
    saved = info.get("config") if isinstance(info.get("config"), dict) else {}
    if info.get("status") != Status.completed.value:
        return f"{where} is {info.get('status', 'of unknown status')}: start from a completed run"
    arch = saved.get("arch") if isinstance(saved.get("arch"), dict) else {}
    theirs = (arch.get("name"), saved.get("residual"), saved.get("shortcut"))
    ours = (cfg.arch.name, cfg.residual, cfg.shortcut.value)
    if theirs != ours:
        return (f"{where} is arch={theirs[0]} residual={str(theirs[1]).lower()} shortcut={theirs[2]}; this run is "
                f"arch={ours[0]} residual={str(ours[1]).lower()} shortcut={ours[2]}: they must be the same family and "
                f"kind of net")
    if not family.sized_by_depth:
        return f"{where}: arch={cfg.arch.name} is not sized by depth, so it cannot be deepened by identity blocks"
    p = saved.get("protocol") or {}
    theirs = (p.get("normalize", "pixel_mean"), p.get("normalize_mean"), p.get("normalize_std"))
    ours = (cfg.protocol.normalize.value, cfg.protocol.normalize_mean, cfg.protocol.normalize_std)
    if theirs != ours:  # its weights would be evaluated and trained on inputs scaled otherwise than they learned
        return (f"{where} normalises its inputs by {_inputs(*theirs)}, this run by {_inputs(*ours)}: give this run "
                f"that run's protocol.normalize (and protocol.normalize_mean, normalize_std)")
    if not isinstance(info.get("depth"), int) or isinstance(info["depth"], bool) or info["depth"] >= depth:
        return f"{where} has depth {info.get('depth')}: start a deeper run than that (this one: depth {depth})"
    if not (path / CHECKPOINT).exists():
        return f"{where} has no {CHECKPOINT}: its weights are needed"
    return None


def _inputs(kind, mean, std) -> str:
    return f"{kind} (mean {mean}, std {std})" if kind == "fixed" else str(kind)


def prepare(model, cfg, ds, fresh: bool, known: Optional[dict]) -> dict:
    """run.json's `init` (runformat.InitInfo) for a run with `init.from`; on a fresh start (no checkpoint) `model`
    gets the source net's weights deepened by identity blocks, and `start` its errors before the first step."""
    path = Path(cfg.init["from"])
    if not fresh:  # resumed: the checkpoint has the weights; `init` is already in run.json, unless it was lost
        return known or {"source": str(cfg.init["from"]), "run": path.name,
                         "depth": RunDir(path).read_info().get("depth")}
    rd = RunDir(path)
    info, ckpt = rd.read_info(), rd.load_checkpoint()
    classes = classes_of(ckpt, info)
    if classes != len(ds.classes):
        raise UserError(f"init.from={cfg.init['from']} is a net with a {classes}-class head, and this run's data have "
                        f"{len(ds.classes)} classes: start from a run on the same data")
    src, shallow = trained_net(ckpt, info)
    family, device = families.get(src.arch.name), ds.train.x.device
    shallow.to(device)
    p = cfg.protocol
    normalize = make_normalizer(p, ds.train.x)
    # the BN statistics of the identity blocks from this run's own first training batches
    stream = TrainStream(ds.train, normalize, p.batch_size, p.augment, cfg.seed)
    deep = shallow.deepened(cfg.depth, calibration(shallow, cfg.depth, stream, cfg.inspect.train_batches))
    start = compare(shallow, deep, ds.test, normalize, p.eval_batch_size, stream, cfg.inspect.train_batches)
    with torch.no_grad():
        model.load_state_dict(deep.state_dict())  # strict: the constructed net is exactly this run's architecture
    log.info("%s: starting from %s (depth %s) deepened by identity blocks: test error %.2f%% (the source's %.2f%%)",
             cfg.init["from"], path.name, info.get("depth"), start["test_err_deep"], start["test_err_shallow"])
    return {"source": str(cfg.init["from"]), "run": path.name, "depth": info.get("depth"),
            "start": {"deep_depth": family.depth(cfg.arch, cfg.depth), **start}}
