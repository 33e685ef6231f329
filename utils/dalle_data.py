"""Lesson 05's data: captions as word tokens, pictures as tiny-VQ codes, from the shapes world.

`WordTokenizer`: one token per word (DALL-E 1 used BPE: real captions are open-ended, ours are
not); the course's labels in other languages are translated, other captions it cannot read are
refused (`readable_caption`). `render_kept` draws the pictures a model learns from and
`vq_codes` turns them into the tiny VQ's codes (lesson 04).
"""

from __future__ import annotations

import functools
import itertools
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from . import captions, data
from .errors import UsageError

PAD, UNK, IMG = "<pad>", "<unk>", "<img>"
SPECIALS = [PAD, UNK, IMG]


class WordTokenizer:
    """Caption -> `length` word ids: [w_1 .. w_k, <pad> .. <pad>, <img>]; <img> predicts the
    first image token, unknown words become <unk>, longer captions are refused (never cut).

    >>> WordTokenizer(["a", "red", "circle"], length=5).encode(["a red circle"]).tolist()
    [[3, 4, 5, 0, 2]]
    """

    def __init__(self, words: Sequence[str], length: int = 8):
        self.vocab = SPECIALS + [w for w in dict.fromkeys(words) if w not in SPECIALS]
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.length = length

    def __len__(self) -> int:
        return len(self.vocab)

    @staticmethod
    def split(caption: str) -> list[str]:
        """Lower-case words in any script: "A red, circle." -> ["a", "red", "circle"]. Nothing is
        dropped unseen ("红色的圆形" is one word), so `check_caption` can refuse it."""
        return re.findall(r"\w+", caption.lower())

    def encode(self, captions: str | Sequence[str]) -> torch.Tensor:
        """(B,) captions -> (B, length) long ids; ValueError for more than `length - 1` words."""
        captions = [captions] if isinstance(captions, str) else captions
        ids = torch.full((len(captions), self.length), self.index[PAD], dtype=torch.long)
        ids[:, -1], unk = self.index[IMG], self.index[UNK]
        for row, caption in enumerate(captions):
            words = self.split(caption)
            if len(words) > self.length - 1:
                raise ValueError(f"the caption {caption!r} has {len(words)} words, more than the "
                                 f"{self.length - 1} of the context: shorten it")
            ids[row, :len(words)] = torch.tensor([self.index.get(w, unk) for w in words])
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """(B, length) ids -> captions (special tokens dropped)."""
        return [" ".join(self.vocab[i] for i in row.tolist() if self.vocab[i] not in SPECIALS)
                for row in ids]

    def unknown_words(self, caption: str) -> list[str]:
        """The words of `caption` the model has never seen (they would become <unk>)."""
        return [w for w in self.split(caption) if w not in self.index]


def _phrase_key(text: str) -> str:
    """A caption as the phrasebook looks it up: its words, one space apart."""
    return " ".join(WordTokenizer.split(text))


@functools.lru_cache(maxsize=1)
def _phrasebook() -> dict[str, tuple[str, str]]:
    """Every label and description `utils.captions` writes in fr es it pt zh ("un cercle rouge",
    "红色的圆形") -> (the English caption, language)."""
    key = _phrase_key
    book, short, full = {}, "a {size} {colour} {shape}", "a {size} {colour} {shape} {where}"
    for lang, colour, shape in itertools.product(captions.LANGUAGES[1:], data.COLOURS, data.SHAPES):
        book[key(captions.label(colour, shape, lang))] = (pair_caption(colour, shape), lang)
        for size in data.SIZES:
            attrs = {"colour": colour, "shape": shape, "size": size, "position": "left"}
            sized = captions.describe(attrs, lang, where=False)
            book[key(sized)] = (data.caption(attrs, short), lang)
            for position in data.POSITIONS:
                attrs = {**attrs, "position": position}
                book[key(captions.describe(attrs, lang))] = (data.caption(attrs, full), lang)
    return book


def translate_caption(caption: str) -> tuple[str, str] | None:
    """(English caption, language) when `caption` is one of the course's labels or descriptions
    in another language, word for word as `utils.captions` writes them; else None.

    >>> translate_caption("un cercle rouge")
    ('a red circle', 'fr')
    """
    return _phrasebook().get(_phrase_key(caption))


def check_caption(caption: str, tokenizer: WordTokenizer,
                  reader: str = "the mini DALL-E") -> list[str]:
    """Refuse (`UsageError`, one line) what `reader` cannot read: a caption longer than its
    context, no word, another language (an unknown word outside a-z, or more unknown words than
    known ones). Returns the unknown English words ("small"), which are read as <unk>."""
    words, known = tokenizer.split(caption), " ".join(tokenizer.vocab[len(SPECIALS):])
    if caption.strip() and not words:
        raise UsageError(f"{reader} found no word in the caption {caption!r}.",
                         'Write one, e.g. "a red circle".')
    if len(words) > tokenizer.length - 1:
        raise UsageError(f"the caption has {len(words)} words; {reader} reads at most "
                         f"{tokenizer.length - 1} (its context) and will not cut it.",
                         'Shorten it, e.g. "a red circle on the left".')
    unknown = tokenizer.unknown_words(caption)
    foreign = [w for w in unknown if not re.fullmatch(r"[a-z0-9]+", w)]  # other scripts, accents
    if foreign or len(unknown) > len(words) - len(unknown):
        others = ", ".join(lang for lang in captions.LANGUAGES if lang != "en")
        raise UsageError(f"{reader} reads English captions only, and in {others} only the course's "
                         f"labels as written (\"un cercle rouge\", \"红色的圆形\"): it does not know "
                         f"{' '.join(unknown)!r}.",
                         f"Write the caption in English with its words: {known}.")
    return unknown


def readable_caption(caption: str, tokenizer: WordTokenizer,
                     reader: str = "the mini DALL-E") -> str:
    """The English caption `reader` draws: a course label in another language is translated
    and unknown English words are read as <unk> (with warnings); `check_caption` refuses."""
    translated = translate_caption(caption)  # "un cercle rouge" -> "a red circle", said out loud
    if translated:
        warnings.warn(f"{reader} reads English: {caption!r} ({translated[1]}) is drawn as "
                      f"{translated[0]!r}", stacklevel=3)
        caption = translated[0]
    unknown = check_caption(caption, tokenizer, reader)
    if unknown:
        warnings.warn(f"{reader} never saw the words {unknown}: they are read as <unk>. "
                      f"It knows: {' '.join(tokenizer.vocab[len(SPECIALS):])}", stacklevel=3)
    return caption


def shapes_world_words(sizes: Sequence[str] | None = None) -> list[str]:
    """Every word a shapes-world caption can hold; sizes: the size words to include (default
    all): a model trained on large shapes only should not pretend to know "small"."""
    texts = [*data.TEMPLATES, *data.WHERE.values(), *data.COLOURS, *data.SHAPES,
             *(data.SIZES if sizes is None else sizes), "an"]
    words = [w for text in texts for w in WordTokenizer.split(re.sub(r"\{\w+\}", " ", text))]
    return list(dict.fromkeys(words))


def pair_caption(colour: str, shape: str, template: str = "a {colour} {shape}") -> str:
    """The caption of a colour-shape pair: ("orange", "star") -> "an orange star"."""
    attrs = {"colour": colour, "shape": shape, "size": "large", "position": "left"}
    return data.caption(attrs, template)


@dataclass
class PictureSet:
    """A reproducible set of shapes-world pictures: the first `n` that `keep_pictures` keeps
    (plain_only: plain backgrounds; sizes: these sizes, None: all; upright_only: shapes not
    turned), rendered in chunks of `chunk` with seeds first_seed, first_seed + 1, ..."""

    n: int
    first_seed: int = 0
    split: str = "train"
    plain_only: bool = False
    sizes: Sequence[str] | None = None
    chunk: int = 500
    upright_only: bool = False


def render_kept(pictures: PictureSet, progress: bool = False,
                desc: str = "rendering") -> tuple[torch.Tensor, list[dict]]:
    """The pictures of `pictures`, (N, 3, H, W) in [0, 1], and their attributes."""
    from tqdm.auto import tqdm

    images, attrs = [], []
    with tqdm(total=pictures.n, desc=desc, disable=not progress, unit="image") as bar:
        for seed in itertools.count(pictures.first_seed):
            drawn, drawn_attrs = data.render_batch(pictures.chunk, seed=seed, split=pictures.split,
                                                   as_tensor=True)
            keep = keep_pictures(drawn, drawn_attrs, pictures.plain_only, pictures.sizes,
                                 pictures.upright_only)                    # (chunk,) bool
            kept = [a for a, k in zip(drawn_attrs, keep) if k][:pictures.n - len(attrs)]
            images.append(drawn[keep][:len(kept)])
            attrs += kept
            bar.update(len(kept))
            if len(attrs) >= pictures.n:
                break
    return torch.cat(images), attrs


@torch.no_grad()
def vq_codes(vq: nn.Module, images: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """The tiny VQ's codes of each picture, row by row: (N, 3, H, W) -> (N, h*w) long.
    Channels-last pictures: the same codes, 1.3x faster on a CPU."""
    return torch.cat([vq.encode(part.contiguous(memory_format=torch.channels_last)).flatten(1)
                      for part in images.split(chunk)])


def keep_pictures(images: torch.Tensor, attrs: list[dict], plain_only: bool = False,
                  sizes: Sequence[str] | None = None, upright_only: bool = False) -> torch.Tensor:
    """Which rendered pictures a training set keeps: (B, 3, H, W) -> (B,) bool."""
    keep = plain_background(images) if plain_only else torch.ones(len(images), dtype=torch.bool)
    if sizes is not None:
        keep &= torch.tensor([a["size"] in sizes for a in attrs], dtype=torch.bool)
    if upright_only:
        keep &= torch.tensor([a["upright"] for a in attrs], dtype=torch.bool)
    return keep


def plain_background(images: torch.Tensor, patch: int = 6, max_std: float = 0.03,
                     max_spread: float = 0.06) -> torch.Tensor:
    """Which pictures have a plain background: (B, 3, H, W) -> (B,) bool. Of the four corner
    patches (a shape may cover one) the three flattest must be flat (pixel std < max_std) and
    alike (mean brightness within max_spread): no gradient, stripes or noise."""
    p = patch
    corners = torch.stack([images[:, :, :p, :p], images[:, :, :p, -p:],
                           images[:, :, -p:, :p], images[:, :, -p:, -p:]], 1)  # (B, 4, 3, p, p)
    std = corners.flatten(3).std(-1).amax(-1)                          # (B, 4) worst channel
    mean = corners.flatten(2).mean(-1)                                 # (B, 4) brightness
    flattest = std.argsort(dim=1)[:, :3]                               # (B, 3)
    std3, mean3 = std.gather(1, flattest), mean.gather(1, flattest)    # (B, 3) each
    return (std3.amax(1) < max_std) & (mean3.amax(1) - mean3.amin(1) < max_spread)
