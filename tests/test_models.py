import pytest
import torch

from experiments.config import ArchConfig
from experiments.nets import families
from experiments.nets.resnet_cifar import PAPER_DEPTHS, BasicBlock, CifarResNet, ShortcutA, blocks_per_stage, num_params
from tests.helpers.harness import PARAMS  # He et al. 2016, Table 6 (plain nets = option A: no extra parameters)


@pytest.mark.parametrize("residual", [False, True])
@pytest.mark.parametrize("depth", sorted(PARAMS))
def test_every_depth_has_the_papers_parameter_count_and_runs(depth, residual):
    torch.manual_seed(0)
    model = CifarResNet(depth, residual, "A")
    assert num_params(model) == PARAMS[depth]
    out = model(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10) and torch.isfinite(out).all()
    # 6n+2 weighted layers: 6n 3x3 convs in blocks + first conv + fc
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) + 1 == depth


def test_option_b_adds_projections_only_where_shapes_change():
    assert num_params(CifarResNet(20, True, "B")) - PARAMS[20] == (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)


def test_option_a_shortcut_is_a_subsample_plus_zero_channels():
    x = torch.randn(2, 16, 32, 32)
    out = ShortcutA(16, 32, 2)(x)
    assert out.shape == (2, 32, 16, 16)
    assert torch.equal(out[:, :16], x[:, :, ::2, ::2])
    assert torch.count_nonzero(out[:, 16:]) == 0
    assert sum(p.numel() for p in ShortcutA(16, 32, 2).parameters()) == 0


def test_residual_block_adds_its_shortcut_and_plain_block_has_none():
    torch.manual_seed(0)
    block = BasicBlock(16, 32, 2, residual=True, shortcut="A").eval()
    x = torch.randn(2, 16, 8, 8)
    branch = block.bn2(block.conv2(torch.relu(block.bn1(block.conv1(x)))))
    assert torch.allclose(block(x), torch.relu(branch + ShortcutA(16, 32, 2)(x)), atol=1e-6)
    plain = BasicBlock(16, 32, 2, residual=False).eval()
    assert plain.shortcut is None


def test_plain_output_does_not_depend_on_any_shortcut_path(monkeypatch):
    torch.manual_seed(0)
    plain, res = CifarResNet(20, False).eval(), CifarResNet(20, True).eval()
    x = torch.randn(2, 3, 32, 32)
    before_plain, before_res = plain(x), res(x)
    # Sabotage every shortcut: a plain net must not notice, a residual one must.
    monkeypatch.setattr(ShortcutA, "forward", lambda self, t: torch.full_like(t[:, :, ::2, ::2].repeat(1, 2, 1, 1), 1e3))
    monkeypatch.setattr(torch.nn.Identity, "forward", lambda self, t: t * 0 + 1e3)
    assert torch.equal(plain(x), before_plain)
    assert not torch.allclose(res(x), before_res)


def test_he_init_scales_conv_weights_by_fan_in():
    torch.manual_seed(0)
    conv = CifarResNet(56, True).stages[2][3].conv2  # 64 -> 64, 3x3: fan-in 576
    assert conv.weight.std().item() == pytest.approx((2 / 576) ** 0.5, rel=0.05)


@pytest.mark.parametrize("depth", [21, 0, 7, 19, 57])
def test_impossible_depths_are_refused_with_the_nearest_valid_ones(depth):
    with pytest.raises(ValueError, match=r"6n\+2") as e:
        blocks_per_stage(depth)
    near = [d for d in range(8, 80, 6) if abs(d - depth) < 6]
    assert all(str(d) in str(e.value) for d in near)


def test_paper_depth_table_matches_the_rule():
    assert all(blocks_per_stage(d) == n for d, n in PAPER_DEPTHS.items())


def test_build_reports_the_weighted_layer_depth_and_refuses_unknown_families():
    model, depth = families.build(ArchConfig("resnet_cifar"), 32, False)
    assert depth == 32 and num_params(model) == PARAMS[32]
    with pytest.raises(ValueError, match="arch.name='vgg' is not a registered family: choose one of minimodel, resnet"):
        families.build(ArchConfig("vgg"), 16, False)
