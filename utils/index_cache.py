"""The on-disk cache of an image index (lesson 03): each file is embedded once.

An index of a folder is saved after every build; the next build reuses the row of every
file whose path, size and modification time did not change, and embeds only the others.

- Where: `$COURSE_CACHE` if set (older name: `$MULTIMODAL_COURSE_CACHE`), else
  `$XDG_CACHE_HOME/multimodal-course` (default `~/.cache/multimodal-course`), in
  `image-index/<folder name>-<hash of its path>/<model>-<tag>-<weights fingerprint>.safetensors`:
  never inside the image folder, and one cache per model and version of its weights.
- Which model: the file records the model's name, tag and weights fingerprint. A cache
  made by another model is refused with IndexMismatchError; a corrupt one is rebuilt.
- Broken files are remembered with their size and mtime, so they are not read again; a
  reason that depends on a setting or a permission is not (the next build tries again).
- Resume: when a build is interrupted (Ctrl-C), what was embedded so far is saved.
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


# ------------------------------------------------------------------ model identity


def weights_fingerprint(clip: CLIP) -> str:
    """A short hash of the weights and preprocessing: differs when either changes.

    Hashes each tensor's name, shape and up to 4096 evenly spaced values (exact bytes, so
    the result never depends on thread count), plus the preprocessing pipeline's text.
    """
    import torch

    if "fingerprint" in clip.extra:
        return clip.extra["fingerprint"]
    digest = hashlib.sha256()
    for name, tensor in sorted(clip.model.state_dict().items()):
        flat = tensor.detach().reshape(-1)
        step = max(1, flat.numel() // 4096)
        sample = flat[::step][:4096].to("cpu", torch.float32).numpy()
        digest.update(f"{name}{tuple(tensor.shape)}".encode())
        digest.update(sample.tobytes())
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
    return f"{identity.get('name')}/{identity.get('pretrained')} (weights {identity.get('fingerprint')})"


def default_cache_path(folder: str | os.PathLike, clip: CLIP) -> Path:
    """Where the index of `folder` made by `clip` is cached (see the module docstring)."""
    folder = Path(folder).resolve()
    slug = _slug(folder.name) or "root"
    tag = _slug(Path(str(clip.pretrained)).name)
    path_hash = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    name = f"{_slug(clip.name)}-{tag}-{weights_fingerprint(clip)[:8]}.safetensors"
    return Path(course_cache_dir()) / "image-index" / f"{slug}-{path_hash}" / name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60]


def cache_file(cache, root: Path | None, clip: CLIP) -> Path | None:
    """The cache file a build uses: None, the automatic one of `root`, or the one named."""
    if cache is None:
        return None
    if cache != "auto":
        return Path(cache)
    if root is None:
        raise ValueError("cache='auto' needs a folder; pass a cache file path for a "
                         "list of files, or cache=None.")
    return default_cache_path(root, clip)


# ------------------------------------------------------------------ the file format


def write_index(path: str | os.PathLike, fields: dict, float16: bool = False) -> Path:
    """Write an index's fields to .safetensors or .npz, atomically (a temporary file, then
    renamed: a crash never leaves half a file). float16 halves the size."""
    import torch

    from .io import atomic_path

    path = Path(path)
    if path.suffix not in (".safetensors", ".npz"):
        raise ValueError(f"Save the index as .safetensors or .npz, not {path.suffix!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
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
            with open(tmp, "wb") as f:
                np.savez(f, embeddings=emb.numpy(), index=np.array(meta))
    return path


def read_index(path: str | os.PathLike) -> dict:
    """The fields of an index file written by `write_index`, checked for consistency.

    Raises FileNotFoundError if there is no file, CorruptIndexError if it cannot be trusted."""
    import torch
    from safetensors import SafetensorError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No index file at {path}.")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as f:
                meta = json.loads(f.metadata()["index"])
                emb = f.get_tensor("embeddings")
        elif path.suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["index"]))
                emb = torch.from_numpy(data["embeddings"])
        else:
            raise ValueError(f"unknown suffix {path.suffix!r}")
        fields = {"embeddings": emb, "items": list(meta["items"]), "model": meta["model"],
                  "root": Path(meta["root"]) if meta["root"] else None, "captions": meta["captions"],
                  "files": [tuple(f) for f in meta["files"]] if meta["files"] is not None else None,
                  "skipped": [Skipped(*s) for s in meta["skipped"]]}
        _check_consistent(fields, meta.get("format"))
    # what a damaged or foreign file raises while it is parsed; anything else is a real bug
    except (OSError, ValueError, KeyError, TypeError, EOFError, zipfile.BadZipFile,
            SafetensorError) as err:
        raise CorruptIndexError(f"The index file {path} is corrupt or not an index "
                                f"({type(err).__name__}: {err}). Delete it; it will be "
                                "rebuilt from the images.") from None
    return fields


def _check_consistent(fields: dict, version) -> None:
    """ValueError unless the file has our format, one row per item and unit-length rows."""
    import torch

    emb, n = fields["embeddings"], len(fields["items"])
    if version != FORMAT_VERSION:
        raise ValueError(f"format {version} is not {FORMAT_VERSION}")
    if emb.ndim != 2 or emb.shape[0] != n:
        raise ValueError(f"{tuple(emb.shape)} embeddings for {n} items")
    for name in ("files", "captions"):
        if fields[name] is not None and len(fields[name]) != n:
            raise ValueError(f"{len(fields[name])} {name} for {n} items")
    norms = emb.float().norm(dim=1)
    if n and not (torch.isfinite(norms).all() and (norms - 1).abs().max() < 1e-2):
        raise ValueError("embeddings are not unit vectors")


# ------------------------------------------------------------------ a build that reuses the cache


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
    for s in old["skipped"]:
        out[s.item] = (None, s.size, s.mtime_ns, s.reason)
    return out


def lasting(reason: str) -> bool:
    """Whether a skip reason holds until the file changes (so the cache may remember it):
    not a permission problem, not a size or pixel limit (the limit may be raised)."""
    return not any(word in reason.lower() for word in ("permission", "over the limit"))


class CachedBuild:
    """One build of a list of files: rows reused from the cache, remembered skips, and the
    files still to embed (`todo`). Rows and reasons of the todo files are added as they come.

    entries: [(item, path, size, mtime_ns)] of the files found now; old: `read_cache`'s dict.
    """

    def __init__(self, entries: list[tuple[str, Path, int, int]], old: dict):
        self.entries, self.old = entries, old
        self.stat = {item: (size, mtime) for item, _, size, mtime in entries}
        self.rows: dict[str, np.ndarray] = {}
        self.reasons: dict[str, str] = {}
        self.todo: list[tuple[str, Path]] = []
        for item, path, size, mtime in entries:
            hit = old.get(item)
            if hit is None or hit[1:3] != (size, mtime):  # new or changed: embed it
                self.todo.append((item, path))
            elif hit[0] is not None:
                self.rows[item] = hit[0]
            else:
                self.reasons[item] = hit[3]
        self.reused, self.embedded = len(self.rows), 0

    def add(self, i: int, embedding: np.ndarray) -> None:
        """Todo file i was embedded."""
        self.rows[self.todo[i][0]] = embedding
        self.embedded += 1

    def fail(self, i: int, reason: str) -> None:
        """Todo file i could not be read."""
        self.reasons[self.todo[i][0]] = reason

    def fields(self, skipped: list[Skipped], float16: bool) -> dict:
        """What there is now (all of it, or what came before an interruption), in file order."""
        import torch

        kept = [item for item, *_ in self.entries if item in self.rows]
        dim = next((len(v[0]) for v in self.old.values() if v[0] is not None), None)
        dim = dim or (len(next(iter(self.rows.values()))) if self.rows else 0)
        emb = np.stack([self.rows[i] for i in kept]) if kept else np.zeros((0, dim), np.float32)
        # a reason that depends on a setting or a permission (not on the file's bytes) is not
        # remembered with the file's size and mtime: the next build tries the file again
        skipped = skipped + [
            Skipped(item, self.reasons[item], *(self.stat[item] if lasting(self.reasons[item]) else (-1, -1)))
            for item, *_ in self.entries if item in self.reasons]
        return {"embeddings": torch.from_numpy(emb.astype(np.float16 if float16 else np.float32)),
                "items": kept, "files": [self.stat[i] for i in kept], "skipped": skipped,
                "captions": None}

    def save(self, path: Path, fields: dict, float16: bool) -> None:
        """Write the cache if anything changed; an unwritable cache only costs a warning."""
        if not (self.todo or set(self.old) != set(self.stat) or not path.exists()):
            return
        from safetensors import SafetensorError

        try:
            write_index(path, fields, float16=float16)
        # read-only, disk full...: the embeddings are still good (safetensors reports an I/O
        # error as SafetensorError "Error while serializing: I/O error: ...")
        except (OSError, SafetensorError) as err:
            warnings.warn(f"Could not write the index cache {path} ({type(err).__name__}: {err}); "
                          "going on with the index in memory, and the next build will embed "
                          "everything again. Pass another cache file (--cache) or cache=None.",
                          stacklevel=4)

    def stats(self, skipped: int) -> dict:
        """How the build went: files found, indexed, embedded now, reused, skipped, removed."""
        return {"total": len(self.entries), "indexed": len(self.rows), "embedded": self.embedded,
                "reused": self.reused, "skipped": skipped,
                "removed": len(set(self.old) - set(self.stat))}


# ------------------------------------------------------------------ reading image files


class FileImages:
    """Dataset of image files -> (i, preprocessed tensor, None, None); a file that cannot be
    read gives (i, None, reason, None) instead."""

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
    """Yield (ids, embeddings (B, D) float32 numpy, failures, captions) batch after batch.

    dataset[i] is (i, preprocessed image (3, H, W), None, caption) or (i, None, reason, None)."""
    import torch
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=config.batch_size, shuffle=False,
                                         num_workers=config.num_workers, collate_fn=_collate)
    with tqdm(total=len(dataset), desc="embedding images", unit="img", disable=not progress) as bar:
        for ids, pixels, failed, captions in loader:
            emb = clip.encode_images(pixels, batch_size=config.batch_size).numpy() if ids else None
            yield ids, emb, failed, captions
            bar.update(len(ids) + len(failed))


def build_files(clip: CLIP, root: Path | None, entries: list, skipped: list[Skipped],
                config: BuildConfig) -> tuple[dict, dict]:
    """(fields of an ImageIndex, stats) for files [(item, path, size, mtime_ns)] under `root`
    (None for a list of files): reuse the cache, embed the rest, write the cache back."""
    cache_path = cache_file(config.cache, root, clip)
    identity = model_identity(clip)
    work = CachedBuild(entries, read_cache(cache_path, identity, config.rebuild) if cache_path else {})
    dataset = FileImages([p for _, p in work.todo], clip.preprocess, config.max_pixels,
                         clip.image_size if config.jpeg_draft else None)
    try:
        for ids, emb, failed, _ in embed_batches(clip, dataset, config, config.progress and bool(work.todo)):
            for j, i in enumerate(ids):
                work.add(i, emb[j])
            for i, reason in failed:
                work.fail(i, reason)
    finally:  # keep what we have, even when interrupted (Ctrl-C) half way
        fields = {**work.fields(skipped, config.float16), "model": identity, "root": root}
        if cache_path:
            work.save(cache_path, fields, config.float16)
    return fields, {**work.stats(len(fields["skipped"])), "cache": str(cache_path) if cache_path else None}

