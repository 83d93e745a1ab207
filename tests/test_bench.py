"""make bench on CPU: every pipeline measured in interleaved rounds and written; and the fast path's numbers
against fp32 eager's (on CPU the fast path's numeric switches are bf16 autocast and channels_last)."""
import csv
import json
import statistics
import time

import pytest
import torch

from experiments.tools import bench
from tests.helpers.harness import run_inprocess


@pytest.mark.slow
def test_bench_writes_every_pipeline_with_ratios_and_projections(tmp_path, capsys, monkeypatch):
    benchmark = []
    measure = bench.measure
    monkeypatch.setattr(bench, "measure", lambda *a: benchmark.append(torch.backends.cudnn.benchmark) or measure(*a))
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", False)
    monkeypatch.setattr(bench, "BATCH", 16)  # the pipelines as they are, on a CPU-sized batch
    assert bench.main(["--rounds", "2", "--steps", "1", "--warmup", "0", "--no-switches", "--device", "cpu",
                       "--out", str(tmp_path)]) == 0
    with open(tmp_path / "bench.csv") as f:
        rows = {r["pipeline"]: r for r in csv.DictReader(f)}
    nets = {f"{n}-{d}" for n in ("plain", "ResNet") for d in (20, 56)}
    assert set(rows) == {f"a {n}" for n in nets} | {f"b {n}" for n in nets} | {"c", "b ResNet-56 no probes"}
    assert all(r["rounds"] == "2" and 0 < float(r["images_per_s_min"]) <= float(r["images_per_s_median"])
               <= float(r["images_per_s_max"]) for r in rows.values())
    summary = json.loads((tmp_path / "bench.json").read_text())
    assert set(summary["ratios"]) == {"b/a", "c/a", "probes"}
    assert summary["speed_auto"]["channels_last"] is True and summary["speed_auto"]["bf16"] is False  # auto on a CPU
    md = (tmp_path / "bench.md").read_text()
    for needle in ("(a) conventional", "(b) ours", "(c) ours, 8 networks", "b/a =", "c/a =", "TFLOP/s", "torch ",
                   "rounds of 1 timed steps", "median (min-max)", "batch 16,", "the training steps only"):
        assert needle in md
    assert "b/a =" in capsys.readouterr().out
    assert benchmark == [True]  # timed as runs train: cuDNN autotuning on, as experiments.harness.cell sets it


class Sleeper:
    """A pipeline whose step takes a set time (a stand-in with a known speed)."""

    def __init__(self, seconds):
        self.seconds = seconds

    def step(self):
        time.sleep(self.seconds)


def test_rounds_interleave_the_pipelines_and_ratios_are_taken_within_a_round():
    import torch
    m = bench.measure({"slow": Sleeper(0.02), "fast": Sleeper(0.01)}, torch.device("cpu"), rounds=3, steps=2, warmup=0)
    assert all(len(v) == 3 for v in m["rates"].values())
    r = bench.ratio(m["rates"], "fast", "slow")
    assert 1.6 < r["median"] < 2.1 and r["min"] <= r["median"] <= r["max"]
    # a round where the machine was busy for one side only shows as spread, not as the median
    noisy = {"a": [100.0, 100.0, 100.0, 100.0, 10.0], "b": [200.0, 200.0, 200.0, 200.0, 200.0]}
    r = bench.ratio(noisy, "b", "a")
    assert r["median"] == 2.0 and r["max"] == 20.0 and r["wide"]
    assert not bench.ratio({"a": [100.0, 101.0], "b": [200.0, 201.0]}, "b", "a")["wide"]


def test_flop_count_grows_with_depth_as_the_convolutions_do():
    f20, f56 = bench.flops_per_image(20, True), bench.flops_per_image(56, True)
    # forward ~41 MFLOP-MACs for ResNet-20 (82 MFLOP), x3 for forward + backward
    assert 2.0e8 < f20 < 3.0e8
    assert 2.8 < f56 / f20 < 3.3  # 54 vs 18 convs in the blocks, plus the shared stem and head


@pytest.mark.slow
def test_fast_numeric_path_matches_fp32_eager_within_seed_spread(tiny, tmp_path):
    finals = {}
    for name, speed in (("fast", ["speed.bf16=on", "speed.channels_last=on"]), ("eager", bench.SLOW_PATH)):
        finals[name] = []
        for seed in range(3):
            out = tmp_path / f"{name}{seed}"
            run_inprocess(tiny + [f"seed={seed}", "depth=8", "protocol.iterations=24", "protocol.milestones=[16,20]",
                                  *speed], out)
            with open(out / "metrics.csv") as f:
                finals[name].append(float(list(csv.DictReader(f))[-1]["train_loss"]))
    gap = abs(statistics.mean(finals["fast"]) - statistics.mean(finals["eager"]))
    spread = max(statistics.stdev(v) for v in finals.values())
    assert gap <= 2 * spread + 0.05, finals


@pytest.mark.slow
def test_compare_trains_the_named_net_on_both_paths_and_says_whether_they_agree(tiny, tmp_path, capsys):
    data = [o for o in tiny if not o.startswith("protocol=")]
    assert bench.main(["--compare", "2", "--net", "ResNet-8", "--protocol", "smoke", "--fast", "speed.bf16=on",
                       "--device", "cpu", "--out", str(tmp_path), *data]) == 0
    runs = {p.name: json.loads((p / "run.json").read_text())
            for p in (tmp_path / "compare" / "compare-ResNet-8-smoke-bf16=on").iterdir()}
    assert set(runs) == {"auto-seed=0", "auto-seed=1", "fp32_eager-seed=0", "fp32_eager-seed=1"}
    for name, info in runs.items():
        config = info["config"]
        assert (config["depth"], config["residual"], config["protocol"]["name"]) == (8, True, "smoke")
        # the --fast override reaches the fast path only; fp32 eager has every switch off
        assert info["speed"]["bf16"] is name.startswith("auto") and info["speed"]["channels_last"] is name.startswith("auto")
    md = (tmp_path / "compare-ResNet-8-smoke-bf16=on.md").read_text()
    assert "speed.*=auto + speed.bf16=on (channels_last, bf16) vs fp32 eager on cpu: ResNet-8, protocol smoke" in md
    assert md.count("| auto |") == 1 and md.count("| fp32_eager |") == 1
    assert "2 seed-stds" in md and md in capsys.readouterr().out + "\n"


def test_compare_refuses_a_net_it_cannot_parse_in_one_line(capsys):
    import pytest
    with pytest.raises(SystemExit) as e:
        bench.main(["--compare", "1", "--net", "resnet56"])
    assert e.value.code == 2
    assert "--net resnet56: expected plain-DEPTH or ResNet-DEPTH" in capsys.readouterr().err


def test_compare_checks_every_run_before_training_any(tiny, tmp_path, capsys):
    """A bad --protocol or --fast override is one line and exit 2 before the first run, and nothing is written."""
    data = [o for o in tiny if not o.startswith("protocol=")]
    for args, message in ((["--protocol", "fast"], "no protocol named 'fast': choose one of"),
                          (["--protocol", "smoke", "--fast", "speed.bf16=maybe"], "speed.bf16=maybe: Invalid value")):
        assert bench.main(["--compare", "2", "--device", "cpu", "--out", str(tmp_path / "out"), *args, *data]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
        assert not (tmp_path / "out").exists()
