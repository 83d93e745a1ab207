import torch

from experiments.data import Split
from experiments.loader import TrainStream, crop_flip, make_normalizer, pixel_mean


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
    keras = make_normalizer("keras", x)
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
