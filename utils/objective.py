"""The objective of CLIP-guided generation (lesson 04): what `utils.generate` minimises.

For a picture x, N random cutouts cut_n(x) (utils.cutouts) and prompts p with text embeddings
t_p and weights w_p (utils.prompts):

    loss(x) = sum_p w_p * mean_n d(CLIP(cut_n(x)), t_p) + saturation * colourfulness(x)

with the spherical distance d(a, b) = 2 arcsin(|a - b| / 2)^2 between unit vectors (half the
squared angle between them). Negative weights push the picture away from a prompt.
"""

from __future__ import annotations

from copy import deepcopy

import torch
import torch.nn.functional as F
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .cutouts import KorniaCutouts, make_cutouts, resize, sample_cutouts
from .prompts import Prompt


def spherical_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """d(a, b) = 2 arcsin(|a - b| / 2)^2 for unit vectors a (..., D), b (..., D); 0 when equal."""
    return (a - b).norm(dim=-1).div(2).clamp(max=1).arcsin().pow(2).mul(2)


def prompt_loss(image_embeds: torch.Tensor, text_embeds: torch.Tensor,
                weights: torch.Tensor) -> torch.Tensor:
    """Loss per image: sum_p w_p mean_n d(image_n, text_p).
    Unit vectors (B, N, D), (P, D) and weights (P,) -> (B,)."""
    d = spherical_distance(image_embeds[:, :, None, :], text_embeds[None, None])  # (B, N, P)
    return (d.mean(1) * weights).sum(-1)


def colourfulness(images: torch.Tensor) -> torch.Tensor:
    """Mean chroma max(r, g, b) - min(r, g, b), (B, 3, H, W) -> (B,): pixray's saturation loss."""
    return (images.amax(1) - images.amin(1)).mean((1, 2))


def clip_normalization(clip) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std of CLIP's preprocessing, as (1, 3, 1, 1) tensors on CLIP's device."""
    import open_clip

    cfg = getattr(clip.model.visual, "preprocess_cfg", {}) or {}
    mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
    return tuple(torch.tensor(v, device=clip.device).view(1, 3, 1, 1) for v in (mean, std))


def folded(tower: torch.nn.Module, size: int) -> torch.nn.Module:
    """A copy of a convolutional image tower in eval mode that a CPU runs faster: each BatchNorm
    folded into the convolution before it, channels_last, frozen. The tower itself if there is
    nothing to fold or the copy computes something else."""
    if tower.training or not any(isinstance(m, torch.nn.BatchNorm2d) for m in tower.modules()):
        return tower
    copy = deepcopy(tower)
    for parent in copy.modules():
        children = list(parent.named_children())
        for (name, conv), (bn_name, bn) in zip(children, children[1:]):
            if isinstance(conv, torch.nn.Conv2d) and isinstance(bn, torch.nn.BatchNorm2d):
                setattr(parent, name, fuse_conv_bn_eval(conv, bn))
                setattr(parent, bn_name, torch.nn.Identity())
    copy = copy.to(memory_format=torch.channels_last).requires_grad_(False)
    probe = torch.rand(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        return copy if torch.allclose(copy(probe), tower(probe), rtol=1e-3, atol=1e-4) else tower


class Patches(torch.nn.Module):
    """A convolution whose stride is its kernel (a ViT's patch embedding) as one matrix product,
    which a CPU runs several times faster, forward and backward. Same weights, same numbers."""

    def __init__(self, conv: torch.nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (k, _), (b, c, h, w) = self.conv.kernel_size, x.shape
        if h % k or w % k:
            return self.conv(x)
        patches = x.reshape(b, c, h // k, k, w // k, k).permute(0, 2, 4, 1, 3, 5).flatten(3)
        # (B, h/k, w/k, c*k*k) @ (c*k*k, out) -> (B, out, h/k, w/k)
        return F.linear(patches, self.conv.weight.flatten(1), self.conv.bias).permute(0, 3, 1, 2)


class CLIPObjective:
    """What the loop minimises, per image: the loss of this module's docstring. On a CPU a
    convolutional CLIP computes it with its `folded` copy; scores always come from CLIP itself."""

    def __init__(self, clip, prompts: list[Prompt], cutouts: int, augment: str = "fused",
                 min_scale: float = 0.5, noise: float = 0.05, saturation: float = 0.0):
        if augment not in ("fused", "kornia", "none"):
            raise ValueError(f"augment must be 'fused', 'kornia' or 'none', not {augment!r}.")
        self.clip, self.prompts, self.n, self.augment = clip, prompts, cutouts, augment
        self.min_scale, self.noise, self.saturation = min_scale, noise, saturation
        self.device, self.size = clip.device, clip.image_size  # cutouts at CLIP's input size
        self.mean, self.std = clip_normalization(clip)
        self.text = clip.encode_texts([p.text for p in prompts]).to(self.device)  # (P, D)
        self.weights = torch.tensor([p.weight for p in prompts], device=self.device)  # (P,)
        # the score we report: cosine with the first prompt of positive weight
        self.main = next((i for i, p in enumerate(prompts) if p.weight > 0), 0)
        self.kornia = (KorniaCutouts(self.size, cutouts, min_scale, noise)
                       if augment == "kornia" else None)
        cpu = self.device.type == "cpu"
        self.tower = folded(clip.model.visual, self.size) if cpu else clip.model.visual

    def embed(self, images: torch.Tensor, tower: torch.nn.Module | None = None) -> torch.Tensor:
        """(M, 3, S, S) in [0, 1] -> (M, D) unit vectors (differentiable), by `tower` (None:
        CLIP's image tower)."""
        tower = self.clip.model.visual if tower is None else tower
        return F.normalize(tower((images - self.mean) / self.std).float(), dim=-1)

    def sample(self, batch: int, generator: torch.Generator, noise_generator: torch.Generator):
        """The random part of a step: cutout maps (batch, N, 2, 3) and noise, on the device."""
        theta = sample_cutouts(self.n, batch, self.min_scale, generator=generator,
                               device=self.device)
        if not self.noise or self.augment != "fused":
            return theta, None
        m, g = batch * self.n, noise_generator  # each cutout gets noise of its own strength
        fac = torch.rand(m, 1, 1, 1, generator=g, device=self.device) * self.noise
        return theta, fac * torch.randn(m, 3, self.size, self.size, generator=g, device=self.device)

    def loss(self, images: torch.Tensor, theta: torch.Tensor,
             noise: torch.Tensor | None) -> torch.Tensor:
        """images (B, 3, H, W) in [0, 1] -> loss per image (B,)."""
        if self.augment == "none":  # CLIP sees the whole picture once
            cuts = resize(images, self.size)
        elif self.kornia is not None:
            cuts = self.kornia(images)
        else:
            cuts = make_cutouts(images, theta, self.size, noise)
        embeds = self.embed(cuts, self.tower).unflatten(0, (len(images), -1))  # (B, N or 1, D)
        loss = prompt_loss(embeds, self.text, self.weights)  # (B,)
        if self.saturation:
            loss = loss + self.saturation * colourfulness(images)
        return loss

    @torch.no_grad()
    def score(self, images: torch.Tensor) -> list[float]:
        """CLIP score of each whole picture: cosine with the main prompt."""
        return (self.embed(resize(images, self.size)) @ self.text[self.main]).tolist()
