"""Run files from elsewhere (issue 31, and issue 35's analysis side): each odd file or value is read or refused by one
rule (analysis/inputs.py, load.read_table), named among the problems, and costs only itself: the rest of the run, the
other runs and the report go on, and nothing reaches a figure as inf or nan."""
from __future__ import annotations

import csv
import math
import os
import signal
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import figures, inspection, report
from analysis.inputs import MAX_BYTES
from analysis.load import scan_runs
from runformat import LAYER_STATS, LESION, METRICS, RUN_JSON
from tests.helpers.runs import EPOCHS, ITERS_PER_EPOCH, edit_run_json, write_inspection, write_probes, write_run

ODD = "odd"


@pytest.fixture
def runs(tmp_path) -> Path:
    """plain-20 and plain-56, as the harness writes them: the report has its Figure 1 whatever the odd run does."""
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (1.0, 9.0))
    write_run(runs, 56, False, 0, (3.0, 13.0))
    return runs


def odd_run(runs: Path, **kw) -> Path:
    """ResNet-20, six epochs, named `odd`: the run each test makes odd."""
    return write_run(runs, 20, True, 0, (0.8, 8.6), name=ODD, **kw)


def scan(runs: Path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scan_runs(runs)


def problems(result, run: str = ODD) -> list[str]:
    return [p[len(run) + 2:] for p in result.problems if p.startswith(f"{run}: ")]


def rows(result, run: str = ODD) -> pd.DataFrame:
    return result.frame[result.frame["run"] == run]


def edit_metrics(run_dir: Path, change) -> None:
    """`change(rows)`: alter metrics.csv's rows (a list of dicts of strings) in place."""
    with open(run_dir / METRICS.file, newline="") as f:
        table = list(csv.DictReader(f))
    change(table)
    with open(run_dir / METRICS.file, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)


def numeric(frame: pd.DataFrame) -> np.ndarray:
    return frame[list(METRICS.numeric)].astype(float).to_numpy()


# ---- values in metrics.csv ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["inf", "-inf", "1e400", "Infinity"])
def test_a_value_that_is_not_finite_is_emptied_and_its_row_dropped(runs, value):
    run = odd_run(runs)
    edit_metrics(run, lambda t: t[-1].update(train_err=value))
    result = scan(runs)
    assert "metrics.csv: 1 cell(s) not finite (train_err): made empty" in problems(result)
    assert sorted(rows(result)["epoch"]) == list(range(1, EPOCHS))  # the last epoch has no training error now
    values = numeric(result.frame)
    assert not np.isinf(values).any()


def test_inf_in_an_error_column_gives_a_report_with_finite_axes(runs, tmp_path, quick_figures):
    """Issue 31's case: `inf` as a final training error ended the report in figures._limits (OverflowError), after
    Table 6 printed `inf`."""
    run = odd_run(runs)
    edit_metrics(run, lambda t: t[-1].update(train_err="inf", test_err="inf"))
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert "inf" not in (out / "table6.md").read_text() and "inf" not in (out / "table6.csv").read_text()
    assert "odd: metrics.csv: 2 cell(s) not finite (train_err, test_err): made empty" in (out / "report.md").read_text()
    for ax in figures.fig6(scan(runs).frame).axes:
        assert all(math.isfinite(v) for v in (*ax.get_ylim(), *ax.get_xlim()))


@pytest.mark.parametrize("column, value, reason, kept", [
    ("train_err", "abc", "not a number", False),              # mixed types
    ("test_err", "9,5", "not a number", False),               # a decimal comma
    ("train_err", "-1", "an error outside 0-100 %", False),
    ("test_err", "100.5", "an error outside 0-100 %", False),
    ("val_err", "150", "an error outside 0-100 %", True),     # optional: the row stays, without it
    ("epoch", "5.5", "not a whole number >= 0", False),        # epochs that are not integers
    ("iteration", "-391", "not a whole number >= 0", False),
    ("depth", "20.7", "not a whole number >= 0", False),       # was read as ResNet-20
    ("depth", "inf", "not finite", False),
    ("seed", "0.5", "not a whole number >= 0", True),          # optional: the row stays, seed unknown
])
def test_a_cell_that_is_not_what_its_column_holds_is_emptied(runs, column, value, reason, kept):
    run = odd_run(runs)
    edit_metrics(run, lambda t: t[2].update({column: value}))
    result = scan(runs)
    assert f"metrics.csv: 1 cell(s) {reason} ({column}): made empty" in problems(result)
    assert len(rows(result)) == (EPOCHS if kept else EPOCHS - 1)
    assert set(rows(result)["net"]) == {"ResNet-20"}
    if kept:
        assert rows(result).sort_values("epoch")[column].isna().iloc[2]


@pytest.mark.parametrize("column, value", [("test_err", "nan"), ("test_err", ""), ("residual", "maybe")])
def test_an_empty_or_unknown_required_value_drops_its_row(runs, column, value):
    run = odd_run(runs)
    edit_metrics(run, lambda t: t[0].update({column: value}))
    result = scan(runs)
    assert any(p.startswith("metrics.csv: 1 row(s) with missing required values dropped") for p in problems(result))
    assert not any("made empty" in p for p in problems(result))  # an empty cell or "nan" is no odd value
    assert sorted(rows(result)["epoch"]) == list(range(2, EPOCHS + 1))


def test_an_empty_identity_cell_comes_from_run_json(runs):
    """NaN in an identity column the run's config gives (seed): the config's value, as for a column left out."""
    run = odd_run(runs)
    edit_metrics(run, lambda t: [r.update(seed="") for r in t])
    assert (rows(scan(runs))["seed"] == 0).all()


@pytest.mark.parametrize("form", ["crlf", "cr", "bom"])
def test_crlf_cr_and_a_bom_read_as_the_plain_file(runs, form):
    run = odd_run(runs)
    plain = numeric(rows(scan(runs)))
    for name in (METRICS.file, RUN_JSON):
        content = (run / name).read_text()
        content = {"crlf": content.replace("\n", "\r\n"), "cr": content.replace("\n", "\r"), "bom": "\ufeff" + content}[form]
        (run / name).write_bytes(content.encode("utf-8"))
    result = scan(runs)
    assert problems(result) == []
    np.testing.assert_array_equal(numeric(rows(result)), plain)
    assert (rows(result)["status"] == "completed").all() and rows(result)["finished"].all()


def test_lines_with_nul_bytes_are_dropped(runs):
    """A machine that crashes can leave a block of zeros where the end of a file was."""
    run = odd_run(runs)
    content = (run / METRICS.file).read_bytes()
    lines = content.splitlines(keepends=True)
    lines[3] = lines[3][:10] + b"\0" + lines[3][10:]
    (run / METRICS.file).write_bytes(b"".join(lines) + b"\0" * 4096)
    result = scan(runs)
    assert "metrics.csv: 2 line(s) with NUL bytes dropped" in problems(result)
    assert sorted(rows(result)["epoch"]) == [1, 2, 4, 5, 6]


def test_a_huge_line_is_one_malformed_line(runs):
    run = odd_run(runs)
    with open(run / METRICS.file, "a") as f:
        f.write("1," * 2_500_000 + "1\n")  # 5 MB, more fields than the header
    start = time.perf_counter()
    result = scan(runs)
    assert time.perf_counter() - start < 30
    assert "metrics.csv: 1 malformed line(s) dropped" in problems(result)
    assert len(rows(result)) == EPOCHS


def test_a_header_alone_is_a_run_with_no_rows(runs):
    run = odd_run(runs)
    (run / METRICS.file).write_text(",".join(METRICS.columns) + "\n")
    result = scan(runs)
    assert "metrics.csv has no complete epoch rows" in problems(result)
    assert rows(result).empty and ODD in set(result.runs["run"])


def test_columns_in_another_order_read_the_same(runs):
    run = odd_run(runs)
    plain = numeric(rows(scan(runs)))
    frame = pd.read_csv(run / METRICS.file)
    frame[frame.columns[::-1]].to_csv(run / METRICS.file, index=False)
    result = scan(runs)
    assert problems(result) == []
    np.testing.assert_array_equal(numeric(rows(result)), plain)


# ---- the order of rows --------------------------------------------------------------------------------------------

def test_an_epoch_logged_twice_keeps_the_later_row(runs):
    run = odd_run(runs)
    edit_metrics(run, lambda t: t.insert(4, {**t[2], "train_err": "55.0"}))  # epoch 3 again, after epoch 4
    result = scan(runs)
    # epoch 4 came before the second epoch 3: a resumed writer's later rows replace it from there
    assert ("metrics.csv: 2 row(s) superseded by later rows at or before their iteration (the writer resumed or "
            "started over), later rows kept") in problems(result)
    assert sorted(rows(result)["epoch"]) == [1, 2, 3, 5, 6]
    assert rows(result).set_index("epoch").loc[3, "train_err"] == 55.0


def test_a_writer_that_started_over_replaces_the_old_rows(runs):
    """Iteration going backwards: a second run appended to the first's file; the old rows beyond the restart must
    not be mixed with the new ones."""
    run = odd_run(runs)
    edit_metrics(run, lambda t: t.extend({**r, "train_err": "70.0"} for r in t[:2]))
    result = scan(runs)
    assert any(p.startswith("metrics.csv: 6 row(s) superseded") for p in problems(result))
    assert sorted(rows(result)["epoch"]) == [1, 2] and (rows(result)["train_err"] == 70.0).all()


def test_rows_whose_epoch_does_not_grow_with_the_iteration_are_dropped(runs):
    run = odd_run(runs)
    edit_metrics(run, lambda t: t[3].update(epoch="2"))  # epochs 1, 2, 3, 2, 5, 6 at growing iterations
    result = scan(runs)
    assert "metrics.csv: 1 row(s) whose epoch does not grow with the iteration dropped" in problems(result)
    assert sorted(rows(result)["iteration"]) == [e * ITERS_PER_EPOCH for e in (1, 2, 3, 5, 6)]


# ---- run.json -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("content, reason", [
    (b"[]", "a JSON list, not an object"),
    (b'"completed"', "a JSON string, not an object"),
    (b"null", "a JSON null, not an object"),
    (b'{"status": "completed", "status": "failed"}', "the key 'status' twice in one object"),
    (b'{"status": "completed", "num_params": NaN}', "NaN is not a JSON number"),
    (b'{"status": "completed", "num_params": 1e400}', "the number 1e400 is out of range"),
    (b'{"status": "completed", "num_params": ' + b"7" * 5000 + b"}", "not JSON: Exceeds the limit"),
    (b"[" * 200_000 + b"]" * 200_000, "nested deeper than a JSON reader allows"),
    (b'{"status": "compl\xe9ted"}', "not UTF-8 text (byte 17)"),
    (b"", "not JSON: Expecting value at line 1 column 1"),
])
def test_a_run_json_that_is_not_strict_json_object_is_unreadable(runs, content, reason):
    run = odd_run(runs)
    (run / RUN_JSON).write_bytes(content)
    result = scan(runs)
    said = problems(result)[0]
    assert said.startswith(f"run.json unreadable ({reason}") and said.endswith("status unknown, treated as unfinished")
    assert len(rows(result)) == EPOCHS and (rows(result)["status"] == "unknown").all()  # its rows are still read


def test_protocol_iterations_of_another_shape_leave_the_run_unfinished(runs):
    run = odd_run(runs)
    edit_run_json(run, lambda info: info["config"]["protocol"].update(iterations={"total": 2346}))
    result = scan(runs)
    assert ("run.json's config.protocol.iterations is a JSON object, not a whole number: where the run should end is "
            "unknown, so it counts as unfinished") in problems(result)
    assert not rows(result)["finished"].any() and rows(result)["status"].eq("completed").all()


def test_a_depth_from_run_json_that_is_not_a_whole_number_drops_the_rows(runs):
    run = odd_run(runs)
    edit_metrics(run, lambda t: [r.update(depth="") for r in t])  # the depth must come from run.json
    edit_run_json(run, lambda info: info["config"].update(depth=1e300))
    result = scan(runs)
    assert f"metrics.csv: {EPOCHS} cell(s) not a whole number >= 0 (depth): made empty" in problems(result)
    assert rows(result).empty


@pytest.mark.slow
def test_run_json_values_of_any_shape_never_stop_the_report(runs, tmp_path, quick_figures):
    """Every key of run.json (the harness's, init and inspection included) given each odd value, in three ways (every
    value; every value but the status, so that the run counts as completed; every list and object at the top): each
    run costs only what its keys said, and the report is written."""
    hostile = [None, [], {}, "", "<b>x</b>", -1, 1e300, True, "x" * 10_000, {"a": [1, {"b": None}]}, "2026-13-45"]

    def replace(node, value):
        if isinstance(node, dict):
            return {k: replace(v, value) for k, v in node.items()}
        if isinstance(node, list):
            return [replace(v, value) for v in node] or value
        return value

    names = []
    for mode in ("leaves", "leaves but status", "objects"):
        for i, value in enumerate(hostile):
            names.append(f"{mode.replace(' ', '-')}-{i}")
            run = write_run(runs, 56, False, 1, (3.0, 13.0), name=names[-1], init_depth=20,
                            start={"test_err_deep": 9.0, "test_err_shallow": 9.0, "train_err_deep": 1.0})
            write_inspection(run, 56, False, notes=["constructed: not supported here"])

            def change(info, value=value, mode=mode):
                info.update(notes=["a note"], message="why", sessions=[
                    {"started_at": "2026-01-01T00:00:00+00:00", "from_iteration": 0, "device_name": "x"}])
                for key in list(info):
                    if mode == "objects":
                        info[key] = value if isinstance(info[key], (dict, list)) else info[key]
                    elif mode == "leaves" or key != "status":
                        info[key] = replace(info[key], value)
            edit_run_json(run, change)
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert all(f"`{name}`" in md for name in names)


# ---- names that become paths --------------------------------------------------------------------------------------

def test_family_names_that_are_not_one_safe_name_write_nothing_outside_out(runs, tmp_path, quick_figures):
    """Issue 35: `config.arch.name` (or `family.name`) `../../../../tmp/PWNED` made the report write PWNED_fig6.png
    and friends outside --out."""
    target = tmp_path / "elsewhere"
    target.mkdir()
    escape = os.path.relpath(target, tmp_path / "out") + "/PWNED"
    bad = {"traversal": escape, "hidden": ".hidden", "option": "-rf", "slash": "a/b", "long": "x" * 65, "space": "a b",
           "plus": "a+b"}
    for name, arch in bad.items():
        run = write_run(runs, 20, True, 0, (0.8, 8.6), name=name, arch=arch, family={"name": arch})
        if name == "slash":  # named by family.name alone, no config.arch
            edit_run_json(run, lambda info: info["config"].pop("arch"))
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert list(target.iterdir()) == []
    assert {p.name for p in tmp_path.iterdir()} == {"runs", "out", "elsewhere"}
    assert {p.name for p in out.iterdir()} == {f"{stem}.{ext}" for stem in ("fig1_plain", "fig6", "degradation")
                                              for ext in ("png", "svg")} | {"table6.md", "table6.csv", "report.md",
                                                                             "index.html"}
    md = (out / "report.md").read_text()
    for name in bad:
        assert f"- {name}: run.json names its family" in md and "not one safe name" in md
    assert "Figure 1" in md and (out / "fig1_plain.png").exists()  # the safe runs are drawn as ever


def test_a_family_label_that_is_not_one_safe_name_names_nets_by_the_family(runs):
    write_run(runs, 3, False, 0, (5.0, 20.0), arch="wrn", name=ODD,
              family={"name": "wrn", "label": "=HYPERLINK(\"x\")", "title": "Wide nets"})
    result = scan(runs)
    assert any(p.startswith("run.json's family.label '=HYPERLINK(\"x\")' is not one safe name") for p in problems(result))
    assert set(rows(result)["net"]) == {"wrn-plain-3"} and result.families["wrn"].title == "Wide nets"


# ---- files that are not regular files -----------------------------------------------------------------------------

@pytest.mark.slow
def test_fifos_are_not_read_and_the_report_ends(runs, tmp_path, quick_figures):
    """Issue 35: a FIFO named metrics.csv (or run.json, or a probe or inspection CSV) hung the report forever, with
    --reference too."""
    for name, file in [("fifo-metrics", METRICS.file), ("fifo-json", RUN_JSON), ("fifo-probe", LAYER_STATS.file),
                       ("fifo-lesion", LESION.file)]:
        run = write_run(runs, 20, True, 0, (0.8, 8.6), name=name)
        write_probes(run, 20, True)
        write_inspection(run, 20, True)
        (run / file).unlink()
        os.mkfifo(run / file)
    ref = tmp_path / "reference"
    write_run(ref, 20, False, 0, (2.0, 11.0))
    fifo = write_run(ref, 56, False, 0, (3.0, 13.0)) / METRICS.file
    fifo.unlink()
    os.mkfifo(fifo)
    out = tmp_path / "out"

    def hung(signum, frame):
        raise TimeoutError("the report hung on a FIFO")
    signal.signal(signal.SIGALRM, hung)
    signal.alarm(120)  # a blocking open() of a FIFO is interrupted by this, and the test fails instead of hanging
    try:
        assert report.main(["--runs", str(runs), "--out", str(out), "--reference", str(ref)]) == 0
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, signal.SIG_DFL)
    md = (out / "report.md").read_text()
    for name, file in [("fifo-metrics", METRICS.file), ("fifo-json", RUN_JSON), ("fifo-probe", LAYER_STATS.file),
                       ("fifo-lesion", LESION.file)]:
        assert f"{name}: {file} unreadable (not a regular file (a FIFO): not read)" in md


def test_links_are_followed_only_inside_their_run_directory(runs, tmp_path):
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "data.csv").write_text(",".join(METRICS.columns) + "\n")
    outside = odd_run(runs)
    (outside / METRICS.file).rename(secret / METRICS.file)
    (outside / METRICS.file).symlink_to(secret / METRICS.file)
    inside = write_run(runs, 56, True, 0, (0.3, 7.0), name="linked-inside")
    (inside / METRICS.file).rename(inside / "real.csv")
    (inside / METRICS.file).symlink_to("real.csv")
    (runs / "linked-dir").symlink_to(secret, target_is_directory=True)
    (runs / "zero").mkdir()
    (runs / "zero" / RUN_JSON).symlink_to("/dev/zero")
    result = scan(runs)
    assert "metrics.csv unreadable (a link to a place outside its run directory: not followed)" in problems(result)
    assert len(rows(result, "linked-inside")) == EPOCHS
    assert any(p.startswith(f"linked-dir: a link to a place outside {runs}") for p in result.problems)
    assert "linked-dir" not in set(result.runs["run"])
    assert problems(result, "zero")[0].startswith("run.json unreadable (a link to a place outside its run directory")


def test_a_device_under_a_run_file_name_is_not_read(runs):
    run = odd_run(runs)
    (run / RUN_JSON).unlink()
    try:
        os.mknod(run / RUN_JSON, 0o644 | 0o020000, os.makedev(1, 5))  # a character device: /dev/zero's numbers
    except (PermissionError, OSError) as err:
        pytest.skip(f"cannot make a device node here ({err.strerror})")
    said = problems(scan(runs))[0]
    assert said in ("run.json unreadable (not a regular file (a device): not read): status unknown, treated as "
                    "unfinished",
                    "run.json unreadable (cannot be opened (Permission denied)): status unknown, treated as unfinished")


def test_a_file_larger_than_the_limit_is_refused_unread(runs):
    run = odd_run(runs)
    with open(run / METRICS.file, "r+b") as f:
        f.truncate(2**30)  # 1 GiB, sparse: no disk used, and never read
    start = time.perf_counter()
    result = scan(runs)
    assert time.perf_counter() - start < 10
    assert (f"metrics.csv unreadable (1,024 MiB, more than the {MAX_BYTES // 2**20} MiB a run file may have: not "
            "read)") in problems(result)


def test_a_directory_under_a_run_file_name_is_not_read(runs):
    run = odd_run(runs)
    (run / METRICS.file).unlink()
    (run / METRICS.file).mkdir()
    assert "metrics.csv unreadable (not a regular file (a directory): not read)" in problems(scan(runs))


# ---- values only some readers use ---------------------------------------------------------------------------------

def test_a_session_start_that_is_not_a_time_is_left_out_of_the_wall_time(runs):
    run = odd_run(runs)
    edit_run_json(run, lambda info: info.update(sessions=[{"started_at": "yesterday", "from_iteration": 0},
                                                          {"started_at": 12, "from_iteration": 10**400}]))
    result = scan(runs)
    assert rows(result)["session_started_at"].isna().all()


def test_any_number_of_depths_gets_colours():
    colours = figures.depth_colours(range(2, 200, 6))
    assert len(colours) == 33 and colours[20] == figures.DEPTH_COLOURS[20]


def test_odd_values_in_json_are_read_in_their_own_shape(runs):
    run = odd_run(runs, init_depth=8, start={"test_err_deep": "low", "train_err_deep": 1.5, "unknown": 3})
    edit_run_json(run, lambda info: info.update(num_params=[1], notes="one note", data_description={"a": 1},
                                                device_name=7, inspection={"status": "done", "notes": 5}))
    result = scan(runs)
    frame = rows(result)
    assert frame["num_params"].isna().all() and frame["data_description"].isna().all()
    assert frame["device_name"].isna().all()  # a device name is a string: a number is no name
    assert result.runs.set_index("run").loc[ODD, "notes"] == []  # notes are a list
    found = inspection.scan_inspection(runs, result)
    assert found.starts.empty  # a start without the constructed net's test error is no start to draw or word
    assert not any(m.startswith(f"`{ODD}`") for m in found.missing)  # inspected, its notes of no shape


def test_a_start_without_its_training_error_is_drawn_from_its_test_error(runs, tmp_path, quick_figures):
    """init.start as an older or other writer may leave it: the figure of runs started from a constructed net was a
    KeyError when `train_err_deep` was missing."""
    odd_run(runs, init_depth=8, start={"test_err_deep": 9.0, "test_err_shallow": 9.0})
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert (out / "init_runs.png").exists() and "It starts at 9.00% test error" in (out / "report.md").read_text()


def test_runs_that_is_not_a_directory_is_one_line_and_exit_2(tmp_path, capsys):
    given = tmp_path / "runs"
    os.mkfifo(given)
    assert report.main(["--runs", str(given), "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err == f"error: no runs found under {given} (not a directory): run `make sweep` first\n"
    assert not (tmp_path / "out").exists()


def test_a_published_object_is_read_as_text_fields_only(runs):
    """run.json's `published` (another project's curve, runformat.PublishedInfo) names its source in the report: each
    field is one line of text, and one of another shape is left out."""
    from analysis.load import read_meta
    run = odd_run(runs)
    edit_run_json(run, lambda info: info.update(published={"repository": {"owner": "x"}, "license": ["MIT"],
                                                           "url": "https://example.org/a\nb", "commit": 12}))
    assert read_meta(run, []).published == {"url": "https://example.org/a\\nb", "commit": "12"}
    edit_run_json(run, lambda info: info.update(published="a-martyn/resnet"))
    assert read_meta(run, []).published is None


def test_counts_stay_whole_numbers_where_none_is_missing(runs, tmp_path, quick_figures):
    """The rules parse every count as a number; where none of a column is missing it stays an integer, so that
    table6.csv says `2346`, not `2346.0000`."""
    frame = scan(runs).frame
    assert str(frame["iteration"].dtype) == "int64" and str(frame["epoch"].dtype) == "int64"
    assert frame["init_depth"].isna().all()  # none given: empty, not 0
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert pd.read_csv(out / "table6.csv", dtype=str)["final_iteration"].tolist() == [str(EPOCHS * ITERS_PER_EPOCH)] * 2


def test_a_recipe_value_in_a_net_name_is_one_short_line(runs):
    """A run trained with another recipe is another net, named by the keys that differ (`ResNet-20 (lr=0.01)`): a value
    from run.json that is long or holds a newline must not become a name of that length, or of two lines."""
    write_run(runs, 20, True, 1, (0.8, 8.6), name="main-recipe")
    run = odd_run(runs)
    for other in runs.iterdir():  # a key every run records, so that it is compared
        edit_run_json(other, lambda info: info["config"]["protocol"].update(lr=0.1))
    edit_run_json(run, lambda info: info["config"]["protocol"].update(lr="x" * 10_000 + "\nnext"))
    names = set(rows(scan(runs))["net"])
    assert len(names) == 1 and all(len(n) < 120 and "\n" not in n and n.startswith("ResNet-20 (lr=xxx") for n in names)
