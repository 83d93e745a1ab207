"""analysis/probes_figures.py on synthetic probe files with known values: Fig. 7, gradient norms,
the vanishing-gradient sentence, and runs whose probe files are missing or cut short."""
from __future__ import annotations

import numpy as np
import pytest

from analysis import probes_figures as pf
from analysis import probes_text, report, text
from runformat import LAYER_STATS
from tests.helpers.runs import PROBE_EPOCHS as EPOCHS
from tests.helpers.runs import write_probes, write_run

# std at the last epoch: plain nets about 1.5, ResNets smaller and smaller with depth (as in the paper);
# earlier epochs are 10x larger, so a figure that used them would show it
FINAL_STD = {(20, False): 1.5, (56, False): 1.6, (20, True): 0.9, (56, True): 0.6}


def final_std(depth, residual, offset=0.0):
    base = FINAL_STD.get((depth, residual), 1.2) + offset
    return lambda e, l: (base + 0.01 * (l % 7)) * (1 if e == EPOCHS else 10)


@pytest.fixture
def runs(tmp_path):
    runs = tmp_path / "runs"
    for depth, residual in FINAL_STD:
        run = write_run(runs, depth, residual, 0, (1.0, 9.0), epochs=EPOCHS)
        write_probes(run, depth, residual, std=final_std(depth, residual))
    # a second ResNet-56 seed (mean over seeds) and a ResNet-32, which Fig. 7 does not show
    run = write_run(runs, 56, True, 1, (1.0, 9.0), epochs=EPOCHS)
    write_probes(run, 56, True, seed=1, std=final_std(56, True, offset=0.2))
    run = write_run(runs, 32, True, 0, (1.0, 9.0), epochs=EPOCHS)
    write_probes(run, 32, True, std=final_std(32, True))
    return runs


def test_load_probe_files_are_tidy(runs):
    stats, grads = pf.load_layer_stats(runs), pf.load_grad_norms(runs)
    assert set(stats["net"]) == {"plain-20", "plain-56", "ResNet-20", "ResNet-32", "ResNet-56"}
    for frame in (stats, grads):
        assert {"run", "net", "status", "finished", "family", "epoch", "layer"} <= set(frame)
        assert frame["finished"].all() and (frame["status"] == "completed").all()
    p56 = stats[(stats["net"] == "plain-56") & (stats["epoch"] == EPOCHS)]
    assert list(p56["layer"]) == list(range(1, 56))
    assert set(grads["kind"]) == {"weight", "input"}
    assert len(grads[(grads["net"] == "ResNet-20") & (grads["kind"] == "input")]) == 9 * EPOCHS


def test_fig7_lines_sorted_panel_and_final_epoch(runs):
    fig = pf.fig7(pf.load_layer_stats(runs))
    top, bottom = fig.axes
    assert len(fig.axes) == 2
    for ax in (top, bottom):
        assert len(ax.get_lines()) == 4  # plain-20/56, ResNet-20/56; ResNet-32 is not in Fig. 7
        assert ax.get_ylabel() == "std"
    assert top.get_xlabel() == "layer index (original)"
    assert bottom.get_xlabel() == "layer index (sorted by magnitude)"
    assert [t.get_text() for t in top.get_legend().get_texts()] == [
        "plain-20", "plain-56", "ResNet-20", "ResNet-56"]
    styles = {l.get_label(): l.get_linestyle() for l in top.get_lines()}
    assert styles["plain-56"] == "--" and styles["ResNet-56"] == "-"
    for line in bottom.get_lines():
        assert np.all(np.diff(line.get_ydata()) <= 0)  # sorted by magnitude, descending
    lines = {l.get_label(): l for l in top.get_lines()}
    assert len(lines["plain-56"].get_xdata()) == 55 and len(lines["ResNet-20"].get_xdata()) == 19
    # final epoch only, mean over the two ResNet-56 seeds
    assert lines["ResNet-56"].get_ydata()[0] == pytest.approx(0.6 + 0.1 + 0.01)
    assert max(lines["plain-20"].get_ydata()) < 2.0
    assert "Figure 7" in fig.get_suptitle()


def test_gradients_figure_panels_log_scale(runs):
    fig = pf.gradients(pf.load_grad_norms(runs))
    assert len(fig.axes) == 4  # weight / block-input rows x early / late columns
    for ax in fig.axes:
        assert ax.get_yscale() == "log"
        assert len(ax.get_lines()) == 4
    assert "early" in fig.axes[0].get_title() and "late" in fig.axes[1].get_title()
    assert fig.axes[0].get_xlabel() == "layer index" and fig.axes[2].get_xlabel() == "block index"


def test_gradients_figure_without_input_rows(tmp_path):
    runs = tmp_path / "runs"
    for residual in (False, True):
        write_probes(write_run(runs, 20, residual, 0, (1.0, 9.0), epochs=EPOCHS), 20, residual,
                     inputs=False)
    fig = pf.gradients(pf.load_grad_norms(runs))
    assert len(fig.axes) == 2 and all(len(ax.get_lines()) == 2 for ax in fig.axes)


def _grad_finding(tmp_path, first_scale):
    """plain-56 whose first 5 layers get `first_scale` times the gradient of the others; ResNet-56 even."""
    runs = tmp_path / f"runs{first_scale}"
    write_probes(write_run(runs, 56, False, 0, (3.0, 13.0), epochs=EPOCHS), 56, False,
                 weight=lambda e, l: first_scale if l <= 5 else 1.0)
    write_probes(write_run(runs, 56, True, 0, (0.5, 7.0), epochs=EPOCHS), 56, True,
                 weight=lambda e, l: 0.8 if l <= 5 else 1.0)
    grads = pf.load_grad_norms(runs)
    return probes_text.find_gradients(pf.gradient_ratios(grads), pf.gradient_ratios(grads, "input"))


def _grad_case(tmp_path, first_scale):
    return probes_text.say_gradients(_grad_finding(tmp_path, first_scale))


def test_gradient_findings(tmp_path):
    vanishing = _grad_finding(tmp_path, 1e-3)
    assert vanishing.judged.net == "plain-56" and vanishing.twin.net == "ResNet-56"
    assert vanishing.vanishing == (1, EPOCHS) and vanishing.all_vanishing and vanishing.opposite is None
    assert vanishing.judged.late.ratio == pytest.approx(1e-3) and vanishing.judged.edge == 5
    assert vanishing.inputs.late.ratio == pytest.approx(1.0)  # block inputs all 0.1
    assert not vanishing.paper_case_missing and vanishing.others == ()
    opposite = _grad_finding(tmp_path, 1e3)
    assert opposite.vanishing == () and opposite.opposite == probes_text.RatioAt(1, pytest.approx(1e3))
    assert "the opposite of vanishing" in probes_text.say_gradients(opposite)
    healthy = _grad_finding(tmp_path, 0.8)
    assert healthy.vanishing == () and healthy.opposite is None


def test_response_findings(runs):
    found = probes_text.find_responses(pf.final_profile(pf.load_layer_stats(runs)))
    assert found.agreement is probes_text.Agreement.agrees and found.epochs == (EPOCHS, EPOCHS)
    pairs = {p.depth: p for p in found.pairs}
    assert set(pairs) == {20, 56} and all(p.smaller for p in pairs.values())
    assert (pairs[56].smaller_layers, pairs[56].layers) == (55, 55)
    assert found.residual_trend.nets == ("ResNet-20", "ResNet-32", "ResNet-56")
    # ResNet-32 (1.2) breaks the fall, but the deepest still responds less than the shallowest
    assert found.residual_trend.direction is text.Direction.mixed and found.deepest_smaller
    # ResNets all larger than their plain twins: the opposite finding
    opposite = pf.final_profile(pf.load_layer_stats(runs)).assign(
        value=lambda f: np.where(f["residual"], 5.0, 1.0))
    assert probes_text.find_responses(opposite).agreement is probes_text.Agreement.disagrees


def test_vanishing_verdict_from_the_data(tmp_path):
    vanishing = _grad_case(tmp_path, 1e-3)
    assert vanishing.startswith("**Gradients: vanishing gradients in plain-56.**")
    assert "0.001x at epoch 1 and 0.001x at epoch 3" in vanishing
    assert "ResNet-56: 0.80x at epoch 1" in vanishing and "disagrees with the paper" in vanishing

    healthy = _grad_case(tmp_path, 0.8)
    assert healthy.startswith("**Gradients: no vanishing gradients in plain-56.**")
    assert "0.80x at epoch 1 and 0.80x at epoch 3" in healthy
    assert "agrees with the paper" in healthy and "disagrees" not in healthy


def test_gradient_ratio_values(tmp_path):
    runs = tmp_path / "runs"
    # first 5 layers: 1..5, last 5 of 19: 15..19 -> ratio 3/17
    write_probes(write_run(runs, 20, False, 0, (1.0, 9.0), epochs=EPOCHS), 20, False,
                 weight=lambda e, l: float(l))
    ratios = pf.gradient_ratios(pf.load_grad_norms(runs)).set_index("net")
    assert ratios.loc["plain-20", "late_ratio"] == pytest.approx(3 / 17)
    assert ratios.loc["plain-20", "early_epoch"] == 1 and ratios.loc["plain-20", "late_epoch"] == EPOCHS


def test_fig7_paragraph_states_the_medians(runs):
    para = probes_text.fig7_paragraph(pf.final_profile(pf.load_layer_stats(runs)))
    assert para.startswith("**Layer responses: as in the paper.**")
    assert "ResNets' median response is smaller than the plain nets' at 2 of 2 depth(s)" in para
    assert "ResNet-56 0.73 vs plain-56 1.63, smaller at 55 of 55 layers" in para
    opposite = pf.final_profile(pf.load_layer_stats(runs)).assign(
        value=lambda f: np.where(f["residual"], 5.0, 1.0))
    assert probes_text.fig7_paragraph(opposite).startswith("**Layer responses: not as in the paper.**")


@pytest.mark.slow
def test_report_includes_probe_sections(runs, tmp_path):
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md, html = (out / "report.md").read_text(), (out / "index.html").read_text()
    for name in ["fig7.png", "fig7.svg", "gradients.png", "gradients.svg"]:
        assert (out / name).stat().st_size > 0
    for name in ["fig7.png", "gradients.png"]:
        assert f"]({name})" in md and f'src="{name}"' in html
    assert "**Layer responses: as in the paper.**" in md
    assert "**Gradients: no vanishing gradients in plain-56.**" in md


def test_missing_and_truncated_probe_files_are_reported(tmp_path):
    runs = tmp_path / "runs"
    write_run(runs, 20, False, 0, (1.0, 9.0), epochs=EPOCHS, name="no-probes")
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out)]) == 0
    md = (out / "report.md").read_text()
    assert "Figure skipped: no run has a readable `layer_stats.csv`" in md
    assert "Figure skipped: no run has a readable `grad_norms.csv`" in md
    assert "`layer_stats.csv` missing in 1 run(s)" in md and "`no-probes`" in md
    assert not (out / "fig7.png").exists() and not (out / "gradients.png").exists()

    cut = write_run(runs, 20, True, 0, (1.0, 9.0), epochs=EPOCHS, name="cut")
    write_probes(cut, 20, True)
    content = (cut / LAYER_STATS.file).read_text()
    (cut / LAYER_STATS.file).write_text(content[:-30])  # killed mid-line in the last epoch
    with pytest.warns(UserWarning) as record:
        probes = pf.scan_probes(runs, LAYER_STATS)
    warned = " ".join(str(w.message) for w in record)
    assert "cut: layer_stats.csv truncated" in warned and "missing in 1 run(s): no-probes" in warned
    assert probes.missing == ["no-probes"]
    assert any("incomplete" in p for p in probes.problems)
    assert probes.frame["epoch"].max() == EPOCHS - 1  # the cut epoch is dropped whole
    blocks, written = pf.report_blocks(runs, out)  # the report's probe sections only: faster
    listed = [item for b in blocks if b[0] == "ul" for item in b[1]]
    assert any(item.startswith("cut: layer_stats.csv truncated") for item in listed)
    assert out / "fig7.png" in written and ("img", "fig7.png", blocks[1][2]) in blocks
