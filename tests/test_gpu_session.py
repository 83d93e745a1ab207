"""scripts/gpu-session on a CPU: what a lent GPU session's calls rely on. A sweep started detached is packed
by `collect` while it runs (its run files, and its state in parts); the machine is then lost (the sweep
killed, its directory gone); the parts carried into a fresh checkout's resume folder let `start` continue it
to the end, every epoch once."""
import csv
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

from tests.helpers.harness import ROOT

SCRIPT = ROOT / "scripts" / "gpu-session"


def env(tmp_path, image_folder, iterations):
    return {**os.environ, "OUT": str(tmp_path / "out"), "RUNS": str(tmp_path / "runs"), "LOGS": str(tmp_path / "logs"),
            "RESUME": str(tmp_path / "resume"), "PY": sys.executable, "OMP_NUM_THREADS": "1",
            # not the checkout's committed state (results/reference/paper-cifar10jpeg/resume): a fresh sweep here
            "STATE": str(tmp_path / "state"),
            "SWEEP": f"protocol=smoke depth=8 residual=false,true seed=0 protocol.batch_size=16 "
                     f"protocol.iterations={iterations} protocol.milestones=[{iterations // 2},{iterations * 3 // 4}] "
                     "inspect.deeper=[] speed.threads=1 progress=false",
            "DATA": f"data=imagefolder data.root={image_folder} data.dir={tmp_path / 'data'} data.train_size=0 "
                    "data.test_size=0 device=cpu"}


def session(e, *phases, timeout=300):
    return subprocess.run([str(SCRIPT), *phases], env=e, capture_output=True, text=True, timeout=timeout)


def rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return list(csv.DictReader(f))


def fake_python(tmp_path, pytest_line, steptime_line=None):
    """A python3 whose `-m pytest` (and `-m experiments.steptime`, if given) runs that sh line instead;
    anything else is the real one."""
    fake = tmp_path / "bin"
    fake.mkdir()
    lines = {"pytest": pytest_line, "experiments.steptime": steptime_line}
    cases = "".join(f"[ \"$2\" = {module} ] && {{ {line}; }}\n" for module, line in lines.items() if line)
    (fake / "python3").write_text(f"#!/bin/sh\n{cases}exec {sys.executable} \"$@\"\n")
    (fake / "python3").chmod(0o755)
    return str(fake / "python3")


@pytest.mark.slow
def test_a_sweep_packed_while_running_resumes_from_its_parts_in_a_fresh_checkout(image_folder, tmp_path):
    e = env(tmp_path, image_folder, 600)
    r = session(e, "start")
    assert r.returncode == 0, r.stderr
    runs = tmp_path / "runs"
    end = time.time() + 120
    while time.time() < end and not (len(list(runs.glob("*/checkpoint.pt"))) == 2
                                     and all(len(rows(p.parent)) >= 20 for p in runs.glob("*/checkpoint.pt"))):
        time.sleep(0.2)
    r = session(e, "collect")
    assert r.returncode == 0, r.stderr
    parts = sorted((tmp_path / "out").glob("resume.tar.part-*"))
    assert parts and "not finished" in r.stdout
    with tarfile.open(tmp_path / "out" / "sweep.tar.gz") as t:
        names = t.getnames()
    assert sum(n.endswith("/metrics.csv") for n in names) == 2 and not any(n.endswith("checkpoint.pt") for n in names)
    assert any(n.startswith("logs/") and n.endswith("sweep.log") for n in names)

    os.killpg(int((tmp_path / "logs" / "sweep.pid").read_text()), signal.SIGKILL)  # the machine is given back
    time.sleep(0.5)
    for p in list(runs.rglob("*"))[::-1]:
        p.unlink() if p.is_file() else p.rmdir()
    runs.rmdir()
    (tmp_path / "resume").mkdir()
    for p in parts:
        p.rename(tmp_path / "resume" / p.name)

    e = env(tmp_path, image_folder, 600)
    r = session(e, "start", "collect", "200")
    assert r.returncode == 0, r.stderr
    assert "unpacking the sweep state in" in r.stdout and "the sweep is not running" in r.stdout
    assert not list((tmp_path / "out").glob("resume.tar.part-*"))  # finished: nothing left to resume
    for info_path in runs.glob("*/run.json"):
        info = json.loads(info_path.read_text())
        assert info["status"] == "completed"
        assert len(info["sessions"]) == 2 and info["sessions"][1]["from_iteration"] >= 20 * 4
        got = rows(info_path.parent)
        assert [int(x["epoch"]) for x in got] == list(range(1, 151)) and got[-1]["iteration"] == "600"


def test_gpu_tests_beside_a_sweep_wait_for_its_next_epoch_row_not_for_its_files(tmp_path, image_folder):
    """The sweep's first minute (its step choice, cuDNN's autotuning) times kernels and must have the GPU to itself:
    the tests wait for an epoch row this sweep logs. metrics.csv exists from a run's start (its header; a resumed
    run's earlier rows), so waiting for the file started them at once (on an H200, during the step choice)."""
    e = env(tmp_path, image_folder, 100)
    run = tmp_path / "runs" / "r"
    run.mkdir(parents=True)
    (run / "metrics.csv").write_text("epoch,iteration\n1,390\n")  # a resumed run: its earlier row
    logs = tmp_path / "logs"
    logs.mkdir()
    sweep = subprocess.Popen(["sleep", "60"], start_new_session=True)  # stands for the running sweep
    (logs / "sweep.pid").write_text(f"{sweep.pid}\n")
    started = tmp_path / "pytest.started"
    py = fake_python(tmp_path, f"date +%s.%N > {started}; exit 0")
    try:
        tests = subprocess.Popen([str(SCRIPT), "tests"], env={**e, "PY": py}, stdout=subprocess.PIPE, text=True)
        time.sleep(4)
        assert not started.exists()  # the tests wait
        with open(run / "metrics.csv", "a") as f:
            f.write("2,780\n")
        row_at = time.time()
        out, _ = tests.communicate(timeout=60)
    finally:
        os.killpg(sweep.pid, signal.SIGTERM)
        sweep.wait()
    assert tests.returncode == 0, out
    assert "wait for the sweep's next epoch row (1 now)" in out and float(started.read_text()) >= row_at


def test_an_unknown_phase_or_missing_wheels_is_one_line_and_exit_2(tmp_path, image_folder):
    e = env(tmp_path, image_folder, 8)
    r = session(e)  # no phase: the script's head, every phase and every setting, and exit 2
    assert r.returncode == 2 and "scripts/gpu-session variants" in r.stdout and "STEPTIME" in r.stdout
    assert "PACK_EVERY" in r.stdout and "DEPTHS" in r.stdout
    assert "set -uo pipefail" not in r.stdout
    r = session(e, "sweep")
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "error: unknown phase 'sweep': use run, tests, check, compare, bench, variants, start or collect "
        "[SECONDS | @SECONDS]"]
    r = session(e, "collect", "@x")  # a deadline is whole seconds
    assert r.returncode == 2 and "unknown phase '@x'" in r.stderr
    fake = tmp_path / "bin"
    fake.mkdir()
    no_hydra = "[ \"$1\" = -c ] && [ \"$2\" = 'import hydra' ] && exit 1"  # a python3 that has no Hydra
    (fake / "python3").write_text(f"#!/bin/sh\n{no_hydra}\nexec {sys.executable} \"$@\"\n")
    (fake / "python3").chmod(0o755)
    r = session({**e, "PY": str(fake / "python3"), "WHEELS": str(tmp_path / "no-wheels")}, "check")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "error: Hydra is not installed and there is no wheel in "
        f"{tmp_path / 'no-wheels'}: run 'make gpu-bundle' here and carry .whl"]
    assert not (tmp_path / "logs" / "gpu-tests.log").exists()
    # a later command on the same machine: the wheels were installed by an earlier one and need not be carried
    (tmp_path / "site" / "hydra").mkdir(parents=True)
    r = session({**e, "PY": str(fake / "python3"), "WHEELS": str(tmp_path / "no-wheels"), "SITE": str(tmp_path / "site")},
                "collect")
    assert r.returncode == 0, r.stderr
    assert "no " + str(tmp_path / "runs") + " yet" in r.stdout


def test_start_after_failed_gpu_tests_in_the_same_call_starts_no_sweep(tmp_path, image_folder):
    """`check start collect N` is one call: a sweep must not spend the GPU's minutes on code its tests failed."""
    # GPU tests that fail, a steptime that is instant
    py = fake_python(tmp_path, "exit 1", steptime_line="exit 0")
    r = session({**env(tmp_path, image_folder, 8), "PY": py}, "check", "start", "collect")
    assert r.returncode == 0, r.stderr
    assert "not starting the sweep: the GPU tests failed in this call (exit 1" in r.stdout
    assert not (tmp_path / "logs" / "sweep.pid").exists() and "no " + str(tmp_path / "runs") + " yet" in r.stdout
    assert (tmp_path / "out" / "check.tar.gz").exists()


@pytest.mark.slow
def test_gpu_tests_that_fail_beside_a_running_sweep_stop_it_with_its_state_kept(tmp_path, image_folder):
    """`start tests collect @N`: the tests run beside the sweep (the 15-minute plan has no minute to wait for
    them), once its first epoch is done, and a sweep must not go on spending the GPU's minutes on code they
    failed: they stop it, its cells checkpointed, and what it trained comes back to resume from."""
    runs = tmp_path / "runs"
    # tests that fail (exit 1), and exit 3 instead if they start before the sweep's first epoch: its cuDNN
    # autotuning times kernels, and must not share the GPU with them
    py = fake_python(tmp_path, f"[ $(awk 'FNR > 1' {runs}/*/metrics.csv 2>/dev/null | wc -l) -gt 0 ] || exit 3; exit 1")
    r = session({**env(tmp_path, image_folder, 2000), "PY": py}, "start", "tests", "collect", "@300")
    assert r.returncode == 0, r.stderr
    assert "stopping the sweep: the GPU tests failed (exit 1" in r.stdout and "the sweep is not running" in r.stdout
    infos = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert len(infos) == 2 and {i["status"] for i in infos} == {"interrupted"}
    assert all(len(rows(p.parent)) < 500 for p in runs.glob("*/run.json"))  # stopped, not run to its end
    assert list((tmp_path / "out").glob("resume.tar.part-*")) and (tmp_path / "out" / "check.tar.gz").exists()


@pytest.mark.slow
def test_collect_packs_while_it_waits_and_ends_at_its_deadline_from_the_calls_start(tmp_path, image_folder):
    """The session's last call can be cut off when its device time runs out: sweep.tar.gz must already hold
    the files of a minute ago, each replaced whole. `collect @S` ends S seconds after the call began, however
    long the phases before it took, with the sweep still running."""
    # GPU tests that pass after 8 s (from the sweep's first epoch): a deadline counted from collect's own start
    # would end the call at 28 s or later; the margin below it absorbs a loaded machine's slow final pack
    e = {**env(tmp_path, image_folder, 100000), "PACK_EVERY": "1", "PY": fake_python(tmp_path, "sleep 8; exit 0")}
    call = subprocess.Popen([str(SCRIPT), "start", "tests", "collect", "@20"], env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    began = time.monotonic()
    archive, seen = tmp_path / "out" / "sweep.tar.gz", []
    try:
        while call.poll() is None:
            if archive.exists():
                with tarfile.open(archive) as t:  # whole whenever it is there: written aside, then renamed
                    rows_in = [n for n in t.getnames() if n.endswith("/metrics.csv")]
                    seen.append(sum(len(t.extractfile(n).read().splitlines()) for n in rows_in))
            time.sleep(0.3)
        took = time.monotonic() - began
        out = call.stdout.read()
        assert call.returncode == 0, call.stderr.read()
        assert len(set(seen)) >= 2 and seen == sorted(seen)  # repacked while the sweep trained on
        assert 20 <= took < 27 and "the sweep is still running after" in out
        assert not list((tmp_path / "out").glob(".sweep.tar.gz.tmp"))
        assert list((tmp_path / "out").glob("resume.tar.part-*"))
    finally:
        pid = tmp_path / "logs" / "sweep.pid"
        if pid.exists():
            os.killpg(int(pid.read_text()), signal.SIGKILL)


@pytest.mark.slow
def test_variants_time_the_joint_step_under_each_speed_set(tmp_path, image_folder):
    """Each ';'-separated set of --speed switches gets its own steptime, packed into variants.tar.gz."""
    e = {**env(tmp_path, image_folder, 8), "VARIANTS": "bf16=on;bf16=on,channels_last=off", "CHOOSE": "0",
         "STEPTIME": "--nets 8 --steps 1 --test-images 20 --device cpu"}
    r = session(e, "variants")
    assert r.returncode == 0, r.stderr
    with tarfile.open(tmp_path / "out" / "variants.tar.gz") as t:
        t.extractall(tmp_path / "back", filter="data")
    one = json.loads((tmp_path / "back/variants/bf16=on/steptime.json").read_text())
    two = json.loads((tmp_path / "back/variants/bf16=on_channels_last=off/steptime.json").read_text())
    assert one["speed"]["bf16"] and one["speed"]["channels_last"]  # channels_last: the CPU's auto
    assert two["speed"]["bf16"] and not two["speed"]["channels_last"]
    stacked = json.loads((tmp_path / "back/variants/stacked/steptime.json").read_text())["stacked"]
    assert stacked["speedup"] > 0 and stacked["graphed"] == [False]  # the stacking idea, timed last


def make(*args):
    # as a user runs it, at the top (under `make test` this would be a sub-make)
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    return subprocess.run(["make", *args], cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)


def test_make_reference_publishes_a_collected_sweep_with_its_figures_and_report(tmp_path):
    # what `collect` packs: runs/ (no checkpoints) and logs/
    from tests.helpers.runs import write_grid
    stage = tmp_path / "stage"
    write_grid(stage / "runs")
    (stage / "logs").mkdir()
    (stage / "logs" / "sweep.log").write_text("sweep: 8 cells\n")
    archive = tmp_path / "sweep.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        t.add(stage / "runs", "runs")
        t.add(stage / "logs", "logs")
    r = make("reference", f"FROM={archive}", f"RESULTS={tmp_path / 'results'}", "NAME=test-set")
    assert r.returncode == 0, r.stdout + r.stderr
    out = tmp_path / "results" / "reference" / "test-set"
    assert sorted(p.name for p in (out / "runs").iterdir()) == sorted(p.name for p in (stage / "runs").iterdir())
    assert not (out / "logs").exists()
    for f in ("fig6.png", "degradation.png", "table6.md", "report.md", "index.html"):
        assert (out / f).exists(), f
    assert "Test GPU" in (out / "report.md").read_text()  # the device the runs name


@pytest.mark.slow
def test_make_reference_twice_joins_two_sessions_halves_of_the_sweep(tmp_path):
    """A 15-minute session holds half the paper sweep (depths 20 and 56, then 32 and 44 next session): the
    second `make reference` adds its runs to the first's, and the figures, table and report cover all 8."""
    from tests.helpers.runs import FINALS, write_grid
    archives, halves = [], [(20, 56), (32, 44)]
    for n, depths in enumerate(halves):
        stage = tmp_path / f"stage{n}"
        write_grid(stage / "runs", skip=[(d, r) for d in (20, 32, 44, 56) if d not in depths for r in (False, True)])
        archives.append(tmp_path / f"sweep{n}.tar.gz")
        with tarfile.open(archives[-1], "w:gz") as t:
            t.add(stage / "runs", "runs")
    out = tmp_path / "results" / "reference" / "paper-test"

    def table_nets():
        lines = (out / "table6.md").read_text().splitlines()
        return {line.split("|")[1].strip() for line in lines if line.startswith("| plain-") or line.startswith("| ResNet-")}

    for n, archive in enumerate(archives):
        r = make("reference", f"FROM={archive}", f"RESULTS={tmp_path / 'results'}", "NAME=paper-test")
        assert r.returncode == 0, r.stdout + r.stderr
        depths = [d for half in halves[:n + 1] for d in half]
        assert table_nets() == {f"{f}-{d}" for d in depths for f in ("plain", "ResNet")}
    assert len(list((out / "runs").glob("*/metrics.csv"))) == sum(len(seeds) for seeds in FINALS.values())


@pytest.mark.parametrize("what", ["missing", "not-a-sweep"])
def test_make_reference_refuses_what_is_not_a_collected_sweep_in_one_line(tmp_path, what):
    archive = tmp_path / "sweep.tar.gz"
    if what == "not-a-sweep":
        (tmp_path / "x.txt").write_text("x")
        with tarfile.open(archive, "w:gz") as t:
            t.add(tmp_path / "x.txt", "x.txt")
    r = make("reference", f"FROM={archive}", f"RESULTS={tmp_path / 'results'}")
    assert r.returncode != 0
    errors = [line for line in (r.stdout + r.stderr).splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "scripts/gpu-session collect" in errors[0], r.stdout + r.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.slow
def test_run_stops_a_sweep_whose_gpu_tests_fail_beside_it_and_brings_back_its_state(tmp_path, image_folder):
    """`run @S`, the one call of a machine: the GPU tests start once the sweep's first epoch is written and, failing,
    stop it; the call then ends at once, long before its deadline, with the runs checkpointed and packed."""
    runs = tmp_path / "runs"
    py = fake_python(tmp_path, f"[ $(awk 'FNR > 1' {runs}/*/metrics.csv 2>/dev/null | wc -l) -gt 0 ] || exit 3; exit 1")
    began = time.monotonic()
    r = session({**env(tmp_path, image_folder, 2000), "PY": py, "STOP_BEFORE": "10"}, "run", "@280")
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - began < 200 and "the sweep is not running" in r.stdout
    assert "stopping the sweep: the GPU tests failed (exit 1" in (tmp_path / "logs" / "tests-phase.log").read_text()
    infos = [json.loads(p.read_text()) for p in runs.glob("*/run.json")]
    assert len(infos) == 2 and {i["status"] for i in infos} == {"interrupted"}
    assert list((tmp_path / "out").glob("resume.tar.part-*")) and (tmp_path / "out" / "check.tar.gz").exists()
    with tarfile.open(tmp_path / "out" / "sweep.tar.gz") as t:
        manifest = t.extractfile("logs/resume.sha256").read().decode()
    assert sorted(line.split()[1] for line in manifest.splitlines()) == sorted(
        p.name for p in (tmp_path / "out").glob("resume.tar.part-*"))
