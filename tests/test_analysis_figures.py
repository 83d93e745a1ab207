"""The figures read right: honest iteration units, one palette (colour = depth) in every figure, headings naming
the nets drawn, and the same bytes when the data did not change."""
from __future__ import annotations

import matplotlib.colors as mcolors
import pandas as pd

from analysis import figures, inspection, probes_figures, report
from analysis.load import load_runs, scan_runs
from runformat import BLOCK_RATIOS, LAYER_STATS
from tests.helpers.runs import EPOCHS, ITERS_PER_EPOCH, write_grid, write_inspection, write_probes, write_run


def test_short_runs_are_read_in_iterations_long_ones_in_thousands(tmp_path):
    runs = tmp_path / "runs"
    for depth in (20, 32):  # the smoke protocol's length: 3 epochs of 10 iterations
        run = write_run(runs, depth, False, 0, (80.0, 85.0), epochs=3, iterations=30)
        metrics = pd.read_csv(run / "metrics.csv")
        metrics.assign(iteration=metrics["epoch"] * 10).to_csv(run / "metrics.csv", index=False)
    ax = figures.fig1_plain(load_runs(runs)).axes[0]
    assert ax.get_xlabel() == "iterations"
    assert max(max(line.get_xdata()) for line in ax.get_lines()) == 30  # as counted, not 0.003 of 1e4
    long = figures.fig1_plain(load_runs(write_grid(tmp_path / "grid"))).axes[0]
    assert long.get_xlabel() == "iterations (thousands)"
    assert max(max(line.get_xdata()) for line in long.get_lines()) == EPOCHS * ITERS_PER_EPOCH / 1e3


def _colours(ax) -> dict:
    """{legend label: hex colour} of an axes' legend."""
    return {t.get_text(): mcolors.to_hex(h.get_color()) for t, h in zip(ax.get_legend().get_texts(),
                                                                       ax.get_legend().legend_handles)}


def test_one_colour_per_depth_in_every_figure_and_none_for_plain_or_resnet(tmp_path):
    runs = write_grid(tmp_path / "runs")
    for depth, residual in [(20, False), (56, False), (20, True), (56, True)]:
        run = runs / f"resnet_cifar-depth={depth}-residual={str(residual).lower()}-seed=0"
        write_probes(run, depth, residual)
        write_inspection(run, depth, residual)
    frame = load_runs(runs)
    runset = scan_runs(runs, warn=False)
    want = {d: mcolors.to_hex(c) for d, c in figures.DEPTH_COLOURS.items()}
    fig6 = figures.fig6(frame)
    for ax in fig6.axes[:2]:
        for label, colour in _colours(ax).items():
            assert colour == want[int(label.split("-")[1])], label
    stats = _quiet(probes_figures.scan_probes, runs, LAYER_STATS, runset).frame
    fig7 = probes_figures.fig7(stats)
    for line in fig7.axes[0].get_lines():
        net = line.get_label()
        assert mcolors.to_hex(line.get_color()) == want[int(net.split("-")[1])]
        assert line.get_linestyle() == ("-" if net.startswith("ResNet") else "--")  # plain vs ResNet: line style
    blocks = inspection.scan_inspection(runs, runset).frame(BLOCK_RATIOS)
    for ax in inspection.block_ratios(blocks, "resnet_cifar").axes:
        depth = int(ax.get_title().split()[-1])
        assert {mcolors.to_hex(line.get_color()) for line in ax.get_lines() if line.get_label()[0] != "_"} \
            == {want[depth]}
    # error against depth: the series in greys told apart by line style; every depth's point in its colour
    fig = figures.degradation(frame)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    series = {label: h[0] for h, label in zip(handles, labels) if label in ("plain", "ResNet")}  # errorbar: its line
    assert len(series) == 2
    assert {line.get_linestyle() for line in series.values()} == {"--", "-"}
    assert all(mcolors.to_hex(line.get_color()) not in want.values() for line in series.values())
    points = {mcolors.to_hex(c) for coll in fig.axes[0].collections for c in coll.get_facecolors()}
    assert {want[d] for d in (20, 32, 44, 56)} <= points
    assert "#d62728" not in want.values() and "#ff7f0e" not in want.values()  # no tab:red beside tab:orange


def test_the_report_names_the_nets_figure_1_draws(tmp_path):
    runs = tmp_path / "runs"
    for depth in (20, 32):  # the smoke report's case: no plain-56
        write_run(runs, depth, False, 0, (80.0, 85.0))
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", "none"]) == 0
    md = (out / "report.md").read_text()
    assert "## Figure 1: plain-20 vs plain-32" in md and "plain-56" not in md.split("## Figure 6")[0]
    assert "![Figure 1: plain-20 vs plain-32](fig1_plain.png)" in md
    assert figures.fig1_heading(load_runs(runs)) == "Figure 1: plain-20 vs plain-32"


def test_a_redraw_of_unchanged_data_writes_the_same_bytes(tmp_path):
    runs = write_grid(tmp_path / "runs")
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert report.main(["--runs", str(runs), "--out", str(out), "--reference", "none"]) == 0
    drawn = sorted(p.name for p in first.iterdir() if p.suffix in (".svg", ".png"))
    assert {"fig6.svg", "fig6.png", "degradation.svg"} <= set(drawn)
    for name in drawn:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    assert b"<dc:date>" not in (first / "fig6.svg").read_bytes()



def _quiet(read, *args):
    """A reader that warns about the runs without probe files (most of the grid, on purpose)."""
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return read(*args)
