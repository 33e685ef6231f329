"""Loading CLIP models: pretrained open_clip weights when we have them, the tiny shapes-world CLIP
when we do not; the same `CLIP` object either way (lesson 00, "Two worlds, one API").

    clip = load_clip()                       # "auto": pretrained if cached, else tiny
    clip = load_clip("auto", lang="fr")      # prefers a cached CLIP that reads French
    clip = load_clip("ViT-B-32", "laion2b_s34b_b79k")
    clip = load_clip("tiny-shapes")
    img = clip.encode_images([pil_image])    # (N, D), L2-normalised
    txt = clip.encode_texts(["a red circle"])
    probs = (clip.logit_scale * img @ txt.T).softmax(-1)
"""

from __future__ import annotations

import logging
import os
import pickle
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import assets
from .assets import (  # noqa: F401  (settings live in assets; callers import them here too)
    ASSETS_DIR,
    CACHE_ENV,
    DEVICE_ENV,
    RANDOM_WEIGHTS_ENV,
    course_cache_dir,
    load_safetensors_into,
    pick_device,
    quality_checks_apply,
)
from .captions import LANGUAGES as COURSE_LANGUAGES  # en fr es it pt zh
from .errors import CheckpointError, CourseError, first_line
from .i18n import notice_file, number, t

if TYPE_CHECKING:  # torch and open_clip are imported lazily: failing offline must take < 2 s
    import torch

DEFAULT_MODEL, DEFAULT_PRETRAINED = "ViT-B-32", "laion2b_s34b_b79k"
# Where open_clip downloads the default (a test checks open_clip's table), so `doctor` needs no
# open_clip.
DEFAULT_HF_REPO = "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"
# open_clip's multilingual CLIP (XLM-RoBERTa text tower, LAION-5B captions in 100+ languages).
MULTILINGUAL_MODEL, MULTILINGUAL_PRETRAINED = "xlm-roberta-base-ViT-B-32", "laion5b_s13b_b90k"
MULTILINGUAL_HF_REPO = "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"
MULTILINGUAL_TEXT_REPO = "xlm-roberta-base"
HF_REPOS = {(DEFAULT_MODEL, DEFAULT_PRETRAINED): DEFAULT_HF_REPO,
            (MULTILINGUAL_MODEL, MULTILINGUAL_PRETRAINED): MULTILINGUAL_HF_REPO}
# Download sizes: float32 parameters x 4 bytes (151.3 M for ViT-B-32, 366.1 M for the multilingual
# one; tests recount them from the architectures).
DOWNLOAD_MB = {(DEFAULT_MODEL, DEFAULT_PRETRAINED): 605,
               (MULTILINGUAL_MODEL, MULTILINGUAL_PRETRAINED): 1464}
TINY_NAME = "tiny-shapes"
TINY_CONFIG = ASSETS_DIR / "tiny-shapes.json"
TINY_WEIGHTS = ASSETS_DIR / "tiny-shapes.safetensors"
# The tiny CLIP fine-tuned to also read tiny-VQ pictures: lesson 05's reranker (`train reranker`).
TINY_VQ_NAME = "tiny-shapes-vq"
TINY_VQ_CLIP_WEIGHTS = ASSETS_DIR / "tiny-shapes-vq.safetensors"
CHECKPOINT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
# The languages a CLIP's text tower learned; any other (OpenAI's, most LAION CLIPs): English only.
LANGUAGES = {TINY_NAME: COURSE_LANGUAGES, MULTILINGUAL_MODEL: "100+"}


class PretrainedUnavailable(CourseError, RuntimeError):
    """Pretrained weights are neither cached nor downloadable right now."""


@dataclass
class CLIP:
    """A CLIP-like model with everything needed to use it. `encode_images` / `encode_texts` return
    L2-normalised float32 embeddings on the CPU (no gradients): `a @ b.T` is a cosine similarity."""

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
        """D, read from the model without a forward pass: the columns of `text_projection`
        (D_text, D), else the image tower's `output_dim` (HF text towers)."""
        if (proj := getattr(self.model, "text_projection", None)) is None:
            return int(self.model.visual.output_dim)
        return int(proj.out_features if hasattr(proj, "out_features") else proj.shape[-1])

    def __repr__(self) -> str:
        return f"CLIP({self.description})"

    def _batched(self, encode: Callable, items, batch_size: int, progress: bool,
                 desc: str) -> torch.Tensor:
        """`encode` over batches without gradients. Under 4 GiB (Binder: 2 GB) a big CLIP takes 16
        at a time: 64 through ViT-B-32 lift the peak memory by 170 MB."""
        import torch
        from torch.nn.functional import normalize
        from tqdm.auto import tqdm

        limit = None if self.is_tiny else assets.memory_limit()
        if limit is not None and limit < assets.LOW_MEMORY_BELOW:
            batch_size = min(batch_size, 16)
        self.model.eval()
        out = []
        with torch.no_grad():
            for i in tqdm(range(0, len(items), batch_size), desc=desc, disable=not progress,
                          unit="batch"):
                out.append(normalize(encode(items[i : i + batch_size]).float(), dim=-1).cpu())
        return torch.cat(out)  # (N, D)

    def encode_images(self, images, batch_size: int = 64, progress: bool = False) -> torch.Tensor:
        """Embed images: a list of PIL images, or a preprocessed (N, 3, H, W) tensor."""
        import torch

        from .images import to_rgb  # grayscale, RGBA, 16-bit: converted, not rejected

        images = images[None] if isinstance(images, torch.Tensor) and images.ndim == 3 else images
        if len(images) == 0:
            raise ValueError("encode_images got no images.")

        def encode(chunk):
            if not isinstance(chunk, torch.Tensor):
                chunk = torch.stack([self.preprocess(to_rgb(im)) for im in chunk])  # (B, 3, H, W)
            return self.model.encode_image(chunk.to(self.device))

        return self._batched(encode, images, batch_size, progress, t("embedding images"))

    def encode_texts(self, texts: str | Sequence[str], batch_size: int = 64,
                     progress: bool | None = None) -> torch.Tensor:
        """Embed texts with the model's own tokenizer; returns (N, D), L2-normalised."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        if not texts:
            raise ValueError("encode_texts got no texts.")
        if "texts" in self.extra:  # the text tower was freed: only the texts embedded before
            import torch

            if unknown := [x for x in texts if x not in self.extra["texts"]]:
                raise ValueError(f"{unknown[0]!r} was not embedded before drop_text_tower(): "
                                 "load the CLIP again.")
            return torch.stack([self.extra["texts"][x] for x in texts])
        if progress is None:  # a progress bar for long work (e.g. 1,000 classes x 7 templates)
            progress = len(texts) > 1000 and not self.is_tiny

        def encode(chunk):  # tokens: (B, T)
            return self.model.encode_text(self.tokenizer(chunk).to(self.device))

        return self._batched(encode, texts, batch_size, progress, t("embedding texts"))

    def drop_text_tower(self, keep: Sequence[str]) -> int:
        """Embed `keep`, then free the text tower (ViT-B-32: 63 M parameters, 254 MB) so that
        lesson 04 fits Binder's 2 GB; `encode_texts` still answers `keep`. Returns bytes freed."""
        import ctypes
        import gc

        def size() -> int:
            tensors = [*self.model.parameters(), *self.model.buffers()]
            return sum(t.numel() * t.element_size() for t in tensors)

        self.extra["texts"] = dict(zip(keep, self.encode_texts(list(keep))))
        before = size()
        for name in ("transformer", "token_embedding", "ln_final", "positional_embedding",
                     "text_projection", "attn_mask", "text"):  # `text`: CustomTextCLIP's tower
            if getattr(self.model, name, None) is not None:
                setattr(self.model, name, None)
        gc.collect()
        if sys.platform.startswith("linux") and hasattr(libc := ctypes.CDLL(None), "malloc_trim"):
            libc.malloc_trim(0)  # glibc keeps freed heap pages mapped until asked to return them
        return before - size()


# ---------------------------------------------------------------- pretrained weights and languages
def hf_cache_dir() -> Path:
    """Folder where Hugging Face (and so open_clip) keeps downloaded weights."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def _pretrained_cfg(name: str, tag: str) -> dict:
    import open_clip

    if cfg := open_clip.get_pretrained_cfg(name, tag):
        return cfg
    known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
    raise ValueError(f"open_clip has no pretrained weights {tag!r} for model {name!r}. Known tags "
                     f"for {name}: {known}.")


def _in_hf_cache(repo_id: str, *filenames: str) -> Path | None:
    """The first of `filenames` of `repo_id` that sits in the Hugging Face cache, else None."""
    from huggingface_hub import try_to_load_from_cache

    hits = (try_to_load_from_cache(repo_id, fname) for fname in filenames)
    return next((Path(hit) for hit in hits if isinstance(hit, str) and Path(hit).exists()), None)


def cached_weights(name: str, tag: str) -> Path | None:
    """The local file of open_clip weights `name`/`tag` if already downloaded, else None."""
    if (name, tag) in HF_REPOS:  # the repositories we name are known without importing open_clip
        hub = HF_REPOS[name, tag] + "/"
    elif not (hub := _pretrained_cfg(name, tag).get("hf_hub")):
        return None  # open_clip 3.x has every tag on the hub ("file", "url" tags: not looked up)
    repo_id, filename = os.path.split(hub)  # "org/repo/" or "org/repo/file.bin"
    default = ["open_clip_model.safetensors", "open_clip_pytorch_model.bin"]
    names = [filename] if filename else default
    if filename.endswith(".bin"):
        names.insert(0, filename[: -len(".bin")].replace("pytorch_model", "model") + ".safetensors")
    return _in_hf_cache(repo_id, *names)


def download_size(name: str, tag: str, lang: str | None = None) -> str:
    """'about 605 MB' for the weights we know, else 'size unknown', in `lang` (None: t()'s)."""
    if (name, tag) not in DOWNLOAD_MB:
        return t("size unknown", lang)
    return t("about {mb} MB", lang, mb=number(DOWNLOAD_MB[name, tag], ",d", lang))


def offline_notice(name: str, tag: str) -> str:
    """What load_clip(name, "auto") prints when the weights are not cached; the guide quotes it."""
    return t("{model} is not downloaded yet, so this uses the tiny shapes-world CLIP. "
             "To download it once ({size}), choose MODEL = {choice}.",
             model=f"{name}/{tag}", size=download_size(name, tag), choice=repr(name))


def network_available(host: str = "huggingface.co", port: int = 443, timeout: float = 1.5) -> bool:
    """True if we may download: not offline by setting, and the host answers within `timeout` s."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("", "0", "false", "False"):
        return False
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def multilingual_cached() -> Path | None:
    """The multilingual CLIP's weights if they, its text config and its tokenizer are cached."""
    weights = cached_weights(MULTILINGUAL_MODEL, MULTILINGUAL_PRETRAINED)
    text_files = ("config.json", "tokenizer.json")
    return weights if all(_in_hf_cache(MULTILINGUAL_TEXT_REPO, f) for f in text_files) else None


def clip_languages() -> dict[str, str]:
    """{model: the languages it reads} for each CLIP that loads here without a download (doctor)."""
    found = {TINY_NAME: " ".join(COURSE_LANGUAGES) + " (shapes world)",
             f"{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}": "en",
             f"{MULTILINGUAL_MODEL}/{MULTILINGUAL_PRETRAINED}":
                 "100+ languages, the course's six among them"}
    here = [TINY_WEIGHTS.exists(), cached_weights(DEFAULT_MODEL, DEFAULT_PRETRAINED),
            multilingual_cached()]
    return {model: langs for (model, langs), ok in zip(found.items(), here) if ok}


def language_note(clip: CLIP, lang: str) -> str | None:
    """One line when `clip` does not read `lang`: what to write instead, and which CLIP reads it."""
    langs = LANGUAGES.get(clip.name, ("en",))  # any model not named there reads English only
    if langs == "100+" or lang in langs:
        return None
    size = download_size(MULTILINGUAL_MODEL, MULTILINGUAL_PRETRAINED)
    if multilingual_cached():
        offer = t("load_clip({model}) does, and it is downloaded", model=repr(MULTILINGUAL_MODEL))
    else:
        offer = t("open_clip's {name} does: MODEL = {model} downloads it ({size})",
                  name=MULTILINGUAL_MODEL, model=repr(MULTILINGUAL_MODEL), size=size)
    return t("{name} reads English only: write its labels in English, not {language}; {offer}.",
             name=clip.name, language=repr(lang), offer=offer)


# ---------------------------------------------------------------- loading
# What reading a damaged or mismatched checkpoint raises (truncated, garbage, another model's
# weights; torch's safe unpickler may raise IndexError). Anything else keeps its type and message.
CHECKPOINT_ERRORS = (RuntimeError, ValueError, LookupError, EOFError, OSError, struct.error,
                     pickle.UnpicklingError)


def _create(name: str, checkpoint: Path, device: torch.device, cfg: dict | None = None):
    """Build the open_clip model `name`, then load `checkpoint`. Only reading the checkpoint becomes
    a CheckpointError: building errors (its tokenizer not cached...) keep their meaning."""
    import open_clip

    keys = ("mean", "std", "interpolation", "resize_mode")  # the tag's preprocessing
    kwargs = {f"image_{key}": cfg[key] for key in keys if cfg and cfg.get(key) is not None}
    level = logging.root.level  # open_clip warns "No pretrained weights loaded": they load below
    logging.root.setLevel(logging.ERROR)
    try:  # pretrained_text=False: an HF text tower's own base weights would be overwritten anyway
        model, _, preprocess = open_clip.create_model_and_transforms(name, pretrained_text=False,
                                                                     **kwargs)
    finally:
        logging.root.setLevel(level)
    try:
        if checkpoint.suffix == ".safetensors":
            load_safetensors_into(model, checkpoint)
        else:  # .pt/.bin: open_clip's reader (weights_only=True; unwraps "state_dict", "module.")
            open_clip.load_checkpoint(model, str(checkpoint))
    except CHECKPOINT_ERRORS as err:
        hint = ("This bundled file is damaged: `python -m utils doctor` checks it; reinstall the "
                "course or rebuild it (python -m course_tools train ... --replace-bundled)."
                if checkpoint.resolve().parent == ASSETS_DIR.resolve() else
                "The file may be truncated or corrupt (download or copy it again), or made for "
                "another model.")
        raise CheckpointError(f"Could not load checkpoint {checkpoint} into model {name!r}: "
                              f"{type(err).__name__}: {first_line(err)}.", hint) from err
    return model.to(device).eval(), preprocess, open_clip.get_tokenizer(name)


def load_clip(name: str = "auto", pretrained: str = "auto", device: str | torch.device = "auto",
              verbose: bool = True, lang: str = "en") -> CLIP:
    """Load a CLIP model and everything needed to use it.
    name: an open_clip model ("ViT-B-32": downloaded if not cached, when online), "tiny-shapes"
        (bundled), "tiny-shapes-vq" (fine-tuned on tiny-VQ pictures), or "auto": ViT-B-32 if
        cached, else tiny ("auto" never downloads). pretrained: an open_clip tag, a local file
        (.safetensors, or .pt/.bin read with weights_only=True), or "auto" (the default tag).
        device: "auto" ($COURSE_DEVICE, else cuda, mps or cpu), or one of those. lang: the labels'
        language: with "auto" and not en, a cached multilingual CLIP comes first; else one line
        says what reads it."""
    if (name, pretrained, lang != "en") == ("auto", "auto", True) and multilingual_cached():
        name, pretrained = MULTILINGUAL_MODEL, MULTILINGUAL_PRETRAINED
    clip = _load(name, pretrained, device, verbose)
    if verbose and (note := language_note(clip, lang)):
        print(note, file=notice_file())
    return clip


def _load(name: str, pretrained: str, device: str | torch.device, verbose: bool) -> CLIP:
    """load_clip without the language rule. The device is picked (importing torch) only once
    weights are found: failing offline stays fast."""
    pretrained = str(pretrained or "auto")
    if name in (TINY_NAME, TINY_VQ_NAME) or (name == "auto" and pretrained == TINY_NAME):
        return _load_tiny(pick_device(device), TINY_VQ_NAME if name == TINY_VQ_NAME else TINY_NAME)
    asked_auto = name == "auto" and pretrained == "auto"
    name = DEFAULT_MODEL if name == "auto" else name
    if pretrained != "auto" and (pretrained.endswith(CHECKPOINT_SUFFIXES) or os.sep in pretrained):
        path = Path(pretrained).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"Checkpoint file {path} does not exist.")
        tag, cfg, source = str(path), None, f"with weights from local file {path}"
    else:
        tag = DEFAULT_PRETRAINED if pretrained == "auto" else pretrained
        if pretrained == "auto" and name != DEFAULT_MODEL:
            import open_clip

            if not (tags := open_clip.list_pretrained_tags_by_model(name)):
                raise ValueError(f"open_clip knows no model {name!r}; see open_clip.list_models().")
            tag = tag if tag in tags else tags[0]
        path, size = cached_weights(name, tag), download_size(name, tag, "en")  # errors: English
        if path is None and asked_auto:  # "auto" never downloads (Binder, slow links)
            if verbose:  # notice_file: stderr in a terminal (--json stays clean), stdout in Jupyter
                print(offline_notice(name, tag), file=notice_file())
            return _load_tiny(pick_device(device))
        if path is None and not network_available():
            raise PretrainedUnavailable(
                f"Pretrained weights {name}/{tag} are not in the cache folder {hf_cache_dir()} "
                "and cannot be downloaded now (offline or HF_HUB_OFFLINE=1). "
                f"Connect to the internet and run again to download them ({size}), "
                f"or use the offline tiny model: load_clip({TINY_NAME!r}).")
        if path is None:  # asked for by name: open_clip downloads into the HF cache (progress bar)
            from open_clip.pretrained import download_pretrained

            if verbose:
                print(f"Downloading {name}/{tag} ({size}) into {hf_cache_dir()} ...",
                      file=sys.stderr)
            path = Path(download_pretrained(_pretrained_cfg(name, tag)))
        if name == MULTILINGUAL_MODEL and not multilingual_cached() and not network_available():
            raise PretrainedUnavailable(
                f"{name} also needs {MULTILINGUAL_TEXT_REPO}'s config.json and tokenizer.json in "
                f"{hf_cache_dir()}: connect to the internet once to download them (a few MB).")
        cfg, source = _pretrained_cfg(name, tag), f"pretrained on {tag} (weights: {path})"
    dev = pick_device(device)
    model, preprocess, tokenizer = _create(name, path, dev, cfg)
    return CLIP(model, preprocess, tokenizer, name, tag, f"{name} {source} on {dev}", dev)


def _load_tiny(device: torch.device, name: str = TINY_NAME) -> CLIP:
    """A bundled tiny CLIP: "tiny-shapes", or "tiny-shapes-vq" (same architecture and config)."""
    import open_clip

    if TINY_NAME not in open_clip.list_models():
        if not TINY_CONFIG.exists():
            raise FileNotFoundError(f"The tiny CLIP config {TINY_CONFIG} is missing. Rebuild it: "
                                    "python -m course_tools train clip")
        open_clip.add_model_config(TINY_CONFIG)
    if name == TINY_VQ_NAME:
        weights, rebuild = TINY_VQ_CLIP_WEIGHTS, "python -m course_tools train reranker"
        what = "fine-tuned to read tiny-VQ pictures too (lesson 05's reranker)"
    else:
        weights, rebuild = TINY_WEIGHTS, "python -m course_tools train clip"
        what = "trained on the shapes world"
    if not weights.exists():
        raise FileNotFoundError(f"The tiny CLIP weights {weights} are missing. Rebuild them: "
                                f"{rebuild}")
    model, preprocess, tokenizer = _create(TINY_NAME, weights, device)
    desc = (f"{name}: the tiny CLIP {what}, bundled with the course (weights: {weights.name}) on "
            f"{device}")
    return CLIP(model, preprocess, tokenizer, name, name, desc, device, is_tiny=True)


def available_worlds() -> dict:
    """Which CLIP worlds can load right now, without downloading anything."""
    cached = cached_weights(DEFAULT_MODEL, DEFAULT_PRETRAINED)
    return {"tiny": {"available": TINY_CONFIG.exists() and TINY_WEIGHTS.exists(),
                     "weights": str(TINY_WEIGHTS)},
            "pretrained": {"available": cached is not None,
                           "model": f"{DEFAULT_MODEL}/{DEFAULT_PRETRAINED}",
                           "weights": str(cached) if cached else None,
                           "cache_dir": str(hf_cache_dir())}}
