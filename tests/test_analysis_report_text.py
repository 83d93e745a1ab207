"""The report reads right: each fact once, a verdict as strong as the runs' length allows, the paper's numbers only
beside runs as long as the paper's, and another family's table under its own name."""
from __future__ import annotations

import re

import pandas as pd

from analysis import report
from tests.helpers.runs import write_grid, write_run


def _short(run, iterations_per_epoch: int) -> None:
    """Rewrite a run as a shorter protocol's: its epochs `iterations_per_epoch` apart."""
    metrics = pd.read_csv(run / "metrics.csv")
    metrics.assign(iteration=metrics["epoch"] * iterations_per_epoch).to_csv(run / "metrics.csv", index=False)
    text = (run / "run.json").read_text()
    (run / "run.json").write_text(re.sub(r'"iterations": \d+', f'"iterations": {6 * iterations_per_epoch}', text))


def _report(tmp_path, runs) -> str:
    out = tmp_path / "out"
    assert report.main(["--runs", str(runs), "--out", str(out), "--reference", "none"]) == 0
    return (out / "report.md").read_text()


def test_each_comparison_is_said_once(tmp_path):
    md = _report(tmp_path, write_grid(tmp_path / "runs"))
    said = re.findall(r"(\S+ ends with (?:higher|lower|the same) \w+ error (?:than|as) \S+?): ", md)
    assert said and len(said) == len(set(said)), said
    assert md.count("plain-56 ends with higher training error than plain-20") == 1


def test_a_full_length_run_gets_a_verdict_and_the_papers_numbers(tmp_path):
    md = _report(tmp_path, write_grid(tmp_path / "runs"))
    assert "**Verdict: degradation problem reproduced.**" in md
    assert "Against the paper's Table 6: ResNet-20" in md and "paper Table 6 \\[1\\]" in md


def test_a_short_run_is_provisional_and_has_no_gap_to_the_paper(tmp_path):
    runs = write_grid(tmp_path / "runs")
    for run in runs.iterdir():
        _short(run, 50)  # the quick protocol: 300 of 64,000 iterations here, but the nets learned
    md = _report(tmp_path, runs)
    assert "**Verdict, provisional after 300 iterations, 0.47% of the paper's 64,000:" not in md  # below 1%: none
    assert "No verdict: these runs are too short to judge (300 iterations, 0.47% of the paper's 64,000)" in md
    assert "Against the paper's Table 6" not in md and "paper Table 6 \\[1\\]" not in md
    assert "No gap to the paper's Table 6: its numbers are for 64,000 iterations, these runs stop at 300" in md
    assert "In the paper (Fig. 6)" not in md


def test_a_run_of_a_few_percent_of_the_paper_is_a_provisional_verdict(tmp_path):
    runs = write_grid(tmp_path / "runs")
    for run in runs.iterdir():
        _short(run, 200)  # 1,200 iterations
    md = _report(tmp_path, runs)
    assert md.splitlines()[2].startswith("**Verdict, provisional after 1,200 iterations, 1.9% of the paper's 64,000: "
                                         "degradation problem reproduced.**")


def test_nets_near_chance_get_no_verdict(tmp_path):
    runs = tmp_path / "runs"
    for depth, final in [(20, (86.0, 88.0)), (32, (88.5, 89.0))]:  # a 30-iteration smoke run: near 90%
        _short(write_run(runs, depth, False, 0, final), 5)
    md = _report(tmp_path, runs)
    assert "No verdict: these runs are too short to judge (30 iterations" in md
    assert "near chance (90.00%)" in md and "**Verdict" not in md


def test_another_family_alone_has_its_own_table_not_table_6(tmp_path):
    runs = tmp_path / "runs"
    for units, residual, final in [(3, False, (5.0, 20.0)), (6, False, (9.0, 25.0)), (3, True, (4.0, 19.0))]:
        write_run(runs, units, residual, 0, final, arch="minimodel")
    md = _report(tmp_path, runs)
    assert "Table 6" not in md and "## Final error (%) at the end of training" in md
    assert md.count("not the paper's nets, so no paper or reproduction number stands beside them") == 1
    assert "why not compared" not in md
