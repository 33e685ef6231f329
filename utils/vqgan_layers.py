"""The layers of taming's VQGAN encoder and decoder (Esser, Rombach, Ommer, CVPR 2021), with the
parameter names of the taming-transformers code, so its checkpoints load unchanged
(utils/vqgan.py assembles the model; tests/test_vqgan.py proves ours computes what taming's does).

    encoder: conv_in, per level [ResnetBlock x2 (+ attention at 16x16), Downsample],
             mid [ResnetBlock, AttnBlock, ResnetBlock], GroupNorm, swish, conv_out
    decoder: the mirror image, with nearest-neighbour Upsample + conv.
"""

from __future__ import annotations

from collections import OrderedDict

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
    """shortcut(x) + conv2(swish(norm2(conv1(swish(norm1(x)))))); shortcut: 1x1 conv or identity."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.norm1 = group_norm(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.norm2 = group_norm(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.nin_shortcut = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        return (x if self.nin_shortcut is None else self.nin_shortcut(x)) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W pixels, with a residual connection:
    x + proj_out(softmax(q k^T / sqrt(C)) v), q, k, v 1x1 convolutions of norm(x)."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(channels, channels, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        hn = self.norm(x)
        # (B, C, H, W) -> (B, 1 head, H*W, C)
        q, k, v = (f(hn).flatten(2).transpose(1, 2)[:, None] for f in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)  # (B, 1, H*W, C)
        return x + self.proj_out(out[:, 0].transpose(1, 2).reshape(b, c, h, w))


class Downsample(nn.Module):
    """Halve the resolution: a stride-2 3x3 conv, padded only right and bottom (as taming does)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Double the resolution: nearest-neighbour copy, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=1, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ResnetBlocks, each followed by attention where configured, then
    its `downsample` (encoder) or `upsample` (decoder), if the builder gave it one."""

    def __init__(self, c_in: int, c_out: int, blocks: int, attention: bool):
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(c_out if i else c_in, c_out) for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(c_out) for _ in range(blocks if attention else 0))

    def stages(self):
        """Its modules in the order they run."""
        for i, block in enumerate(self.block):
            yield block
            if len(self.attn):
                yield self.attn[i]
        for name in ("downsample", "upsample"):
            if hasattr(self, name):
                yield getattr(self, name)


def middle(channels: int) -> nn.Sequential:
    """The bottleneck at the lowest resolution: ResnetBlock, attention, ResnetBlock."""
    return nn.Sequential(OrderedDict(block_1=ResnetBlock(channels, channels),
                                     attn_1=AttnBlock(channels),
                                     block_2=ResnetBlock(channels, channels)))


class Tower(nn.Module):
    """Encoder and decoder run their `stages()` in turn. With `grad_checkpointing` (open_clip's
    name) each stage is recomputed in the backward pass instead of keeping its activations: the
    same numbers, one more forward pass, the memory of one stage instead of all (lesson 04 on a
    2 GB Binder: utils.generate)."""

    grad_checkpointing = False

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(swish(self.norm_out(h)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        recompute = self.grad_checkpointing and torch.is_grad_enabled()
        for stage in self.stages():
            x = checkpoint(stage, x, use_reentrant=False) if recompute else stage(x)
        return x


class Encoder(Tower):
    """(B, 3, H, W) in [-1, 1] -> (B, z_channels, H/f, W/f)."""

    def __init__(self, cfg):  # a utils.vqgan.VQGANConfig
        super().__init__()
        widths = [cfg.ch * m for m in (1, *cfg.ch_mult)]  # channels entering each level
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, 3, padding=1)
        self.down = nn.ModuleList()
        for i in range(len(cfg.ch_mult)):
            attention = cfg.resolution // 2**i in cfg.attn_resolutions
            self.down.append(Level(widths[i], widths[i + 1], cfg.num_res_blocks, attention))
            if i < len(cfg.ch_mult) - 1:
                self.down[i].downsample = Downsample(widths[i + 1])
        self.mid = middle(widths[-1])
        self.norm_out = group_norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], cfg.z_channels, 3, padding=1)

    def stages(self):
        yield self.conv_in
        for level in self.down:
            yield from level.stages()
        yield from (self.mid, self.head)


class Decoder(Tower):
    """(B, z_channels, h, w) -> (B, 3, h*f, w*f), about [-1, 1]."""

    def __init__(self, cfg):  # a utils.vqgan.VQGANConfig
        super().__init__()
        channels = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, channels, 3, padding=1)
        self.mid = middle(channels)
        # taming stores the levels full resolution first (up[0]) and runs them from the last:
        # we keep its order so the keys match
        levels, res = [], cfg.resolution // cfg.downsample
        for i in reversed(range(len(cfg.ch_mult))):
            width = cfg.ch * cfg.ch_mult[i]
            attention = res in cfg.attn_resolutions
            levels.insert(0, Level(channels, width, cfg.num_res_blocks + 1, attention))
            if i > 0:
                levels[0].upsample = Upsample(width)
                res *= 2
            channels = width
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(channels)
        self.conv_out = nn.Conv2d(channels, cfg.out_ch, 3, padding=1)

    def stages(self):
        """conv_in, mid, the levels from the lowest resolution up, the output head."""
        yield from (self.conv_in, self.mid)
        for level in reversed(self.up):
            yield from level.stages()
        yield self.head
