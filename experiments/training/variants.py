"""Which joint step a sweep trains with, chosen in its first minute (issue 28): every ready speed variant is built
from the group's nets as they stand, checked against the eager step on a few batches, timed for a few seconds, and
the fastest that passes is what the sweep trains with. run.json records the choice, each variant's time and check;
a resumed run keeps its variant (experiments.harness.cell) unless `speed.choose=on` asks again.

A variant is a set of `speed.*` switches on top of the run's own; "default" is the run's own (on CUDA the captured
step). Each is trained on copies of the nets (the group's trainers are not touched), so the choice changes no number
of the run beyond the float rounding of the variant chosen, which its check bounds: after `CHECK_STEPS` steps from
the same state on the same batches, every net's parameters and buffers differ from the eager step's by a small
fraction of how far those steps moved them, and the first step's loss by a small fraction of it (`tolerance`: float
rounding against a forward that is wrong). A variant that fails its check, raises, or is not ready within the
budget is never chosen.

The budget (`speed.choose_seconds`, 60 s) bounds checks and timings together: variants are tried cheapest first,
each net of a variant prepared (built, warmed up, captured, compiled on its first step) only while time is left;
what overruns is at most one net's preparation. Whole-model torch.compile ("compiled") typically does not fit on a
GPU: its compile is paid per net architecture, and `scripts/gpu-session variants` times it apart.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Callable, Optional

import torch

log = logging.getLogger("experiments")

CHECK_STEPS = 3
EAGER = {"cuda_graphs": "off", "compile": "off", "fuse": "off"}  # what every variant is checked against


@dataclass(frozen=True)
class Variant:
    name: str
    switches: dict  # speed.* on top of the run's own
    what: str       # one line for run.json and the README
    adjust: Optional[Callable] = None  # a hook on each trainer built (a test's deliberately wrong variant)


VARIANTS = (
    Variant("default", {}, "the run's own speed switches (on CUDA: the captured step)"),
    Variant("fused", {"fuse": "on"}, "each BN fused with its ReLU and addition (experiments.nets.fused), captured"),
    Variant("compiled", {"compile": "on"}, "torch.compile of the whole training forward, captured"),
)


def with_switches(speed, switches: Optional[dict]):
    """`speed` (a SpeedConfig) with a variant's switches on top."""
    from experiments.config import Switch
    return dataclasses.replace(speed, **{k: Switch(v) for k, v in (switches or {}).items()})


def tolerance(trainer) -> tuple:
    """(first step's loss, state after CHECK_STEPS): how far from the eager step float rounding may take a variant,
    relative to the loss and to how far the steps moved the net. Measured on a CPU in fp32: the first loss equal to
    1e-6; the state up to 0.009 of the steps' change for NCHW against channels_last (depth 20), and 0.046 for the
    compiled fused BN (depths 20 and 56: BN's weight and bias gradients are sums over 131k elements that mostly
    cancel, so their rounding shows). A forward that doubles the logits is off by most of the loss (0.23)."""
    if trainer.autocast is not None:
        return 0.03, 0.25  # bf16: 8 bits of mantissa, and each kernel rounds its own way
    return 1e-3, 0.1


@dataclass
class Outcome:
    name: str
    passed: bool
    check: str                 # `loss 1e-07, state 0.0007 from the eager step`, or why it failed or was skipped
    ms: Optional[float] = None  # per joint step, when timed
    seconds: float = 0.0        # what preparing, checking and timing it took

    def record(self) -> dict:
        return {"passed": self.passed, "check": self.check, "ms_per_step": self.ms, "seconds": round(self.seconds, 2)}


@dataclass
class Choice:
    variant: str
    switches: dict
    outcomes: list = field(default_factory=list)
    seconds: float = 0.0

    def record(self) -> dict:
        """run.json's `speed_choice`."""
        return {"variant": self.variant, "switches": self.switches, "seconds": round(self.seconds, 2),
                "variants": {o.name: o.record() for o in self.outcomes}}


def state_vector(trainer) -> torch.Tensor:
    """Every float parameter and buffer of the net, in fp32, on the host: what the check compares."""
    values = [v.detach().float().flatten().cpu() for v in trainer.model.state_dict().values() if v.is_floating_point()]
    return torch.cat(values)


def check_steps(trainers, batches, deadline: float, clock) -> Optional[list]:
    """(first step's loss, state after CHECK_STEPS steps) of each trainer, one net at a time (its first step warms up,
    captures, compiles), on the same batches; None if the deadline passed before every net was done."""
    out = []
    for t in trainers:
        if clock() > deadline:
            return None
        before = t.sums[0].item()
        for k in range(CHECK_STEPS):
            t.step(*batches(k))
            if k == 0:
                first = (t.sums[0].item() - before) / len(batches(0)[1])
        out.append((first, state_vector(t)))
    return out


def differences(got: list, eager: list, before: list) -> tuple:
    """(largest relative difference of the first loss, of the state's change) over the nets."""
    loss = max(abs(g[0] - e[0]) / max(abs(e[0]), 1e-12) for g, e in zip(got, eager))
    state = max(float((g[1] - e[1]).norm() / max(float((e[1] - b).norm()), 1e-12)) for g, e, b in zip(got, eager, before))
    return loss, state


def time_steps(trainers, batches, streams: bool, seconds: float, clock=time.perf_counter) -> float:
    """ms per joint step, over at least 5 steps and about `seconds` (as fit steps them: all nets, one batch)."""
    from experiments.training.train import step_all
    sync = torch.cuda.synchronize if trainers[0].device.type == "cuda" else (lambda: None)
    step_all(trainers, *batches(CHECK_STEPS), streams=streams)  # the first joint step: streams settle
    sync()
    start, n = clock(), 0
    while n < 5 or clock() - start < seconds:
        step_all(trainers, *batches(CHECK_STEPS + 1 + n), streams=streams)
        n += 1
        if n % 5 == 0:
            sync()
    sync()
    return 1e3 * (clock() - start) / n


def choose(build: Callable[[dict], list], batches: Callable[[int], tuple], streams: bool, budget: float,
           variants=VARIANTS, timing_seconds: float = 3.0, timer=time_steps, clock=time.perf_counter) -> Choice:
    """`build(switches)`: fresh trainers, copies of the group's at its current state, with those speed switches;
    `batches(k)`: the k-th (x, y) to step on. The fastest variant that passes, or "default" if none does."""
    began = clock()
    deadline = began + budget
    reference = build(EAGER)
    before = [state_vector(t) for t in reference]
    eager = check_steps(reference, batches, float("inf"), clock)
    tol = tolerance(reference[0])
    del reference
    outcomes = []
    for v in variants:
        start = clock()
        if start > deadline:
            outcomes.append(Outcome(v.name, False, f"not tried: the {budget:g} s budget was spent"))
            continue
        try:
            trainers = build(v.switches)
            if v.adjust:
                for t in trainers:
                    v.adjust(t)
            if streams:
                for t in trainers:  # each net captured on its own stream, as fit gives it one
                    t.cuda_stream = t.cuda_stream or torch.cuda.Stream()
            got = check_steps(trainers, batches, deadline, clock)
            if got is None:
                outcomes.append(Outcome(v.name, False, f"not ready within the {budget:g} s budget",
                                        seconds=clock() - start))
                continue
            diff = differences(got, eager, before)
            said = f"loss {diff[0]:.2g}, state {diff[1]:.2g} from the eager step"
            if not (diff[0] <= tol[0] and diff[1] <= tol[1]):  # NaN fails too
                outcomes.append(Outcome(v.name, False, f"{said}: over {tol[0]:g}, {tol[1]:g}", seconds=clock() - start))
                continue
            ms = timer(trainers, batches, streams, timing_seconds)
            outcomes.append(Outcome(v.name, True, said, ms, clock() - start))
        except Exception as e:  # a variant that cannot run here is not chosen; the sweep goes on
            why = " ".join(f"{type(e).__name__}: {e}".split())[:200]
            outcomes.append(Outcome(v.name, False, f"failed: {why}", seconds=clock() - start))
        finally:
            trainers = None
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    passed = [o for o in outcomes if o.passed]
    best = min(passed, key=lambda o: o.ms) if passed else Outcome("default", True, "")
    switches = next((v.switches for v in variants if v.name == best.name), {})
    return Choice(best.name, dict(switches), outcomes, clock() - began)


def summary(choice: Choice) -> str:
    """One line for the log: `step variant: fused (12.1 ms; default 15.7 ms, compiled failed ...), chosen in 41 s`."""
    others = [f"{o.name} {o.ms:.2f} ms" if o.passed else f"{o.name} {o.check}" for o in choice.outcomes
              if o.name != choice.variant]
    mine = next((o for o in choice.outcomes if o.name == choice.variant and o.ms is not None), None)
    return (f"step variant: {choice.variant}" + (f" ({mine.ms:.2f} ms a joint step" if mine else " (")
            + (f"; {', '.join(others)}" if others else "") + f"), chosen in {choice.seconds:.0f} s")
