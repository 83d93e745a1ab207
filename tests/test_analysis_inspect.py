"""analysis/inspection.py and inspection_text.py on synthetic inspection files with known numbers: the figures, the
paragraphs, runs started with init.from kept apart from scratch runs, and the report's sections."""
from __future__ import annotations

import pytest

from analysis import figures, report
from analysis import inspection as insp
from analysis import inspection_text as words
from analysis.load import scan_runs
from analysis.tables import table6
from runformat import BLOCK_RATIOS, LESION
from tests.helpers.runs import FINALS, constructed_row, write_inspection, write_run

START = {"deep_depth": 56, "test_err_shallow": 9.5, "test_err_deep": 9.5, "train_err_shallow": 10.0,
         "train_err_deep": 10.4, "max_logit_diff": 2e-6, "train_deviation": 0.05, "batches": 4}


def resnet_lesion(depth, intact, rise):
    n = (depth - 2) // 6  # blocks per stage; the first of stages 2 and 3 downsample and cost 30+ points
    return lambda b: intact + (31.0 if b in (n + 1, 2 * n + 1) else rise)


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    final = {key: values[0] for key, values in FINALS.items()}  # seed 0: plain-20 (0.9, 9.5), plain-56 (3.1, 13.0), ...
    run = write_run(runs, 20, False, 0, final[(20, False)])
    write_inspection(run, 20, False, change=lambda b: 1.2 + 0.01 * b, intact=(9.5, 0.5),
                     constructed=[constructed_row(d, 9.5, (10.0, 10.4), dev) for d, dev in
                                  ((32, 0.04), (44, 0.045), (56, 0.05))])
    run = write_run(runs, 56, False, 0, final[(56, False)])
    write_inspection(run, 56, False, change=lambda b: 1.3, intact=(13.0, 0.6))
    run = write_run(runs, 20, True, 0, final[(20, True)])
    write_inspection(run, 20, True, change=lambda b: 0.3, branch=lambda b: 0.4, intact=(8.6, 0.4),
                     lesion=resnet_lesion(20, 8.6, 1.0), constructed=[constructed_row(56, 8.6, (9.0, 9.0))])
    run = write_run(runs, 56, True, 0, final[(56, True)])
    write_inspection(run, 56, True, change=lambda b: 0.2, branch=lambda b: 0.25, intact=(7.0, 0.3),
                     lesion=resnet_lesion(56, 7.0, 1.0))
    write_run(runs, 32, False, 0, final[(32, False)])  # completed, never inspected
    write_run(runs, 56, False, 0, (0.7, 9.0), init_depth=20, start=START)  # plain-56 (from plain-20)
    run = write_run(runs, 26, False, 0, (30.0, 40.0), arch="minimodel")
    write_inspection(run, 26, False, notes=["constructed: not supported for MiniModel: no identity unit"],
                     arch="minimodel")
    return runs


@pytest.fixture
def found(runs):
    return insp.scan_inspection(runs)


@pytest.fixture
def table(runs):
    return table6(scan_runs(runs, warn=False).frame)


def test_scan_reads_the_inspection_files_and_the_init_starts(found):
    ratios, lesions = found.frame(BLOCK_RATIOS), found.frame(LESION)
    assert set(ratios["net"]) == {"plain-20", "plain-56", "ResNet-20", "ResNet-56", "MiniModel-plain-26"}
    assert len(lesions[lesions["net"] == "ResNet-56"]) == 27
    assert list(found.starts["net"]) == ["plain-56 (from plain-20)"]
    assert found.starts["start_test_err_deep"].tolist() == [9.5]
    # never inspected and no checkpoint.pt to inspect: listed apart, as a run that cannot be inspected here
    assert "resnet_cifar-depth=32-residual=false-seed=0" in found.no_weights
    assert not any("depth=32-residual=false" in m for m in found.missing)
    assert any("constructed: not supported for MiniModel" in m for m in found.missing)


def lines(ax, part):
    return {l.get_label(): l for l in ax.get_lines() if part in l.get_label()}


def test_block_ratio_figure_one_panel_per_depth_plain_and_residual(found):
    fig = insp.block_ratios(found.frame(BLOCK_RATIOS), "resnet_cifar")
    d20, d56 = fig.axes
    assert (d20.get_title(), d56.get_title()) == ("depth 20", "depth 56")
    change, branch = lines(d20, "||block"), lines(d20, "||F")
    assert set(change) == {"plain-20: ||block(x) − x|| / ||x||", "ResNet-20: ||block(x) − x|| / ||x||"}
    assert list(change["plain-20: ||block(x) − x|| / ||x||"].get_ydata()) == pytest.approx(
        [1.2 + 0.01 * b for b in range(1, 10)])
    assert list(branch["ResNet-20: ||F(x)|| / ||x||"].get_ydata()) == [0.4] * 9
    assert change["ResNet-20: ||block(x) − x|| / ||x||"].get_linestyle() == "-"
    assert change["plain-20: ||block(x) − x|| / ||x||"].get_linestyle() == "--"
    assert len(lines(d56, "||block")["plain-56: ||block(x) − x|| / ||x||"].get_xdata()) == 27
    assert "how close each block is to the identity" in fig.get_suptitle()


def test_lesion_figure_draws_the_intact_error_as_a_line(found):
    fig = insp.lesion(found.frame(LESION), "resnet_cifar")
    d56 = fig.axes[1]
    deleted, intact = lines(d56, "ResNet-56, one block")["ResNet-56, one block deleted"], lines(d56, "intact")
    assert deleted.get_ydata()[9] == 7.0 + 31.0 and deleted.get_ydata()[0] == 8.0  # block 10: stage 2's first
    assert list(intact["ResNet-56, intact"].get_ydata()) == [7.0, 7.0]
    assert list(intact["plain-56, intact"].get_ydata()) == [13.0, 13.0]
    assert d56.get_ylim() == (0, 100) and fig.axes[0].get_ylabel() == "test error (%)"


def test_init_figure_starts_at_the_constructed_nets_error_beside_the_scratch_nets(runs, found):
    frame = scan_runs(runs, warn=False).frame
    fig = insp.init_runs(frame, found.starts, "resnet_cifar")
    train, test = fig.axes
    own = lines(test, "plain-56 (from plain-20)")["plain-56 (from plain-20)"]
    assert (own.get_xdata()[0], own.get_ydata()[0]) == (0.0, 9.5) and own.get_ydata()[-1] == pytest.approx(9.0)
    assert set(lines(test, "from scratch")) == {"plain-20 (from scratch)", "plain-56 (from scratch)"}
    assert lines(train, "plain-56 (from plain-20)")["plain-56 (from plain-20)"].get_ydata()[0] == 10.4


def test_init_runs_are_their_own_net_never_averaged_with_scratch_runs(runs, table):
    frame = scan_runs(runs, warn=False).frame
    assert table.set_index("net").loc["plain-56", "n"] == 1
    row = table.set_index("net").loc["plain-56 (from plain-20)"]
    assert row["n"] == 1 and row["train_err_mean"] == pytest.approx(0.7) and "init.from" in row["paper_note"]
    assert "plain-56 (from plain-20)" not in set(figures.select(frame, "resnet_cifar")["net"])
    panel = figures.fig6(frame).axes[0]
    assert len(panel.get_lines()) == 2 * 3  # plain-20, 32, 56: training and test curves, no init run


def test_paragraphs_say_what_the_numbers_say(found, table):
    profile = insp.constructed_profile(found.frame(insp.CONSTRUCTED))
    text = words.constructed_paragraph(profile, table)
    assert text.startswith("**plain-20 → plain-56: a solution at least as good exists, and SGD did not find it.**")
    assert "has test error 9.50%, plain-20's is 9.50%" in text
    assert "plain-56 ends with higher training error than plain-20 (the table above)." in text
    assert "4 of 4 constructions have exactly their shallow net's test error" in text
    assert "In 2 of 2 pairs with a deeper plain net trained from scratch, that net trains worse" in text  # 32 and 56
    assert "by 4.00% to 5.00% (relative); plain-56's training-mode error there is 10.40% against plain-20's 10.00%" in text
    assert "For the ResNets the deviation is at most 0.0e+00" in text
    assert ("ResNet-20 → ResNet-56: the constructed ResNet-56 has ResNet-20's test error, 8.60%; trained from scratch, "
            "ResNet-56 ends lower: 7.00% (training error 0.30% vs 0.80%).") in text

    text = words.init_paragraph(found.starts, table)
    assert text.startswith("**plain-56 (from plain-20): SGD kept the solution it started from.** It starts at 9.50% "
                           "test error, plain-20's on the same images being 9.50%, and ends at 9.00%")
    assert "lower training error than plain-20: 0.70% vs 0.90%" in text
    assert "lower training error than plain-56: 0.70% vs 3.10%" in text

    text = words.ratios_paragraph(insp.per_block(figures.select(found.frame(BLOCK_RATIOS), "resnet_cifar"),
                                                 ["change_ratio", "branch_ratio"]))
    assert text.startswith("**Blocks against the identity: as expected.**")
    assert "plain-20 1.25, plain-56 1.3, ResNet-20 0.3, ResNet-56 0.2" in text
    assert "closer to the identity than the plain nets' at 2 of 2 depth(s)" in text
    assert "ResNet-20 0.4, ResNet-56 0.25: it falls with every step in depth" in text

    text = words.lesions_paragraph(insp.per_block(figures.select(found.frame(LESION), "resnet_cifar"),
                                                  ["test_err", "intact_test_err"]))
    assert text.startswith("**Deleting one block at test time: as Veit et al. found.**")
    assert ("ResNet-56 (intact 7.00%): median 8.00% with one block deleted (+1.00 points), 25 of 27 deletions cost "
            "less than 5 points, the worst is stage2.0 at 38.00%") in text
    assert "plain-20 (intact 9.50%): median 90.00% with one block deleted (+80.50 points), 0 of 9" in text


def test_opposite_numbers_give_opposite_sentences(tmp_path):
    runs = tmp_path / "runs"
    run = write_run(runs, 20, False, 0, (5.0, 9.5))
    write_inspection(run, 20, False, change=lambda b: 0.1, intact=(9.5, 0.5), lesion=lambda b: 10.0,
                     constructed=[constructed_row(56, 9.5)])
    run = write_run(runs, 20, True, 0, (5.0, 9.0))
    write_inspection(run, 20, True, change=lambda b: 0.9, branch=lambda b: 1.0, lesion=lambda b: 80.0,
                     constructed=[constructed_row(56, 9.0)])
    write_run(runs, 56, True, 0, (6.0, 12.0))  # the scratch ResNet-56 ends worse than the constructed one
    write_run(runs, 56, False, 0, (2.0, 9.0))  # the scratch plain-56 trains better than plain-20
    write_run(runs, 56, False, 0, (30.0, 40.0), init_depth=20, start=START)  # and the init.from run falls apart
    table, found = table6(scan_runs(runs, warn=False).frame), insp.scan_inspection(runs)
    text = words.constructed_paragraph(insp.constructed_profile(found.frame(insp.CONSTRUCTED)), table)
    assert text.startswith("**plain-20 → plain-56: a solution at least as good exists, and SGD found one as good.**")
    assert "trained from scratch, ResNet-56 ends no lower: 12.00% (training error 6.00% vs 5.00%)." in text
    assert words.init_paragraph(found.starts, table).startswith(
        "**plain-56 (from plain-20): SGD lost the solution it started from, down to where plain-56 from scratch ends.**")
    ratios = insp.per_block(found.frame(BLOCK_RATIOS), ["change_ratio", "branch_ratio"])
    assert words.ratios_paragraph(ratios).startswith("**Blocks against the identity: not as expected.**")
    lesions = insp.per_block(found.frame(LESION), ["test_err", "intact_test_err"])
    assert words.lesions_paragraph(lesions).startswith("**Deleting one block at test time: not as Veit et al. found.**")


@pytest.mark.slow
def test_report_has_a_section_per_measure_and_index_html_shows_the_figures(runs, tmp_path):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md, html = (out / "report.md").read_text(), (out / "index.html").read_text()
    for heading in ("## Why depth hurts plain nets", "### The constructed deeper net",
                    "### Does SGD keep it?", "### How close each block is to the identity",
                    "### Lesion study: one block deleted at test time"):
        assert heading in md
    for stem in ("init_runs", "block_ratios", "lesion", "minimodel_block_ratios", "minimodel_lesion"):
        assert (out / f"{stem}.png").exists() and (out / f"{stem}.svg").exists()
        assert f'<img src="{stem}.png"' in html and f"]({stem}.png)" in md
    assert "| plain-20 → plain-56 | 9.50 | 9.50 | 13.00 | 9.00 | 0.90 | 3.10 | 0.70 |" in md
    assert "so they cannot be inspected here: `resnet_cifar-depth=32" in md and "not inspected yet" not in md
    assert "constructed: not supported for MiniModel" in md
    assert "plain-56 (from plain-20)" in md and "started from a trained shallower net" in md  # Table 6, other nets
