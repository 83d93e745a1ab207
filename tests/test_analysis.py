"""analysis/ on synthetic runs with known final errors: tables, figures, the report CLI, partial runs."""
from __future__ import annotations

import json
import statistics
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import degradation_text, figures, paper_text, report, text
from analysis.families import PAPER, Family
from analysis.load import final_rows, load_runs, scan_runs
from analysis.tables import MIN_SCATTER_EPOCHS, epoch_scatter, load_peers, table6, write_table6
from runformat import IDENTITY_COLUMNS, METRICS
from tests.helpers.runs import EPOCHS, FINALS, ITERS_PER_EPOCH, PARAMS, curve, write_grid, write_run


@pytest.fixture
def grid(tmp_path) -> Path:
    return write_grid(tmp_path / "runs")


@pytest.fixture
def frame(grid) -> pd.DataFrame:
    return load_runs(grid)


def lines_by_style(ax) -> dict[str, int]:
    counts: dict[str, int] = {}
    for line in ax.get_lines():
        counts[line.get_linestyle()] = counts.get(line.get_linestyle(), 0) + 1
    return counts


# ---- load ---------------------------------------------------------------------------------------

def test_load_runs_is_tidy(frame):
    runs = sum(len(v) for v in FINALS.values())
    assert frame["run"].nunique() == runs and len(frame) == runs * EPOCHS
    for column in ["run", "status", "num_params", "finished", "net", "family", *METRICS.columns]:
        assert column in frame
    assert set(frame["net"]) == {f"{'ResNet' if r else 'plain'}-{d}" for d, r in FINALS}
    assert frame["finished"].all() and (frame["family"] == "resnet_cifar").all()
    last = final_rows(frame)
    assert len(last) == runs and (last["epoch"] == EPOCHS).all()


def test_net_names_come_from_the_family_run_json_declares(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 56, True, 0, (0.3, 7.0))
    run = write_run(runs, 56, True, 1, (0.3, 7.0), name="option-b")
    (run / "metrics.csv").write_text((run / "metrics.csv").read_text().replace(",A,", ",B,"))
    write_run(runs, 3, False, 0, (5.0, 20.0), arch="minimodel")
    # a family the analysis has never heard of names itself; one without a `family` object is its arch
    write_run(runs, 10, True, 0, (5.0, 20.0), arch="wrn")
    write_run(runs, 16, False, 0, (5.0, 20.0), arch="vgg",
              family={"name": "vgg", "label": "VGG", "title": "VGG-style nets"})
    result = scan_runs(runs)
    assert set(result.frame["net"]) == {"ResNet-56", "ResNet-56 (B)", "MiniModel-plain-3", "wrn-res-10",
                                        "VGG-plain-16"}
    assert result.families["vgg"] == Family("vgg", "VGG", "VGG-style nets")
    assert result.families["wrn"] == Family("wrn", "wrn", "wrn")
    # the paper's family keeps the paper's names and title whatever run.json says
    assert result.families["resnet_cifar"] == PAPER and PAPER.title == "CIFAR plain/ResNet (paper §4.2)"
    assert PAPER.net(20, False) == "plain-20" and PAPER.plural(True) == "ResNets"


def test_one_run_json_without_family_does_not_split_a_net(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 3, False, 0, (5.0, 20.0), arch="minimodel", family=False)  # an older harness
    write_run(runs, 3, False, 1, (6.0, 21.0), arch="minimodel")
    table = table6(load_runs(runs)).set_index("net")
    assert list(table.index) == ["MiniModel-plain-3"] and table.loc["MiniModel-plain-3", "n"] == 2


def test_minimal_schema_is_read_as_the_paper_family(tmp_path):
    """runformat's minimal schema: six metrics columns, and a run.json that names no arch."""
    runs = tmp_path / "runs"
    for depth, residual, final in [(20, False, 9.5), (56, False, 13.0), (56, True, 7.0)]:
        run = runs / f"mine-{depth}-{residual}"
        run.mkdir(parents=True)
        pd.DataFrame({"epoch": [1, 2], "iteration": [500, 1000], "train_err": [50.0, final / 10],
                      "test_err": [60.0, final], "depth": depth, "residual": residual}
                     ).to_csv(run / "metrics.csv", index=False)
        (run / "run.json").write_text(json.dumps({"status": "completed",
                                                  "config": {"protocol": {"iterations": 1000}}}))
    result = scan_runs(runs)
    assert result.problems == [] and set(result.frame["family"]) == {"resnet_cifar"}
    table = table6(result.frame).set_index("net")
    assert sorted(table.index) == ["ResNet-56", "plain-20", "plain-56"]
    assert table["n"].eq(1).all() and not table["from_unfinished"].any()
    assert table.loc["ResNet-56", "test_err_mean"] == 7.0 and table.loc["ResNet-56", "paper_params"] == 853018
    assert pd.isna(table.loc["ResNet-56", "paper_test_err"])  # 1,000 iterations: no gap to the paper's 64,000


# ---- Table 6 ------------------------------------------------------------------------------------

def test_table6_mean_std_n_match_the_inputs(frame):
    table = table6(frame).set_index("net")
    for (depth, residual), values in FINALS.items():
        row = table.loc[PAPER.net(depth, residual)]
        trains, tests = [v[0] for v in values], [v[1] for v in values]
        assert row["n"] == len(values)
        assert row["test_err_mean"] == pytest.approx(statistics.mean(tests))
        assert row["train_err_mean"] == pytest.approx(statistics.mean(trains))
        if len(values) > 1:  # sample std, ddof=1
            assert row["test_err_std"] == pytest.approx(statistics.stdev(tests))
            assert row["train_err_std"] == pytest.approx(statistics.stdev(trains))
        else:
            assert np.isnan(row["test_err_std"]) and np.isnan(row["train_err_std"])
        assert row["params"] == PARAMS[depth]
    assert table.loc["ResNet-20", "paper_test_err"] == 8.75
    assert table.loc["ResNet-56", "paper_params"] == 853018
    assert np.isnan(table.loc["plain-56", "paper_test_err"])
    assert "curve only" in table.loc["plain-56", "paper_note"]
    assert table.loc["plain-56", "peer: nabla0001/resnet"] == 12.95


def test_table6_leaves_out_unfinished_runs_unless_no_other(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (1.0, 9.0))
    write_run(runs, 20, False, 1, (30.0, 40.0), status="interrupted", epochs=3)
    write_run(runs, 56, False, 0, (20.0, 30.0), status="running", epochs=2)
    table = table6(load_runs(runs)).set_index("net")
    assert table.loc["plain-20", "n"] == 1 and table.loc["plain-20", "n_unfinished"] == 1
    assert table.loc["plain-20", "test_err_mean"] == pytest.approx(9.0)
    assert table.loc["plain-56", "from_unfinished"]
    assert table.loc["plain-56", "test_err_mean"] == pytest.approx(curve(30.0)[1])


def test_a_completed_run_whose_rows_stop_short_is_unfinished(tmp_path):
    """run.json says completed, but metrics.csv ends before the protocol's last iteration (here: cut
    back to 3 of 6 epochs): its higher early error must not enter the mean of the intact run."""
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (1.0, 9.0), name="intact")
    write_run(runs, 20, False, 1, (1.0, 9.0), epochs=3, iterations=EPOCHS * ITERS_PER_EPOCH, name="cut")
    result = scan_runs(runs)
    assert dict(zip(result.runs["run"], result.runs["finished"])) == {"cut": False, "intact": True}
    assert dict(zip(result.runs["run"], result.runs["stopped_short"])) == {"cut": True, "intact": False}
    row = table6(result.frame).set_index("net").loc["plain-20"]
    assert row["n"] == 1 and row["n_unfinished"] == 1 and row["test_err_mean"] == pytest.approx(9.0)
    assert np.isnan(row["test_err_std"])

    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert (f"`cut` (run.json says completed but metrics.csv stops at iteration {3 * ITERS_PER_EPOCH} of "
            f"{EPOCHS * ITERS_PER_EPOCH}: counted as unfinished)") in md
    assert "| plain-20 (+1 unfinished run(s) left out) | 9.00 (n=1) |" in (out / "table6.md").read_text()


# ---- figures ------------------------------------------------------------------------------------

def test_fig6_lines_styles_labels_and_ylim(frame):
    fig = figures.fig6(frame)
    left, right = fig.axes[:2]
    assert len(fig.axes) == 2
    assert lines_by_style(left) == {"--": 4, "-": 4}  # 2 lines (train, test) per plain depth
    assert lines_by_style(right) == {"--": 4, "-": 4}
    for ax in (left, right):
        assert ax.get_xlabel() == "iterations (thousands)" and ax.get_ylabel() == "error (%)"
        assert ax.get_ylim() == (0.0, 20.0)
        solid = [l for l in ax.get_lines() if l.get_linestyle() == "-"]
        dashed = [l for l in ax.get_lines() if l.get_linestyle() == "--"]
        assert min(l.get_linewidth() for l in solid) > max(l.get_linewidth() for l in dashed)
    assert [t.get_text() for t in left.get_legend().get_texts()] == [
        "plain-20", "plain-32", "plain-44", "plain-56"]
    assert [t.get_text() for t in right.get_legend().get_texts()] == [
        "ResNet-20", "ResNet-32", "ResNet-44", "ResNet-56"]
    # same colour for the same depth in both panels
    colour = {l.get_label(): l.get_color() for l in left.get_legend().legend_handles}
    assert colour["plain-56"] == {l.get_label(): l.get_color()
                                  for l in right.get_legend().legend_handles}["ResNet-56"]
    # x in thousands of iterations (the runs are 64,002 iterations long)
    assert left.get_lines()[0].get_xdata()[-1] == pytest.approx(EPOCHS * ITERS_PER_EPOCH / 1e3)
    assert "dashed" in fig.get_suptitle()


def test_fig6_legends_of_eight_unfinished_nets_stay_apart(frame):
    """The first H100 sweep's 8 unfinished nets: three columns of "plain-20 (unfinished)" ran past the panel into
    the other panel's legend. Two columns from four entries on keep each legend inside its own panel."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    unfinished = frame.assign(finished=False)
    fig = figures.fig6(unfinished)
    FigureCanvasAgg(fig).draw()
    left, right = fig.axes[:2]
    assert left.get_legend().get_texts()[0].get_text() == "plain-20 (unfinished)"
    boxes = [ax.get_legend().get_window_extent() for ax in (left, right)]
    assert boxes[0].x1 < boxes[1].x0  # side by side, not overlapping
    assert boxes[0].x1 <= fig.get_window_extent().x1 / 2 + 1  # the left legend ends in the left half
    assert left.get_legend()._ncols == 2


def test_fig6_widens_ylim_when_errors_stay_high(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (45.0, 48.0))
    write_run(runs, 20, True, 0, (40.0, 42.0))
    fig = figures.fig6(load_runs(runs))
    top = fig.axes[0].get_ylim()[1]
    assert top > 48.0 and fig.axes[1].get_ylim()[1] == top
    assert "widened" in fig.get_suptitle()
    assert lines_by_style(fig.axes[0]) == {"--": 1, "-": 1}


def test_fig1_plain(frame):
    fig = figures.fig1_plain(frame)
    assert len(fig.axes) == 2
    train_ax, test_ax = fig.axes
    assert train_ax.get_ylabel() == "training error (%)" and test_ax.get_ylabel() == "test error (%)"
    assert train_ax.get_xlabel() == "iterations (thousands)"
    for ax in fig.axes:
        assert len(ax.get_lines()) == 2  # plain-20 and plain-56 only
        assert [t.get_text() for t in ax.get_legend().get_texts()] == ["plain-20", "plain-56"]
        assert ax.get_ylim() == (0.0, 20.0)
    # mean over seeds at the last epoch is the mean of the known finals
    ends = sorted(l.get_ydata()[-1] for l in test_ax.get_lines())
    assert ends == pytest.approx(sorted(statistics.mean(v[1] for v in FINALS[(d, False)]) for d in (20, 56)))


def test_fig1_without_plain_56_compares_the_shallowest_and_deepest_plain_nets(tmp_path):
    runs = write_grid(tmp_path / "runs", skip={(56, False)})
    fig = figures.fig1_plain(load_runs(runs))
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["plain-20", "plain-44"]
    only_one = write_grid(tmp_path / "one", skip={(d, False) for d in (32, 44, 56)})
    with pytest.raises(figures.NothingToPlot, match="two plain nets"):
        figures.fig1_plain(load_runs(only_one))


def test_degradation(frame):
    fig = figures.degradation(frame)
    assert len(fig.axes) == 2
    train_ax, test_ax = fig.axes
    assert train_ax.get_ylabel() == "final training error (%)"
    assert test_ax.get_ylabel() == "final test error (%)"
    assert train_ax.get_xlabel() == "depth (weighted layers)"
    assert list(train_ax.get_xticks()) == [20, 32, 44, 56]
    assert [t.get_text() for t in train_ax.get_legend().get_texts()] == ["plain", "ResNet"]
    assert "paper Table 6" in " ".join(t.get_text() for t in test_ax.get_legend().get_texts())
    plain_line = train_ax.containers[0].lines[0]
    assert list(plain_line.get_ydata()) == pytest.approx(
        [statistics.mean(v[0] for v in FINALS[(d, False)]) for d in (20, 32, 44, 56)])


def test_save_writes_png_and_svg(frame, tmp_path):
    # a bare Figure, no pyplot backend chosen: savefig picks the canvas each format needs
    paths = figures.save(figures.degradation(frame), tmp_path / "out", "deg")
    assert [p.name for p in paths] == ["deg.png", "deg.svg"]
    assert paths[0].read_bytes().startswith(b"\x89PNG") and "<svg" in paths[1].read_text()


# ---- findings (*_text.py): the decisions, apart from their wording ---------------------------------

def _net(name, train, test, train_std=float("nan"), test_std=float("nan")):
    return pd.Series({"net": name, "train_err_mean": train, "test_err_mean": test,
                      "train_err_std": train_std, "test_err_std": test_std})


def test_comparison_sign_and_seed_spread():
    deep, shallow = _net("plain-56", 3.0, 13.0, 0.5), _net("plain-20", 2.8, 9.0, 0.1)
    c = text.comparison(deep, shallow, "train_err")
    assert (c.net, c.other, c.sign, c.within_std) == ("plain-56", "plain-20", 1, True)
    assert not text.comparison(deep, shallow, "test_err").within_std  # no std: cannot be within it
    assert text.comparison(shallow, deep, "test_err").sign == -1
    assert text.comparison(deep, deep, "test_err").sign == 0
    assert text.say_comparison(c) == ("plain-56 ends with higher training error than plain-20: 3.00% vs "
                                      "2.80% (a difference within the seed-to-seed std)")


def test_verdict_kinds_follow_the_numbers(frame):
    v = degradation_text.find_verdict(table6(frame))
    assert v.kind is degradation_text.VerdictKind.reproduced
    assert [(c.net, c.other, c.column, c.sign) for c in v.comparisons] == [
        ("plain-56", "plain-20", "train_err", 1), ("plain-56", "plain-20", "test_err", 1),
        ("ResNet-56", "ResNet-20", "test_err", -1), ("ResNet-56", "plain-56", "train_err", -1)]
    assert v.caveats.last_iteration is None and v.caveats.strength is degradation_text.Strength.verdict
    assert v.caveats.paper_iterations == paper_text.paper_iterations(load_peers())
    cases = {  # (plain-20, plain-56) finals (train, test) -> verdict without ResNets
        ((1.0, 9.0), (3.0, 13.0)): degradation_text.VerdictKind.reproduced_plain,
        ((1.0, 9.0), (3.0, 8.0)): degradation_text.VerdictKind.train_only,
        ((3.0, 9.0), (1.0, 13.0)): degradation_text.VerdictKind.not_reproduced,
    }
    for (p20, p56), kind in cases.items():
        rows = frame[frame["net"].isin(["plain-20", "plain-56"]) & (frame["seed"] == 0)].copy()
        for net, (train, test) in [("plain-20", p20), ("plain-56", p56)]:  # whole curves: smooth, no epoch scatter
            rows.loc[rows["net"] == net, "train_err"], rows.loc[rows["net"] == net, "test_err"] = curve(train), curve(test)
        assert degradation_text.find_verdict(table6(rows)).kind is kind
    none = degradation_text.find_verdict(table6(frame[frame["net"].isin(["plain-20", "ResNet-56"])]))
    assert none.kind is degradation_text.VerdictKind.cannot_judge and none.plain_nets == ("plain-20",)


# ---- the epoch-to-epoch spread (issue 29) --------------------------------------------------------------

def _epochs(values, lr=0.1) -> pd.DataFrame:
    lrs = lr if isinstance(lr, list) else [lr] * len(values)
    return pd.DataFrame({"iteration": [390 * (e + 1) for e in range(len(values))], "lr": lrs, "test_err": values})


def test_epoch_scatter_is_the_swing_about_the_trend_of_the_last_stage():
    swing = [18.0 + (-1) ** e for e in range(10)]  # ±1 point every epoch around a flat level
    assert 1.0 <= epoch_scatter(_epochs(swing), "test_err") <= 1.25
    twice = [18.0 + 2 * (-1) ** e for e in range(10)]
    assert epoch_scatter(_epochs(twice), "test_err") == pytest.approx(2 * epoch_scatter(_epochs(swing), "test_err"))
    # a curve still falling is a trend, not scatter
    assert epoch_scatter(_epochs(curve(1.0)), "test_err") == pytest.approx(0.0, abs=1e-9)
    # only the last SCATTER_EPOCHS epochs at the last lr: what came before the drop, however wild, does not count
    wild = [60.0, 5.0, 70.0, 2.0] + swing
    lrs = [0.1] * 4 + [0.01] * 10
    assert epoch_scatter(_epochs(wild, lrs), "test_err") == pytest.approx(epoch_scatter(_epochs(swing), "test_err"))
    assert epoch_scatter(_epochs([90.0] * 5 + swing), "test_err") == pytest.approx(
        epoch_scatter(_epochs(swing), "test_err"))
    # too few epochs at the last lr: no scatter, so nothing is judged by it
    short = _epochs(wild[:4] + swing[:MIN_SCATTER_EPOCHS - 1], [0.1] * 4 + [0.01] * (MIN_SCATTER_EPOCHS - 1))
    assert np.isnan(epoch_scatter(short, "test_err"))
    # a published curve logs no lr: one stage
    assert epoch_scatter(_epochs(swing, float("nan")), "test_err") == pytest.approx(
        epoch_scatter(_epochs(swing), "test_err"))


def test_a_nets_epoch_scatter_is_that_of_its_mean_over_seeds(tmp_path):
    runs = tmp_path / "runs"
    one = write_run(runs, 20, False, 0, (1.0, 9.0), wiggle=(0.0, 1.0))
    write_run(runs, 20, False, 1, (1.0, 9.0), wiggle=(0.0, 1.0))
    write_run(runs, 56, False, 0, (3.0, 13.0))
    frame = load_runs(runs)
    table = table6(frame).set_index("net")
    single = epoch_scatter(frame[frame["run"] == one.name], "test_err")
    assert single > 0.5
    assert table.loc["plain-20", "test_err_epoch_std"] == pytest.approx(single / np.sqrt(2))
    assert table.loc["plain-56", "test_err_epoch_std"] == pytest.approx(0.0, abs=1e-9)
    assert table.loc["plain-20", "train_err_epoch_std"] == pytest.approx(0.0, abs=1e-9)


def test_a_difference_within_the_epoch_spread_is_no_order():
    deep = pd.Series({"net": "ResNet-56", "test_err_mean": 19.77, "test_err_std": float("nan"),
                      "test_err_epoch_std": 0.3})
    shallow = pd.Series({"net": "ResNet-20", "test_err_mean": 18.9, "test_err_std": float("nan"),
                         "test_err_epoch_std": 0.4})
    c = text.comparison(deep, shallow, "test_err")
    assert c.sign == 1 and c.within_spread and c.settled == 0 and c.spread == pytest.approx(1.0)
    assert text.say_comparison(c) == ("ResNet-56 vs ResNet-20, test error: 19.77% vs 18.90%, no difference yet "
                                      "(within the epoch-to-epoch spread, ±1.00 points)")
    far = text.comparison(deep.replace(19.77, 21.0), shallow, "test_err")
    assert far.settled == 1 and not far.within_spread and "ends with higher test error" in text.say_comparison(far)
    unknown = text.comparison(deep.drop("test_err_epoch_std"), shallow, "test_err")  # too few epochs: as before
    assert unknown.settled == 1 and not unknown.within_spread


def test_an_order_held_at_each_of_the_last_epochs_counts_despite_a_wide_spread(tmp_path):
    """One wild epoch (plain-56's 54.97% in the H200 sweep so far) widens a net's spread past a difference that held
    at every one of the last 10 epochs: that order counts; an order that turned at one of them does not."""
    its = [390 * k for k in range(58, 68)]
    deep_values = [30.0, 29.0, 55.0, 29.5, 28.0, 29.0, 31.0, 27.5, 28.5, 27.8]  # above the other net at each epoch
    shallow_values = [19.0, 18.5, 20.0, 18.0, 19.5, 18.2, 19.0, 18.8, 18.1, 18.56]
    deep = pd.Series({"net": "plain-56", "test_err_mean": 27.8, "test_err_std": float("nan"), "test_err_epoch_std": 8.7,
                      "test_err_tail": tuple(zip(its, deep_values))})
    shallow = pd.Series({"net": "plain-20", "test_err_mean": 18.56, "test_err_std": float("nan"),
                         "test_err_epoch_std": 0.8, "test_err_tail": tuple(zip(its, shallow_values))})
    c = text.comparison(deep, shallow, "test_err")
    assert c.settled == 1 and not c.within_spread and c.held == 10 and c.spread > abs(27.8 - 18.56)
    assert text.say_comparison(c) == ("plain-56 ends with higher test error than plain-20: 27.80% vs 18.56% (higher "
                                      f"at each of the last 10 epochs, though single epochs scatter by ±{c.spread:.2f} "
                                      "points)")
    turned = deep.copy()
    turned["test_err_tail"] = tuple(zip(its, deep_values[:4] + [18.0] + deep_values[5:]))  # below it once
    assert text.comparison(turned, shallow, "test_err").within_spread
    fewer = deep.copy()
    fewer["test_err_tail"] = tuple(zip(its[1:], deep_values[1:]))  # 9 shared epochs: not enough to say
    assert text.comparison(fewer, shallow, "test_err").within_spread
    # the tails are read from the runs (at the last lr, the mean over runs at each iteration) and kept out of
    # table6.csv
    runs = tmp_path / "runs"
    write_grid(runs)
    frame = load_runs(runs)
    table = table6(frame)
    row = table[table["net"] == "plain-56"].iloc[0]
    assert len(row["test_err_tail"]) == min(10, EPOCHS) and row["test_err_tail"][-1][0] == int(row["final_iteration"])
    write_table6(table, frame, tmp_path / "out")
    assert "_tail" not in (tmp_path / "out" / "table6.csv").read_text()
    # in the verdict: the plain nets' test order settled by it, the ResNets' left open, and the heading says which
    train = pd.Series({"net": "plain-56", "train_err_mean": 23.27, "train_err_std": float("nan"),
                       "train_err_epoch_std": 0.3})
    train_shallow = pd.Series({"net": "plain-20", "train_err_mean": 13.75, "train_err_std": float("nan"),
                               "train_err_epoch_std": 0.3})
    resnets = text.comparison(pd.Series({**deep.to_dict(), "net": "ResNet-56", "test_err_mean": 19.77}),
                              pd.Series({**shallow.to_dict(), "net": "ResNet-20", "test_err_mean": 16.24,
                                         "test_err_tail": ()}), "test_err")
    v = degradation_text.Verdict(degradation_text.VerdictKind.degrades_unsettled,
                                 (text.comparison(train, train_shallow, "train_err"), c, resnets))
    said = degradation_text.say_verdict(v)
    assert said.startswith("**Verdict: partly settled: the deeper plain net trains and tests worse, as in the paper; "
                           "not settled yet (within the epoch-to-epoch spread): ResNet-56 vs ResNet-20 (test error).**")


def test_the_verdict_counts_no_comparison_within_the_epoch_spread(tmp_path):
    def verdict_of(name, resnet_test=0.0, plain_train=0.0):
        runs = tmp_path / name
        for (depth, residual), values in FINALS.items():
            if depth in (20, 56):
                write_run(runs, depth, residual, 0, values[0],
                          wiggle=(0.0, resnet_test) if residual else (plain_train, 0.0))
        return degradation_text.find_verdict(table6(load_runs(runs)))

    kinds = degradation_text.VerdictKind
    assert verdict_of("smooth").kind is kinds.reproduced
    assert verdict_of("stable", resnet_test=0.05).kind is kinds.reproduced  # a stable end (lr 0.001) changes nothing
    noisy = verdict_of("noisy", resnet_test=3.0)  # ResNet-56 7.0% vs ResNet-20 8.6%, each swinging by ±3 points
    assert noisy.kind is kinds.degrades_unsettled
    assert [c.within_spread for c in noisy.comparisons] == [False, False, True, False]
    said = degradation_text.say_verdict(noisy)
    assert "not settled yet (within the epoch-to-epoch spread): ResNet-56 vs ResNet-20 (test error).**" in said
    assert f"7.00% vs 8.60%, no difference yet (within the epoch-to-epoch spread, ±{noisy.comparisons[2].spread:.2f}" \
           in said and noisy.comparisons[2].spread > 1.6
    assert "do not behave as in the paper" not in said
    assert verdict_of("plain", plain_train=2.0).kind is kinds.unsettled  # plain-56 3.1% vs plain-20 0.9%, ±2 points


def test_a_family_verdict_leaves_a_plain_difference_within_the_epoch_spread_open(tmp_path):
    runs = tmp_path / "runs"
    for depth, final in [(3, (5.0, 20.0)), (6, (9.0, 24.0))]:
        write_run(runs, depth, False, 0, final, arch="minimodel", wiggle=(6.0, 0.0))
    v = degradation_text.find_family_verdict(table6(load_runs(runs)), "minimodel")
    assert v.degrades is None and v.plain.within_spread
    said = degradation_text.say_family_verdict(v)
    assert "not settled yet: the deeper plain net's training error is within the epoch-to-epoch spread" in said
    assert "cannot judge" not in said and "MiniModel-plain-6 vs MiniModel-plain-3, training error" in said


def test_trend_over_depth(frame):
    assert text.trend(["a", "b", "c"], [1, 2, 3]).direction is text.Direction.rises
    assert text.trend(["a", "b", "c"], [3, 2, 1]).direction is text.Direction.falls
    assert text.trend(["a", "b", "c"], [1, 3, 2]).direction is text.Direction.mixed
    assert text.trend(["a"], [1]).direction is None
    fig6 = {s.series: s for s in degradation_text.find_fig6(table6(frame))}
    assert fig6["plain nets"].test.direction is text.Direction.rises
    assert fig6["ResNets"].test.nets == ("ResNet-20", "ResNet-32", "ResNet-44", "ResNet-56")


def test_paper_numbers_in_sentences_come_from_peers_csv():
    peers = load_peers()
    ends = paper_text.paper_ends(peers)
    assert ends.resnet == (("ResNet-20", 8.75), ("ResNet-56", 6.97))
    assert ends.plain_trend.direction is text.Direction.rises
    assert ends.resnet_trend.direction is text.Direction.falls
    said = paper_text.say_paper_ends(ends)
    assert "about 9-9.5% for plain-20 to 13-13.5% for plain-56" in said
    assert "Table 6: 8.75% for ResNet-20 to 6.97% for ResNet-56" in said
    # change peers.csv's numbers and the sentence follows them, direction included
    moved = peers.copy()
    moved.loc[(moved["kind"] == "paper_table") & (moved["net"] == "ResNet-56"), "test_err"] = 9.5
    said = paper_text.say_paper_ends(paper_text.paper_ends(moved))
    assert "ResNets worse (Table 6: 8.75% for ResNet-20 to 9.50% for ResNet-56)" in said


def test_family_verdict_uses_the_title_run_json_gives(tmp_path):
    runs = tmp_path / "runs"
    for depth, final in [(3, (5.0, 20.0)), (6, (9.0, 24.0))]:
        write_run(runs, depth, False, 0, final, arch="minimodel")
    v = degradation_text.find_family_verdict(table6(load_runs(runs)), "minimodel")
    assert v.degrades and v.plain.net == "MiniModel-plain-6" and v.residual is None
    assert v.family.title == "MiniModel (Keras-tutorial family, not the paper's nets)"
    assert degradation_text.find_family_verdict(table6(load_runs(runs)), "other").degrades is None




# ---- report -------------------------------------------------------------------------------------

REPORT_FILES = ["fig1_plain.png", "fig1_plain.svg", "fig6.png", "fig6.svg", "degradation.png",
                "degradation.svg", "table6.md", "table6.csv", "report.md", "index.html"]


def test_report_writes_everything_with_the_verdict(grid, tmp_path, capsys):
    out = tmp_path / "out"
    assert report.main(["--runs", str(grid), "--out", str(out)]) == 0
    for name in REPORT_FILES:
        assert (out / name).stat().st_size > 0, name
    assert "report.md" in capsys.readouterr().out
    md = (out / "report.md").read_text()
    train20 = statistics.mean(v[0] for v in FINALS[(20, False)])
    train56 = statistics.mean(v[0] for v in FINALS[(56, False)])
    assert "**Verdict: degradation problem reproduced.**" in md
    assert (f"plain-56 ends with higher training error than plain-20: "
            f"{train56:.2f}% vs {train20:.2f}%") in md
    for name in ["fig1_plain.png", "fig6.png", "degradation.png"]:
        assert f"]({name})" in md and f'src="{name}"' in (out / "index.html").read_text()
    assert "Missing cells: none" in md
    table_md = (out / "table6.md").read_text()
    assert "image-folder JPEG copy, not the original CIFAR-10 files" in table_md
    tests56 = [v[1] for v in FINALS[(56, False)]]
    assert f"{statistics.mean(tests56):.2f} ± {statistics.stdev(tests56):.2f} (n=3)" in table_md
    assert "curve only" in table_md and "Test GPU" in md and "abc1234" in md


def test_report_opposite_data_gives_opposite_sentence(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (3.0, 12.0))
    write_run(runs, 56, False, 0, (1.0, 9.0))
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "report.md").read_text()
    assert "**Verdict: not reproduced" in md
    assert "plain-56 ends with lower training error than plain-20: 1.00% vs 3.00%" in md


def test_report_handles_partial_results(tmp_path):
    runs = write_grid(tmp_path / "runs", skip={(32, True), (56, False)})
    write_run(runs, 56, False, 0, (10.0, 20.0), status="interrupted", epochs=3, name="p56-killed")
    cut = write_run(runs, 44, True, 7, (0.4, 7.1), name="r44-truncated")
    text = (cut / "metrics.csv").read_text()
    (cut / "metrics.csv").write_text(text[:-9])  # killed mid-line: last row loses its end
    bad = write_run(runs, 20, True, 7, (0.7, 8.0), name="r20-corrupt-json")
    (bad / "run.json").write_text('{"status": "compl')
    (runs / "empty-run").mkdir()
    (runs / "empty-run" / "run.json").write_text(json.dumps({"status": "failed"}))

    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Missing cells (no run at all): ResNet-32." in md  # plain-56 exists, unfinished
    assert "`p56-killed` (interrupted, 3 epochs)" in md
    assert "r44-truncated: metrics.csv truncated" in md
    assert "r20-corrupt-json: run.json unreadable" in md
    assert "empty-run: metrics.csv missing" in md
    assert "(from unfinished runs" not in md and "unfinished runs" in md
    with pytest.warns(UserWarning) as record:
        frame = load_runs(runs)
    assert len(record) == 3  # truncated csv, corrupt json, missing csv: one warning each
    assert len(frame[frame["run"] == "r44-truncated"]) == EPOCHS - 1
    assert frame.loc[frame["run"] == "r20-corrupt-json", "status"].eq("unknown").all()
    for name in REPORT_FILES:
        assert (out / name).exists(), name


def test_report_skips_a_figure_whose_nets_are_absent(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 20, True, 0, (0.8, 8.6))
    write_run(runs, 56, True, 0, (0.3, 7.0))
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Figure skipped: Figure 1 needs two plain nets" in md
    assert not (out / "fig1_plain.png").exists() and (out / "fig6.png").exists()
    assert "cannot judge" in md


@pytest.mark.parametrize("make", ["missing", "empty", "unreadable"])
def test_report_without_runs_fails_clearly(tmp_path, capsys, make):
    runs = tmp_path / "runs"
    if make != "missing":
        runs.mkdir()
    if make == "unreadable":  # run directories there, none readable: say why, not "run a sweep"
        (runs / "a").mkdir()
        (runs / "a" / "run.json").write_text("{")
        (runs / "b").mkdir()
        (runs / "b" / "metrics.csv").write_text("epoch,iteration\n1,50\n")
    assert report.main(["--runs", str(runs), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    if make == "unreadable":
        assert (f"none of the 2 run directories under {runs} is readable: "
                "a: run.json unreadable (not JSON: Expecting property name enclosed in double quotes at line 1 "
                "column 2), metrics.csv missing; "
                "b: run.json missing, metrics.csv has no complete epoch rows") in err[0]
        assert "make sweep" not in err[0]
    else:
        assert f"no runs found under {runs}" in err[0] and "make sweep" in err[0]


def test_report_help():
    with pytest.raises(SystemExit) as exit_:
        report.main(["--help"])
    assert exit_.value.code == 0


# ---- other families -----------------------------------------------------------------------------

def test_minimodel_is_labelled_and_kept_away_from_the_paper(grid, tmp_path):
    for depth, residual, final in [(3, False, (5.0, 20.0)), (6, False, (9.0, 24.0)),
                                   (3, True, (4.0, 19.0)), (6, True, (3.0, 18.0))]:
        write_run(grid, depth, residual, 0, final, arch="minimodel", params=5000)
    frame = load_runs(grid)
    mini = frame[frame["family"] == "minimodel"]
    assert set(mini["net"]) == {"MiniModel-plain-3", "MiniModel-plain-6",
                                "MiniModel-res-3", "MiniModel-res-6"}
    table = table6(frame).set_index("net")
    paper_cols = ["paper_test_err", "paper_params"] + [c for c in table if c.startswith("peer: ")]
    assert table.loc[list(mini["net"].unique()), paper_cols].isna().all().all()
    assert table.loc["ResNet-56", paper_cols].notna().any()

    out = tmp_path / "out"
    assert report.main(["--runs", str(grid), "--out", str(out)]) == 0
    table_md = (out / "table6.md").read_text()
    paper_part, other_part = table_md.split("Other nets: not comparable")
    assert "MiniModel" not in paper_part and "MiniModel-plain-6" in other_part
    assert (out / "minimodel_fig6.png").exists() and (out / "minimodel_degradation.png").exists()
    fig = figures.fig6(frame, "minimodel")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == [
        "MiniModel-plain-3", "MiniModel-plain-6"]
    assert "ResNet" not in " ".join(t.get_text() for ax in fig.axes
                                    for t in ax.get_legend().get_texts())
    # the paper family's figures never draw minimodel nets
    assert len(figures.fig6(frame).axes[0].get_lines()) == 8
    # a verdict of its own, from its numbers (final = (train, test)): plain-6 trains worse than plain-3
    assert ("MiniModel (Keras-tutorial family, not the paper's nets): the deeper plain net trains worse "
            "(degradation).** MiniModel-plain-6 ends with higher training error than MiniModel-plain-3: "
            "9.00% vs 5.00%") in (out / "report.md").read_text()


def test_scan_runs_reports_problems_without_raising(tmp_path):
    runs = tmp_path / "runs"
    d = write_run(runs, 20, False, 0, (1.0, 9.0))
    (d / "metrics.csv").write_text((d / "metrics.csv").read_text() + "1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18\n")
    with pytest.warns(UserWarning):
        result = scan_runs(runs)
    assert len(result.frame) == EPOCHS and any("malformed" in p for p in result.problems)


def test_option_b_resnets_stay_out_of_the_paper_columns_and_figures(frame, grid):
    run = write_run(grid, 20, True, 5, (0.7, 8.1), name="resnet20-B")
    metrics = pd.read_csv(run / "metrics.csv")
    metrics["shortcut"] = "B"
    metrics.to_csv(run / "metrics.csv", index=False)
    frame = load_runs(grid)
    assert "ResNet-20 (B)" in set(frame["net"])
    table = table6(frame).set_index("net")
    assert np.isnan(table.loc["ResNet-20 (B)", "paper_test_err"])
    assert "option B" in table.loc["ResNet-20 (B)", "paper_note"]
    assert table.loc["ResNet-20", "n"] == len(FINALS[(20, True)])  # B run not mixed into option A
    assert lines_by_style(figures.fig6(frame).axes[1]) == {"--": 4, "-": 4}


def test_a_run_of_another_recipe_is_another_net_in_the_table_and_left_out_of_the_figures(frame, grid):
    """Runs of one net trained with another protocol.lr were averaged with it as `ResNet-20 (n=3)` without a word."""
    odd = write_run(grid, 20, True, 5, (0.5, 30.0), name="resnet_cifar-depth=20-residual=true-seed=5-lr=0.01")
    for run in grid.iterdir():  # a harness records every protocol key
        info = json.loads((run / "run.json").read_text())
        info["config"]["protocol"]["lr"] = 0.01 if run == odd else 0.1
        (run / "run.json").write_text(json.dumps(info))
    found = scan_runs(grid, warn=False)
    assert set(found.frame.loc[found.frame["run"] == odd.name, "net"]) == {"ResNet-20 (lr=0.01)"}
    table = table6(found.frame).set_index("net")
    assert table.loc["ResNet-20", "n"] == len(FINALS[(20, True)]) and table.loc["ResNet-20 (lr=0.01)", "n"] == 1
    assert table.loc["ResNet-20", "test_err_mean"] == pytest.approx(np.mean([t for _, t in FINALS[(20, True)]]))
    assert np.isnan(table.loc["ResNet-20 (lr=0.01)", "paper_test_err"])
    assert "another recipe" in table.loc["ResNet-20 (lr=0.01)", "paper_note"]
    assert [p for p in found.problems if "differs in protocol.lr: lr=0.01, not lr=0.1" in p] == [
        p for p in found.problems if odd.name in p]
    assert lines_by_style(figures.fig6(found.frame).axes[1]) == lines_by_style(figures.fig6(frame).axes[1])


def test_the_analysis_names_a_net_of_another_recipe_apart_by_the_keys_that_differ(tmp_path):
    from analysis.families import recipe_variants
    base = {"protocol.lr": 0.1, "protocol.augment": "crop_flip", "data": "ab" * 32}
    runs = [("a", "resnet_cifar", base), ("b", "resnet_cifar", base),
            ("c", "resnet_cifar", {**base, "protocol.lr": 0.01, "protocol.augment": "none"}),
            ("d", "resnet_cifar", {**base, "data": "cd" * 32}),
            ("e", "resnet_cifar", {"protocol.lr": 0.1}),  # an older writer's: what it has, it shares
            ("f", "resnet_cifar", {}),  # no config at all: stays with the others
            ("g", "minimodel", {**base, "protocol.lr": 0.001})]  # another family's own recipe
    labels, notes = recipe_variants(runs)
    assert labels == {"c": "augment=none, lr=0.01", "d": "data=cdcdcdcd"}
    assert len(notes) == 2 and notes[0].startswith("c: trained with another recipe than the other resnet_cifar runs")
    assert "differs in protocol.augment, protocol.lr" in notes[0]


def test_model_columns_missing_from_metrics_come_from_the_config(tmp_path):
    runs = tmp_path / "results" / "quick" / "runs"
    run = write_run(runs, 56, False, 3, (3.0, 13.0))
    metrics = pd.read_csv(run / "metrics.csv").drop(columns=list(IDENTITY_COLUMNS))
    metrics.to_csv(run / "metrics.csv", index=False)
    (runs / "never-started").mkdir()
    with pytest.warns(UserWarning, match="wrote nothing"):
        result = scan_runs(tmp_path / "results" / "quick")  # the parent of runs/ works too
    assert set(result.frame["net"]) == {"plain-56"} and (result.frame["seed"] == 3).all()
    assert (result.frame["protocol"] == "quick").all() and (result.frame["shortcut"] == "A").all()
    assert list(result.runs["run"]) == ["never-started", run.name]
