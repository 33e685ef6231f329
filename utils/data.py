"""The shapes world: pictures of coloured shapes with captions, drawn from a seed (lessons 01, 02).

One filled circle, square, triangle or star per image, of one colour, small or large, left, right,
top or bottom, turned, stretched, outlined or not, on a plain or textured background: varied so
that "a red circle" drawn by anyone is a red circle to the model.

    images, attrs = render_batch(8, seed=0)        # (8, 64, 64, 3) uint8, list of dicts
    attrs[0]["caption"]                             # 'a picture of a large blue star'
    sample_images(4, seed=0)                        # [(PIL.Image, caption), ...]

A shape's signed distance d(x, y) (pixels, < 0 inside) gives its opacity alpha =
clamp(0.5 - d / softness, 0, 1), an anti-aliased edge. Squares, triangles and stars fold the
angle into one half-sector of the n-fold polygon, bounded by the segment from a tip (R, 0) to an
inner corner k R (cos(pi/n), sin(pi/n)); k = cos(pi/n): a regular polygon, smaller: a star.
"""

from __future__ import annotations

import math
from itertools import product

import torch

from .captions import with_an

COLOURS = ["red", "orange", "yellow", "green", "blue", "purple"]
SHAPES = ["circle", "square", "triangle", "star"]
SIZES = ["small", "large"]
POSITIONS = ["left", "right", "top", "bottom"]

# Colour-shape pairs never drawn in the "train" and "test" splits: does a model that saw red
# things and stars recognise a red star?
HELD_OUT = [("red", "star"), ("green", "square"), ("blue", "triangle"), ("purple", "circle")]
SEEN = [pair for pair in product(COLOURS, SHAPES) if pair not in HELD_OUT]
SPLITS = {"train": SEEN, "test": SEEN, "heldout": HELD_OUT, "all": list(product(COLOURS, SHAPES))}
_SPLIT_STREAM = {"train": 0, "test": 1, "heldout": 2, "all": 3}

# Each colour is a box in HSV space: hue range in degrees, saturation and value ranges, covering
# common named colours (PIL "red", "gold", "green" (0,128,0), "lime", "navy"-like, matplotlib tab:).
COLOUR_HSV = {
    "red": ((-14, 8), (0.65, 1.0), (0.6, 1.0)),
    "orange": ((20, 40), (0.75, 1.0), (0.85, 1.0)),
    "yellow": ((48, 64), (0.6, 1.0), (0.85, 1.0)),
    "green": ((95, 145), (0.55, 1.0), (0.4, 1.0)),
    "blue": ((205, 245), (0.6, 1.0), (0.45, 1.0)),
    "purple": ((270, 305), (0.4, 1.0), (0.45, 1.0)),
}
# One typical RGB value per colour, for legends and for drawing with other programs.
COLOUR_RGB = {"red": (220, 30, 30), "orange": (255, 140, 0), "yellow": (245, 215, 0),
              "green": (30, 160, 50), "blue": (30, 70, 220), "purple": (130, 40, 170)}

# Shape radius (centre to farthest point) as a fraction of the image size.
SIZE_RANGE = {"small": (0.11, 0.18), "large": (0.23, 0.40)}
WHERE = {"left": "on the left", "right": "on the right", "top": "at the top",
         "bottom": "at the bottom"}

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
    text = template.format(colour=attrs["colour"], shape=attrs["shape"], size=attrs["size"],
                           position=attrs["position"], where=WHERE[attrs["position"]])
    return with_an(text)


def _uniform(gen: torch.Generator, n: int, low, high) -> torch.Tensor:
    """n samples uniform in [low, high); low and high may be tensors of shape (n,)."""
    return low + (high - low) * torch.rand(n, generator=gen)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """HSV (hue in degrees) -> RGB in [0, 1]; (N,) each -> (N, 3)."""
    h = torch.remainder(h, 360.0) / 60.0
    k = torch.remainder(torch.stack([5 + h, 3 + h, 1 + h], -1), 6.0)  # (N, 3)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _backgrounds(gen: torch.Generator, n: int, size: int, grid: torch.Tensor) -> torch.Tensor:
    """Plain, gradient, striped and noisy backgrounds, mostly low-saturation; (N, 3, H, W)."""
    # 0 plain light, 1 plain mid/dark, 2 gradient, 3 stripes, 4 noise
    kind = torch.multinomial(torch.tensor([0.45, 0.15, 0.15, 0.1, 0.15]), n, True, generator=gen)
    light = (kind == 0) | (torch.rand(n, generator=gen) < 0.5) & (kind >= 2)
    value = torch.where(light, _uniform(gen, n, 0.8, 1.0), _uniform(gen, n, 0.08, 0.6))
    sat = _uniform(gen, n, 0.0, 0.15) * (torch.rand(n, generator=gen) < 0.7)
    base = _hsv_to_rgb(_uniform(gen, n, 0, 360), sat, value)  # (N, 3)
    img = base[:, :, None, None].expand(n, 3, size, size).clone()  # (N, 3, H, W)
    ys, xs = grid  # (H, W) each, in [0, 1]
    angle = _uniform(gen, n, 0, 2 * math.pi)[:, None, None]
    sign = torch.where(value > 0.5, -1.0, 1.0)[:, None, None]  # darken light ones, lighten dark
    amp = _uniform(gen, n, 0.1, 0.35)[:, None, None] * sign
    freq = _uniform(gen, n, 3, 10)[:, None, None]
    ramp, stripes = kind == 2, kind == 3
    along = xs * torch.cos(angle) + ys * torch.sin(angle)  # (N, H, W)
    img[ramp] += (amp[ramp] * (along[ramp] - 0.5))[:, None]
    wave = torch.sin(2 * math.pi * freq[stripes] * along[stripes])
    img[stripes] += (0.4 * amp[stripes] * wave)[:, None]
    noisy = kind == 4
    m = int(noisy.sum())
    coarse = torch.randn(m, 3, 8, 8, generator=gen)  # smooth blotches, plus fine grain
    coarse = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
    fine = torch.randn(m, 1, size, size, generator=gen)
    img[noisy] += _uniform(gen, m, 0.03, 0.12)[:, None, None, None] * (coarse * 0.6 + fine)
    return img


def _shape_distance(u: torch.Tensor, v: torch.Tensor, radius, sides, inner,
                    is_circle) -> torch.Tensor:
    """Signed distance (pixels; < 0 inside) to a circle or an n-fold polygon/star with tips on
    the +u axis. u, v: (N, H, W) coordinates from the centre, already turned; the rest (N, 1, 1)."""
    r = torch.sqrt(u * u + v * v)
    sector = 2 * math.pi / sides
    phi = torch.atan2(v, u)
    phi = torch.abs(phi - sector * torch.round(phi / sector))  # fold into [0, pi/n]
    px, py = r * torch.cos(phi), r * torch.sin(phi)
    # the segment from the tip A = (R, 0) to the inner corner B, as e = B - A; w = p - A
    ex = inner * radius * torch.cos(math.pi / sides) - radius
    ey = inner * radius * torch.sin(math.pi / sides)
    wx, wy = px - radius, py
    t = torch.clamp((wx * ex + wy * ey) / (ex * ex + ey * ey), 0, 1)
    dist = torch.sqrt((wx - t * ex) ** 2 + (wy - t * ey) ** 2)
    inside = (ex * wy - ey * wx) > 0  # on the same side of the edge as the centre
    return torch.where(is_circle, r - radius, torch.where(inside, -dist, dist))


CHUNK = 128  # images drawn at once: small enough for the CPU cache, big enough to vectorise


def render_batch(n: int, seed: int = 0, size: int = 64, split: str = "train",
                 as_tensor: bool = False):
    """Draw `n` shapes-world images; the same (seed, size, split) gives the same images.

    split: "train" / "test" (disjoint random streams over the seen colour-shape pairs), "heldout"
    (only HELD_OUT pairs), "all". Returns (images, attrs): uint8 numpy (N, size, size, 3), or with
    as_tensor=True floats (N, 3, size, size) in [0, 1]; attrs: dicts of colour, shape, size,
    position, upright (not turned at random), caption (a random template). Each CHUNK of images has
    its own random stream: render_batch(k) starts render_batch(n) when CHUNK divides k <= n.
    """
    if split not in SPLITS:
        raise ValueError(f"Unknown split {split!r}; choose one of {', '.join(SPLITS)}.")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}.")
    images, attrs = [], []
    for chunk, start in enumerate(range(0, n, CHUNK)):
        stream = (int(seed) * 1_000_003 + chunk) * 8 + _SPLIT_STREAM[split]
        gen = torch.Generator().manual_seed(stream)
        img, att = _render_chunk(min(CHUNK, n - start), gen, size, SPLITS[split])
        images.append(img)
        attrs += att
    img = torch.cat(images) if images else torch.zeros(0, 3, size, size)  # (N, 3, H, W)
    if as_tensor:
        return img, attrs
    return (img * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy(), attrs


def _render_chunk(n: int, gen: torch.Generator, size: int,
                  pairs: list) -> tuple[torch.Tensor, list]:
    """Draw n images: float (N, 3, H, W) in [0, 1] and their attribute dicts."""
    pair_idx = torch.randint(len(pairs), (n,), generator=gen).tolist()
    colour_idx = torch.tensor([COLOURS.index(pairs[i][0]) for i in pair_idx])
    shape_idx = torch.tensor([SHAPES.index(pairs[i][1]) for i in pair_idx])
    large = torch.rand(n, generator=gen) < 0.5
    radius = torch.where(large, _uniform(gen, n, *SIZE_RANGE["large"]),
                         _uniform(gen, n, *SIZE_RANGE["small"]))  # a fraction of the size
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

    boxes = torch.tensor([sum(COLOUR_HSV[c], ()) for c in COLOURS], dtype=torch.float32)
    box = boxes[colour_idx]  # (N, 6): each image's hue, saturation and value ranges
    h = _uniform(gen, n, box[:, 0], box[:, 1])
    s = _uniform(gen, n, box[:, 2], box[:, 3])
    v = _uniform(gen, n, box[:, 4], box[:, 5])
    fill = _hsv_to_rgb(h, s, v)  # (N, 3), the colour jittered inside its box
    outlined = torch.rand(n, generator=gen) < 0.15
    outline_width = torch.where(outlined, _uniform(gen, n, 0.8, 2.5), 0.0)
    outline_rgb = fill * _uniform(gen, n, 0.0, 0.5)[:, None]  # darker version or black

    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size  # pixel centres in [0, 1]
    grid = torch.meshgrid(coords, coords, indexing="ij")
    ys, xs = grid  # (H, W) each
    img = _backgrounds(gen, n, size, grid)  # (N, 3, H, W)

    # (u, v): pixel coordinates in the polygon's own frame, an affine map of (x, y): shift to
    # the centre, undo the random turn, the stretch (made upright) and the upright rotation:
    # [u, v] = M [x - cx, y - cy], M = R(upright) diag(1/aspect, aspect) R(turn) * size (N, 2, 2).
    def rotation(theta):  # (N,) -> (N, 2, 2), the map p -> coordinates in a frame turned by theta
        c, s = torch.cos(theta), torch.sin(theta)
        return torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)

    def col(x):  # (N,) -> (N, 1, 1), to broadcast over pixels
        return x[:, None, None]

    stretch = torch.diag_embed(torch.stack([1 / aspect, aspect], -1))  # (N, 2, 2)
    m = rotation(upright) @ stretch @ rotation(turn) * size  # (N, 2, 2)
    offset = -(m @ torch.stack([cx, cy], -1)[..., None])[..., 0]  # (N, 2)
    u = col(m[:, 0, 0]) * xs + col(m[:, 0, 1]) * ys + col(offset[:, 0])  # (N, H, W)
    v = col(m[:, 1, 0]) * xs + col(m[:, 1, 1]) * ys + col(offset[:, 1])
    d = _shape_distance(u, v, col(radius * size), col(sides), col(inner), col(is_circle))
    alpha = torch.clamp(0.5 - d / col(softness), 0, 1)[:, None]  # (N, 1, H, W)
    alpha_fill = torch.clamp(0.5 - (d + col(outline_width)) / col(softness), 0, 1)[:, None]
    img = img + alpha * (outline_rgb[:, :, None, None] - img)  # lerp: over the background
    img = img + alpha_fill * (fill[:, :, None, None] - img)  # and the fill over that
    grainy = torch.rand(n, generator=gen) < 0.4  # a little pixel noise on some images
    amp = _uniform(gen, int(grainy.sum()), 0.0, 0.025)[:, None, None, None]
    img[grainy] += amp * torch.randn(len(amp), 1, size, size, generator=gen)
    img = img.clamp_(0, 1)

    template_idx = torch.randint(len(TEMPLATES), (n,), generator=gen).tolist()
    attrs = []
    for ci, si, big, pi, ti, up in zip(colour_idx.tolist(), shape_idx.tolist(), large.tolist(),
                                       position_idx.tolist(), template_idx, (~any_angle).tolist()):
        a = {"colour": COLOURS[ci], "shape": SHAPES[si], "size": "large" if big else "small",
             "position": POSITIONS[pi], "upright": up}
        attrs.append({**a, "caption": caption(a, TEMPLATES[ti])})
    return img, attrs


def sample_images(n: int, seed: int = 0, split: str = "train", size: int = 64,
                  lang: str = "en") -> list:
    """`n` shapes-world pictures to show: [(PIL.Image RGB, caption), ...], captions in `lang`."""
    from PIL import Image

    from .captions import describe

    images, attrs = render_batch(n, seed=seed, size=size, split=split)
    captions = [a["caption"] if lang == "en" else describe(a, lang, where=False) for a in attrs]
    return [(Image.fromarray(image), text) for image, text in zip(images, captions)]


def class_prompts(template: str = "a {colour} {shape}",
                  pairs=None) -> tuple[list[str], list[tuple]]:
    """One prompt per colour-shape pair (all pairs by default): (prompts, pairs)."""
    pairs = list(product(COLOURS, SHAPES)) if pairs is None else list(pairs)
    prompts = [caption({"colour": c, "shape": s, "size": "small", "position": "left"}, template)
               for c, s in pairs]
    return prompts, pairs
