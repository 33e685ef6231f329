"""Cutouts (lesson 04): the random views of a picture that CLIP scores at each step.

The picture must match the prompt through many random crops, flips, rotations and noise; without
them the optimiser finds an adversarial pattern that fools CLIP and looks like nothing.
`sample_cutouts` + `make_cutouts` make all of them with ONE grid_sample call (fast on a GPU);
`KorniaCutouts` is the canonical version of the VQGAN+CLIP notebooks and pixray.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def sample_cutouts(n: int, batch: int = 1, min_scale: float = 0.5, max_degrees: float = 15.0,
                   generator: torch.Generator | None = None,
                   device: str | torch.device = "cpu") -> torch.Tensor:
    """Random affine maps (batch, n, 2, 3) from output to input coordinates (in [-1, 1]): a
    square crop of side s in [min_scale, 1] at a random place inside the image, rotated by up to
    +-max_degrees, mirrored left-right half of the time.
        [x_in, y_in]^T = s * R(angle) * diag(flip, 1) * [x_out, y_out]^T + [tx, ty]^T
    """
    rand = lambda: torch.rand(batch, n, generator=generator)  # noqa: E731 - in [0, 1)
    scale = min_scale + (1 - min_scale) * rand()
    angle = (2 * rand() - 1) * math.radians(max_degrees)
    flip = torch.where(rand() < 0.5, -1.0, 1.0)
    tx, ty = (2 * rand() - 1) * (1 - scale), (2 * rand() - 1) * (1 - scale)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([
        torch.stack([cos * flip, -sin, tx], -1),
        torch.stack([sin * flip, cos, ty], -1),
    ], -2)  # (batch, n, 2, 3)
    return theta.to(device)


def make_cutouts(images: torch.Tensor, theta: torch.Tensor, size: int,
                 noise: torch.Tensor | None = None) -> torch.Tensor:
    """images (B, 3, H, W), maps theta (B, N, 2, 3) -> cutouts (B*N, 3, size, size), plus
    `noise` if given. The N sampling grids of an image are stacked, so ONE grid_sample call
    reads each image once and writes a (N*size, size) column of cutouts."""
    b, n = theta.shape[:2]
    grid = F.affine_grid(theta.reshape(b * n, 2, 3), [b * n, 3, size, size], align_corners=False)
    grid = grid.reshape(b, n * size, size, 2)  # (B, N*size, size, 2)
    cuts = F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection",
                         align_corners=False)
    cuts = cuts.reshape(b, 3, n, size, size).transpose(1, 2).reshape(b * n, 3, size, size)
    return cuts if noise is None else cuts + noise


class KorniaCutouts:
    """The cutouts of the VQGAN+CLIP notebooks and pixray: one crop at a time, area-resized,
    then kornia's random augmentations. Many small kernels per cutout: slower on a GPU."""

    def __init__(self, size: int, n: int, min_scale: float = 0.5, noise: float = 0.1):
        import kornia.augmentation as K

        self.size, self.n, self.min_scale, self.noise = size, n, min_scale, noise
        self.augment = torch.nn.Sequential(
            K.RandomHorizontalFlip(p=0.5),
            K.RandomAffine(degrees=15, translate=(0.1, 0.1), p=0.7, padding_mode="border"),
            K.RandomPerspective(distortion_scale=0.2, p=0.5),
        )

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, 3, H, W) -> (B*N, 3, size, size), grouped by image. Random numbers come
        from torch's global generator (seeded by `generate`), as in pixray."""
        _, _, h, w = images.shape
        cuts = []
        for image in images.split(1):  # (1, 3, H, W)
            for _ in range(self.n):
                frac = self.min_scale + (1 - self.min_scale) * float(torch.rand(()))
                side = max(1, int(min(h, w) * frac))
                x0 = int(torch.randint(0, w - side + 1, ()))
                y0 = int(torch.randint(0, h - side + 1, ()))
                crop = image[:, :, y0:y0 + side, x0:x0 + side]
                cuts.append(F.adaptive_avg_pool2d(crop, self.size) if side >= self.size
                            else resize(crop, self.size, antialias=False))
        cuts = self.augment(torch.cat(cuts))  # (B*N, 3, size, size)
        if self.noise:
            facs = torch.rand(len(cuts), 1, 1, 1, device=cuts.device) * self.noise
            cuts = cuts + facs * torch.randn_like(cuts)
        return cuts


def resize(images: torch.Tensor | None, size: int, antialias: bool = True) -> torch.Tensor | None:
    """(B, 3, H, W) -> (B, 3, size, size), bilinear; None stays None."""
    if images is None:
        return None
    return F.interpolate(images, size=(size, size), mode="bilinear", antialias=antialias,
                         align_corners=False)
