"""The entry point end to end: files written, bad input refused in one line, resume after SIGTERM/SIGKILL."""
import json
import random
import signal
import time

import pytest

from experiments.harness.rundir import RunDir
from runformat import METRICS, TrainErrMeasure
from tests.helpers.harness import LONG, PARAMS, cli, numbers, popen, run_inprocess, wait_for_rows
from tests.helpers.harness import metrics_rows as rows


def test_one_run_writes_metrics_and_run_json(tiny, tmp_path):
    out = tmp_path / "run"
    r = cli(tiny + ["depth=20", "residual=false", f"hydra.run.dir={out}"])
    assert r.returncode == 0, r.stderr
    assert "ETA" in r.stdout  # one progress line per epoch
    table = rows(out)
    assert list(table[0]) == list(METRICS.columns)
    assert [int(x["epoch"]) for x in table] == [1, 2]  # 64 images / batch 16 = 4 steps an epoch, 8 iterations
    assert {x["depth"] for x in table} == {"20"} and {x["residual"] for x in table} == {"False"}
    assert all(0 <= float(x["train_err"]) <= 100 and 0 <= float(x["test_err"]) <= 100 for x in table)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "completed" and info["num_classes"] == 4
    assert info["num_params"] == PARAMS[20] - 6 * (64 + 1)  # a 4-class head: 6 fewer outputs, 64 weights and a bias each
    assert info["config"]["depth"] == 20 and info["config"]["protocol"]["name"] == "smoke"
    assert {"python", "torch", "torchvision"} <= set(info["versions"])
    assert info["started_at"] and info["ended_at"] and "git_commit" in info and info["device"] == "cpu"
    assert info["train_err_measure"] == TrainErrMeasure.running  # what a report against a published curve names
    assert (out / "checkpoint.pt").exists()

    again = cli(tiny + ["depth=20", "residual=false", f"hydra.run.dir={out}"])
    assert again.returncode == 0 and "nothing to do" in again.stdout
    assert rows(out) == table


def test_default_run_directory_is_stable_and_named_by_configuration(tiny, tmp_path):
    r = cli(tiny + ["depth=20", "residual=true", "seed=3"], cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    (run,) = (tmp_path / "results" / "smoke" / "runs").iterdir()
    assert run.name.startswith("depth=20-residual=true-seed=3-")
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists()


@pytest.mark.parametrize("depth", sorted(PARAMS))
def test_run_json_reports_the_papers_parameter_counts(depth, tiny10, tmp_path):
    run_inprocess(tiny10 + [f"depth={depth}", "residual=false", "protocol.iterations=1"], tmp_path)
    assert json.loads((tmp_path / "run.json").read_text())["num_params"] == PARAMS[depth]


@pytest.mark.parametrize("args, expected", [
    (["depth=21"], "depth=21 is not of the form 6n+2"),
    (["residul=false"], "unknown key 'residul' (did you mean 'residual'?)"),
    (["shortcut=C"], "shortcut=C: Invalid value 'C', expected one of [A, B]"),
    (["depth=abc"], "depth=abc"),
    (["protocol=fast"], "no protocol named 'fast'"),
    (["protocol.augment=crop"], "protocol.augment=crop: Invalid value 'crop', expected one of [crop_flip, keras, none]"),
    (["protocol.optimizer=sgdd"], "protocol.optimizer=sgdd: Invalid value 'sgdd', expected one of [sgd, adam]"),
    (["protocol.normalize=std"], "protocol.normalize=std: Invalid value 'std', expected one of [pixel_mean, keras, fixed]"),
    (["arch=resnet"], "no arch named 'resnet': choose one of minimodel, resnet_cifar"),
    (["data=imagefolder", "data.root=/no/such/dir"], "data.root=/no/such/dir does not exist"),
    (["data=cifar10", "data.dir=NODATA", "data.download=false"], "CIFAR-10 not found"),
])
def test_bad_input_is_one_line_and_a_nonzero_exit(args, expected, tmp_path):
    args = [a.replace("NODATA", str(tmp_path / "nodata")) for a in args]
    r = cli(args + ["protocol.iterations=1"] if "protocol=fast" not in args else args, cwd=tmp_path)
    assert r.returncode != 0
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], r.stderr
    assert not (tmp_path / "results").exists()  # no run directory, not even an empty one


@pytest.mark.slow
def test_a_second_process_on_the_same_run_directory_is_refused(tiny, tmp_path):
    holder = RunDir(tmp_path / "run")
    holder.lock()
    try:
        r = cli(tiny + [f"hydra.run.dir={tmp_path / 'run'}"])
        assert r.returncode != 0 and "is in use by pid" in r.stderr
    finally:
        holder.unlock()
    assert cli(tiny + [f"hydra.run.dir={tmp_path / 'run'}"]).returncode == 0  # the lock is gone with its holder


def test_corrupt_checkpoint_is_detected_and_the_user_told_what_to_do(tiny, tmp_path):
    out = tmp_path / "run"
    run_inprocess(tiny + ["protocol.iterations=4"], out)
    info = json.loads((out / "run.json").read_text())
    (out / "run.json").write_text(json.dumps({**info, "status": "interrupted"}))
    (out / "checkpoint.pt").write_bytes((out / "checkpoint.pt").read_bytes()[:1000])
    r = cli(tiny + ["protocol.iterations=4", f"hydra.run.dir={out}"])
    assert r.returncode != 0 and "truncated or corrupt" in r.stderr and "move it aside" in r.stderr


def test_diverged_run_keeps_its_rows_and_says_so(tiny, tmp_path):
    status = run_inprocess(tiny + ["protocol.lr=1e30", "protocol.iterations=12", "protocol.milestones=[100]"], tmp_path)
    info = json.loads((tmp_path / "run.json").read_text())
    assert status == "diverged" == info["status"] and "NaN" in info["message"]
    assert len(rows(tmp_path)) == info["epochs_done"] < 3


@pytest.mark.slow
def test_sigterm_checkpoints_and_the_rerun_continues_with_identical_numbers(tiny, tmp_path, reference):
    out = tmp_path / "run"
    args = tiny + LONG + [f"hydra.run.dir={out}"]
    p = popen(args)
    wait_for_rows(out, 3, p)
    time.sleep(0.15)  # into the middle of an epoch
    p.send_signal(signal.SIGTERM)
    log = p.communicate(timeout=60)[0]
    assert p.returncode == 128 + signal.SIGTERM, log
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "interrupted" and "resume" in info["message"]

    changed = cli(args + ["protocol.lr=0.05"])
    assert changed.returncode != 0 and "protocol.lr" in changed.stderr  # resuming a different config is refused

    r = cli(args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "resuming at iteration" in r.stdout
    assert numbers(out) == reference


@pytest.mark.slow
def test_sigkill_at_random_points_loses_at_most_an_epoch_and_resumes_identically(tiny, tmp_path, reference):
    out = tmp_path / "run"
    args = tiny + LONG + [f"hydra.run.dir={out}"]
    rng = random.Random(0)
    for _ in range(2):
        p = popen(args)
        wait_for_rows(out, rng.randint(1, 6), p)
        time.sleep(rng.uniform(0, 0.3))
        p.kill()
        p.wait()
        if rows(out):
            assert len({r["epoch"] for r in rows(out)}) == len(rows(out))
    r = cli(args, timeout=300)
    assert r.returncode == 0, r.stderr
    assert numbers(out) == reference
