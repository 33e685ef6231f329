"""The objective of CLIP-guided generation (lesson 04): what `utils.generate` minimises.

For a picture x, N random cutouts cut_n(x) (utils.cutouts) and prompts p with text
embeddings t_p and weights w_p (utils.prompts):

    loss(x) = sum_p w_p * mean_n d(CLIP(cut_n(x)), t_p) + saturation * colourfulness(x)

with the spherical distance d(a, b) = 2 arcsin(|a - b| / 2)^2 between unit vectors (half the
squared angle between them). Negative weights push the picture away from a prompt.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .cutouts import KorniaCutouts, make_cutouts, resize, sample_cutouts
from .prompts import Prompt


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(a, b) = 2 arcsin(|a - b| / 2)^2 for unit vectors a (..., D), b (..., D); 0 when equal."""
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def prompt_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """sum_p w_p * mean over cutouts of d(image, text_p), per image.

    image_embeds (B, N, D) unit vectors, text_embeds (P, D) unit vectors, weights (P,) -> (B,).
    """
    d = spherical_distance(image_embeds[:, :, None, :], text_embeds[None, None])  # (B, N, P)
    return (d.mean(1) * weights).sum(-1)


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Mean chroma max(r, g, b) - min(r, g, b) of each image: (B, 3, H, W) -> (B,); 0 for greys.

    pixray's saturation loss: a small penalty keeps colour only where CLIP asks for it."""
    return (images.amax(1) - images.amin(1)).mean((1, 2))


def clip_normalization(clip) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std CLIP's preprocessing uses, as (1, 3, 1, 1) tensors on CLIP's device."""
    import open_clip

    cfg = getattr(clip.model.visual, "preprocess_cfg", {}) or {}
    mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
    return (torch.tensor(mean, device=clip.device).view(1, 3, 1, 1),
            torch.tensor(std, device=clip.device).view(1, 3, 1, 1))


class CLIPObjective:
    """What the loop minimises, per image: the weighted spherical distance between CLIP's
    embeddings of N random cutouts and the prompts, plus pixray's optional saturation penalty.

        loss(x) = sum_p w_p * mean_n d(CLIP(cut_n(x)), t_p) + saturation * colourfulness(x)
    """

    def __init__(self, clip, prompts: list[Prompt], cutouts: int, augment: str = "fused",
                 min_scale: float = 0.5, noise: float = 0.05, saturation: float = 0.0):
        if augment not in ("fused", "kornia", "none"):
            raise ValueError(f"augment must be 'fused', 'kornia' or 'none', not {augment!r}.")
        self.clip, self.prompts, self.n = clip, prompts, cutouts
        self.augment, self.min_scale, self.noise, self.saturation = augment, min_scale, noise, saturation
        self.device = clip.device
        self.size = clip.image_size  # cutouts are made at CLIP's input size
        self.mean, self.std = clip_normalization(clip)
        self.text = clip.encode_texts([p.text for p in prompts]).to(self.device)  # (P, D) unit vectors
        self.weights = torch.tensor([p.weight for p in prompts], device=self.device)  # (P,)
        # the score we report: cosine with the first prompt of positive weight
        self.main = next((i for i, p in enumerate(prompts) if p.weight > 0), 0)
        self.kornia = KorniaCutouts(self.size, cutouts, min_scale, noise) if augment == "kornia" else None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(M, 3, S, S) in [0, 1] -> (M, D) unit vectors (differentiable)."""
        return F.normalize(self.clip.model.visual((images - self.mean) / self.std).float(), dim=-1)

    def sample(self, batch: int, generator: torch.Generator, noise_generator: torch.Generator):
        """The random part of one step: cutout transforms (batch, N, 2, 3) and noise, on the device."""
        theta = sample_cutouts(self.n, batch, self.min_scale, generator=generator, device=self.device)
        if not self.noise or self.augment != "fused":
            return theta, None
        m = batch * self.n  # each cutout gets Gaussian noise of its own strength in [0, noise)
        fac = torch.rand(m, 1, 1, 1, generator=noise_generator, device=self.device) * self.noise
        return theta, fac * torch.randn(m, 3, self.size, self.size, generator=noise_generator, device=self.device)

    def loss(self, images: torch.Tensor, theta: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> loss per image (B,)."""
        b = images.shape[0]
        if self.augment == "none":  # CLIP sees the whole picture once
            cuts, n = resize(images, self.size), 1
        elif self.kornia is not None:
            cuts, n = self.kornia(images), self.n
        else:
            cuts, n = make_cutouts(images, theta, self.size, noise), self.n
        loss = prompt_loss(self.embed(cuts).view(b, n, -1), self.text, self.weights)  # (B,)
        if self.saturation:
            loss = loss + self.saturation * colourfulness(images)
        return loss

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> list[float]:
        """CLIP score of each whole picture: cosine with the main prompt."""
        return (self.embed(resize(images, self.size)) @ self.text[self.main]).tolist()
