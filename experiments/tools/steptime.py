"""Where a sweep's time goes: the first thing to read before making the 8-network sweep faster.

`make bench` says how fast; this says why. For the networks trained together (Figure 6's eight by default,
each on its own CUDA stream as the concurrent launcher trains them), after the captures:

- per joint step: the CPU's time to enqueue it against its wall time. Equal means the GPU waits for Python
  (CPU-bound); wall well above enqueue means the GPU is the limit;
- each network's step alone (a graph replay on CUDA) against the joint step: the joint step near the sum of
  the solo times means the streams do not overlap; near the slowest solo time, they overlap fully;
- per epoch end, each network: the test pass with and without the probes' response hooks, and the checkpoint
  (torch.save + fsync, as a run writes it); then the epoch end of all of them as a run makes it (every test
  pass enqueued before any is read, each on its network's stream; the checkpoints copied to the host, their
  writing left to threads): what training waits for; projected over the paper protocol's epochs;
- GPU memory after the first step;
- with --stacked, a speed idea: each depth's plain and residual nets stacked into one model of grouped convs
  (experiments.tools.stacked), its joint step against the separate nets', side by side (both without probes).

    python -m experiments.steptime [--steps N] [--test-images N] [--nets 20,56] [--profile N] [--stacked] [--out DIR]

Writes DIR/steptime.md and steptime.json. Runs on a CPU too (one network after another, no graphs), which is
what its test checks; its numbers mean something on a GPU.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import torch

from experiments.config import ProtocolConfig, SpeedConfig
from experiments.data.datasets import Split
from experiments.data.loader import TrainStream, pixel_mean
from experiments.harness.provenance import device_name
from experiments.harness.rundir import host_copy
from experiments.nets.resnet_cifar import CifarResNet, net_name
from experiments.tools.bench import sync
from experiments.tools.stacked import StackedTrainer, stacked_pairs
from experiments.training import variants
from experiments.training.device import resolve_device, resolve_speed
from experiments.training.train import end_epochs, evaluate, make_trainer, step_all

PAPER = ProtocolConfig()


def synthetic(n: int, device, seed: int) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (y.view(-1, 1, 1, 1) * 20 + torch.randint(0, 60, (n, 3, 32, 32), generator=g)).to(torch.uint8)
    return Split(x.to(device), y.to(device))


def joint_steps(trainers, stream, first: int, n: int, streams: bool, device) -> tuple:
    """(CPU enqueue ms, wall ms) per joint step over steps first..first+n."""
    sync(device)
    start = time.perf_counter()
    for k in range(first, first + n):
        step_all(trainers, *stream.batch(*divmod(k, stream.steps_per_epoch)), streams=streams)
    enqueued = time.perf_counter()
    sync(device)
    done = time.perf_counter()
    return 1e3 * (enqueued - start) / n, 1e3 * (done - start) / n


def solo_step_ms(t, stream, k: int, n: int, device) -> float:
    """One network's step alone: its graph replayed n times (CUDA), else n eager steps."""
    x, y = stream.batch(*divmod(k, stream.steps_per_epoch))
    sync(device)
    start = time.perf_counter()
    for _ in range(n):
        if not (t.graphed and t.graphed.replay(x, y)):
            t._step(x, y)
    sync(device)
    return 1e3 * (time.perf_counter() - start) / n


def epoch_end_s(t, test: Split, normalize, device) -> dict:
    """Seconds of one epoch end of `t`: the test pass with the probes' hooks (as a run does it), without
    them, and the checkpoint as a run writes it (torch.save of the trainer's state, then fsync)."""
    out = {}
    bs = t.protocol.eval_batch_size
    evaluate(t.model, test, normalize, bs, t.autocast)  # untimed: the first pass autotunes and allocates
    sync(device)
    start = time.perf_counter()
    with t.probes.responses():  # what end_epochs does: layer responses from the test pass
        evaluate(t.model, test, normalize, bs, t.autocast)
    t.probes.end_epoch(1)
    sync(device)
    out["eval_with_probes"] = time.perf_counter() - start
    start = time.perf_counter()
    evaluate(t.model, test, normalize, bs, t.autocast)
    sync(device)
    out["eval_without_probes"] = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "checkpoint.pt"
        start = time.perf_counter()
        torch.save({"trainer": t.state_dict(), "rng": torch.get_rng_state()}, path)
        with open(path, "rb") as f:
            os.fsync(f.fileno())
        out["checkpoint"] = time.perf_counter() - start
        out["checkpoint_mb"] = path.stat().st_size / 2**20
    return out


def joint_epoch_end_s(trainers, test: Split, normalize, streams: bool, device) -> dict:
    """Seconds training waits at one epoch end of all `trainers`, as a run makes it: `end_epochs` (every test
    pass, probes on, enqueued before one wait), then each checkpoint's copy to the host (the writing itself
    goes on in a thread while the next epoch trains: experiments.harness.cell.Cell.write_behind)."""
    sync(device)
    start = time.perf_counter()
    end_epochs(trainers, 1, test, None, normalize, streams)
    evaluations = time.perf_counter() - start
    start = time.perf_counter()
    for t in trainers:
        host_copy({"trainer": t.state_dict(), "rng": torch.get_rng_state()})
    return {"evaluations": evaluations, "checkpoint_copies": time.perf_counter() - start}


def busy_fraction(spans: list) -> float:
    """Of the time from the first kernel's start to the last one's end, the share during which at least one
    kernel ran (the rest is idle gaps: the GPU waiting for the host or for a barrier)."""
    spans = sorted(spans)
    busy, reach = 0.0, float("-inf")
    for begin, end in spans:
        if end > reach:
            busy += end - max(begin, reach)
            reach = end
    whole = reach - spans[0][0]
    return busy / whole if whole > 0 else 1.0


def profile_steps(trainers, stream, first: int, n: int, streams: bool, device, out: Path) -> dict:
    """n joint steps under torch.profiler: kernels per step, the device's busy share, the ops that take the
    time (DIR/steptime-profile.txt) and a trace for chrome://tracing or Perfetto (DIR/steptime-trace.json.gz)."""
    import gzip
    import shutil

    from torch.profiler import ProfilerActivity, profile
    cuda = device.type == "cuda"
    sync(device)
    with profile(activities=[ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])) as prof:
        for k in range(first, first + n):
            step_all(trainers, *stream.batch(*divmod(k, stream.steps_per_epoch)), streams=streams)
        sync(device)
    kernels = [(e.time_range.start, e.time_range.end) for e in prof.events()
               if e.device_type == torch.autograd.DeviceType.CUDA]
    table = prof.key_averages().table(sort_by="self_cuda_time_total" if cuda else "self_cpu_time_total", row_limit=30)
    (out / "steptime-profile.txt").write_text(table + "\n", encoding="utf-8")
    trace = out / "steptime-trace.json"
    prof.export_chrome_trace(str(trace))
    with open(trace, "rb") as src, gzip.open(f"{trace}.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    trace.unlink()
    return {"steps": n, "kernels_per_step": len(kernels) / n, "device_busy": busy_fraction(kernels) if kernels else None}


def stacked_vs_separate(depths, stream, device, speed: SpeedConfig, steps: int, rounds: int = 3) -> dict:
    """Joint-step ms of each depth's plain and residual nets stacked (one model per depth) against the same
    nets separate, both without probes, each on its own stream (CUDA), captured, timed in alternating rounds."""
    separate = []
    for depth in depths:
        for residual in (False, True):
            torch.manual_seed(0)
            separate.append(make_trainer(CifarResNet(depth, residual), depth, PAPER, device, speed, probe_every=0))
    stacked = [make_trainer(m, m.depth, PAPER, device, speed, probe_every=0, trainer_class=StackedTrainer)
               for m in stacked_pairs(depths)]
    streams = device.type == "cuda"
    times: dict = {"separate": [], "stacked": []}
    for ts in (separate, stacked):
        joint_steps(ts, stream, 0, min(steps, 10) + 1, streams, device)  # captures and warm-up
    for _ in range(rounds):
        for name, ts in (("separate", separate), ("stacked", stacked)):
            times[name].append(joint_steps(ts, stream, 11, steps, streams, device)[1])
    med = {k: sorted(v)[len(v) // 2] for k, v in times.items()}
    return {"rounds": rounds, "separate_ms": times["separate"], "stacked_ms": times["stacked"],
            "speedup": med["separate"] / med["stacked"], "graphed": [bool(t.graphed) for t in stacked]}


def choice(nets, stream, device, speed: SpeedConfig, budget: float) -> dict:
    """The first-minute choice a sweep of these nets makes (experiments.training.variants), on fresh nets: each variant's
    joint-step time and check, side by side in one run."""
    def build(switches):
        out = []
        for depth, residual in nets:
            torch.manual_seed(0)
            out.append(make_trainer(CifarResNet(depth, residual), depth, PAPER, device,
                                    variants.with_switches(speed, switches)))
        return out
    c = variants.choose(build, lambda k: stream.batch(*divmod(k, stream.steps_per_epoch)),
                        streams=len(nets) > 1 and device.type == "cuda", budget=budget, variants=variants.VARIANTS)
    return c.record()


def measure(nets, device, steps: int, test_images: int, train_images: int = 5120, profile_n: int = 0,
            out: Path | None = None, speed: SpeedConfig | None = None, stacked: bool = False,
            choose: float = 0) -> dict:
    speed = speed or SpeedConfig()
    train = synthetic(train_images, device, 0)
    test = synthetic(test_images, device, 1)
    stream = TrainStream(train, pixel_mean(train.x), 128, "crop_flip", seed=0)
    torch.backends.cudnn.benchmark = bool(speed.cudnn_benchmark)  # as runs set it
    trainers = []
    for depth, residual in nets:
        torch.manual_seed(0)
        trainers.append(make_trainer(CifarResNet(depth, residual), depth, PAPER, device, speed))
    streams = len(trainers) > 1 and device.type == "cuda"
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    start = time.perf_counter()
    step_all(trainers, *stream.batch(0, 0), streams=streams)  # the captures (CUDA)
    sync(device)
    first_step_s = time.perf_counter() - start
    memory = ({"reserved_gib": torch.cuda.memory_reserved() / 2**30,
               "max_allocated_gib": torch.cuda.max_memory_allocated() / 2**30} if device.type == "cuda" else None)
    warm = min(steps, 10)
    joint_steps(trainers, stream, 1, warm, streams, device)
    enqueue, wall = joint_steps(trainers, stream, 1 + warm, steps, streams, device)
    profiled = (profile_steps(trainers, stream, 1 + warm + steps, profile_n, streams, device, out)
                if profile_n else None)
    solo = {net_name(*net): solo_step_ms(t, stream, 1, steps, device) for net, t in zip(nets, trainers)}
    ends = {net_name(*net): epoch_end_s(t, test, stream.normalize, device) for net, t in zip(nets, trainers)}
    # after epoch_end_s's untimed first passes; it closes the sums of the steps above
    joint_end = joint_epoch_end_s(trainers, test, stream.normalize, streams, device)
    depths = sorted({d for d, _ in nets})
    stacking = stacked_vs_separate(depths, stream, device, speed, steps) if stacked else None
    chosen = choice(nets, stream, device, speed, choose) if choose else None
    scale = 10_000 / test_images  # the evaluation scales with the test set; the paper's has 10,000 images
    # test passes in the paper protocol: one per 390-step epoch, and one at the end of the last, partial one
    epochs = -(-PAPER.iterations // (50_000 // PAPER.batch_size))
    eval_s = sum(e["eval_with_probes"] for e in ends.values()) * scale
    ckpt_s = sum(e["checkpoint"] for e in ends.values())
    joint_end_s = joint_end["evaluations"] * scale + joint_end["checkpoint_copies"]
    return {
        "device": device_name(device), "torch": torch.__version__, "nets": [net_name(*n) for n in nets],
        "speed": resolve_speed(speed, device).as_dict(),
        "streams": streams, "graphed": [bool(t.graphed) for t in trainers], "steps": steps,
        "test_images": test_images, "first_step_s": first_step_s, "memory": memory,
        "joint_step_ms": {"cpu_enqueue": enqueue, "wall": wall}, "solo_step_ms": solo,
        "epoch_end_s": ends, "joint_epoch_end_s": joint_end, "profile": profiled, "stacked": stacking,
        "choice": chosen,
        "projected_paper_s": {"steps": PAPER.iterations * wall / 1e3, "evaluations": epochs * eval_s,
                              "checkpoints": epochs * ckpt_s, "epochs": epochs, "epoch_ends": epochs * joint_end_s},
    }


def verdicts(r: dict) -> list:
    """What the numbers say, in words (the thresholds are rules of thumb, stated)."""
    j, solo = r["joint_step_ms"], r["solo_step_ms"]
    out = []
    if r["memory"] is None:  # not CUDA
        out.append("On a CPU a step runs as Python enqueues it: there is no CPU/device split to read.")
    elif j["cpu_enqueue"] >= 0.8 * j["wall"]:
        # Enqueue near wall has two causes: the host is slow, or the launch queues are full and each launch waits
        # for the device. Only the profile tells them apart (H100, 2026-11-23: enqueue 13.7 of 15.7 ms, yet the
        # GPU busy 97% of the time: device-bound, and "cut host work" would have been the wrong advice).
        busy = (r.get("profile") or {}).get("device_busy")
        if busy is not None and busy >= 0.9:
            out.append(f"Device-bound: the GPU was busy {100 * busy:.0f}% of the profiled steps; enqueueing a joint "
                       f"step takes {j['cpu_enqueue']:.2f} ms of its {j['wall']:.2f} ms because launches wait for "
                       "the device's queues. Cut GPU work per step (kernels, bytes) first.")
        elif busy is not None:
            out.append(f"CPU-bound: enqueueing a joint step takes {j['cpu_enqueue']:.2f} ms of its {j['wall']:.2f} "
                       f"ms and the GPU was idle {100 * (1 - busy):.0f}% of the profiled steps: the device waits "
                       "for Python; cut per-step host work first.")
        else:
            out.append(f"CPU-bound or launch-queue-bound: enqueueing a joint step takes {j['cpu_enqueue']:.2f} ms of "
                       f"its {j['wall']:.2f} ms (>= 80%): either the device waits for Python or the launches wait "
                       "for the device; --profile N tells them apart (the GPU's busy share).")
    else:
        out.append(f"Device-bound: enqueueing takes {j['cpu_enqueue']:.2f} ms of a {j['wall']:.2f} ms joint step.")
    total, slowest = sum(solo.values()), max(solo.values())
    if r["streams"] and total > slowest:  # one after another (a CPU, or one network) there is nothing to overlap
        overlap = (total - j["wall"]) / (total - slowest)
        out.append(f"Overlap of the networks: the joint step ({j['wall']:.2f} ms) against the sum of solo steps "
                   f"({total:.2f} ms) and the slowest ({slowest:.2f} ms): {100 * overlap:.0f}% of the possible "
                   "overlap is realised (0%: serial, 100%: as fast as the slowest net alone).")
    p = r["projected_paper_s"]
    whole = p["steps"] + p["evaluations"] + p["checkpoints"]
    out.append(f"Paper protocol projected, one network's epoch end after another: steps {p['steps'] / 60:.1f} min, "
               f"{p['epochs']} test passes {p['evaluations'] / 60:.1f} min, checkpoints {p['checkpoints'] / 60:.1f} "
               f"min: epoch ends are {100 * (p['evaluations'] + p['checkpoints']) / whole:.0f}% of {whole / 60:.1f} min.")
    if "epoch_ends" in p:  # absent from files written before the joint epoch end (2026-11-23's H100 run)
        j_end, joint = r["joint_epoch_end_s"], p["steps"] + p["epoch_ends"]
        passes_s = j_end["evaluations"] * 10_000 / r["test_images"]
        serial_s = (p["evaluations"] + p["checkpoints"]) / p["epochs"]
        out.append(f"As a run makes them (all test passes enqueued, one wait; checkpoints written behind): an epoch "
                   f"end waits {p['epoch_ends'] / p['epochs']:.2f} s (test passes {passes_s:.2f} s, checkpoint copies "
                   f"{j_end['checkpoint_copies']:.2f} s) against {serial_s:.2f} s one after another: "
                   f"{joint / 60:.1f} min in all, {whole / joint:.2f}x.")
    return out


def markdown(r: dict) -> str:
    speed = r.get("speed")  # absent from files written before --speed (2026-11-23's H100 run)
    switches = (f"speed switches on: {', '.join(k for k, v in speed.items() if v is True) or 'none'}" if speed
                else "speed switches: the defaults (`auto`), not recorded in this file")
    lines = [f"# Where the time goes: {r['device']}", "",
             f"torch {r['torch']}; {len(r['nets'])} networks ({', '.join(r['nets'])}), "
             f"{'each on its own CUDA stream' if r['streams'] else 'one after another'}; "
             f"CUDA graphs: {sum(r['graphed'])} of {len(r['graphed'])}; {r['steps']} timed steps after 10 untimed; "
             f"batch 128; {switches}. First step (captures, cuDNN autotuning"
             f"{', compiling' if (speed or {}).get('compile') else ''}): {r['first_step_s']:.1f} s.", ""]
    lines += [f"- {v}" for v in verdicts(r)]
    if r["memory"]:
        lines += [f"- GPU memory after the first step: {r['memory']['reserved_gib']:.2f} GiB reserved, "
                  f"{r['memory']['max_allocated_gib']:.2f} GiB at most allocated."]
    lines += ["", "| network | step alone (ms) | test pass, probes on (s) | probes off (s) | checkpoint (s) | MB |",
              "| --- | --- | --- | --- | --- | --- |"]
    scale = 10_000 / r["test_images"]
    for name in r["nets"]:
        e = r["epoch_end_s"][name]
        lines.append(f"| {name} | {r['solo_step_ms'][name]:.2f} | {e['eval_with_probes'] * scale:.3f} | "
                     f"{e['eval_without_probes'] * scale:.3f} | {e['checkpoint']:.3f} | {e['checkpoint_mb']:.1f} |")
    prof = r.get("profile")
    if prof:
        busy = (f"the GPU was busy {100 * prof['device_busy']:.0f}% of the time from the first kernel to the last "
                "(the rest: gaps)" if prof["device_busy"] is not None else "no CUDA kernels (a CPU run)")
        lines += ["", f"Profile of {prof['steps']} joint steps (torch.profiler): {prof['kernels_per_step']:.0f} kernels "
                  f"per joint step; {busy}. The ops that take the time: steptime-profile.txt; the trace (chrome://tracing, "
                  "Perfetto): steptime-trace.json.gz."]
    st = r.get("stacked")
    if st:
        sep, stk = sorted(st["separate_ms"]), sorted(st["stacked_ms"])
        lines += ["", f"Stacked (a speed idea, experiments.tools.stacked): each depth's plain and residual nets as one "
                  f"model of grouped convs, {len(st['graphed'])} models, CUDA graphs {sum(st['graphed'])} of "
                  f"{len(st['graphed'])}, against the same nets separate, both without probes: joint step "
                  f"{stk[len(stk) // 2]:.2f} ms against {sep[len(sep) // 2]:.2f} ms (medians of {st['rounds']} "
                  f"alternating rounds; {min(stk):.2f}-{max(stk):.2f} and {min(sep):.2f}-{max(sep):.2f}): "
                  f"{st['speedup']:.2f}x."]
    ch = r.get("choice")
    if ch:
        base = (ch["variants"].get("default") or {}).get("ms_per_step")
        lines += ["", f"The first-minute choice (experiments.training.variants, budget spent: {ch['seconds']:.0f} s): "
                  f"**{ch['variant']}**.", "", "| variant | joint step (ms) | against default | check |",
                  "| --- | --- | --- | --- |"]
        for name, v in ch["variants"].items():
            ms = v["ms_per_step"]
            ratio = f"{base / ms:.2f}x" if ms and base else "-"
            lines.append(f"| {name} | {f'{ms:.2f}' if ms else '-'} | {ratio} | {v['check']} |")
    j = r["joint_step_ms"]
    lines += ["", f"Joint step: {j['wall']:.2f} ms wall, {j['cpu_enqueue']:.2f} ms to enqueue. Test passes "
              f"measured on {r['test_images']} synthetic images and scaled to 10,000."]
    return "\n".join(lines) + "\n"


def speed_config(items: list) -> SpeedConfig:
    """`--speed` items (KEY=VALUE, as `speed.KEY=VALUE` on a run's command line) checked against SpeedConfig's
    schema: a wrong key or value is a ValueError naming it."""
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException
    given = {}
    for item in items:
        key, eq, value = item.removeprefix("speed.").partition("=")
        if not eq or not key:
            raise ValueError(f"--speed {item}: expected KEY=VALUE, e.g. --speed compile=on")
        given[key] = value  # strings: the schema converts them ("on" read as YAML would be True)
    try:
        return OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(SpeedConfig), OmegaConf.create(given)))
    except OmegaConfBaseException as e:
        fields = ", ".join(SpeedConfig.__dataclass_fields__)
        raise ValueError(f"--speed {' '.join(items)}: {str(e).splitlines()[0]} (switches: {fields})") from None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m experiments.steptime", description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=0, help="timed joint steps (default: 100 on CUDA, 2 on CPU)")
    ap.add_argument("--test-images", type=int, default=0, help="default: 10000 on CUDA, 256 on CPU")
    ap.add_argument("--nets", default="20,32,44,56", help="depths, each plain and residual")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--profile", type=int, default=0, metavar="N",
                    help="also run N joint steps under torch.profiler (kernels per step, idle gaps, a trace)")
    ap.add_argument("--speed", action="append", default=[], metavar="KEY=VALUE",
                    help="a speed switch as a run takes it, repeatable: --speed compile=on --speed bf16=off "
                         "(the speed. prefix is optional)")
    ap.add_argument("--stacked", action="store_true",
                    help="also time each depth's plain and residual nets stacked into one model (grouped convs)")
    ap.add_argument("--choose", type=float, default=0, metavar="SECONDS",
                    help="also make the first-minute choice of the step (experiments.training.variants) with this budget: "
                         "each variant's joint step against the default's, and its check")
    ap.add_argument("--out", default="results/bench")
    args = ap.parse_args(argv)
    try:
        speed = speed_config(args.speed)
    except ValueError as e:
        ap.error(str(e))
    try:
        depths = [int(d) for d in args.nets.split(",")]
        device = resolve_device(args.device)
    except ValueError as e:
        ap.error(f"{e} (--nets takes depths such as 20,56)")
    cuda = device.type == "cuda"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    r = measure([(d, res) for d in depths for res in (False, True)], device, args.steps or (100 if cuda else 2),
                args.test_images or (10_000 if cuda else 256), profile_n=args.profile, out=out, speed=speed,
                stacked=args.stacked, choose=args.choose)
    (out / "steptime.json").write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    md = markdown(r)
    (out / "steptime.md").write_text(md, encoding="utf-8")
    print(md + f"\nwrote {out / 'steptime.md'}, {out / 'steptime.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
