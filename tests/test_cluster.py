"""The cluster launchers on CPU (experiments/launchers/grouped.py, conf/hydra/launcher/, docs/cluster.md): a sweep through
submitit's local executor writes what a basic sweep writes; a group job stopped by USR2 is requeued by
submitit and resumes, one stopped by SIGTERM resumes when the sweep is rerun; one group per GPU; the SLURM
presets compose to what the docs say. No SLURM is reachable here: the SLURM path is tested up to its
composed parameters, and its signal handling through submitit's local executor, which runs the same
job code and the same requeue logic (with exit code 144 where SLURM's runs `scontrol requeue`)."""
import dataclasses
import json
import os
import pickle
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from tests.helpers.harness import ROOT, cli, compose, tables, tiny_overrides

pytest.importorskip("hydra_plugins.hydra_submitit_launcher", reason="the cluster extra: pip install -e '.[cluster]'")

from experiments.launchers.grouped import GroupReport, group_cells, group_overrides  # noqa: E402

GRID = ["-m", "depth=8,14", "residual=false,true", "seed=0"]
DOC = (ROOT / "docs" / "cluster.md").read_text()


@pytest.fixture(scope="module")
def sweep_args(image_folder, tmp_path_factory):
    data = tmp_path_factory.mktemp("data")  # shared: data.dir does not name runs

    def args(out, *extra):
        return GRID + tiny_overrides(image_folder, data) + [f"hydra.sweep.dir={out}", *extra]
    return args


def basic_sweep(args: list) -> Path:
    """The reference: the grid through Hydra's basic launcher, one cell after another."""
    out = Path(next(a for a in args if a.startswith("hydra.sweep.dir=")).split("=", 1)[1])
    r = cli(args + ["hydra/launcher=basic"], timeout=300)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def basic(sweep_args, tmp_path_factory):
    return basic_sweep(sweep_args(tmp_path_factory.mktemp("basic") / "runs"))


@pytest.fixture(scope="module")
def local(sweep_args, tmp_path_factory):
    """The grid through hydra/launcher=gpus: its 4 cells share a stream, so one job, a process that
    submitit's local executor starts, trains them together."""
    out = tmp_path_factory.mktemp("local") / "runs"
    r = cli(sweep_args(out, "hydra/launcher=gpus"), timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return out, r


def status(run_dir: Path) -> str:
    return json.loads((run_dir / "run.json").read_text())["status"]


def group_reports(out: Path) -> list:
    """What each group job sent back, as submitit pickled it: (job id, GroupReport)."""
    reports = []
    for f in sorted(out.glob(".submitit/*/*_result.pkl")):
        outcome, job_return = pickle.loads(f.read_bytes())
        assert outcome == "success"
        reports.append((f.parent.name, job_return.return_value))
    return reports


# ---- groups and their overrides (no process started) -----------------------------------------------------

@pytest.fixture(scope="module")
def paper_cell():
    return OmegaConf.to_object(compose(["protocol=paper"]))


def grid(cell, seeds=(0,), **changes):
    return [dataclasses.replace(cell, depth=d, residual=r, seed=s, **changes)
            for s in seeds for d in (20, 32, 44, 56) for r in (False, True)]


def test_cells_that_share_a_stream_are_one_job_unless_split_into_jobs_of_k(paper_cell):
    cells = grid(paper_cell)
    assert group_cells(cells) == [list(range(8))]
    assert group_cells(cells, 8) == [list(range(8))]
    assert group_cells(cells, 1) == [[i] for i in range(8)]
    # 2 x 4, dealt round-robin: each job gets every depth, not the two deepest pairs
    assert group_cells(cells, 4) == [[0, 2, 4, 6], [1, 3, 5, 7]]
    assert [sorted({cells[i].depth for i in g}) for g in group_cells(cells, 4)] == [[20, 32, 44, 56]] * 2
    assert sorted(len(g) for g in group_cells(cells, 3)) == [2, 3, 3]


def test_seeds_and_data_make_separate_jobs_by_default(paper_cell):
    cells = grid(paper_cell, seeds=(0, 1, 2, 3, 4))
    groups = group_cells(cells)
    assert len(groups) == 5 and sorted(i for g in groups for i in g) == list(range(40))
    assert all(len({cells[i].seed for i in g}) == 1 for g in groups)
    assert len(group_cells(cells, 4)) == 10  # a seed's 8 cells in 2 jobs of 4, never two seeds in one job
    other = dataclasses.replace(paper_cell.data, val_size=5000)
    assert len(group_cells(grid(paper_cell) + grid(paper_cell, data=other))) == 2
    bigger = dataclasses.replace(paper_cell.protocol, batch_size=256)
    assert len(group_cells(grid(paper_cell) + grid(paper_cell, protocol=bigger))) == 2


def test_a_group_job_carries_its_cells_overrides_exactly():
    cells = [["depth=8", "data.root=/data/my cifar,v2/x.tar.gz", "protocol.milestones=[4,6]"],
             ["q=it's", "b=a\\'", "c=ends\\", "i=${oc.env:HOME}", 'e="x"', "+k=v"]]
    overrides = group_overrides(cells, gpu="GPU-3f2a")
    # Hydra's own parser is the reference: the group job's config gets back exactly these strings
    from hydra.core.override_parser.overrides_parser import OverridesParser
    parsed = {o.key_or_group: o.value() for o in OverridesParser.create().parse_overrides(overrides)}
    assert parsed["hydra.launcher.cells"] == cells
    assert parsed["hydra.job.env_set.CUDA_VISIBLE_DEVICES"] == "GPU-3f2a"
    # and so does the composed config, read raw as the group job reads it
    cfg = compose(["hydra/launcher=gpus", *overrides], return_hydra_config=True)
    assert OmegaConf.to_container(cfg.hydra.launcher.cells, resolve=False) == cells
    assert cfg.hydra.sweep.subdir == "."  # a group writes no run directory of its own


def test_after_a_signal_usr2_goes_on_to_submitits_handler_and_sigterm_ends_the_job(monkeypatch):
    from experiments.harness.cell import Result
    from experiments.harness.runner import Stopped
    from experiments.launchers.grouped import after_signal
    from runformat import Status
    results = [Result(Status.interrupted, "stopped by SIGUSR2 at iteration 5; rerun the same command to resume")]
    handed = []
    previous = signal.signal(signal.SIGUSR2, lambda signum, frame: handed.append(signum))  # stands for submitit's
    try:
        with pytest.raises(Stopped):  # the sweep's own process (basic inside): the signal ends the sweep
            after_signal(Stopped(signal.SIGUSR2, results))
        monkeypatch.setenv("SUBMITIT_EXECUTOR", "local")  # a submitit job's process
        monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "1")
        assert after_signal(Stopped(signal.SIGTERM, results)) == results and handed == []  # not requeued
        assert after_signal(Stopped(signal.SIGUSR2, results)) == results and handed == [signal.SIGUSR2]
    finally:
        signal.signal(signal.SIGUSR2, previous)


def test_a_group_job_that_brought_nothing_back_is_reported_from_its_run_directories(tmp_path):
    from experiments.launchers.grouped import group_results
    from runformat import RUN_JSON
    jobs = [type("Job", (), {"run_dir": tmp_path / name}) for name in ("a", "b", "c")]
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / RUN_JSON).write_text(json.dumps({"status": "interrupted", "message": "stopped by SIGUSR2"}))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / RUN_JSON).write_text(json.dumps({"status": "running"}))  # its process was killed
    a, b, c = group_results(0, None, jobs, "the SlurmLauncher launcher raised UncompletedJobError: Job 12 ...")
    assert (a.status.value, a.message) == ("interrupted", "stopped by SIGUSR2")
    assert b.status.value == c.status.value == "failed" and "UncompletedJobError" in b.message and "rerun" in c.message


# ---- the SLURM preset, composed from the docs' worked example ---------------------------------------------

def doc_example() -> tuple:
    """The worked example of docs/cluster.md: its `export`ed variables and its experiments.run overrides."""
    env, command = {}, None
    for line in DOC.splitlines():
        if line.startswith("export "):
            env.update(w.split("=", 1) for w in shlex.split(line)[1:] if "=" in w)
        if line.startswith("python -m experiments.run -m ") and "hydra/launcher=slurm" in line:
            command = shlex.split(line)[3:]
    return env, command


def test_the_slurm_preset_composes_to_what_the_docs_say(monkeypatch):
    from experiments.harness.precheck import cells, sweep_defaults
    env, command = doc_example()
    assert env and command, "docs/cluster.md lost its worked example"
    for k in ("SBATCH_PARTITION", "SBATCH_ACCOUNT", "SBATCH_QOS", "SBATCH_CONSTRAINT", "SWEEP_TIMEOUT_MIN"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    every_cell = cells(command + sweep_defaults(command))
    hydra_overrides = [o for o in command if o.startswith("hydra")]
    cfg = compose(hydra_overrides + every_cell[0], return_hydra_config=True)
    launcher = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    inner = launcher["inner"]
    said = {  # what docs/cluster.md says the example submits, flag by flag
        "--partition=gpu": inner["partition"] == "gpu",
        "--account=myproject": inner["account"] == "myproject",
        "--qos=normal": inner["qos"] == "normal",
        "--time=180": inner["timeout_min"] == 180,
        "--gpus-per-node=1": inner["gpus_per_node"] == 1,
        "--cpus-per-task=4": inner["cpus_per_task"] == 4,
        "--mem=32GB": inner["mem_gb"] == 32,
        "--signal=USR2@120": inner["signal_delay_s"] == 120,
        "--job-name=degradation-paper": inner["name"] == "degradation-paper",
    }
    assert {flag: ok for flag, ok in said.items() if not ok or flag not in DOC} == {}
    assert inner["constraint"] is None  # not exported: left to the site's default
    assert inner["_target_"].endswith("hydra_submitit_launcher.submitit_launcher.SlurmLauncher")
    assert inner["max_num_timeout"] == 20 and "20 times" in DOC
    assert inner["submitit_folder"] == "results/paper/runs/.submitit/%j"
    assert launcher["cells_per_job"] == 4 and launcher["gpus"] is None
    # "6 jobs": 3 seeds x 8 nets, each seed's 8 in 2 jobs of 4
    typed = [OmegaConf.to_object(compose(c)) for c in every_cell]
    assert len(typed) == 24 and len(group_cells(typed, launcher["cells_per_job"])) == 6 and "6 jobs" in DOC


def test_no_site_name_is_written_into_the_presets(monkeypatch):
    for k in ("SBATCH_PARTITION", "SBATCH_ACCOUNT", "SBATCH_QOS", "SBATCH_CONSTRAINT", "SWEEP_TIMEOUT_MIN"):
        monkeypatch.delenv(k, raising=False)
    inner = compose(["hydra/launcher=slurm"], return_hydra_config=True).hydra.launcher.inner
    assert [inner.partition, inner.account, inner.qos, inner.constraint] == [None] * 4  # the cluster's defaults
    changed = compose(["hydra/launcher=slurm", "hydra.launcher.inner.partition=a100",
                       "hydra.launcher.inner.timeout_min=60"], return_hydra_config=True).hydra.launcher.inner
    assert (changed.partition, changed.timeout_min) == ("a100", 60)


def test_without_the_cluster_extra_the_command_says_how_to_get_it(monkeypatch):
    import importlib.util

    from experiments.harness import precheck
    find = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("hydra_plugins.hydra_submitit") else find(name, *a))
    for chosen in ("slurm", "gpus"):
        problem = precheck.check(["-m", f"hydra/launcher={chosen}", "protocol=smoke"])
        assert problem and "pip install -e '.[cluster]'" in problem and f"LAUNCHER={chosen}" in problem


def test_a_paper_sweep_sent_to_slurm_is_not_refused_for_this_machines_cpu(monkeypatch, tmp_path):
    from experiments.harness import precheck
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # a login node
    data = ["data=imagefolder", f"data.root={tmp_path}"]  # present, so that only the CPU guard could refuse
    assert "would take about" in precheck.check(["-m", "protocol=paper", *data])
    assert precheck.check(["-m", "protocol=paper", "hydra/launcher=slurm", *data]) is None


# ---- sweeps through submitit's local executor ---------------------------------------------------------------

@pytest.mark.slow
def test_a_grouped_sweep_writes_the_run_directories_and_numbers_of_a_basic_sweep(basic, local):
    out, r = local
    assert "4 cells in 1 jobs" in r.stdout
    assert tables(out) == tables(basic)  # same run dirs, same rows and values (CPU, fixed seeds)
    for name in tables(out):
        a, b = json.loads((out / name / "run.json").read_text()), json.loads((basic / name / "run.json").read_text())
        assert a["status"] == "completed" and a["config"] == b["config"] and a["overrides"] == b["overrides"]
        assert (out / name / "checkpoint.pt").exists()
    [(_, report)] = group_reports(out)
    assert [res.status.value for res in report.results] == ["completed"] * 4 and report.gpu == "0"


@pytest.mark.slow
def test_the_summary_and_the_report_after_a_grouped_sweep_are_those_of_a_basic_sweep(local, tmp_path):
    out, r = local
    assert "sweep: 4 cells, 4 completed." in r.stdout  # every cell, though the inner launcher saw one job
    from analysis import report
    assert report.main(["--runs", str(out), "--out", str(tmp_path / "report")]) == 0
    for f in ("fig1_plain.png", "fig6.png", "degradation.png", "table6.md", "report.md"):
        assert (tmp_path / "report" / f).exists(), f
    assert ".submitit" not in (tmp_path / "report" / "report.md").read_text()  # the job logs are not runs


@pytest.mark.slow
def test_two_gpus_take_one_group_each_and_a_third_group_waits(image_folder, tmp_path, monkeypatch):
    out = tmp_path / "runs"
    args = ["-m", "depth=8", "residual=false", "seed=0,1,2", *tiny_overrides(image_folder, tmp_path / "data"),
            f"hydra.sweep.dir={out}", "hydra/launcher=gpus", "hydra.launcher.gpus=2"]
    # two GPUs, as a node's CUDA_VISIBLE_DEVICES would name them (this machine has none: device=cpu)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "5,7")
    r = cli(args, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "3 cells in 3 jobs" in r.stdout and "sweep: 3 cells, 3 completed." in r.stdout
    reports = sorted((rep for _, rep in group_reports(out)), key=lambda rep: rep.started)
    assert len(reports) == 3 and all(isinstance(rep, GroupReport) for rep in reports)
    first, second, third = reports
    assert {first.gpu, second.gpu} == {"5", "7"}  # each job saw only its own GPU
    assert first.started < second.ended and second.started < first.ended  # the two ran side by side
    assert third.gpu in ("5", "7") and third.started >= min(first.ended, second.ended)  # the third waited


# ---- preemption and time limits -------------------------------------------------------------------------------

def run_until_mid_run(args: list, out: Path) -> tuple:
    """Start the sweep; once a cell has written its first epoch, the pid of the job process training it. Its
    group still has the other cells' first epochs and a second epoch of 4 steps to go: a signal sent now
    lands mid-run."""
    p = subprocess.Popen([sys.executable, "-m", "experiments.run", *args], cwd=ROOT, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1",
                                                                  "OMP_NUM_THREADS": "1"})
    deadline = time.time() + 120
    while time.time() < deadline and p.poll() is None:
        rows = [f for f in out.glob("*/metrics.csv") if len(f.read_text().splitlines()) > 1]
        if rows:
            lock = (rows[0].parent / ".lock").read_text().split()
            return p, int(lock[1])  # "pid N on host": the group job's process
        time.sleep(0.02)
    raise AssertionError(f"no epoch was written: {p.communicate(timeout=60)[0]}")


@pytest.mark.slow
def test_usr2_before_a_time_limit_checkpoints_requeues_and_resumes_every_cell_of_the_group(basic, sweep_args, tmp_path):
    import submitit
    out = tmp_path / "runs"
    p, pid = run_until_mid_run(sweep_args(out, "hydra/launcher=gpus"), out)
    os.kill(pid, getattr(signal, "SIG" + submitit.JobEnvironment.USR_SIG))  # what SLURM sends, as submitit asks
    seen, deadline = set(), time.time() + 60
    while p.poll() is None and time.time() < deadline and "interrupted" not in seen:
        seen |= {status(d) for d in out.iterdir() if (d / "run.json").exists()}
        time.sleep(0.02)
    log = p.communicate(timeout=300)[0]
    assert p.returncode == 0, log
    assert "interrupted" in seen  # between the two processes, run.json said so
    assert "sweep: 4 cells, 4 completed." in log
    job_log = "".join(f.read_text() for f in out.glob(".submitit/*/*_log.out"))
    assert "Requeued job" in job_log and job_log.count("Training 4 cells together") == 2  # requeued, same job
    assert tables(out) == tables(basic)  # every epoch once, the numbers of an uninterrupted run
    for d in out.iterdir():
        if d.is_dir() and not d.name.startswith("."):
            sessions = json.loads((d / "run.json").read_text())["sessions"]
            assert len(sessions) == 2 and sessions[1]["from_iteration"] > 0  # resumed, not restarted


@pytest.mark.slow
def test_sigterm_checkpoints_every_cell_and_rerunning_the_sweep_resumes_them(basic, sweep_args, tmp_path):
    out = tmp_path / "runs"
    args = sweep_args(out, "hydra/launcher=gpus")
    p, pid = run_until_mid_run(args, out)
    os.kill(pid, signal.SIGTERM)  # scancel, or a preemption the cluster announces with SIGTERM only
    log = p.communicate(timeout=300)[0]
    # submitit does not requeue on SIGTERM: the job ends with its cells interrupted, the sweep says so
    assert p.returncode == 1, log
    assert "sweep: 4 cells, 0 completed" in log and log.count("interrupted (stopped by SIGTERM") == 4
    assert all(status(d) == "interrupted" for d in out.iterdir() if d.is_dir() and not d.name.startswith("."))

    r = cli(args, timeout=300)  # the same command again
    assert r.returncode == 0, r.stdout + r.stderr
    assert "sweep: 4 cells, 4 completed." in r.stdout
    assert tables(out) == tables(basic)  # every epoch once, the numbers of an uninterrupted run

    finished = {f: f.stat().st_mtime_ns for f in out.glob("*/*.csv")}
    r = cli(args, timeout=300)  # once more: finished cells are neither rerun nor rewritten
    assert r.returncode == 0 and "sweep: 4 cells, 4 completed." in r.stdout, r.stdout + r.stderr
    assert {f: f.stat().st_mtime_ns for f in out.glob("*/*.csv")} == finished
    newest = max(out.glob(".submitit/*/*_log.out"), key=lambda f: f.stat().st_mtime_ns)
    assert newest.read_text().count("nothing to do") == 4
