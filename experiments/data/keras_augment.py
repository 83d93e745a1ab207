"""The Keras tutorial's data pipeline as batched tensor ops on the data's device.

The tutorial ("Understanding Residual Networks", MiniModel) augments with
    ImageDataGenerator(rotation_range=10, width_shift_range=5./32, height_shift_range=5./32,
                       horizontal_flip=True)
whose per-image transform is scipy.ndimage.affine_transform(order=1, mode="nearest") followed by
an optional left-right flip. Here one affine_grid + grid_sample call does the whole batch:
bilinear == scipy order=1, padding_mode="border" == fill_mode "nearest" (edge replication), and
align_corners=False puts the rotation centre at ((H-1)/2, (W-1)/2), Keras' centre.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

KERAS_STD_EPS = 1e-6  # ImageDataGenerator.standardize divides by (std + 1e-6)


def keras_theta(angle_deg: torch.Tensor, shift_rows: torch.Tensor, shift_cols: torch.Tensor,
                height: int, width: int) -> torch.Tensor:
    """Keras' transform matrix as affine_grid's theta, [B] params -> [B, 2, 3].

    Keras maps output to input pixel coordinates (row, col) about the centre c:
        in = c + R @ (out - c + t),  R = [[cos, -sin], [sin, cos]],  t = (shift_rows, shift_cols)
    (transform_matrix = rotation @ shift, then transform_matrix_offset_center). affine_grid works
    in normalised (x=col, y=row) coordinates, col - c_col = x * W/2, so the same map reads below.
    """
    theta = torch.deg2rad(angle_deg)
    cos, sin = torch.cos(theta), torch.sin(theta)
    tx = 2.0 / width * (sin * shift_rows + cos * shift_cols)
    ty = 2.0 / height * (cos * shift_rows - sin * shift_cols)
    row_x = torch.stack([cos, sin * height / width, tx], dim=-1)     # [B, 3]
    row_y = torch.stack([-sin * width / height, cos, ty], dim=-1)    # [B, 3]
    return torch.stack([row_x, row_y], dim=1)                        # [B, 2, 3]


def apply_keras_transform(x: torch.Tensor, angle_deg: torch.Tensor, shift_rows: torch.Tensor,
                          shift_cols: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Rotate (degrees) and shift (pixels) each image of x [B, C, H, W], then flip where flip [B] is True."""
    b, _, h, w = x.shape
    theta = keras_theta(angle_deg, shift_rows, shift_cols, h, w).to(x.dtype)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)  # [B, H, W, 2]
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # Keras flips after the affine transform, as an exact array flip.
    return torch.where(flip.view(b, 1, 1, 1), out.flip(-1), out)


def keras_augment(x: torch.Tensor, generator: torch.Generator | None = None, rotation_deg: float = 10.0,
                  shift: float = 5 / 32, flip: bool = True) -> torch.Tensor:
    """One random ImageDataGenerator transform per image of a float batch x [B, C, H, W].

    Rotation ~ U[-rotation_deg, rotation_deg]; row and column shifts ~ U[-shift, shift] times the
    image size (continuous, as Keras does for a float range < 1); flip with p=0.5.
    `generator` must live on x's device; None uses the device's default generator.
    """
    if not x.is_floating_point():
        raise TypeError(f"keras_augment needs a float batch, got {x.dtype}")
    b, _, h, w = x.shape
    # One draw for all parameters keeps a seeded generator's stream independent of the options.
    u = torch.rand(b, 4, generator=generator, device=x.device)      # [B, 4] in [0, 1)
    angle = (2 * u[:, 0] - 1) * rotation_deg
    shift_rows = (2 * u[:, 1] - 1) * shift * h
    shift_cols = (2 * u[:, 2] - 1) * shift * w
    do_flip = (u[:, 3] < 0.5) & flip
    return apply_keras_transform(x, angle, shift_rows, shift_cols, do_flip)


def keras_normalize_stats(train_uint8: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean, std) of the training images scaled to [0, 1]: one scalar mean, a [C, H, W] std.

    This is the tutorial's preprocessing, `x - x.mean()` then `x / x.std(axis=0)` (population std),
    not ImageDataGenerator.fit's per-channel statistics. The tutorial normalises the test set with
    the test set's own statistics; we use the training set's for both, since the test set must not
    inform preprocessing. Computed in float64 so 150M summands lose nothing; returned as float32.
    """
    x = train_uint8.to(torch.float64) / 255.0                       # [N, C, H, W]
    mean = x.mean()                                                 # []
    std = x.std(dim=0, correction=0)                                # [C, H, W]
    return mean.float(), std.float()


def keras_normalize(x_uint8: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 [B, C, H, W] -> float32 (x/255 - mean) / (std + 1e-6), the epsilon as Keras' standardize."""
    return (x_uint8.float() / 255.0 - mean) / (std + KERAS_STD_EPS)
