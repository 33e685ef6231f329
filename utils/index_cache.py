"""The on-disk cache of an image index (lesson 03): a build reuses the row of every file whose
path, size and mtime did not change, and remembers broken files the same way. Another model's
cache raises IndexMismatchError, a corrupt one is rebuilt, an interrupted build saves its work.
Where: $COURSE_CACHE/image-index/<folder>-<path hash>/<model>-<tag>-<fingerprint>.safetensors
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import CourseError
from .i18n import t
from .images import DEFAULT_MAX_PIXELS, ImageLoadError, open_image
from .models import course_cache_dir

if TYPE_CHECKING:
    from .models import CLIP

FORMAT_VERSION = 1


class IndexMismatchError(CourseError, RuntimeError):
    """An index (or cache) was made by another model than the one in use."""


class CorruptIndexError(CourseError, ValueError):
    """An index file that cannot be trusted (unreadable, inconsistent, not normalised)."""


@dataclass
class Skipped:
    """A file left out of the index, and why (size and mtime let the cache remember it)."""
    item: str
    reason: str
    size: int = -1
    mtime_ns: int = -1


@dataclass
class BuildConfig:
    """How `ImageIndex.build` embeds and caches (every field is also a keyword of build)."""
    batch_size: int = 64
    cache: str | os.PathLike | None = "auto"  # "auto" (module docstring), a file, or None
    rebuild: bool = False  # ignore the cache and embed every file again
    progress: bool = True
    num_workers: int = 0  # DataLoader processes decoding images
    max_pixels: int | None = DEFAULT_MAX_PIXELS  # larger images are skipped
    float16: bool = False  # store the embeddings in half precision
    jpeg_draft: bool = True  # decode big JPEGs at reduced size (much faster)


def weights_fingerprint(clip: CLIP) -> str:
    """A short hash of each tensor's name, shape and up to 4096 evenly spaced values, and of the
    preprocessing's text: it changes when the weights or the preprocessing do."""
    import torch
    if "fingerprint" not in clip.extra:
        digest = hashlib.sha256()
        for name, tensor in sorted(clip.model.state_dict().items()):
            flat = tensor.detach().reshape(-1)
            sample = flat[::max(1, flat.numel() // 4096)][:4096].to("cpu", torch.float32)
            digest.update(f"{name}{tuple(tensor.shape)}".encode() + sample.numpy().tobytes())
        digest.update(re.sub(r" at 0x[0-9a-fA-F]+", "", repr(clip.preprocess)).encode())
        clip.extra["fingerprint"] = digest.hexdigest()[:16]
    return clip.extra["fingerprint"]


def model_identity(clip: CLIP) -> dict:
    """What an index remembers about the model that made it."""
    return {"name": clip.name, "pretrained": str(clip.pretrained),
            "fingerprint": weights_fingerprint(clip)}


def check_same_model(made_by: dict, mine: dict, what: str) -> None:
    """IndexMismatchError unless `what` (an index or cache) was made by the model `mine`."""
    if any(made_by.get(key) != mine.get(key) for key in ("name", "pretrained", "fingerprint")):
        raise IndexMismatchError(
            f"{what} was made by {describe_model(made_by)}, but you are using "
            f"{describe_model(mine)}: their embeddings cannot be compared. Rebuild it with this "
            "model (rebuild=True, or --rebuild on the command line), use another file, or load "
            "the model that made it.")


def describe_model(identity: dict) -> str:
    """"name/tag (weights fingerprint)", for messages."""
    return (f"{identity.get('name')}/{identity.get('pretrained')} "
            f"(weights {identity.get('fingerprint')})")


def default_cache_path(folder: str | os.PathLike, clip: CLIP) -> Path:
    """Where the index of `folder` made by `clip` is cached (see the module docstring)."""
    def slug(text: str) -> str:
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60]

    folder = Path(folder).resolve()
    where = f"{slug(folder.name) or 'root'}-{hashlib.sha1(str(folder).encode()).hexdigest()[:10]}"
    tag = slug(Path(str(clip.pretrained)).name)
    name = f"{slug(clip.name)}-{tag}-{weights_fingerprint(clip)[:8]}.safetensors"
    return Path(course_cache_dir()) / "image-index" / where / name


def write_index(path: str | os.PathLike, fields: dict, float16: bool = False) -> Path:
    """Write an index's fields to .safetensors or .npz, atomically (io.atomic_path)."""
    import torch

    from .io import atomic_path
    path = Path(path)
    if path.suffix not in (".safetensors", ".npz"):
        raise ValueError(f"Save the index as .safetensors or .npz, not {path.suffix!r}.")
    emb = fields["embeddings"].to(torch.float16 if float16 else torch.float32).contiguous()
    meta = json.dumps({
        "format": FORMAT_VERSION, "model": fields["model"],
        "root": str(fields["root"]) if fields["root"] else None, "items": fields["items"],
        "files": fields["files"], "captions": fields["captions"],
        "skipped": [[s.item, s.reason, s.size, s.mtime_ns] for s in fields["skipped"]],
    })
    with atomic_path(path) as tmp:  # removed on every exit path, renamed only on success
        if path.suffix == ".safetensors":
            from safetensors.torch import save_file
            save_file({"embeddings": emb}, str(tmp), metadata={"index": meta})
        else:
            with open(tmp, "wb") as f:  # np.savez(name) would append ".npz" to the name
                np.savez(f, embeddings=emb.numpy(), index=np.array(meta))
    return path


def read_index(path: str | os.PathLike) -> dict:
    """The fields of an index file written by `write_index`, checked (CorruptIndexError): our
    format, one row per item, unit-length rows."""
    import torch
    from safetensors import SafetensorError, safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No index file at {path}.")
    try:
        if path.suffix == ".safetensors":
            with safe_open(str(path), framework="pt") as f:
                meta, emb = json.loads(f.metadata()["index"]), f.get_tensor("embeddings")
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                meta, emb = json.loads(str(data["index"])), torch.from_numpy(data["embeddings"])
        else:
            raise ValueError(f"unknown suffix {path.suffix!r}")
        fields = {"embeddings": emb, "items": list(meta["items"]), "model": meta["model"],
                  "root": Path(meta["root"]) if meta["root"] else None,
                  "captions": meta["captions"],
                  "files": [tuple(f) for f in meta["files"]] if meta["files"] is not None else None,
                  "skipped": [Skipped(*s) for s in meta["skipped"]]}
        n = len(fields["items"])
        if meta.get("format") != FORMAT_VERSION:
            raise ValueError(f"format {meta.get('format')} is not {FORMAT_VERSION}")
        if emb.ndim != 2 or emb.shape[0] != n:
            raise ValueError(f"{tuple(emb.shape)} embeddings for {n} items")
        for name in ("files", "captions"):
            if fields[name] is not None and len(fields[name]) != n:
                raise ValueError(f"{len(fields[name])} {name} for {n} items")
        norms = emb.float().norm(dim=1)
        if n and not (torch.isfinite(norms).all() and (norms - 1).abs().max() < 1e-2):
            raise ValueError("embeddings are not unit vectors")
    # what a damaged or foreign file raises while it is parsed; anything else is a real bug
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            SafetensorError) as err:
        raise CorruptIndexError(f"The index file {path} is corrupt or not an index "
                                f"({type(err).__name__}: {err}). Delete it; it will be "
                                "rebuilt from the images.") from None
    return fields


def read_cache(path: Path, identity: dict, rebuild: bool) -> dict:
    """{item: (embedding or None, size, mtime_ns, skip reason)} from a valid cache, else {}."""
    if rebuild or not path.exists():
        return {}
    try:
        old = read_index(path)
    except CorruptIndexError as err:
        warnings.warn(f"{err} Rebuilding it.", stacklevel=4)
        return {}
    check_same_model(old["model"], identity, f"The cache {path}")
    emb = old["embeddings"].float().numpy()
    out = {item: (emb[i], *old["files"][i], None) for i, item in enumerate(old["items"])}
    return out | {s.item: (None, s.size, s.mtime_ns, s.reason) for s in old["skipped"]}


def lasting(reason: str) -> bool:
    """Whether a skip holds until the file changes (so the cache may remember it): not a
    permission problem, not a size or pixel limit (the limit may be raised)."""
    return not any(word in reason.lower() for word in ("permission", "over the limit"))


class FileImages:
    """Dataset of files -> (i, preprocessed tensor, None, None), or (i, None, reason, None)."""

    def __init__(self, paths: list[Path], preprocess, max_pixels: int | None, draft: int | None):
        self.paths, self.preprocess = list(paths), preprocess
        self.max_pixels, self.draft = max_pixels, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = open_image(self.paths[i], max_pixels=self.max_pixels, draft_size=self.draft)
        except ImageLoadError as err:  # missing, empty, not an image, truncated, too large
            return i, None, err.reason, None
        return i, self.preprocess(image), None, None


def _collate(batch):
    """Keep the good images as one (B, 3, H, W) tensor; pass the failures through."""
    import torch
    good = [(i, x, caption) for i, x, _, caption in batch if x is not None]
    failed = [(i, reason) for i, x, reason, _ in batch if x is None]
    pixels = torch.stack([x for _, x, _ in good]) if good else None  # (B, 3, H, W)
    return [i for i, _, _ in good], pixels, failed, [c for _, _, c in good]


def embed_batches(clip: CLIP, dataset, config: BuildConfig, progress: bool):
    """Yield (ids, embeddings (B, D) float32 numpy, failures, captions) batch after batch, from
    dataset[i] = (i, preprocessed image, None, caption) or (i, None, reason, None)."""
    import torch
    from tqdm.auto import tqdm
    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                                         num_workers=config.num_workers, collate_fn=_collate)
    with tqdm(total=len(dataset), desc=t("embedding images"), unit="img",
              disable=not progress) as bar:
        for ids, pixels, failed, captions in loader:
            emb = clip.encode_images(pixels, batch_size=config.batch_size).numpy() if ids else None
            yield ids, emb, failed, captions
            bar.update(len(ids) + len(failed))


def build_files(clip: CLIP, root: Path | None, entries: list, skipped: list[Skipped],
                config: BuildConfig) -> tuple[dict, dict]:
    """(fields of an ImageIndex, stats) for files [(item, path, size, mtime_ns)] under `root`
    (None for a list of files): reuse the cache, embed the rest, write the cache back."""
    import torch
    from safetensors import SafetensorError  # it reports an I/O error as SafetensorError
    cache_path = None if config.cache is None else Path(config.cache)
    if config.cache == "auto":
        if root is None:
            raise ValueError("cache='auto' needs a folder; pass a cache file path for a "
                             "list of files, or cache=None.")
        cache_path = default_cache_path(root, clip)
    identity = model_identity(clip)
    old = read_cache(cache_path, identity, config.rebuild) if cache_path else {}
    stat = {item: (size, mtime) for item, _, size, mtime in entries}
    rows, reasons, todo = {}, {}, []  # item -> embedding (D,), item -> skip reason, to embed
    for item, path, size, mtime in entries:
        hit = old.get(item)
        if hit is None or hit[1:3] != (size, mtime):  # new or changed: embed it
            todo.append((item, path))
        elif hit[0] is not None:
            rows[item] = hit[0]
        else:
            reasons[item] = hit[3]
    reused = len(rows)
    dataset = FileImages([p for _, p in todo], clip.preprocess, config.max_pixels,
                         clip.image_size if config.jpeg_draft else None)
    try:
        for ids, emb, failed, _ in embed_batches(clip, dataset, config,
                                                 config.progress and bool(todo)):
            rows.update((todo[i][0], emb[j]) for j, i in enumerate(ids))
            reasons.update((todo[i][0], reason) for i, reason in failed)
    finally:  # keep what we have, even when interrupted (Ctrl-C) half way
        kept = [item for item, *_ in entries if item in rows]
        dim = next((len(e) for e, *_ in old.values() if e is not None), 0)
        emb = np.stack([rows[i] for i in kept]) if kept else np.zeros((0, dim), np.float32)
        # a broken file is remembered by size and mtime; a skip that a setting or a permission
        # caused is not (-1, -1): it is tried again next time
        skipped = skipped + [Skipped(i, reasons[i], *(stat[i] if lasting(reasons[i]) else (-1, -1)))
                             for i, *_ in entries if i in reasons]
        emb = emb.astype(np.float16 if config.float16 else np.float32)
        fields = {"embeddings": torch.from_numpy(emb), "items": kept, "skipped": skipped,
                  "files": [stat[i] for i in kept], "captions": None, "model": identity,
                  "root": root}
        if cache_path and (todo or set(old) != set(stat) or not cache_path.exists()):
            try:
                write_index(cache_path, fields, float16=config.float16)
            except (OSError, SafetensorError) as err:  # read-only, disk full: only a warning
                warnings.warn(f"Could not write the index cache {cache_path} "
                              f"({type(err).__name__}: {err}); going on with the index in memory, "
                              "and the next build will embed everything again. Pass another cache "
                              "file (--cache) or cache=None.", stacklevel=3)
    stats = {"total": len(entries), "indexed": len(rows), "embedded": len(rows) - reused,
             "reused": reused, "skipped": len(skipped), "removed": len(set(old) - set(stat))}
    return fields, {**stats, "cache": str(cache_path) if cache_path else None}
