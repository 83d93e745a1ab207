"""`make reference` (analysis/publish.py): partial sweeps published and merged, an unfinished sweep's state stored and
unpacked, and archives or parts from elsewhere checked whole before anything is written (issues 28, 31, 35)."""
import io
import json
import os
import subprocess
import tarfile

import pytest

from analysis import publish
from tests.helpers.runs import write_run
from tests.test_gpu_session import make

RUN = "depth=20-residual=false-seed=0"


def sweep_archive(path, epochs, sessions=1, status="interrupted", extra=(), parts=None):
    """A sweep.tar.gz as `collect` packs it: runs/<run>/ with `epochs` epochs of a 6-epoch run, and logs/ (with the
    parts' sha256s when `parts` are given)."""
    stage = stage_of(path)
    publish.shutil.rmtree(stage, ignore_errors=True)
    run = write_run(stage / "runs", 20, False, 0, (1.0, 9.5), status=status, epochs=epochs, name=RUN, iterations=6 * 391)
    info = json.loads((run / "run.json").read_text())
    info["sessions"] = [{"started_at": f"2026-01-0{i + 1}T00:00:00"} for i in range(sessions)]
    (run / "run.json").write_text(json.dumps(info))
    with tarfile.open(path, "w:gz") as t:
        t.add(stage / "runs", "runs")
        if parts is not None:
            data = "".join(f"{publish.hashlib.sha256(p.read_bytes()).hexdigest()}  {p.name}\n" for p in parts).encode()
            _add(t, "logs/resume.sha256", data)
        for name, data in extra:
            _add(t, name, data)
    return path


def stage_of(archive):
    return archive.parent / f"{archive.name}.stage"


def _add(tar, name, data, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, len(data) if kind == tarfile.REGTYPE else 0
    tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def state_parts(folder, runs=(RUN,), members=()):
    """resume.tar.part-aa/-ab: a gzip'd tar of <run>/checkpoint.pt and metrics.csv, split in two."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as t:
        for run in runs:
            _add(t, f"./{run}/checkpoint.pt", os.urandom(3000))
            _add(t, f"./{run}/metrics.csv", b"epoch,iteration\n1,391\n2,782\n")
        for args in members:
            _add(t, *args)
    data = buf.getvalue()
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "resume.tar.part-aa").write_bytes(data[: len(data) // 2])
    (folder / "resume.tar.part-ab").write_bytes(data[len(data) // 2:])
    return sorted(folder.glob("resume.tar.part-*"))


def epochs(run_dir):
    return [int(line.split(",")[0]) for line in (run_dir / "metrics.csv").read_text().splitlines()[1:]]


def test_a_later_archive_of_the_same_runs_adds_its_epochs_once_and_its_run_json(tmp_path):
    results = tmp_path / "results"
    publish.publish(sweep_archive(tmp_path / "a.tar.gz", 3), None, "s", results)
    run = results / "reference" / "s" / "runs" / RUN
    assert epochs(run) == [1, 2, 3]
    out = publish.publish(sweep_archive(tmp_path / "b.tar.gz", 6, sessions=2, status="completed"), None, "s", results)
    assert epochs(run) == [1, 2, 3, 4, 5, 6]
    assert json.loads((run / "run.json").read_text())["status"] == "completed" and out.finished == [RUN]
    # the older archive again changes nothing: the newer run (more sessions) keeps its files
    publish.publish(sweep_archive(tmp_path / "a.tar.gz", 3), None, "s", results)
    assert epochs(run) == [1, 2, 3, 4, 5, 6] and json.loads((run / "run.json").read_text())["status"] == "completed"


def test_rows_beyond_the_newer_copy_are_kept_and_a_cut_last_line_is_dropped(tmp_path):
    results = tmp_path / "results"
    publish.publish(sweep_archive(tmp_path / "a.tar.gz", 5), None, "s", results)
    run = results / "reference" / "s" / "runs" / RUN
    b = sweep_archive(tmp_path / "b.tar.gz", 3, sessions=2)  # continued from a checkpoint of epoch 3
    stage = stage_of(b) / "runs" / RUN
    (stage / "metrics.csv").write_text((stage / "metrics.csv").read_text() + "4,1564,0.1,1.0,50")  # a kill mid-line
    with tarfile.open(b, "w:gz") as t:
        t.add(stage_of(b) / "runs", "runs")
    publish.publish(b, None, "s", results)
    assert epochs(run) == [1, 2, 3, 4, 5]  # each once: 1-3 from the newer copy, 4-5 from the older


def test_an_unfinished_sweeps_state_is_stored_checked_and_removed_when_it_completes(tmp_path):
    results = tmp_path / "results"
    parts = state_parts(tmp_path / "out")
    out = publish.publish(sweep_archive(tmp_path / "a.tar.gz", 3, parts=parts), tmp_path / "out", "s", results)
    folder = results / "reference" / "s" / "resume"
    assert sorted(p.name for p in folder.iterdir()) == ["resume.tar.part-aa", "resume.tar.part-ab", "state.json"]
    assert all((folder / p.name).read_bytes() == p.read_bytes() for p in parts)
    assert json.loads((folder / "state.json").read_text())["runs"] == {RUN: 2}
    assert "is stored in" in out.state and out.unfinished == [RUN]
    # unpacked into a fresh runs folder, as scripts/gpu-session start does
    runs = tmp_path / "machine" / "runs"
    assert publish.unpack(folder, runs) == [RUN]
    assert sorted(p.name for p in (runs / RUN).iterdir()) == ["checkpoint.pt", "metrics.csv"]
    # the sweep completes: its state goes
    out = publish.publish(sweep_archive(tmp_path / "b.tar.gz", 6, sessions=2, status="completed"), None, "s", results)
    assert not folder.exists() and "removed" in out.state


def test_parts_that_are_not_the_ones_packed_with_the_archive_are_refused(tmp_path):
    parts = state_parts(tmp_path / "out")
    archive = sweep_archive(tmp_path / "a.tar.gz", 3, parts=parts)
    parts[1].write_bytes(parts[1].read_bytes()[:-10])  # cut short
    with pytest.raises(publish.PublishError, match="not the ones recorded with them .differ: resume.tar.part-ab"):
        publish.publish(archive, tmp_path / "out", "s", tmp_path / "results")
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("case", ["symlink", "hardlink", "fifo", "absolute", "dotdot", "outside", "deep", "odd-name",
                                  "not-gzip", "truncated"])
def test_an_archive_from_elsewhere_is_checked_whole_before_anything_is_written(tmp_path, case):
    archive = tmp_path / "x.tar.gz"
    if case in ("not-gzip", "truncated"):
        good = sweep_archive(tmp_path / "good.tar.gz", 3).read_bytes()
        archive.write_bytes(b"not a tar" if case == "not-gzip" else good[: len(good) // 2])
    else:
        member = {"symlink": (f"runs/{RUN}/metrics.csv", b"", tarfile.SYMTYPE, "/etc/passwd"),
                  "hardlink": (f"runs/{RUN}/run.json", b"", tarfile.LNKTYPE, "/etc/passwd"),
                  "fifo": (f"runs/{RUN}/layer_stats.csv", b"", tarfile.FIFOTYPE),
                  "absolute": ("/tmp/x", b"x"), "dotdot": ("runs/../../x", b"x"), "outside": ("etc/x", b"x"),
                  "deep": (f"runs/{RUN}/sub/x.csv", b"x"), "odd-name": ("runs/my run`id`/metrics.csv", b"x")}[case]
        sweep_archive(archive, 3, extra=[member] if len(member) == 2 else [])
        if len(member) > 2:
            with tarfile.open(archive, "w:gz") as t:
                t.add(stage_of(archive) / "runs", "runs")
                _add(t, *member)
    with pytest.raises(publish.PublishError) as why:
        publish.publish(archive, None, "s", tmp_path / "results")
    assert "\n" not in str(why.value)
    assert not (tmp_path / "results").exists()


def test_parts_holding_a_link_are_refused_and_unpack_leaves_nothing(tmp_path):
    folder = tmp_path / "state"
    state_parts(folder, members=[(f"./{RUN}/run.json", b"", tarfile.SYMTYPE, "/etc/passwd")])
    with pytest.raises(publish.PublishError, match="is a link"):
        publish.unpack(folder, tmp_path / "runs")
    assert not (tmp_path / "runs").exists() and not list(tmp_path.glob(".runs*"))
    with pytest.raises(publish.PublishError, match="is a link"):
        publish.publish(sweep_archive(tmp_path / "a.tar.gz", 3), folder, "s", tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_a_stored_state_whose_parts_changed_is_refused(tmp_path):
    results = tmp_path / "results"
    state_parts(tmp_path / "out")
    publish.publish(sweep_archive(tmp_path / "a.tar.gz", 3), tmp_path / "out", "s", results)
    folder = results / "reference" / "s" / "resume"
    (folder / "resume.tar.part-aa").write_bytes(b"x" + (folder / "resume.tar.part-aa").read_bytes()[1:])
    with pytest.raises(publish.PublishError, match="not the ones recorded with them .differ: resume.tar.part-aa."):
        publish.unpack(folder, tmp_path / "runs")
    (tmp_path / "runs").mkdir()
    with pytest.raises(publish.PublishError, match="exists"):
        publish.unpack(folder, tmp_path / "runs")


def test_make_reference_takes_names_and_paths_as_text(tmp_path):
    """A backtick, $(...) or make's own $(shell ...) in FROM is text, never run; a NAME that is not one plain folder
    name is refused."""
    odd = tmp_path / "we`touch PWNED`ird $(touch PWNED) $(shell touch PWNED) it's"
    odd.mkdir()
    archive = sweep_archive(odd / "sweep.tar.gz", 3)
    r = make("reference", f"FROM={archive}", f"RESULTS={tmp_path / 'results'}", "NAME=odd")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "results" / "reference" / "odd" / "runs" / RUN / "metrics.csv").exists()
    assert not list(tmp_path.rglob("PWNED")) and not list(publish.Path.cwd().glob("PWNED"))
    r = make("reference", f"FROM={archive}", f"RESULTS={tmp_path / 'results'}", "NAME=my ref")
    assert r.returncode == 2 and r.stderr.strip().splitlines()[0] == (
        "error: NAME='my ref' is not a plain folder name (letters, digits, '.', '_', '-'; at most 64): choose another")
    assert not (tmp_path / "results" / "reference" / "my ref").exists() and not (publish.Path.cwd() / "ref").exists()


def test_a_pipe_in_the_published_set_is_refused_without_reading_it(tmp_path):
    results = tmp_path / "results"
    publish.publish(sweep_archive(tmp_path / "a.tar.gz", 3), None, "s", results)
    os.mkfifo(results / "reference" / "s" / "runs" / RUN / "grad_norms.csv")
    p = subprocess.run([publish.sys.executable, "-m", "analysis.publish", "--from", str(tmp_path / "a.tar.gz"),
                        "--name", "s", "--results", str(results)], capture_output=True, text=True, timeout=60,
                       cwd=publish.Path(__file__).parents[1])
    assert p.returncode == 2 and "is not a regular file" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_a_handoff_stores_one_calls_checked_parts_for_the_next_call_to_continue_from(tmp_path):
    """`make gpu-handoff FROM=<a call's files>`: the machine may be gone before the next call of the session, so
    that call's parts, checked against its archive, go into the carried folder, replacing an older hand-off, and
    a fresh machine continues from them (`gpu-session start` unpacks them as it does a committed state)."""
    files, carry = tmp_path / "call1", tmp_path / "carry" / "resume"
    parts = state_parts(files)
    sweep_archive(files / "sweep.tar.gz", 3, parts=parts)
    state_parts(carry, members=[("./old/metrics.csv", b"epoch,iteration\n1,391\n")])  # an earlier hand-off's
    assert publish.handoff(files, carry) == [RUN]
    assert sorted(p.name for p in carry.iterdir()) == ["resume.tar.part-aa", "resume.tar.part-ab", "state.json"]
    assert all((carry / p.name).read_bytes() == p.read_bytes() for p in parts)
    assert publish.unpack(carry, tmp_path / "machine" / "runs") == [RUN]
    # parts that are not the archive's: refused, the earlier hand-off kept as it was
    before = {p.name: p.read_bytes() for p in carry.iterdir()}
    parts[0].write_bytes(parts[0].read_bytes()[:-5])
    with pytest.raises(publish.PublishError, match="not the ones recorded with them .differ: resume.tar.part-aa"):
        publish.handoff(files, carry)
    assert {p.name: p.read_bytes() for p in carry.iterdir()} == before
    # a call that brought back no parts (its sweep finished) has nothing to hand off
    done = tmp_path / "call2"
    sweep_archive(done / "sweep.tar.gz", 6, status="completed")
    with pytest.raises(publish.PublishError, match="records no resume parts.*publish it with make reference"):
        publish.handoff(done, carry)


def test_make_gpu_handoff_fills_the_carried_folder_and_make_reference_empties_it(tmp_path):
    files, carry = tmp_path / "call 1", tmp_path / "carry"
    sweep_archive(files / "sweep.tar.gz", 3, parts=state_parts(files))
    r = make("gpu-handoff", f"FROM={files}", f"HANDOFF={carry}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "carry it with the next call" in r.stdout and (carry / "state.json").is_file()
    r = make("gpu-handoff", f"FROM={tmp_path / 'nowhere'}", f"HANDOFF={carry}")
    assert r.returncode == 2 and (carry / "state.json").is_file()
    assert r.stderr.splitlines()[0].startswith(f"error: {tmp_path / 'nowhere' / 'sweep.tar.gz'} is not there: ")
    r = make("reference", f"FROM={files / 'sweep.tar.gz'}", f"RESUME={files}", f"RESULTS={tmp_path / 'results'}",
             f"HANDOFF={carry}")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not carry.exists() and (tmp_path / "results" / "reference" / "paper-cifar10jpeg" / "resume").is_dir()


@pytest.mark.parametrize("name", ["paper-cifar10jpeg", "a-martyn-cifar10"])
def test_the_committed_reference_reports_are_what_the_analysis_draws_from_their_runs(name, tmp_path, monkeypatch):
    """The README shows these sets' figures and numbers: drawn again from their committed runs (as make reference
    and make published draw them), the report and Table 6 are the committed ones, so no analysis change leaves them
    stale. (Text only: a PNG's bytes follow the matplotlib and FreeType of the machine.)"""
    from analysis import reference, report
    committed = publish.Path(__file__).resolve().parents[1] / "results" / "reference" / name
    monkeypatch.setattr(reference, "ROOT", committed.parent)  # the checkout's sets, as make reference finds them
    args = ["--runs", str(committed.relative_to(committed.parents[2]) / "runs"), "--out", str(tmp_path)]
    cwd = os.getcwd()
    os.chdir(committed.parents[2])  # the paths the reports name are the checkout's
    try:
        assert report.main(args + ([] if name == "paper-cifar10jpeg" else ["--reference", "none"])) == 0
    finally:
        os.chdir(cwd)
    for file in ("report.md", "table6.md", "table6.csv"):
        assert (tmp_path / file).read_text() == (committed / file).read_text(), f"{name}/{file} is stale: redraw it"
