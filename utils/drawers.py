"""Drawers (lesson 04): what turns the optimised parameters into a picture.

- `VQDrawer`: a latent grid z (B, C, h, w), quantised to its nearest codes and decoded by a
  VQ decoder (the tiny VQ of the shapes world, or taming's VQGAN): a strong prior, the
  picture keeps looking like a picture.
- `PixelDrawer`: a coarse grid of coloured cells, optimised directly (pixray's fast_pixel):
  no model, any picture is possible, adversarial ones included.

Both start from noise (`NOISES`, or random codes / colours) or from an init image, and keep
their parameters in range after each step (`clamp_`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from .cutouts import resize

DRAWERS = ("tiny-vq", "pixel", "vqgan")
DEFAULT_SIZE = {"tiny-vq": 64, "pixel": 64, "vqgan": 256}
# Adam learning rates per drawer; a VQ latent moves in units of the codebook's spread.
DEFAULT_LR = {"tiny-vq": 0.15, "pixel": 0.05, "vqgan": 0.1}
# What the picture starts from when there is no init image (pixray's init_noise):
# "colour" / "grey": the latents of a picture of coloured / grey blotches;
# "random": a random code in every cell (VQ) or random colours (pixel), as the VQGAN+CLIP
# notebooks do. For the tiny CLIP, plain and grey pictures already look a little like
# "a green star": coloured noise is the start it finds least like any one prompt.
DEFAULT_INIT = {"tiny-vq": "colour", "pixel": "colour", "vqgan": "random"}
PIXEL_CELL = 4  # the pixel drawer's cells are PIXEL_CELL x PIXEL_CELL pixels


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
    """clamp(x, lo, hi) forward; backward keeps the gradients that bring x back into range."""
    return ClampWithGrad.apply(x, lo, hi)


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


def _bad_init_noise(init_noise: str) -> ValueError:
    return ValueError(f"init_noise must be one of grey, colour, random; not {init_noise!r}.")


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
            raise _bad_init_noise(init_noise)
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
        """Bring z back into the codebook's box."""
        self.z.copy_(torch.maximum(torch.minimum(self.z, self.z_max), self.z_min))


class PixelDrawer(torch.nn.Module):
    """Draws a low-resolution grid of coloured cells, optimised directly (like pixray's fast_pixel)."""

    name = "pixel"

    def __init__(self, batch: int, size: int, generator: torch.Generator,
                 init_image: torch.Tensor | None = None, device: str | torch.device = "cpu",
                 init_noise: str = "grey"):
        super().__init__()
        self.size = size
        cells = size // PIXEL_CELL
        if init_image is not None:
            grid = F.adaptive_avg_pool2d(init_image, cells).repeat(batch, 1, 1, 1)
        elif init_noise in NOISES:
            grid = F.adaptive_avg_pool2d(NOISES[init_noise](batch, size, generator), cells)
        elif init_noise == "random":
            grid = torch.rand(batch, 3, cells, cells, generator=generator)
        else:
            raise _bad_init_noise(init_noise)
        self.cells = torch.nn.Parameter(grid.to(device))  # (B, 3, cells, cells)
        self.latent = self.cells  # what the optimiser changes

    def forward(self) -> torch.Tensor:
        """The current images (B, 3, size, size): each cell a flat square of colour."""
        return F.interpolate(self.cells, size=self.size, mode="nearest")

    @torch.no_grad()
    def clamp_(self) -> None:
        """Keep every colour in [0, 1]."""
        self.cells.clamp_(0, 1)


def as_image_tensor(image, device: str | torch.device = "cpu") -> torch.Tensor:
    """An init image (PIL image, path, or (3, H, W) / (1, 3, H, W) tensor in [0, 1]) -> (1, 3, H, W) float."""
    from torchvision.transforms.functional import to_tensor

    if isinstance(image, (str, Path)):
        from .images import open_image

        image = open_image(image)
    if not isinstance(image, torch.Tensor):
        image = to_tensor(image.convert("RGB"))  # (3, H, W) in [0, 1]
    return (image[None] if image.ndim == 3 else image).float().to(device)


def load_vq(name: str, checkpoint: str | None = None, device: str | torch.device = "cpu", encoder: bool = True):
    """The VQ model drawer `name` decodes with (None for the pixel drawer). encoder False: the
    VQGAN without its encoder (enough to start from random codes, 117 MB less)."""
    if name not in DRAWERS:
        raise ValueError(f"Unknown drawer {name!r}; choose one of {', '.join(DRAWERS)}.")
    if name == "tiny-vq":
        from .tinyvq import load_tiny_vq

        return load_tiny_vq(device=device)
    if name == "vqgan":
        from .vqgan import load_vqgan

        return load_vqgan(checkpoint, device=device, encoder=encoder)
    return None


def needs_encoder(name: str, init_image, init_noise: str | None) -> bool:
    """Whether drawer `name` encodes a picture to start: an init image, or noise made as a picture."""
    return init_image is not None or (init_noise or DEFAULT_INIT.get(name)) in NOISES


def make_drawer(name: str, size: int, batch: int, generator: torch.Generator, device: torch.device,
                init_image: torch.Tensor | None = None, vq=None,
                init_noise: str | None = None) -> tuple[torch.nn.Module, int, list[str]]:
    """Build drawer `name` (a VQ drawer decodes with `vq`); returns (drawer, size drawn, notes).

    Sizes are rounded to what the drawer can make: a multiple of the pixel cell (pixel), of
    the code size (VQ: 8 px for the tiny VQ, 16 px for the VQGAN).
    """
    if name not in DRAWERS:
        raise ValueError(f"Unknown drawer {name!r}; choose one of {', '.join(DRAWERS)}.")
    init_noise = init_noise or DEFAULT_INIT[name]
    step = PIXEL_CELL if name == "pixel" else vq.cfg.downsample
    fixed = max(step, round(size / step) * step)
    notes = []
    if fixed != size:
        why = f"the {step}-pixel cells" if name == "pixel" else f"{step} (one code per {step}x{step} pixels)"
        notes.append(f"size {size} is not a multiple of {why}: using {fixed}.")
    init = resize(init_image, fixed)
    if name == "pixel":
        return PixelDrawer(batch, fixed, generator, init, device, init_noise), fixed, notes
    return VQDrawer(vq, batch, (fixed // step, fixed // step), generator, init, init_noise), fixed, notes
