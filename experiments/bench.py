"""`make bench`: training throughput of three pipelines, side by side in one run on this machine.

(a) conventional: torchvision DataLoader + PIL transforms, fp32, eager, torch.optim.SGD, a loss.item()
    per step, one network at a time (as the popular reproductions do it);
(b) ours, one network at a time: data resident on the device, tensor-op augmentation, foreach SGD, and
    on CUDA bf16 autocast, channels_last and a captured CUDA-graph step;
(c) ours, the eight Figure-6 networks trained together (one shared stream, a CUDA stream each).

Reports images/s per network, the ratios b/a and c/a, the projected wall time of the full paper sweep
(8 networks x 64k iterations x 128 images) for each, achieved TFLOP/s against the device's bf16 peak,
and the probes' overhead. Writes results/bench/bench.csv and bench.md.

    python -m experiments.bench [--steps N] [--out DIR] [hydra-style data overrides ...]
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.config import ProtocolConfig, compose
from experiments.data import Split
from experiments.device import resolve_device
from experiments.loader import TrainStream, pixel_mean
from experiments.models import CifarResNet
from experiments.progress import fmt_duration
from experiments.train import step_all

DEPTHS = (20, 32, 44, 56)
PAPER_IMAGES = 64_000 * 128  # one network of the paper's protocol
# Dense bf16 tensor-core peaks (TFLOP/s) from the vendors' data sheets, by device-name fragment.
BF16_PEAK = {"H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0, "H100": 756.0,
             "A100": 312.0, "L40S": 362.0, "A10": 125.0, "RTX 4090": 165.0}


def peak_tflops(name: str):
    return next((v for k, v in BF16_PEAK.items() if k in name), None)


def flops_per_image(depth: int, residual: bool) -> float:
    """Forward + backward FLOPs of one training image, counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode
    model = CifarResNet(depth, residual)
    x = torch.randn(2, 3, 32, 32)
    with FlopCounterMode(display=False) as counter:
        F.cross_entropy(model(x), torch.zeros(2, dtype=torch.long)).backward()
    return counter.get_total_flops() / 2


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- (a) the conventional pipeline --------------------------------------------------------------------

class PILDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC array -> PIL image -> transforms."""

    def __init__(self, split: Split, transform):
        self.x, self.y, self.transform = split.x.permute(0, 2, 3, 1).numpy(), split.y.tolist(), transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


def conventional(split: Split, depth: int, residual: bool, device, warmup: int, steps: int, workers: int) -> float:
    import torchvision.transforms as T
    mean = (split.x.float() / 255).mean((0, 2, 3)).tolist()
    std = (split.x.float() / 255).std((0, 2, 3)).tolist()
    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
    loader = torch.utils.data.DataLoader(PILDataset(split, tf), batch_size=128, shuffle=True, drop_last=True,
                                         num_workers=workers, pin_memory=device.type == "cuda",
                                         persistent_workers=workers > 0)
    torch.manual_seed(0)
    model = CifarResNet(depth, residual).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    it, done, start = iter(loader), 0, None
    while done < warmup + steps:
        try:
            x, y = next(it)
        except StopIteration:
            it = iter(loader)
            continue
        if done == warmup:
            sync(device)
            start = time.perf_counter()
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        out = model(x)
        loss = F.cross_entropy(out, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        loss.item()  # the reproductions log loss and accuracy every step: a host sync per step
        done += 1
    sync(device)
    return 128 * steps / (time.perf_counter() - start)


# --- (b), (c) ours --------------------------------------------------------------------------------------

def fast_trainers(nets, device, probes: bool) -> list:
    """Exactly what a run with the default speed.* and probes.* trains (runner.make_trainer)."""
    from experiments.config import ProbesConfig, SpeedConfig
    from experiments.train import make_trainer
    out = []
    for depth, residual in nets:
        torch.manual_seed(0)
        out.append(make_trainer(CifarResNet(depth, residual), depth, ProtocolConfig(), device, SpeedConfig(),
                                ProbesConfig().grad_every if probes else 0))
    return out


def ours(split: Split, nets, device, warmup: int, steps: int, probes: bool = True) -> float:
    """Images/s per network while `nets` train together (one network: (b); eight: (c))."""
    trainers = fast_trainers(nets, device, probes)
    stream = TrainStream(split, pixel_mean(split.x), 128, "crop_flip", seed=0)
    concurrent = len(trainers) > 1 and device.type == "cuda"
    start = None
    for i in range(warmup + steps):
        if i == warmup:
            sync(device)
            start = time.perf_counter()
        step_all(trainers, *stream.batch(*divmod(i, stream.steps_per_epoch)), streams=concurrent)  # as fit() does
    sync(device)
    return 128 * steps / (time.perf_counter() - start)


def interpolate(ips: dict, residual: bool) -> dict:
    """Images/s at depths 32 and 44 from 20 and 56: time per image is linear in depth."""
    t20, t56 = 1 / ips[(20, residual)], 1 / ips[(56, residual)]
    return {d: 1 / (t20 + (t56 - t20) * (d - 20) / 36) for d in DEPTHS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=0, help="timed steps per measurement (default: 200 on CUDA, 10 on CPU)")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--warmup", type=int, default=-1, help="untimed steps first (default: 20 on CUDA, 2 on CPU)")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--compare", type=int, default=0, metavar="SEEDS",
                    help="instead: train plain-20 on the quick protocol with the fast path and with fp32 eager "
                         "(speed.*=off), SEEDS seeds each, and compare the final errors")
    ap.add_argument("overrides", nargs="*", help="data options as for experiments.run, e.g. data=imagefolder data.root=PATH")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    if args.compare:
        return compare(args.compare, device, Path(args.out), args.overrides)
    steps = args.steps or (200 if on_cuda else 10)  # a multiple of 10: probed steps in their real share
    warmup = args.warmup if args.warmup >= 0 else (20 if on_cuda else 2)
    split = bench_data(args.overrides)
    name = torch.cuda.get_device_name(device) if on_cuda else (platform.processor() or "cpu")
    print(f"bench on {name}: {len(split)} training images, {steps} timed steps per measurement")

    rows, ips_a, ips_b = [], {}, {}
    for depth in (20, 56):
        for residual in (False, True):
            ips_a[(depth, residual)] = conventional(split, depth, residual, device, warmup, steps,
                                                    workers=8 if on_cuda else 2)
            ips_b[(depth, residual)] = ours(split, [(depth, residual)], device, warmup, steps)
            for pipe, v in (("a_conventional", ips_a), ("b_ours_single", ips_b)):
                rows.append({"pipeline": pipe, "depth": depth, "residual": residual, "images_per_s": v[(depth, residual)]})
            print(f"  {'ResNet' if residual else 'plain'}-{depth}: (a) {ips_a[(depth, residual)]:.0f} img/s,"
                  f" (b) {ips_b[(depth, residual)]:.0f} img/s")
    nets = [(d, r) for d in DEPTHS for r in (False, True)]
    ips_c = ours(split, nets, device, warmup, steps)
    rows.append({"pipeline": "c_ours_concurrent8", "depth": "all", "residual": "both", "images_per_s": ips_c})
    print(f"  (c) eight networks together: {ips_c:.0f} img/s per network")
    # the probes' overhead (at most 5% is the target): ResNet-56 with and without them, best of two each
    with_probes = max(ips_b[(56, True)], ours(split, [(56, True)], device, warmup, steps, probes=True))
    no_probes = max(ours(split, [(56, True)], device, warmup, steps, probes=False) for _ in range(2))
    overhead = no_probes / with_probes - 1

    wall = {"a_conventional": sum(PAPER_IMAGES / v for r in (False, True) for v in interpolate(ips_a, r).values()),
            "b_ours_single": sum(PAPER_IMAGES / v for r in (False, True) for v in interpolate(ips_b, r).values()),
            "c_ours_concurrent8": PAPER_IMAGES / ips_c}
    flops = {d: flops_per_image(d, True) for d in DEPTHS}
    sweep_flops = sum(2 * flops[d] * PAPER_IMAGES for d in DEPTHS)
    peak = peak_tflops(name) if on_cuda else None
    summary = {"device": name, "versions": {"torch": torch.__version__, "python": platform.python_version()},
               "steps": steps, "train_images": len(split), "probe_overhead": overhead,
               "projected_sweep_s": wall, "ratio_b_over_a": wall["a_conventional"] / wall["b_ours_single"],
               "ratio_c_over_a": wall["a_conventional"] / wall["c_ours_concurrent8"],
               "tflops": {k: sweep_flops / w / 1e12 for k, w in wall.items()}, "bf16_peak_tflops": peak}
    write(rows, summary, Path(args.out))
    return 0


SLOW_PATH = ["speed.bf16=off", "speed.channels_last=off", "speed.cuda_graphs=off", "speed.foreach=false"]


def compare(seeds: int, device, out: Path, overrides: list, extra=("protocol=quick", "depth=20", "residual=false")) -> int:
    """Same results: the fast path's final errors against fp32 eager's, each over `seeds` seeds."""
    import statistics

    from experiments.run import run_overrides
    finals = {}
    for name, speed in (("fast", []), ("fp32_eager", SLOW_PATH)):
        finals[name] = []
        for seed in range(seeds):
            ov = [*extra, f"seed={seed}", f"device={device.type}", "progress=false", *speed, *overrides]
            run_dir = out / "compare" / f"{name}-seed={seed}"
            result = run_overrides(ov, run_dir)
            if result.status != "completed":
                raise RuntimeError(f"{run_dir}: {result}")
            with open(run_dir / "metrics.csv") as f:
                row = list(csv.DictReader(f))[-1]
            finals[name].append((float(row["train_err"]), float(row["test_err"])))
    lines = [f"# Same results: fast path vs fp32 eager ({', '.join(extra)}), {seeds} seeds each", "",
             "| path | final train error (%) | final test error (%) |", "| --- | --- | --- |"]
    for name, vals in finals.items():
        cells = []
        for i in (0, 1):
            xs = [v[i] for v in vals]
            sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
            cells.append(f"{statistics.mean(xs):.2f} ± {sd:.2f}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} |")
    diff = abs(statistics.mean(v[1] for v in finals["fast"]) - statistics.mean(v[1] for v in finals["fp32_eager"]))
    spread = max(statistics.stdev(v[1] for v in vals) if len(vals) > 1 else 0.0 for vals in finals.values())
    lines += ["", f"Difference of the mean test errors: {diff:.2f} points; largest seed-to-seed std: {spread:.2f}."]
    out.mkdir(parents=True, exist_ok=True)
    (out / "compare.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


def bench_data(overrides: list) -> Split:
    """The training split named by data overrides (as `make sweep` takes them), else synthetic images."""
    if not overrides:
        g = torch.Generator().manual_seed(0)
        return Split(torch.randint(0, 256, (5120, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (5120,), generator=g))
    from omegaconf import OmegaConf

    from experiments.data import load
    return load(OmegaConf.to_object(compose(overrides)).data).train


def write(rows: list, summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["pipeline", "depth", "residual", "images_per_s"])
        w.writeheader()
        w.writerows(rows)
    (out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n")
    names = {"a_conventional": "(a) conventional: DataLoader + PIL transforms, fp32, eager",
             "b_ours_single": "(b) ours, one network at a time", "c_ours_concurrent8": "(c) ours, 8 networks together"}
    peak = summary["bf16_peak_tflops"]
    lines = [f"# make bench: {summary['device']}", "",
             f"torch {summary['versions']['torch']}, Python {summary['versions']['python']}; "
             f"{summary['steps']} timed steps per measurement at batch 128, {summary['train_images']} training images.",
             "", "| network | (a) img/s | (b) img/s | b/a |", "| --- | --- | --- | --- |"]
    by = {(r["pipeline"], r["depth"], r["residual"]): r["images_per_s"] for r in rows}
    for d in (20, 56):
        for res in (False, True):
            a, b = by[("a_conventional", d, res)], by[("b_ours_single", d, res)]
            lines.append(f"| {'ResNet' if res else 'plain'}-{d} | {a:.0f} | {b:.0f} | {b / a:.2f}x |")
    lines += ["", f"(c) all eight networks together: {by[('c_ours_concurrent8', 'all', 'both')]:.0f} img/s per network.",
              "", "| pipeline | projected full paper sweep (8 nets x 64k it.) | vs (a) | achieved TFLOP/s |",
              "| --- | --- | --- | --- |"]
    for k, w in summary["projected_sweep_s"].items():
        tf = summary["tflops"][k]
        share = f" ({100 * tf / peak:.1f}% of {peak:.0f} bf16 peak)" if peak else ""
        lines.append(f"| {names[k]} | {fmt_duration(w)} | {summary['projected_sweep_s']['a_conventional'] / w:.2f}x | "
                     f"{tf:.2f}{share} |")
    lines += ["", f"**b/a = {summary['ratio_b_over_a']:.2f}x, c/a = {summary['ratio_c_over_a']:.2f}x.** "
              f"Probes (layer responses, gradient norms) cost {100 * summary['probe_overhead']:.1f}% on ResNet-56 (b).",
              "", "Projections: (a) and (b) time depths 20 and 56 and interpolate 32 and 44 linearly in depth; "
              "(c) is the measured rate of all eight together. FLOPs are forward + backward as counted by "
              "torch.utils.flop_counter; the peak is the data-sheet dense bf16 figure."]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"\nwrote {out / 'bench.csv'}, {out / 'bench.md'}, {out / 'bench.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
