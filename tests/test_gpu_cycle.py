"""Issue 28's whole cycle on a CPU, as it happens across GPU machines that each vanish with everything on them: a
sweep started by `scripts/gpu-session run` is cut off by its deadline; in a fresh checkout `make reference FROM=...
RESUME=...` publishes the partial runs and stores the sweep's state in the set; another fresh checkout, holding that
set as a clone of the repository would, continues the sweep with `run` to its end; `make reference` then gives runs
whose metrics.csv equal an uninterrupted sweep's, every epoch once, and no state is left."""
import csv
import json
import os
import shutil
import subprocess
import sys
import time

import pytest

from tests.helpers.harness import ROOT, _env

GRID = ("protocol=smoke depth=8 residual=false,true seed=0 protocol.batch_size=16 protocol.iterations={n} "
        "protocol.milestones=[{a},{b}] inspect.deeper=[] speed.threads=1 progress=false")


def checkout(tmp_path, name):
    """This working tree as a fresh clone of it has it (tracked and new files; nothing git ignores: no sweep, no
    .carry), modification times kept, with this checkout's .venv beside it for make."""
    files = subprocess.run(["git", "ls-files", "-z", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    dest = tmp_path / name
    for f in filter(None, files):
        if (ROOT / f).is_file() and not f.startswith("results/"):
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, dest / f)
    (dest / ".venv").symlink_to(ROOT / ".venv")
    return dest


def session(where, out, *args, **env):
    e = {**_env(), "OUT": str(out), "PY": sys.executable, "PACK_EVERY": "2", "NO_TESTS": "1", **env}
    e.pop("PYTHONPATH")  # the checkout's own code: the script puts its folder first
    return subprocess.run([str(where / "scripts" / "gpu-session"), *args], cwd=where, env=e, capture_output=True,
                          text=True, timeout=600)


def make(where, *args):
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "PYTHONPATH")}
    return subprocess.run(["make", *args], cwd=where, capture_output=True, text=True, timeout=300, env=env)


def numbers(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in csv.DictReader(f)]


@pytest.mark.slow
def test_a_sweep_cut_off_by_its_deadline_is_published_then_continued_from_the_committed_state(image_folder, tmp_path):
    n = 800  # 200 epochs of 4 steps: about 25 s of training for the two nets, on one core
    grid = GRID.format(n=n, a=n // 2, b=n * 3 // 4)
    data = (f"data=imagefolder data.root={image_folder} data.dir={tmp_path / 'data'} data.train_size=0 "
            "data.test_size=0 device=cpu")
    settings = {"SWEEP": grid, "DATA": data}

    # machine 1: cut off by its deadline, 14 s after the call began, stopped STOP_BEFORE=4 s before it
    one = checkout(tmp_path, "one")
    began = time.monotonic()
    r = session(one, tmp_path / "out1", "run", "@14", STOP_BEFORE="4", **settings)
    assert r.returncode == 0, r.stdout + r.stderr
    assert time.monotonic() - began < 14 and "stopping the sweep 4s before this call's deadline" in r.stdout
    parts = sorted((tmp_path / "out1").glob("resume.tar.part-*"))
    assert parts and (tmp_path / "out1" / "sweep.tar.gz").exists()
    shutil.rmtree(one)  # the machine is given back

    # home: a fresh clone publishes the partial runs and stores the state in the set
    home = checkout(tmp_path, "home")
    r = make(home, "reference", f"FROM={tmp_path / 'out1' / 'sweep.tar.gz'}", f"RESUME={tmp_path / 'out1'}",
             "NAME=cycle")
    assert r.returncode == 0, r.stdout + r.stderr
    ref = home / "results" / "reference" / "cycle"
    runs = sorted(p for p in (ref / "runs").iterdir() if p.is_dir())
    assert len(runs) == 2 and "(0 finished, 2 unfinished)" in r.stdout
    assert {json.loads((p / "run.json").read_text())["status"] for p in runs} == {"interrupted"}
    assert all(0 < len(numbers(p)) < n // 4 for p in runs)
    state = json.loads((ref / "resume" / "state.json").read_text())
    assert sorted(state["parts"]) == [p.name for p in parts] and sorted(state["runs"]) == [p.name for p in runs]
    assert (ref / "report.md").exists() and "unfinished" in (ref / "report.md").read_text()

    # machine 2: another fresh clone, holding the published set as the repository has it once committed
    two = checkout(tmp_path, "two")
    shutil.copytree(ref, two / "results" / "reference" / "cycle")
    r = session(two, tmp_path / "out2", "run", "@400", REFERENCE="cycle", **settings)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "unpacking the sweep state in results/reference/cycle/resume" in r.stdout
    assert "the sweep is not running" in r.stdout and not list((tmp_path / "out2").glob("resume.tar.part-*"))

    # home again: the second archive joins the first; every run complete, the state gone
    r = make(home, "reference", f"FROM={tmp_path / 'out2' / 'sweep.tar.gz'}", "NAME=cycle")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "(2 finished, 0 unfinished)" in r.stdout and not (ref / "resume").exists()

    # an uninterrupted sweep of the same grid
    whole = tmp_path / "whole"
    r = subprocess.run([sys.executable, "-m", "experiments.run", "-m", *grid.split(), *data.split(),
                        f"hydra.sweep.dir={whole}", "hydra/launcher=concurrent"], cwd=ROOT, env=_env(),
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    for run in runs:
        got = numbers(run)
        assert [int(row["epoch"]) for row in got] == list(range(1, n // 4 + 1))  # every epoch once
        assert got == numbers(whole / run.name)  # exactly: one CPU, the same seed
        info = json.loads((run / "run.json").read_text())
        assert info["status"] == "completed" and len(info["sessions"]) == 2
