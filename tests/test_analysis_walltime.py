"""The report's training wall time: the union of every run's training spans (one per session of a run, from
the session's start for as long as its epochs took), so that eight runs trained together count once, runs one
after another add up, and the days between a sweep's sessions are not counted. Checked against hand-made
run.json sessions and epoch times."""
import json
import warnings

import pytest

from analysis.load import scan_runs
from analysis.provenance import machine_lines, training_wall_seconds
from tests.helpers.runs import EPOCHS, ITERS_PER_EPOCH, write_run


def with_sessions(run_dir, sessions):
    info = json.loads((run_dir / "run.json").read_text())
    info["sessions"] = [{"started_at": t, "from_iteration": it} for t, it in sessions]
    (run_dir / "run.json").write_text(json.dumps(info))


def scan(runs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scan_runs(runs).frame


def test_runs_trained_together_count_once_and_a_pause_before_a_resume_not_at_all(tmp_path):
    # two runs trained together (six 10 s epochs each, from the same second), resumed together after epoch 4 a
    # day later: 40 s + 20 s of training wall time, where the epochs sum to 120 s
    for depth in (20, 56):
        run = write_run(tmp_path, depth, False, 0, (1.0, 9.0))
        with_sessions(run, [("2026-01-01T10:00:00+00:00", 0), ("2026-01-02T10:00:00+00:00", 4 * ITERS_PER_EPOCH)])
    frame = scan(tmp_path)
    starts = frame[frame["depth"] == 20].sort_values("epoch")["session_started_at"].tolist()
    assert starts == ["2026-01-01T10:00:00+00:00"] * 4 + ["2026-01-02T10:00:00+00:00"] * (EPOCHS - 4)
    assert training_wall_seconds(frame) == pytest.approx(60.0)
    lines = machine_lines(frame)
    assert "training wall time: 1.0 min (the time during which any run was training" in "\n".join(lines)
    assert "training time summed over runs: 2.0 min" in lines


def test_runs_one_after_another_add_up_and_partial_overlap_counts_once(tmp_path):
    a = write_run(tmp_path, 20, False, 0, (1.0, 9.0))  # 60 s from 10:00:00
    b = write_run(tmp_path, 20, True, 0, (1.0, 9.0))  # 60 s from 10:01:30: after a, with a 30 s gap
    c = write_run(tmp_path, 56, True, 0, (1.0, 9.0))  # 60 s from 10:00:30: overlaps a by 30 s
    with_sessions(a, [("2026-01-01T10:00:00+00:00", 0)])
    with_sessions(b, [("2026-01-01T10:01:30+00:00", 0)])
    with_sessions(c, [("2026-01-01T10:00:30+00:00", 0)])
    # spans [0, 60], [90, 150], [30, 90]: their union is [0, 150]
    assert training_wall_seconds(scan(tmp_path)) == pytest.approx(150.0)


def test_runs_without_sessions_give_no_wall_time_but_keep_the_sum(tmp_path):
    write_run(tmp_path, 20, False, 0, (1.0, 9.0))  # an older run.json: no `sessions`
    frame = scan(tmp_path)
    assert training_wall_seconds(frame) is None
    lines = machine_lines(frame)
    assert not any(line.startswith("training wall time") for line in lines)
    assert "training time summed over runs: 1.0 min" in lines


def test_a_run_resumed_on_another_machine_and_commit_names_both_in_order(tmp_path):
    """The H100 sweep: 122 epochs at one commit, the rest at a later one (and perhaps another GPU). The report's
    'what produced these results' names every machine and commit, in order, not only the last session's."""
    run = write_run(tmp_path, 20, False, 0, (1.0, 9.0))
    info = json.loads((run / "run.json").read_text())
    info["sessions"] = [  # the first session from before per-session keys, as the resume keeps it: backfilled
        {"started_at": "2026-11-23T09:39:45+00:00", "from_iteration": 0, "device_name": "NVIDIA H100 80GB HBM3",
         "git_commit": "d3856fe"},
        {"started_at": "2026-11-30T10:00:00+00:00", "from_iteration": 4 * ITERS_PER_EPOCH,
         "device_name": "NVIDIA H200", "git_commit": "abc1234"}]
    info.update({"device_name": "NVIDIA H200", "git_commit": "abc1234"})
    (run / "run.json").write_text(json.dumps(info))
    other = write_run(tmp_path, 56, False, 0, (1.0, 9.0))  # one session, recorded only at the top
    with_sessions(other, [("2026-11-23T09:39:45+00:00", 0)])
    lines = machine_lines(scan(tmp_path))
    assert "device: `NVIDIA H100 80GB HBM3 then NVIDIA H200`, `Test GPU`" in lines
    assert "git commit: `d3856fe then abc1234`" in "\n".join(lines)


def test_a_resume_keeps_the_last_sessions_provenance_before_overwriting_the_top_level():
    from experiments.harness.cell import _keep_session_provenance
    info = {"device_name": "NVIDIA H100 80GB HBM3", "git_commit": "d3856fe", "speed": {"bf16": True},
            "sessions": [{"started_at": "2026-11-23T09:39:45+00:00", "from_iteration": 0}]}
    _keep_session_provenance(info)
    assert info["sessions"][0] == {"started_at": "2026-11-23T09:39:45+00:00", "from_iteration": 0,
                                   "device_name": "NVIDIA H100 80GB HBM3", "git_commit": "d3856fe",
                                   "speed": {"bf16": True}}
    info["sessions"][0]["git_commit"] = "kept"  # a session that recorded its own is left as it is
    _keep_session_provenance(info)
    assert info["sessions"][0]["git_commit"] == "kept"
