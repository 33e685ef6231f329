"""A tiny VQ image tokenizer/decoder for the shapes world (lessons 04 and 05).

A VQ-VAE (van den Oord et al. 2017) shrunk to the shapes world: a 64x64 image becomes 8x8 codes,
each one of K=256 learned vectors. Lesson 04 optimises its latents with CLIP (VQGAN+CLIP), lesson
05 models its codes with a small transformer (DALL-E).

    vq = load_tiny_vq()
    codes = vq.encode(images)          # (B, 3, 64, 64) in [0, 1] -> (B, 8, 8) long
    images = vq.decode_codes(codes)    # (B, 8, 8) -> (B, 3, 64, 64) in [0, 1]
    z = vq.codebook[codes].permute(0, 3, 1, 2)   # (B, C, 8, 8): the latent grid
    images = vq.decode_z(z)            # decode latents as they are (no quantisation)

Training (`python -m course_tools train vq`; unused codes restart on random encoder outputs), with
e the code nearest to the encoder output z_e and sg the stop-gradient; z_q, the straight-through
estimator, has e's value and z_e's gradient:

    L = |x - D(z_q)|^2 + |sg[z_e] - e|^2 + beta |z_e - sg[e]|^2,   z_q = z_e + sg[e - z_e]
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .assets import ASSETS_DIR
from .io import fields_of, load_checkpoint

TINY_VQ_WEIGHTS = ASSETS_DIR / "tiny-vq.safetensors"
TINY_VQ_CONFIG = ASSETS_DIR / "tiny-vq.json"
REBUILD = "python -m course_tools train vq"


@dataclass
class TinyVQConfig:
    image_size: int = 64  # pixels per side
    downsample: int = 8  # pixels per code, per side: 64x64 -> 8x8 codes
    n_codes: int = 256  # K, the codebook size
    code_dim: int = 32  # C, the dimension of one code vector
    width: int = 64  # channels at the 8x8 and 16x16 levels
    beta: float = 0.25  # commitment weight in the training loss


class ResBlock(nn.Module):
    """x + conv(gelu(conv(gelu(x)))): a residual block that keeps the shape."""

    def __init__(self, ch: int):
        super().__init__()
        self.conv1 = nn.Conv2d(ch, ch, 3, padding=1)
        self.conv2 = nn.Conv2d(ch, ch, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.gelu(self.conv1(F.gelu(x))))


def nearest_codes(z: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
    """The nearest code of each latent vector: z (B, C, h, w), codebook (K, C) -> (B, h, w) long.
    |z - e|^2 = |z|^2 - 2 z.e + |e|^2, and |z|^2 is the same for every e: it is left out."""
    flat = z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])  # (B*h*w, C)
    dist = (codebook**2).sum(1) - 2 * flat @ codebook.T  # (B*h*w, K)
    return dist.argmin(1).view(z.shape[0], z.shape[2], z.shape[3])


def quantize(z: torch.Tensor, codebook: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each latent vector replaced by its nearest code e: z (B, C, h, w) -> z_q (B, C, h, w) and
    codes (B, h, w). z_q = z + sg[e - z]: the value is e, the gradient w.r.t. z the identity."""
    codes = nearest_codes(z, codebook)
    e = codebook[codes].permute(0, 3, 1, 2)  # (B, C, h, w)
    return z + (e - z).detach(), codes


class TinyVQ(nn.Module):
    """Encoder, codebook and decoder of the tiny shapes-world VQ model."""

    def __init__(self, cfg: TinyVQConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or TinyVQConfig()
        w = cfg.width
        self.encoder = nn.Sequential(
            nn.Conv2d(3, w // 2, 4, stride=2, padding=1), nn.GELU(),  # (B, w/2, 32, 32)
            nn.Conv2d(w // 2, w, 4, stride=2, padding=1), nn.GELU(),  # (B, w, 16, 16)
            nn.Conv2d(w, w, 4, stride=2, padding=1),  # (B, w, 8, 8)
            ResBlock(w), nn.GELU(),
            nn.Conv2d(w, cfg.code_dim, 1),  # (B, C, 8, 8)
        )
        self.embedding = nn.Embedding(cfg.n_codes, cfg.code_dim)
        self.embedding.weight.data.uniform_(-1 / cfg.n_codes, 1 / cfg.n_codes)
        self.decoder = nn.Sequential(
            nn.Conv2d(cfg.code_dim, w, 3, padding=1),  # (B, w, 8, 8)
            ResBlock(w), nn.GELU(),
            nn.ConvTranspose2d(w, w, 4, stride=2, padding=1), nn.GELU(),  # (B, w, 16, 16)
            nn.ConvTranspose2d(w, w // 2, 4, stride=2, padding=1), nn.GELU(),  # (B, w/2, 32, 32)
            nn.ConvTranspose2d(w // 2, w // 4, 4, stride=2, padding=1),  # (B, w/4, 64, 64)
            nn.GELU(), nn.Conv2d(w // 4, 3, 3, padding=1),  # (B, 3, 64, 64), about [-1, 1]
        )

    @property
    def codebook(self) -> torch.Tensor:
        """(K, C): one row per code."""
        return self.embedding.weight

    @property
    def grid(self) -> tuple[int, int]:
        """(h, w): codes per image side."""
        side = self.cfg.image_size // self.cfg.downsample
        return side, side

    def encode_z(self, images: torch.Tensor) -> torch.Tensor:
        """Continuous latents before quantisation: (B, 3, H, W) in [0, 1] -> (B, C, h, w)."""
        return self.encoder(images * 2 - 1)

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Image tokens: (B, 3, H, W) in [0, 1] -> codes (B, h, w) long."""
        size = self.cfg.image_size
        if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError("Expected images as a (B, 3, H, W) float tensor in [0, 1], "
                             f"got {got}.")
        if images.shape[-2:] != (size, size):
            raise ValueError(f"The tiny VQ works on {size}x{size} images, got "
                             f"{tuple(images.shape[-2:])}: resize first, e.g. "
                             f"F.interpolate(images, size={size}, mode='area').")
        with torch.no_grad():
            return nearest_codes(self.encode_z(images.to(self.codebook.device)), self.codebook)

    def quantize(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Straight-through quantisation of a latent grid: see `quantize`."""
        return quantize(z, self.codebook)

    def decode_z(self, z: torch.Tensor) -> torch.Tensor:
        """Decode a latent grid as it is (differentiable: the generation loop backpropagates
        through it): (B, C, h, w) -> (B, 3, H, W), about [0, 1], not clamped."""
        return (self.decoder(z) + 1) / 2

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """Image from tokens: codes (B, h, w) long -> (B, 3, H, W) in [0, 1]."""
        if codes.dtype != torch.long or codes.ndim != 3:
            raise ValueError("decode_codes expects a (B, h, w) long tensor, got "
                             f"{tuple(codes.shape)} {codes.dtype}.")
        if codes.min() < 0 or codes.max() >= self.cfg.n_codes:
            raise ValueError(f"codes must lie in [0, {self.cfg.n_codes - 1}].")
        z = self.codebook[codes.to(self.codebook.device)].permute(0, 3, 1, 2)  # (B, C, h, w)
        return self.decode_z(z).clamp(0, 1)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: returns (reconstruction in [-1, 1] scale, VQ loss, codes)."""
        z_e = self.encode_z(images)  # (B, C, h, w)
        z_q, codes = quantize(z_e, self.codebook)
        e = self.codebook[codes].permute(0, 3, 1, 2)  # (B, C, h, w), gradient to the codebook
        vq_loss = F.mse_loss(e, z_e.detach()) + self.cfg.beta * F.mse_loss(z_e, e.detach())
        return self.decoder(z_q), vq_loss, codes


def load_tiny_vq(weights: str | Path | None = None, device: str | torch.device = "cpu") -> TinyVQ:
    """Load the bundled tiny VQ model (or `weights`, with its .json config beside it)."""
    state, raw, _ = load_checkpoint(weights, TINY_VQ_WEIGHTS, "tiny VQ model", REBUILD)
    model = TinyVQ(TinyVQConfig(**fields_of(TinyVQConfig, raw)))
    model.load_state_dict(state)
    return model.eval().requires_grad_(False).to(device)
