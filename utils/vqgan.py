"""The VQGAN of "Taming Transformers" (Esser, Rombach, Ommer, CVPR 2021), whose latent grid
lesson 04 optimises: assembled from utils/vqgan_layers.py, its checkpoints read without running
their code (the training losses, keys loss.*, left out) and downloaded with pooch.

    vq = load_vqgan("vqgan_imagenet_f16_16384.ckpt")   # or load_vqgan() after download_vqgan()
    z = vq.encode_z(images)               # (B, 3, H, W) in [0, 1] -> (B, 256, H/16, W/16)
    z_q, codes = vq.quantize(z)           # nearest codebook vectors, straight-through gradient
    images = vq.decode_z(z_q)             # (B, 3, H, W), about [0, 1]
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .errors import CheckpointError, first_line
from .io import sha256_of
from .tinyvq import nearest_codes, quantize
from .vqgan_layers import Decoder, Encoder


@dataclass
class VQGANConfig:
    """Hyper-parameters, named as in taming's model.yaml (`ddconfig`, `n_embed`, `embed_dim`)."""

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


CONFIGS = {"f16_1024": VQGANConfig(n_embed=1024), "f16_16384": VQGANConfig(n_embed=16384)}

# The taming-transformers README's checkpoints. No checksum is published: the first download
# records its sha256 beside the file and later loads check it. A verified value put in
# KNOWN_SHA256 is checked on every download.
CHECKPOINT_URLS = {
    "f16_1024": "https://heibox.uni-heidelberg.de/d/8088892a516d4e3baf92/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
    "f16_16384": "https://heibox.uni-heidelberg.de/d/a7530b09fed84f80a887/files/?p=%2Fckpts%2Flast.ckpt&dl=1",
}
KNOWN_SHA256: dict[str, str | None] = {"f16_1024": None, "f16_16384": None}


def cache_dir() -> Path:
    """Where downloaded checkpoints live: <course cache>/vqgan (utils.models.course_cache_dir)."""
    from .models import course_cache_dir

    return course_cache_dir() / "vqgan"


def checkpoint_path(name: str = "f16_16384") -> Path:
    """The cached checkpoint file of taming's ImageNet VQGAN `name` (it may not exist yet)."""
    if name not in CHECKPOINT_URLS:
        raise ValueError(f"Unknown VQGAN {name!r}; choose one of {', '.join(CHECKPOINT_URLS)}.")
    return cache_dir() / f"vqgan_imagenet_{name}.ckpt"


def download_command(name: str) -> str:
    """The one-line shell command that downloads VQGAN `name`."""
    return f"python -c \"import utils.vqgan as v; v.download_vqgan('{name}')\""


def _recorded_sha256(path: Path) -> str | None:
    """The sha256 recorded beside `path` at download, if any."""
    record = path.with_name(path.name + ".sha256")
    return record.read_text().split()[0] if record.exists() else None


def checkpoint_status(name: str = "f16_16384") -> dict:
    """What `doctor` reports: path, presence, size, sha256, and whether it matches the one
    recorded at download (None when nothing was recorded)."""
    path = checkpoint_path(name)
    status = {"name": name, "path": str(path), "present": path.is_file(), "size_mb": None,
              "sha256": None, "sha256_verified": None, "download": download_command(name)}
    if status["present"]:
        recorded = _recorded_sha256(path)
        status.update(size_mb=round(path.stat().st_size / 1e6, 1), sha256=sha256_of(path))
        status["sha256_verified"] = None if recorded is None else status["sha256"] == recorded
    return status


class VectorQuantizer(nn.Module):
    """The codebook `embedding.weight` (K, C): z (B, C, h, w) -> (z_q with a straight-through
    gradient, codes (B, h, w)), each latent vector replaced by its nearest code."""

    def __init__(self, n_embed: int, embed_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(n_embed, embed_dim)

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize(z, self.embedding.weight)


class VQGAN(nn.Module):
    """Encoder, quantiser and decoder of taming's VQModel, with the interface of TinyVQ.
    encoder False: the decoder alone, all that generating from random codes needs (117 MB less
    for f16)."""

    def __init__(self, cfg: VQGANConfig, encoder: bool = True):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg) if encoder else None
        self.decoder = Decoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1) if encoder else None
        self.quantize = VectorQuantizer(cfg.n_embed, cfg.embed_dim)  # (z_q, codes) = vq.quantize(z)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)

    @property
    def codebook(self) -> torch.Tensor:
        """(K, C)."""
        return self.quantize.embedding.weight

    @property
    def grid(self) -> tuple[int, int]:
        """Codes per side at the training resolution (16x16 for 256 px)."""
        return (self.cfg.resolution // self.cfg.downsample,) * 2

    def encode_z(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> latents before quantisation (B, C, H/f, W/f)."""
        if self.encoder is None:
            raise RuntimeError(
                "This VQGAN was loaded without its encoder: it cannot encode pictures "
                "(init images, noise starts). Load it with load_vqgan(..., encoder=True).")
        return self.quant_conv(self.encoder(images * 2 - 1))

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> codes (B, H/f, W/f) long."""
        return nearest_codes(self.encode_z(images), self.codebook)

    def decode_z(self, z: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) latents -> (B, 3, h*f, w*f), about [0, 1] (not clamped, differentiable)."""
        return (self.decoder(self.post_quant_conv(z)) + 1) / 2

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        """codes (B, h, w) long -> images (B, 3, h*f, w*f) in [0, 1]."""
        return self.decode_z(self.codebook[codes].permute(0, 3, 1, 2)).clamp(0, 1)


# ------------------------------------------------------------------ checkpoints


class _Placeholder:
    """Stands in for a class of a checkpoint's training extras (e.g. a pytorch-lightning
    callback) during `torch.load(weights_only=True)`: it keeps what it is given, runs no code."""

    def __init__(self, *args, **kwargs):
        self.args, self.kwargs = args, kwargs

    def __setstate__(self, state):
        self.state = state


def read_state_dict(path: str | Path, mmap: bool | None = None) -> dict[str, torch.Tensor]:
    """The weights of a checkpoint, read without running its code: .safetensors directly, others
    with torch.load(weights_only=True), the classes of a pytorch-lightning checkpoint's extras
    replaced by inert placeholders. Files in torch's zip format are memory-mapped (a tensor is
    read only when used) unless mmap is False. CheckpointError: unreadable, or no weights."""
    from pickle import UnpicklingError
    from zipfile import BadZipFile, is_zipfile

    from .models import CHECKPOINT_ERRORS

    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    unsafe: list[str] = []  # the names torch refuses to unpickle
    try:  # found without unpickling in the zip format: one torch.load instead of one per name
        mmap = is_zipfile(path) if mmap is None else mmap  # legacy files are read whole
        unsafe = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (*CHECKPOINT_ERRORS, BadZipFile):  # legacy format, or damaged: the loop below finds
        pass  # the names one by one, or says why torch.load cannot read the file
    while True:
        try:
            placeholders = [(type(n.rsplit(".", 1)[-1], (_Placeholder,), {}), n) for n in unsafe]
            with torch.serialization.safe_globals(placeholders):
                obj = torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
            break
        except UnpicklingError as err:  # "... Unsupported global: GLOBAL pkg.mod.Name was not ..."
            message = str(err)
            name = message.split("GLOBAL ", 1)[1].split()[0] if "GLOBAL " in message else None
            if name is None or name in unsafe:
                raise CheckpointError(f"Could not read {path} safely: {first_line(err)}") from err
            unsafe.append(name)
        except (*CHECKPOINT_ERRORS, BadZipFile) as err:  # e.g. cut short: struct.error, KeyError
            raise CheckpointError(
                f"Could not read checkpoint {path}: {type(err).__name__}: {first_line(err)}. The "
                "file may be truncated (an interrupted download): delete it and download it again."
            ) from err
    state = obj.get("state_dict", obj) if isinstance(obj, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        found = type(obj).__name__
        raise CheckpointError(f"{path} holds no state dict of tensors (found {found}).")
    return state


def config_from_state_dict(state: dict[str, torch.Tensor]) -> VQGANConfig:
    """The hyper-parameters read off the weights' shapes (attention levels: resolution 256)."""
    try:
        n_embed, embed_dim = state["quantize.embedding.weight"].shape
        z_channels = state["post_quant_conv.weight"].shape[0]
        ch = state["encoder.conv_in.weight"].shape[0]
    except KeyError as err:
        raise CheckpointError(
            f"This is not a taming VQGAN checkpoint: weight {err} is missing. "
            "Expected keys like encoder.conv_in.weight, quantize.embedding.weight, "
            "decoder.conv_out.weight."
        ) from None
    levels = sorted({int(k.split(".")[2]) for k in state if k.startswith("encoder.down.")})
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block.")}
    widths = [state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in levels]
    attention = [i for i in levels if f"encoder.down.{i}.attn.0.q.weight" in state]
    return VQGANConfig(n_embed=n_embed, embed_dim=embed_dim, z_channels=z_channels, ch=ch,
                       ch_mult=tuple(w // ch for w in widths), num_res_blocks=len(blocks),
                       attn_resolutions=tuple(256 // 2**i for i in attention), resolution=256,
                       in_channels=state["encoder.conv_in.weight"].shape[1],
                       out_ch=state["decoder.conv_out.weight"].shape[0])


def load_vqgan(checkpoint: str | Path | None = None, name: str = "f16_16384",
               device: str | torch.device = "cpu", encoder: bool = True) -> VQGAN:
    """A VQGAN from a taming checkpoint (.ckpt, .pt or .safetensors; None: the file
    `download_vqgan(name)` cached). encoder False: the decoder and codebook only. The weights are
    in memory once: the model is built without weights and takes the memory-mapped tensors."""
    path = Path(checkpoint_path(name) if checkpoint is None else checkpoint).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"VQGAN checkpoint {path} not found: download taming's ImageNet VQGAN ({name}, about "
            f"1 GB) with `{download_command(name)}` (online), or pass the path of a .ckpt you "
            "already have."
        )
    recorded = _recorded_sha256(path)
    if recorded is not None and sha256_of(path) != recorded:
        raise CheckpointError(
            f"{path} no longer matches the sha256 recorded when it was downloaded "
            f"({path}.sha256): the file changed or is corrupt. Delete it and download it again."
        )
    state = read_state_dict(path)
    cfg = config_from_state_dict(state)  # shapes only: nothing is read from a memory-mapped file
    unused = ("loss.",) if encoder else ("loss.", "encoder.", "quant_conv.")
    state = {k: v for k, v in state.items() if not k.startswith(unused)}
    with torch.device("meta"):  # no random weights: the checkpoint's tensors become the parameters
        model = VQGAN(cfg, encoder=encoder)
    missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise CheckpointError(
            f"{path} does not fit the VQGAN architecture: missing {missing[:5]}, "
            f"unexpected {unexpected[:5]}."
        )
    return model.eval().requires_grad_(False).to(device)


def download_vqgan(name: str = "f16_16384", sha256: str | None = None) -> Path:
    """Download taming's ImageNet VQGAN `name` into `cache_dir()` with pooch (about 1 GB): kept
    only when complete and matching the known sha256 (`sha256` or KNOWN_SHA256), if any; the
    sha256 is recorded beside the file for later loads."""
    import pooch

    from .models import network_available

    target = checkpoint_path(name)
    if target.exists():
        return target
    if not network_available("heibox.uni-heidelberg.de"):
        raise ConnectionError(f"Offline: cannot download VQGAN {name}. When online, run "
                              f"`{download_command(name)}`, or copy its last.ckpt to {target}.")
    expected = sha256 or KNOWN_SHA256.get(name)
    print(f"Downloading VQGAN {name} (about 1 GB) into {target} ...", file=sys.stderr)
    try:
        pooch.retrieve(CHECKPOINT_URLS[name], known_hash=expected and f"sha256:{expected}",
                       fname=target.name, path=target.parent, progressbar=True)
    except ValueError as err:  # pooch's hash check: the temporary file is deleted, nothing is kept
        raise CheckpointError(
            f"Downloaded VQGAN {name} does not have the expected sha256 {expected}: the download "
            "is corrupt or the file changed upstream; try again.") from err
    digest = sha256_of(target)
    target.with_name(target.name + ".sha256").write_text(f"{digest}  {target.name}\n")
    if not expected:
        print(f"Downloaded {target} (sha256 {digest}, recorded beside it).", file=sys.stderr)
    return target
