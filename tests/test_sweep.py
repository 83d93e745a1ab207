"""Sweeps: stable per-cell directories, resume after interruption, failures isolated, the concurrent
launcher equal to running the cells one by one, and the CPU guard."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest

from experiments.harness.rundir import RunDir
from tests.helpers.harness import ROOT, cli, tables, tiny_overrides

GRID = ["-m", "depth=8,14", "residual=false,true", "seed=0"]


def sweep_args(tiny, out, *extra):
    return GRID + tiny + [f"hydra.sweep.dir={out}", *extra]


@pytest.fixture(scope="module")
def sequential(image_folder, tmp_path_factory):
    """The grid run the ordinary way: one cell after another."""
    base = tmp_path_factory.mktemp("seq")
    r = cli(sweep_args(tiny_overrides(image_folder, base / "data"), base / "runs"), timeout=300)
    assert r.returncode == 0, r.stderr
    return base / "runs", r


def test_each_cell_gets_its_stable_directory_and_the_sweep_ends_with_a_summary(sequential):
    out, r = sequential
    names = sorted(p.name for p in out.iterdir() if p.is_dir())
    assert [n.split("-data=")[0] for n in names] == [
        "depth=14-residual=false-seed=0", "depth=14-residual=true-seed=0",
        "depth=8-residual=false-seed=0", "depth=8-residual=true-seed=0"]
    assert all(json.loads((out / n / "run.json").read_text())["status"] == "completed" for n in names)
    assert "sweep: 4 cells, 4 completed." in r.stdout
    # where the sweep stands as a whole, as each cell ends
    assert "sweep: 1/4 cells done, 0 running, 3 left" in r.stdout
    assert "sweep: 4/4 cells done, 0 running, 0 left; 100% of the work; done" in r.stdout


@pytest.mark.slow
def test_the_concurrent_launcher_writes_the_same_files_and_numbers_as_cells_run_one_by_one(sequential, tiny, tmp_path):
    seq_out, _ = sequential
    r = cli(sweep_args(tiny, tmp_path / "runs", "hydra/launcher=concurrent"), timeout=300)
    assert r.returncode == 0, r.stderr
    assert "Training 4 cells together" in r.stdout
    assert "sweep: 1/4 cells done, 3 running, 0 left" in r.stdout  # all four train together
    assert "sweep: 4/4 cells done, 0 running, 0 left; 100% of the work; done" in r.stdout
    conc = tables(tmp_path / "runs")
    assert conc == tables(seq_out)  # same names, columns and values (CPU, fixed seeds)
    for name in conc:
        a = json.loads((tmp_path / "runs" / name / "run.json").read_text())
        b = json.loads((seq_out / name / "run.json").read_text())
        assert set(a) == set(b) and a["num_params"] == b["num_params"] and a["status"] == "completed"
        assert (tmp_path / "runs" / name / "checkpoint.pt").exists()


@pytest.mark.slow
def test_rerun_after_an_interruption_finishes_without_redoing_finished_cells(tiny, tmp_path):
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    args = sweep_args(tiny, out, "protocol.iterations=40", "protocol.milestones=[20,30]")
    p = subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=ROOT, env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:  # wait until one cell is done and another started
        infos = [json.loads(f.read_text()) for f in out.glob("*/run.json")]
        if any(i["status"] == "completed" for i in infos) and len(infos) >= 2:
            break
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    p.communicate(timeout=60)
    assert p.returncode == 128 + signal.SIGTERM
    done = {f.parent.name: f.stat().st_mtime_ns for f in out.glob("*/metrics.csv")
            if json.loads((f.parent / "run.json").read_text())["status"] == "completed"}
    assert done and len(done) < 4

    r = cli(args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("nothing to do") == len(done)
    assert {f.parent.name: f.stat().st_mtime_ns for f in out.glob("*/metrics.csv") if f.parent.name in done} == done
    assert all(json.loads(f.read_text())["status"] == "completed" for f in out.glob("*/run.json"))
    assert len(list(out.glob("*/run.json"))) == 4


@pytest.mark.slow
def test_a_failing_cell_does_not_stop_the_others_and_is_listed(sequential, tiny, tmp_path):
    out = tmp_path / "runs"
    seq_names = sorted(p.name for p in sequential[0].iterdir() if p.is_dir())
    blocked = RunDir(out / seq_names[0])
    blocked.lock()  # another process "owns" this cell
    try:
        r = cli(sweep_args(tiny, out), timeout=300)
    finally:
        blocked.unlock()
    assert r.returncode == 1
    assert "sweep: 4 cells, 3 completed" in r.stdout and "failed" in r.stdout and seq_names[0] in r.stdout
    assert sum(json.loads(f.read_text())["status"] == "completed" for f in out.glob("*/run.json")) == 3


@pytest.mark.slow
def test_a_paper_sweep_on_a_cpu_states_its_estimate_instead_of_starting(tmp_path):
    r = cli(["-m", "protocol=paper", "device=cpu"], cwd=tmp_path)
    assert r.returncode == 2
    assert "would take about" in r.stderr and "PROTOCOL=quick" in r.stderr and "FORCE=1" in r.stderr
    assert not (tmp_path / "results").exists()


def _duration(message: str) -> str:
    return re.search(r"would take about (\S+) on this CPU", message).group(1)


@pytest.mark.slow
def test_a_single_paper_run_on_a_cpu_is_refused_with_the_sweeps_estimate_and_force_starts_it(tmp_path):
    """Issue 34: `python -m experiments.run depth=56 residual=false` started a multi-day CPU job in silence."""
    data = [f"data.dir={tmp_path / 'data'}", "data.download=false"]
    r = cli(["depth=56", "residual=false", "device=cpu", *data], cwd=tmp_path)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert r.stderr.startswith("error: this run would take about") and "add force=true" in r.stderr
    assert "python -m experiments.run depth=56 residual=false device=cpu" in r.stderr and "protocol=quick" in r.stderr
    assert not (tmp_path / "results").exists()
    from experiments.harness import precheck
    one_cell = precheck.check(["-m", "depth=56", "residual=false", "device=cpu", *data])
    assert _duration(r.stderr) == _duration(one_cell)  # one estimate for both
    forced = cli(["depth=56", "residual=false", "device=cpu", "force=true", *data], cwd=tmp_path)
    assert forced.returncode == 2 and "CIFAR-10 not found" in forced.stderr  # past the guard, to the data check


@pytest.mark.parametrize("present", [True, False])
def test_the_cpu_guards_way_out_is_the_cpu_sized_command_and_names_the_local_copy_without_cifar10(
        present, tmp_path, monkeypatch):
    from experiments.data import datasets as data
    from experiments.harness import precheck
    monkeypatch.setattr(data, "cifar10_present", lambda d: present)
    copy = tmp_path / "cifar10-jpeg.tar.gz"
    copy.write_bytes(b"")
    monkeypatch.setattr(precheck, "LOCAL_COPIES", ("/nowhere/cifar10.tar.gz", str(copy)))
    sweep = precheck.check(["-m", "hydra.sweep.dir=results/paper/runs", "protocol=paper", "depth=20,32,44,56",
                            "residual=false,true", "seed=0", "hydra/launcher=basic", "device=cpu"])
    single = precheck.check(["depth=56", "residual=false", "protocol=paper", "device=cpu"])
    flag = f"data=imagefolder data.root={copy}"
    if present:
        assert "run `make sweep PROTOCOL=quick DEPTHS=20,56 OVERRIDES=device=cpu` for the CPU-sized" in sweep
        assert "run `python -m experiments.run depth=56 residual=false device=cpu protocol=quick` for the" in single
    else:
        assert f"run `make sweep PROTOCOL=quick DEPTHS=20,56 OVERRIDES='device=cpu {flag}'` for the CPU-sized" in sweep
        assert f"run `python -m experiments.run depth=56 residual=false device=cpu {flag} protocol=quick` for" in single
    assert "or add FORCE=1 (force=true) to start it anyway" in sweep and "or add force=true to start it" in single
    # the way out passes the guard: the CPU-sized grid is under its limit
    way_out = precheck.check(["-m", "protocol=quick", "depth=20,56", "residual=false,true", "device=cpu",
                              f"data.dir={tmp_path}", "data.download=false"])
    assert "would take about" not in (way_out or "")  # refused, if at all, only for its data
    monkeypatch.setattr(precheck, "LOCAL_COPIES", ())  # no copy on this machine: a PATH to fill in
    if not present:
        assert "data.root=PATH" in precheck.check(["depth=56", "device=cpu"])


def test_the_way_out_keeps_the_users_data_and_gives_minimodel_its_own_protocol(tmp_path, image_folder):
    from experiments.harness import precheck
    folder = ["data=imagefolder", f"data.root={image_folder}", f"data.dir={tmp_path}"]
    sweep = precheck.check(["-m", "arch=minimodel", "arch.units_per_stage=1,2,3,4", "depth=20", "residual=false,true",
                            "protocol=keras_tutorial", "device=cpu", *folder])
    assert f"`make sweep PROTOCOL=keras_quick ARCH=minimodel OVERRIDES='device=cpu {' '.join(folder)}'`" in sweep
    way_out = ["-m", "arch=minimodel", "arch.units_per_stage=1,2,3,4", "depth=20", "residual=false,true",
               "protocol=keras_quick", "device=cpu", *folder]
    assert precheck.check(way_out) is None  # the CPU-sized grid passes the guard


@pytest.mark.slow
def test_make_sweep_runs_the_grid_and_then_the_analysis(image_folder, tmp_path):
    overrides = " ".join(o for o in tiny_overrides(image_folder, tmp_path / "data") if not o.startswith("protocol="))
    r = subprocess.run(["make", "sweep", "PROTOCOL=smoke", "DEPTHS=8,14", f"RESULTS={tmp_path}",
                        f"OVERRIDES={overrides}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    for f in ("fig1_plain.png", "fig6.png", "degradation.png", "table6.md", "table6.csv", "report.md",
              "fig7.png", "gradients.png"):
        assert (tmp_path / "smoke" / f).exists(), f


def test_make_hands_its_variables_to_the_shell_as_text_and_never_runs_them(tmp_path):
    """A backtick or `$(...)` in OVERRIDES, DEPTHS or RESULTS once ran in the recipe's shell (and `$(shell ...)` in make
    itself). Here python is `echo`, so the command lines are printed: each value must arrive as written."""
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    planted = {k: tmp_path / k for k in "ABCDE"}
    values = {"OVERRIDES": f"a=`touch {planted['A']}` b=$(touch {planted['B']}) c=$(shell touch {planted['C']}) d='q",
              "DEPTHS": f"20`touch {planted['D']}`", "RESULTS": f"r$(touch {planted['E']})"}
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    r = subprocess.run(["make", "-s", "sweep", "PY=echo", f"VENV={venv}", "LAUNCHER=basic",
                        *[f"{k}={v}" for k, v in values.items()]], cwd=ROOT, capture_output=True, text=True,
                       timeout=120, env=env)
    assert r.returncode == 0, r.stderr
    assert not [k for k, p in planted.items() if p.exists()], r.stdout
    sweep = r.stdout.splitlines()[0]
    assert values["OVERRIDES"] in sweep and f"depth={values['DEPTHS']}" in sweep
    assert f"hydra.sweep.dir={values['RESULTS']}/paper/runs" in sweep


def test_make_help_never_runs_python_and_a_sweep_still_asks_torch_for_its_launcher(tmp_path):
    """Issue 34: `make help` took 7 s because the launcher's default (`import torch`) was expanded at parse time. Here
    python is a script that leaves a mark when it runs: help must not run it, a sweep's dry run (the recipe expanded)
    must, once, for the launcher."""
    mark = tmp_path / "ran"
    fake = tmp_path / "python"
    fake.write_text(f"#!/bin/sh\necho \"$@\" >> {mark}\necho basic\n")
    fake.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    r = subprocess.run(["make", "help", f"PY={fake}"], cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    assert r.returncode == 0 and "make sweep" in r.stdout and "LAUNCHER=auto" in r.stdout, r.stderr
    assert not mark.exists()
    venv = tmp_path / "venv"
    venv.mkdir()
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install
    r = subprocess.run(["make", "-n", "sweep", f"PY={fake}", f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=60, env=env)
    assert r.returncode == 0 and "hydra/launcher=basic" in r.stdout, r.stdout + r.stderr
    assert "import torch" in mark.read_text()


@pytest.mark.slow
def test_make_sweep_that_does_not_start_prints_one_error_and_no_second(tmp_path):
    """The paper sweep on a CPU is refused by the CPU guard: its one line, exit 2, and no "no runs found" from
    the plots that used to follow."""
    # under `make test` the inner make is a sub-make ("make[1]: ***"); run it as a user would, at the top
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    env["CUDA_VISIBLE_DEVICES"] = ""
    r = subprocess.run(["make", "sweep", f"RESULTS={tmp_path}"], cwd=ROOT, capture_output=True, text=True,
                       timeout=300, env=env)
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if "error" in line.lower()]
    # ours, and make's own trailer naming the failed target (GNU make always adds it)
    assert len(errors) == 2 and errors[0].startswith("error: this sweep would take about"), errors
    assert re.match(r"make(\[\d+\])?: \*\*\*", errors[1]) and "sweep" in errors[1], errors
    assert "no runs found" not in r.stdout + r.stderr and not (tmp_path / "paper").exists()


def test_sweep_progress_counts_cells_and_projects_the_rest_from_the_rate(monkeypatch):
    from experiments.harness import progress
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    sweep = progress.SweepProgress()
    sweep.start([100.0, 100.0, 300.0])  # three cells; the third costs three times as much
    sweep.opened("done-before", 100.0, 10, 10, finished=True)  # finished by an earlier sweep: no work here
    sweep.opened("a", 100.0, 10, 0)
    assert sweep.line() == "sweep: 1/3 cells done, 1 running, 1 left; 20% of the work; ETA after the first epoch"
    clock[0] = 50.0
    sweep.advanced("a", 5)  # half of a's 100 in 50 s: 1 s per unit of work
    assert sweep.line() == "sweep: 1/3 cells done, 1 running, 1 left; 30% of the work; ETA 5m50s"  # 350 units left
    clock[0] = 100.0
    sweep.advanced("a", 10)
    sweep.closed("a")
    assert sweep.line() == "sweep: 2/3 cells done, 0 running, 1 left; 40% of the work; ETA 5m00s"


def test_a_sweep_whose_cells_all_diverged_says_all_of_its_work_is_done(monkeypatch):
    """Issue 31: after a sweep whose every cell diverged, its last line said `0% of the work`. A cell that ends
    (completed, diverged or failed) leaves no work, wherever its iterations stopped; one interrupted leaves the rest."""
    from experiments.harness import progress
    clock = [0.0]
    monkeypatch.setattr(progress.time, "perf_counter", lambda: clock[0])
    sweep = progress.SweepProgress()
    sweep.start([100.0, 300.0])
    for key, cost in (("a", 100.0), ("b", 300.0)):
        sweep.opened(key, cost, 10, 0)
    clock[0] = 10.0
    sweep.advanced("a", 1)
    sweep.closed("a")  # diverged in its first epoch
    sweep.advanced("b", 1)
    sweep.closed("b", ended=False)  # interrupted: resumes later
    # 270 of 400 left (nine tenths of b), at the rate so far: 40 in 10 s
    assert sweep.line() == "sweep: 2/2 cells done, 0 running, 0 left; 32% of the work; ETA 1m08s"
    sweep.closed("b")
    assert sweep.line() == "sweep: 2/2 cells done, 0 running, 0 left; 100% of the work; done"
