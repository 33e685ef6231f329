"""The VQGAN of "Taming Transformers" (Esser, Rombach, Ommer, CVPR 2021), in our own small modules.

Lesson 04 generates images by optimising the latent grid of this model with CLIP. The
modules below are written from the paper's architecture and use exactly the parameter
names of the taming-transformers code, so its checkpoints load unchanged
(tests/test_vqgan.py proves that our encode, quantise and decode equal taming's on the
same weights).

    vq = load_vqgan("vqgan_imagenet_f16_16384.ckpt")   # or load_vqgan() after download_vqgan()
    z = vq.encode_z(images)               # (B, 3, H, W) in [0, 1] -> (B, 256, H/16, W/16)
    z_q, codes = vq.quantize(z)           # nearest codebook vectors, straight-through gradient
    images = vq.decode_z(z_q)             # (B, 3, H, W), about [0, 1]

Architecture (f16: four halvings, 256 px -> 16x16 codes):
    encoder: conv_in, per level [ResnetBlock x2 (+ attention at 16x16), Downsample],
             mid [ResnetBlock, AttnBlock, ResnetBlock], GroupNorm, swish, conv_out
    quant_conv (1x1) -> VectorQuantizer (K codes of dimension 256) -> post_quant_conv (1x1)
    decoder: the mirror image, with nearest-neighbour Upsample + conv.
The training losses (perceptual + patch GAN) are not needed to generate, so they are left out;
their keys in a checkpoint (loss.*) are ignored.
"""

from __future__ import annotations

import hashlib
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from .errors import CheckpointError
from .tinyvq import nearest_codes, quantize


@dataclass
class VQGANConfig:
    """Hyper-parameters, with the names of taming's model.yaml (`ddconfig` + `n_embed`, `embed_dim`)."""

    n_embed: int = 16384  # codebook size K
    embed_dim: int = 256  # code dimension
    z_channels: int = 256
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_resolutions: tuple[int, ...] = (16,)
    resolution: int = 256  # training resolution: decides at which levels attention sits
    in_channels: int = 3
    out_ch: int = 3

    @property
    def downsample(self) -> int:
        """Pixels per code, per side: 2 ** (number of levels - 1)."""
        return 2 ** (len(self.ch_mult) - 1)


CONFIGS = {
    "f16_1024": VQGANConfig(n_embed=1024),
    "f16_16384": VQGANConfig(n_embed=16384),
}

# Official checkpoints of the taming-transformers README. Their authors publish no checksum:
# the first download records its sha256 beside the file, later loads check against it.
CHECKPOINT_URLS = {
    "f16_1024": "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
    "f16_16384": "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
}
KNOWN_SHA256: dict[str, str | None] = {"f16_1024": None, "f16_16384": None}


def cache_dir() -> Path:
    """Where downloaded VQGAN checkpoints live: <course cache>/vqgan, the course cache being
    $COURSE_CACHE or ~/.cache/multimodal-course (utils.models.course_cache_dir)."""
    from .models import course_cache_dir

    return course_cache_dir() / "vqgan"


def checkpoint_path(name: str = "f16_16384") -> Path:
    """The cached checkpoint file of taming's ImageNet VQGAN `name` (it may not exist yet)."""
    return cache_dir() / f"vqgan_imagenet_{name}.ckpt"


def download_command(name: str) -> str:
    return f"python -c \"import utils.vqgan as v; v.download_vqgan('{name}')\""


def checkpoint_status(name: str = "f16_16384", verify: bool = True) -> dict:
    """What `doctor` reports: the checkpoint's path, whether it exists, its size, and whether its
    sha256 matches the one recorded at download (None when nothing was recorded)."""
    path = checkpoint_path(name)
    status = {"name": name, "path": str(path), "present": path.is_file(), "size_mb": None,
              "sha256": None, "sha256_verified": None, "download": download_command(name)}
    if status["present"]:
        status["size_mb"] = round(path.stat().st_size / 1e6, 1)
        record = path.with_name(path.name + ".sha256")
        if verify:
            status["sha256"] = _sha256(path)
            if record.exists():
                status["sha256_verified"] = status["sha256"] == record.read_text().split()[0]
    return status


# ------------------------------------------------------------------ building blocks


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), the non-linearity used everywhere in the VQGAN."""
    return x * torch.sigmoid(x)


def group_norm(channels: int) -> nn.GroupNorm:
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
    def __init__(self, channels: int):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class Encoder(nn.Module):
    """(B, 3, H, W) in [-1, 1] -> (B, z_channels, H/f, W/f)."""

    def __init__(self, cfg: VQGANConfig):
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

    def __init__(self, cfg: VQGANConfig):
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

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
            if hasattr(level, "upsample"):
                h = level.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class VectorQuantizer(nn.Module):
    """The codebook: `embedding.weight` (K, C); each latent vector becomes its nearest code."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, C, h, w) -> (z_q with a straight-through gradient, codes (B, h, w))."""
        return quantize(z, self.embedding.weight)


class VQGAN(nn.Module):
    """Encoder, quantiser and decoder of taming's VQModel, with the same interface as TinyVQ."""

    def __init__(self, cfg: VQGANConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        # `vq.quantize(z)` -> (z_q, codes), as TinyVQ.quantize; its weight key is taming's
        # quantize.embedding.weight.
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, C)."""
        return self.quantize.embedding.weight

    @property
    def downsample(self) -> int:
        return self.cfg.downsample

    def grid_for(self, size: int) -> tuple[int, int]:
        return size // self.downsample, size // self.downsample

    @property
    def grid(self) -> tuple[int, int]:
        """Codes per side at the training resolution (16x16 for 256 px)."""
        return self.grid_for(self.cfg.resolution)

    def encode_z(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> latents before quantisation (B, C, H/f, W/f)."""
        return self.quant_conv(self.encoder(images * 2 - 1))

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> codes (B, H/f, W/f) long."""
        with torch.no_grad():
            return nearest_codes(self.encode_z(images), self.codebook)

    def decode_z(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, 3, h*f, w*f), about [0, 1] (not clamped, differentiable)."""
        return (self.decoder(self.post_quant_conv(z)) + 1) / 2

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) long -> images (B, 3, h*f, w*f) in [0, 1]."""
        z = self.codebook[codes].permute(0, 3, 1, 2)  # (B, C, h, w)
        return self.decode_z(z).clamp(0, 1)


# ------------------------------------------------------------------ checkpoints


# A VQGAN checkpoint that exists but cannot be read or does not fit the model raises
# utils.errors.CheckpointError (the same class as utils.models.CheckpointError).


class _Placeholder:
    """Stands in for a class of a checkpoint's training extras (e.g. a pytorch-lightning
    callback) during `torch.load(weights_only=True)`: it keeps what it is given, runs no code."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


def _placeholders(names: list[str]) -> list[tuple[type, str]]:
    """One fresh placeholder class per global name, in the form torch's safe_globals takes."""
    return [(type(name.rsplit(".", 1)[-1], (_Placeholder,), {}), name) for name in names]


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint file, read without running any code from it.

    .safetensors files are read directly. .ckpt/.pt/.pth files are read with
    torch.load(weights_only=True); taming's .ckpt files are pytorch-lightning checkpoints
    whose extras (callbacks, hyper-parameters) refer to classes that weights_only refuses:
    those are replaced by inert placeholders, and only the 'state_dict' entry is kept.
    """
    from pickle import UnpicklingError

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    unsafe: list[str] = []
    try:  # names the pickle refers to that torch does not allow, found without unpickling
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except Exception:  # legacy (non-zip) format: the loop below finds them one by one
        pass
    for _ in range(50):
        try:
            with torch.serialization.safe_globals(_placeholders(unsafe)):
                obj = torch.load(str(path), map_location="cpu", weights_only=True)
            break
        except UnpicklingError as err:
            name = _refused_global(str(err))
            if name is None or name in unsafe:
                raise CheckpointError(
                    f"Could not read {path} safely: {str(err).splitlines()[0][:300]}"
                ) from err
            unsafe.append(name)
        except (RuntimeError, EOFError, OSError, ValueError) as err:
            raise CheckpointError(
                f"Could not read checkpoint {path}: {type(err).__name__}: {str(err).splitlines()[0][:300]}. "
                "The file may be truncated (an interrupted download): delete it and download it again."
            ) from err
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} holds no state dict of tensors (found {type(obj).__name__}).")
    return state


def _refused_global(message: str) -> str | None:
    """'... Unsupported global: GLOBAL pkg.mod.Name was not ...' -> 'pkg.mod.Name'."""
    marker = "GLOBAL "
    if marker not in message:
        return None
    return message.split(marker, 1)[1].split()[0]


def config_from_state_dict(state: dict[str, torch.Tensor]) -> VQGANConfig:
    """Read the hyper-parameters off the weights' shapes (attention levels assume resolution 256)."""
    try:
        n_embed, embed_dim = state["quantize.embedding.weight"].shape
        z_channels = state["post_quant_conv.weight"].shape[0]
        ch = state["encoder.conv_in.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(
            f"This is not a taming VQGAN checkpoint: weight {err} is missing. "
            "Expected keys like encoder.conv_in.weight, quantize.embedding.weight, decoder.conv_out.weight."
        ) from None
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    ch_mult = tuple(state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] // ch for i in levels)
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block.")}
    resolution = 256
    attn = tuple(resolution // 2**i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state)
    return VQGANConfig(n_embed=n_embed, embed_dim=embed_dim, z_channels=z_channels, ch=ch,
                       ch_mult=ch_mult, num_res_blocks=len(blocks), attn_resolutions=attn,
                       resolution=resolution, in_channels=state["encoder.conv_in.weight"].shape[1],
                       out_ch=state["decoder.conv_out.weight"].shape[0])


def load_vqgan(checkpoint: str | Path | None = None, name: str = "f16_16384",
               device: str | torch.device = "cpu") -> VQGAN:
    """Build a VQGAN from a taming checkpoint (.ckpt, .pt or .safetensors); training-only weights
    (the discriminator and perceptual loss, keys loss.*) are dropped.

    checkpoint None: the file `download_vqgan(name)` put in the cache.
    """
    if checkpoint is None:
        if name not in CHECKPOINT_URLS:
            raise ValueError(f"Unknown VQGAN {name!r}; choose one of {', '.join(CHECKPOINT_URLS)}.")
        checkpoint = checkpoint_path(name)
    path = Path(checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"VQGAN checkpoint {path} not found: download taming's ImageNet VQGAN ({name}, about 1 GB) "
            f"with `{download_command(name)}` (online), or pass the path of a .ckpt you already have."
        )
    _check_recorded_sha256(path)
    state = {k: v for k, v in read_state_dict(path).items() if not k.startswith("loss.")}
    with torch.device("meta"):  # no random weights: the checkpoint's tensors become the parameters,
        model = VQGAN(config_from_state_dict(state))  # so the weights are in memory once, not twice
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the VQGAN architecture: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model.eval().requires_grad_(False).to(device)


# ------------------------------------------------------------------ download


def _check_recorded_sha256(path: Path) -> None:
    record = path.with_name(path.name + ".sha256")
    if record.exists():
        expected = record.read_text().split()[0]
        if _sha256(path) != expected:
            raise CheckpointError(
                f"{path} no longer matches the sha256 recorded when it was downloaded ({record}): "
                "the file changed or is corrupt. Delete it and download it again."
            )


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download_vqgan(name: str = "f16_16384", sha256: str | None = None) -> Path:
    """Download taming's ImageNet VQGAN `name` into `cache_dir()` (about 1 GB, with a progress bar).

    The file is written under a temporary name and renamed only when complete. Its sha256 is
    checked against `sha256` (or KNOWN_SHA256) when one is known, and recorded beside the file
    so that later loads detect corruption.
    """
    import urllib.request

    from tqdm.auto import tqdm

    from .models import network_available

    if name not in CHECKPOINT_URLS:
        raise ValueError(f"Unknown VQGAN {name!r}; choose one of {', '.join(CHECKPOINT_URLS)}.")
    target = checkpoint_path(name)
    if target.exists():
        return target
    if not network_available("heibox.uni-heidelberg.de"):
        raise ConnectionError(f"Offline: cannot download VQGAN {name}. When online, run "
                              f"`{download_command(name)}`, or copy its last.ckpt to {target}.")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_suffix(".part")
    h = hashlib.sha256()
    print(f"Downloading VQGAN {name} (about 1 GB) into {target} ...", file=sys.stderr)
    with urllib.request.urlopen(CHECKPOINT_URLS[name]) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(total=total, unit="B", unit_scale=True, desc=f"VQGAN {name}") as bar:
            for block in iter(lambda: response.read(1 << 20), b""):
                out.write(block)
                h.update(block)
                bar.update(len(block))
    digest = h.hexdigest()
    expected = sha256 or KNOWN_SHA256.get(name)
    if expected and digest != expected:
        partial.unlink()
        raise CheckpointError(f"Downloaded VQGAN {name} has sha256 {digest}, expected {expected}. "
                              "The download is corrupt or the file changed upstream; try again.")
    partial.rename(target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    if not expected:
        print(f"Downloaded {target} (sha256 {digest}, recorded beside it).", file=sys.stderr)
    return target
