"""make bench on CPU: the three pipelines measured and written; and the fast path's numbers against fp32
eager's (on CPU the fast path's numeric switches are bf16 autocast and channels_last)."""
import csv
import json
import statistics

from experiments import bench
from tests.helpers.harness import run_inprocess


def test_bench_writes_all_three_pipelines_with_ratios_and_projections(tmp_path, capsys):
    assert bench.main(["--steps", "1", "--warmup", "0", "--device", "cpu", "--out", str(tmp_path)]) == 0
    with open(tmp_path / "bench.csv") as f:
        rows = list(csv.DictReader(f))
    pipelines = {r["pipeline"] for r in rows}
    assert pipelines == {"a_conventional", "b_ours_single", "c_ours_concurrent8"}
    assert {(r["depth"], r["residual"]) for r in rows if r["pipeline"] == "a_conventional"} == {
        ("20", "False"), ("20", "True"), ("56", "False"), ("56", "True")}
    assert all(float(r["images_per_s"]) > 0 for r in rows)
    summary = json.loads((tmp_path / "bench.json").read_text())
    wall = summary["projected_sweep_s"]
    assert summary["ratio_b_over_a"] == wall["a_conventional"] / wall["b_ours_single"]
    assert summary["ratio_c_over_a"] == wall["a_conventional"] / wall["c_ours_concurrent8"]
    md = (tmp_path / "bench.md").read_text()
    for needle in ("(a) conventional", "(b) ours", "(c) ours, 8 networks", "b/a =", "c/a =", "TFLOP/s", "torch "):
        assert needle in md
    assert "b/a =" in capsys.readouterr().out


def test_flop_count_grows_with_depth_as_the_convolutions_do():
    f20, f56 = bench.flops_per_image(20, True), bench.flops_per_image(56, True)
    # forward ~41 MFLOP-MACs for ResNet-20 (82 MFLOP), x3 for forward + backward
    assert 2.0e8 < f20 < 3.0e8
    assert 2.8 < f56 / f20 < 3.3  # 54 vs 18 convs in the blocks, plus the shared stem and head


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
