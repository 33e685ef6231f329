"""Text-to-image search (lesson 03): every image is embedded once into a unit row of E (N, D),
cached on disk (utils/index_cache.py); a query q (D,) gets the top-k of E q, exactly or by faiss.

    clip = load_clip("tiny-shapes")
    index = ImageIndex.build(clip, "my_folder")       # cached: a rebuild embeds only new files
    index.search("a green triangle", k=5)             # [Hit(rank=1, item=..., score=...), ...]
    index.search(Path("query.jpg"))                    # image -> image ("more like this")
    index.recall_at_k(captions)                        # {1: 0.9, 5: 1.0, 10: 1.0}
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from . import index_cache
from .errors import check_range
from .images import IMAGE_SUFFIXES, list_images, open_image, to_rgb
from .index_cache import BuildConfig, CorruptIndexError, IndexMismatchError, Skipped  # noqa: F401

if TYPE_CHECKING:
    import torch

    from .models import CLIP

EXACT_CHUNK = 65_536  # rows scored at once by exact search: bounds the (Q, chunk) score matrix


@dataclass
class Hit:
    """One search result: `score` is the cosine similarity between query and image."""
    rank: int
    index: int
    item: str
    score: float
    path: Path | None = None
    caption: str | None = None


def exact_top_k(embeddings, queries, k: int, chunk: int = EXACT_CHUNK):
    """Exact top-k by inner product, `chunk` rows at a time (bounded memory): the top k of each
    chunk, then the top k of those. embeddings (N, D), queries (Q, D) -> scores (Q, k)
    descending, ids (Q, k)."""
    import torch
    if embeddings.shape[0] == 0:  # an empty index: no hits
        return torch.zeros(len(queries), 0), torch.zeros(len(queries), 0, dtype=torch.long)
    scores, ids = [], []
    for start in range(0, embeddings.shape[0], chunk):
        part = queries @ embeddings[start:start + chunk].float().T  # (Q, C)
        top = part.topk(min(k, part.shape[1]), dim=1)
        scores.append(top.values)
        ids.append(top.indices + start)
    best, order = torch.cat(scores, 1).topk(min(k, embeddings.shape[0]), dim=1)
    return best, torch.cat(ids, 1).gather(1, order)


def recall_at_k(scores: np.ndarray, relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)) -> dict:
    """Fraction of queries with a relevant item in their top k: scores (Q, N), relevant (Q, N)
    bool; rank = 1 + #{items scoring above the best relevant one}, recall@k = mean(rank <= k)."""
    scores = np.asarray(scores, dtype=np.float64)
    relevant = np.asarray(relevant, dtype=bool)
    if not relevant.any(axis=1).all():
        raise ValueError("Every query needs at least one relevant item.")
    best_relevant = np.where(relevant, scores, -np.inf).max(axis=1, keepdims=True)  # (Q, 1)
    ranks = 1 + (scores > best_relevant).sum(axis=1)  # (Q,)
    return {k: float((ranks <= k).mean()) for k in ks}


class _InMemoryImages:
    """Dataset of in-memory images (PIL, arrays, or (image, caption) pairs / dicts)
    -> (i, preprocessed tensor, None, caption), or (i, None, reason, None)."""

    def __init__(self, items: Sequence, preprocess):
        self.items, self.preprocess = items, preprocess

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        image, caption = self.items[i], None
        try:
            if isinstance(image, dict):
                image, caption = image["image"], image.get("caption")
            elif isinstance(image, (tuple, list)) and len(image) == 2 and isinstance(image[1], str):
                image, caption = image
            image = to_rgb(image)
        # TypeError / ValueError: not an image; KeyError: a dict without one
        except (TypeError, ValueError, KeyError) as err:
            return i, None, f"could not be processed: {type(err).__name__}: {err}", None
        return i, self.preprocess(image), None, caption


@dataclass
class ImageIndex:
    """L2-normalised image embeddings (N, D) and their items: paths relative to `root` for a
    folder, absolute for a file list, "#i" in memory. `stats` says how the last build went."""
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
                f"model {index_cache.describe_model(self.model)}, {len(self.skipped)} skipped, "
                f"backend {self.backend})")

    @property
    def dim(self) -> int:
        return int(self.embeddings.shape[1])

    def path(self, i: int) -> Path | None:
        """The file of item i (None for an in-memory image): one lookup, whatever N."""
        if self.files is None:
            return None
        return self.root / self.items[i] if self.root else Path(self.items[i])

    @property
    def paths(self) -> list[Path | None]:
        """The file of every item (a list of N: use `path(i)` for one)."""
        return [self.path(i) for i in range(len(self))]

    @classmethod
    def build(cls, clip: CLIP, source, config: BuildConfig | None = None, **options) -> ImageIndex:
        """Embed `source` (a folder, a list of image files, or a sequence of PIL images / arrays /
        (image, caption) / {"image", "caption"}) in batches; `options` are BuildConfig fields.
        Files are cached (utils/index_cache.py); bad ones are listed in `index.skipped`."""
        config = replace(config or BuildConfig(), **options)
        start = time.perf_counter()
        files = isinstance(source, (list, tuple)) and all(
            isinstance(s, (str, os.PathLike)) for s in source)
        if isinstance(source, (str, os.PathLike)) or files:
            root, entries, skipped = _scan_files(source)
            fields, stats = index_cache.build_files(clip, root, entries, skipped, config)
            index = cls(**fields, clip=clip, stats=stats)
        else:
            index = cls._build_in_memory(clip, source, config)
        index.stats["seconds"] = round(time.perf_counter() - start, 3)
        return index

    @classmethod
    def _build_in_memory(cls, clip: CLIP, source, config: BuildConfig) -> ImageIndex:
        import torch
        items = source if hasattr(source, "__getitem__") else list(source)
        dataset = _InMemoryImages(items, clip.preprocess)
        ids, parts, captions, skipped = [], [], [], []
        for batch, emb, failed, caps in index_cache.embed_batches(clip, dataset, config,
                                                                  config.progress):
            ids += batch
            if batch:
                parts.append(emb)
            captions += caps
            skipped += [Skipped(f"#{i}", reason) for i, reason in failed]
        emb = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        stats = {"total": len(items), "indexed": len(ids), "embedded": len(ids), "reused": 0,
                 "skipped": len(skipped), "removed": 0, "cache": None}
        return cls(torch.from_numpy(emb.astype(np.float16 if config.float16 else np.float32)),
                   [f"#{i}" for i in ids], index_cache.model_identity(clip), skipped=skipped,
                   captions=None if None in captions else captions, clip=clip, stats=stats)

    def use_faiss(self, factory: str = "Flat", nprobe: int = 16,
                  train_size: int | None = None) -> ImageIndex:
        """Search with faiss from now on: "Flat" is exact; "IVF1024,Flat" (search the `nprobe`
        nearest of 1024 k-means lists, trained on `train_size` rows) or "HNSW32" approximate."""
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
        """Back to exact search (all N scores, no faiss)."""
        self._faiss, self.backend = None, "exact"
        return self

    def search_embeddings(self, queries, k: int = 5) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-k per query: scores (Q, k) descending, score[q, j] = E[ids[q, j]] . queries[q]."""
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
        if isinstance(query, np.ndarray) and query.ndim == 1:
            query = torch.from_numpy(query)
        if isinstance(query, torch.Tensor):
            return torch.nn.functional.normalize(query.float().reshape(-1, self.dim), dim=-1)
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
        scores, ids = self.search_embeddings(self.embed_query(query), k + len(exclude))
        hits = []
        for score, i in zip(scores[0].tolist(), ids[0].tolist()):
            if i not in exclude and i >= 0:  # faiss pads a short answer with -1
                hits.append(Hit(len(hits) + 1, i, self.items[i], score, self.path(i),
                                self.captions[i] if self.captions else None))
        return hits[:k]

    def more_like(self, i: int, k: int = 5) -> list[Hit]:
        """Image -> image: the k images closest to image i of the index (itself left out)."""
        check_range("i", i, 0, len(self) - 1)
        return self.search(self.embeddings[i].float(), k, exclude=[i])

    def _checked_clip(self) -> CLIP:
        if self.clip is None:
            raise ValueError("This index has no model attached: load it with ImageIndex.load("
                             "path, clip=load_clip(...)) to search by text or image.")
        return self.clip

    def recall_at_k(self, captions: Sequence[str] | None = None, ks: Sequence[int] = (1, 5, 10),
                    queries: Sequence[str] | None = None) -> dict[int, float]:
        """Text -> image recall@k: a query (default: every distinct caption) succeeds when one of
        its top-k images has it as caption (captions: one per item, default ours)."""
        captions = list(captions if captions is not None else (self.captions or []))
        if len(captions) != len(self):
            raise ValueError(f"recall_at_k needs one caption per indexed image: got "
                             f"{len(captions)} captions for {len(self)} images.")
        queries = sorted(set(captions)) if queries is None else list(queries)
        text = self._checked_clip().encode_texts(queries)  # (Q, D)
        relevant = np.array(queries)[:, None] == np.array(captions)[None, :]  # (Q, N)
        scores = text @ self.embeddings.float().T  # (Q, N)
        return recall_at_k(scores.numpy(), relevant, ks)

    def save(self, path: str | os.PathLike, float16: bool = False) -> Path:
        """Write .safetensors or .npz, atomically; float16 halves the size (scores move < 1e-3)."""
        saved = ("embeddings", "items", "skipped", "files", "captions", "model", "root")
        return index_cache.write_index(path, {name: getattr(self, name) for name in saved}, float16)

    @classmethod
    def load(cls, path: str | os.PathLike, clip: CLIP | None = None) -> ImageIndex:
        """Read an index saved by `save` (CorruptIndexError if untrustworthy); with `clip`, check
        that it made the index (IndexMismatchError)."""
        index = cls(**index_cache.read_index(path))
        if clip is not None:
            index_cache.check_same_model(index.model, index_cache.model_identity(clip),
                                         f"The index {path}")
            index.clip = clip
        return index


def _scan_files(source) -> tuple[Path | None, list[tuple[str, Path, int, int]], list[Skipped]]:
    """(root, [(item, path, size, mtime_ns)], skipped) for a folder or a list of files."""
    if isinstance(source, (str, os.PathLike)):
        root = Path(source).resolve()
        if not root.is_dir():
            raise FileNotFoundError(
                f"{source} is not a folder. Pass the folder holding your images.")
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
