"""Text-to-image search with an embedding index (lesson 03).

Search the way real systems do it, small enough to read:
1. embed every image ONCE, in batches (memory stays bounded), and keep the
   L2-normalised embeddings E (N, D) on disk;
2. a query (text, image or embedding) becomes one vector q (D,);
3. the score of image i is the cosine similarity s_i = E_i . q, and the answer is the
   top-k of s. Exact search computes all N scores; faiss does the same (IndexFlatIP)
   or trades a little recall for speed (IVF, HNSW) on millions of images.

    clip = load_clip("tiny-shapes")
    index = ImageIndex.build(clip, "my_folder")       # cached: a rebuild embeds only new files
    index.search("a green triangle", k=5)             # [Hit(rank=1, item=..., score=...), ...]
    index.search(Path("query.jpg"))                    # image -> image ("more like this")
    index.recall_at_k(captions)                        # {1: 0.9, 5: 1.0, 10: 1.0}

The cache of a folder lives in the user's cache folder, never inside the image folder:
`$COURSE_CACHE` if set (older name: `$MULTIMODAL_COURSE_CACHE`), else `$XDG_CACHE_HOME/multimodal-course` (default
`~/.cache/multimodal-course`), in
`image-index/<folder name>-<hash of its path>/<model>-<tag>-<weights fingerprint>.safetensors`,
so each model (and each version of its weights) has its own cache. Inside, each file is
keyed by its path, size and modification time. A cache file you name yourself (`cache=`,
`--cache`) is checked: one made by another model is refused with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import CourseError, UsageError, check_range, show, show_progress, to_json
from .images import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    ImageLoadError,
    list_images,
    open_image,
    to_rgb,
)
from .models import CACHE_ENV, course_cache_dir

if TYPE_CHECKING:
    import torch

    from .models import CLIP

FORMAT_VERSION = 1
EXACT_CHUNK = 65_536  # rows scored at once by exact search: bounds the (Q, chunk) score matrix


class IndexMismatchError(CourseError, RuntimeError):
    """An index (or cache) was made by another model than the one in use."""


class CorruptIndexError(CourseError, ValueError):
    """An index file that cannot be trusted (unreadable, inconsistent, not normalised)."""


@dataclass
class Hit:
    """One search result: `score` is the cosine similarity between query and image."""

    rank: int
    index: int
    item: str
    score: float
    path: Path | None = None
    caption: str | None = None


@dataclass
class Skipped:
    """A file left out of the index, and why (size and mtime let the cache remember it)."""

    item: str
    reason: str
    size: int = -1
    mtime_ns: int = -1


# ------------------------------------------------------------------ search and its measure


def exact_top_k(embeddings, queries, k: int, chunk: int = EXACT_CHUNK):
    """Exact top-k by inner product, scoring `chunk` rows at a time (memory stays bounded).

    embeddings (N, D), queries (Q, D) -> scores (Q, k) descending, ids (Q, k).
    """
    import torch

    best_scores, best_ids = None, None
    for start in range(0, embeddings.shape[0], chunk):
        part = embeddings[start : start + chunk].float()  # (C, D)
        scores = queries @ part.T  # (Q, C)
        top_s, top_i = scores.topk(min(k, scores.shape[1]), dim=1)
        top_i = top_i + start
        if best_scores is not None:  # merge with the best so far
            merged = torch.cat([best_scores, top_s], 1)
            top_s, order = merged.topk(min(k, merged.shape[1]), dim=1)
            top_i = torch.cat([best_ids, top_i], 1).gather(1, order)
        best_scores, best_ids = top_s, top_i
    return best_scores, best_ids


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Fraction of queries with a relevant item in their top k.

    scores (Q, N) similarity; relevant (Q, N) bool. The rank of query q is
    1 + #{items scoring higher than q's best relevant item}; recall@k = mean(rank <= k).
    """
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any(axis=1).all():
        raise ValueError("Every query needs at least one relevant item.")
    best_relevant = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)  # (Q, 1)
    ranks = 1 + (scores > best_relevant).sum(axis=1)  # (Q,)
    return {k: float((ranks <= k).mean()) for k in ks}


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


def _same_model(a: dict, b: dict) -> bool:
    return all(a.get(key) == b.get(key) for key in ("name", "pretrained", "fingerprint"))


def _describe(identity: dict) -> str:
    return f"{identity.get('name')}/{identity.get('pretrained')} (weights {identity.get('fingerprint')})"


def default_cache_path(folder: str | os.PathLike, clip: CLIP) -> Path:
    """Where the index of `folder` made by `clip` is cached (see the module docstring)."""
    root = course_cache_dir()  # $COURSE_CACHE (or the older $MULTIMODAL_COURSE_CACHE)
    folder = Path(folder).resolve()
    slug = _slug(folder.name) or "root"
    tag = _slug(Path(str(clip.pretrained)).name)
    path_hash = hashlib.sha1(str(folder).encode()).hexdigest()[:10]
    name = f"{_slug(clip.name)}-{tag}-{weights_fingerprint(clip)[:8]}.safetensors"
    return Path(root) / "image-index" / f"{slug}-{path_hash}" / name


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._")[:60]


# ------------------------------------------------------------------ loading images in batches


class _FileImages:
    """Dataset of image files -> (i, preprocessed tensor, None, None); a bad file gives
    (i, None, reason, None) instead."""

    def __init__(self, paths: Sequence[Path], preprocess, max_pixels: int | None, draft: int | None):
        self.paths, self.preprocess = list(paths), preprocess
        self.max_pixels, self.draft = max_pixels, draft

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        try:
            image = open_image(self.paths[i], max_pixels=self.max_pixels, draft_size=self.draft)
            return i, self.preprocess(image), None, None
        except ImageLoadError as err:
            return i, None, err.reason, None
        except Exception as err:  # a file may still break the decoder or the transform
            return i, None, f"could not be processed: {type(err).__name__}: {err}", None


class _InMemoryImages:
    """Dataset of in-memory images (PIL, arrays, or (image, caption) pairs / dicts)
    -> (i, preprocessed tensor, None, caption), or (i, None, reason, None)."""

    def __init__(self, items: Sequence, preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        try:
            image, caption = _split_item(self.items[i])
            return i, self.preprocess(to_rgb(image)), None, caption
        except Exception as err:
            return i, None, f"could not be processed: {type(err).__name__}: {err}", None


def _split_item(item) -> tuple[Any, str | None]:
    """A dataset item -> (image, caption or None)."""
    if isinstance(item, dict):
        return item["image"], item.get("caption")
    if isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], str):
        return item[0], item[1]
    return item, None


def _collate(batch):
    """Keep the good images as one (B, 3, H, W) tensor; pass the failures through."""
    import torch

    good = [(i, x, caption) for i, x, _, caption in batch if x is not None]
    failed = [(i, reason) for i, x, reason, _ in batch if x is None]
    pixels = torch.stack([x for _, x, _ in good]) if good else None  # (B, 3, H, W)
    return [i for i, _, _ in good], pixels, failed, [c for _, _, c in good]


def _embed_dataset(clip: CLIP, dataset, batch_size: int, num_workers: int, progress: bool,
                   desc: str):
    """Yield (ids, embeddings (B, D) float32 numpy, failures, captions) batch after batch."""
    import torch
    from tqdm.auto import tqdm

    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=_collate, shuffle=False)
    with tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress) as bar:
        for ids, pixels, failed, captions in loader:
            emb = clip.encode_images(pixels, batch_size=batch_size).numpy() if ids else None
            yield ids, emb, failed, captions
            bar.update(len(ids) + len(failed))


# ------------------------------------------------------------------ the index


@dataclass
class ImageIndex:
    """L2-normalised image embeddings (N, D) and the items (files) they came from.

    items: paths relative to `root` when built from a folder, absolute paths for a file list,
        "#i" for in-memory datasets. `stats` says how the last build went.
    """

    embeddings: Any  # torch.Tensor (N, D), float32 or float16
    items: list[str]
    model: dict
    root: Path | None = None
    captions: list[str] | None = None
    skipped: list[Skipped] = field(default_factory=list)
    files: list[tuple[int, int]] | None = None  # (size, mtime_ns) of each item, for the cache
    clip: Any = field(default=None, repr=False)
    stats: dict = field(default_factory=dict)
    backend: str = "exact"
    _faiss: Any = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.items)

    def __repr__(self) -> str:
        return (f"ImageIndex({len(self)} images, dim {self.dim}, {self.embeddings.dtype}, "
                f"model {_describe(self.model)}, {len(self.skipped)} skipped, backend {self.backend})")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    @property
    def paths(self) -> list[Path | None]:
        if self.files is None:
            return [None] * len(self.items)
        return [(self.root / item) if self.root else Path(item) for item in self.items]

    # ---------------------------------------------------------------- building

    @classmethod
    def build(
        cls,
        clip: CLIP,
        source,
        *,
        batch_size: int = 64,
        cache: str | os.PathLike | None = "auto",
        rebuild: bool = False,
        progress: bool = True,
        num_workers: int = 0,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        float16: bool = False,
        jpeg_draft: bool = True,
    ) -> ImageIndex:
        """Embed `source` in batches of `batch_size` images.

        source: a folder (all images in it, recursively), a list of image files, or a dataset
            (a sequence of PIL images / arrays / (image, caption) pairs / {"image", "caption"}).
        cache: "auto" (see the module docstring), a file path, or None. Files whose path, size
            and modification time match the cache are not embedded again. A cache made by
            another model raises IndexMismatchError (pass rebuild=True to replace it); a
            corrupt cache is rebuilt with a warning.
        Bad files are skipped and listed in `index.skipped` with the reason; they never stop
        the build. If the build is interrupted, what was embedded so far is saved to the cache.
        """
        import torch

        start = time.perf_counter()
        if not isinstance(source, (str, os.PathLike)) and not _is_file_list(source):
            return cls._build_in_memory(clip, source, batch_size, num_workers, progress,
                                        float16, start)
        root, entries, skipped = _scan_files(source)
        cache_path = None
        if cache is not None:
            if cache == "auto":
                if root is None:
                    raise ValueError("cache='auto' needs a folder; pass a cache file path for a "
                                     "list of files, or cache=None.")
                cache_path = default_cache_path(root, clip)
            else:
                cache_path = Path(cache)
        identity = model_identity(clip)
        old = _read_cache(cache_path, identity, rebuild) if cache_path else {}

        # Reuse every row whose file did not change; queue the others.
        dim = next((len(v[0]) for v in old.values() if v[0] is not None), None)
        rows: dict[str, np.ndarray] = {}
        reasons: dict[str, str] = {}
        todo = []
        for item, path, size, mtime in entries:
            hit = old.get(item)
            if hit is not None and hit[1:3] == (size, mtime):
                if hit[0] is not None:
                    rows[item] = hit[0]
                else:
                    reasons[item] = hit[3]
            else:
                todo.append((item, path))
        reused = len(rows)
        embedded = 0
        try:
            dataset = _FileImages([p for _, p in todo], clip.preprocess, max_pixels,
                                  clip.image_size if jpeg_draft else None)
            for ids, emb, failed, _ in _embed_dataset(clip, dataset, batch_size, num_workers,
                                                      progress and bool(todo), "embedding images"):
                for j, i in enumerate(ids):
                    rows[todo[i][0]] = emb[j]
                embedded += len(ids)
                for i, reason in failed:
                    reasons[todo[i][0]] = reason
        finally:  # keep what we have, even when interrupted (Ctrl-C) half way
            stat = {item: (size, mtime) for item, _, size, mtime in entries}
            kept = [item for item, *_ in entries if item in rows]
            dim = dim or (len(next(iter(rows.values()))) if rows else 0)
            emb = np.stack([rows[i] for i in kept]) if kept else np.zeros((0, dim), np.float32)
            # a reason that depends on a setting or a permission (not on the file's bytes) is not
            # remembered with the file's size and mtime: the next build tries the file again
            skipped += [Skipped(item, reasons[item], *(stat[item] if _lasting(reasons[item]) else (-1, -1)))
                        for item, *_ in entries if item in reasons]
            index = cls(
                embeddings=torch.from_numpy(emb.astype(np.float16 if float16 else np.float32)),
                items=kept, model=identity, root=root, skipped=skipped,
                files=[stat[i] for i in kept], clip=clip,
            )
            if cache_path and (todo or set(old) != set(stat) or not cache_path.exists()):
                try:
                    index.save(cache_path, float16=float16)
                except Exception as err:  # read-only, disk full...: the embeddings are still good
                    warnings.warn(f"Could not write the index cache {cache_path} "
                                  f"({type(err).__name__}: {err}); going on with the index in "
                                  "memory, and the next build will embed everything again. Pass "
                                  "another cache file (--cache) or cache=None.", stacklevel=2)
        index.stats = {
            "total": len(entries), "indexed": len(kept), "embedded": embedded, "reused": reused,
            "skipped": len(index.skipped), "removed": len(set(old) - set(stat)),
            "seconds": round(time.perf_counter() - start, 3),
            "cache": str(cache_path) if cache_path else None,
        }
        return index

    @classmethod
    def _build_in_memory(cls, clip, source, batch_size, num_workers, progress, float16, start):
        import torch

        items = list(source) if not hasattr(source, "__getitem__") else source
        parts, ids_all, captions, skipped = [], [], [], []
        for ids, emb, failed, caps in _embed_dataset(
                clip, _InMemoryImages(items, clip.preprocess), batch_size, num_workers, progress,
                "embedding images"):
            if ids:
                parts.append(emb)
                ids_all += ids
                captions += caps
            skipped += [Skipped(f"#{i}", reason) for i, reason in failed]
        emb = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        index = cls(
            embeddings=torch.from_numpy(emb.astype(np.float16 if float16 else np.float32)),
            items=[f"#{i}" for i in ids_all], model=model_identity(clip), skipped=skipped,
            captions=captions if all(c is not None for c in captions) else None, clip=clip,
        )
        index.stats = {"total": len(items), "indexed": len(ids_all), "embedded": len(ids_all),
                       "reused": 0, "skipped": len(skipped), "removed": 0,
                       "seconds": round(time.perf_counter() - start, 3), "cache": None}
        return index

    # ---------------------------------------------------------------- searching

    def use_faiss(self, factory: str = "Flat", nprobe: int = 16,
                  train_size: int | None = None) -> ImageIndex:
        """Search with faiss from now on. "Flat" (IndexFlatIP) is exact: the same hits as
        exact search. "IVF1024,Flat" (k-means into 1024 lists, search the `nprobe` nearest
        lists) or "HNSW32" are approximate and much faster on millions of images.
        train_size: train IVF's k-means on a random sample of this many rows (faster)."""
        try:
            import faiss
        except ImportError:
            raise ImportError("faiss is not installed: pip install faiss-cpu "
                              "(or keep the exact backend: it gives the same results).") from None
        data = np.ascontiguousarray(self.embeddings.float().numpy())  # (N, D) float32
        index = faiss.index_factory(self.dim, factory, faiss.METRIC_INNER_PRODUCT)
        if not index.is_trained:
            sample = data
            if train_size and train_size < len(data):
                rows = np.random.default_rng(0).choice(len(data), train_size, replace=False)
                sample = data[np.sort(rows)]
            index.train(sample)
        index.add(data)
        if hasattr(index, "nprobe"):
            index.nprobe = nprobe
        self._faiss, self.backend = index, f"faiss:{factory}"
        return self

    def use_exact(self) -> ImageIndex:
        self._faiss, self.backend = None, "exact"
        return self

    def search_embeddings(self, queries, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k for each query: scores (Q, k) descending and row ids (Q, k).

        score[q, j] = E[ids[q, j]] . queries[q] (cosine similarity for normalised vectors).
        """
        import torch

        queries = torch.as_tensor(queries, dtype=torch.float32)
        if queries.ndim == 1:
            queries = queries[None]  # (1, D)
        if len(self) == 0:  # nothing indexed (e.g. every file was broken): no hits
            return torch.zeros(len(queries), 0), torch.zeros(len(queries), 0, dtype=torch.long)
        check_range("k", k, 1)
        if queries.shape[1] != self.dim:
            raise ValueError(f"Query has dimension {queries.shape[1]}, the index {self.dim}: "
                             "embed the query with the model that built the index.")
        k = min(k, len(self))
        if self._faiss is not None:
            scores, ids = self._faiss.search(np.ascontiguousarray(queries.numpy()), k)
            return torch.from_numpy(scores), torch.from_numpy(ids).long()
        return exact_top_k(self.embeddings, queries, k)

    def embed_query(self, query) -> torch.Tensor:
        """str -> text embedding; Path / PIL image / array -> image embedding; tensor -> as is."""
        import torch
        from PIL import Image

        if isinstance(query, torch.Tensor):
            return torch.nn.functional.normalize(query.float().reshape(-1, self.dim), dim=-1)
        if isinstance(query, np.ndarray) and query.ndim == 1:
            return self.embed_query(torch.from_numpy(query))
        clip = self._checked_clip()
        if isinstance(query, str):
            if Path(query).suffix.lower() in IMAGE_SUFFIXES and Path(query).is_file():
                warnings.warn(f"{query!r} is searched as TEXT; to search by that image file, pass "
                              f"Path({query!r}).", stacklevel=3)
            return clip.encode_texts([query])
        if isinstance(query, os.PathLike):  # decoded as build() decodes: same file, same vector
            query = open_image(query, draft_size=clip.image_size)
        if isinstance(query, (Image.Image, np.ndarray)):
            return clip.encode_images([to_rgb(query)])
        raise TypeError(f"Cannot search with a {type(query).__name__}: use a text (str), an image "
                        "(PIL image, numpy array or pathlib.Path) or an embedding (tensor).")

    def search(self, query, k: int = 5, exclude: Sequence[int] = ()) -> list[Hit]:
        """The k images closest to `query` (text, image, image file Path, or embedding)."""
        check_range("k", k, 1)
        k_wanted = k
        scores, ids = self.search_embeddings(self.embed_query(query), k + len(exclude))
        hits = []
        for score, i in zip(scores[0].tolist(), ids[0].tolist()):
            if i in exclude or i < 0:
                continue
            hits.append(Hit(len(hits) + 1, i, self.items[i], score, self.paths[i],
                            self.captions[i] if self.captions else None))
        return hits[:k_wanted]

    def more_like(self, i: int, k: int = 5) -> list[Hit]:
        """Image -> image: the k images closest to image i of the index (itself left out)."""
        check_range("i", i, 0, len(self) - 1)
        return self.search(self.embeddings[i].float(), k, exclude=[i])

    def _checked_clip(self) -> CLIP:
        if self.clip is None:
            raise ValueError("This index has no model attached: load it with "
                             "ImageIndex.load(path, clip=load_clip(...)) to search by text or image.")
        return self.clip

    # ---------------------------------------------------------------- evaluating

    def recall_at_k(self, captions: Sequence[str] | None = None,
                    ks: Sequence[int] = (1, 5, 10)) -> dict[int, float]:
        """Text -> image recall@k: each distinct caption is a query; it succeeds at k when one
        of its top-k images has that caption. captions: one per indexed item (default: ours)."""
        captions = list(captions if captions is not None else (self.captions or []))
        if len(captions) != len(self):
            raise ValueError(f"recall_at_k needs one caption per indexed image: got "
                             f"{len(captions)} captions for {len(self)} images.")
        queries = sorted(set(captions))
        text = self._checked_clip().encode_texts(queries)  # (Q, D)
        relevant = np.array(queries)[:, None] == np.array(captions)[None, :]  # (Q, N)
        scores = text @ self.embeddings.float().T  # (Q, N)
        return recall_at_k(scores.numpy(), relevant, ks)

    # ---------------------------------------------------------------- saving

    def _metadata(self) -> str:
        return json.dumps({
            "format": FORMAT_VERSION, "model": self.model,
            "root": str(self.root) if self.root else None, "items": self.items,
            "files": self.files, "captions": self.captions,
            "skipped": [[s.item, s.reason, s.size, s.mtime_ns] for s in self.skipped],
        })

    def save(self, path: str | os.PathLike, float16: bool = False) -> Path:
        """Write to .safetensors or .npz (written to a temporary file, then renamed, so a crash
        never leaves half a file). float16 halves the size; scores change by < 1e-3."""
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        emb = self.embeddings.to(torch.float16 if float16 else torch.float32).contiguous()
        if path.suffix not in (".safetensors", ".npz"):
            raise ValueError(f"Save the index as .safetensors or .npz, not {path.suffix!r}.")
        from .assets import atomic_path

        with atomic_path(path) as tmp:  # removed on every exit path, renamed only on success
            if path.suffix == ".safetensors":
                from safetensors.torch import save_file

                save_file({"embeddings": emb}, str(tmp), metadata={"index": self._metadata()})
            else:
                with open(tmp, "wb") as f:
                    np.savez(f, embeddings=emb.numpy(), index=np.array(self._metadata()))
        return path

    @classmethod
    def load(cls, path: str | os.PathLike, clip: CLIP | None = None) -> ImageIndex:
        """Read an index saved by `save`. With `clip`, check that it made the index
        (IndexMismatchError otherwise). Raises CorruptIndexError if the file cannot be trusted."""
        import torch

        path = Path(path)
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
            index = cls(embeddings=emb, items=list(meta["items"]), model=meta["model"],
                        root=Path(meta["root"]) if meta["root"] else None, captions=meta["captions"],
                        files=[tuple(f) for f in meta["files"]] if meta["files"] is not None else None,
                        skipped=[Skipped(*s) for s in meta["skipped"]])
            _check_consistent(index, meta)
        except FileNotFoundError:
            raise
        except Exception as err:
            raise CorruptIndexError(f"The index file {path} is corrupt or not an index "
                                    f"({type(err).__name__}: {err}). Delete it; it will be "
                                    "rebuilt from the images.") from None
        if clip is not None:
            mine = model_identity(clip)
            if not _same_model(index.model, mine):
                raise IndexMismatchError(
                    f"The index {path} was made by {_describe(index.model)}, but you are using "
                    f"{_describe(mine)}: their embeddings cannot be compared. Rebuild it with this "
                    "model (rebuild=True, or --rebuild on the command line) or load the model "
                    "that made it.")
            index.clip = clip
        return index


def _check_consistent(index: ImageIndex, meta: dict) -> None:
    import torch

    n = len(index.items)
    if meta.get("format") != FORMAT_VERSION:
        raise ValueError(f"format {meta.get('format')} is not {FORMAT_VERSION}")
    if index.embeddings.ndim != 2 or index.embeddings.shape[0] != n:
        raise ValueError(f"{tuple(index.embeddings.shape)} embeddings for {n} items")
    for name in ("files", "captions"):
        if getattr(index, name) is not None and len(getattr(index, name)) != n:
            raise ValueError(f"{len(getattr(index, name))} {name} for {n} items")
    norms = index.embeddings.float().norm(dim=1)
    if n and not (torch.isfinite(norms).all() and (norms - 1).abs().max() < 1e-2):
        raise ValueError("embeddings are not unit vectors")


def _read_cache(path: Path, identity: dict, rebuild: bool) -> dict:
    """{item: (embedding or None, size, mtime_ns, skip reason)} from a valid cache, else {}."""
    if rebuild or not path.exists():
        return {}
    try:
        old = ImageIndex.load(path)
    except CorruptIndexError as err:
        warnings.warn(f"{err} Rebuilding it.", stacklevel=3)
        return {}
    if not _same_model(old.model, identity):
        raise IndexMismatchError(
            f"The cache {path} was made by {_describe(old.model)}, but you are using "
            f"{_describe(identity)}. Replace it (rebuild=True, or --rebuild on the command line) "
            "or choose another cache file.")
    emb = old.embeddings.float().numpy()
    out = {item: (emb[i], *old.files[i], None) for i, item in enumerate(old.items)}
    for s in old.skipped:
        out[s.item] = (None, s.size, s.mtime_ns, s.reason)
    return out


def _lasting(reason: str) -> bool:
    """Whether a skip reason holds until the file changes (so the cache may remember it):
    not a permission problem, not a size or pixel limit (the limit may be raised)."""
    return not any(word in reason.lower() for word in ("permission", "over the limit"))


def _is_file_list(source) -> bool:
    return isinstance(source, (list, tuple)) and all(isinstance(s, (str, os.PathLike)) for s in source)


def _scan_files(source) -> tuple[Path | None, list[tuple[str, Path, int, int]], list[Skipped]]:
    """(root, [(item, path, size, mtime_ns)], skipped) for a folder or a list of files."""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source).resolve()
        if not root.is_dir():
            raise FileNotFoundError(f"{source} is not a folder. Pass the folder holding your images.")
        paths = list_images(root)
    else:
        root, paths = None, [Path(p).resolve() for p in source]
    entries, skipped = [], []
    for path in paths:
        item = path.relative_to(root).as_posix() if root else str(path)
        try:
            st = path.stat()
            entries.append((item, path, st.st_size, st.st_mtime_ns))
        except OSError as err:
            skipped.append(Skipped(item, f"the file cannot be read ({err.strerror})."))
    return root, entries, skipped


# ------------------------------------------------------------------ command line


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="search a folder of images by text or by example image",
        description="Search a folder of images with CLIP. Embeddings are cached (outside the "
                    "folder, in the user cache dir; see --cache), so the next search only embeds "
                    "new or changed images.")
    p.add_argument("query", nargs="*", help="text queries, e.g. \"a green triangle\"")
    p.add_argument("--images", required=True, help="folder of images to search")
    p.add_argument("--like", action="append", default=[], metavar="IMAGE",
                   help="find images that look like this image file (may be repeated)")
    p.add_argument("--top", type=int, default=5, help="how many results per query (default 5)")
    p.add_argument("--model", default="auto", help="open_clip model name or tiny-shapes (default auto)")
    p.add_argument("--pretrained", default="auto", help="open_clip tag or checkpoint file")
    p.add_argument("--device", default="auto", help="cpu, cuda, mps or auto (default: $COURSE_DEVICE, "
                                                    "else the GPU if there is one)")
    p.add_argument("--cache", default="auto", help="index cache file (.safetensors or .npz); "
                   f"default: in ${CACHE_ENV} or ~/.cache/multimodal-course")
    p.add_argument("--no-cache", action="store_true", help="do not read or write a cache")
    p.add_argument("--rebuild", action="store_true", help="embed every image again")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="processes decoding images (default 0)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"skip images larger than this (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--faiss", action="store_true", help="search with faiss (same results)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run_cli, validate=_validate_cli)


def _validate_cli(args) -> None:
    """Before the model loads: the folder and every --like image must exist."""
    if not Path(args.images).is_dir():
        raise UsageError(f"argument --images: {show(args.images)} is not a folder.",
                         "Pass the folder that holds your images.")
    for like in args.like:
        if not Path(like).is_file():
            raise UsageError(f"argument --like: {show(like)} is not a file.", "Pass an image file.")
    if not args.query and not args.like:
        raise UsageError("search needs a text query or --like IMAGE.",
                         'e.g. python -m utils search "a green triangle" --images FOLDER')


def run_cli(args) -> int:
    """`python -m utils search`: errors follow the contract of utils/__main__.py."""
    from .models import load_clip

    clock = [time.perf_counter()]
    clip = load_clip(args.model, args.pretrained, device=args.device, verbose=not args.json)
    clock.append(time.perf_counter())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = ImageIndex.build(clip, args.images, batch_size=args.batch_size,
                                 cache=None if args.no_cache else args.cache, rebuild=args.rebuild,
                                 progress=show_progress(args), num_workers=args.workers,
                                 max_pixels=args.max_pixels)
    notes = list(dict.fromkeys(str(w.message) for w in caught))  # each warning once
    for note in notes:
        print(f"warning: {show(note)}", file=sys.stderr)
    clock.append(time.perf_counter())
    if args.faiss:
        index.use_faiss()
    results = [{"query": q, "hits": _hits_json(index.search(q, args.top))} for q in args.query]
    for like in args.like:
        results.append({"query": {"image": like},
                        "hits": _hits_json(index.search(Path(like), args.top))})
    clock.append(time.perf_counter())
    report = {"model": clip.description, "images": str(Path(args.images).resolve()),
              "index": {**index.stats, "backend": index.backend,
                        "skipped_files": [{"path": s.item, "reason": s.reason} for s in index.skipped]},
              "results": results, "warnings": notes,
              "seconds": {name: round(b - a, 3) for name, a, b in
                          zip(("load_model", "index", "search"), clock, clock[1:])}}
    print(to_json(report, indent=2) if args.json else _format_report(report))
    return 0


def _hits_json(hits: list[Hit]) -> list[dict]:
    return [{"rank": h.rank, "path": h.item, "score": round(h.score, 4)} for h in hits]


def _format_report(report: dict) -> str:
    s = report["index"]
    lines = [f"Model: {report['model']}",
             f"Index of {report['images']}: {s['indexed']} images ({s['embedded']} embedded now, "
             f"{s['reused']} reused from the cache {s['cache']}), {s['skipped']} skipped, "
             f"{s['seconds']} s (model loaded in {report['seconds']['load_model']} s)."]
    for skip in s["skipped_files"]:
        lines.append(f"  skipped {skip['path']}: {skip['reason']}")
    for result in report["results"]:
        query = result["query"]
        lines.append(f"\n{query if isinstance(query, str) else 'like ' + query['image']!s}")
        lines += [f"  {h['rank']:>2}. {h['score']:.3f}  {h['path']}" for h in result["hits"]]
    return "\n".join(lines)


# ------------------------------------------------------------------ showing results


def show_hits(hits: list[Hit], images=None, title: str | None = None, ncols: int = 5,
              size: float = 2.0, fig=None):
    """Draw hits as a grid of images, each captioned with its rank and score.

    images: a sequence indexed by hit.index (PIL images or arrays), or None to open hit.path.
    fig: an existing matplotlib figure to draw into (it is cleared), e.g. for a widget.
    """
    import matplotlib.pyplot as plt

    from .i18n import t

    ncols = max(1, min(ncols, len(hits)))
    nrows = max(1, -(-len(hits) // ncols))
    if fig is None:
        fig = plt.figure(figsize=(size * ncols, size * nrows + (0.4 if title else 0)))
    fig.clear()
    for j, hit in enumerate(hits):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        image = images[hit.index] if images is not None else open_image(hit.path)
        ax.imshow(to_rgb(image))
        ax.set_title(f"#{hit.rank}  {hit.score:.3f}", fontsize=9)
        ax.set_xlabel(Path(hit.item).name if hit.path else (hit.caption or ""), fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    if not hits:
        fig.text(0.5, 0.5, t("no results"), ha="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
