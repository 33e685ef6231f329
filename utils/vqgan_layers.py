"""The layers of taming's VQGAN encoder and decoder (Esser, Rombach, Ommer, CVPR 2021).

Written from the paper's architecture with exactly the parameter names of the
taming-transformers code, so that its checkpoints load unchanged (utils/vqgan.py assembles
the model; tests/test_vqgan.py proves that ours computes what taming's computes).

    encoder: conv_in, per level [ResnetBlock x2 (+ attention at 16x16), Downsample],
             mid [ResnetBlock, AttnBlock, ResnetBlock], GroupNorm, swish, conv_out
    decoder: the mirror image, with nearest-neighbour Upsample + conv.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), the non-linearity used everywhere in the VQGAN."""
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with 32 groups, as taming normalises everywhere."""
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """x -> shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))); 1x1 shortcut if channels change."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1) if in_channels != out_channels else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels of a feature map, with a residual connection.

    softmax(q k^T / sqrt(C)) v over the H*W positions, q, k, v and proj_out 1x1 convolutions.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        # (B, C, H, W) -> (B, 1 head, H*W, C)
        q, k, v = (conv(hn).flatten(2).transpose(1, 2)[:, None] for conv in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C)
        out = out[:, 0].transpose(1, 2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Halve the resolution with a stride-2 3x3 conv, padding only right and bottom (as taming does)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour copy, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ResnetBlocks, each followed by attention where configured."""

    def __init__(self, channels_in: int, channels_out: int, n_blocks: int, attention: bool):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(channels_in if i == 0 else channels_out, channels_out) for i in range(n_blocks)
        )
        self.attn = nn.ModuleList(AttnBlock(channels_out) for _ in range(n_blocks if attention else 0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        return x


class Middle(nn.Module):
    """The bottleneck: ResnetBlock, attention, ResnetBlock, at the lowest resolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, z_channels, H/f, W/f)."""

    def __init__(self, cfg):  # a utils.vqgan.VQGANConfig
        super().__init__()
        widths = [cfg.ch * m for m in (1, *cfg.ch_mult)]  # channels entering each level
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        res = cfg.resolution
        for i, _ in enumerate(cfg.ch_mult):
            level = Level(widths[i], widths[i + 1], cfg.num_res_blocks, res in cfg.attn_resolutions)
            if i < len(cfg.ch_mult) - 1:
                level.downsample = Downsample(widths[i + 1])
                res //= 2
            self.down.append(level)
        self.mid = Middle(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        h = self.mid(h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    """(B, z_channels, h, w) -> (B, 3, h*f, w*f), about [-1, 1]."""

    def __init__(self, cfg):  # a utils.vqgan.VQGANConfig
        super().__init__()
        n = len(cfg.ch_mult)
        top = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, padding=1)
        self.mid = Middle(top)
        # taming stores the levels lowest resolution last (up[0] is full size) and runs them
        # from up[n-1] down to up[0]; we keep its order so the keys match.
        levels = [None] * n
        channels, res = top, cfg.resolution // cfg.downsample
        for i in reversed(range(n)):
            width = cfg.ch * cfg.ch_mult[i]
            level = Level(channels, width, cfg.num_res_blocks + 1, res in cfg.attn_resolutions)
            if i > 0:
                level.upsample = Upsample(width)
                res *= 2
            levels[i] = level
            channels = width
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, cfg.out_ch, 3, padding=1)

        # Recompute each stage's activations in the backward pass instead of keeping them
        # (torch.utils.checkpoint): the same numbers, one extra forward pass per step, and the
        # memory of one stage instead of all (lesson 04 on a 2 GB Binder: utils.generate).
        self.grad_checkpointing = False  # the name open_clip uses for the same switch

    def stages(self):
        """The decoder's modules in the order they run: conv_in, mid, per level (lowest resolution
        first) each ResnetBlock (and its attention), the upsample, then the output head."""
        yield self.conv_in
        yield self.mid
        for level in reversed(self.up):
            for i, block in enumerate(level.block):
                yield block
                if len(level.attn):
                    yield level.attn[i]
            if hasattr(level, "upsample"):
                yield level.upsample
        yield self.head

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(swish(self.norm_out(h)))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        h = z
        for stage in self.stages():
            h = checkpoint(stage, h, use_reentrant=False) if recompute else stage(h)
        return h
