"""The training stream: the whole split resident on the device as uint8, batches cut and augmented there.

No DataLoader and no per-image Python: each epoch draws one permutation, one crop offset and one flip per
image from a generator seeded by (seed, epoch), so any batch of any epoch can be rebuilt exactly. That is
what makes a run resumable mid-epoch with the same numbers, and lets several networks share one stream.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch
import torch.nn.functional as F

from experiments.config import Normalize
from experiments.data.datasets import Split

PAD = 4  # Sec. 4.2: "4 pixels are padded on each side, and a 32x32 crop is randomly sampled"


@dataclass
class Normalizer:
    """x_uint8 -> (x / 255 - shift) / scale, both [3, 32, 32] (or broadcastable) float32 on the device."""
    shift: torch.Tensor
    scale: Optional[torch.Tensor] = None

    def __call__(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = x_uint8.float().div_(255).sub_(self.shift)
        return x if self.scale is None else x.div_(self.scale)

    def state_dict(self) -> dict:
        """What a checkpoint keeps, so that its weights stand alone (tensors and None: weights_only-loadable)."""
        return {"shift": self.shift, "scale": self.scale}

    @classmethod
    def from_state(cls, state: dict, device="cpu") -> "Normalizer":
        scale = state.get("scale")
        return cls(state["shift"].to(device), None if scale is None else scale.to(device))


def pixel_mean(train_x: torch.Tensor) -> Normalizer:
    # Sec. 4.2: "the per-pixel mean subtracted" -- the training set's mean image, no division by a std.
    return Normalizer(train_x.float().div(255).mean(0))


def keras_stats(train_x: torch.Tensor) -> Normalizer:
    # The Keras tutorial: one scalar mean and a per-pixel std, from the training set only (the tutorial
    # takes the test set's own statistics for the test set; the test set must not inform preprocessing).
    from experiments.data.keras_augment import keras_normalize_stats
    mean, std = keras_normalize_stats(train_x)
    return Normalizer(mean.to(train_x.device), std.to(train_x.device) + 1e-6)


def fixed(mean, std, device) -> Normalizer:
    # Given numbers, not the data's: weights trained elsewhere must see their inputs scaled as they were trained
    # (experiments.pretrained). One value for all channels, or one per channel: [C] -> [C, 1, 1] broadcasts.
    def channels(values):
        return torch.tensor(values, dtype=torch.float32, device=device).view(-1, 1, 1)
    return Normalizer(channels(mean), channels(std))


def make_normalizer(protocol, train_x: torch.Tensor) -> Normalizer:
    """The input normalisation `protocol` (a ProtocolConfig) names, on train_x's device: the one home of
    protocol.normalize, used wherever a net is trained or evaluated."""
    kind = protocol.normalize
    if kind == Normalize.pixel_mean:
        return pixel_mean(train_x)
    if kind == Normalize.keras:
        return keras_stats(train_x)
    if kind == Normalize.fixed:
        return fixed(protocol.normalize_mean, protocol.normalize_std, train_x.device)
    raise ValueError(f"protocol.normalize={kind!r}: expected one of {', '.join(n.value for n in Normalize)}")


def crop_flip(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Zero-pad by 4, crop 32x32 at per-image offsets (dy, dx in 0..8), mirror where `flip`. x: [B, C, H, W]."""
    b, c, h, w = x.shape
    padded = F.pad(x, (PAD, PAD, PAD, PAD))  # zeros = the mean pixel, since x is already mean-subtracted
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # [B, 1, H, 1]
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # [B, 1, 1, W]
    out = padded[torch.arange(b, device=x.device)[:, None, None, None],
                 torch.arange(c, device=x.device)[None, :, None, None], rows, cols]
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def epoch_generator(seed: int, epoch: int, device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + epoch)


class TrainStream:
    def __init__(self, split: Split, normalize: Normalizer, batch_size: int, augment: str, seed: int):
        if len(split) < batch_size:
            raise ValueError(f"{len(split)} training images are fewer than one batch of {batch_size}")
        if augment not in ("crop_flip", "keras", "none"):
            raise ValueError(f"protocol.augment={augment!r}: expected crop_flip, keras or none")
        self.split, self.normalize, self.batch_size = split, normalize, batch_size
        self.augment, self.seed = augment, seed
        # Every batch is full (the last partial one is dropped), so a step's shapes never change.
        self.steps_per_epoch = len(split) // batch_size
        self._plan_epoch, self._plan = None, None

    def plan(self, epoch: int) -> dict:
        if self._plan_epoch != epoch:
            n, dev = len(self.split), self.split.x.device
            g = epoch_generator(self.seed, epoch, dev)
            self._plan = {"perm": torch.randperm(n, generator=g, device=dev),
                          "shift": torch.randint(0, 2 * PAD + 1, (2, n), generator=g, device=dev),
                          "flip": torch.rand(n, generator=g, device=dev) < 0.5}
            self._plan_epoch = epoch
        return self._plan

    def batch(self, epoch: int, k: int):
        """Batch k (0-based) of `epoch`: (x float [B, 3, 32, 32], y int64 [B]), the same every time it is asked for."""
        p = self.plan(epoch)
        sel = slice(k * self.batch_size, (k + 1) * self.batch_size)
        idx = p["perm"][sel]
        x = self.normalize(self.split.x[idx])
        if self.augment == "crop_flip":
            x = crop_flip(x, p["shift"][0, idx], p["shift"][1, idx], p["flip"][idx])
        elif self.augment == "keras":
            from experiments.data.keras_augment import keras_augment
            g = epoch_generator(self.seed, epoch * 100_003 + k, x.device)
            x = keras_augment(x, g)
        return x, self.split.y[idx]


# On a CPU an evaluation runs in chunks of at most this many images: their activations stay in the caches.
# plain-56's pass over the 2,000 quick test images took 2.1 s in chunks of 1,000 and 1.4 s in chunks of 500, 250 or
# 125 on 2 EPYC cores (bf16, measured). In eval mode each image's output is its own, so the chunk changes the time,
# and the numbers only up to float rounding; GPUs keep protocol.eval_batch_size, which fills them.
CPU_EVAL_CHUNK = 250


def iterate_eval(split: Split, normalize: Normalizer, batch_size: int):
    """The original images, unaugmented (Sec. 4.2: "we only evaluate the single view of the original 32x32 image")."""
    if not split.x.is_cuda:
        batch_size = min(batch_size, CPU_EVAL_CHUNK)
    for i in range(0, len(split), batch_size):
        yield normalize(split.x[i:i + batch_size]), split.y[i:i + batch_size]
