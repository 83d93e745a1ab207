"""A run's identity is its recipe and its data: every key that changes the numbers is in its directory's name and its
resume check, the data are known by their content whatever path names them, and the analysis never averages runs
whose recipes differ."""
from __future__ import annotations

import csv
import json
import shutil
import tarfile
from pathlib import Path

import pytest

from analysis import report
from experiments.data.datasets import fingerprint
from experiments.errors import UserError
from experiments.harness import precheck
from experiments.harness.compose import compose, name_of
from experiments.harness.rundir import run_name
from tests.helpers.harness import ROOT, cli, make_image_folder, numbers, run_inprocess, sigterm_as_epoch_ends


def named(*overrides) -> str:
    return name_of(compose(list(overrides)), list(overrides))


def archive(folder: Path, to: Path) -> Path:
    with tarfile.open(to, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return to


def run_dirs(root: Path) -> list:
    return sorted(p.name for p in root.iterdir() if p.is_dir())


# ---- the name spells every setting that changes the numbers ------------------------------------------------------

def test_the_name_spells_each_changed_protocol_key_once_by_its_resolved_value():
    assert named() == "depth=20-residual=true-seed=0"
    assert named("protocol.augment=none", "protocol.lr=0.01") == "depth=20-residual=true-seed=0-augment=none-lr=0.01"
    assert named("protocol.lr=1e-2", "protocol.augment=none") == named("protocol.augment=none", "protocol.lr=0.01")
    assert named("protocol.lr=1e6", "protocol.lr=0.01") == named("protocol.lr=0.01")  # a key set twice: its last value
    assert named("protocol.milestones=[500,750]", "shortcut=B").endswith("-milestones=500,750-shortcut=B")
    # what the chosen groups give anyway is no change: the same directory as without it
    assert named("protocol=quick", "protocol.lr=0.1", "data.train_size=6400", "shortcut=A", "data=cifar10") == named(
        "protocol=quick")
    assert named("protocol=quick", "protocol.lr=0.01") == "depth=20-residual=true-seed=0-lr=0.01"
    assert named("depth=56", "residual=false", "speed.bf16=on", "probes.enabled=false", "inspect.deeper=[]",
                 "device=cpu") == "depth=56-residual=false-seed=0"  # how, not what, is computed


def test_a_family_knob_that_is_not_its_size_is_spelled_too():
    # every arch.* key used to be left out with `arch`; MiniModel's size key is in its head, once
    assert named("arch=minimodel", "arch.units_per_stage=2") == "minimodel-units=2-residual=true-seed=0"
    name = run_name("tinynet-blocks=2", True, 0, ["arch=tinynet", "arch.blocks=2", "arch.width=16"], ("blocks",),
                    value=lambda k: {"arch.width": 16}.get(k))
    assert name == "tinynet-blocks=2-residual=true-seed=0-arch.width=16"


def test_a_name_that_would_not_be_one_plain_path_component_is_refused():
    with pytest.raises(ValueError, match="not one plain path component"):
        run_name("depth=../../../tmp/x", True, 0, [])
    assert "results/<protocol.name>/" in precheck.check(["protocol.name=../../../tmp/PWNED"])


def test_two_runs_that_differ_in_the_lr_land_in_two_directories_both_reported_never_averaged(tiny, tmp_path):
    """The sweep over protocol.lr once sent both cells to one directory, and the report averaged runs of other lrs
    as one net; now each cell has its own, and the report names them apart with the key that differs."""
    runs = tmp_path / "runs"
    r = cli(["-m", "depth=8", "residual=false", "seed=0", "protocol.lr=0.05,0.1", *tiny, f"hydra.sweep.dir={runs}"])
    assert r.returncode == 0, r.stderr
    names = run_dirs(runs)
    assert len(names) == 2 and [n for n in names if "-lr=0.05" in n] and [n for n in names if "-lr=" not in n], names
    assert {json.loads((runs / n / "run.json").read_text())["config"]["protocol"]["lr"] for n in names} == {0.05, 0.1}

    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    with open(tmp_path / "out" / "table6.csv", encoding="utf-8") as f:
        rows = {r["net"]: r for r in csv.DictReader(f)}
    # the run that changes nothing of the protocol keeps the net's name
    assert set(rows) == {"plain-8", "plain-8 (lr=0.05)"} and {r["n"] for r in rows.values()} == {"1"}
    md = (tmp_path / "out" / "report.md").read_text()
    assert "differs in protocol.lr: lr=0.05, not lr=0.1" in md and "never averaged" in md


@pytest.mark.slow
def test_the_default_run_runs_beside_a_changed_recipe(tiny, tmp_path):
    """`protocol.augment=none protocol.lr=0.01` once trained into the default's directory, which then refused the
    default run."""
    changed = cli(tiny + ["depth=8", "protocol.augment=none", "protocol.lr=0.01"], cwd=tmp_path)
    default = cli(tiny + ["depth=8"], cwd=tmp_path)
    assert changed.returncode == 0 and default.returncode == 0, changed.stderr + default.stderr
    names = run_dirs(tmp_path / "results" / "smoke" / "runs")
    assert len(names) == 2 and any("-augment=none-" in n and "-lr=0.01-" in n for n in names), names


# ---- the data by their content ------------------------------------------------------------------------------------

@pytest.fixture
def tarball(image_folder, tmp_path) -> Path:
    (tmp_path / "shared").mkdir()
    return archive(image_folder, tmp_path / "shared" / "tiny.tar.gz")


@pytest.mark.slow
def test_one_archive_named_by_three_paths_is_one_run(tarball, tiny, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "link.tar.gz").symlink_to(tarball)
    paths = [str(tarball), "shared/tiny.tar.gz", "elsewhere/../shared/tiny.tar.gz", "elsewhere/link.tar.gz"]
    keep = [o for o in tiny if not o.startswith("data.root=")] + ["depth=8"]
    (name,) = {named(*keep, f"data.root={p}") for p in paths}
    assert f"-root={fingerprint(tarball)[:8]}" in name  # the archive's sha256, not a hash of a path

    first = cli(keep + [f"data.root={paths[0]}"], cwd=tmp_path)
    again = cli(keep + [f"data.root={paths[2]}"], cwd=tmp_path)  # a clone that spells it otherwise
    assert first.returncode == 0 and again.returncode == 0, first.stderr + again.stderr
    assert "nothing to do" in again.stdout and len(run_dirs(tmp_path / "results" / "smoke" / "runs")) == 1
    info = json.loads((tmp_path / "results" / "smoke" / "runs" / name / "run.json").read_text())
    assert info["data_fingerprint"] == fingerprint(tarball) and info["num_classes"] == 4


def test_an_archive_replaced_between_a_run_and_its_resume_is_one_line(tarball, tiny, tmp_path, monkeypatch):
    keep = [o for o in tiny if not o.startswith("data.root=")] + [f"data.root={tarball}", "protocol.iterations=16",
                                                                     "protocol.milestones=[8,12]"]
    out = tmp_path / "run"
    sigterm_as_epoch_ends(monkeypatch, 2)
    with pytest.raises(SystemExit):
        run_inprocess(keep, out)
    monkeypatch.undo()
    other = make_image_folder(tmp_path / "other" / "tiny", seed=1)  # same layout and classes, other images
    archive(other, tarball)
    r = cli(keep + [f"hydra.run.dir={out}"])
    line = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(line) == 1, r.stderr
    assert f"was trained on other data than data.root={tarball} holds now" in line[0]
    assert "put the run's data back" in line[0]
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"  # untouched


def test_a_folders_fingerprint_is_its_files_content_not_their_times(image_folder, tmp_path):
    import os

    folder = shutil.copytree(image_folder, tmp_path / "copy")
    before = fingerprint(folder)
    assert before == fingerprint(image_folder)  # the same files elsewhere are the same data
    some = next(folder.rglob("*.png"))
    os.utime(some, (1, 1))  # touched, not changed
    assert fingerprint(folder) == before
    os.mkfifo(folder / "train" / "apple" / "pipe.png")  # never read (it would wait forever)
    assert fingerprint(folder) == before
    some.write_bytes(some.read_bytes() + b"\0")
    assert fingerprint(folder) != before


# ---- the committed runs, named by the old rule, renamed so that a clone finds them ------------------------------

QUICK = ROOT / "results" / "quick" / "runs"
JPEG = (ROOT / ".." / "shared" / "datasets" / "cifar10-jpeg" / "cifar10-jpeg.tar.gz").resolve()


def as_named_before(runs: Path) -> None:
    """Put runs renamed by experiments.rename back as the old rule had them (their `renamed_from`), their data.root
    the archive by its absolute path (the copy is elsewhere than the checkout their relative path starts from)."""
    infos = {d: json.loads((d / "run.json").read_text()) for d in runs.iterdir() if (d / "run.json").exists()}
    old = {d.name: info["renamed_from"] for d, info in infos.items()}
    for d, info in infos.items():
        for key in ("renamed_from", "data_fingerprint"):
            info.pop(key)
        info["config"]["data"]["root"] = str(JPEG)
        source = (info["config"].get("init") or {}).get("from")
        if source:
            info["config"]["init"]["from"] = str(Path(source).with_name(old[Path(source).name]))
            info["init"].update(source=info["config"]["init"]["from"], run=old[Path(source).name])
        (d / "run.json").write_text(json.dumps(info))
        d.rename(d.with_name(old[d.name]))


@pytest.mark.skipif(not JPEG.exists(), reason="the JPEG copy of CIFAR-10 is not beside this checkout")
def test_the_committed_runs_renamed_are_found_finished_by_the_documented_sweep(tmp_path, monkeypatch):
    from experiments import rename
    runs = tmp_path / "results" / "quick" / "runs"
    shutil.copytree(QUICK, runs)
    committed = run_dirs(runs)
    as_named_before(runs)
    assert all("-root=95ac4241" in n for n in run_dirs(runs))
    monkeypatch.chdir(tmp_path)  # where init.from's relative paths lead, as in the checkout
    assert rename.main([str(runs)]) == 0
    assert run_dirs(runs) == committed
    before = {n: numbers(runs / n) for n in committed}
    # the README's command, the data spelled by another path than the runs were made with
    r = cli(["-m", "protocol=quick", "depth=20,56", "residual=false,true", "seed=0", f"hydra.sweep.dir={runs}",
             "hydra/launcher=basic", "data=imagefolder", f"data.root={JPEG}"], cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("nothing to do") == 4 and "sweep: 4 cells, 4 completed." in r.stdout
    assert run_dirs(runs) == committed and {n: numbers(runs / n) for n in committed} == before


def test_renaming_refuses_a_run_whose_data_are_gone(tiny, tmp_path):
    from experiments import rename
    runs = tmp_path / "runs"
    assert run_inprocess(tiny + ["depth=8"], runs / "depth=8-residual=true-seed=0-data=imagefolder-root=0123abcd") == (
        "completed")
    info = json.loads((runs / run_dirs(runs)[0] / "run.json").read_text())
    info.pop("data_fingerprint")
    info["config"]["data"]["root"] = str(tmp_path / "gone")
    (runs / run_dirs(runs)[0] / "run.json").write_text(json.dumps(info))
    assert rename.main([str(runs)]) == 2
    assert run_dirs(runs) == ["depth=8-residual=true-seed=0-data=imagefolder-root=0123abcd"]  # nothing renamed


# ---- resumes and sweeps ------------------------------------------------------------------------------------------------

def test_a_resume_with_another_recipe_is_refused_with_the_keys_named(tiny, tmp_path):
    assert run_inprocess(tiny + ["depth=8"], tmp_path) == "completed"
    with pytest.raises(UserError, match=r"differs in: protocol.augment, protocol.lr"):
        run_inprocess(tiny + ["depth=8", "protocol.lr=0.01", "protocol.augment=none"], tmp_path)


def test_a_sweep_whose_cells_would_share_a_directory_is_refused_before_it_starts(monkeypatch, tiny):
    """The safety net under the naming rule: were a key ever left out of the name again, the sweep would not start."""
    from experiments.harness import rundir
    monkeypatch.setattr("experiments.harness.compose.run_name",
                        lambda head, residual, seed, *_: rundir.run_name(head, residual, seed, []))
    problem = precheck.check(["-m", "depth=8", "protocol.lr=0.05,0.1", *tiny])
    assert problem.startswith("two cells would share the run directory") and "differ in protocol.lr" in problem
