"""The probes record what a direct computation gives, on a tiny net with hand-set weights."""
import pytest
import torch
import torch.nn.functional as F

from experiments.config import ProtocolConfig
from experiments.data.loader import pixel_mean
from experiments.training.probes import Probes
from experiments.training.train import Trainer, evaluate
from tests.helpers.nets import hand_set, images


def direct_responses(model, x):
    """Each 3x3 layer's output after BN, before ReLU/addition, written out as in CifarResNet.forward."""
    out = []
    h = model.bn1(model.conv1(x))
    out.append(h)
    h = F.relu(h)
    for stage in model.stages:
        for block in stage:
            a = block.bn1(block.conv1(h))
            b = block.bn2(block.conv2(F.relu(a)))
            out += [a, b]
            h = F.relu(b + block.shortcut(h) if block.shortcut is not None else b)
    return out


@pytest.mark.parametrize("residual", [False, True])
def test_recorded_response_std_equals_the_direct_computation(residual):
    model, split = hand_set(residual).eval(), images()
    norm = pixel_mean(split.x)
    probes = Probes(model)
    with probes.responses():
        evaluate(model, split, norm, batch_size=5)  # three batches: the moments must add up across them
    probes.end_epoch(1)
    with torch.no_grad():
        expected = [r.double().std(unbiased=False).item() for r in direct_responses(model, norm(split.x))]
    recorded = [row["std"] for row in probes.layer_rows]
    assert [row["name"] for row in probes.layer_rows] == [n for n, _, _ in model.response_points()]
    assert recorded == pytest.approx(expected, rel=1e-6)
    assert len(set(round(v, 6) for v in recorded)) > 3  # hand-set weights give distinct layers


def test_bf16_responses_leave_the_evaluation_untouched_and_match_the_direct_computation():
    """Under bf16 autocast the hook squares its fp32 copy in place: the network's own activations (and so the
    evaluation's numbers) must not change, and the std is that of the bf16 outputs."""
    model, split = hand_set(True).eval(), images()
    norm = pixel_mean(split.x)
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=False)
    plain = evaluate(model, split, norm, 5, autocast)
    probes = Probes(model)
    with probes.responses():
        probed = evaluate(model, split, norm, 5, autocast)
    probes.end_epoch(1)
    assert probed == plain
    with torch.no_grad(), autocast:
        expected = [r.double().std(unbiased=False).item() for r in direct_responses(model, norm(split.x))]
    assert [row["std"] for row in probes.layer_rows] == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("residual", [False, True])
def test_recorded_gradient_norms_equal_the_direct_computation(residual):
    model, split = hand_set(residual), images(8)
    norm = pixel_mean(split.x)
    x, y = norm(split.x), split.y

    # direct: one forward/backward with every block input kept
    ref = hand_set(residual).train()
    inputs = []
    h = F.relu(ref.bn1(ref.conv1(x)))
    for stage in ref.stages:
        for block in stage:
            h.retain_grad()
            inputs.append(h)
            h = block(h)
    F.cross_entropy(ref.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)), y).backward()
    convs = [ref.conv1] + [c for stage in ref.stages for b in stage for c in (b.conv1, b.conv2)]
    expected_weight = [c.weight.grad.norm().item() for c in convs]
    expected_input = [t.grad.norm().item() for t in inputs]

    trainer = Trainer(model, ProtocolConfig(lr=0.1), probes=Probes(model, every=1))
    trainer.step(x, y)
    trainer.probes.end_epoch(1)
    rows = trainer.probes.grad_rows
    assert [r["norm"] for r in rows if r["kind"] == "weight"] == pytest.approx(expected_weight, rel=1e-5)
    assert [r["norm"] for r in rows if r["kind"] == "input"] == pytest.approx(expected_input, rel=1e-5)
    assert [r["layer"] for r in rows if r["kind"] == "input"] == [1, 2, 3]
    assert all(r["samples"] == 1 for r in rows)


def test_gradient_norms_are_the_mean_over_sampled_steps_only():
    model, split = hand_set(False), images(8)
    x, y = pixel_mean(split.x)(split.x), split.y
    trainer = Trainer(model, ProtocolConfig(lr=0.0), probes=Probes(model, every=2))  # lr 0: same grads each step
    for _ in range(4):
        trainer.step(x, y)
    trainer.probes.end_epoch(1)
    fresh = hand_set(False)
    once = Trainer(fresh, ProtocolConfig(lr=0.0), probes=Probes(fresh, every=1))
    once.step(x, y)
    once.probes.end_epoch(1)
    assert {r["samples"] for r in trainer.probes.grad_rows} == {2}  # steps 0 and 2 of 4
    assert [r["norm"] for r in trainer.probes.grad_rows] == pytest.approx([r["norm"] for r in once.probes.grad_rows],
                                                                        rel=1e-5)


def ops_in_evaluation(model, split, norm, probes=None) -> int:
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        with probes.responses() if probes else torch.no_grad():
            evaluate(model, split, norm, batch_size=4)
    views = {"aten::detach", "aten::slice", "aten::select", "aten::view"}  # no kernel, no copy
    return sum(1 for e in prof.events() if e.name.startswith("aten::") and e.cpu_parent is None
               and e.name not in views)


def test_the_response_hooks_cost_two_reductions_a_point_and_four_ops_a_batch():
    """What made the probes cost 1.5x the test pass on an H100: 8 kernels per point per batch. Now each point
    makes one sum and one norm, and each forward one stack, cast, square and add for all points (top-level ops
    counted, so a change that adds work per point shows here, on a CPU, without a timing)."""
    model, split = hand_set(True, depth=14).eval(), images(12)
    norm = pixel_mean(split.x)
    points, batches = len(model.response_points()), 3
    extra = ops_in_evaluation(model, split, norm, Probes(model)) - ops_in_evaluation(model, split, norm)
    assert extra <= batches * (2 * points + 4)  # was about 8 per point
    assert extra >= batches * 2 * points  # and the reductions do happen


def test_a_point_that_does_not_fire_leaves_the_others_right_and_counts_stay_exact():
    model, split = hand_set(False).eval(), images()
    norm = pixel_mean(split.x)
    probes = Probes(model)
    stray = torch.nn.Identity()  # a response point the forward never reaches: the per-point path
    probes.points = probes.points + [("stray", 3, stray)]
    probes.moments = torch.zeros(len(probes.points), 3, dtype=torch.float64)
    probes.counts = [0] * len(probes.points)
    with probes.responses():
        evaluate(model, split, norm, batch_size=5)
    assert probes.counts[-1] == 0 and probes.counts[0] == 12 * 16 * 32 * 32  # 12 images, 16 channels, 32x32
    state = probes.state_dict()  # the checkpoint's layout: counts in column 0
    assert state["moments"][:, 0].tolist() == [float(c) for c in probes.counts]
    again = Probes(model)
    again.points, again.moments = probes.points, torch.zeros_like(probes.moments)
    again.counts = [0] * len(probes.points)
    again.load_state_dict(state)
    assert again.counts == probes.counts
    assert torch.equal(again.response_std()[:-1], probes.response_std()[:-1])  # the stray one: 0/0
    probes.end_epoch(1)
    with torch.no_grad():
        expected = [r.double().std(unbiased=False).item() for r in direct_responses(model, norm(split.x))]
    assert [row["std"] for row in probes.layer_rows][:-1] == pytest.approx(expected, rel=1e-6)
    assert [row["name"] for row in probes.layer_rows][-1] == "stray"
