"""`python -m experiments.pretrained --from DIR [--out DIR] [--nets STEMS] [OVERRIDES]`: published trained weights as
completed run directories of this harness (issue 33), so that Figure 7 and the after-training inspection run on fully
trained paper-protocol nets, on a CPU, without training them.

The source is a-martyn/resnet (BSD-3-Clause; its facts, shared with its curves, are `runformat.amartyn`'s), which
commits `pretrained/{plainnet,resnet}{20,32,44,56}.pt`: plain state dicts of the paper's option-A nets, the same
tensors in the same order as ours under other names (`convIn`, `bnIn`, `stack1.i`, `stack2a`, `stack2b.i`, `stack3a`,
`stack3b.i`, `fcOut`; its blocks' option-A shortcut, a stride-2 1x1 average pool and zero channels after the
identity ones, is ours). DIR is a clone of it at `runformat.amartyn.COMMIT`:

    git clone https://github.com/a-martyn/resnet DIR && git -C DIR checkout a9779154427bc5d28d89c213e1ae73613c353f74

Per file, and for all of them before anything is written (a problem is one line and exit 2):
- the tensors are mapped by position onto the net its name says, each one's kind (the name's last part: weight, bias,
  running_mean, ...) and shape checked;
- which epoch it holds is read from its BN layers' `num_batches_tracked` (their train.py means to keep the best test
  epoch, but resets the best at the start of every epoch, so each epoch overwrites the file: 164 x 391 = 64,124 steps,
  the last epoch), and the source's own errors at that epoch from its curve (results/<stem>.csv);
- the inputs are normalised as they were in training: their main.ipynb's `transforms.Normalize(means, stds)`, typed
  there per channel, taken over the training and test images together (all three near the red channel's, since
  their calculate_normalisation_params appends each channel to channel 0's values). That is `protocol.normalize=fixed`
  with these numbers, in the config that run.json and the checkpoint record, so every evaluation (the inspection, a
  deeper net constructed from them, a run started from them) uses it.
Then each run directory gets, on the data the overrides name (`data=imagefolder data.root=...`: here the JPEG copy;
the weights were trained on the original CIFAR-10, and run.json says both): checkpoint.pt (loads with
`weights_only=True`), metrics.csv (one row: this evaluation, at their last step), layer_stats.csv (Figure 7, from the
test pass), run.json (`imported`: runformat.ImportedInfo), and the inspection's files (experiments.inspect). Beside
runs/ go their LICENSE and a README.md. `python -m experiments.inspect RUN_DIR` redoes the inspection.

The inspection's training-mode measures (the constructed net's BN statistics and deviation) draw training batches as
this harness does, padding the normalised images with zeros (the mean pixel); their loader padded before normalising
(black). The eval-mode numbers, all the others, see the images as they were trained to.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import sys
import time
from collections.abc import Mapping
from pathlib import Path

import torch

from experiments.config import to_dict
from experiments.data import datasets as data_mod
from experiments.data.cache import DataCache
from experiments.data.loader import make_normalizer
from experiments.errors import UserError
from experiments.harness import inspection, provenance
from experiments.harness.rundir import RunDir, atomic_write, host_copy, identity_columns
from experiments.nets import families
from experiments.nets.resnet_cifar import CifarResNet, num_params
from experiments.science.measures import inspect_net
from experiments.training.device import resolve_device, resolve_speed
from experiments.training.probes import Probes
from experiments.training.train import evaluate
from runformat import GRAD_NORMS, LAYER_STATS, METRICS, RUN_JSON, Status, TrainErrMeasure
from runformat import amartyn as source

log = logging.getLogger("experiments")

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / source.HOME / "weights"  # beside the curves of the same nets, as a set of its own (README: why)
WEIGHTS = "pretrained/{stem}.pt"
# their main.ipynb, "SET FINAL TRANSFORMS WITH NORMALISATION", as typed there
MEAN = (0.4918687901200927, 0.49185976472299225, 0.4918583862227116)
STD = (0.24697121702736, 0.24696766978537033, 0.2469719877121087)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# what the source fixes: a run's identity is the file's, not the command line's
FIXED_KEYS = ("arch", "depth", "residual", "shortcut", "seed", "protocol", "init")


class PretrainedError(UserError):
    """The source or the command cannot be imported: one line, with the way out."""


def source_overrides(depth: int, residual: bool) -> list:
    """The config of one of their nets: the paper's protocol as they ran it (their iterations and lr drops, as their
    curves' run.json), their input normalisation. `seed` picks only the inspection's training batches."""
    its, drops = source.EPOCHS * source.ITERS_PER_EPOCH, [e * source.ITERS_PER_EPOCH for e in source.DROP_EPOCHS]
    return ["protocol=paper", f"protocol.iterations={its}", f"protocol.milestones=[{drops[0]},{drops[1]}]",
            "protocol.normalize=fixed", f"protocol.normalize_mean=[{','.join(map(repr, MEAN))}]",
            f"protocol.normalize_std=[{','.join(map(repr, STD))}]", f"depth={depth}", f"residual={str(residual).lower()}",
            "shortcut=A", "seed=0"]


def configs(stems: list, overrides: list) -> dict:
    """stem -> the typed Config of its run (composed from conf/ and checked as `experiments.run` checks a run, the
    data's presence included); PretrainedError for an override of what the source fixes."""
    from omegaconf import OmegaConf

    from experiments.harness import cell, precheck
    from experiments.harness.compose import compose
    fixed = [o for o in overrides if o.lstrip("+~").split("=", 1)[0].split(".")[0] in FIXED_KEYS]
    if fixed:
        raise PretrainedError(f"{fixed[0]}: the weights fix {', '.join(FIXED_KEYS)}; give only how to evaluate them "
                              "(data=..., data.root=..., device=..., speed.*, inspect.*)")
    out = {}
    for stem in stems:
        args = source_overrides(*source.NETS[stem]) + list(overrides)
        try:
            cfg = OmegaConf.to_object(compose(args))
        except Exception as e:
            raise PretrainedError(precheck.one_line(e, args)) from None
        cell.check(cfg)
        out[stem] = cfg
    problem = precheck.missing_data(next(iter(out.values())).data)  # one data set for all
    if problem:
        raise PretrainedError(problem)
    return out


# ---- the weights ---------------------------------------------------------------------------------------------------

def mapped(state, target: dict, where: str, net: str) -> dict:
    """`state` (the source's layout) under `target`'s names, by position, each tensor's kind (its name's last part) and
    shape checked against the net's; PretrainedError naming the first that does not fit."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(f"{where}: not a state dict (names to tensors): give the file as {source.REPOSITORY} "
                              "commits it")
    theirs, ours = list(state.items()), list(target.items())
    for i, ((name, value), (our_name, our_value)) in enumerate(zip(theirs, ours), 1):
        if name.rsplit(".", 1)[-1] != our_name.rsplit(".", 1)[-1] or value.shape != our_value.shape:
            raise PretrainedError(f"{where}: tensor {i} `{name}` {tuple(value.shape)} does not fit {net}'s "
                                  f"`{our_name}` {tuple(our_value.shape)}: not {source.REPOSITORY}'s {net}")
    if len(theirs) != len(ours):
        first = ours[len(theirs)] if len(theirs) < len(ours) else theirs[len(ours)]
        what = f"{net}'s `{first[0]}` has no counterpart" if len(theirs) < len(ours) else f"`{first[0]}` is extra"
        raise PretrainedError(f"{where}: {len(theirs)} tensors where {net} has {len(ours)} ({what}): not "
                              f"{source.REPOSITORY}'s {net}")
    return {our_name: value.to(our_value.dtype) for (_, value), (our_name, our_value) in zip(theirs, ours)}


def saved_epoch(state: dict) -> tuple:
    """(epoch or None, the evidence in words): BN counts the training steps it has seen (`num_batches_tracked`), and
    their epochs are 391 steps."""
    counts = sorted({int(v) for k, v in state.items() if k.endswith("num_batches_tracked")})
    per = source.ITERS_PER_EPOCH
    if len(counts) == 1 and counts[0] > 0 and counts[0] % per == 0 and counts[0] // per <= source.EPOCHS:
        epoch = counts[0] // per
        return epoch, (f"every BN layer's num_batches_tracked is {counts[0]:,} = {epoch} x {per}: the weights after "
                       f"epoch {epoch} of {source.EPOCHS} (their train.py means to keep the best test epoch, but "
                       "resets the best at each epoch's start, so every epoch overwrites the file)")
    return None, f"num_batches_tracked {counts or 'absent'}: not a whole number of their {per}-step epochs"


def read_weights(clone: Path, stem: str) -> dict:
    """One file: its bytes' sha256, the mapped state dict, the epoch it holds and the source's errors there."""
    depth, residual = source.NETS[stem]
    path, net = clone / WEIGHTS.format(stem=stem), f"{'ResNet' if residual else 'plain'}-{depth}"
    way_out = f"give a clone of {source.URL} at {source.COMMIT[:7]}"
    try:
        data = path.read_bytes()
    except OSError as e:
        raise PretrainedError(f"{path}: {e.strerror or type(e).__name__}; {way_out}") from None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise PretrainedError(f"{path}: not a readable torch file ({type(e).__name__}); {way_out}") from None
    target = CifarResNet(depth, residual, "A").state_dict()
    weights = mapped(state, target, str(path), net)
    epoch, evidence = saved_epoch(state)
    curve = clone / "results" / f"{stem}.csv"
    try:
        rows = source.check_rows(curve, curve.read_bytes())
    except OSError as e:
        raise PretrainedError(f"{curve}: {e.strerror or type(e).__name__}; {way_out}") from None
    except source.PublishedError as e:
        raise PretrainedError(str(e)) from None
    at = rows[epoch - 1] if epoch is not None and epoch <= len(rows) else None
    return {"stem": stem, "depth": depth, "residual": residual, "weights": weights, "sha256": hashlib.sha256(data)
            .hexdigest(), "epoch": epoch, "evidence": evidence, "curve": f"results/{stem}.csv",
            "train_err": float(source.percent(at[2])) if at else None,
            "test_err": float(source.percent(at[3])) if at else None}


def read_source(clone: Path, stems: list, commit: str) -> tuple:
    """-> ({stem: read_weights}, LICENSE's bytes); PretrainedError before anything is written."""
    if not clone.is_dir():
        raise PretrainedError(f"--from {clone}: no such directory; give a clone of {source.URL} at {commit[:7]} "
                              f"(git clone {source.URL} DIR && git -C DIR checkout {commit})")
    at = source.checked_out(clone)
    if at is not None and at != commit:
        raise PretrainedError(f"--from {clone} is checked out at {at[:7]}, not {commit[:7]}: git -C {clone} checkout "
                              f"{commit}, or --commit {at} to import the files of that commit")
    try:
        license_text = (clone / "LICENSE").read_bytes()
    except OSError:
        raise PretrainedError(f"--from {clone}: LICENSE missing: give a clone of {source.URL} (its license travels "
                              "with the weights)") from None
    return {stem: read_weights(clone, stem) for stem in stems}, license_text


# ---- one run directory -----------------------------------------------------------------------------------------------

def imported_info(w: dict, commit: str, cfg) -> dict:
    p = cfg.protocol
    return {"repository": source.REPOSITORY, "url": source.URL, "commit": commit,
            "file": WEIGHTS.format(stem=w["stem"]), "sha256": w["sha256"], "license": source.LICENSE_ID,
            "epoch": w["epoch"], "epoch_evidence": w["evidence"], "trained_on": source.DATA,
            "normalize": {"kind": p.normalize.value, "mean": list(p.normalize_mean), "std": list(p.normalize_std)},
            "tensors": len(w["weights"]), "source_errors_file": w["curve"],
            "source_train_err": w["train_err"], "source_test_err": w["test_err"]}


@torch.no_grad()
def evaluated(model, cfg, ds, epoch: int) -> tuple:
    """(metrics.csv's one row, layer_stats.csv's rows): eval mode, the test images with the probes' responses as a
    run's epoch end measures them, then the training images unaugmented. In the run's own precision and layout, as
    the inspection's lesions are, so the intact error there is this row's."""
    p, device = cfg.protocol, next(model.parameters()).device
    normalize = make_normalizer(p, ds.train.x)
    autocast = resolve_speed(cfg.speed, device).autocast(device)
    probes = Probes(model)
    with probes.responses():
        test_loss, test_err = evaluate(model, ds.test, normalize, p.eval_batch_size, autocast)
    probes.end_epoch(epoch)
    train_loss, train_err = evaluate(model, ds.train, normalize, p.eval_batch_size, autocast)
    row = {"epoch": epoch, "iteration": epoch * source.ITERS_PER_EPOCH, "train_loss": train_loss,
           "train_err": train_err, "test_loss": test_loss, "test_err": test_err}
    return row, probes.layer_rows


def write_run(path: Path, w: dict, cfg, ds, device, commit: str, overrides: list, command: str) -> dict:
    """Evaluate, write and inspect one net's run directory; -> its run.json."""
    started, clock = provenance.now(), time.perf_counter()
    family = families.get(cfg.arch.name)
    model = family.build(cfg.arch, cfg.depth, cfg.residual, cfg.shortcut.value, len(ds.classes))
    model.load_state_dict(w["weights"])
    model.to(device)
    speed = resolve_speed(cfg.speed, device)
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    epoch = w["epoch"] or source.EPOCHS
    row, layers = evaluated(model, cfg, ds, epoch)
    extra, config = identity_columns(cfg, w["depth"]), to_dict(cfg)
    imported = imported_info(w, commit, cfg)
    theirs = (f" (theirs on the original CIFAR-10: {w['train_err']:g}%, {w['test_err']:g}%)"
              if w["test_err"] is not None else "")
    info = {
        "status": Status.completed.value,
        "message": f"imported from {source.REPOSITORY}'s {imported['file']} (epoch {w['epoch']}), evaluated here: "
                   f"train error {row['train_err']:.2f}%, test error {row['test_err']:.2f}%{theirs}",
        "config": config, "overrides": list(overrides),
        "family": {"name": family.name, "label": family.label, "title": family.title},
        "num_params": num_params(model), "depth": w["depth"], "device": str(device),
        "device_name": provenance.device_name(device), "speed": speed.as_dict(), "versions": provenance.versions(),
        "git_commit": provenance.git_commit(), "data_description": ds.description,
        "data_fingerprint": data_mod.data_fingerprint(cfg.data), "num_classes": len(ds.classes),
        "data_sizes": {"train": len(ds.train), "val": 0, "test": len(ds.test)},
        "steps_per_epoch": source.ITERS_PER_EPOCH, "run_dir": _shown(path), "command": command,
        "started_at": started, "iterations_done": row["iteration"], "epochs_done": epoch,
        # train.end_epochs' running error does not apply: nothing was trained here
        "train_err_measure": TrainErrMeasure.eval_after_epoch.value,
        "imported": imported,
        "notes": [f"Trained by {source.REPOSITORY} ({source.LICENSE_ID}) on the original CIFAR-10, imported and "
                  f"evaluated here, not trained by this harness: metrics.csv's one row is this evaluation (train_err "
                  "in eval mode over the unaugmented training images); their curves are the published set's "
                  f"({source.HOME}/runs)."],
    }
    rd = RunDir(path)
    rd.lock()
    try:
        (path / GRAD_NORMS.file).unlink(missing_ok=True)  # nothing was trained: no gradients (a stale file goes)
        rd.write_table(METRICS.file, [row], extra)
        rd.write_table(LAYER_STATS.file, layers, extra)
        # the weights and the config they need (its protocol.normalize*): all `python -m experiments.inspect` reads
        rd.save_checkpoint({"trainer": {"model": {k: v.detach().cpu() for k, v in model.state_dict().items()}},
                            "config": config, "imported": imported, "data_fingerprint": info["data_fingerprint"],
                            "num_classes": info["num_classes"],
                            "input": host_copy(make_normalizer(cfg.protocol, ds.train.x).state_dict())})
        rd.write_info(info)  # completed from here on: the inspection below is a completed run's, as after training
        inspected = time.perf_counter()
        found = inspect_net(model, cfg, ds, family)
        info["inspection"] = inspection.write(rd, found, extra, inspected)
        info["ended_at"] = provenance.now()
        rd.write_info(info)
    finally:
        rd.release()
    log.info("%s: %s; inspected: %s (%.0f s)", path, info["message"], ", ".join(info["inspection"]["files"]),
             time.perf_counter() - clock)
    return info


def _shown(path: Path) -> str:
    """The path relative to the working directory where it lies under it: a committed run.json names no machine."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ---- the set ----------------------------------------------------------------------------------------------------------

def readme(out: Path) -> str:
    """The set's README.md, from the run.json files under out/runs (so a partial re-import keeps the others' rows)."""
    import json
    runs = []
    for run in sorted((out / "runs").iterdir()) if (out / "runs").is_dir() else []:
        try:
            info = json.loads((run / RUN_JSON).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(info, dict) and isinstance(info.get("imported"), dict):
            runs.append((run.name, info))
    if not runs:
        return ""
    first = runs[0][1]
    imp, data = first["imported"], first.get("data_description", "")
    rows = []
    for name, info in runs:
        i = info["imported"]
        here = _final(out / "runs" / name)
        rows.append(f"| `{name}` | {'ResNet' if info['config']['residual'] else 'plain'}-{info['depth']} | "
                    f"`{i['file']}` | {i['epoch']} | {here[0]} | {here[1]} | {_pct(i['source_train_err'])} | "
                    f"{_pct(i['source_test_err'])} | `{i['sha256'][:12]}` |")
    norm = imp["normalize"]
    return "\n".join([
        f"# {out.name}: {imp['repository']}'s trained weights, imported and evaluated here",
        "",
        f"Not this project's training: the weights that [{imp['repository']}]({imp['url']}) commits in `pretrained/` at "
        f"`{imp['commit']}` ({imp['license']}; its text: [LICENSE](LICENSE)), each imported into a completed run "
        "directory of this harness by `python -m experiments.pretrained` (`experiments/pretrained.py` says how), so that "
        "Figure 7 and the after-training inspection run on fully trained paper-protocol nets. Their curves are the "
        "published set beside this folder (`../runs`).",
        "",
        f"- **Trained on** {imp['trained_on']}, inputs normalised as `(x/255 - mean) / std` with mean "
        f"{_list(norm['mean'])} and std {_list(norm['std'])} (their main.ipynb), which every evaluation here uses "
        "(`protocol.normalize=fixed` in each run's config).",
        f"- **Which epoch**: {imp['epoch_evidence']}.",
        f"- **Evaluated on** {data}: {first['data_sizes']['test']:,} test and {first['data_sizes']['train']:,} "
        "training images, in eval mode (the training images unaugmented). Each run's metrics.csv has this one "
        "evaluation; layer_stats.csv (Figure 7), block_ratios.csv, lesion.csv and constructed.csv come from the same "
        "weights on the same images.",
        "- **Committed**: run.json, the CSVs, the figures and the report. **Not committed**: the weights themselves "
        "(`checkpoint.pt`, git-ignored: data fetched from public repositories stays out of this one); "
        "`make pretrained FROM=DIR` (DIR a clone of the source at the commit above) writes them again, with "
        "everything here.",
        "",
        "Errors (%) here, on the data above, and the source's own at the same epoch on the original CIFAR-10 "
        "(their training error in eval mode over augmented training images):",
        "",
        "| run | net | file | epoch | train err. here | test err. here | theirs: train err. | theirs: test err. "
        "| sha256 |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        f"The figures and report beside this file: `python -m analysis.report --runs {_shown(out)}/runs --out "
        f"{_shown(out)} --reference none`.",
        ""])


def _final(run: Path) -> tuple:
    import csv
    try:
        with open(run / METRICS.file) as f:
            last = list(csv.DictReader(f))[-1]
        return f"{float(last['train_err']):.2f}", f"{float(last['test_err']):.2f}"
    except (OSError, IndexError, KeyError, ValueError):
        return "-", "-"


def _pct(value) -> str:
    return "-" if value is None else f"{value:g}"


def _list(values) -> str:
    return ", ".join(f"{v:.7g}" for v in values)


def import_weights(clone: Path, out: Path, stems: list, commit: str, overrides: list, command: str = "") -> list:
    """Every check first (the command, the source's files, the data); then one run directory per net. -> run.json's."""
    cfgs = configs(stems, overrides)
    weights, license_text = read_source(clone, stems, commit)
    first = next(iter(cfgs.values()))
    if first.speed.threads:
        torch.set_num_threads(first.speed.threads)
    try:
        device = resolve_device(first.device)
    except ValueError as e:
        raise PretrainedError(str(e)) from None
    ds = DataCache().get(first.data, device)
    if tuple(ds.classes) != CIFAR10_CLASSES:
        raise PretrainedError(f"the data's classes are {', '.join(map(str, ds.classes))}; these weights classify "
                              f"CIFAR-10's ({', '.join(CIFAR10_CLASSES)}, in that order): evaluate them on CIFAR-10 "
                              "or a copy of it")
    infos = [write_run(out / "runs" / stem, weights[stem], cfgs[stem], ds, device, commit, overrides, command)
             for stem in stems]
    atomic_write(out / "LICENSE", license_text.decode("utf-8", errors="replace"))
    atomic_write(out / "README.md", readme(out))
    return infos


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m experiments.pretrained",
        description=f"Import the trained weights that {source.REPOSITORY} commits (pretrained/*.pt of a clone) as "
                    "completed runs, evaluated and inspected on the data the overrides name.")
    parser.add_argument("--from", dest="clone", required=True, type=Path, metavar="DIR",
                        help=f"a clone of {source.URL} at the commit --commit names")
    parser.add_argument("--out", type=Path, default=OUT, help=f"the set to write (default: {source.HOME}/weights)")
    parser.add_argument("--nets", default=",".join(source.NETS),
                        help=f"which files, by name (default: all: {','.join(source.NETS)})")
    parser.add_argument("--commit", default=source.COMMIT, help="the commit DIR holds, recorded in run.json")
    parser.add_argument("overrides", nargs="*",
                        help="how to evaluate them: data=imagefolder data.root=PATH, device=cpu, speed.*, inspect.*")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    stems = [s.strip() for s in args.nets.split(",") if s.strip()]
    try:
        unknown = [s for s in stems if s not in source.NETS]
        if unknown or not stems:
            raise PretrainedError(f"--nets {args.nets}: {unknown[0] if unknown else 'none'} is not one of "
                                  f"{', '.join(source.NETS)}")
        command = " ".join(["python -m experiments.pretrained", *(sys.argv[1:] if argv is None else argv)])
        infos = import_weights(args.clone, args.out, stems, args.commit, args.overrides, command)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(infos)} runs into {args.out / 'runs'}, with LICENSE and README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
