"""Loading CLIP models: pretrained open_clip weights when we have them, the tiny
shapes-world CLIP when we do not. The same `CLIP` object comes back either way, so
notebook code runs unchanged in both worlds (lesson 00, "Two worlds, one API").

    clip = load_clip()                       # "auto": pretrained if cached, else tiny
    clip = load_clip("ViT-B-32", "laion2b_s34b_b79k")
    clip = load_clip("tiny-shapes")
    img = clip.encode_images([pil_image])    # (N, D), L2-normalised
    txt = clip.encode_texts(["a red circle"])
    probs = (clip.logit_scale * img @ txt.T).softmax(-1)
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .assets import ASSETS_DIR
from .errors import CheckpointError, CourseError
from .i18n import notice_file

if TYPE_CHECKING:  # torch and open_clip are imported lazily: failing offline must take < 2 s
    import torch

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "laion2b_s34b_b79k"
# Where open_clip downloads DEFAULT_MODEL/DEFAULT_PRETRAINED from (a test checks that this
# matches open_clip's own table); lets `doctor` look in the cache without importing open_clip.
DEFAULT_HF_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
TINY_NAME = "tiny-shapes"
TINY_CONFIG = ASSETS_DIR / "tiny-shapes.json"
TINY_WEIGHTS = ASSETS_DIR / "tiny-shapes.safetensors"
# The same tiny CLIP, fine-tuned to also read pictures drawn through the tiny VQ: it reranks
# the mini DALL-E of lesson 05 (`python -m utils train reranker`).
TINY_VQ_NAME = "tiny-shapes-vq"
TINY_VQ_CLIP_WEIGHTS = ASSETS_DIR / "tiny-shapes-vq.safetensors"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


class PretrainedUnavailable(CourseError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable right now."""


@dataclass
class CLIP:
    """A CLIP-like model with everything needed to use it.

    `encode_images` / `encode_texts` batch, run without gradients and return
    L2-normalised float32 embeddings on the CPU, so `a @ b.T` is a cosine similarity.
    """

    model: torch.nn.Module
    preprocess: Callable
    tokenizer: Callable
    name: str
    pretrained: str
    description: str
    device: torch.device
    is_tiny: bool = False
    extra: dict = field(default_factory=dict)

    @property
    def logit_scale(self) -> float:
        """exp(learned log-temperature): the factor applied to cosine similarities."""
        return float(self.model.logit_scale.detach().exp().clamp(max=100))

    @property
    def image_size(self) -> int:
        size = self.model.visual.image_size
        return int(size[0] if isinstance(size, (tuple, list)) else size)

    @property
    def embed_dim(self) -> int:
        return int(self.encode_texts(["x"]).shape[-1])

    def __repr__(self) -> str:
        return f"CLIP({self.description})"

    def encode_images(self, images, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """Embed images: a list of PIL images, or a preprocessed (N, 3, H, W) tensor."""
        import torch
        from tqdm.auto import tqdm

        if isinstance(images, torch.Tensor) and images.ndim == 3:
            images = images[None]
        n = len(images)
        if n == 0:
            raise ValueError("encode_images got no images.")
        self.model.eval()
        out = []
        starts = range(0, n, batch_size)
        for start in tqdm(starts, desc="embedding images", disable=not progress, unit="batch"):
            chunk = images[start : start + batch_size]
            if not isinstance(chunk, torch.Tensor):
                chunk = torch.stack([self.preprocess(_as_rgb(im)) for im in chunk])
            with torch.no_grad():
                feats = self.model.encode_image(chunk.to(self.device))  # (B, D)
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def encode_texts(self, texts: str | Sequence[str], batch_size: int = 64,
                     progress: bool | None = None) -> torch.Tensor:
        """Embed texts with the model's own tokenizer; returns (N, D), L2-normalised.

        batch_size 64 bounds the memory of a big text encoder (tests/test_pretrained_path.py
        measures the peak memory of a ViT-B-32 session).
        """
        import torch

        if isinstance(texts, str):
            texts = [texts]
        texts = list(texts)
        if not texts:
            raise ValueError("encode_texts got no texts.")
        from tqdm.auto import tqdm

        self.model.eval()
        out = []
        if progress is None:  # a progress bar for long work (e.g. 1,000 classes x 7 templates)
            progress = len(texts) > 1000 and not self.is_tiny
        for start in tqdm(range(0, len(texts), batch_size), desc="embedding texts", disable=not progress,
                          unit="batch"):
            tokens = self.tokenizer(texts[start : start + batch_size]).to(self.device)  # (B, T)
            with torch.no_grad():
                feats = self.model.encode_text(tokens)  # (B, D)
            out.append(torch.nn.functional.normalize(feats.float(), dim=-1).cpu())
        return torch.cat(out)

    def similarity(self, images, texts) -> torch.Tensor:
        """Cosine similarity (N_images, N_texts) between images and texts."""
        return self.encode_images(images) @ self.encode_texts(texts).T


def _as_rgb(image):
    if getattr(image, "mode", "RGB") != "RGB":
        from .images import to_rgb

        return to_rgb(image)
    return image


DEVICE_ENV = "COURSE_DEVICE"  # the one device setting: cpu, cuda, mps or auto (the default)
CACHE_ENV = "COURSE_CACHE"  # the one cache setting: VQGAN checkpoints, image-index caches
CACHE_ENV_ALIASES = ("MULTIMODAL_COURSE_CACHE",)  # older name, still read
RANDOM_WEIGHTS_ENV = "COURSE_RANDOM_WEIGHTS"  # set only by the test fixture of real-format random weights


def course_cache_dir() -> Path:
    """The course's cache folder: $COURSE_CACHE, else $XDG_CACHE_HOME/multimodal-course
    (default ~/.cache/multimodal-course). Holds vqgan/ and image-index/."""
    for var in (CACHE_ENV, *CACHE_ENV_ALIASES):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "multimodal-course"


def quality_checks_apply() -> bool:
    """False only under the test fixture of random weights in the real formats
    ($COURSE_RANDOM_WEIGHTS=1): there a pretrained model cannot be accurate, so the
    cells that check accuracy, recall or CLIP score stand aside. Everywhere else, True."""
    return os.environ.get(RANDOM_WEIGHTS_ENV, "0") in ("", "0")


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> $COURSE_DEVICE if set, else cuda if available, else mps, else cpu.

    An explicit device that this machine lacks fails with one line saying what to use.
    """
    import torch

    if device is None or str(device) == "auto":
        device = os.environ.get(DEVICE_ENV) or "auto"
    if str(device) != "auto":
        try:
            chosen = torch.device(device)
        except RuntimeError as err:
            raise ValueError(f"Unknown device {device!r}: use cpu, cuda, mps or auto.") from err
        if chosen.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"Device {device!r} asked for, but this machine has no CUDA GPU: use cpu or auto.")
        if chosen.type == "mps" and not (getattr(torch.backends, "mps", None)
                                         and torch.backends.mps.is_available()):
            raise ValueError(f"Device {device!r} asked for, but MPS (Apple GPU) is not available: use cpu or auto.")
        return chosen
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ---------------------------------------------------------------- pretrained weights


def hf_cache_dir() -> Path:
    """Folder where Hugging Face (and so open_clip) keeps downloaded weights."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _pretrained_cfg(name: str, tag: str) -> dict:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(name, tag)
    if not cfg:
        tags = open_clip.list_pretrained_tags_by_model(name)
        raise ValueError(
            f"open_clip has no pretrained weights {tag!r} for model {name!r}. "
            f"Known tags for {name}: {', '.join(tags) or 'none'}."
        )
    return cfg


def cached_weights(name: str, tag: str) -> Path | None:
    """The local file of open_clip weights `name`/`tag` if already downloaded, else None."""
    from huggingface_hub import try_to_load_from_cache

    if (name, tag) == (DEFAULT_MODEL, DEFAULT_PRETRAINED):
        cfg = {"hf_hub": DEFAULT_HF_REPO + "/"}  # known without importing open_clip
    else:
        cfg = _pretrained_cfg(name, tag)
    if cfg.get("file"):
        return Path(cfg["file"]) if Path(cfg["file"]).exists() else None
    if cfg.get("hf_hub"):
        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" or "org/repo/file.bin"
        names = [filename] if filename else ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
        if filename.endswith(".bin"):
            names.insert(0, filename[: -len(".bin")].replace("pytorch_model", "model") + ".safetensors")
        for fname in names:
            hit = try_to_load_from_cache(repo_id, fname)
            if isinstance(hit, str) and Path(hit).exists():
                return Path(hit)
    if cfg.get("url"):
        path = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if path.exists():
            return path
    return None


# Download sizes of the weights we name: float32 parameters x 4 bytes (151.3 M for ViT-B-32;
# tests/test_models.py recounts them from the open_clip architecture).
DOWNLOAD_MB = {(DEFAULT_MODEL, DEFAULT_PRETRAINED): 605}


def download_size(name: str, tag: str) -> str:
    """'about 605 MB' for the weights we know, else 'size unknown'."""
    mb = DOWNLOAD_MB.get((name, tag))
    return f"about {mb} MB" if mb else "size unknown"


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 1.5) -> bool:
    """True if we may download: not offline by setting, and the host answers within `timeout` s."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _unavailable_message(name: str, tag: str) -> str:
    return (
        f"Pretrained weights {name}/{tag} are not in the cache folder {hf_cache_dir()} "
        "and cannot be downloaded now (offline or HF_HUB_OFFLINE=1). "
        f"Connect to the internet and run again to download them ({download_size(name, tag)}), "
        f"or use the offline tiny model: load_clip({TINY_NAME!r})."
    )


# ---------------------------------------------------------------- loading


def _tiny_model_config_registered() -> None:
    import open_clip

    if TINY_NAME not in open_clip.list_models():
        if not TINY_CONFIG.exists():
            raise FileNotFoundError(
                f"The tiny CLIP config {TINY_CONFIG} is missing. Rebuild it: python -m utils train clip"
            )
        open_clip.add_model_config(TINY_CONFIG)


def _read_safetensors(path: Path):
    """Yield (name, tensor) from a .safetensors file, one tensor at a time, read with plain file
    reads (no memory map, so the file's pages do not stay resident). The format: 8 bytes of
    header length (little-endian), a JSON header {name: {dtype, shape, data_offsets}}, the data."""
    import json
    import struct

    import torch

    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
              "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
              "U8": torch.uint8, "BOOL": torch.bool}
    with open(path, "rb") as f:
        (length,) = struct.unpack("<Q", f.read(8))
        if length > path.stat().st_size - 8:
            raise ValueError(f"{path.name} is not a safetensors file (its header length makes no sense)")
        header = json.loads(f.read(length))
        header.pop("__metadata__", None)
        for name, info in header.items():
            start, end = info["data_offsets"]
            f.seek(8 + length + start)
            data = bytearray(end - start)
            if f.readinto(data) != end - start:
                raise EOFError(f"{path.name} ends inside tensor {name}: the file is truncated")
            tensor = torch.frombuffer(data, dtype=dtypes[info["dtype"]]) if data else torch.empty(0)
            yield name, tensor.reshape(info["shape"])


def _create_from_safetensors(name: str, path: Path, device: torch.device, kwargs: dict):
    """Build `name`, then copy the file's tensors into its parameters one at a time: the weights
    are never in memory twice. For ViT-B-32 this keeps a session's peak memory under the 1.9 GB
    of open_clip's own loading (Binder allows about 2 GB; tests/test_pretrained_path.py measures it)."""
    import open_clip
    import torch

    quiet = logging.getLogger()  # open_clip warns "No pretrained weights loaded": they load below
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        model, _, preprocess = open_clip.create_model_and_transforms(name, device="cpu", **kwargs)
    finally:
        quiet.setLevel(level)
    target = model.state_dict()  # tensors sharing memory with the model's parameters and buffers
    seen = set()
    with torch.no_grad():
        for key, tensor in _read_safetensors(path):
            if key not in target:
                raise KeyError(f"unexpected weight {key!r}")
            if tensor.shape != target[key].shape:
                raise ValueError(f"{key} has shape {tuple(tensor.shape)}, the model wants {tuple(target[key].shape)}")
            target[key].copy_(tensor)
            seen.add(key)
    missing = sorted(set(target) - seen)
    if missing:
        raise KeyError(f"missing weights {missing[:5]}")
    return model.to(device), preprocess


def _create(name: str, checkpoint: Path | None, device: torch.device, cfg: dict | None = None):
    """Build the open_clip model `name` and load `checkpoint` the way open_clip does."""
    import open_clip

    kwargs = {}
    if cfg:
        for ours, theirs in (("image_mean", "mean"), ("image_std", "std"),
                             ("image_interpolation", "interpolation"), ("image_resize_mode", "resize_mode")):
            if cfg.get(theirs) is not None:
                kwargs[ours] = cfg[theirs]
    try:
        if checkpoint is not None and Path(checkpoint).suffix == ".safetensors":
            model, preprocess = _create_from_safetensors(name, Path(checkpoint), device, kwargs)
        else:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=str(checkpoint) if checkpoint else None, device=device, **kwargs
            )
    except (RuntimeError, OSError, ValueError, KeyError, EOFError, Exception) as err:
        if checkpoint is None or isinstance(err, (ImportError, MemoryError)):
            raise
        bundled = Path(checkpoint).resolve().parent == ASSETS_DIR.resolve()
        raise CheckpointError(
            f"Could not load checkpoint {checkpoint} into model {name!r}: {type(err).__name__}: "
            f"{str(err).splitlines()[0][:300] if str(err) else ''}.",
            "This bundled file is damaged: `python -m utils doctor` checks it; reinstall the course "
            "or rebuild it (python -m utils train ... --replace-bundled)." if bundled else
            "The file may be truncated or corrupt (download or copy it again), or made for another model."
        ) from err
    model.eval()
    return model, preprocess, open_clip.get_tokenizer(name)


def load_clip(
    name: str = "auto",
    pretrained: str = "auto",
    device: str | torch.device = "auto",
    verbose: bool = True,
) -> CLIP:
    """Load a CLIP model and everything needed to use it.

    name: an open_clip model name ("ViT-B-32": downloaded if not cached, when online),
        "tiny-shapes" (bundled, offline), "tiny-shapes-vq" (the same, fine-tuned on tiny-VQ
        pictures), or "auto": ViT-B-32 if it is already in the cache, else the tiny model.
        "auto" never downloads anything.
    pretrained: an open_clip tag ("laion2b_s34b_b79k"), a local checkpoint file
        (.safetensors, or .pt/.bin loaded with weights_only=True), or "auto" (the default tag).
    device: "auto" (the default: $COURSE_DEVICE, else cuda, mps or cpu), or one of those.
    """
    if name == TINY_NAME or (name == "auto" and pretrained == TINY_NAME):
        return _load_tiny(pick_device(device))
    if name == TINY_VQ_NAME:
        return _load_tiny(pick_device(device), TINY_VQ_NAME)
    asked_auto = name == "auto" and pretrained in ("auto", None, "")
    if name == "auto":
        name = DEFAULT_MODEL

    if pretrained not in ("auto", None, "") and (
        str(pretrained).endswith(CHECKPOINT_SUFFIXES) or os.sep in str(pretrained)
    ):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint file {path} does not exist.")
        dev = pick_device(device)
        model, preprocess, tokenizer = _create(name, path, dev)
        desc = f"{name} with weights from local file {path} on {dev}"
        return CLIP(model, preprocess, tokenizer, name, str(path), desc, dev)

    tag = pretrained
    if tag in ("auto", None, "") and name == DEFAULT_MODEL:
        tag = DEFAULT_PRETRAINED
    elif tag in ("auto", None, ""):
        import open_clip

        tags = open_clip.list_pretrained_tags_by_model(name)
        if not tags:
            raise ValueError(f"open_clip knows no model {name!r}; see open_clip.list_models().")
        tag = DEFAULT_PRETRAINED if DEFAULT_PRETRAINED in tags else tags[0]
    path = cached_weights(name, tag)
    if path is None:
        if asked_auto:  # "auto" never downloads (Binder, slow links): the student chooses to
            clip = _load_tiny(pick_device(device))
            if verbose:
                print(f"{name}/{tag} is not downloaded yet, so this uses the tiny shapes-world CLIP. "
                      f"To download it once ({download_size(name, tag)}), choose MODEL = {name!r}.",
                      file=notice_file())  # terminal: stderr, so --json stays clean; notebook: stdout
            return clip
        if not network_available():
            raise PretrainedUnavailable(_unavailable_message(name, tag))
        # Online and asked for by name: open_clip downloads into the HF cache (with a progress bar).
        from open_clip.pretrained import download_pretrained

        if verbose:
            print(f"Downloading {name}/{tag} ({download_size(name, tag)}) into {hf_cache_dir()} ...",
                  file=sys.stderr)
        path = Path(download_pretrained(_pretrained_cfg(name, tag)))
    cfg = _pretrained_cfg(name, tag)
    dev = pick_device(device)
    model, preprocess, tokenizer = _create(name, path, dev, cfg)
    desc = f"{name} pretrained on {tag} (weights: {path}) on {dev}"
    return CLIP(model, preprocess, tokenizer, name, tag, desc, dev)


def _load_tiny(device: torch.device, name: str = TINY_NAME) -> CLIP:
    """A bundled tiny CLIP: "tiny-shapes", or "tiny-shapes-vq" (same architecture and config)."""
    _tiny_model_config_registered()
    weights, rebuild, what = TINY_WEIGHTS, "python -m utils train clip", "trained on the shapes world"
    if name == TINY_VQ_NAME:
        weights, rebuild = TINY_VQ_CLIP_WEIGHTS, "python -m utils train reranker"
        what = "fine-tuned to read tiny-VQ pictures too (lesson 05's reranker)"
    if not weights.exists():
        raise FileNotFoundError(f"The tiny CLIP weights {weights} are missing. Rebuild them: {rebuild}")
    model, preprocess, tokenizer = _create(TINY_NAME, weights, device)
    desc = f"{name}: the tiny CLIP {what}, bundled with the course (weights: {weights.name}) on {device}"
    return CLIP(model, preprocess, tokenizer, name, name, desc, device, is_tiny=True)


def available_worlds() -> dict:
    """Which CLIP worlds can load right now, without downloading anything."""
    from huggingface_hub import try_to_load_from_cache

    tiny_ok = TINY_CONFIG.exists() and TINY_WEIGHTS.exists()
    cached = None
    for fname in ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"):
        hit = try_to_load_from_cache(DEFAULT_HF_REPO, fname)
        if isinstance(hit, str) and Path(hit).exists():
            cached = hit
            break
    return {
        "tiny": {"available": tiny_ok, "weights": str(TINY_WEIGHTS)},
        "pretrained": {
            "available": cached is not None,
            "model": f"{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}",
            "weights": str(cached) if cached else None,
            "cache_dir": str(hf_cache_dir()),
        },
    }
