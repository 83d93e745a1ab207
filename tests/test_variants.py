"""The first-minute choice of the joint step (experiments/training/variants.py) and the fused-BN variant
(experiments/nets/fused.py), on a CPU: a variant that fails its check is never chosen, the timings decide among those
that pass, a run records its choice and keeps it when resumed, and each variant trains as the eager step does."""
import copy
import json

import pytest
import torch

from experiments.config import ProtocolConfig, SpeedConfig, Switch
from experiments.nets.resnet_cifar import CifarResNet
from experiments.training import variants
from experiments.training.train import make_trainer
from tests.helpers.harness import LONG, run_inprocess, sigterm_as_epoch_ends

PROTOCOL = ProtocolConfig(iterations=100, milestones=[50, 75], batch_size=16)


def nets_builder(switches_seen=None):
    """build(switches) as the runner gives it: fresh trainers of a plain and a residual depth-8 net, from one state."""
    torch.manual_seed(0)
    start = [CifarResNet(8, r).state_dict() for r in (False, True)]

    def build(switches):
        if switches_seen is not None:
            switches_seen.append(dict(switches))
        out = []
        for residual, state in zip((False, True), start):
            model = CifarResNet(8, residual)
            model.load_state_dict(state)
            speed = SpeedConfig(**{k: Switch(v) for k, v in switches.items()})
            out.append(make_trainer(model, 8, PROTOCOL, torch.device("cpu"), speed, probe_every=0))
        return out
    return build


def batches(k):
    g = torch.Generator().manual_seed(k)
    return torch.randn(16, 3, 32, 32, generator=g), torch.randint(0, 10, (16,), generator=g)


def scaled(trainer):  # a wrong variant: its forward doubles the logits
    trainer.forward = lambda x, model=trainer.model: 2 * model(x)


CHOICES = (variants.Variant("default", {}, "the run's own"),
           variants.Variant("channels_first", {"channels_last": "off"}, "NCHW"),
           variants.Variant("broken", {}, "doubled logits", adjust=scaled))


@pytest.mark.parametrize("fastest", ["default", "channels_first"])
def test_the_fastest_variant_that_passes_is_chosen_and_a_wrong_one_never(fastest):
    ms = {"default": 10.0, "channels_first": 12.0, "broken": 1.0}  # the wrong one would be the fastest
    if fastest == "channels_first":
        ms["channels_first"] = 8.0
    timed = []

    def timer(trainers, batches_, streams, seconds):
        name = "channels_first" if not trainers[0].speed.channels_last else \
            "broken" if trainers[0].forward is not trainers[0].model else "default"
        timed.append(name)
        return ms[name]
    choice = variants.choose(nets_builder(), batches, streams=False, budget=60, variants=CHOICES, timer=timer)
    assert choice.variant == fastest and choice.switches == ({} if fastest == "default" else {"channels_last": "off"})
    outcome = {o.name: o for o in choice.outcomes}
    assert not outcome["broken"].passed and "from the eager step" in outcome["broken"].check
    assert "broken" not in timed and sorted(timed) == ["channels_first", "default"]
    assert outcome["default"].passed and outcome["default"].check == "loss 0, state 0 from the eager step"  # on a CPU
    record = choice.record()
    assert record["variants"]["channels_first"]["ms_per_step"] == ms["channels_first"]
    assert record["variants"]["broken"]["passed"] is False and record["variant"] == fastest


def test_a_variant_that_raises_runs_out_of_time_or_finds_none_left_is_not_chosen():
    now = [0.0]  # a clock that moves only where the test says: timing takes 15 s, "slow" preparing 10 s a net

    def timer(*args):
        now[0] += 15
        return 5.0

    def explode(trainer):
        raise RuntimeError("no kernel for this")
    choice = variants.choose(nets_builder(), batches, False, 20,
                             variants=(variants.Variant("default", {}, ""),
                                       variants.Variant("raises", {}, "", adjust=explode),
                                       variants.Variant("slow", {}, "", adjust=lambda t: now.__setitem__(0, now[0] + 10)),
                                       variants.Variant("none left", {"channels_last": "off"}, "")),
                             timer=timer, clock=lambda: now[0])
    outcome = {o.name: o for o in choice.outcomes}
    assert choice.variant == "default" and outcome["default"].passed and outcome["default"].ms == 5.0
    assert outcome["raises"].check == "failed: RuntimeError: no kernel for this"
    assert outcome["slow"].check == "not ready within the 20 s budget"
    assert outcome["none left"].check == "not tried: the 20 s budget was spent"
    assert [o.passed for o in choice.outcomes] == [True, False, False, False]


def test_the_fused_forward_is_the_modules_own_math_bit_for_bit():
    """Uncompiled, experiments.nets.fused computes F.relu(bn(x)) (+ the shortcut) with the same ops as the modules: the
    same outputs, running statistics and step counts, plain and residual, option A and B."""
    for residual, shortcut in ((False, "A"), (True, "A"), (True, "B")):
        torch.manual_seed(0)
        a = CifarResNet(8, residual, shortcut)
        b = copy.deepcopy(a)
        x = torch.randn(8, 3, 32, 32)
        assert torch.equal(a(x), b.forward_fused(x, compiled=False))
        assert all(torch.equal(u, v) for u, v in zip(a.state_dict().values(), b.state_dict().values()))


@pytest.mark.slow
def test_a_run_that_chooses_records_the_choice_and_a_resume_keeps_it(tiny, tmp_path, monkeypatch):
    """speed.choose=on on a CPU: the choice is made once, before the first step, recorded in run.json; the run,
    interrupted and resumed under `auto`, keeps it without timing again, and ends as a run without a choice does
    (the choice trains copies: the run's own numbers are untouched)."""
    made = []
    real_choose = variants.choose

    def choose(build, batches_, streams, budget, **kw):
        made.append(budget)
        # channels_last off is the fastest: the run then trains NCHW
        return real_choose(build, batches_, streams, budget, variants=CHOICES[:2],
                           timer=lambda trainers, *a: 1.0 if not trainers[0].speed.channels_last else 2.0)
    monkeypatch.setattr(variants, "choose", choose)
    run = tmp_path / "run"
    sigterm_as_epoch_ends(monkeypatch, 3)
    with pytest.raises(SystemExit):
        run_inprocess(tiny + LONG + ["depth=8", "speed.choose=on", "speed.choose_seconds=30"], run)
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "interrupted"
    assert made == [30.0] and info["speed_choice"]["variant"] == "channels_first"
    assert info["speed"]["channels_last"] is False and info["sessions"][-1]["speed"]["channels_last"] is False
    monkeypatch.undo()
    monkeypatch.setattr(variants, "choose", choose)
    assert run_inprocess(tiny + LONG + ["depth=8"], run) == "completed"  # speed.choose=auto: a CPU chooses nothing new
    info = json.loads((run / "run.json").read_text())
    assert made == [30.0] and info["speed_choice"]["variant"] == "channels_first"
    assert [s["speed"]["channels_last"] for s in info["sessions"]] == [False, False]
    assert not any("computed differently" in n for n in info.get("notes", []))
    # an uninterrupted run without a choice, NCHW: the same numbers
    whole = tmp_path / "whole"
    assert run_inprocess(tiny + LONG + ["depth=8", "speed.channels_last=off"], whole) == "completed"
    strip = [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in _rows(run)]
    assert strip == [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in _rows(whole)]


def _rows(run):
    import csv
    with open(run / "metrics.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
@pytest.mark.parametrize("switch", ["fuse", "compile"])
def test_a_compiled_variant_trains_as_the_eager_step_does(switch):
    """speed.fuse=on and speed.compile=on, compiled by Inductor (C++ on a CPU; a first compile takes tens of seconds):
    20 steps from one state follow the eager step's losses."""
    losses, threads = {}, torch.get_num_threads()
    # The thread count orders the reductions: an earlier in-process run in this worker (speed.threads=1) would
    # otherwise change the rounding this test compares
    torch.set_num_threads(2)
    try:
        for value in ("off", "on"):
            torch.manual_seed(0)
            t = make_trainer(CifarResNet(8, True), 8, PROTOCOL, torch.device("cpu"),
                             SpeedConfig(**{switch: Switch(value)}), 0)
            assert getattr(t.speed, switch) == (value == "on") and (t.forward is not t.model) == (value == "on")
            losses[value] = []
            for k in range(20):
                before = t.sums[0].item()
                t.step(*batches(k))
                losses[value].append(t.sums[0].item() - before)
    finally:
        torch.set_num_threads(threads)
    on, off = torch.tensor(losses["on"]), torch.tensor(losses["off"])
    # The first step's loss is the forward alone: equal to float rounding. The next ones add each update's rounding,
    # which training amplifies (2e-7 relative at step 3 with 2 threads, 4e-5 with 1; 6e-3 by step 18 at lr 0.1 on
    # noise), as the GPU's compile test allows for too
    torch.testing.assert_close(on[:1], off[:1], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(on[:3], off[:3], rtol=2e-4, atol=1e-3)
    torch.testing.assert_close(on, off, rtol=0.03, atol=0.01)
