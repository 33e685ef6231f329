"""Drawers (lesson 04): what turns the optimised parameters (`latent`) into a picture.

`VQDrawer`: a latent grid quantised and decoded by a VQ decoder (tiny VQ or taming's VQGAN), a
strong prior: the picture keeps looking like a picture. `PixelDrawer`: a coarse grid of coloured
cells (pixray's fast_pixel), no model: any picture is possible, adversarial ones included.
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
# The start without an init image (pixray's init_noise): "colour" / "grey", the latents of a
# picture of coloured / grey blotches; "random", a random code per cell (VQ) or random colours
# (pixel), as the VQGAN+CLIP notebooks do. The tiny CLIP finds plain and grey pictures a little
# like "a green star": coloured noise is the start it finds least like any one prompt.
DEFAULT_INIT = {"tiny-vq": "colour", "pixel": "colour", "vqgan": "random"}
PIXEL_CELL = 4  # the pixel drawer's cells are PIXEL_CELL x PIXEL_CELL pixels


class ClampWithGrad(torch.autograd.Function):
    """clamp(x, lo, hi) whose gradient still flows where following it brings x back in range
    (a plain clamp has zero gradient outside [lo, hi]: a pixel that overshoots is stuck)."""

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


class Drawer(torch.nn.Module):
    """What both drawers share: the first value of `latent`, from `encode` or `random`."""

    def start(self, batch: int, size: int, generator: torch.Generator,
              init_image: torch.Tensor | None, init_noise: str) -> torch.Tensor:
        """The parameters of the init image (the same for every image), of a size x size picture
        of noise (init_noise "grey" or "colour"), or random ones ("random")."""
        if init_image is not None:
            return self.encode(init_image).repeat(batch, 1, 1, 1)
        if init_noise in NOISES:
            return self.encode(NOISES[init_noise](batch, size, generator))
        if init_noise == "random":
            return self.random(batch, size, generator)
        raise ValueError(f"init_noise must be one of grey, colour, random; not {init_noise!r}.")


class VQDrawer(Drawer):
    """Draws with a VQ decoder (tiny VQ or VQGAN): `latent` is a grid z (B, C, h, w)."""

    def __init__(self, vq, batch: int, size: int, generator: torch.Generator,
                 init_image: torch.Tensor | None = None, init_noise: str = "grey"):
        super().__init__()
        self.vq = vq
        codebook = vq.codebook.detach()  # (K, C)
        # z is kept inside the box spanned by the codebook, channel by channel
        self.register_buffer("z_min", codebook.min(0).values[None, :, None, None])
        self.register_buffer("z_max", codebook.max(0).values[None, :, None, None])
        self.latent = torch.nn.Parameter(self.start(batch, size, generator, init_image, init_noise))

    @torch.no_grad()
    def encode(self, pictures: torch.Tensor) -> torch.Tensor:
        return self.vq.encode_z(pictures.to(self.z_min.device))

    def random(self, batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """A random code in every cell."""
        codebook, side = self.vq.codebook.detach(), size // self.vq.cfg.downsample
        codes = torch.randint(len(codebook), (batch, side, side), generator=generator)
        return codebook[codes.to(codebook.device)].permute(0, 3, 1, 2)  # (B, C, h, w)

    def forward(self) -> torch.Tensor:
        """The current images (B, 3, H, W) in [0, 1]."""
        z_q, _ = self.vq.quantize(self.latent)
        return clamp_with_grad(self.vq.decode_z(z_q))

    @torch.no_grad()
    def clamp_(self) -> None:
        self.latent.clamp_(self.z_min, self.z_max)


class PixelDrawer(Drawer):
    """Draws a coarse grid of coloured cells (B, 3, size/4, size/4), optimised directly."""

    def __init__(self, batch: int, size: int, generator: torch.Generator,
                 init_image: torch.Tensor | None = None, device: str | torch.device = "cpu",
                 init_noise: str = "grey"):
        super().__init__()
        self.size = size
        start = self.start(batch, size, generator, init_image, init_noise)
        self.latent = torch.nn.Parameter(start.to(device))

    def encode(self, pictures: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(pictures, self.size // PIXEL_CELL)

    def random(self, batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """Random colours."""
        return torch.rand(batch, 3, size // PIXEL_CELL, size // PIXEL_CELL, generator=generator)

    def forward(self) -> torch.Tensor:
        """The current images (B, 3, size, size): each cell a flat square of colour."""
        return F.interpolate(self.latent, size=self.size, mode="nearest")

    @torch.no_grad()
    def clamp_(self) -> None:
        self.latent.clamp_(0, 1)


def as_image_tensor(image, device: str | torch.device = "cpu") -> torch.Tensor:
    """An init image (PIL image, path, or (3, H, W) / (1, 3, H, W) tensor in [0, 1]) ->
    (1, 3, H, W) float."""
    from torchvision.transforms.functional import to_tensor

    if isinstance(image, (str, Path)):
        from .images import open_image

        image = open_image(image)
    if not isinstance(image, torch.Tensor):
        image = to_tensor(image.convert("RGB"))  # (3, H, W) in [0, 1]
    return (image[None] if image.ndim == 3 else image).float().to(device)


def load_vq(name: str, checkpoint: str | None = None, device: str | torch.device = "cpu",
            encoder: bool = True):
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
    """Whether drawer `name` encodes a picture to start: an init image, or a noise picture."""
    return init_image is not None or (init_noise or DEFAULT_INIT.get(name)) in NOISES


def make_drawer(name: str, size: int, batch: int, generator: torch.Generator, device: torch.device,
                init_image: torch.Tensor | None = None, vq=None,
                init_noise: str | None = None) -> tuple[torch.nn.Module, int, list[str]]:
    """Drawer `name` (a VQ drawer decodes with `vq`): (drawer, size drawn, notes). The size is
    rounded to a multiple of the pixel cell, or of the code size (8 px tiny VQ, 16 px VQGAN)."""
    if name not in DRAWERS:
        raise ValueError(f"Unknown drawer {name!r}; choose one of {', '.join(DRAWERS)}.")
    init_noise = init_noise or DEFAULT_INIT[name]
    step = PIXEL_CELL if name == "pixel" else vq.cfg.downsample
    fixed = max(step, round(size / step) * step)
    why = (f"the {step}-pixel cells" if name == "pixel"
           else f"{step} (one code per {step}x{step} pixels)")
    notes = [] if fixed == size else [f"size {size} is not a multiple of {why}: using {fixed}."]
    init = resize(init_image, fixed)
    if name == "pixel":
        return PixelDrawer(batch, fixed, generator, init, device, init_noise), fixed, notes
    return VQDrawer(vq, batch, fixed, generator, init, init_noise), fixed, notes
