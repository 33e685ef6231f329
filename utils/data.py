"""The shapes world: pictures of coloured shapes with captions, drawn from a seed.

Every image holds one filled shape (circle, square, triangle or star) of one colour,
small or large, on the left, right, top or bottom, on a plain or textured background.
Its caption names what is there, e.g. "a small red circle on the left".

    images, attrs = render_batch(8, seed=0)        # (8, 64, 64, 3) uint8, list of dicts
    attrs[0]["caption"]                             # 'a picture of a large blue star'
    sample_images(4, seed=0)                        # [(PIL.Image, caption), ...]

Lesson 01 trains a tiny CLIP on this world; lesson 02 classifies it zero-shot.

How a shape is drawn (all images of a batch at once, no loop over pixels):
each shape is a signed distance function d(x, y) (negative inside, positive outside,
in pixels), and its opacity is alpha = clamp(0.5 - d / softness, 0, 1), which gives
anti-aliased edges one `softness` pixel wide. Squares, triangles and stars share one
formula: fold the angle around the centre into one half-sector of the n-fold symmetric
polygon, where the boundary is a single segment from a tip (R, 0) to an inner corner
(k R cos(pi/n), k R sin(pi/n)); k = cos(pi/n) gives a regular polygon, k < cos(pi/n) a star.

Variation so that "a red circle drawn by anyone is a red circle": continuous positions
over the whole image, sizes, rotations (half upright, half any angle), aspect ratio,
edge softness, optional outlines, colour jitter in HSV, plain light/dark, gradient,
striped and noisy backgrounds, pixel noise.
"""

from __future__ import annotations

import math
import re
from itertools import product

import torch

COLOURS = ["red", "orange", "yellow", "green", "blue", "purple"]
SHAPES = ["circle", "square", "triangle", "star"]
SIZES = ["small", "large"]
POSITIONS = ["left", "right", "top", "bottom"]

# Colour-shape pairs never drawn in the "train" and "test" splits: the compositional
# generalisation experiment asks whether a model that saw red things and stars
# recognises a red star.
HELD_OUT = [("red", "star"), ("green", "square"), ("blue", "triangle"), ("purple", "circle")]
SEEN = [pair for pair in product(COLOURS, SHAPES) if pair not in HELD_OUT]
SPLITS = {"train": SEEN, "test": SEEN, "heldout": HELD_OUT, "all": list(product(COLOURS, SHAPES))}
_SPLIT_STREAM = {"train": 0, "test": 1, "heldout": 2, "all": 3}

# Each colour is a box in HSV space: hue range in degrees, saturation and value ranges.
# The ranges cover common named colours (PIL "red", "orange", "gold", "green" (0,128,0),
# "lime", "blue", "navy"-like, "purple" (128,0,128), matplotlib's tab: palette).
COLOUR_HSV = {
    "red": ((-14, 8), (0.65, 1.0), (0.6, 1.0)),
    "orange": ((20, 40), (0.75, 1.0), (0.85, 1.0)),
    "yellow": ((48, 64), (0.6, 1.0), (0.85, 1.0)),
    "green": ((95, 145), (0.55, 1.0), (0.4, 1.0)),
    "blue": ((205, 245), (0.6, 1.0), (0.45, 1.0)),
    "purple": ((270, 305), (0.4, 1.0), (0.45, 1.0)),
}
# One typical RGB value per colour, for legends and for drawing with other programs.
COLOUR_RGB = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (245, 215, 0),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (130, 40, 170),
}

# Shape radius (centre to farthest point) as a fraction of the image size.
SIZE_RANGE = {"small": (0.11, 0.18), "large": (0.23, 0.40)}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top", "bottom": "at the bottom"}

TEMPLATES = [
    "a {colour} {shape}",
    "a {size} {colour} {shape}",
    "a {colour} {shape} {where}",
    "a {size} {colour} {shape} {where}",
    "a picture of a {colour} {shape}",
    "a photo of a {size} {colour} {shape}",
    "a drawing of a {colour} {shape} {where}",
    "there is a {colour} {shape} {where}",
    "the {shape} is {colour}",
    "a {colour} {shape} on a background",
]


def caption(attrs: dict, template: str = "a {colour} {shape}") -> str:
    """Fill a caption template with an image's attributes; fixes "a orange" -> "an orange"."""
    text = template.format(
        colour=attrs["colour"], shape=attrs["shape"], size=attrs["size"],
        position=attrs["position"], where=WHERE[attrs["position"]],
    )
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def _uniform(gen: torch.Generator, n: int, low, high) -> torch.Tensor:
    """n samples uniform in [low, high); low and high may be tensors of shape (n,)."""
    return low + (high - low) * torch.rand(n, generator=gen)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV (hue in degrees) -> RGB in [0, 1]; (N,) each -> (N, 3)."""
    h = torch.remainder(h, 360.0) / 60.0
    k = torch.remainder(torch.stack([5 + h, 3 + h, 1 + h], -1), 6.0)  # (N, 3)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _sample_colours(gen: torch.Generator, colour_idx: torch.Tensor) -> torch.Tensor:
    """A jittered RGB fill for each colour index; (N,) -> (N, 3) in [0, 1]."""
    boxes = torch.tensor([sum(COLOUR_HSV[c], ()) for c in COLOURS], dtype=torch.float32)  # (C, 6)
    box = boxes[colour_idx]  # (N, 6)
    n = len(colour_idx)
    h = _uniform(gen, n, box[:, 0], box[:, 1])
    s = _uniform(gen, n, box[:, 2], box[:, 3])
    v = _uniform(gen, n, box[:, 4], box[:, 5])
    return _hsv_to_rgb(h, s, v)


def _backgrounds(gen: torch.Generator, n: int, size: int, grid: torch.Tensor) -> torch.Tensor:
    """Plain, gradient, striped and noisy backgrounds, mostly low-saturation; (N, 3, H, W)."""
    kind = torch.multinomial(torch.tensor([0.45, 0.15, 0.15, 0.1, 0.15]), n, True, generator=gen)
    # 0 plain light, 1 plain mid/dark, 2 gradient, 3 stripes, 4 noise
    light = (kind == 0) | (torch.rand(n, generator=gen) < 0.5) & (kind >= 2)
    value = torch.where(light, _uniform(gen, n, 0.8, 1.0), _uniform(gen, n, 0.08, 0.6))
    sat = _uniform(gen, n, 0.0, 0.15) * (torch.rand(n, generator=gen) < 0.7)
    base = _hsv_to_rgb(_uniform(gen, n, 0, 360), sat, value)  # (N, 3)
    img = base[:, :, None, None].expand(n, 3, size, size).clone()  # (N, 3, H, W)
    ys, xs = grid  # (H, W) each, in [0, 1]
    angle = _uniform(gen, n, 0, 2 * math.pi)[:, None, None]
    amp = _uniform(gen, n, 0.1, 0.35)[:, None, None] * torch.where(value > 0.5, -1.0, 1.0)[:, None, None]
    freq = _uniform(gen, n, 3, 10)[:, None, None]
    for k, pattern in ((2, "ramp"), (3, "stripes")):
        m = kind == k  # darken light backgrounds, lighten dark ones
        if m.any():
            along = xs * torch.cos(angle[m]) + ys * torch.sin(angle[m])  # (M, H, W)
            shade = amp[m] * (along - 0.5) if pattern == "ramp" else 0.4 * amp[m] * torch.sin(2 * math.pi * freq[m] * along)
            img[m] += shade[:, None]
    noisy = kind == 4
    if noisy.any():
        m = int(noisy.sum())
        coarse = torch.randn(m, 3, 8, 8, generator=gen)
        coarse = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)
        fine = torch.randn(m, 1, size, size, generator=gen)
        amp_n = _uniform(gen, m, 0.03, 0.12)[:, None, None, None]
        img[noisy] += amp_n * (coarse * 0.6 + fine)
    return img


def _shape_distance(u: torch.Tensor, v: torch.Tensor, radius, sides, inner, is_circle) -> torch.Tensor:
    """Signed distance (pixels; < 0 inside) to a circle or an n-fold polygon/star.

    u, v: (N, H, W) coordinates relative to the shape centre, in pixels, already rotated.
    radius, sides, inner, is_circle: (N, 1, 1). The polygon's tips lie on the +u axis.
    """
    r = torch.sqrt(u * u + v * v)
    circle = r - radius
    sector = 2 * math.pi / sides
    phi = torch.atan2(v, u)
    phi = torch.abs(phi - sector * torch.round(phi / sector))  # fold into [0, pi/n]
    px, py = r * torch.cos(phi), r * torch.sin(phi)
    # segment from the tip A = (R, 0) to the inner corner B
    bx = inner * radius * torch.cos(math.pi / sides)
    by = inner * radius * torch.sin(math.pi / sides)
    ex, ey = bx - radius, by
    wx, wy = px - radius, py
    t = torch.clamp((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
    dist = torch.sqrt((wx - t * ex) ** 2 + (wy - t * ey) ** 2)
    inside = (ex * wy - ey * wx) > 0  # on the same side of the edge as the centre
    polygon = torch.where(inside, -dist, dist)
    return torch.where(is_circle, circle, polygon)


CHUNK = 128  # images drawn at once: small enough for the CPU cache, big enough to vectorise


def render_batch(
    n: int, seed: int = 0, size: int = 64, split: str = "train", as_tensor: bool = False
):
    """Draw `n` shapes-world images; the same (seed, size, split) gives the same images.

    split: "train" / "test" (disjoint random streams over the seen colour-shape pairs),
    "heldout" (only the HELD_OUT pairs), "all" (every pair).
    Returns (images, attrs): images uint8 numpy (N, size, size, 3), or with as_tensor=True
    a float tensor (N, 3, size, size) in [0, 1]; attrs is a list of dicts with keys
    colour, shape, size, position, upright (not turned at random), caption (from a random template).
    Images come in chunks of CHUNK with their own random stream, so the first k images
    of render_batch(n) are those of render_batch(k) when k is a multiple of CHUNK or k <= n.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    images, attrs = [], []
    for chunk, start in enumerate(range(0, n, CHUNK)):
        gen = torch.Generator().manual_seed((int(seed) * 1_000_003 + chunk) * 8 + _SPLIT_STREAM[split])
        img, att = _render_chunk(min(CHUNK, n - start), gen, size, SPLITS[split])
        images.append(img)
        attrs += att
    img = torch.cat(images) if images else torch.zeros(0, 3, size, size)  # (N, 3, H, W)
    if as_tensor:
        return img, attrs
    return (img * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy(), attrs


def _render_chunk(n: int, gen: torch.Generator, size: int, pairs: list) -> tuple[torch.Tensor, list]:
    """Draw n images: float (N, 3, H, W) in [0, 1] and their attribute dicts."""
    pair_idx = torch.randint(len(pairs), (n,), generator=gen).tolist()
    colour_idx = torch.tensor([COLOURS.index(pairs[i][0]) for i in pair_idx])
    shape_idx = torch.tensor([SHAPES.index(pairs[i][1]) for i in pair_idx])
    large = torch.rand(n, generator=gen) < 0.5
    s_lo, s_hi = SIZE_RANGE["small"]
    l_lo, l_hi = SIZE_RANGE["large"]
    radius = torch.where(large, _uniform(gen, n, l_lo, l_hi), _uniform(gen, n, s_lo, s_hi))  # fraction
    aspect = torch.exp(_uniform(gen, n, -0.2, 0.2))  # stretch: width * aspect, height / aspect

    # Centre anywhere the shape fits; its position word is the quarter (cut by the
    # diagonals) the centre falls in. Centres too close to the middle are pushed out.
    margin = radius * torch.maximum(aspect, 1 / aspect) * 0.95
    cx = _uniform(gen, n, margin, 1 - margin)
    cy = _uniform(gen, n, margin, 1 - margin)
    dx, dy = cx - 0.5, cy - 0.5
    push = torch.clamp(0.06 / torch.clamp(torch.maximum(dx.abs(), dy.abs()), min=1e-6), min=1.0)
    cx = torch.clamp(0.5 + dx * push, margin, 1 - margin)
    cy = torch.clamp(0.5 + dy * push, margin, 1 - margin)
    dx, dy = cx - 0.5, cy - 0.5
    horizontal = dx.abs() >= dy.abs()
    position_idx = torch.where(horizontal, torch.where(dx < 0, 0, 1), torch.where(dy < 0, 2, 3))

    # Shape geometry: sides n, inner-corner ratio k (regular polygon: cos(pi/n)).
    is_circle = shape_idx == SHAPES.index("circle")
    is_star = shape_idx == SHAPES.index("star")
    sides = torch.tensor([4.0, 4.0, 3.0, 5.0])[shape_idx]
    sides = torch.where(is_star & (torch.rand(n, generator=gen) < 0.25), 6.0, sides)
    inner = torch.where(is_star, _uniform(gen, n, 0.38, 0.55), torch.cos(math.pi / sides))
    # `upright` turns the polygon's first tip from +u to where it is drawn upright
    # (triangle and star pointing up, square with horizontal sides).
    upright = torch.tensor([0.0, math.pi / 4, -math.pi / 2, -math.pi / 2])[shape_idx]
    any_angle = torch.rand(n, generator=gen) < 0.5
    turn = _uniform(gen, n, -0.1, 0.1) + any_angle * _uniform(gen, n, 0, 2 * math.pi)
    softness = _uniform(gen, n, 0.6, 1.8)  # anti-aliasing width in pixels

    fill = _sample_colours(gen, colour_idx)  # (N, 3)
    outlined = torch.rand(n, generator=gen) < 0.15
    outline_width = torch.where(outlined, _uniform(gen, n, 0.8, 2.5), 0.0)
    outline_rgb = fill * _uniform(gen, n, 0.0, 0.5)[:, None]  # darker version or black

    # Pixel grid, coordinates of pixel centres in [0, 1].
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size
    grid = torch.meshgrid(coords, coords, indexing="ij")  # ys, xs, each (H, W)
    img = _backgrounds(gen, n, size, grid)  # (N, 3, H, W)

    col = lambda x: x[:, None, None]  # noqa: E731 - (N,) -> (N, 1, 1) for broadcasting
    # (u, v): pixel coordinates in the polygon's own frame, an affine map of (x, y):
    # shift to the centre, undo the random turn, undo the stretch (made in the upright
    # shape's frame), undo the upright rotation. One 2x2 matrix M per image:
    # [u, v] = R(upright) diag(1/aspect, aspect) R(turn) [x - cx, y - cy] * size.
    def rotation(theta):  # (N,) -> (N, 2, 2), the map p -> coordinates in a frame turned by theta
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)

    stretch = torch.diag_embed(torch.stack([1 / aspect, aspect], -1))  # (N, 2, 2)
    m = rotation(upright) @ stretch @ rotation(turn) * size  # (N, 2, 2)
    offset = -(m @ torch.stack([cx, cy], -1)[..., None])[..., 0]  # (N, 2)
    ys, xs = grid
    u = col(m[:, 0, 0]) * xs + col(m[:, 0, 1]) * ys + col(offset[:, 0])  # (N, H, W)
    v = col(m[:, 1, 0]) * xs + col(m[:, 1, 1]) * ys + col(offset[:, 1])
    d = _shape_distance(u, v, col(radius * size), col(sides), col(inner), col(is_circle))
    alpha = torch.clamp(0.5 - d / col(softness), 0, 1)[:, None]  # (N, 1, H, W)
    alpha_fill = torch.clamp(0.5 - (d + col(outline_width)) / col(softness), 0, 1)[:, None]
    img = img + alpha * (outline_rgb[:, :, None, None] - img)  # lerp: over the background
    img = img + alpha_fill * (fill[:, :, None, None] - img)  # and the fill over that
    grainy = torch.rand(n, generator=gen) < 0.4  # a little pixel noise on some images
    if grainy.any():
        m = int(grainy.sum())
        amp_g = _uniform(gen, m, 0.0, 0.025)[:, None, None, None]
        img[grainy] += amp_g * torch.randn(m, 1, size, size, generator=gen)
    img = img.clamp_(0, 1)

    template_idx = torch.randint(len(TEMPLATES), (n,), generator=gen).tolist()
    attrs = []
    for ci, si, big, pi, ti, up in zip(colour_idx.tolist(), shape_idx.tolist(), large.tolist(),
                                       position_idx.tolist(), template_idx, (~any_angle).tolist()):
        a = {"colour": COLOURS[ci], "shape": SHAPES[si], "size": "large" if big else "small",
             "position": POSITIONS[pi], "upright": up}
        a["caption"] = caption(a, TEMPLATES[ti])
        attrs.append(a)
    return img, attrs


def sample_images(n: int, seed: int = 0, split: str = "train", size: int = 64, lang: str = "en") -> list:
    """`n` shapes-world pictures for display: [(PIL.Image RGB, caption), ...], captions in `lang`."""
    from PIL import Image

    from .captions import describe

    images, attrs = render_batch(n, seed=seed, size=size, split=split)
    captions = [a["caption"] if lang == "en" else describe(a, lang, where=False) for a in attrs]
    return [(Image.fromarray(images[i]), captions[i]) for i in range(n)]


def class_prompts(template: str = "a {colour} {shape}", pairs=None) -> tuple[list[str], list[tuple]]:
    """One prompt per colour-shape pair (all pairs by default): (prompts, pairs)."""
    pairs = list(product(COLOURS, SHAPES)) if pairs is None else list(pairs)
    prompts = [caption({"colour": c, "shape": s, "size": "small", "position": "left"}, template)
               for c, s in pairs]
    return prompts, pairs
