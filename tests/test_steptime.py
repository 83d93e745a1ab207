"""experiments.tools.steptime on a CPU: every network timed alone and together, every epoch-end cost, the projection
over the paper protocol computed from those numbers, and the words that read them."""
import gzip
import json

import pytest

from experiments.tools import steptime


def test_steptime_times_each_part_and_projects_the_paper_protocol_from_them(tmp_path, capsys):
    assert steptime.main(["--nets", "8", "--steps", "1", "--test-images", "50", "--device", "cpu", "--profile", "1",
                          "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "steptime.json").read_text())
    assert r["nets"] == ["plain-8", "ResNet-8"] and r["streams"] is False and r["graphed"] == [False, False]
    j = r["joint_step_ms"]
    assert 0 < j["cpu_enqueue"] <= j["wall"]
    assert set(r["solo_step_ms"]) == set(r["epoch_end_s"]) == {"plain-8", "ResNet-8"}
    for e in r["epoch_end_s"].values():
        assert e["eval_with_probes"] > 0 and e["eval_without_probes"] > 0 and e["checkpoint"] > 0
        assert 0.01 < e["checkpoint_mb"] < 1  # two copies of ~78k fp32 parameters (weights, momentum): ~0.6 MB
    p = r["projected_paper_s"]
    assert p["epochs"] == 165  # 390 steps an epoch: 164 whole epochs and the partial last one
    assert p["steps"] == pytest.approx(64_000 * j["wall"] / 1000)
    evals = sum(e["eval_with_probes"] for e in r["epoch_end_s"].values()) * 10_000 / 50
    assert p["evaluations"] == pytest.approx(165 * evals)
    joint = r["joint_epoch_end_s"]  # the epoch end as fit() makes it, both nets together
    assert joint["evaluations"] > 0 and joint["checkpoint_copies"] > 0
    assert p["epoch_ends"] == pytest.approx(165 * (joint["evaluations"] * 10_000 / 50 + joint["checkpoint_copies"]))
    md = (tmp_path / "steptime.md").read_text()
    assert "As a run makes them (all test passes enqueued, one wait; checkpoints written behind)" in md
    assert "On a CPU a step runs as Python enqueues it" in md and "Overlap of the networks" not in md
    assert "| plain-8 |" in md and "| ResNet-8 |" in md and "Paper protocol projected" in md
    assert "wrote" in capsys.readouterr().out
    # the profile: no CUDA kernels on a CPU, but the op table and a readable trace
    assert r["profile"] == {"steps": 1, "kernels_per_step": 0, "device_busy": None}
    assert "aten::convolution" in (tmp_path / "steptime-profile.txt").read_text()
    with gzip.open(tmp_path / "steptime-trace.json.gz") as f:
        assert json.load(f)["traceEvents"]
    assert "Profile of 1 joint steps" in md and "no CUDA kernels" in md


def test_steptime_refuses_bad_depths_in_one_line(capsys):
    with pytest.raises(SystemExit) as e:
        steptime.main(["--nets", "20,x", "--device", "cpu"])
    assert e.value.code == 2 and "--nets takes depths" in capsys.readouterr().err


@pytest.mark.parametrize("enqueue, wall, busy, word", [
    (9.5, 10.0, None, "CPU-bound or launch-queue-bound"),  # no profile: the two causes look alike
    (9.5, 10.0, 0.6, "CPU-bound:"),  # the GPU idle 40%: it waits for Python
    # H100, 2026-11-23: enqueue 13.7 of 15.7 ms with the GPU busy 97%: the launches waited for the device
    (13.69, 15.74, 0.97, "Device-bound: the GPU was busy 97%"),
    (2.0, 10.0, None, "Device-bound: enqueueing takes"),
])
def test_the_verdict_reads_enqueue_against_wall_time_and_the_profile_on_a_gpu(enqueue, wall, busy, word):
    r = {"streams": True, "memory": {"reserved_gib": 1.0, "max_allocated_gib": 0.5},
         "joint_step_ms": {"cpu_enqueue": enqueue, "wall": wall},
         "solo_step_ms": {"a": 6.0, "b": 4.0},
         "profile": None if busy is None else {"steps": 5, "kernels_per_step": 100, "device_busy": busy},
         "projected_paper_s": {"steps": 600.0, "evaluations": 100.0, "checkpoints": 20.0, "epochs": 165}}
    said = steptime.verdicts(r)
    assert said[0].startswith(word)
    if wall != 10.0:  # the readings below are for a 10 ms joint step
        return
    # joint 10 ms against a sum of 10 and a slowest of 6: no overlap at all
    assert "0% of the possible overlap" in said[1]
    assert "epoch ends are 17% of 12.0 min" in said[2] and len(said) == 3  # no joint epoch end measured
    r["joint_epoch_end_s"] = {"evaluations": 0.25, "checkpoint_copies": 0.05}
    r["test_images"] = 10_000
    r["projected_paper_s"]["epoch_ends"] = 165 * 0.3
    # 0.3 s against (100 + 20) / 165 = 0.73 s an epoch; 720 s against 649.5 s in all
    assert said[:3] == steptime.verdicts(r)[:3] and steptime.verdicts(r)[3] == (
        "As a run makes them (all test passes enqueued, one wait; checkpoints written behind): an epoch end waits "
        "0.30 s (test passes 0.25 s, checkpoint copies 0.05 s) against 0.73 s one after another: 10.8 min in all, "
        "1.11x.")


def test_busy_fraction_is_the_union_of_kernel_spans_over_their_extent():
    # kernels on two streams: [0, 4] and [2, 6] overlap, then a gap until [8, 10]: busy 8 of 10
    assert steptime.busy_fraction([(8, 10), (0, 4), (2, 6)]) == 0.8
    assert steptime.busy_fraction([(0, 5), (1, 2)]) == 1.0


@pytest.mark.slow
def test_speed_switches_reach_the_trainers_and_the_report(tmp_path):
    assert steptime.main(["--nets", "8", "--steps", "1", "--test-images", "20", "--device", "cpu",
                          "--speed", "channels_last=off", "--speed", "speed.bf16=on", "--out", str(tmp_path)]) == 0
    r = json.loads((tmp_path / "steptime.json").read_text())
    assert r["speed"]["bf16"] is True and r["speed"]["channels_last"] is False
    assert "speed switches on: bf16, foreach, cudnn_benchmark." in (tmp_path / "steptime.md").read_text()
    assert steptime.main(["--nets", "8", "--steps", "1", "--test-images", "20", "--device", "cpu",
                          "--out", str(tmp_path)]) == 0  # the default: channels_last on a CPU, bf16 off
    r = json.loads((tmp_path / "steptime.json").read_text())
    assert r["speed"]["bf16"] is False and r["speed"]["channels_last"] is True


@pytest.mark.parametrize("item, said", [("compile=maybe", "Invalid value 'maybe'"), ("colour=on", "Key 'colour'"),
                                        ("compile", "expected KEY=VALUE")])
def test_a_bad_speed_switch_is_one_line_naming_it(item, said, capsys):
    with pytest.raises(SystemExit) as e:
        steptime.main(["--nets", "8", "--device", "cpu", "--speed", item])
    err = capsys.readouterr().err
    assert e.value.code == 2 and said in err and f"--speed {item}" in err


def test_the_h100_measurement_reads_device_bound_as_its_profile_says():
    """The first GPU run's file (results/gpu/h100-2026-11-23): written before `speed` was recorded, rendered now."""
    from pathlib import Path
    r = json.loads((Path(__file__).parent.parent / "results/gpu/h100-2026-11-23/steptime.json").read_text())
    md = steptime.markdown(r)
    assert "8 networks (plain-20" in md and "speed switches: the defaults (`auto`), not recorded" in md
    assert "- Device-bound: the GPU was busy 97% of the profiled steps" in md and "CPU-bound" not in md
    assert "As a run makes them" not in md  # measured before the joint epoch end existed


@pytest.mark.slow
def test_steptime_choose_times_each_variant_against_the_default_and_reports_its_check(tmp_path, monkeypatch):
    """--choose SECONDS: the first-minute choice a sweep of these nets would make, each variant's joint step beside
    the default's in one run (here two real variants: the CPU's channels_last, and NCHW)."""
    from experiments.training import variants
    monkeypatch.setattr(variants, "VARIANTS", (variants.Variant("default", {}, ""),
                                               variants.Variant("nchw", {"channels_last": "off"}, "")))
    assert steptime.main(["--nets", "8", "--steps", "1", "--test-images", "20", "--device", "cpu", "--choose", "60",
                          "--out", str(tmp_path)]) == 0
    c = json.loads((tmp_path / "steptime.json").read_text())["choice"]
    assert set(c["variants"]) == {"default", "nchw"} and all(v["passed"] for v in c["variants"].values())
    assert c["variant"] == min(c["variants"], key=lambda n: c["variants"][n]["ms_per_step"])
    md = (tmp_path / "steptime.md").read_text()
    assert f"**{c['variant']}**" in md and "| default |" in md and "1.00x" in md and "| nchw |" in md
