"""The CUDA fast path on a real GPU: the captured step is the eager step, eight networks on eight streams are
the same as one after another and never sync, a failed capture falls back cleanly, and the sweep, resume and
concurrent launcher hold on CUDA. Marked `gpu` (deselected by `make test`); on a GPU machine:

    python3 -m pytest -q -m gpu tests/test_gpu.py

The risks each test covers are numbered as in the review of the fast path made before any GPU run (R1-R19):
warm-up undone (R14), probed capture (R8), stale autograd nodes (R11), the lr seen by a replay (R17), shared
cuBLAS workspaces and stream races (R9, R15), host syncs (R16), the capture-failure fallback (R7).
"""
from __future__ import annotations

import json
import logging
import signal
import time

import pytest
import torch

from experiments.config import ProtocolConfig, SpeedConfig, Switch
from experiments.data.datasets import Split
from experiments.data.loader import TrainStream, pixel_mean
from experiments.nets.resnet_cifar import CifarResNet
from experiments.training.fastpath import CapturedStep, state_tensors
from experiments.training.train import end_epochs, evaluate, make_trainer, step_all
from tests.helpers.harness import LONG, cli, metrics_rows, popen, tables, tiny_overrides, wait_for_rows

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")]

NETS = [(d, r) for d in (20, 32, 44, 56) for r in (False, True)]  # Figure 6's eight networks


def dev():
    return torch.device("cuda")


def split(n=5120, seed=0) -> Split:
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    x = (y.view(-1, 1, 1, 1) * 20 + torch.randint(0, 60, (n, 3, 32, 32), generator=g)).to(torch.uint8)
    return Split(x.to(dev()), y.to(dev()))


def stream(s: Split) -> TrainStream:
    return TrainStream(s, pixel_mean(s.x), 128, "crop_flip", seed=0)


def speed(graphs: bool, bf16: bool = False, compiled: bool = False, fuse: bool = False) -> SpeedConfig:
    on = lambda b: Switch.on if b else Switch.off  # noqa: E731
    return SpeedConfig(channels_last=Switch.on, bf16=on(bf16), cuda_graphs=on(graphs), compile=on(compiled),
                       fuse=on(fuse))


def trainer(depth=20, residual=True, graphs=True, bf16=False, probe_every=10, protocol=None, compiled=False,
            fuse=False):
    torch.manual_seed(0)
    return make_trainer(CifarResNet(depth, residual), depth, protocol or ProtocolConfig(), dev(),
                        speed(graphs, bf16, compiled, fuse), probe_every)


def bns(t):
    return [m for m in t.model.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def channels_last(x):
    return x.contiguous(memory_format=torch.channels_last)  # what the graph's static input buffer holds


@pytest.fixture(autouse=True)
def deterministic_cudnn():
    # Same kernels on both sides of each comparison: without this, cuDNN may pick another algorithm (or an
    # atomics-based one) for one side and the comparison measures that instead of the fast path.
    old = torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = False, True
    yield
    torch.backends.cudnn.benchmark, torch.backends.cudnn.deterministic = old


def loss_after_each_step(t, s, steps, feed=lambda x: x):
    """Each step's training loss, read from the trainer's running sums (a host sync per step: tests only)."""
    losses, last = [], 0.0
    for k in range(steps):
        x, y = s.batch(*divmod(k, s.steps_per_epoch))
        t.step(feed(x), y)
        total = t.sums[0].item()
        losses.append((total - last) / len(y))
        last = total
    return losses


# ---- 1. the captured step is the eager step -----------------------------------------------------------

def test_captured_step_equals_eager_step_over_50_steps_with_probes_and_an_lr_drop(caplog, recwarn):
    # fp32: parameters equal to 1e-5 relative after 50 steps, including the probed steps (every 10th, from
    # their own graph) and an lr drop at step 20 that the replay must see without a re-capture (R17).
    s = stream(split())
    p = ProtocolConfig(milestones=[20, 40])
    g, e = trainer(graphs=True, protocol=p), trainer(graphs=False, protocol=p)
    with caplog.at_level(logging.WARNING, logger="experiments"):
        lg = loss_after_each_step(g, s, 50)
        le = loss_after_each_step(e, s, 50, channels_last)
    torch.cuda.synchronize()
    assert isinstance(g.graphed, CapturedStep) and g.graphed.probed_graph is not None, caplog.text
    assert "capture" not in caplog.text
    assert not [w for w in recwarn if "AccumulateGrad" in str(w.message)]  # R11: no stale autograd node
    assert all(int(m.num_batches_tracked) == 50 for m in bns(g))  # the warm-up steps were undone (R14)
    assert g.sums[2].item() == 50 * 128 and g.probes.samples == e.probes.samples == 5
    assert g._lr == e._lr == 0.001 and g.optimizer.lr.item() == pytest.approx(0.001)
    for a, b in zip(state_tensors(g), state_tensors(e)):
        torch.testing.assert_close(a.float(), b.float(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.tensor(lg), torch.tensor(le), rtol=1e-5, atol=1e-6)


def test_captured_bf16_step_follows_the_eager_loss_curve():
    s = stream(split())
    lg = loss_after_each_step(trainer(graphs=True, bf16=True), s, 50)
    le = loss_after_each_step(trainer(graphs=False, bf16=True), s, 50, channels_last)
    # bf16 keeps 8 bits of mantissa: the curves agree to a few % step by step and both go down
    torch.testing.assert_close(torch.tensor(lg), torch.tensor(le), rtol=0.05, atol=0.02)
    assert sum(lg[-10:]) < sum(lg[:10])


@pytest.mark.compile
def test_a_compiled_forward_is_captured_with_the_step_and_trains_as_the_eager_step_does(caplog):
    """speed.compile=on (the first speed idea `scripts/gpu-session variants` times): the compiled training
    forward is warmed up, then captured with the rest of the step; the replays must not fall back, and must
    train as the uncompiled eager step does. fp32: inductor's fused kernels round differently, so the first
    steps agree closely and the curve within a few %."""
    s = stream(split())
    with caplog.at_level(logging.WARNING, logger="experiments"):
        c = trainer(graphs=True, compiled=True)
        lc = loss_after_each_step(c, s, 30)
    le = loss_after_each_step(trainer(graphs=False), s, 30, channels_last)
    assert isinstance(c.graphed, CapturedStep) and c.graphed.probed_graph is not None, caplog.text
    assert "capture" not in caplog.text and c.forward is not c.model
    torch.testing.assert_close(torch.tensor(lc[:3]), torch.tensor(le[:3]), rtol=1e-3, atol=1e-4)
    torch.testing.assert_close(torch.tensor(lc), torch.tensor(le), rtol=0.05, atol=0.02)
    assert sum(lc[-10:]) < sum(lc[:10])


@pytest.mark.compile
@pytest.mark.parametrize("residual", [False, True])
def test_the_fused_bn_step_is_captured_and_trains_as_the_eager_step_does(caplog, residual):
    """speed.fuse=on (experiments.nets.fused): BN + ReLU (+ the addition) compiled as regions shared by every block, warmed
    up before the capture, replayed without falling back; in bf16 as the sweep runs, following the eager curve."""
    s = stream(split())
    with caplog.at_level(logging.WARNING, logger="experiments"):
        f = trainer(residual=residual, graphs=True, bf16=True, fuse=True)
        lf = loss_after_each_step(f, s, 30)
    le = loss_after_each_step(trainer(residual=residual, graphs=False, bf16=True), s, 30, channels_last)
    assert isinstance(f.graphed, CapturedStep) and f.speed.fuse and "capture" not in caplog.text, caplog.text
    torch.testing.assert_close(torch.tensor(lf), torch.tensor(le), rtol=0.05, atol=0.02)
    assert sum(lf[-10:]) < sum(lf[:10])


@pytest.mark.compile
def test_the_first_minute_choice_on_cuda_checks_times_and_picks_a_captured_variant():
    """experiments.training.variants on the GPU, two nets on two streams: the captured default passes its check against the
    eager step, every variant is timed or says why not, and the chosen one is one that passed."""
    from experiments.training import variants
    s = stream(split())

    def build(switches):
        out = []
        for residual in (False, True):
            torch.manual_seed(0)
            out.append(make_trainer(CifarResNet(20, residual), 20, ProtocolConfig(), dev(),
                                    variants.with_switches(SpeedConfig(), switches)))
        return out
    choice = variants.choose(build, lambda k: s.batch(0, k), streams=True, budget=120, timing_seconds=1)
    outcome = {o.name: o for o in choice.outcomes}
    assert outcome["default"].passed and outcome["default"].ms > 0, outcome
    assert outcome[choice.variant].passed and choice.seconds < 300
    assert all(o.passed or o.check for o in choice.outcomes)


def test_a_replay_reads_the_lr_from_its_device_tensor():
    s = stream(split())
    x, y = s.batch(0, 1)
    t = trainer(probe_every=0)
    t.step(x, y)  # capture, then the first replay
    t.optimizer.set_lr(0.0)
    before = [p.detach().clone() for p in t.model.parameters()]
    assert t.graphed.replay(x, y)
    torch.cuda.synchronize()
    assert all(torch.equal(a, p) for a, p in zip(before, t.model.parameters()))
    t.optimizer.set_lr(0.1)
    t.graphed.replay(x, y)
    torch.cuda.synchronize()
    assert not all(torch.equal(a, p) for a, p in zip(before, t.model.parameters()))


# ---- 2. eight networks on eight streams -----------------------------------------------------------------

def _eight(s, streams, steps=12, sync_check=False):
    ts = [trainer(d, r) for d, r in NETS]
    for k in range(steps):
        if sync_check and k >= 2:  # every capture done; step 10 replays the probed graphs
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")  # the batch's making is checked too
        try:
            step_all(ts, *s.batch(0, k), streams=streams)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    return ts


def test_eight_networks_on_streams_equal_serial_and_never_sync():
    # R9: graphs captured on one stream share its cuBLAS workspace, and replays on eight streams would race on
    # it silently; each network now captures on its own stream. R16: no host sync in a steady-state step.
    s = stream(split())
    concurrent, serial, again = _eight(s, True, sync_check=True), _eight(s, False), _eight(s, False)
    assert all(t.graphed and t.graphed.probed_graph is not None for t in concurrent)
    assert len({t.cuda_stream for t in concurrent}) == len(NETS)
    for tc, ts, ta in zip(concurrent, serial, again):
        for u, v, w in zip(state_tensors(tc), state_tensors(ts), state_tensors(ta)):
            noise = (v.double() - w.double()).abs().max().item()  # run-to-run noise of the serial order
            assert (u.double() - v.double()).abs().max().item() <= 10 * noise + 1e-6


def test_an_epoch_end_on_eight_streams_gives_each_net_what_it_gives_alone():
    """end_epochs enqueues the eight test passes (probe hooks on) on the nets' streams, then reads them once:
    each row must equal that net's own evaluate(), and the probes' moments those of a pass on the main stream."""
    s, test = stream(split()), split(1000, seed=1)
    ts = _eight(s, True)
    expected = []
    for t in ts:
        with t.probes.responses():
            expected.append(evaluate(t.model, test, s.normalize, t.protocol.eval_batch_size))
        expected[-1] += (t.probes.response_std(), t.sums.tolist())
        t.probes.moments.zero_()
        t.probes.counts = [0] * len(t.probes.counts)
    for t in ts:  # the probes' rows come from end_epochs' own pass: keep the sampled gradients apart
        t.probes.samples = 0
    rows = end_epochs(ts, 1, test, None, s.normalize, streams=True)
    for t, row, (loss, err, std, (loss_sum, wrong, seen)) in zip(ts, rows, expected):
        assert (row["test_loss"], row["test_err"]) == (loss, err)
        assert (row["train_loss"], row["train_err"]) == (loss_sum / seen, 100.0 * wrong / seen)
        assert [r["std"] for r in t.probes.layer_rows] == pytest.approx(std.tolist(), rel=1e-6)


def test_a_failed_capture_falls_back_to_eager_steps_on_the_callers_stream(monkeypatch, caplog):
    # R7: an exception inside torch.cuda.graph exits through capture_end(), which raises before the graph
    # context gives back the current stream; training must go on eagerly, on the caller's stream.
    s = stream(split())
    t = trainer(probe_every=0)
    original = t._step

    def bad(x, y, probe=False):
        original(x, y, probe)
        if torch.cuda.is_current_stream_capturing():
            t.sums.sum().item()  # a host sync: illegal during capture
    monkeypatch.setattr(t, "_step", bad)
    with caplog.at_level(logging.WARNING, logger="experiments"):
        t.step(*s.batch(0, 0))
    monkeypatch.undo()
    assert t.graphed is False and "capture failed" in caplog.text
    assert torch.cuda.current_stream() == torch.cuda.default_stream()
    reserved = torch.cuda.memory_reserved()
    for k in range(1, 30):
        t.step(*s.batch(0, k))
    torch.cuda.synchronize()
    assert t.iteration == 30 and t.sums[2].item() == 30 * 128
    assert all(int(m.num_batches_tracked) == 30 for m in bns(t))
    assert torch.cuda.memory_reserved() <= 1.5 * reserved + (64 << 20)


# ---- 3. the harness end to end on CUDA ------------------------------------------------------------------

def cuda_overrides(image_folder, data_dir, *extra):
    tiny = [o for o in tiny_overrides(image_folder, data_dir) if o not in ("device=cpu", "speed.threads=1")]
    # fp32, cuDNN's heuristics: the same kernels in every process, so two ways of running compare closely; no
    # first-minute choice (experiments.training.variants), which could give two processes two variants
    return tiny + ["device=cuda", "speed.bf16=off", "speed.cudnn_benchmark=false", "speed.choose=off", *extra]


def close_tables(a: dict, b: dict, rtol=1e-3):
    assert a.keys() == b.keys()
    for name in a:
        for csv_name in ("metrics.csv",):
            for ra, rb in zip(a[name][csv_name], b[name][csv_name], strict=True):
                assert ra.keys() == rb.keys()
                for k in ra:
                    if k.endswith("_loss") and ra[k]:
                        assert float(ra[k]) == pytest.approx(float(rb[k]), rel=rtol), (name, k)
                    elif not k.endswith(("_err", "_time_s")):  # epoch, iteration, lr and the run's identity
                        assert ra[k] == rb[k], (name, k)


def test_the_concurrent_launcher_on_cuda_writes_what_cells_run_one_by_one_write(image_folder, tmp_path):
    grid = ["-m", "depth=8,14", "residual=false,true", "seed=0"]
    base = cuda_overrides(image_folder, tmp_path / "data")
    one = cli(grid + base + [f"hydra.sweep.dir={tmp_path / 'one'}", "hydra/launcher=basic"], timeout=600)
    assert one.returncode == 0, one.stderr
    together = cli(grid + base + [f"hydra.sweep.dir={tmp_path / 'together'}", "hydra/launcher=concurrent"],
                   timeout=600)
    assert together.returncode == 0, together.stderr
    assert "Training 4 cells together" in together.stdout and "capture failed" not in together.stdout
    a, b = tables(tmp_path / "together"), tables(tmp_path / "one")
    assert len(a) == 4
    close_tables(a, b)
    for name in a:
        info = json.loads((tmp_path / "together" / name / "run.json").read_text())
        assert info["status"] == "completed" and info["device"] == "cuda"
        assert info["speed"]["cuda_graphs"] is True and info["device_name"] == torch.cuda.get_device_name()


def test_sigterm_mid_epoch_on_cuda_then_rerun_runs_every_epoch_once(image_folder, tmp_path):
    args = cuda_overrides(image_folder, tmp_path / "data") + LONG
    whole = cli(args + [f"hydra.run.dir={tmp_path / 'whole'}"], timeout=600)
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "run"
    p = popen(args + [f"hydra.run.dir={out}"])
    wait_for_rows(out, 3, p, timeout=300)
    time.sleep(0.1)  # into the middle of an epoch
    p.send_signal(signal.SIGTERM)
    log = p.communicate(timeout=120)[0]
    assert p.returncode == 128 + signal.SIGTERM, log
    assert json.loads((out / "run.json").read_text())["status"] == "interrupted"
    r = cli(args + [f"hydra.run.dir={out}"], timeout=600)
    assert r.returncode == 0, r.stderr
    assert "resuming at iteration" in r.stdout
    rows, whole_rows = metrics_rows(out), metrics_rows(tmp_path / "whole")
    assert [int(row["epoch"]) for row in rows] == list(range(1, len(whole_rows) + 1))  # every epoch once
    assert rows[-1]["iteration"] == "120"
    close_tables({"run": {"metrics.csv": rows}}, {"run": {"metrics.csv": whole_rows}})
