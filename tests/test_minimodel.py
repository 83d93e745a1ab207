"""MiniModel (Keras tutorial "Understanding Residual Networks") and its Keras-style augmentation."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from experiments.data.keras_augment import (
    apply_keras_transform,
    keras_augment,
    keras_normalize,
    keras_normalize_stats,
)
from experiments.nets.minimodel import MiniModel, Unit, make_stage, minimodel_depth


def n_params(model: nn.Module) -> int:
    # Trainable parameters only: BN running mean/var are buffers and not counted.
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# 1. Parameter counts, derived by hand from the layer list.
#
# conv k x k, c_in -> c_out, with bias:  k*k*c_in*c_out + c_out;   BN over c channels: 2*c (gamma, beta)
#
# stem     conv3x3 3->32                 3*3*3*32 + 32                       =       896
# unit at 32 (not pooling), c_in = 32:
#   bn1 2*32 = 64;  conv1 3*3*32*32+32 = 9,248;  bn2 64;  conv2 9,248          =    18,624
# pooling unit 32->64:
#   bn1 2*32 = 64;  conv1 3*3*32*64+64 = 18,496;  bn2 2*64 = 128;
#   conv2 3*3*64*64+64 = 36,928;  shortcut 1x1 32*64+64 = 2,112              =    57,728
# unit at 64: bn1 128 + conv1 36,928 + bn2 128 + conv2 36,928                 =    74,112
# pooling unit 64->128:
#   bn1 128;  conv1 3*3*64*128+128 = 73,856;  bn2 256;
#   conv2 3*3*128*128+128 = 147,584;  shortcut 64*128+128 = 8,320            =   230,144
# unit at 128: 256 + 147,584 + 256 + 147,584                                  =   295,680
# pooling unit 128->256:
#   bn1 256;  conv1 3*3*128*256+256 = 295,168;  bn2 512;
#   conv2 3*3*256*256+256 = 590,080;  shortcut 128*256+256 = 33,024          =   919,040
# unit at 256: 512 + 590,080 + 512 + 590,080                                  = 1,181,184
# head: BN 2*256 = 512;  dense 256*10+10 = 2,570                              =     3,082
#
# residual, 3 units per stage:
#   896 + 3*18,624 + (57,728 + 2*74,112) + (230,144 + 2*295,680)
#       + (919,040 + 2*1,181,184) + 3,082
#   = 896 + 55,872 + 205,952 + 821,504 + 3,281,408 + 3,082                   = 4,368,714
# plain: the three shortcut convs go, 2,112 + 8,320 + 33,024 = 43,456:
#   4,368,714 - 43,456                                                        = 4,325,258
# residual, 1 unit per stage:
#   896 + 18,624 + 57,728 + 230,144 + 919,040 + 3,082                         = 1,229,514
# ---------------------------------------------------------------------------------------------
STEM = 3 * 3 * 3 * 32 + 32
UNIT_32 = 2 * 32 + (3 * 3 * 32 * 32 + 32) + 2 * 32 + (3 * 3 * 32 * 32 + 32)
SHORTCUTS = (32 * 64 + 64) + (64 * 128 + 128) + (128 * 256 + 256)


def pool_unit(c_in: int, c_out: int) -> int:  # without its shortcut
    return 2 * c_in + (9 * c_in * c_out + c_out) + 2 * c_out + (9 * c_out * c_out + c_out)


def unit(c: int) -> int:
    return pool_unit(c, c)


HEAD = 2 * 256 + (256 * 10 + 10)


def hand_count(units: int, residual: bool) -> int:
    stages = units * UNIT_32 + sum(
        pool_unit(c_in, c_out) + (units - 1) * unit(c_out)
        for c_in, c_out in [(32, 64), (64, 128), (128, 256)]
    )
    return STEM + stages + (SHORTCUTS if residual else 0) + HEAD


@pytest.mark.parametrize(
    "units, residual, expected",
    [(3, True, 4_368_714), (3, False, 4_325_258), (1, True, 1_229_514), (1, False, 1_186_058)],
)
def test_parameter_count_pinned(units, residual, expected):
    assert hand_count(units, residual) == expected
    assert n_params(MiniModel(units_per_stage=units, residual=residual)) == expected


def test_parameter_count_rule_other_depths():
    for units in (2, 5):
        for residual in (True, False):
            assert n_params(MiniModel(units, residual)) == hand_count(units, residual)


# ---------------------------------------------------------------------------------------------
# 2. Plain units add nothing; residual units add exactly the input (or its 1x1 projection).
# ---------------------------------------------------------------------------------------------
def _branch_by_hand(u: Unit, x: torch.Tensor, pool: bool) -> torch.Tensor:
    out = F.max_pool2d(x, 2, 2) if pool else x
    out = u.conv1(F.relu(u.bn1(out)))
    return u.conv2(F.relu(u.bn2(out)))


def _units(model: MiniModel):
    # (unit, is_pooling) in forward order
    for s, stage in enumerate(model.stages):
        for i, u in enumerate(stage):
            yield u, (s > 0 and i == 0)


def test_plain_has_no_shortcut_and_is_a_chain():
    torch.manual_seed(0)
    model = MiniModel(units_per_stage=2, residual=False).eval()
    assert all(u.shortcut is None for u, _ in _units(model))
    assert not any(isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) for m in model.modules())

    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        h = model.stem(x)
        for u, pool in _units(model):
            h = _branch_by_hand(u, h, pool)
        assert torch.allclose(model(x), model.head(h), atol=1e-5)


@pytest.mark.parametrize("residual", [True, False])
def test_every_unit_matches_its_formula(residual):
    torch.manual_seed(0)
    model = MiniModel(units_per_stage=2, residual=residual).eval()
    seen = {}
    hooks = [u.register_forward_hook(lambda m, inp, out: seen.__setitem__(m, (inp[0], out)))
             for u, _ in _units(model)]
    with torch.no_grad():
        model(torch.randn(2, 3, 32, 32))
        for u, pool in _units(model):
            x, out = seen[u]
            expected = _branch_by_hand(u, x, pool)
            if residual:
                # Pooling unit: shortcut(x) + branch(maxpool(x)); otherwise x + branch(x).
                expected = expected + (u.shortcut(x) if pool else x)
            assert torch.allclose(out, expected, atol=1e-5)
    for h in hooks:
        h.remove()
    assert len(seen) == 8


def test_shortcuts_only_in_residual_pooling_units():
    model = MiniModel(units_per_stage=3, residual=True)
    for u, pool in _units(model):
        assert (u.shortcut is not None) == pool
        if pool:
            assert u.shortcut.kernel_size == (1, 1) and u.shortcut.stride == (2, 2)
            assert u.shortcut.bias is not None


def test_make_stage_only_first_unit_pools():
    stage = make_stage(32, 64, units=3, pool=True, residual=True)
    assert isinstance(stage, nn.Sequential) and len(stage) == 3
    assert isinstance(stage[0].pool, nn.MaxPool2d)
    assert all(isinstance(u.pool, nn.Identity) and u.shortcut is None for u in stage[1:])


# ---------------------------------------------------------------------------------------------
# 3. Shapes: 32x32 -> 16 -> 8 -> 4, logits [B, 10].
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("units", [1, 3])
@pytest.mark.parametrize("residual", [True, False])
def test_stage_shapes_and_logits(units, residual):
    model = MiniModel(units_per_stage=units, residual=residual)
    shapes = []
    for stage in model.stages:
        stage.register_forward_hook(lambda m, inp, out: shapes.append(tuple(out.shape)))
    logits = model(torch.randn(2, 3, 32, 32))
    assert shapes == [(2, 32, 32, 32), (2, 64, 16, 16), (2, 128, 8, 8), (2, 256, 4, 4)]
    assert logits.shape == (2, 10) and torch.isfinite(logits).all()


def test_head_layout():
    head = MiniModel().head
    assert [type(m) for m in head] == [nn.BatchNorm2d, nn.ReLU, nn.Dropout, nn.AvgPool2d, nn.Flatten, nn.Linear]
    assert head[2].p == 0.25


# ---------------------------------------------------------------------------------------------
# 4. Keras initialisation and BN hyper-parameters.
# ---------------------------------------------------------------------------------------------
def test_glorot_uniform_init_and_zero_biases():
    torch.manual_seed(0)
    model = MiniModel()
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(layers) == 1 + 24 + 3 + 1  # stem, 3x3 convs, 1x1 shortcuts, dense
    for m in layers:
        w = m.weight
        receptive = w[0, 0].numel() if w.dim() == 4 else 1
        fan_in, fan_out = w.shape[1] * receptive, w.shape[0] * receptive
        bound = math.sqrt(6 / (fan_in + fan_out))
        assert w.abs().max() <= bound
        # A uniform sample reaches near its bound; PyTorch's default (bound 1/sqrt(fan_in)) would not
        # for the square 3x3 convs, whose Glorot bound is sqrt(2) times larger.
        assert w.abs().max() > 0.9 * bound
        assert w.var().item() == pytest.approx(bound**2 / 3, rel=0.15)
        assert torch.all(m.bias == 0)


def test_batchnorm_matches_keras_defaults():
    bns = [m for m in MiniModel().modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 2 * 12 + 1
    for bn in bns:
        assert bn.momentum == 0.01 and bn.eps == 1e-3
        assert torch.all(bn.weight == 1) and torch.all(bn.bias == 0)


# ---------------------------------------------------------------------------------------------
# 5. Keras ImageDataGenerator augmentation.
# ---------------------------------------------------------------------------------------------
def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _no_transform(b: int):
    z = torch.zeros(b)
    return z, z, z


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_augment_keeps_shape_dtype_device(dtype):
    x = torch.rand(5, 3, 32, 32, dtype=dtype)
    out = keras_augment(x, _gen(0))
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    assert keras_augment(x).shape == x.shape  # default generator


def test_identity_and_exact_flip():
    x = torch.rand(4, 3, 8, 6)
    keep = apply_keras_transform(x, *_no_transform(4), torch.zeros(4, dtype=torch.bool))
    flipped = apply_keras_transform(x, *_no_transform(4), torch.ones(4, dtype=torch.bool))
    assert torch.allclose(keep, x, atol=1e-6)
    assert torch.allclose(flipped, x.flip(-1), atol=1e-6)


def test_random_flip_only():
    x = torch.rand(64, 3, 8, 8)
    out = keras_augment(x, _gen(1), rotation_deg=0.0, shift=0.0, flip=True)
    is_flip = torch.isclose(out, x.flip(-1), atol=1e-6).flatten(1).all(1)
    is_same = torch.isclose(out, x, atol=1e-6).flatten(1).all(1)
    assert torch.all(is_flip ^ is_same)
    assert 10 < is_flip.sum() < 54  # p = 0.5
    assert torch.allclose(keras_augment(x, _gen(1), 0.0, 0.0, flip=False), x, atol=1e-6)


def test_integer_shift_is_translation_with_edge_replication():
    x = torch.rand(2, 3, 10, 12)
    b, _, h, w = x.shape
    z = torch.zeros(b)
    # Keras: output pixel (r, c) samples input (r + shift_rows, c + shift_cols), clamped to the edge.
    out = apply_keras_transform(x, z, torch.full((b,), -2.0), torch.full((b,), 3.0),
                                torch.zeros(b, dtype=torch.bool))
    rows = (torch.arange(h) - 2).clamp(0, h - 1)
    cols = (torch.arange(w) + 3).clamp(0, w - 1)
    expected = x[:, :, rows][:, :, :, cols]
    assert torch.allclose(out, expected, atol=1e-5)
    # Away from the border this is exactly torch.roll.
    rolled = torch.roll(x, shifts=(2, -3), dims=(2, 3))
    assert torch.allclose(out[:, :, 2:, : w - 3], rolled[:, :, 2:, : w - 3], atol=1e-5)


def _keras_pixel_reference(img: torch.Tensor, angle_deg: float, tr: float, tc: float) -> torch.Tensor:
    """scipy.ndimage.affine_transform(order=1, mode='nearest') with Keras' matrix, pixel by pixel.

    in = c + R (out - c + t), c = ((H-1)/2, (W-1)/2), R = [[cos, -sin], [sin, cos]] on (row, col).
    """
    _, h, w = img.shape
    cr, cc = (h - 1) / 2, (w - 1) / 2
    a = math.radians(angle_deg)
    out = torch.empty_like(img)
    for r in range(h):
        for c in range(w):
            dr, dc = r - cr + tr, c - cc + tc
            ir = min(max(cr + math.cos(a) * dr - math.sin(a) * dc, 0.0), h - 1.0)
            ic = min(max(cc + math.sin(a) * dr + math.cos(a) * dc, 0.0), w - 1.0)
            r0, c0 = min(int(ir), h - 2), min(int(ic), w - 2)
            fr, fc = ir - r0, ic - c0
            out[:, r, c] = ((1 - fr) * (1 - fc) * img[:, r0, c0] + (1 - fr) * fc * img[:, r0, c0 + 1]
                            + fr * (1 - fc) * img[:, r0 + 1, c0] + fr * fc * img[:, r0 + 1, c0 + 1])
    return out


def test_rotation_and_shift_match_keras_geometry():
    x = torch.rand(3, 2, 7, 9, dtype=torch.float64)
    angle = torch.tensor([10.0, -7.5, 90.0], dtype=torch.float64)
    tr = torch.tensor([0.0, 1.3, -2.2], dtype=torch.float64)
    tc = torch.tensor([0.0, -0.6, 1.7], dtype=torch.float64)
    out = apply_keras_transform(x, angle, tr, tc, torch.zeros(3, dtype=torch.bool))
    for i in range(3):
        ref = _keras_pixel_reference(x[i], angle[i].item(), tr[i].item(), tc[i].item())
        assert torch.allclose(out[i], ref, atol=1e-9)


def test_augment_is_reproducible_and_random():
    x = torch.rand(8, 3, 32, 32)
    a, b = keras_augment(x, _gen(123)), keras_augment(x, _gen(123))
    assert torch.equal(a, b)
    assert not torch.allclose(a, keras_augment(x, _gen(124)))


def test_augment_stays_in_input_range():
    x = torch.randn(16, 3, 32, 32) * 3 + 1
    out = keras_augment(x, _gen(7), rotation_deg=45.0, shift=0.3)
    assert out.min() >= x.min() - 1e-5 and out.max() <= x.max() + 1e-5


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_augment_on_cuda_matches_cpu_geometry():
    x = torch.rand(4, 3, 32, 32)
    g = torch.Generator(device="cuda").manual_seed(0)
    out = keras_augment(x.cuda(), g)
    assert out.device.type == "cuda" and out.shape == x.shape
    # Same parameters on both devices give the same image.
    angle, tr, tc = torch.tensor([5.0, -3.0, 0.0, 9.0]), torch.tensor([1.5, 0, -4, 2]), torch.tensor([0, 2.5, 1, -3.0])
    flip = torch.tensor([True, False, True, False])
    cpu = apply_keras_transform(x, angle, tr, tc, flip)
    gpu = apply_keras_transform(x.cuda(), angle.cuda(), tr.cuda(), tc.cuda(), flip.cuda())
    assert torch.allclose(cpu, gpu.cpu(), atol=1e-5)


# ---------------------------------------------------------------------------------------------
# 6. Normalisation statistics.
# ---------------------------------------------------------------------------------------------
def test_normalize_stats_match_direct_computation():
    torch.manual_seed(0)
    x = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    mean, std = keras_normalize_stats(x)
    v = x.double() / 255
    n = x.shape[0]
    direct_mean = v.sum() / v.numel()
    per_pixel_mean = v.sum(0) / n
    direct_std = (((v - per_pixel_mean) ** 2).sum(0) / n).sqrt()  # population std, like numpy
    assert mean.shape == () and std.shape == (3, 4, 4)
    assert mean.dtype == std.dtype == torch.float32
    assert mean.item() == pytest.approx(direct_mean.item(), abs=1e-7)
    assert torch.allclose(std.double(), direct_std, atol=1e-7)


def test_normalize_stats_known_values():
    x = torch.zeros(4, 3, 2, 2, dtype=torch.uint8)
    x[::2] = 255  # half the images white, half black
    mean, std = keras_normalize_stats(x)
    assert mean.item() == pytest.approx(0.5)
    assert torch.allclose(std, torch.full((3, 2, 2), 0.5))
    z = keras_normalize(x, mean, std)
    assert torch.allclose(z.abs(), torch.full_like(z, 0.5 / (0.5 + 1e-6)))


# ---------------------------------------------------------------------------------------------
# 7. Depth rule and argument checks.
# ---------------------------------------------------------------------------------------------
def test_depth_rule():
    assert minimodel_depth(3) == 26
    assert minimodel_depth(1) == 10
    # The rule counts exactly the 3x3 convs, the stem and the dense layer.
    model = MiniModel(units_per_stage=2)
    weighted = [m for m in model.modules()
                if isinstance(m, nn.Linear) or (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3))]
    assert len(weighted) == minimodel_depth(2)


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3", None])
def test_bad_units_per_stage_raise(bad):
    with pytest.raises(ValueError, match="units_per_stage"):
        MiniModel(units_per_stage=bad)
    with pytest.raises(ValueError, match="units_per_stage"):
        minimodel_depth(bad)
