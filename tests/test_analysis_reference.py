"""Reference runs drawn beneath a user's (analysis/reference.py, issue 14): which set `auto` picks, the dotted
curves on the figures' axes, the report's differences, and the --reference paths that must not serve."""
from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np
import pytest

from analysis import figures, reference, report
from analysis.load import load_runs
from tests.helpers.runs import EPOCHS, FINALS, ITERS_PER_EPOCH, curve, write_grid

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


def test_auto_prefers_the_same_data_and_says_when_it_differs(root, runs, tmp_path, drawn):
    cifar = {"source": "cifar10", "root": None}
    write_grid(root / "a-other-data" / "runs", REF_FINALS, data=cifar)  # same protocol, sorts first
    assert reference.choose(reference.AUTO, load_runs(runs), runs).reference.name == NAME
    (root / NAME).rename(tmp_path / "moved")
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    label = "dotted: reference, a-other-data (other data)"
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
                assert line.get_xdata()[-1] == pytest.approx(EPOCHS * ITERS_PER_EPOCH / 1e4)
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
    section = md.split("## Against the reference runs")[1].split("\n## ")[0]
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
