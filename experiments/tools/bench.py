"""`make bench`: training throughput of several pipelines, side by side in one run on this machine.

(a) conventional: torchvision DataLoader + PIL transforms, fp32, eager, torch.optim.SGD, a loss.item()
    per step, one network at a time (as the popular reproductions do it);
(b) ours, one network at a time: data resident on the device, tensor-op augmentation, foreach SGD, and the
    `speed.*=auto` switches of this device (experiments.training.device);
(c) ours, the eight Figure-6 networks trained together (one shared stream, a CUDA stream each);
and, for the speed switches, (b) on plain-20 and plain-56 with each switch alone: fp32 eager, channels_last,
bf16 autocast, both, torch.compile (after its compile time, which is reported apart).

A shared machine makes one timing worthless, so no pipeline is timed once: every pipeline is built and
warmed up first, then timed for a few steps in each of several rounds, in a rotated order; each ratio is
taken within a round (its two sides measured seconds apart) and reported as the median over rounds with its
spread (min-max). A spread wider than a quarter of the median is flagged as too wide to trust.

Reports images/s per network, b/a and c/a, the projected wall time of the full paper sweep (8 networks x 64k
iterations x 128 images), achieved TFLOP/s against the device's bf16 peak, the probes' overhead and the
switch table. Writes results/bench/bench.csv, bench.json and bench.md.

    python -m experiments.bench [--rounds N] [--steps N] [--out DIR] [hydra-style data overrides ...]
"""
from __future__ import annotations

import argparse
import csv
import json
import platform
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

from experiments.config import ProtocolConfig, SpeedConfig, Switch
from experiments.data.datasets import Split
from experiments.data.loader import TrainStream, pixel_mean
from experiments.harness.progress import fmt_duration
from experiments.harness.provenance import device_name
from experiments.nets.resnet_cifar import CifarResNet, net_name
from experiments.training.device import native_bf16, resolve_device
from experiments.training.train import make_trainer, step_all

DEPTHS = (20, 32, 44, 56)
BATCH = 128  # the paper's mini-batch, for every pipeline (the tests shrink it)
PAPER_IMAGES = 64_000 * 128  # one network of the paper's protocol
WIDE = 0.25  # a ratio whose spread over rounds exceeds this share of its median is not to be trusted
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


# --- the pipelines: each built and warmed up once, then timed for a few steps per round ----------------

class PILDataset(torch.utils.data.Dataset):
    """What torchvision.datasets.CIFAR10 does per item: uint8 HWC array -> PIL image -> transforms."""

    def __init__(self, split: Split, transform):
        self.x, self.y, self.transform = split.x.permute(0, 2, 3, 1).numpy(), split.y.tolist(), transform

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        from PIL import Image
        return self.transform(Image.fromarray(self.x[i])), self.y[i]


class Conventional:
    """(a): DataLoader + PIL transforms, fp32 eager, torch.optim.SGD, a host sync per step."""

    def __init__(self, split: Split, depth: int, residual: bool, device, workers: int):
        import torchvision.transforms as T
        mean = (split.x.float() / 255).mean((0, 2, 3)).tolist()
        std = (split.x.float() / 255).std((0, 2, 3)).tolist()
        tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std)])
        self.loader = torch.utils.data.DataLoader(PILDataset(split, tf), batch_size=BATCH, shuffle=True, drop_last=True,
                                                  num_workers=workers, pin_memory=device.type == "cuda",
                                                  persistent_workers=workers > 0)
        torch.manual_seed(0)
        self.device, self.model = device, CifarResNet(depth, residual).to(device)
        self.opt = torch.optim.SGD(self.model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
        self.it = iter(self.loader)

    def step(self) -> None:
        try:
            x, y = next(self.it)
        except StopIteration:
            self.it = iter(self.loader)
            x, y = next(self.it)
        x, y = x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)
        loss = F.cross_entropy(self.model(x), y)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        loss.item()  # the reproductions log loss and accuracy every step: a host sync per step


class Ours:
    """(b) and (c): exactly what a run trains (train.make_trainer), `nets` together over one stream."""

    def __init__(self, split: Split, nets, device, speed: SpeedConfig, probes: bool = True):
        from experiments.config import ProbesConfig
        self.trainers = []
        for depth, residual in nets:
            torch.manual_seed(0)
            self.trainers.append(make_trainer(CifarResNet(depth, residual), depth, ProtocolConfig(), device, speed,
                                              ProbesConfig().grad_every if probes else 0))
        self.stream = TrainStream(split, pixel_mean(split.x), BATCH, "crop_flip", seed=0)
        self.concurrent = len(self.trainers) > 1 and device.type == "cuda"
        self.i = 0

    def step(self) -> None:
        batch = self.stream.batch(*divmod(self.i, self.stream.steps_per_epoch))
        step_all(self.trainers, *batch, streams=self.concurrent)  # as fit() does
        self.i += 1


def timed(pipeline, steps: int, device) -> float:
    """Images/s per network over `steps` steps."""
    sync(device)
    start = time.perf_counter()
    for _ in range(steps):
        pipeline.step()
    sync(device)
    return BATCH * steps / (time.perf_counter() - start)


def measure(pipelines: dict, device, rounds: int, steps: int, warmup: int) -> dict:
    """{name: [images/s in each round]}: every pipeline warmed up, then timed once per round, each round in a
    rotated order so that no pipeline always runs first (or after the same neighbour)."""
    warm = {}
    for name, p in pipelines.items():
        start = time.perf_counter()
        for _ in range(warmup):
            p.step()
        sync(device)
        warm[name] = time.perf_counter() - start
    rates = {name: [] for name in pipelines}
    names = list(pipelines)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            rates[name].append(timed(pipelines[name], steps, device))
        print(f"  round {r + 1}/{rounds} done", flush=True)
    return {"rates": rates, "warmup_s": warm}


def ratio(rates: dict, top, bottom) -> dict:
    """Median and spread over rounds of a per-round ratio. top/bottom: a pipeline name or a function of the
    round's rates (e.g. a projected sweep time)."""
    n = len(next(iter(rates.values())))
    pick = (lambda k, i: rates[k][i] if isinstance(k, str) else k({n_: v[i] for n_, v in rates.items()}))
    values = [pick(top, i) / pick(bottom, i) for i in range(n)]
    med = statistics.median(values)
    return {"median": med, "min": min(values), "max": max(values), "wide": (max(values) - min(values)) > WIDE * med}


def interpolate(ips: dict, residual: bool) -> dict:
    """Images/s at depths 32 and 44 from 20 and 56: time per image is linear in depth."""
    t20, t56 = 1 / ips[(20, residual)], 1 / ips[(56, residual)]
    return {d: 1 / (t20 + (t56 - t20) * (d - 20) / 36) for d in DEPTHS}


def sweep_seconds(r: dict, pipe: str) -> float:
    """Projected wall time of the paper sweep from one round's rates `r` for pipeline `pipe` (a, b or c)."""
    if pipe == "c":
        return PAPER_IMAGES / r["c"]
    ips = {(d, res): r[f"{pipe} {net_name(d, res)}"] for d in (20, 56) for res in (False, True)}
    return sum(PAPER_IMAGES / v for res in (False, True) for v in interpolate(ips, res).values())


SWITCHES = {  # the speed-switch table: each alone, both, and compile (CPU and GPU alike)
    "fp32 eager": dict(channels_last=Switch.off, bf16=Switch.off, cuda_graphs=Switch.off, compile=Switch.off),
    "channels_last": dict(channels_last=Switch.on, bf16=Switch.off, cuda_graphs=Switch.off, compile=Switch.off),
    "bf16": dict(channels_last=Switch.off, bf16=Switch.on, cuda_graphs=Switch.off, compile=Switch.off),
    "channels_last + bf16": dict(channels_last=Switch.on, bf16=Switch.on, cuda_graphs=Switch.off, compile=Switch.off),
    "compile (fp32)": dict(channels_last=Switch.off, bf16=Switch.off, cuda_graphs=Switch.off, compile=Switch.on),
}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=0, help="timing rounds (default: 5)")
    ap.add_argument("--steps", type=int, default=0,
                    help="timed steps per pipeline per round (default: 50 on CUDA, 3 on CPU)")
    ap.add_argument("--warmup", type=int, default=-1, help="untimed steps first (default: 20 on CUDA, 2 on CPU)")
    ap.add_argument("--no-switches", action="store_true", help="leave out the speed-switch table")
    ap.add_argument("--out", default="results/bench")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--compare", type=int, default=0, metavar="SEEDS",
                    help="instead: train --net on --protocol with the speed.*=auto path and with fp32 eager "
                         "(speed.*=off), SEEDS seeds each, and compare the final errors "
                         "(results/bench/compare-NET-PROTOCOL[-FAST].md)")
    ap.add_argument("--net", default="plain-20", help="with --compare: the network, plain-DEPTH or ResNet-DEPTH")
    ap.add_argument("--protocol", default="quick", help="with --compare: the protocol (conf/protocol)")
    ap.add_argument("--fast", action="append", default=[], metavar="OVERRIDE",
                    help="with --compare: an override for the fast path only (repeatable), e.g. speed.bf16=on")
    ap.add_argument("overrides", nargs="*", help="data options as for experiments.run, e.g. data=imagefolder data.root=PATH")
    args = ap.parse_args(argv)
    device = resolve_device(args.device)
    on_cuda = device.type == "cuda"
    if args.compare:
        try:
            net = parse_net(args.net)
        except ValueError as e:
            ap.error(str(e))
        return compare(args.compare, device, Path(args.out), args.overrides, net, args.protocol, tuple(args.fast))
    rounds = args.rounds or 5
    steps = args.steps or (50 if on_cuda else 3)
    warmup = args.warmup if args.warmup >= 0 else (20 if on_cuda else 2)
    split = bench_data(args.overrides)
    name = device_name(device)
    print(f"bench on {name}: {len(split)} training images; {rounds} rounds of {steps} timed steps per pipeline")

    auto = SpeedConfig()
    # as every run sets it (experiments.harness.cell): cuDNN autotunes each conv shape once, in the warm-up steps
    torch.backends.cudnn.benchmark = bool(auto.cudnn_benchmark)
    nets4 = [(d, r) for d in (20, 56) for r in (False, True)]
    label = {(d, r): net_name(d, r) for d in DEPTHS for r in (False, True)}
    pipelines = {}
    for net in nets4:
        pipelines[f"a {label[net]}"] = Conventional(split, *net, device, workers=8 if on_cuda else 2)
        pipelines[f"b {label[net]}"] = Ours(split, [net], device, auto)
    pipelines["c"] = Ours(split, [(d, r) for d in DEPTHS for r in (False, True)], device, auto)
    pipelines["b ResNet-56 no probes"] = Ours(split, [(56, True)], device, auto, probes=False)
    if not args.no_switches:
        for switch, values in SWITCHES.items():
            for net in ((20, False), (56, False)):
                pipelines[f"switch {switch} {label[net]}"] = Ours(split, [net], device, replace(auto, **values),
                                                                  probes=False)
    m = measure(pipelines, device, rounds, steps, warmup)
    rates = m["rates"]

    med = {k: statistics.median(v) for k, v in rates.items()}
    rows = [{"pipeline": k, "images_per_s_median": v, "images_per_s_min": min(rates[k]),
             "images_per_s_max": max(rates[k]), "rounds": len(rates[k])} for k, v in med.items()]
    wall = {p: sweep_seconds(med, p) for p in ("a", "b", "c")}
    flops = {d: flops_per_image(d, True) for d in DEPTHS}
    sweep_flops = sum(2 * flops[d] * PAPER_IMAGES for d in DEPTHS)
    peak = peak_tflops(name) if on_cuda else None
    per_round = lambda p: (lambda r: 1 / sweep_seconds(r, p))  # noqa: E731 - a sweep's speed, per round
    ratios = {"b/a": ratio(rates, per_round("b"), per_round("a")), "c/a": ratio(rates, per_round("c"), per_round("a")),
              "probes": ratio(rates, "b ResNet-56 no probes", "b ResNet-56")}
    switches = {}
    if not args.no_switches:
        for switch in SWITCHES:
            for net in ((20, False), (56, False)):
                key = f"switch {switch} {label[net]}"
                switches[key] = {"switch": switch, "net": label[net], "images_per_s": med[key],
                                 "vs_fp32": ratio(rates, key, f"switch fp32 eager {label[net]}"),
                                 "warmup_s": m["warmup_s"][key]}
    summary = {"device": name, "native_bf16": native_bf16() if not on_cuda else None,
               "versions": {"torch": torch.__version__, "python": platform.python_version()},
               "rounds": rounds, "steps": steps, "batch": BATCH, "train_images": len(split),
               "speed_auto": pipelines["b ResNet-20"].trainers[0].speed.as_dict(),
               "projected_sweep_s": wall, "ratios": ratios,
               "tflops": {k: sweep_flops / w / 1e12 for k, w in wall.items()}, "bf16_peak_tflops": peak,
               "switches": switches}
    write(rows, summary, Path(args.out))
    return 0


SLOW_PATH = ["speed.bf16=off", "speed.channels_last=off", "speed.cuda_graphs=off", "speed.compile=off",
             "speed.foreach=false"]


def parse_net(name: str) -> tuple:
    """`plain-56` or `ResNet-20` (any case) -> (depth, residual); ValueError naming the form otherwise."""
    kind, _, depth = name.lower().partition("-")
    if kind not in ("plain", "resnet") or not depth.isdigit():
        raise ValueError(f"--net {name}: expected plain-DEPTH or ResNet-DEPTH, e.g. plain-56")
    return int(depth), kind == "resnet"


def compare(seeds: int, device, out: Path, overrides: list, net=(20, False), protocol: str = "quick",
            fast: tuple = ()) -> int:
    """Same results: the fast path's final errors (`speed.*=auto`, plus the `fast` overrides, e.g.
    speed.bf16=on) against fp32 eager's, each over `seeds` seeds, for one network on one protocol."""
    from experiments.harness.precheck import plan
    from experiments.harness.runner import run_overrides
    extra = (f"protocol={protocol}", f"depth={net[0]}", f"residual={str(net[1]).lower()}")
    label = net_name(*net)
    # one name per comparison, so that another comparison never resumes (or overwrites) this one's runs
    stem = "-".join(["compare", label, protocol, *(o.removeprefix("speed.") for o in fast)])
    paths = {"auto": list(fast), "fp32_eager": SLOW_PATH}
    runs = {(name, seed): [*extra, f"seed={seed}", f"device={device.type}", "progress=false", *speed, *overrides]
            for name, speed in paths.items() for seed in range(seeds)}
    for ov in runs.values():  # every run checked before the first trains: a bad --net, --protocol, --fast or data
        problem = plan(ov).problem  # override is one line, not a traceback an hour in
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 2
    finals, speeds = {}, {}
    for name in paths:
        finals[name] = []
        for seed in range(seeds):
            ov = runs[name, seed]
            run_dir = out / "compare" / stem / f"{name}-seed={seed}"
            result = run_overrides(ov, run_dir)
            if result.status != "completed":
                raise RuntimeError(f"{run_dir}: {result}")
            with open(run_dir / "metrics.csv", encoding="utf-8") as f:
                row = list(csv.DictReader(f))[-1]
            finals[name].append((float(row["train_err"]), float(row["test_err"])))
            speeds[name] = json.loads((run_dir / "run.json").read_text(encoding="utf-8")).get("speed")
    switched = ", ".join(k for k, v in (speeds["auto"] or {}).items() if v and k not in ("foreach", "cudnn_benchmark"))
    lines = [f"# Same results: speed.*=auto{' + ' + ' '.join(fast) if fast else ''} "
             f"({switched or 'nothing switched on'}) vs fp32 eager on {device.type}: {label}, protocol {protocol}, "
             f"{seeds} seeds each", "",
             "| path | final train error (%) | final test error (%) | per seed (test) |", "| --- | --- | --- | --- |"]
    for name, vals in finals.items():
        cells = []
        for i in (0, 1):
            xs = [v[i] for v in vals]
            sd = statistics.stdev(xs) if len(xs) > 1 else float("nan")
            cells.append(f"{statistics.mean(xs):.2f} ± {sd:.2f}")
        lines.append(f"| {name} | {cells[0]} | {cells[1]} | {' / '.join(f'{v[1]:.2f}' for v in vals)} |")
    diff = abs(statistics.mean(v[1] for v in finals["auto"]) - statistics.mean(v[1] for v in finals["fp32_eager"]))
    spread = max(statistics.stdev(v[1] for v in vals) if len(vals) > 1 else 0.0 for vals in finals.values())
    verdict = "within" if diff <= 2 * spread else "NOT within"
    lines += ["", f"Difference of the mean test errors: {diff:.2f} points; largest seed-to-seed std: {spread:.2f}: "
              f"{verdict} 2 seed-stds."]
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


def bench_data(overrides: list) -> Split:
    """The training split named by data overrides (as `make sweep` takes them), else synthetic images."""
    if not overrides:
        g = torch.Generator().manual_seed(0)
        return Split(torch.randint(0, 256, (5120, 3, 32, 32), dtype=torch.uint8, generator=g),
                     torch.randint(0, 10, (5120,), generator=g))
    from omegaconf import OmegaConf

    from experiments.data.datasets import load
    from experiments.harness.compose import compose
    return load(OmegaConf.to_object(compose(overrides)).data).train


def fmt_ratio(r: dict) -> str:
    text = f"{r['median']:.2f}x ({r['min']:.2f}-{r['max']:.2f})"
    return text + " **spread too wide to trust**" if r["wide"] else text


def write(rows: list, summary: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    (out / "bench.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    by = {r["pipeline"]: r for r in rows}
    names = {"a": "(a) conventional: DataLoader + PIL transforms, fp32, eager", "b": "(b) ours, one network at a time",
             "c": "(c) ours, 8 networks together"}
    peak, ratios = summary["bf16_peak_tflops"], summary["ratios"]
    on = ", ".join(k for k, v in summary["speed_auto"].items() if v) or "none"
    lines = [f"# make bench: {summary['device']}", "",
             f"torch {summary['versions']['torch']}, Python {summary['versions']['python']}; "
             f"batch {summary.get('batch', 128)}, "
             f"{summary['train_images']} training images; {summary['rounds']} rounds of {summary['steps']} timed steps "
             f"per pipeline, interleaved; images/s per network as median (min-max) over rounds. speed.*=auto here: "
             f"{on}" + (f"; native bf16: {summary['native_bf16']}" if summary["native_bf16"] is not None else "") + ".",
             "", "| network | (a) img/s | (b) img/s |", "| --- | --- | --- |"]
    cell = lambda r: f"{r['images_per_s_median']:.0f} ({r['images_per_s_min']:.0f}-{r['images_per_s_max']:.0f})"  # noqa: E731
    for d in (20, 56):
        for res in (False, True):
            net = net_name(d, res)
            lines.append(f"| {net} | {cell(by['a ' + net])} | {cell(by['b ' + net])} |")
    lines += ["", f"(c) all eight networks together: {cell(by['c'])} img/s per network.", "",
              "| pipeline | projected full paper sweep, its steps (8 nets x 64k it.) | achieved TFLOP/s |",
              "| --- | --- | --- |"]
    for k, w in summary["projected_sweep_s"].items():
        tf = summary["tflops"][k]
        share = f" ({100 * tf / peak:.1f}% of {peak:.0f} bf16 peak)" if peak else ""
        lines.append(f"| {names[k]} | {fmt_duration(w)} | {tf:.2f}{share} |")
    lines += ["", f"**b/a = {fmt_ratio(ratios['b/a'])}, c/a = {fmt_ratio(ratios['c/a'])}** (median (min-max) over rounds "
              f"of the projected sweep's speed-up). Probes (layer responses, gradient norms) cost "
              f"{100 * (ratios['probes']['median'] - 1):.1f}% on ResNet-56 (b) "
              f"({100 * (ratios['probes']['min'] - 1):.1f} to {100 * (ratios['probes']['max'] - 1):.1f}%)"
              + (" **spread too wide to trust**" if ratios["probes"]["wide"] else "") + "."]
    if summary["switches"]:
        lines += ["", "## Speed switches, each alone (ours, one network, probes off)", "",
                  "| switch | net | img/s | vs fp32 eager | warm-up (s) |", "| --- | --- | --- | --- | --- |"]
        for s in summary["switches"].values():
            lines.append(f"| {s['switch']} | {s['net']} | {s['images_per_s']:.0f} | {fmt_ratio(s['vs_fp32'])} | "
                         f"{s['warmup_s']:.1f} |")
        lines += ["", "compile's warm-up includes its compile time, paid once per run (and again on each resume)."]
    lines += ["", "Projections: (a) and (b) time depths 20 and 56 and interpolate 32 and 44 linearly in depth; "
              "(c) is the measured rate of all eight together. They are the training steps only: a sweep's 165 "
              "epoch ends (test passes with the probes, checkpoints) come on top, and `make steptime` times them. "
              "FLOPs are forward + backward as counted by "
              "torch.utils.flop_counter; the peak is the data-sheet dense bf16 figure."]
    (out / "bench.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    print(f"\nwrote {out / 'bench.csv'}, {out / 'bench.md'}, {out / 'bench.json'}")


if __name__ == "__main__":
    raise SystemExit(main())
