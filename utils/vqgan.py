"""The VQGAN of "Taming Transformers" (Esser, Rombach, Ommer, CVPR 2021), in our own small modules.

Lesson 04 generates images by optimising the latent grid of this model with CLIP. Its layers
(utils/vqgan_layers.py) are written from the paper's architecture and use exactly the parameter
names of the taming-transformers code, so its checkpoints load unchanged (tests/test_vqgan.py
proves that our encode, quantise and decode equal taming's on the same weights). This module
assembles the model, reads taming's checkpoints safely, and downloads them (pooch).

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

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .errors import CheckpointError
from .io import sha256_of
from .tinyvq import nearest_codes, quantize
from .vqgan_layers import Decoder, Encoder


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

# Official checkpoints of the taming-transformers README. Their authors publish no checksum, and
# none was found published elsewhere: the first download prints its sha256 and records it beside
# the file, later loads check against it. Put a verified value here to pin it for every download.
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
    """The one-line shell command that downloads VQGAN `name`."""
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
            status["sha256"] = sha256_of(path)
            if record.exists():
                status["sha256_verified"] = status["sha256"] == record.read_text().split()[0]
    return status


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

    def __init__(self, cfg: VQGANConfig, encoder: bool = True):
        super().__init__()
        self.cfg = cfg
        # encoder False: a decoder-only model (generation from random codes needs no encoder),
        # 29 M parameters (117 MB) lighter for f16.
        self.encoder = Encoder(cfg) if encoder else None
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1) if encoder else None
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
        """Pixels per code, per side (16 for f16)."""
        return self.cfg.downsample

    def grid_for(self, size: int) -> tuple[int, int]:
        """Codes per side of a size x size picture."""
        return size // self.downsample, size // self.downsample

    @property
    def grid(self) -> tuple[int, int]:
        """Codes per side at the training resolution (16x16 for 256 px)."""
        return self.grid_for(self.cfg.resolution)

    def encode_z(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> latents before quantisation (B, C, H/f, W/f)."""
        if self.encoder is None:
            raise RuntimeError("This VQGAN was loaded without its encoder: it cannot encode pictures "
                               "(init images, noise starts). Load it with load_vqgan(..., encoder=True).")
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


def read_state_dict(path: str | Path, mmap: bool | None = None) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint file, read without running any code from it (a file that
    cannot be read, or holds no weights, raises CheckpointError).

    .safetensors files are read directly; .ckpt/.pt/.pth with torch.load(weights_only=True),
    the classes of a pytorch-lightning checkpoint's extras replaced by inert placeholders, and
    only its 'state_dict' kept. Files in torch's zip format are memory-mapped: a tensor is read
    only when used, so training extras and weights left out never occupy memory (mmap False:
    read whole).
    """
    from pickle import UnpicklingError
    from zipfile import is_zipfile

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    mmap = is_zipfile(path) if mmap is None else mmap  # torch's zip format; legacy files are read whole
    unsafe: list[str] = []
    try:  # names the pickle refers to that torch does not allow, found without unpickling
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError, OSError):  # legacy (non-zip) format, or not readable: the
        pass  # loop below finds the names one by one, or says why torch.load cannot read the file
    for _ in range(50):
        try:
            with torch.serialization.safe_globals(_placeholders(unsafe)):
                obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
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
    return message.split("GLOBAL ", 1)[1].split()[0] if "GLOBAL " in message else None


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
               device: str | torch.device = "cpu", encoder: bool = True) -> VQGAN:
    """Build a VQGAN from a taming checkpoint (.ckpt, .pt or .safetensors); training-only weights
    (the discriminator and perceptual loss, keys loss.*) and the optimizer states are dropped.

    checkpoint None: the file `download_vqgan(name)` put in the cache. encoder False: the decoder
    and codebook only, all that generating from random codes needs (`VQGAN.encode_z` then says
    so); 117 MB less for f16. The weights are in memory once: the file is memory-mapped, the model
    is built without weights of its own, and the tensors it uses become its parameters.
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
    state = read_state_dict(path)
    cfg = config_from_state_dict(state)  # shapes only: nothing is read from a memory-mapped file
    unused = ("loss.",) if encoder else ("loss.", "encoder.", "quant_conv.")
    state = {k: v for k, v in state.items() if not k.startswith(unused)}
    with torch.device("meta"):  # no random weights: the checkpoint's tensors become the parameters
        model = VQGAN(cfg, encoder=encoder)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the VQGAN architecture: missing {missing[:5]}, unexpected {unexpected[:5]}."
        )
    return model.eval().requires_grad_(False).to(device)


# ------------------------------------------------------------------ download


def _check_recorded_sha256(path: Path) -> None:
    record = path.with_name(path.name + ".sha256")
    if record.exists() and sha256_of(path) != record.read_text().split()[0]:
        raise CheckpointError(
            f"{path} no longer matches the sha256 recorded when it was downloaded ({record}): "
            "the file changed or is corrupt. Delete it and download it again."
        )


def download_vqgan(name: str = "f16_16384", sha256: str | None = None) -> Path:
    """Download taming's ImageNet VQGAN `name` into `cache_dir()` with pooch (about 1 GB, progress bar).

    pooch writes a temporary file and renames it only when complete and, when a sha256 is known
    (`sha256` or KNOWN_SHA256), only if it matches. The sha256 is recorded beside the file, so
    that later loads detect corruption.
    """
    import pooch

    from .models import network_available

    if name not in CHECKPOINT_URLS:
        raise ValueError(f"Unknown VQGAN {name!r}; choose one of {', '.join(CHECKPOINT_URLS)}.")
    target = checkpoint_path(name)
    if target.exists():
        return target
    if not network_available("heibox.uni-heidelberg.de"):
        raise ConnectionError(f"Offline: cannot download VQGAN {name}. When online, run "
                              f"`{download_command(name)}`, or copy its last.ckpt to {target}.")
    expected = sha256 or KNOWN_SHA256.get(name)
    print(f"Downloading VQGAN {name} (about 1 GB) into {target} ...", file=sys.stderr)
    try:
        pooch.retrieve(CHECKPOINT_URLS[name], known_hash=expected and f"sha256:{expected}", fname=target.name,
                       path=target.parent, progressbar=True)
    except ValueError as err:  # pooch's hash check: the temporary file is deleted, nothing is kept
        raise CheckpointError(f"Downloaded VQGAN {name} does not have the expected sha256 {expected}: "
                              "the download is corrupt or the file changed upstream; try again.") from err
    digest = sha256_of(target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    if not expected:
        print(f"Downloaded {target} (sha256 {digest}, recorded beside it).", file=sys.stderr)
    return target
