import io

import pytest
import torch

from experiments.config import ProtocolConfig
from experiments.data.datasets import Split
from experiments.data.loader import TrainStream, pixel_mean
from experiments.nets.resnet_cifar import CifarResNet
from experiments.training.train import Trainer, evaluate, fit, lr_at

PAPER = ProtocolConfig()


def test_lr_schedule_is_exact_in_iterations():
    # Sec. 4.2: 0.1, divided by 10 at 32k and 48k iterations
    assert lr_at(0, PAPER) == 0.1 and lr_at(31_999, PAPER) == 0.1
    assert lr_at(32_000, PAPER) == 0.01 and lr_at(47_999, PAPER) == 0.01
    assert lr_at(48_000, PAPER) == 0.001 and lr_at(63_999, PAPER) == 0.001
    assert lr_at(10, PAPER, warming=True) == 0.01


def data(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % 4
    x = (y.view(-1, 1, 1, 1) * 50 + torch.randint(0, 60, (n, 3, 32, 32), generator=g)).to(torch.uint8)
    return Split(x, y)


def tiny_protocol(**kw) -> ProtocolConfig:
    base = dict(name="t", iterations=10, milestones=[5, 8], batch_size=16, eval_batch_size=32)
    return ProtocolConfig(**{**base, **kw})


def make(seed=0, depth=8, residual=True, **kw):
    torch.manual_seed(seed)
    return Trainer(CifarResNet(depth, residual), tiny_protocol(**kw))


def run_all(trainers, train, test, stop=lambda: False, rows=None):
    stream = TrainStream(train, pixel_mean(train.x), 16, "crop_flip", seed=0)
    return fit(trainers, stream, test, None, lambda t, r: rows is not None and rows.append(r), stop)


def strip(history):
    return [{k: v for k, v in r.items() if k != "epoch_time_s"} for r in history]


def test_fit_writes_one_row_per_epoch_with_percent_errors():
    train, test = data(), data(32, seed=1)
    t, rows = make(), []
    assert run_all([t], train, test, rows=rows)
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # 4 steps an epoch, 10 iterations: the last epoch is partial
    assert [r["iteration"] for r in rows] == [4, 8, 10]
    assert [r["lr"] for r in rows] == [0.1, 0.01, 0.001]
    assert all(0 <= r["train_err"] <= 100 and 0 <= r["test_err"] <= 100 for r in rows)
    assert t.status == "completed" and t.history == rows


def test_train_err_is_the_running_error_of_the_epochs_batches():
    train, test = data(), data(32, seed=1)
    t = make(iterations=4)
    seen = []
    original = t.model.forward

    def spy(x):
        out = original(x)
        seen.append(out.detach().argmax(1))
        return out
    t.model.forward = spy
    stream = TrainStream(train, pixel_mean(train.x), 16, "crop_flip", seed=0)
    labels = torch.cat([stream.batch(0, k)[1] for k in range(4)])
    fit([t], stream, test, None, lambda *a: None)
    train_preds = torch.cat(seen[:4])  # the 4 training forwards come before the evaluation's
    assert t.history[0]["train_err"] == pytest.approx(100 * (train_preds != labels).float().mean().item())


def test_evaluate_matches_a_direct_computation():
    test = data(32, seed=1)
    torch.manual_seed(0)
    model = CifarResNet(8, True).eval()
    norm = pixel_mean(test.x)
    loss, err = evaluate(model, test, norm, batch_size=10)
    with torch.no_grad():
        out = model(norm(test.x))
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(out, test.y).item(), rel=1e-5)
    assert err == pytest.approx(100 * (out.argmax(1) != test.y).float().mean().item())


def test_stopping_mid_epoch_and_resuming_gives_the_same_numbers():
    train, test = data(), data(32, seed=1)
    whole = make()
    run_all([whole], train, test)

    first, calls = make(), []
    stopped = not run_all([first], train, test, stop=lambda: calls.append(1) or len(calls) >= 6)
    assert stopped and first.iteration == 6  # in the middle of epoch 2
    buf = io.BytesIO()
    torch.save(first.state_dict(), buf)
    buf.seek(0)
    resumed = make(seed=123)  # different initial weights: everything must come from the checkpoint
    resumed.load_state_dict(torch.load(buf, weights_only=True))
    run_all([resumed], train, test)
    assert strip(resumed.history) == strip(whole.history)


def test_concurrent_trainers_match_training_each_alone():
    train, test = data(), data(32, seed=1)
    alone = [make(depth=d, residual=r) for d, r in ((8, False), (14, True))]
    for t in alone:
        run_all([t], train, test)
    together = [make(depth=d, residual=r) for d, r in ((8, False), (14, True))]
    run_all(together, train, test)
    assert [strip(t.history) for t in together] == [strip(t.history) for t in alone]


def test_a_trainer_further_along_waits_for_the_stream():
    train, test = data(), data(32, seed=1)
    ahead, behind = make(), make()
    run_all([ahead], train, test, stop=lambda: ahead.iteration >= 4)
    rows_ahead = strip(ahead.history)
    reference = make()
    run_all([reference], train, test)
    run_all([ahead, behind], train, test)
    assert strip(ahead.history)[:1] == rows_ahead
    assert strip(ahead.history) == strip(behind.history) == strip(reference.history)


def test_non_finite_loss_marks_the_run_diverged_and_keeps_earlier_rows():
    train, test = data(), data(32, seed=1)
    t, rows = make(iterations=12, milestones=[100], lr=1e30), []
    run_all([t], train, test, rows=rows)
    assert t.status == "diverged"
    assert len(t.history) < 3 and all(r["train_loss"] == r["train_loss"] for r in t.history)


def test_warmup_runs_at_low_lr_until_training_error_is_under_the_threshold_then_returns():
    train, test = data(), data(32, seed=1)
    # threshold 101%: the first check (after 2 steps) always passes, so steps 3+ are back at lr 0.1
    t = make(iterations=4, warmup_check_every=2, warmup_until_err=101.0)
    t.warming = True
    lrs = []
    original = t.optimizer.step

    def spy(*a, **kw):
        lrs.append(round(t.optimizer.lr.item(), 6))
        return original(*a, **kw)
    t.optimizer.step = spy
    run_all([t], train, test)
    assert lrs == [0.01, 0.01, 0.1, 0.1]
    stuck = make(iterations=4, warmup_check_every=2, warmup_until_err=-1.0)
    stuck.warming = True
    run_all([stuck], train, test)
    assert stuck.warming  # never below -1%: stays in warm-up


@pytest.mark.parametrize("foreach", [True, False])
def test_foreach_sgd_is_torch_sgd(foreach):
    from experiments.training.optim import ForeachSGD
    torch.manual_seed(0)
    a, b = CifarResNet(8, True), CifarResNet(8, True)
    b.load_state_dict(a.state_dict())
    ours = ForeachSGD(a.parameters(), 0.1, 0.9, 1e-4, foreach=foreach)
    ref = torch.optim.SGD(b.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    for i in range(4):
        if i == 2:
            ours.set_lr(0.01)
            ref.param_groups[0]["lr"] = 0.01
        for model, opt in ((a, ours), (b, ref)):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_a_step_trains_in_train_mode_and_leaves_the_module_tree_alone_when_it_already_is(monkeypatch):
    # The mode is set only when an evaluation left the net in eval mode: train() walks every module, and a
    # captured step has training=True baked in anyway (walking the tree each step cost 0.7 ms on ResNet-56).
    train = data()
    t = make()
    x, y = TrainStream(train, pixel_mean(train.x), 16, "crop_flip", seed=0).batch(0, 0)
    t.model.eval()
    t.step(x, y)
    assert t.model.training and all(m.training for m in t.model.modules())
    calls = []
    monkeypatch.setattr(t.model, "train", lambda mode=True: calls.append(mode))
    t.step(x, y)
    assert calls == []


def test_snapshot_and_restore_undo_steps_probed_ones_included():
    # What the CUDA capture relies on to undo its warm-up steps (experiments.training.fastpath): every tensor a step
    # changes, BN's step counters and the probes' gradient sums included, is back as it was.
    from experiments.training.fastpath import restore, snapshot, state_tensors
    from experiments.training.probes import Probes
    train = data()
    torch.manual_seed(0)
    model = CifarResNet(8, True)
    t = Trainer(model, tiny_protocol(), warmup=True, probes=Probes(model, 1))
    x, y = TrainStream(train, pixel_mean(train.x), 16, "crop_flip", seed=0).batch(0, 0)
    t.step(x, y)  # momentum buffers exist, sums are non-zero
    before = [s.clone() for s in state_tensors(t)]
    saved = snapshot(t)
    t._step(x, y, probe=True)
    t._step(x, y)
    changed = [not torch.equal(a, b) for a, b in zip(before, state_tensors(t))]
    assert changed[-1], "the probed step adds to the probes' gradient sums"
    assert sum(changed) > len(changed) // 2
    restore(t, saved)
    assert all(torch.equal(a, b) for a, b in zip(before, state_tensors(t)))
    bn = next(m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert int(bn.num_batches_tracked) == 1


def test_an_epoch_end_of_several_nets_reads_the_device_twice_and_gives_each_its_own_row(monkeypatch):
    """end_epochs enqueues every net's test (and val) pass before reading any: two host reads in all, not two
    per net, and each row equals what evaluate() says of that net alone. A net whose loss is not finite gets
    the training columns only and status diverged, without holding up the others."""
    from experiments.training.train import end_epochs
    train, test, val = data(), data(32, seed=1), data(16, seed=2)
    trainers = [make(depth=8, residual=False), make(depth=8), make(depth=14)]
    stream = TrainStream(train, pixel_mean(train.x), 16, "crop_flip", seed=0)
    for k in range(4):
        for t in trainers:
            t.step(*stream.batch(0, k))
    trainers[1].sums[0] = float("nan")  # the middle net diverged
    expected = [(evaluate(t.model, test, stream.normalize, 32), evaluate(t.model, val, stream.normalize, 32))
                for t in trainers]
    sums = [t.sums.tolist() for t in trainers]
    reads = []
    original = torch.Tensor.tolist
    monkeypatch.setattr(torch.Tensor, "tolist", lambda self: reads.append(self.shape) or original(self))
    rows = end_epochs(trainers, 1, test, val, stream.normalize)
    monkeypatch.undo()
    assert len(reads) == 2  # the three nets' sums, then the two healthy nets' four numbers each
    for t, row, (loss_sum, wrong, seen), ((test_loss, test_err), (val_loss, val_err)) in zip(trainers, rows, sums,
                                                                                           expected):
        assert row["iteration"] == 4 and row["epoch"] == 1 and t.sums.tolist() == [0.0, 0.0, 0.0]
        if t is trainers[1]:
            assert t.status == "diverged" and "test_err" not in row and t.history == []
            continue
        assert row["train_loss"] == loss_sum / seen and row["train_err"] == 100.0 * wrong / seen
        assert (row["test_loss"], row["test_err"], row["val_loss"], row["val_err"]) == (test_loss, test_err,
                                                                                        val_loss, val_err)
        assert t.status == "running" and t.history == [row]
