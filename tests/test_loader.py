import pytest
import torch
from omegaconf import OmegaConf

from experiments.config import Normalize, ProtocolConfig
from experiments.data.datasets import Split
from experiments.data.loader import TrainStream, crop_flip, make_normalizer, pixel_mean
from experiments.harness import precheck
from experiments.harness.cell import stream_key
from tests.helpers.harness import compose


def reference_crop_flip(x, dy, dx, flip):
    out = []
    for i in range(len(x)):  # the per-image loop the batched version replaces
        p = torch.nn.functional.pad(x[i], (4, 4, 4, 4))[:, dy[i]:dy[i] + 32, dx[i]:dx[i] + 32]
        out.append(p.flip(2) if flip[i] else p)
    return torch.stack(out)


def test_crop_flip_matches_a_per_image_reference():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, 32, 32, generator=g)
    dy, dx = torch.randint(0, 9, (2, 16), generator=g)
    flip = torch.rand(16, generator=g) < 0.5
    assert torch.equal(crop_flip(x, dy, dx, flip), reference_crop_flip(x, dy, dx, flip))
    # offset 4 without flip is the identity: the original image
    assert torch.equal(crop_flip(x, torch.full((16,), 4), torch.full((16,), 4), torch.zeros(16, dtype=torch.bool)), x)


def test_pixel_mean_is_the_training_mean_image():
    x = torch.randint(0, 256, (10, 3, 32, 32), dtype=torch.uint8)
    norm = pixel_mean(x)
    assert torch.allclose(norm.shift, x.float().mean(0) / 255)
    assert torch.allclose(norm(x).mean(0), torch.zeros(3, 32, 32), atol=1e-6)
    keras = make_normalizer(ProtocolConfig(normalize=Normalize.keras), x)
    assert keras.shift.numel() == 1 and keras.scale.shape == (3, 32, 32)


def stream(n=64, seed=0, augment="crop_flip"):
    x = torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    split = Split(x, torch.arange(n) % 10)
    return TrainStream(split, pixel_mean(x), 16, augment, seed)


def test_batches_are_rebuilt_exactly_from_seed_and_epoch():
    a, b = stream(), stream()
    assert a.steps_per_epoch == 4
    xb, yb = b.batch(3, 2)
    for k in range(4):
        a.batch(3, k)
    assert torch.equal(a.batch(3, 2)[0], xb) and torch.equal(a.batch(3, 2)[1], yb)
    # an epoch visits every image once; epochs and seeds differ in order
    ys = torch.cat([a.batch(0, k)[1] for k in range(4)])
    assert sorted(ys.tolist()) == sorted((torch.arange(64) % 10).tolist())
    assert not torch.equal(a.batch(0, 0)[0], a.batch(1, 0)[0])
    assert not torch.equal(stream(seed=1).batch(0, 0)[0], a.batch(0, 0)[0])


def test_without_augmentation_a_batch_is_the_normalised_images():
    s = stream(augment="none")
    x, _ = s.batch(0, 0)
    perm = s.plan(0)["perm"][:16]
    assert torch.equal(x, s.normalize(s.split.x[perm]))


@pytest.mark.parametrize("mean, std", [([0.5], [0.25]), ([0.4, 0.5, 0.6], [0.2, 0.25, 0.3])])
def test_a_fixed_normalisation_scales_every_channel_by_the_given_numbers(mean, std):
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    norm = make_normalizer(ProtocolConfig(normalize=Normalize.fixed, normalize_mean=mean, normalize_std=std), x)
    m, s = (torch.tensor(v * (3 // len(v))).view(3, 1, 1) for v in (mean, std))
    assert torch.allclose(norm(x), (x.float() / 255 - m) / s, atol=1e-6)


@pytest.mark.parametrize("args, expected", [
    (["protocol.normalize=fixed"], "protocol.normalize=fixed needs protocol.normalize_mean"),
    (["protocol.normalize=fixed", "protocol.normalize_mean=[0.5]"], "needs protocol.normalize_std"),
    (["protocol.normalize=fixed", "protocol.normalize_mean=[0.5,0.5]", "protocol.normalize_std=[0.2]"],
     "protocol.normalize_mean=[0.5, 0.5]: give one value for all channels or one per channel (3)"),
    (["protocol.normalize=fixed", "protocol.normalize_mean=[0.5]", "protocol.normalize_std=[0]"], "each above 0"),
    (["protocol.normalize_mean=[0.5]"], "protocol.normalize_mean applies to protocol.normalize=fixed only"),
])
def test_a_fixed_normalisation_without_its_numbers_is_refused_before_anything_runs(args, expected, tmp_path):
    problem = precheck.check(["protocol=smoke", "data=imagefolder", f"data.root={tmp_path}", *args])
    assert problem is not None and expected in problem


def test_nets_fed_other_inputs_never_share_a_stream():
    base = ["protocol.normalize=fixed", "protocol.normalize_std=[0.25]"]
    a, b = (compose([*base, f"protocol.normalize_mean=[{m}]"]) for m in (0.5, 0.4))
    assert stream_key(OmegaConf.to_object(a), "cpu") != stream_key(OmegaConf.to_object(b), "cpu")
