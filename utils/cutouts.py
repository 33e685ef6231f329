"""Cutouts (lesson 04): the random views of a picture that CLIP scores at each step.

One image seen through many random crops, flips, rotations and noise must match the prompt
in all of them; without them, the optimiser finds an adversarial pattern that fools CLIP and
looks like nothing. Two versions of the same idea:
- `sample_cutouts` + `make_cutouts`: every cutout is an affine map, and all of them come
  from ONE grid_sample call (fast on a GPU);
- `KorniaCutouts`: the canonical version of the VQGAN+CLIP notebooks and pixray, one crop at
  a time, then kornia's augmentations.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_cutouts(n: int, batch: int = 1, min_scale: float = 0.5, max_degrees: float = 15.0,
                   flip: bool = True, generator: torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Random affine transforms for `n` cutouts of each of `batch` images: (batch, n, 2, 3).

    Each maps output coordinates (in [-1, 1]) to input coordinates: a square crop of side
    s in [min_scale, 1] (as a fraction of the image) at a random place, rotated by up to
    +-max_degrees, mirrored left-right half of the time.
        [x_in, y_in]^T = s * R(angle) * diag(flip, 1) * [x_out, y_out]^T + [tx, ty]^T
    """
    shape = (batch, n)
    rand = lambda: torch.rand(shape, generator=generator)  # noqa: E731 - (batch, n) in [0, 1)
    scale = min_scale + (1 - min_scale) * rand()
    angle = (2 * rand() - 1) * math.radians(max_degrees)
    mirror = torch.where(rand() < 0.5, -1.0, 1.0) if flip else torch.ones(shape)
    tx, ty = (2 * rand() - 1) * (1 - scale), (2 * rand() - 1) * (1 - scale)  # crop stays inside
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos * mirror, -sin, tx], -1),
        torch.stack([sin * mirror, cos, ty], -1),
    ], -2)  # (batch, n, 2, 3)
    return theta.to(device)


def make_cutouts(images: torch.Tensor, theta: torch.Tensor, size: int,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """All cutouts of all images with ONE grid_sample call.

    images (B, 3, H, W), theta (B, N, 2, 3) -> cutouts (B*N, 3, size, size).
    The N sampling grids of an image are stacked on top of each other, so grid_sample
    reads each image once and writes a (size*N, size) column of cutouts.
    noise: optional (B*N, 3, size, size) added to the cutouts (an augmentation).
    """
    b, n = theta.shape[:2]
    grid = F.affine_grid(theta.reshape(b * n, 2, 3), [b * n, 3, size, size], align_corners=False)
    grid = grid.reshape(b, n * size, size, 2)  # (B, N*size, size, 2): N grids stacked
    cuts = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    cuts = cuts.reshape(b, 3, n, size, size).transpose(1, 2).reshape(b * n, 3, size, size)
    return cuts if noise is None else cuts + noise


class KorniaCutouts:
    """The canonical cutouts of the VQGAN+CLIP notebooks and pixray: one crop at a time,
    resized with area pooling, then kornia's random augmentations on the batch of crops.

    Same idea as `make_cutouts`, written the way those projects do; it launches many small
    kernels per cutout, which is why the fused version is faster on a GPU.
    """

    def __init__(self, size: int, n: int, min_scale: float = 0.5, noise: float = 0.1):
        import kornia.augmentation as K

        self.size, self.n, self.min_scale, self.noise = size, n, min_scale, noise
        self.augment = torch.nn.Sequential(
            K.RandomHorizontalFlip(p=0.5),
            K.RandomAffine(degrees=15, translate=(0.1, 0.1), p=0.7, padding_mode="border"),
            K.RandomPerspective(distortion_scale=0.2, p=0.5),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> (B*N, 3, size, size), grouped by image.

        Random numbers come from torch's global generator (seeded by `generate`), as in pixray.
        """
        b, _, h, w = images.shape
        side_max = min(h, w)
        cuts = []
        for image in images.split(1):  # (1, 3, H, W)
            for _ in range(self.n):
                frac = self.min_scale + (1 - self.min_scale) * float(torch.rand(()))
                side = max(1, int(side_max * frac))
                x0 = int(torch.randint(0, w - side + 1, ()))
                y0 = int(torch.randint(0, h - side + 1, ()))
                crop = image[:, :, y0:y0 + side, x0:x0 + side]
                cuts.append(F.adaptive_avg_pool2d(crop, self.size) if side >= self.size
                            else F.interpolate(crop, size=self.size, mode="bilinear", align_corners=False))
        cuts = self.augment(torch.cat(cuts))  # (B*N, 3, size, size)
        if self.noise:
            facs = torch.rand(len(cuts), 1, 1, 1, device=cuts.device) * self.noise
            cuts = cuts + facs * torch.randn_like(cuts)
        return cuts


def resize(images: torch.Tensor | None, size: int) -> torch.Tensor | None:
    """(B, 3, H, W) -> (B, 3, size, size), antialiased bilinear; None stays None."""
    if images is None:
        return None
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
