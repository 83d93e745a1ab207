"""The published reference set (analysis/published.py, issue 30): the converter on rows it writes itself, bad sources
refused without touching the set already there, the committed set checked row by row against the source's numbers
(from the fingerprint its run.json keeps, so without the source), and, where a copy of the source repository is on
this machine, converted again from it."""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import subprocess
import tarfile
from decimal import Decimal
from pathlib import Path

import pytest

from analysis import published
from analysis.load import scan_runs
from runformat import METRICS, RUN_JSON, TrainErrMeasure, amartyn

COMMITTED = Path(published.__file__).resolve().parents[1] / published.HOME
# a bare git directory of a-martyn/resnet (the default: where this project's sessions keep fetched repositories)
SOURCE_GIT = Path(os.environ.get("A_MARTYN_RESNET_GIT", "/work/.mirror/a-martyn+resnet/repo"))

# a few rows as the source writes them, and what the converted metrics.csv must hold for them: written out here,
# not computed by the code under test
ROWS = ["0,2.3,0.9,0.9", "1,1.022452473640442,0.61566,0.4997", "2,0.0009994804859161377,2e-05,0.0746"]
EXPECTED = [  # epoch, iteration, train_loss, train_err, test_err
    ("1", "391", "2.3", "90", "90"),
    ("2", "782", "1.022452473640442", "61.566", "49.97"),
    ("3", "1173", "0.0009994804859161377", "0.002", "7.46"),
]
LICENSE = "BSD 3-Clause License\n\nCopyright (c) 2023, someone\n"


def source_fingerprint(rows) -> str:
    """runformat.PublishedInfo.values_sha256, computed here from its documentation: one line per row, the epoch as
    written, then each value as float.hex."""
    text = "".join(row[0] + "," + ",".join(float(v).hex() for v in row[1:]) + "\n" for row in rows)
    return hashlib.sha256(text.encode()).hexdigest()


def fake_clone(root: Path, rows=ROWS, full=("plainnet20",)) -> Path:
    """A clone's results/ and LICENSE: `rows` for every net, the schedule's 164 epochs for those in `full`."""
    (root / "results").mkdir(parents=True)
    for stem in published.NETS:
        lines = [f"{e},1.0,0.5,0.25" for e in range(published.EPOCHS)] if stem in full else rows
        (root / "results" / f"{stem}.csv").write_text("\n".join([amartyn.HEADER, *lines]) + "\n")
    (root / "LICENSE").write_text(LICENSE)
    return root


def metrics(run_dir: Path) -> list[dict]:
    return list(csv.DictReader((run_dir / METRICS.file).open()))


def info(run_dir: Path) -> dict:
    return json.loads((run_dir / RUN_JSON).read_text())


def snapshot(root: Path) -> dict:
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ---- the converter on rows it writes itself ------------------------------------------------------------

def test_rows_are_converted_exactly_and_run_json_says_where_they_come_from(tmp_path):
    source, out = fake_clone(tmp_path / "clone"), tmp_path / "set"
    assert published.main(["--from", str(source), "--out", str(out)]) == 0
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(published.NETS)
    run = out / "runs" / "resnet56"
    rows = metrics(run)
    assert list(rows[0]) == list(METRICS.columns)
    assert [(r["epoch"], r["iteration"], r["train_loss"], r["train_err"], r["test_err"]) for r in rows] == EXPECTED
    assert {(r["depth"], r["residual"], r["shortcut"], r["protocol"], r["lr"], r["seed"]) for r in rows} == {
        ("56", "True", "A", "paper", "", "")}  # nothing the source has not: no lr, no seed
    meta = info(run)
    source_bytes = (source / "results" / "resnet56.csv").read_bytes()
    assert meta["published"]["sha256"] == hashlib.sha256(source_bytes).hexdigest()
    assert meta["published"]["values_sha256"] == source_fingerprint([r.split(",") for r in ROWS])
    assert meta["published"]["file"] == "results/resnet56.csv" and meta["published"]["commit"] == published.COMMIT
    assert meta["published"]["repository"] == "a-martyn/resnet" and meta["published"]["license"] == "BSD-3-Clause"
    assert meta["train_err_measure"] == TrainErrMeasure.eval_after_epoch
    assert meta["config"]["protocol"]["name"] == "paper"
    # 164 epochs of 391 iterations, the lr divided where their epochs 82 and 123 begin
    assert meta["config"]["protocol"]["iterations"] == 64_124
    assert meta["config"]["protocol"]["milestones"] == [32_062, 48_093]
    assert meta["config"]["data"]["source"] == "cifar10" and meta["data_sizes"]["train"] == 50_000
    assert (out / "LICENSE").read_text() == LICENSE
    readme = (out / "README.md").read_text()
    assert published.URL in readme and published.COMMIT in readme and "[LICENSE](LICENSE)" in readme


def test_the_analysis_reads_the_set_and_a_short_file_is_unfinished(tmp_path):
    out = tmp_path / "set"
    published.convert(fake_clone(tmp_path / "clone"), out)
    runs = scan_runs(out, warn=False).runs.set_index("run")  # the set's directory, as results/reference/<name>
    assert runs.loc["plainnet20", "finished"] and runs.loc["plainnet20", "net"] == "plain-20"
    assert runs.loc["plainnet20", "iteration"] == 64_124
    short = runs.loc["resnet56"]
    assert not short["finished"] and short["net"] == "ResNet-56" and short["status"] == "failed"
    assert info(out / "runs" / "resnet56")["message"].endswith("the file stops at epoch 3 of 164")


@pytest.mark.parametrize("make, expected", [
    ("no-directory", "no such directory"),
    ("missing-file", "results/resnet44.csv missing"),
    ("no-license", "LICENSE missing"),
    ("header", "its header is `epoch,loss,err`, not `epoch,train_loss,train_err,test_err`"),
    ("epoch-gap", "line 3: epoch `2` where 1 was expected"),
    ("percent", "train_err 61.566 is not a fraction between 0 and 1"),
    ("not-a-number", "test_err `nan` is not a finite number"),
    ("short-row", "line 2: 3 fields, expected 4"),
    ("too-many", "165 epoch rows, more than the 164"),
    ("other-commit", "is checked out at 0123456, not a977915"),
])
def test_a_bad_source_is_one_line_exit_2_and_the_set_is_left_as_it_was(tmp_path, capsys, make, expected):
    out = tmp_path / "set"
    published.convert(fake_clone(tmp_path / "good"), out)
    before = snapshot(out)
    source = fake_clone(tmp_path / "clone")
    csv_file = source / "results" / "plainnet32.csv"
    if make == "no-directory":
        source = tmp_path / "nowhere"
    elif make == "missing-file":
        (source / "results" / "resnet44.csv").unlink()
    elif make == "no-license":
        (source / "LICENSE").unlink()
    elif make == "header":
        csv_file.write_text("epoch,loss,err\n0,1,0.5\n")
    elif make == "too-many":
        csv_file.write_text("\n".join([amartyn.HEADER] + [f"{e},1.0,0.5,0.5" for e in range(165)]) + "\n")
    else:
        bad = {"epoch-gap": "2,1.0,0.5,0.5", "percent": "1,1.0,61.566,0.5", "not-a-number": "1,1.0,0.5,nan",
               "short-row": "0,1.0,0.5"}.get(make)
        if bad:
            lines = csv_file.read_text().splitlines()
            lines[1 if make == "short-row" else 2] = bad
            csv_file.write_text("\n".join(lines) + "\n")
    if make == "other-commit":
        (source / ".git").mkdir()
        (source / ".git" / "HEAD").write_text("0123456" + "0" * 33 + "\n")  # detached, at another commit
    assert published.main(["--from", str(source), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert snapshot(out) == before


def test_an_out_that_cannot_be_written_is_one_line_exit_2(tmp_path, capsys):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a directory\n")
    assert published.main(["--from", str(fake_clone(tmp_path / "clone")), "--out", str(blocked)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: cannot write {blocked / 'runs'}") and "--out" in err[0], err
    assert blocked.read_text() == "not a directory\n"


def test_a_clone_on_a_branch_is_checked_through_its_refs(tmp_path):
    source = fake_clone(tmp_path / "clone")
    (source / ".git").mkdir()
    (source / ".git" / "HEAD").write_text("ref: refs/heads/master\n")
    (source / ".git" / "packed-refs").write_text(f"# pack-refs with: peeled\n{published.COMMIT} refs/heads/master\n")
    assert published.checked_out(source) == published.COMMIT
    assert published.main(["--from", str(source), "--out", str(tmp_path / "set")]) == 0
    (source / ".git" / "refs" / "heads").mkdir(parents=True)
    (source / ".git" / "refs" / "heads" / "master").write_text("f" * 40 + "\n")  # a loose ref wins over packed
    assert published.checked_out(source) == "f" * 40
    assert published.main(["--from", str(source), "--out", str(tmp_path / "set"), "--commit", "f" * 40]) == 0
    assert info(tmp_path / "set" / "runs" / "plainnet20")["published"]["commit"] == "f" * 40


# ---- the committed set ------------------------------------------------------------------------------------

@pytest.mark.parametrize("stem", ["plainnet56", "resnet20"])
def test_the_committed_values_equal_the_sources(stem):
    """Every row: the iteration is 391 epochs' worth, and percent / 100 (exact decimal arithmetic) with the loss as
    written gives back numbers whose fingerprint is the one the converter took from the source file."""
    run = COMMITTED / "runs" / stem
    rows, meta = metrics(run), info(run)
    assert len(rows) == published.EPOCHS
    back = []
    for number, row in enumerate(rows, 1):
        assert int(row["epoch"]) == number and int(row["iteration"]) == 391 * number
        back.append([str(number - 1), row["train_loss"],
                     *(str(Decimal(row[c]).scaleb(-2)) for c in ("train_err", "test_err"))])
    assert source_fingerprint(back) == meta["published"]["values_sha256"]
    assert meta["published"]["file"] == f"results/{stem}.csv" and meta["status"] == "completed"


def test_the_committed_set_keeps_the_license_beside_its_runs():
    text = (COMMITTED / "LICENSE").read_text()
    assert text.startswith("BSD 3-Clause License") and "a-martyn" in text
    readme = (COMMITTED / "README.md").read_text()
    assert published.COMMIT in readme and "original CIFAR-10" in readme
    for figure in ("fig6.png", "degradation.png"):
        assert (COMMITTED / figure).is_file()


def export_source(tmp_path: Path) -> Path:
    """The source's results/ and LICENSE at the pinned commit, from the bare git directory."""
    if not (SOURCE_GIT / "HEAD").is_file():
        pytest.skip(f"no git directory of {published.REPOSITORY} at {SOURCE_GIT} (A_MARTYN_RESNET_GIT)")
    archive = subprocess.run(["git", "--git-dir", str(SOURCE_GIT), "archive", published.COMMIT, "results", "LICENSE"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(tmp_path / "clone", filter="data")
    return tmp_path / "clone"


def test_converting_the_source_again_gives_the_committed_set(tmp_path):
    out = tmp_path / "set"
    published.convert(export_source(tmp_path), out)
    converted = snapshot(out)
    committed = {path: data for path, data in snapshot(COMMITTED).items() if path in converted}
    assert set(converted) == set(committed) and len(converted) == 2 * len(published.NETS) + 2
    assert converted == committed


def test_the_parameter_counts_are_those_of_the_sources_weights(tmp_path):
    """run.json's num_params (peers.csv's exact counts) equal the parameters in the source's pretrained state dicts."""
    torch = pytest.importorskip("torch")
    export_source(tmp_path)  # skips without the source
    for stem in ("plainnet20", "resnet56"):
        blob = subprocess.run(["git", "--git-dir", str(SOURCE_GIT), "show", f"{published.COMMIT}:pretrained/{stem}.pt"],
                              capture_output=True, check=True).stdout
        state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
        learned = sum(v.numel() for k, v in state.items()
                      if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
        assert info(COMMITTED / "runs" / stem)["num_params"] == learned
