"""What the analysis writes, under faults (issue 31, and issue 35's analysis side): each output is the old file or the
whole new one (analysis/outputs.py), a report's outputs replace the old ones only once all are written, and a write
that fails (a full disk, a read-only or vanished --out, --out a file) or a SIGTERM/Ctrl-C ends with one line, exit
2 (or 128 + the signal), no temporary file, and the previous outputs intact. A full disk is a real one: a small
tmpfs, mounted where this runs as root."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from analysis import figures, outputs, report
from tests.helpers.harness import ROOT
from tests.helpers.runs import write_run


@pytest.fixture
def runs(tmp_path) -> Path:
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (1.0, 9.0))
    write_run(runs, 56, False, 0, (3.0, 13.0))
    return runs


def contents(folder: Path) -> dict:
    """Every entry of `folder` (hidden ones too) -> its bytes (None for a folder)."""
    return {p.name: None if p.is_dir() else p.read_bytes() for p in folder.iterdir()}


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def mount_tmpfs(where: Path, size: str) -> None:
    where.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], capture_output=True,
                       text=True)
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode}): a full or read-only disk needs "
                    "a real filesystem of its own (run as root)")


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    mount_tmpfs(disk, "4m")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], capture_output=True)


# ---- one file ------------------------------------------------------------------------------------------------------

def failing_figure(after: bytes, err: BaseException) -> Figure:
    """A Figure whose saving writes `after` and then fails with `err`, as a full disk or a kill mid-figure would."""
    fig = Figure()

    def savefig(f, **kw):
        f.write(after)
        raise err
    fig.savefig = savefig
    return fig


@pytest.mark.parametrize("err", [OSError(errno.ENOSPC, "No space left on device"), KeyboardInterrupt()])
def test_a_figure_that_fails_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, err):
    path = tmp_path / "fig6.png"
    outputs.write_text(path, "the old figure")
    with pytest.raises(outputs.OutputError if isinstance(err, OSError) else KeyboardInterrupt) as raised:
        outputs.save_figure(failing_figure(b"\x89PNG half", err), path)
    assert contents(tmp_path) == {"fig6.png": b"the old figure"}
    if isinstance(err, OSError):
        assert raised.value.path == path and raised.value.errno == errno.ENOSPC
        assert raised.value.fix == "free some space on that disk, or write to another folder"


def test_text_is_utf8_and_csv_cells_are_never_formulas(tmp_path):
    outputs.write_text(tmp_path / "a.md", "± § ✓ résumé")
    assert (tmp_path / "a.md").read_bytes() == "± § ✓ résumé".encode()
    frame = pd.DataFrame({"net": ["=HYPERLINK(\"http://x\")", "+1", "-2", "@SUM(A1)", "plain-20"], "n": [1, 2, 3, 4, 5]})
    outputs.write_csv(frame, tmp_path / "t.csv")
    assert pd.read_csv(tmp_path / "t.csv")["net"].tolist() == ["'=HYPERLINK(\"http://x\")", "'+1", "'-2", "'@SUM(A1)",
                                                               "plain-20"]


# ---- a report's files together -----------------------------------------------------------------------------------

def test_staged_files_arrive_together_in_the_order_written_or_not_at_all(tmp_path):
    out = tmp_path / "out"
    with outputs.staged(out) as stage:
        outputs.write_text(stage / "b.png", "figure")
        outputs.write_text(stage / "a.md", "report")
        assert contents(out).keys() == {stage.name}  # nothing in place yet
    assert contents(out) == {"b.png": b"figure", "a.md": b"report"}
    with pytest.raises(RuntimeError):
        with outputs.staged(out) as stage:
            outputs.write_text(stage / "b.png", "new figure")
            raise RuntimeError("a bug, after one file was written")
    assert contents(out) == {"b.png": b"figure", "a.md": b"report"}


def test_leftovers_of_killed_processes_are_removed_and_a_running_ones_kept(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # a pid that ran and is gone
    alive = os.getppid()
    for pid in (dead.pid, alive):
        (out / f".report-staging.{pid}.abc_12").mkdir()
        (out / f".fig6.png.tmp.{pid}.0a1b2c3d").write_text("half")
    (out / "fig6.png").write_text("a figure")
    with outputs.staged(out):
        pass
    assert set(contents(out)) == {"fig6.png", f".report-staging.{alive}.abc_12", f".fig6.png.tmp.{alive}.0a1b2c3d"}


# ---- the report under faults ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, reason", [
    ("file", "File exists: a file stands where a folder must be: give a folder, or move that file"),
    ("under a file", "Not a directory: a file stands where a folder must be: give a folder, or move that file"),
])
def test_an_out_that_is_a_file_is_one_line_and_exit_2(runs, tmp_path, capsys, make, reason):
    (tmp_path / "out").write_text("someone's file")
    out = tmp_path / "out" if make == "file" else tmp_path / "out" / "report"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line == f"error: cannot write {out}: {reason}"
    assert (tmp_path / "out").read_text() == "someone's file"


def test_a_read_only_out_is_one_line_exit_2_and_the_old_outputs_stay(runs, small_disk, capsys, quick_figures):
    out = small_disk / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    before = contents(out)
    write_run(runs, 20, True, 0, (0.8, 8.6))
    r = subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], capture_output=True, text=True)
    if r.returncode:
        pytest.skip(f"cannot remount read-only ({r.stderr.strip()})")
    capsys.readouterr()
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 2
    assert one_error_line(capsys) == (f"error: cannot write {out}: Read-only file system: make it writable, or write "
                                      f"to another folder; the previous outputs in {out} are as they were")
    assert contents(out) == before


def test_a_full_disk_is_one_line_exit_2_and_the_old_outputs_stay_whole(runs, small_disk, capsys):
    """A real full filesystem, mid-figure: then, with room again, the same command writes the new report."""
    out = small_disk / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    before = contents(out)
    write_run(runs, 20, True, 0, (0.8, 8.6))  # the next report differs
    room = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"x" * (room.f_bavail * room.f_frsize - 200_000))  # 200 kB left: less than the figures take
    capsys.readouterr()
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith(f"error: cannot write {out}/")
    assert line.endswith(f": No space left on device: free some space on that disk, or write to another folder; the "
                         f"previous outputs in {out} are as they were")
    assert contents(out) == before  # nothing new in place, nothing half-written, no temporary file or staging folder
    filler.unlink()
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert set(contents(out)) == set(before) and contents(out)["table6.md"] != before["table6.md"]


def test_an_out_removed_mid_report_is_one_line_and_exit_2(runs, tmp_path, capsys, monkeypatch, quick_figures):
    out = tmp_path / "out"
    fig6 = figures.fig6

    def then_remove_out(*args, **kw):
        import shutil
        shutil.rmtree(out)  # someone cleans up while the report is being written
        return fig6(*args, **kw)
    monkeypatch.setattr(figures, "fig6", then_remove_out)
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line == (f"error: cannot write {out}: No such file or directory: the folder was removed while the files "
                    "were written: run the command again")
    assert not out.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_mid_report_leaves_the_old_outputs_and_no_staging(runs, tmp_path, signum, quick_figures):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    before = contents(out)
    write_run(runs, 20, True, 0, (0.8, 8.6))
    # the report as `python -m analysis.report` runs it, held at its first figure (its tables already staged) until
    # the signal comes: without the hold, a loaded machine could let it finish first (seen once in a clean clone's
    # make test: exit 0). Ctrl-C as a terminal delivers it: a process started in the background (or by a pytest-xdist
    # worker) may have inherited SIGINT ignored
    held = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        "from analysis import outputs, report\n"
        "def held(*args, **kwargs):\n"
        "    while True:\n"
        "        time.sleep(0.01)\n"
        "outputs.save_figure = held\n"
        "sys.exit(report.main(sys.argv[1:]))\n")
    proc = subprocess.Popen([sys.executable, "-c", held, "--runs", str(runs), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staged_files = []
    end = time.time() + 120
    while time.time() < end and proc.poll() is None and not staged_files:
        staged_files = [f for d in out.glob(".report-staging.*") for f in d.iterdir()]
        time.sleep(0.02)
    assert staged_files, "the report ended before it wrote its first file"
    proc.send_signal(signum)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + signum
    assert err.strip().splitlines()[-1] == (f"stopped by {signal.Signals(signum).name}: nothing written, the previous "
                                            f"outputs in {out} are as they were")
    assert contents(out) == before


def test_a_report_killed_mid_write_leaves_a_staging_folder_the_next_one_removes(runs, tmp_path, quick_figures):
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "analysis.report", "--runs", str(runs), "--out", str(out)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    end = time.time() + 120
    while time.time() < end and proc.poll() is None and not any(d.iterdir() for d in out.glob(".report-staging.*")):
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert [p.name for p in out.iterdir()] == [d.name for d in out.glob(".report-staging.*")]  # only the staging
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert not list(out.glob(".*"))


@pytest.mark.slow
def test_the_report_works_under_an_ascii_locale_with_odd_names(tmp_path):
    """Issue 35: under LC_ALL=C (PYTHONUTF8=0, PYTHONIOENCODING unset) every file is read and written as UTF-8; and
    odd paths (non-ASCII, spaces, a leading dash, a newline in a run directory's name) are names like any other."""
    runs = tmp_path / "rüns here"
    write_run(runs, 20, False, 0, (1.0, 9.0), name="résumé ✓")
    write_run(runs, 56, False, 0, (3.0, 13.0), name="-dash")
    write_run(runs, 20, True, 0, (0.8, 8.6), name="new\nline")
    write_run(runs, 56, True, 0, (0.3, 7.0), name=" lead space")
    write_run(runs, 3, False, 0, (5.0, 20.0), arch="minimodel", name="mini",
              family={"name": "minimodel", "label": "MiniModel", "title": "Modèle réduit ✓ $\\frac{$"})
    reference = tmp_path / "référence ✓" / "runs"
    write_run(reference, 20, False, 0, (2.0, 11.0))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "LANG", "LC_CTYPE")}
    env.update(LC_ALL="C", PYTHONUTF8="0", PYTHONPATH=str(ROOT))
    out = tmp_path / "-sortie é"
    r = subprocess.run([sys.executable, "-m", "analysis.report", "--runs", str(runs), f"--out={out}",
                        "--reference", str(reference)], cwd=ROOT, env=env, capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr.decode("utf-8", "replace")
    md = (out / "report.md").read_bytes().decode("utf-8")
    html = (out / "index.html").read_bytes().decode("utf-8")
    for name in ("`résumé ✓`", "`-dash`", "`new\\nline`", "` lead space`"):
        assert name in md
    assert "<code>new\\nline</code>" in html and "Modèle réduit ✓ $\\frac{$" in html
    assert "Reference runs: <strong>référence ✓</strong>" in html
    assert (out / "minimodel_fig6.png").exists()
