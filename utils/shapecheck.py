"""An independent judge of generated shapes-world images (lesson 05): which colour, which shape?

Not the CLIP that reranked them (a model grading its own choice proves little). Colour: each
pixel with saturation >= 0.35 and value >= 0.3 votes for the nearest hue range of
`data.COLOUR_HSV`. Shape: a small CNN trained on renders, half after a tiny-VQ round trip
(rebuild it after the VQ: `python -m course_tools train shapecheck`).

    verdicts = load_shape_judge().judge(images)   # images (B, 3, 64, 64) in [0, 1]
    verdicts[0] -> {"colour": "red", "colour_share": 0.93, "shape": "circle", "shape_prob": 0.99}
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .assets import ASSETS_DIR
from .data import COLOUR_HSV, COLOURS, SHAPES
from .io import fields_of, load_checkpoint

JUDGE_WEIGHTS = ASSETS_DIR / "shape-judge.safetensors"
REBUILD = "python -m course_tools train shapecheck"
MIN_SATURATION = 0.35
MIN_VALUE = 0.3


def rgb_to_hsv(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) RGB in [0, 1] -> HSV with the hue in degrees [0, 360) (kornia gives radians)."""
    from kornia.color import rgb_to_hsv as hsv_in_radians

    hsv = hsv_in_radians(images)                                 # (B, 3, H, W)
    return torch.cat([torch.rad2deg(hsv[:, :1]) % 360, hsv[:, 1:]], 1)


def _hue_distance(hue: torch.Tensor, low: float, high: float) -> torch.Tensor:
    """Circular distance in degrees from hue to the range [low, high] (0 inside)."""
    centre, half = (low + high) / 2, (high - low) / 2
    diff = torch.remainder(hue - centre + 180, 360) - 180        # in [-180, 180)
    return (diff.abs() - half).clamp(min=0)


def dominant_colours(images: torch.Tensor) -> list[tuple[str | None, float, int]]:
    """The colour most coloured pixels vote for, its share of their votes, and how many they are,
    per image: (B, 3, H, W) -> [(colour, share, pixels), ...]; colour None under 4 pixels."""
    h, s, v = rgb_to_hsv(images.float()).unbind(1)               # (B, H, W) each
    coloured = (s >= MIN_SATURATION) & (v >= MIN_VALUE)          # (B, H, W)
    dist = torch.stack([_hue_distance(h, *COLOUR_HSV[c][0]) for c in COLOURS], -1)  # (B, H, W, C)
    nearest = F.one_hot(dist.argmin(-1), len(COLOURS))           # (B, H, W, C)
    out = []
    for row in (nearest * coloured[..., None]).sum((1, 2)).float():  # (C,) votes per image
        total, best = int(row.sum()), int(row.argmax())
        out.append((COLOURS[best] if total >= 4 else None, float(row[best]) / max(total, 1), total))
    return out


@dataclass
class JudgeConfig:
    image_size: int = 64
    width: int = 32
    n_shapes: int = len(SHAPES)


class ShapeNet(nn.Module):
    """Image -> shape logits: four conv layers (64 -> 8 pixels per side), a global max over
    positions, a linear layer."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        w = cfg.width
        self.features = nn.Sequential(
            nn.Conv2d(3, w // 2, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # (B, w/2, 32, 32)
            nn.Conv2d(w // 2, w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # (B, w, 16, 16)
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),  # (B, 2w, 8, 8)
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.GELU(),  # (B, 4w, 8, 8)
        )
        self.head = nn.Linear(4 * w, cfg.n_shapes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.features(images * 2 - 1)                        # (B, 4w, 8, 8)
        return self.head(x.amax(dim=(2, 3)))                     # (B, n_shapes)


class ShapeJudge:
    """Colour by pixel statistics, shape by `ShapeNet`."""

    def __init__(self, net: ShapeNet):
        self.net = net.eval()

    @torch.no_grad()
    def judge(self, images: torch.Tensor) -> list[dict]:
        """One verdict per image (B, 3, 64, 64) in [0, 1]: colour, colour_share, coloured_pixels,
        shape, shape_prob."""
        probs = self.net(images.float()).softmax(-1)  # (B, len(SHAPES))
        return [{"colour": colour, "colour_share": round(share, 3), "coloured_pixels": total,
                 "shape": SHAPES[int(p.argmax())], "shape_prob": round(float(p.max()), 3)}
                for (colour, share, total), p in zip(dominant_colours(images), probs)]


def load_shape_judge(weights: str | Path | None = None) -> ShapeJudge:
    """The bundled judge (or `weights` with its .json config beside it)."""
    state, raw, weights = load_checkpoint(weights, JUDGE_WEIGHTS, "shape judge", REBUILD)
    if raw.get("shapes", SHAPES) != SHAPES:
        raise ValueError(f"{weights} was trained for shapes {raw['shapes']}, not {SHAPES}. "
                         f"Rebuild it: {REBUILD}")
    net = ShapeNet(JudgeConfig(**fields_of(JudgeConfig, raw)))
    net.load_state_dict(state)
    return ShapeJudge(net.requires_grad_(False))

