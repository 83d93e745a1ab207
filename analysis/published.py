"""`python -m analysis.published --from DIR [--out DIR]`: a public reproduction's published curves as a reference
set (issue 30), so that `make plots` draws numbers someone has published beneath a user's paper-protocol runs.

The source is a-martyn/resnet (BSD-3-Clause), which commits in `results/` one CSV per net for plain nets and ResNets
(option A) of depth 20, 32, 44 and 56: `epoch` (0-based), `train_loss`, `train_err`, `test_err` (fractions), one
row per epoch. `--from` is a clone of it at `COMMIT`:

    git clone https://github.com/a-martyn/resnet DIR && git -C DIR checkout a9779154427bc5d28d89c213e1ae73613c353f74

What the conversion does, and nothing else (written out in the set's README.md and every run.json):
- their epoch e (0-based) ends at iteration (e + 1) * 391 and is our epoch e + 1 (1-based, as the harness writes);
- errors become percent exactly: the number as written, times 100 in decimal arithmetic, so that percent / 100 is
  the source's number again (the test checks every row of two nets against a fingerprint of the source's numbers);
- train_loss is copied as written; a column the source has not (lr, test_loss, epoch_time_s, ...) stays empty;
- each run.json says where its file comes from (`runformat.PublishedInfo`), how the net was trained (config, the
  `paper` protocol with their iterations and lr drops), the data (the original CIFAR-10) and how the training error
  was measured (`runformat.TrainErrMeasure.eval_after_epoch`);
- their LICENSE is copied beside runs/, with a README.md.
Every file is read and checked before anything is written: a problem is one line naming it, exit 2, and the set
already there is left as it was. Reads and writes files only (no torch, no `experiments/`), as all of `analysis/`.
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import sys
import textwrap
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

from runformat import METRICS, PAPER_FAMILY, RUN_JSON, Status, TrainErrMeasure
from runformat.amartyn import (
    COMMIT,
    CONVERTED,
    DATA,
    DROP_EPOCHS,
    EPOCHS,
    HOME,
    ITERS_PER_EPOCH,
    LICENSE_ID,
    NAME,
    NETS,
    REPOSITORY,
    SCHEDULE,
    TEST_IMAGES,
    TRAIN_ERR_NOTE,
    TRAIN_IMAGES,
    URL,
    PublishedError,
    check_rows,
    checked_out,
    percent,
)

from . import outputs
from .reference import ROOT
from .tables import load_peers


@dataclass(frozen=True)
class SourceFile:
    stem: str           # `plainnet20`: results/<stem>.csv, and the run directory's name
    depth: int
    residual: bool
    data: bytes         # the file as committed
    rows: list          # [[epoch, train_loss, train_err, test_err], ...], each value the text as written

    @property
    def file(self) -> str:
        return f"results/{self.stem}.csv"


def fingerprint(rows) -> str:
    """runformat.PublishedInfo.values_sha256 of the source's rows (texts or numbers, the epoch first)."""
    lines = "".join(f"{row[0]}," + ",".join(float(v).hex() for v in row[1:]) + "\n" for row in rows)
    return hashlib.sha256(lines.encode()).hexdigest()


# ---- reading and checking the source ---------------------------------------------------------------

def read_source(source: Path, commit: str) -> tuple[list[SourceFile], bytes]:
    """-> (the eight files, LICENSE's bytes). Raises PublishedError before anything is written."""
    way_out = f"give a clone of {URL} at {commit[:7]} (git clone {URL} DIR && git -C DIR checkout {commit})"
    if not source.is_dir():
        raise PublishedError(f"--from {source}: no such directory; {way_out}")
    at = checked_out(source)
    if at is not None and at != commit:
        raise PublishedError(f"--from {source} is checked out at {at[:7]}, not {commit[:7]}: git -C {source} "
                             f"checkout {commit}, or --commit {at} to convert the files of that commit")
    missing = [f"results/{stem}.csv" for stem in NETS if not (source / "results" / f"{stem}.csv").is_file()]
    missing += [] if (source / "LICENSE").is_file() else ["LICENSE"]
    if missing:
        raise PublishedError(f"--from {source}: {', '.join(missing)} missing; {way_out}")
    files = [SourceFile(stem, depth, residual, data, check_rows(source / "results" / f"{stem}.csv", data))
             for stem, (depth, residual) in NETS.items()
             for data in [(source / "results" / f"{stem}.csv").read_bytes()]]
    return files, (source / "LICENSE").read_bytes()


# ---- the converted set -----------------------------------------------------------------------------

def metrics_csv(f: SourceFile) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=list(METRICS.columns), lineterminator="\n")
    writer.writeheader()
    for epoch, train_loss, train_err, test_err in f.rows:
        writer.writerow({"epoch": int(epoch) + 1, "iteration": (int(epoch) + 1) * ITERS_PER_EPOCH,
                         "train_loss": train_loss, "train_err": percent(train_err), "test_err": percent(test_err),
                         "arch": PAPER_FAMILY, "depth": f.depth, "residual": f.residual, "shortcut": "A",
                         "protocol": "paper"})
    return out.getvalue()


def run_json(f: SourceFile, commit: str, params: dict) -> dict:
    epochs, last = len(f.rows), f.rows[-1]
    complete = epochs == EPOCHS
    final = (f"{REPOSITORY}'s {f.file}: final training error {percent(last[2])}%, test error {percent(last[3])}% "
             f"(epoch {epochs})")
    return {
        "status": (Status.completed if complete else Status.failed).value,
        "message": final if complete else f"{final}: the file stops at epoch {epochs} of {EPOCHS}",
        "config": {"arch": {"name": PAPER_FAMILY}, "depth": f.depth, "residual": f.residual, "shortcut": "A",
                   "seed": None,
                   # `paper`, so that `--reference auto` draws it beneath a user's paper-protocol runs; the numbers
                   # are theirs: 64,124 iterations, the drops where their epochs 82 and 123 begin
                   "protocol": {"name": "paper", "iterations": EPOCHS * ITERS_PER_EPOCH,
                                "milestones": [e * ITERS_PER_EPOCH for e in DROP_EPOCHS], "lr": 0.1, "lr_decay": 0.1,
                                "batch_size": 128, "momentum": 0.9, "weight_decay": 0.0001, "optimizer": "sgd",
                                "augment": "crop_flip"},
                   "data": {"source": "cifar10", "root": None}},
        "num_params": params.get(f.depth),
        "depth": f.depth,
        "data_description": DATA,
        "data_sizes": {"train": TRAIN_IMAGES, "val": 0, "test": TEST_IMAGES},
        "steps_per_epoch": ITERS_PER_EPOCH,
        "epochs_done": epochs,
        "iterations_done": epochs * ITERS_PER_EPOCH,
        "train_err_measure": TrainErrMeasure.eval_after_epoch.value,
        "published": {"repository": REPOSITORY, "url": URL, "commit": commit, "file": f.file,
                      "sha256": hashlib.sha256(f.data).hexdigest(), "values_sha256": fingerprint(f.rows),
                      "license": LICENSE_ID, "schedule": SCHEDULE, "converted": CONVERTED},
        "notes": [f"Published by {REPOSITORY} ({LICENSE_ID}) and converted, not trained by this harness: its "
                  "train_err is measured after each epoch in eval mode over the training set, its train_loss is the "
                  "epoch's last mini-batch's."],
    }


def parameter_counts() -> dict:
    """depth -> parameters of the option-A net: peers.csv's exact counts (the same for plain nets), which equal
    the parameters in the source's pretrained/*.pt state dicts (counted with torch once: 269,722 for depth 20)."""
    peers = load_peers()
    rows = peers[peers["kind"].isin(["paper_table", "paper_figure_readoff"])].dropna(subset=["params"])
    return {int(d): int(p) for d, p in zip(rows["depth"], rows["params"])}


def shown(text: str) -> str:
    """A source fraction as the README's percent: two decimals at least (`8.00`), every digit it has (`0.038`)."""
    value = Decimal(percent(text))
    return f"{value:.2f}" if value.as_tuple().exponent >= -2 else str(value)


def readme(files: list[SourceFile], commit: str) -> str:
    def paragraph(text: str, bullet: str = "") -> str:
        return textwrap.fill(text, 115, initial_indent=bullet, subsequent_indent=" " * len(bullet))

    rows = []
    for f in files:
        tests = [Decimal(r[3]) for r in f.rows]
        best = tests.index(min(tests))  # the first epoch at the lowest
        rows.append(f"| `{f.stem}` | {'ResNet' if f.residual else 'plain'}-{f.depth} | `{f.file}` | {len(f.rows)} | "
                    f"{shown(f.rows[-1][2])} | {shown(f.rows[-1][3])} | {shown(f.rows[best][3])} (epoch {best + 1}) | "
                    f"`{hashlib.sha256(f.data).hexdigest()[:12]}` |")
    facts = [
        "**Nets**: plain nets and ResNets (option A: zero-padded identity shortcuts) of depth 20, 32, 44 and 56, one "
        "run each.",
        f"**Data**: {DATA}. This project's JPEG copy is other data: figures and reports drawn against it say so.",
        f"**Schedule**: {SCHEDULE}.",
        f"**Training error**: {TRAIN_ERR_NOTE} (run.json `train_err_measure`).",
        f"**Conversion** (`python -m analysis.published --from DIR --out {HOME}`, DIR a clone of {URL} at "
        f"`{commit[:7]}`): {CONVERTED}. Each run.json names its file, the file's sha256 and a fingerprint of its "
        "numbers (`published`: `runformat.PublishedInfo`).",
        "**Their trained weights** (`pretrained/*.pt`) are a set of their own in `weights/`: imported, evaluated on "
        "the data at hand and inspected by `make pretrained FROM=DIR` (`experiments/pretrained.py`; its README).",
    ]
    return "\n\n".join([
        f"# {NAME}: the published curves of {REPOSITORY}, converted",
        paragraph(f"Not this project's runs: the eight training curves that [{REPOSITORY}]({URL}) publishes in "
                  f"`results/` at commit `{commit}`, under the {LICENSE_ID} license (its text: [LICENSE](LICENSE)), "
                  "converted into this project's run format so that `make plots` can draw them beneath a user's "
                  "paper-protocol runs (`analysis/reference.py`)."),
        "\n".join(paragraph(fact, "- ") for fact in facts),
        paragraph("Final and best test errors (%) as published; the best is the lowest test error over all epochs, "
                  "chosen on the test set:"),
        "\n".join(["| run | net | source file | epochs | final train err. | final test err. | best test err. | sha256 |",
                   "| --- | --- | --- | --- | --- | --- | --- | --- |"] + rows),
        paragraph("The figures, Table 6 and report beside this file are this project's analysis of `runs/`: "
                  f"`python -m analysis.report --runs {HOME}/runs --out {HOME} --reference none` "
                  "(`make published FROM=DIR` runs both steps)."),
    ]) + "\n"


def write(path: Path, data: bytes) -> None:
    """Whole or not at all: a reader (or a second conversion) never sees half a file."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        outputs.write_bytes(path, data)
    except OSError as err:
        raise PublishedError(f"cannot write {path} ({err.strerror or err.__class__.__name__}): give --out a "
                             "directory this user can write, with room for about 1 MB") from None


def convert(source: Path, out: Path, commit: str = COMMIT) -> list[Path]:
    files, license_text = read_source(source, commit)  # raises before anything is written
    params = parameter_counts()
    written = []
    for f in files:
        run_dir = out / "runs" / f.stem
        for name, text in ((METRICS.file, metrics_csv(f)),
                           (RUN_JSON, json.dumps(run_json(f, commit, params), indent=2) + "\n")):
            write(run_dir / name, text.encode())
            written.append(run_dir / name)
    write(out / "LICENSE", license_text)
    write(out / "README.md", readme(files, commit).encode())
    return written + [out / "LICENSE", out / "README.md"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m analysis.published",
        description=f"Convert the published curves of {REPOSITORY} (results/*.csv of a clone) into a reference "
                    "set of runs that `make plots` draws beneath paper-protocol runs.")
    parser.add_argument("--from", dest="source", required=True, metavar="DIR",
                        help=f"a clone of {URL} at the commit --commit names")
    parser.add_argument("--out", default=str(ROOT / NAME),
                        help=f"the reference set to write (default: {HOME} of this checkout)")
    parser.add_argument("--commit", default=COMMIT,
                        help="the commit DIR holds, recorded in every run.json (default: the one this "
                             "conversion was written for; checked against DIR's checkout when DIR is a clone)")
    args = parser.parse_args(argv)
    try:
        written = convert(Path(args.source), Path(args.out), args.commit)
    except PublishedError as why:
        print(f"error: {why}", file=sys.stderr)
        return 2
    print(f"wrote {len(written)} files into {args.out}: runs/ ({len(NETS)} runs), LICENSE, README.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
