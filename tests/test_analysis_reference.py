"""Reference runs drawn beneath a user's (analysis/reference.py, issue 14): which set `auto` picks, the dotted
curves on the figures' axes, the report's differences, and the --reference paths that must not serve; then the
committed published set (issue 30) beneath paper-protocol runs, and the report's differences along the curves."""
from __future__ import annotations

import math
import os
import statistics
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import figures, reference, report
from analysis.load import load_runs
from runformat import METRICS
from tests.helpers.runs import EPOCHS, FINALS, ITERS_PER_EPOCH, curve, write_grid, write_run

# the reference's finals (train, test) per net: other numbers than FINALS, two seeds for plain-56 (its curve is the
# seed mean), and no plain-32 (that net is drawn alone)
REF_FINALS = {
    (20, False): [(2.0, 11.0)],
    (44, False): [(4.0, 14.5)],
    (56, False): [(5.0, 16.0), (6.0, 17.0)],
    (20, True): [(1.5, 10.0)],
    (32, True): [(1.2, 9.5)],
    (44, True): [(1.0, 9.0)],
    (56, True): [(0.8, 8.5)],
}
NAME = "quick-synthetic"


@pytest.fixture
def root(tmp_path, monkeypatch) -> Path:
    """A results/reference/ with the matching set, and one of another protocol that sorts first by name (so that
    taking the first set would take the wrong one)."""
    root = tmp_path / "reference"
    write_grid(root / NAME / "runs", REF_FINALS)
    write_grid(root / "a-paper" / "runs", {(20, False): [(9.0, 19.0)]}, protocol="paper")
    monkeypatch.setattr(reference, "ROOT", root)
    return root


@pytest.fixture
def runs(tmp_path) -> Path:
    return write_grid(tmp_path / "results" / "quick" / "runs")


@pytest.fixture
def drawn(monkeypatch) -> dict:
    """The Figures the report saves, by file stem: what it actually drew."""
    figs, save = {}, figures.save

    def keep(fig, out_dir, stem):
        figs[stem] = fig
        return save(fig, out_dir, stem)

    monkeypatch.setattr(figures, "save", keep)
    return figs


def dotted(ax) -> list:
    return [line for line in ax.get_lines() if line.get_linestyle() == ":"]


def legend_colours(ax) -> dict:
    return {h.get_label(): h.get_color() for h in ax.get_legend().legend_handles}


def mean_curve(finals, column: int) -> np.ndarray:
    """The seed mean of the curves the helpers wrote, computed here from the finals."""
    return np.mean([curve(f[column]) for f in finals], axis=0)


# ---- which reference ----------------------------------------------------------------------------------

def test_auto_picks_the_set_of_the_same_protocol(root, runs):
    choice = reference.choose(reference.AUTO, load_runs(runs), runs)
    assert choice.reference.name == NAME and choice.reference.protocols == {"quick"}
    assert not choice.reference.data_differs and choice.note == ""
    paper_runs = write_grid(runs.parent.parent / "paper" / "runs", {(20, False): [(1.0, 9.0)]}, protocol="paper")
    assert reference.choose(reference.AUTO, load_runs(paper_runs), paper_runs).reference.name == "a-paper"


def test_auto_ignores_a_set_of_another_protocol(root, runs, tmp_path, drawn):
    (root / NAME).rename(tmp_path / "moved")  # only the paper-protocol set is left
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert all(not dotted(ax) for fig in drawn.values() for ax in fig.axes)
    md = (out / "report.md").read_text()
    assert f"No reference runs of protocol `quick` under `{root}` (there: a-paper (paper))." in md
    assert "Against the reference runs" not in md


@pytest.mark.slow
def test_auto_prefers_the_same_data_and_says_when_it_differs(root, runs, tmp_path, drawn):
    cifar = {"source": "cifar10", "root": None}
    write_grid(root / "a-other-data" / "runs", REF_FINALS, data=cifar)  # same protocol, sorts first
    assert reference.choose(reference.AUTO, load_runs(runs), runs).reference.name == NAME
    (root / NAME).rename(tmp_path / "moved")
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    label = "dotted: reference, a-other-data\n(other data: original CIFAR-10)"
    assert [t.get_text() for t in drawn["fig6"].axes[0].get_legend().get_texts()][-1] == label
    md = (out / "report.md").read_text()
    assert ("**The data differ**: the reference used cifar10 (train 50,000 / test 10,000); these runs "
            "imagefolder datasets (train 50,000 / test 10,000).") in md


def test_nothing_published_says_nothing(runs, tmp_path):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0  # conftest: no results/reference/
    assert "reference runs" not in (out / "report.md").read_text().lower()


def test_reference_none_draws_none(root, runs, tmp_path, drawn, capsys):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", "none"]) == 0
    assert {"fig1_plain", "fig6", "degradation"} <= set(drawn)
    assert all(not dotted(ax) for fig in drawn.values() for ax in fig.axes)
    assert "reference runs" not in (out / "report.md").read_text().lower()
    assert "reference (dotted)" not in capsys.readouterr().out


# ---- the figures ----------------------------------------------------------------------------------------

def test_fig6_draws_each_nets_reference_dotted_in_its_colour(root, runs):
    frame = load_runs(runs)
    ref = reference.choose(reference.AUTO, frame, runs).reference
    fig = figures.fig6(frame, reference=ref)
    for ax, residual in zip(fig.axes, (False, True)):
        colours = legend_colours(ax)
        lines = dotted(ax)
        nets = [(d, r) for d, r in REF_FINALS if r == residual]
        assert len(lines) == 2 * len(nets)  # train and test of each net the reference has
        for depth, _ in nets:
            net = f"{'ResNet' if residual else 'plain'}-{depth}"
            mine = [l for l in lines if l.get_color() == colours[net]]
            for column, style in ((0, "--"), (1, "-")):  # Fig. 6: dashed = training error, bold = test error
                expected = mean_curve(REF_FINALS[(depth, residual)], column)
                line, = [l for l in mine if np.allclose(l.get_ydata(), expected)]
                assert line.get_xdata()[-1] == pytest.approx(EPOCHS * ITERS_PER_EPOCH / 1e3)
                own, = [l for l in ax.get_lines() if l.get_linestyle() == style and l.get_color() == colours[net]]
                assert line.get_linewidth() < own.get_linewidth() and line.get_zorder() < own.get_zorder()  # beneath
        assert ax.get_legend().get_texts()[-1].get_text() == f"dotted: reference, {NAME}"
    # plain-32 has no reference: its colour has no dotted line
    assert not [l for l in dotted(fig.axes[0]) if l.get_color() == legend_colours(fig.axes[0])["plain-32"]]


def test_fig1_and_degradation_through_the_report(root, runs, tmp_path, drawn):
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    train_ax, test_ax = drawn["fig1_plain"].axes
    for ax, column in ((train_ax, 0), (test_ax, 1)):
        colours = legend_colours(ax)
        by_colour = {l.get_color(): l.get_ydata() for l in dotted(ax)}
        assert len(dotted(ax)) == 2
        for depth in (20, 56):
            assert by_colour[colours[f"plain-{depth}"]] == pytest.approx(mean_curve(REF_FINALS[(depth, False)], column))
    # error against depth: the reference's final means as hollow markers, in the series' colour
    train_ax, test_ax = drawn["degradation"].axes
    for ax, column in ((train_ax, 0), (test_ax, 1)):
        hollow = {l.get_label(): l for l in dotted(ax)}
        plain = hollow[f"plain: reference, {NAME}"]
        assert plain.get_markerfacecolor() == "none" and list(plain.get_xdata()) == [20, 44, 56]
        assert list(plain.get_ydata()) == pytest.approx(
            [statistics.mean(f[column] for f in REF_FINALS[(d, False)]) for d in (20, 44, 56)])
        assert plain.get_color() == ax.containers[0].lines[0].get_color()  # the user's plain series
        assert [t.get_text() for t in ax.get_legend().get_texts()][-2:] == [
            f"plain: reference, {NAME}", f"ResNet: reference, {NAME}"]  # after ours


# ---- the report ----------------------------------------------------------------------------------------

def test_report_differences_equal_the_synthetic_finals(root, runs, tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    assert f"reference (dotted): {root / NAME}" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    section = md.split("## Against the reference runs")[1].split("\n## ")[0].split("\n### ")[0]  # the finals
    assert f"Reference runs: **{NAME}** (`{root / NAME}`, protocol `quick`)" in section
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in section.splitlines() if line.startswith("| "))}
    for (depth, residual), ref_finals in REF_FINALS.items():
        net = f"{'ResNet' if residual else 'plain'}-{depth}"
        ours = FINALS[(depth, residual)]
        cells = rows[net]
        for i, column in ((0, 0), (3, 1)):
            mine, theirs = statistics.mean(f[column] for f in ours), statistics.mean(f[column] for f in ref_finals)
            assert cells[i] == f"{mine:.2f} (n={len(ours)})" and cells[i + 1] == f"{theirs:.2f} (n={len(ref_finals)})"
            assert float(cells[i + 2]) == pytest.approx(mine - theirs, abs=0.005 + 1e-9)  # rounded to 2 decimals
    assert "plain-32" not in rows and "No reference for: plain-32." in section
    assert "### Along the curves" in md  # these runs reach 64,002 iterations, past its points


# ---- --reference paths that must not serve --------------------------------------------------------------

@pytest.mark.parametrize("make", ["missing", "no-runs", "other-protocol"])
def test_a_bad_reference_is_one_line_exit_2_and_nothing_written(runs, tmp_path, capsys, make):
    given = tmp_path / "given"
    if make == "no-runs":
        (given / "empty-run").mkdir(parents=True)
    if make == "other-protocol":
        write_grid(given, REF_FINALS, protocol="paper")
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", str(given)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: --reference {given}: ")
    assert err[0].endswith("or --reference none")
    assert {"missing": "no such directory", "no-runs": "no readable runs there",
            "other-protocol": "its runs are protocol `paper`, yours `quick`"}[make] in err[0]
    assert not out.exists()


@pytest.mark.parametrize("form", ["runs", "parent"])
def test_a_reference_that_is_runs_itself_is_not_drawn(runs, tmp_path, drawn, capsys, form):
    given = runs if form == "runs" else runs.parent  # results/quick and results/quick/runs are the same runs
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", str(given)]) == 0
    assert all(not dotted(ax) for fig in drawn.values() for ax in fig.axes)
    assert "Against the reference runs" not in (out / "report.md").read_text()
    assert f"note: `{given}` holds the same runs as --runs: not drawn over themselves." in capsys.readouterr().err


def test_auto_never_draws_a_reference_over_itself(root, tmp_path, drawn):
    """Redrawing a published reference's own figures: `auto` finds its set under results/reference/ and skips it."""
    out = tmp_path / "out"
    assert report.main(["--runs", str(root / NAME / "runs"), "--out", str(out)]) == 0
    assert all(not dotted(ax) for fig in drawn.values() for ax in fig.axes)
    assert "Against the reference runs" not in (out / "report.md").read_text()


# ---- the published set (results/reference/a-martyn-cifar10, issue 30) --------------------------------------------

PUBLISHED = Path(reference.__file__).resolve().parents[1] / "results" / "reference" / "a-martyn-cifar10"  # committed
JPEG = {"root": "../shared/datasets/cifar10-jpeg/cifar10-jpeg.tar.gz"}  # this project's copy (write_run's imagefolder)
CIFAR10 = {"source": "cifar10", "root": None}                             # the original files
# the user's paper-protocol rows: epochs of 390 iterations, the last one short, at 64,000
PAPER_ITERATIONS = [390 * e for e in range(1, 165)] + [64_000]
# at each report point, the row at or before it on each side (ours: 390 an epoch; the published set: 391)
ROWS_USED = {10_000: (9_750, 9_775), 32_000: (31_980, 31_671), 48_000: (47_970, 47_702), 64_000: (64_000, 63_733)}


def paper_err(depth: int, iteration: int, column: str) -> float:
    """The user's synthetic curves: known at every iteration, so the tests can say what each cell must hold."""
    train = 40.0 * math.exp(-iteration / 15_000) + depth / 20
    return round(train + (6.0 if column == "test_err" else 0.0), 4)


def paper_runs(runs_dir: Path, data: dict, nets=((20, False), (56, False), (56, True)), stop: int | None = None) -> Path:
    """`stop`: the runs were interrupted at that iteration (their rows end there)."""
    iterations = [it for it in PAPER_ITERATIONS if stop is None or it <= stop]
    for depth, residual in nets:
        run = write_run(runs_dir, depth, residual, 0, (0.0, 0.0), protocol="paper", iterations=64_000, data=data,
                        status="completed" if stop is None else "interrupted")
        rows = pd.read_csv(run / METRICS.file).iloc[[0] * len(iterations)].reset_index(drop=True)
        rows["epoch"], rows["iteration"] = range(1, len(iterations) + 1), iterations
        for column in ("train_err", "test_err"):
            rows[column] = [paper_err(depth, it, column) for it in iterations]
        rows.to_csv(run / METRICS.file, index=False)
    return runs_dir


def published_rows(stem: str) -> pd.DataFrame:
    return pd.read_csv(PUBLISHED / "runs" / stem / METRICS.file).set_index("iteration")


@pytest.fixture
def published_root(tmp_path, monkeypatch) -> Path:
    """A results/reference/ holding only the committed published set, so that sets published later cannot change
    what these tests expect."""
    root = tmp_path / "reference"
    root.mkdir()
    (root / PUBLISHED.name).symlink_to(PUBLISHED, target_is_directory=True)
    monkeypatch.setattr(reference, "ROOT", root)
    return root


def test_paper_runs_get_the_published_set_beneath_them(published_root, tmp_path, drawn, capsys):
    """What `make plots` (--reference auto) does for paper-protocol runs on the JPEG copy with no reference of the
    project's own: the published curves dotted, labelled with their source and data, and the report's differences
    along the curves."""
    runs = paper_runs(tmp_path / "results" / "paper" / "runs", JPEG)
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    said, = [line for line in capsys.readouterr().out.splitlines() if line.startswith("reference (dotted): ")]
    assert said.endswith(f"/{PUBLISHED.name}")
    plain_ax = drawn["fig6"].axes[0]
    label = "dotted: reference, a-martyn/resnet, published\n(other data: original CIFAR-10)"
    assert plain_ax.get_legend().get_texts()[-1].get_text() == label
    theirs = published_rows("plainnet20")
    lines = {tuple(l.get_ydata()): l for l in dotted(plain_ax)}
    for column in ("train_err", "test_err"):  # the published numbers, at their own iterations
        line = lines[tuple(theirs[column])]
        assert list(line.get_xdata()) == pytest.approx(list(theirs.index / 1e3))
        assert line.get_color() == legend_colours(plain_ax)["plain-20"]

    md = (out / "report.md").read_text()
    section = md.split("## Against the reference runs")[1].split("\n## ")[0]
    assert "**Published curves, not runs of this harness**: a-martyn/resnet at commit `a977915` (BSD-3-Clause)" in section
    assert "**The data differ**: the reference used cifar10 (train 50,000 / test 10,000)" in section
    assert ("Training error: these runs record the running error over each epoch's training mini-batches, in training "
            "mode; the reference the error after each epoch, in eval mode, over the whole training set. These are not "
            "the same measure") in section
    along = section.split("### Along the curves")[1]
    tables = {what: {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("| "))}
        for what, part in zip(("test_err", "train_err"), along.split("**Training error**"))}
    for stem, net, depth in (("plainnet20", "plain-20", 20), ("resnet56", "ResNet-56", 56)):
        theirs = published_rows(stem)
        for column, cells in ((c, tables[c][net]) for c in ("test_err", "train_err")):
            for cell, (ours_at, theirs_at) in zip(cells, ROWS_USED.values()):
                mine, ref = paper_err(depth, ours_at, column), theirs.loc[theirs_at, column]
                assert cell == f"{mine - ref:+.2f} ({mine:.2f} vs {ref:.2f})"
            mine, ref = paper_err(depth, 64_000, column), theirs[column].iloc[-1]  # the end: 64,000 and 64,124
            assert cells[-1] == f"{mine - ref:+.2f} ({mine:.2f} vs {ref:.2f})"
    assert ("Rows used (iteration): near 10,000: yours 9,750, the reference's 9,775; near 32,000: yours 31,980, the "
            "reference's 31,671; near 48,000: yours 47,970, the reference's 47,702; near 64,000: yours 64,000, the "
            "reference's 63,733.") in along


def test_unfinished_runs_meet_the_reference_where_they_stop_not_at_its_end(published_root, tmp_path):
    """Runs interrupted at 26,130 of 64,000 iterations: their last epoch beside the reference's end (64,124) would
    measure the 59% of training they miss, so each side is taken at 26,130 (the reference's row at 25,806)."""
    runs = paper_runs(tmp_path / "results" / "paper" / "runs", JPEG, stop=26_130)
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    section = (out / "report.md").read_text().split("## Against the reference runs")[1].split("\n## ")[0]
    finals, along = section.split("### Along the curves")
    assert ("**These runs stop short of the reference's end** (26,130 of its 64,124 iterations): each net is compared "
            "with the reference's row at or before its last iteration (the reference's 25,806), not with the "
            "reference's end") in finals
    header, = [line for line in finals.splitlines() if line.startswith("| net ")]
    assert header == ("| net | train err. | reference at 26,130 | diff. (points) | test err. | reference at 26,130 | "
                      "diff. (points) |")
    rows = {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in finals.splitlines() if line.startswith("| "))}
    tables = {what: {cells[0]: cells[1:] for cells in (
        [c.strip() for c in line.strip("|").split("|")] for line in part.splitlines() if line.startswith("| "))}
        for what, part in zip(("test_err", "train_err"), along.split("**Training error**"))}
    for stem, net, depth in (("plainnet20", "plain-20", 20), ("resnet56", "ResNet-56", 56)):
        theirs = published_rows(stem)
        for i, column in ((0, "train_err"), (3, "test_err")):
            mine, ref = paper_err(depth, 26_130, column), theirs.loc[25_806, column]
            assert rows[net + " †"][i + 1] == f"{ref:.2f} (n=1)" and float(rows[net + " †"][i + 2]) == pytest.approx(
                mine - ref, abs=0.005 + 1e-9)
            assert tables[column]["net"][-1] == "at 26,130"
            assert tables[column][net][-1] == f"{mine - ref:+.2f} ({mine:.2f} vs {ref:.2f})"
            assert ref != theirs[column].iloc[-1]  # not the reference's end
    assert "near 10,000 iterations and at your last iteration (26,130)." in along
    assert "at 26,130: the reference's 25,806." in along


def test_unfinished_runs_against_depth_meet_the_reference_where_they_stop(published_root, tmp_path, drawn):
    """Figure 'error against depth' of runs interrupted at 26,130: the reference's hollow markers are its rows at
    25,806 (at or before 26,130), not its end, and say so; "unfinished" is said once in the title, not at each point;
    the legend sits below the panels."""
    runs = paper_runs(tmp_path / "runs", JPEG, stop=26_130)
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    fig = drawn["degradation"]
    assert "every run unfinished, at iteration 26,130" in fig.get_suptitle()
    for ax, column in zip(fig.axes, ("train_err", "test_err")):
        plain, = [line for line in dotted(ax) if "plain: reference" in line.get_label()]
        assert "(at iteration 26,130, where ours stop)" in plain.get_label()
        expected = [published_rows(stem).loc[25_806, column] for stem in ("plainnet20", "plainnet56")]
        assert list(plain.get_xdata()) == [20, 56] and list(plain.get_ydata()) == pytest.approx(expected)
        assert [published_rows(s)[column].iloc[-1] for s in ("plainnet20", "plainnet56")] != pytest.approx(expected)
        assert not [t for t in ax.texts if t.get_text() == "unfinished"]
        legend = ax.get_legend()
        assert legend.get_bbox_to_anchor().y1 < ax.get_window_extent().y0 + 1  # below the axes
    # finished runs: the reference's end, as before
    done = paper_runs(tmp_path / "done", JPEG)
    assert report.main(["--runs", str(done), "--out", str(tmp_path / "out2")]) == 0
    plain, = [line for line in dotted(drawn["degradation"].axes[1]) if "plain: reference" in line.get_label()]
    assert "where ours stop" not in plain.get_label() and "unfinished" not in drawn["degradation"].get_suptitle()
    assert list(plain.get_ydata()) == pytest.approx([published_rows(s)["test_err"].iloc[-1]
                                                     for s in ("plainnet20", "plainnet56")])


def test_reference_none_draws_no_published_set(published_root, tmp_path, drawn):
    runs = paper_runs(tmp_path / "runs", JPEG)
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", "none"]) == 0
    assert {"fig1_plain", "fig6", "degradation"} <= set(drawn)
    assert all(not dotted(ax) for fig in drawn.values() for ax in fig.axes)
    assert "Against the reference runs" not in (out / "report.md").read_text()


def test_a_set_of_our_own_comes_before_the_published_one(published_root, tmp_path):
    user_jpeg = paper_runs(tmp_path / "jpeg", JPEG)
    user_cifar = paper_runs(tmp_path / "cifar", CIFAR10)
    assert reference.choose(reference.AUTO, load_runs(user_jpeg), user_jpeg).reference.source == "a-martyn/resnet"
    # ours on other data than the user's, like the published set: ours first though the published name sorts first
    write_grid(published_root / "paper-other" / "runs", {(20, False): [(1.0, 9.0)]}, protocol="paper",
               data={"root": "/data/another-copy"})
    choice = reference.choose(reference.AUTO, load_runs(user_jpeg), user_jpeg).reference
    assert choice.name == "paper-other" and choice.data_differs and not choice.published
    # the published set on the user's data comes before ours on other data
    choice = reference.choose(reference.AUTO, load_runs(user_cifar), user_cifar).reference
    assert choice.name == PUBLISHED.name and not choice.data_differs
    assert choice.label == "reference, a-martyn/resnet, published"
    # and ours on the user's data before anything else
    write_grid(published_root / "paper-cifar10jpeg" / "runs", {(20, False): [(1.0, 9.0)]}, protocol="paper", data=JPEG)
    assert reference.choose(reference.AUTO, load_runs(user_jpeg), user_jpeg).reference.name == "paper-cifar10jpeg"


def test_a_finished_set_comes_before_an_unfinished_one_which_says_where_it_stops(published_root, tmp_path, drawn):
    """Our own sweep on the user's data, interrupted halfway, against the published finished set on other data: the
    finished one is drawn; alone, the unfinished one is, and the legend and the report say where it stops."""
    user = write_grid(tmp_path / "user", {(20, False): [(1.0, 9.0)], (56, False): [(3.0, 13.0)]}, protocol="paper",
                      data=JPEG)
    write_grid(published_root / "paper-cifar10jpeg" / "runs", {(20, False): [(9.0, 19.0)], (56, False): [(8.0, 18.0)]},
               protocol="paper", data=JPEG, status="interrupted", epochs=3)
    chosen = reference.choose(reference.AUTO, load_runs(user), user)
    choice = chosen.reference
    assert choice.name == PUBLISHED.name and choice.finished
    # the set passed over is named, with why and how to draw it instead
    assert chosen.note == (f"Also there, not drawn: `paper-cifar10jpeg` (the same data, unfinished: stops at "
                           f"iteration {3 * ITERS_PER_EPOCH:,} of {EPOCHS * ITERS_PER_EPOCH:,}): a finished reference "
                           f"comes first (`--reference {published_root / 'paper-cifar10jpeg' / 'runs'}` draws it).")
    (published_root / PUBLISHED.name).unlink()  # the unfinished set is the only match
    alone = reference.choose(reference.AUTO, load_runs(user), user).reference
    assert alone.name == "paper-cifar10jpeg" and not alone.finished and not alone.data_differs
    stops = f"unfinished: stops at iteration {3 * ITERS_PER_EPOCH:,} of {EPOCHS * ITERS_PER_EPOCH:,}"
    assert alone.label == f"reference, paper-cifar10jpeg\n({stops})"
    out = tmp_path / "out"
    assert report.main(["--runs", str(user), "--out", str(out)]) == 0
    legend = [t.get_text() for t in drawn["fig6"].axes[0].get_legend().get_texts()]
    assert legend[-1] == f"dotted: reference, paper-cifar10jpeg\n({stops})"
    section = (out / "report.md").read_text().split("## Against the reference runs")[1].split("\n## ")[0]
    assert f"**The reference is unfinished** ({stops} iterations)" in section
    # its nets have no completed run: their unfinished ones are the reference, not "no reference"
    assert "No reference for" not in section
    assert f"| plain-20 | 1.00 (n=1) | {curve(9.0)[2]:.2f} (n=1) |" in section


def test_a_point_counts_only_runs_that_reach_it():
    rows = pd.DataFrame({"run": ["a"] * 3 + ["b"] * 2, "iteration": [100, 200, 300, 100, 200],
                         "test_err": [30.0, 20.0, 10.0, 50.0, 40.0]})
    assert reference.at_iteration(rows, "test_err", 150) == reference.AtIteration(100, 40.0, 2)  # at or before
    assert reference.at_iteration(rows, "test_err", 250) == reference.AtIteration(200, 20.0, 1)  # b stopped at 200
    assert reference.at_iteration(rows, "test_err", 50) is None  # no row at or before it
    assert reference.at_iteration(rows, "test_err", 400) is None  # nobody got there


@pytest.mark.parametrize("ours, theirs, expected", [
    (("running",), ("running",), "Training error: both sides record the running error"),
    (("running",), ("eval_after_epoch",), "These are not the same measure"),
    (("",), ("eval_after_epoch",), "these runs record not recorded (run.json without `train_err_measure`); the "
                                   "reference the error after each epoch"),
])
def test_the_report_says_which_training_error_each_side_measured(ours, theirs, expected):
    assert expected in reference.say_measures(ours, theirs)


@pytest.mark.slow
def test_make_plots_draws_the_published_set_and_reference_none_none(tmp_path):
    """`make plots` itself, with the checkout's results/reference/: paper-protocol runs on the original CIFAR-10 get the
    published set (the same data, so it is chosen whatever else is published), REFERENCE=none gets none."""
    paper_runs(tmp_path / "paper" / "runs", CIFAR10)
    root = Path(reference.__file__).resolve().parents[1]
    env = {k: v for k, v in os.environ.items() if k not in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS")}
    for option, drawn_set in (("auto", True), ("none", False)):
        r = subprocess.run(["make", "plots", "PROTOCOL=paper", f"RESULTS={tmp_path}", f"REFERENCE={option}"], cwd=root,
                           capture_output=True, text=True, timeout=300, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        md = (tmp_path / "paper" / "report.md").read_text()
        assert ("reference (dotted): results/reference/a-martyn-cifar10" in r.stdout) == drawn_set
        assert ("**Published curves, not runs of this harness**: a-martyn/resnet" in md) == drawn_set
        assert ("### Along the curves" in md) == drawn_set and "The data differ" not in md
