"""The stacked model (experiments.tools.stacked) computes what its nets compute, so that the time steptime --stacked
measures is the time of the same training."""
import json

import pytest
import torch

from experiments.config import ProtocolConfig, SpeedConfig, Switch
from experiments.nets.resnet_cifar import CifarResNet
from experiments.tools import steptime
from experiments.tools.stacked import StackedNets, StackedTrainer, stacked_loss
from experiments.training.train import Trainer, make_trainer


def nets(depth=8, residual=(False, True), seeds=(0, 1)):
    out = []
    for r, s in zip(residual, seeds):
        torch.manual_seed(s)
        out.append(CifarResNet(depth, r))
    return out


def batch(n=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def slices(stacked_param: torch.Tensor, k: int, grouped_dim: int = 0) -> list:
    return list(stacked_param.chunk(k, grouped_dim))


@pytest.mark.parametrize("residual", [(False, True), (True, True), (False, False), (True, False, True)])
def test_the_stacked_forward_and_backward_are_each_nets_own(residual):
    """Outputs, every parameter's gradient and BN's running statistics, net by net, in a downsampling depth
    (stages 2 and 3 change shape: option A's zero channels must land inside each net's own channels)."""
    separate = nets(14, residual, seeds=range(len(residual)))
    stacked = StackedNets(separate)
    x, y = batch()
    out = stacked(x)
    assert out.shape == (16, len(residual), 10)
    stacked_loss(out, y).backward()
    sum(torch.nn.functional.cross_entropy(n(x), y) for n in separate).backward()
    k = len(residual)
    for j, n in enumerate(separate):
        torch.testing.assert_close(out[:, j], n(x).detach(), rtol=1e-5, atol=1e-5)
    pairs = [(stacked.conv1, [n.conv1 for n in separate]), (stacked.bn1, [n.bn1 for n in separate])]
    for s, stage in enumerate(stacked.stages):
        for b, block in enumerate(stage):
            for name in ("conv1", "bn1", "conv2", "bn2"):
                pairs.append((getattr(block, name), [getattr(n.stages[s][b], name) for n in separate]))
    for mod, theirs in pairs:
        for attr in ("weight", "bias"):
            if getattr(mod, attr, None) is None:
                continue
            for mine, their in zip(slices(getattr(mod, attr).grad, k), theirs):
                torch.testing.assert_close(mine, getattr(their, attr).grad, rtol=1e-4, atol=1e-6)
    for j, n in enumerate(separate):
        torch.testing.assert_close(stacked.fc_weight.grad[j], n.fc.weight.grad, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(stacked.fc_bias.grad[j], n.fc.bias.grad, rtol=1e-4, atol=1e-6)


def test_the_stacked_running_statistics_are_each_nets_own():
    separate = nets(14)
    stacked = StackedNets(separate)
    x, _ = batch()
    stacked(x)
    for n in separate:
        n(x)
    for mine, theirs in ((stacked.bn1, [n.bn1 for n in separate]),
                         (stacked.stages[2][0].bn2, [n.stages[2][0].bn2 for n in separate])):
        for name in ("running_mean", "running_var"):
            torch.testing.assert_close(getattr(mine, name), torch.cat([getattr(t, name) for t in theirs]),
                                       rtol=1e-5, atol=1e-6)


def test_stacked_training_steps_are_the_separate_nets_steps():
    """Three SGD steps (momentum, weight decay, an lr drop) of the stacked trainer leave each net's slice of
    the weights where its own Trainer leaves it; and eval-mode outputs agree after them."""
    p = ProtocolConfig(name="t", iterations=3, milestones=[2], batch_size=16)
    separate = nets(8)
    speed = SpeedConfig(channels_last=Switch.off)  # the separate Trainers below run contiguous fp32 too
    stacked = make_trainer(StackedNets(separate), 8, p, torch.device("cpu"), speed, probe_every=0,
                           trainer_class=StackedTrainer)
    alone = [Trainer(n, p) for n in separate]
    for k in range(3):
        x, y = batch(seed=k)
        stacked.step(x, y)
        for t in alone:
            t.step(x, y)
    m = stacked.model
    for j, t in enumerate(alone):
        torch.testing.assert_close(m.conv1.weight[16 * j:16 * (j + 1)], t.model.conv1.weight, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.stages[2][0].conv2.weight.chunk(2)[j], t.model.stages[2][0].conv2.weight,
                                   rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m.fc_weight[j], t.model.fc.weight, rtol=1e-4, atol=1e-5)
    x, _ = batch(seed=9)
    m.eval()
    out = m(x)
    for j, t in enumerate(alone):
        t.model.eval()
        torch.testing.assert_close(out[:, j], t.model(x), rtol=1e-4, atol=1e-4)
    assert stacked.sums[2].item() == 3 * 16 * 2  # both nets' images counted


def test_stacking_refuses_nets_of_different_depths_or_option_b():
    with pytest.raises(ValueError, match="one depth"):
        StackedNets([CifarResNet(8, False), CifarResNet(14, True)])
    with pytest.raises(ValueError, match="option-A"):
        StackedNets([CifarResNet(8, True, "B"), CifarResNet(8, True, "B")])


@pytest.mark.slow
def test_steptime_stacked_times_both_side_by_side_and_says_the_ratio(tmp_path):
    assert steptime.main(["--nets", "8", "--steps", "1", "--test-images", "20", "--device", "cpu", "--stacked",
                          "--out", str(tmp_path)]) == 0
    st = json.loads((tmp_path / "steptime.json").read_text())["stacked"]
    assert st["rounds"] == 3 and len(st["separate_ms"]) == len(st["stacked_ms"]) == 3
    assert st["speedup"] == pytest.approx(sorted(st["separate_ms"])[1] / sorted(st["stacked_ms"])[1])
    assert st["graphed"] == [False]  # one depth, one stacked model; no graphs on a CPU
    md = (tmp_path / "steptime.md").read_text()
    assert "Stacked (a speed idea, experiments.tools.stacked)" in md and f"{st['speedup']:.2f}x" in md
