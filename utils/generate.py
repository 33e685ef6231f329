"""CLIP-guided image generation (lesson 04): VQGAN+CLIP, the method pixray implements.

A generator G (a VQ decoder, or a plain pixel grid) draws an image from parameters z; CLIP
scores the image against the prompt; we change z to raise the score. z starts from noise
(or from an init image). One step:

    z_q    = quantize(z)                      nearest codebook vectors, straight-through gradient
    x      = clamp(G(z_q), 0, 1)              the image, (B, 3, H, W)
    cuts   = augment(crops of x)              N random crops, resized to CLIP's input size
    e      = normalize(CLIP(cuts))            (B, N, D)
    loss   = sum_p w_p * mean_n d(e_n, t_p)   t_p: prompt p's text embedding, w_p its weight
             (+ s * colourfulness(x))         optional: pixray's saturation penalty
    z     <- Adam(z, grad loss); clamp z to the codebook's range

with the spherical distance d(a, b) = 2 arcsin(|a - b| / 2)^2 between unit vectors (half the
squared angle between them). Negative weights push the image away from a prompt.

Why cutouts: one image seen through many random crops, flips, rotations and noise must match
the prompt in all of them; without them, the optimiser finds an adversarial pattern that fools
CLIP and looks like nothing.

    result = generate("a red circle", drawer="tiny-vq", iterations=60, seed=0)
    result.image                       # PIL image
    result.scores                      # CLIP score (cosine) over iterations
    result.save("out.png"); result.save_animation("out.gif")

`python -m utils generate "a red circle:1 | a blue square:-0.5" --drawer tiny-vq --json`
"""

from __future__ import annotations

import argparse
import math
import re
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .errors import CourseError

DRAWERS = ("tiny-vq", "pixel", "vqgan")

# Quality presets. Iterations follow pixray's table (its last version); pixray also uses more
# and bigger CLIP models at higher quality, which we leave to the `clip` argument.
PRESETS = {
    "draft": {"iterations": 200, "cutouts": 32},
    "normal": {"iterations": 250, "cutouts": 48},
    "better": {"iterations": 300, "cutouts": 64},
    "best": {"iterations": 350, "cutouts": 96},
}
# The shapes world is small: the same presets, sized for a laptop CPU. Its backgrounds are
# grey, and its tiny CLIP does not mind stray colour: a small saturation penalty keeps colour
# where the prompt needs it.
TINY_PRESETS = {
    "draft": {"iterations": 60, "cutouts": 16, "saturation": 0.3},
    "normal": {"iterations": 100, "cutouts": 24, "saturation": 0.3},
    "better": {"iterations": 150, "cutouts": 32, "saturation": 0.3},
    "best": {"iterations": 250, "cutouts": 48, "saturation": 0.3},
}
# Adam learning rates per drawer; a VQ latent moves in units of the codebook's spread.
# Lesson 04's real section (pretrained CLIP + VQGAN f16): its run on a CPU, sized to show the
# picture forming in under 3 minutes on 2 cores, and on a GPU. Seconds per step come from
# benchmarks/bench_lesson04_cpu.py (CPU, random weights of the real architectures).
REAL_RUN_CPU = {"size": 128, "iterations": 24, "cutouts": 8}
REAL_RUN_GPU = {"size": 256, "iterations": 150, "cutouts": 32}
DEFAULT_LR = {"tiny-vq": 0.15, "pixel": 0.05, "vqgan": 0.1}
# What the picture starts from when there is no init image (pixray's init_noise):
# "colour" / "grey": the latents of a picture of coloured / grey blotches;
# "random": a random code in every cell (VQ) or random colours (pixel), as the VQGAN+CLIP
# notebooks do. For the tiny CLIP, plain and grey pictures already look a little like
# "a green star": coloured noise is the start it finds least like any one prompt.
DEFAULT_INIT = {"tiny-vq": "colour", "pixel": "colour", "vqgan": "random"}
DEFAULT_SIZE = {"tiny-vq": 64, "pixel": 64, "vqgan": 256}


class GenerationError(CourseError, RuntimeError):
    """Generation cannot run as asked; the message says what to change."""


# ------------------------------------------------------------------ prompts


@dataclass
class Prompt:
    text: str
    weight: float = 1.0


def parse_prompts(prompts: str | Sequence[str | Prompt]) -> list[Prompt]:
    """pixray's prompt syntax: prompts separated by '|', each "text" or "text:weight".

    parse_prompts("a red circle:1 | a blue square:-0.5")
    -> [Prompt('a red circle', 1.0), Prompt('a blue square', -0.5)]
    A negative weight pushes the image away from that prompt.
    """
    parts = prompts.split("|") if isinstance(prompts, str) else list(prompts)
    out = []
    for part in parts:
        if isinstance(part, Prompt):  # already parsed
            out.append(part)
            continue
        part = part.strip()
        if not part:
            continue
        text, weight = part, 1.0
        if ":" in part:
            head, tail = part.rsplit(":", 1)
            try:
                weight = float(tail)
            except ValueError:
                raise ValueError(
                    f"Malformed prompt {part!r}: the part after the last ':' must be a number "
                    f"(the prompt's weight), got {tail.strip()!r}. Write 'text:weight', "
                    "e.g. 'a red circle:1' or 'a blue square:-0.5'."
                ) from None
            if ":" in head:
                raise ValueError(
                    f"Malformed prompt {part!r}: only one ':weight' per prompt is allowed "
                    "(pixray's ':stop' is not supported). Separate prompts with '|'."
                )
            text = head.strip()
            if not math.isfinite(weight):
                raise ValueError(f"Prompt {part!r}: the weight must be a finite number.")
        if not text:
            raise ValueError(f"Prompt {part!r} has a weight but no text.")
        out.append(Prompt(text, weight))
    if not out:
        raise ValueError("The prompt is empty: say what to draw, e.g. \"a red circle\".")
    if all(p.weight == 0 for p in out):
        raise ValueError("Every prompt has weight 0: nothing to optimise. Give one a non-zero weight.")
    return out


# ------------------------------------------------------------------ cutouts


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


# ------------------------------------------------------------------ loss


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
    """Mean chroma max(r, g, b) - min(r, g, b) of each image: (B, 3, H, W) -> (B,).

    0 for greys. Used as pixray's saturation loss: a small penalty keeps colour only
    where CLIP asks for it.
    """
    return (images.amax(1) - images.amin(1)).mean((1, 2))


class ClampWithGrad(torch.autograd.Function):
    """clamp(x, lo, hi) whose gradient still flows where following it brings x back in range.

    A plain clamp has zero gradient outside [lo, hi], so a pixel that overshoots is stuck.
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
        ctx.lo, ctx.hi = lo, hi
        ctx.save_for_backward(x)
        return x.clamp(lo, hi)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (x,) = ctx.saved_tensors
        # gradient descent moves x by -grad: keep grad where that does not push x further out
        keep = grad * (x - x.clamp(ctx.lo, ctx.hi)) >= 0
        return grad * keep, None, None


def clamp_with_grad(x: torch.Tensor, lo: float = 0.0, hi: float = 1.0) -> torch.Tensor:
    return ClampWithGrad.apply(x, lo, hi)


# ------------------------------------------------------------------ drawers


def grey_noise(batch: int, size: int, generator: torch.Generator, cells: int = 8) -> torch.Tensor:
    """Pictures of grey noise (B, 3, size, size): random grey blotches plus fine grain."""
    coarse = 0.25 + 0.65 * torch.rand(batch, 1, cells, cells, generator=generator)
    grey = F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)
    grey = grey + 0.05 * torch.randn(batch, 1, size, size, generator=generator)
    return grey.clamp(0, 1).expand(batch, 3, size, size)


def colour_noise(batch: int, size: int, generator: torch.Generator, cells: int = 8) -> torch.Tensor:
    """Pictures of coloured noise (B, 3, size, size): blotches of random colours."""
    coarse = torch.rand(batch, 3, cells, cells, generator=generator)
    return F.interpolate(coarse, size=size, mode="bilinear", align_corners=False)


NOISES = {"grey": grey_noise, "colour": colour_noise}


class VQDrawer(torch.nn.Module):
    """Draws with a VQ decoder (tiny VQ or VQGAN): the parameters are a latent grid z (B, C, h, w)."""

    name = "vq"

    def __init__(self, vq, batch: int, grid: tuple[int, int], generator: torch.Generator,
                 init_image: torch.Tensor | None = None, init_noise: str = "grey"):
        super().__init__()
        self.vq = vq
        codebook = vq.codebook.detach()  # (K, C)
        if init_image is not None:
            with torch.no_grad():
                z = vq.encode_z(init_image.to(codebook.device)).repeat(batch, 1, 1, 1)
        elif init_noise in NOISES:  # the latents of a picture of noise
            picture = NOISES[init_noise](batch, grid[0] * vq.cfg.downsample, generator)
            with torch.no_grad():
                z = vq.encode_z(picture.to(codebook.device))
        elif init_noise == "random":  # a random code in every cell
            codes = torch.randint(len(codebook), (batch, *grid), generator=generator).to(codebook.device)
            z = codebook[codes].permute(0, 3, 1, 2)  # (B, C, h, w)
        else:
            raise ValueError(f"init_noise must be one of grey, colour, random; not {init_noise!r}.")
        self.z = torch.nn.Parameter(z.clone())
        self.latent = self.z  # what the optimiser changes
        # z is kept inside the box spanned by the codebook, channel by channel
        self.register_buffer("z_min", codebook.min(0).values[None, :, None, None])
        self.register_buffer("z_max", codebook.max(0).values[None, :, None, None])

    def forward(self) -> torch.Tensor:
        """The current images (B, 3, H, W) in [0, 1]."""
        z_q, _ = self.vq.quantize(self.z)
        return clamp_with_grad(self.vq.decode_z(z_q))

    @torch.no_grad()
    def clamp_(self) -> None:
        self.z.copy_(torch.maximum(torch.minimum(self.z, self.z_max), self.z_min))


class PixelDrawer(torch.nn.Module):
    """Draws a low-resolution grid of coloured cells, optimised directly (like pixray's fast_pixel)."""

    name = "pixel"

    def __init__(self, batch: int, size: int, cells: int, generator: torch.Generator,
                 init_image: torch.Tensor | None = None, device: str | torch.device = "cpu",
                 init_noise: str = "grey"):
        super().__init__()
        self.size = size
        if init_image is not None:
            grid = F.adaptive_avg_pool2d(init_image, cells).repeat(batch, 1, 1, 1)
        elif init_noise in NOISES:
            grid = F.adaptive_avg_pool2d(NOISES[init_noise](batch, size, generator), cells)
        elif init_noise == "random":
            grid = torch.rand(batch, 3, cells, cells, generator=generator)
        else:
            raise ValueError(f"init_noise must be one of grey, colour, random; not {init_noise!r}.")
        self.cells = torch.nn.Parameter(grid.to(device))  # (B, 3, cells, cells)
        self.latent = self.cells  # what the optimiser changes

    def forward(self) -> torch.Tensor:
        return F.interpolate(self.cells, size=self.size, mode="nearest")  # (B, 3, size, size)

    @torch.no_grad()
    def clamp_(self) -> None:
        self.cells.clamp_(0, 1)


def make_drawer(name: str, size: int, batch: int, generator: torch.Generator, device: torch.device,
                init_image: torch.Tensor | None = None, vq=None, checkpoint: str | None = None,
                pixel_cell: int = 4, init_noise: str | None = None) -> tuple[torch.nn.Module, int, list[str]]:
    """Build drawer `name`; returns (drawer, the size it draws, notes about changes made).

    Sizes are rounded to what the drawer can make: a multiple of the pixel cell (pixel), of
    the code size (VQ: 8 px for the tiny VQ, 16 px for the VQGAN).
    """
    notes = []
    init_noise = init_noise or DEFAULT_INIT.get(name, "grey")
    if name == "pixel":
        fixed = max(pixel_cell, round(size / pixel_cell) * pixel_cell)
        if fixed != size:
            notes.append(f"size {size} is not a multiple of the {pixel_cell}-pixel cells: using {fixed}.")
        init = _resize(init_image, fixed)
        return PixelDrawer(batch, fixed, fixed // pixel_cell, generator, init, device, init_noise), fixed, notes
    if name not in ("tiny-vq", "vqgan"):
        raise ValueError(f"Unknown drawer {name!r}; choose one of {', '.join(DRAWERS)}.")
    if vq is None:
        if name == "tiny-vq":
            from .tinyvq import load_tiny_vq

            vq = load_tiny_vq(device=device)
        else:
            from .vqgan import load_vqgan

            vq = load_vqgan(checkpoint, device=device)
    f = vq.cfg.downsample
    fixed = max(f, round(size / f) * f)
    if fixed != size:
        notes.append(f"size {size} is not a multiple of {f} (one code per {f}x{f} pixels): using {fixed}.")
    grid = (fixed // f, fixed // f)
    return VQDrawer(vq, batch, grid, generator, _resize(init_image, fixed), init_noise), fixed, notes


def _resize(image: torch.Tensor | None, size: int) -> torch.Tensor | None:
    if image is None:
        return None
    return F.interpolate(image, size=(size, size), mode="bilinear", antialias=True, align_corners=False)


# ------------------------------------------------------------------ the loop


@dataclass
class GenerationResult:
    """What `generate` returns: final images, frames, and the CLIP score history."""

    images: list  # final PIL images, one per seed
    frames: list  # PIL frames of the first image, every `frame_every` iterations
    scores: list[float]  # CLIP score (cosine, first positive prompt) of image 0 at each frame
    score_iterations: list[int]
    prompts: list[Prompt]
    settings: dict
    seconds: float
    final_scores: list[float] = field(default_factory=list)  # per image
    start_scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # loss of image 0 per iteration
    notes: list[str] = field(default_factory=list)

    @property
    def image(self):
        return self.images[0]

    @property
    def start_score(self) -> float:
        return self.start_scores[0]

    @property
    def final_score(self) -> float:
        return self.final_scores[0]

    def save(self, path: str | Path, index: int = 0) -> Path:
        """Save image `index` as PNG to `path`, or to a new name beside it if it exists."""
        from PIL import Image

        from .assets import atomic_path

        path = unique_path(path)
        with atomic_path(path) as tmp:  # a crash leaves no half-written PNG behind
            self.images[index].save(tmp, format=Image.registered_extensions().get(path.suffix.lower(), "PNG"))
        return path

    def save_animation(self, path: str | Path, fps: int = 10) -> Path:
        """Save the frames as a GIF (or MP4, which needs imageio-ffmpeg) to a new file."""
        return save_animation(self.frames, path, fps)


def unique_path(path: str | Path) -> Path:
    """`path` if free, else the first free `stem-1.ext`, `stem-2.ext`, ...: never overwrite."""
    path = Path(path)
    candidate, i = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        i += 1
    return candidate


def save_animation(frames: list, path: str | Path, fps: int = 10) -> Path:
    """Write PIL frames to a new .gif or .mp4 file with imageio."""
    import imageio.v3 as iio

    path = unique_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = np.stack([np.asarray(f.convert("RGB")) for f in frames])  # (T, H, W, 3)
    if path.suffix.lower() == ".gif":
        from .assets import atomic_path

        with atomic_path(path) as tmp:
            iio.imwrite(tmp, arrays, duration=1000 / fps, loop=0, extension=".gif")
    elif path.suffix.lower() == ".mp4":
        import importlib.util

        if importlib.util.find_spec("av"):  # imageio's PyAV plugin
            iio.imwrite(path, arrays, plugin="pyav", fps=fps, codec="libx264")
        elif importlib.util.find_spec("imageio_ffmpeg"):  # imageio's ffmpeg plugin
            import imageio.v2

            imageio.v2.mimwrite(path, list(arrays), fps=fps, macro_block_size=1)
        else:
            raise GenerationError("Writing MP4 needs a video backend for imageio: "
                                  "`pip install av` (or imageio-ffmpeg). Or save a .gif instead.")
    else:
        raise ValueError(f"Animations are saved as .gif or .mp4, not {path.suffix!r}.")
    return path


def clip_normalization(clip) -> tuple[torch.Tensor, torch.Tensor]:
    """The mean and std CLIP's preprocessing uses, as (1, 3, 1, 1) tensors."""
    import open_clip

    cfg = getattr(clip.model.visual, "preprocess_cfg", {}) or {}
    mean = cfg.get("mean", open_clip.OPENAI_DATASET_MEAN)
    std = cfg.get("std", open_clip.OPENAI_DATASET_STD)
    return (torch.tensor(mean, device=clip.device).view(1, 3, 1, 1),
            torch.tensor(std, device=clip.device).view(1, 3, 1, 1))


class CLIPObjective:
    """What the loop minimises, per image: the weighted spherical distance between CLIP's
    embeddings of N random cutouts and the prompts, plus optional pixray-style penalties.

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
            cuts, n = _resize(images, self.size), 1
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
        return (self.embed(_resize(images, self.size)) @ self.text[self.main]).tolist()


def _to_pil(image: torch.Tensor):
    from PIL import Image

    array = (image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)
    return Image.fromarray(array)


def _as_image_tensor(image, device) -> torch.Tensor:
    """PIL image, path, or (3, H, W)/(1, 3, H, W) tensor in [0, 1] -> (1, 3, H, W) float."""
    if isinstance(image, (str, Path)):
        from .images import open_image

        image = open_image(image)
    if not isinstance(image, torch.Tensor):
        image = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)
    return (image[None] if image.ndim == 3 else image).float().to(device)


@contextmanager
def _frozen(modules, keep: torch.Tensor, tf32: bool):
    """Gradients flow through CLIP and the decoder into `keep`, not into their weights;
    TF32 matmuls on a GPU if asked. Everything is restored afterwards."""
    params = [p for m in modules for p in m.parameters() if p is not keep]
    before = [p.requires_grad for p in params]
    tf32_before = torch.backends.cuda.matmul.allow_tf32
    for p in params:
        p.requires_grad_(False)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32_before
        for p, flag in zip(params, before):
            p.requires_grad_(flag)


def generate(
    prompts: str | Sequence[str],
    drawer: str = "tiny-vq",
    clip=None,
    size: int | None = None,
    iterations: int | None = None,
    cutouts: int | None = None,
    lr: float | None = None,
    seed: int = 0,
    init_image=None,
    callback: Callable[[int, torch.Tensor, float], None] | None = None,
    quality: str = "draft",
    batch: int = 1,
    augment: str = "fused",
    compile: bool = False,
    device: str | torch.device | None = None,
    frame_every: int | None = None,
    progress: bool = True,
    vq=None,
    checkpoint: str | None = None,
    min_scale: float = 0.5,
    noise: float = 0.05,
    saturation: float | None = None,
    init_noise: str | None = None,
    tf32: bool = True,
) -> GenerationResult:
    """Generate images for `prompts` by optimising a drawer's parameters against CLIP.

    prompts: pixray syntax, "a red circle:1 | a blue square:-0.5".
    drawer: "tiny-vq" (bundled, offline), "pixel" (no model), "vqgan" (taming checkpoint).
    clip: a `utils.models.CLIP`; None loads the tiny shapes-world CLIP.
    quality: preset for iterations, cutouts and saturation (draft / normal / better / best);
        explicit arguments win.
    batch: images per step, from seeds seed, seed+1, ... (they share the cutout positions).
    augment: "fused" (one grid_sample, ours), "kornia" (the canonical per-cutout version),
        or "none" (CLIP sees the whole image; expect adversarial results).
    saturation: weight of pixray's saturation penalty (colour only where the prompt needs it).
    init_noise: the start without init_image: "colour" or "grey" noise, or "random" codes.
    compile: torch.compile the step (CUDA graphs on a GPU). tf32: TF32 matmuls on a GPU.
    callback(iteration, images (B, 3, H, W), loss of image 0) is called after every step.
    Same seed, same result on CPU.
    """
    from tqdm.auto import tqdm

    parsed = parse_prompts(prompts)
    if clip is None:
        from .models import load_clip

        clip = load_clip("tiny-shapes", device="cpu" if device is None else device)
    device = torch.device(device) if device is not None else clip.device
    if device.type != clip.device.type:
        raise ValueError(f"CLIP is on {clip.device} but device={device}: load CLIP on the same device, "
                         f"e.g. load_clip(..., device={str(device)!r}).")
    presets = TINY_PRESETS if getattr(clip, "is_tiny", False) else PRESETS
    if quality not in presets:
        raise ValueError(f"Unknown quality {quality!r}; choose one of {', '.join(presets)}.")
    preset = presets[quality]
    iterations = preset["iterations"] if iterations is None else int(iterations)
    cutouts = preset["cutouts"] if cutouts is None else int(cutouts)
    saturation = preset.get("saturation", 0.0) if saturation is None else saturation
    if iterations < 0 or cutouts < 1 or batch < 1:
        raise ValueError("iterations must be >= 0, cutouts and batch >= 1.")
    size = size or DEFAULT_SIZE.get(drawer, 64)
    lr = DEFAULT_LR.get(drawer, 0.1) if lr is None else lr
    frame_every = frame_every or max(1, iterations // 30)
    objective = CLIPObjective(clip, parsed, cutouts, augment, min_scale, noise, saturation)

    generator = torch.Generator().manual_seed(seed)  # start and cutout positions, on the CPU
    noise_generator = torch.Generator(device).manual_seed(seed)  # noise, made where it is used
    torch.manual_seed(seed)  # kornia's augmentations draw from the global generator
    init = _as_image_tensor(init_image, device) if init_image is not None else None
    model, size, notes = make_drawer(drawer, size, batch, generator, device, init, vq=vq, checkpoint=checkpoint,
                                     init_noise=init_noise)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    if batch > 1 and init is None:  # image i starts as seed + i would start alone
        with torch.no_grad():
            for i in range(batch):
                single, _, _ = make_drawer(drawer, size, 1, torch.Generator().manual_seed(seed + i),
                                           device, None, vq=getattr(model, "vq", None), init_noise=init_noise)
                model.latent[i] = single.latent[0]
    model.to(device)

    def forward(theta, noise_t) -> tuple[torch.Tensor, torch.Tensor]:
        images = model()  # (B, 3, H, W)
        return images, objective.loss(images, theta, noise_t)

    if compile:  # the backward pass is compiled too (AOTAutograd); CUDA graphs on a GPU
        forward = torch.compile(forward, mode="reduce-overhead" if device.type == "cuda" else "default")
    opt = torch.optim.Adam([model.latent], lr=lr, fused=device.type == "cuda")
    frames, scores, score_its, losses = [], [], [], []
    start = time.perf_counter()
    try:
        with _frozen([clip.model, model], model.latent, tf32):
            clip.model.eval()
            with torch.no_grad():
                images = model()
            start_scores = objective.score(images)
            frames.append(_to_pil(images[0]))
            scores.append(start_scores[0])
            score_its.append(0)
            for it in tqdm(range(1, iterations + 1), desc="generating", disable=not progress, unit="it"):
                if compile and device.type == "cuda":  # CUDA graphs: a new step begins
                    torch.compiler.cudagraph_mark_step_begin()
                theta, noise_t = objective.sample(batch, generator, noise_generator)
                opt.zero_grad(set_to_none=False)
                images, loss = forward(theta, noise_t)
                loss.sum().backward()  # images are independent: the sum gives each its own gradient
                opt.step()
                model.clamp_()
                # kept on the device (no wait for the GPU here); a copy, since CUDA graphs
                # reuse their output memory at the next step
                losses.append(loss.detach()[0].clone())
                if callback is not None:
                    callback(it, images.detach().clone(), float(losses[-1]))
                if it % frame_every == 0 or it == iterations:
                    with torch.no_grad():
                        images = model()
                    frames.append(_to_pil(images[0]))
                    scores.append(objective.score(images)[0])
                    score_its.append(it)
            with torch.no_grad():
                images = model()
            final_scores = objective.score(images)
    except torch.OutOfMemoryError as err:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise GenerationError(
            f"Out of memory on {device} with size {size}, {cutouts} cutouts, batch {batch}. "
            f"Try fewer cutouts (e.g. cutouts={max(1, cutouts // 2)}), a smaller size, or batch=1."
        ) from err
    settings = {"drawer": drawer, "size": size, "iterations": iterations, "cutouts": cutouts, "lr": lr,
                "seed": seed, "batch": batch, "augment": augment, "quality": quality,
                "saturation": saturation, "compile": compile, "device": str(device), "clip": clip.description}
    return GenerationResult(
        images=[_to_pil(im) for im in images], frames=frames, scores=scores, score_iterations=score_its,
        prompts=parsed, settings=settings, seconds=time.perf_counter() - start,
        final_scores=final_scores, start_scores=start_scores, notes=notes,
        losses=torch.stack(losses).tolist() if losses else [],
    )


# ------------------------------------------------------------------ pixray bridge

PIXRAY_INSTALL = (
    "pixray is not installed. It is not on PyPI and pins old packages (kornia 0.6, CLIP and "
    "taming-transformers from git), so install it in its own environment or on Colab:\n"
    "    git clone https://github.com/pixray/pixray\n"
    "    pip install -r pixray/requirements.txt\n"
    "    import sys; sys.path.append('pixray')\n"
    "It needs a CUDA GPU. Everything in this lesson runs without it: utils.generate.generate()."
)


def pixray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("pixray") is not None


def run_pixray(prompts: str, drawer: str = "vqgan", quality: str = "draft", outdir: str = "outputs/pixray",
               **kwargs):
    """Run pixray itself with the same prompt syntax (`pixray.run`), when it is importable."""
    try:
        import pixray
    except ImportError as err:
        raise GenerationError(PIXRAY_INSTALL) from err
    return pixray.run(prompts, drawer, quality=quality, outdir=outdir, **kwargs)


# ------------------------------------------------------------------ command line


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "image"


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("generate", help="draw an image from a text prompt with CLIP guidance",
                              description=__doc__.splitlines()[0])
    p.add_argument("prompt", help="prompt(s), pixray syntax: 'a red circle:1 | a blue square:-0.5'")
    p.add_argument("--drawer", choices=DRAWERS, default="tiny-vq")
    p.add_argument("--quality", choices=list(PRESETS), default="draft")
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--cutouts", type=int, default=None)
    p.add_argument("--size", type=int, default=None)
    p.add_argument("--lr", type=float, default=None)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=1, help="images per step (seeds seed, seed+1, ...)")
    p.add_argument("--init-image", default=None, help="start from this image instead of noise")
    p.add_argument("--init-noise", choices=["grey", "colour", "random"], default=None,
                   help="the noise to start from (default: colour for tiny-vq and pixel, random for vqgan)")
    p.add_argument("--saturation", type=float, default=None, help="weight of the saturation penalty")
    p.add_argument("--model", default=None,
                   help="CLIP: tiny-shapes, auto (pretrained ViT-B-32 if downloaded, else tiny), or an "
                        "open_clip name (default: auto with --drawer vqgan, tiny-shapes otherwise)")
    p.add_argument("--checkpoint", default=None, help="VQGAN .ckpt for --drawer vqgan")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default: $COURSE_DEVICE, "
                                                    "else the GPU if there is one)")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads (default: 1 for the tiny models, whose layers are too small to share)")
    p.add_argument("--compile", action="store_true", help="torch.compile the step")
    p.add_argument("--out", default=None, help="output PNG (a new name is chosen if it exists)")
    p.add_argument("--no-animation", action="store_true", help="do not write the GIF of the frames")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=_cli)


def _prompt_notes(clip, prompts: list[Prompt]) -> list[str]:
    """A note for each prompt longer than the CLIP reads (its tokenizer cuts it silently)."""
    notes = []
    for prompt in prompts:
        tokens = clip.tokenizer([prompt.text])  # (1, context_length), cut to fit
        if int(tokens[0, -1]) != 0:  # the last slot is used: the text filled or overflowed it
            words = prompt.text.split()
            notes.append(f"the prompt {' '.join(words[:6])!r}... ({len(words)} words) is longer than "
                         f"{clip.name} reads ({tokens.shape[1]} tokens): its end is ignored.")
    return notes


def _cli(args: argparse.Namespace) -> int:
    """`python -m utils generate`: errors follow the contract of utils/__main__.py."""
    from .errors import show_progress, to_json
    from .models import load_clip

    prompts = parse_prompts(args.prompt)
    model = args.model or ("auto" if args.drawer == "vqgan" else "tiny-shapes")  # see --model's help
    clip = load_clip(model, device=args.device, verbose=not args.json)
    if args.threads or (clip.is_tiny and clip.device.type == "cpu"):  # big models: every core
        torch.set_num_threads(args.threads or 1)
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = generate(prompts, drawer=args.drawer, clip=clip, size=args.size,
                          iterations=args.iterations, cutouts=args.cutouts, lr=args.lr,
                          seed=args.seed, init_image=args.init_image, quality=args.quality,
                          batch=args.batch, compile=args.compile, checkpoint=args.checkpoint,
                          init_noise=args.init_noise, saturation=args.saturation,
                          progress=show_progress(args))
    if not all(math.isfinite(s) for s in [result.start_score, *result.final_scores, *result.losses]):
        raise GenerationError("the optimisation diverged (NaN or infinite scores): the images "
                              "would be blank, so none was written.",
                              "Try a smaller --lr, or another --seed.")
    notes = _prompt_notes(clip, result.prompts) + list(result.notes)
    base = Path(args.out) if args.out else Path("outputs") / f"{_slug(prompts[0].text)}-seed{args.seed}.png"
    if base.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        base = base.with_suffix(".png")
    images = [str(result.save(base.with_name(f"{base.stem}-{i}{base.suffix}") if i else base, i).resolve())
              for i in range(len(result.images))]
    animation = None if args.no_animation else str(
        result.save_animation(Path(images[0]).with_suffix(".gif")).resolve())
    report = {
        "prompts": [{"text": p.text, "weight": p.weight} for p in result.prompts],
        "images": images, "animation": animation,
        "start_score": round(result.start_score, 4), "final_score": round(result.final_score, 4),
        "final_scores": [round(s, 4) for s in result.final_scores],
        "iterations": result.settings["iterations"], "seconds": round(result.seconds, 2),
        "settings": result.settings, "notes": notes,
        "clip": {"name": clip.name, "pretrained": clip.pretrained, "tiny": clip.is_tiny},
        "device": result.settings["device"],
    }
    if args.json:
        print(to_json(report))
    else:
        for note in notes:
            print(f"note: {note}")
        print(f"CLIP: {clip.name}/{clip.pretrained} on {result.settings['device']}")
        print(f"CLIP score {result.start_score:.3f} -> {result.final_score:.3f} in "
              f"{report['iterations']} iterations ({report['seconds']} s)")
        print("wrote " + ", ".join(images + ([animation] if animation else [])))
    return 0
