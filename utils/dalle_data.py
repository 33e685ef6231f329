"""Lesson 05's data: captions as word tokens, pictures as tiny-VQ codes.

The mini DALL-E (`utils.dalle`) reads one stream `[w_1 ... w_T | c_1 ... c_N]`; this module
makes both halves from the shapes world (`utils.data`):
- words: `WordTokenizer`, one token per word of the shapes world ("a", "red", "circle"...).
  DALL-E 1 used BPE over 16k subwords because real captions are open-ended; ours are not.
  The course's labels in other languages are translated (`translate_caption`); any other
  caption the word-level models cannot read is refused in one line (`check_caption`).
- codes: `render_kept` draws the pictures a model learns from (large shapes on plain
  backgrounds, `keep_pictures`), `vq_codes` turns them into the tiny VQ's codes (lesson 04).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn

from .captions import LANGUAGES as COURSE_LANGUAGES

PAD, UNK, IMG = "<pad>", "<unk>", "<img>"
SPECIALS = [PAD, UNK, IMG]


# ---------------------------------------------------------------- caption tokens


class WordTokenizer:
    """Caption -> `length` word ids: [w_1 .. w_k, <pad> .. <pad>, <img>].

    The last slot is always `<img>`: the position whose output predicts the first image
    token. Unknown words become `<unk>`; a caption longer than `length - 1` words is refused.

    >>> tok = WordTokenizer(["a", "red", "circle"], length=5)
    >>> tok.encode(["a red circle"]).tolist()
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
        """Lower-case words, punctuation dropped: "A red, circle." -> ["a", "red", "circle"].

        Any script counts as a word ("红色的圆形" is one word here), so nothing is dropped unseen.
        """
        return re.findall(r"\w+", caption.lower())

    def encode(self, captions: str | Sequence[str]) -> torch.Tensor:
        """(B,) captions -> (B, length) long ids; a caption longer than `length - 1` words is
        refused (ValueError), never cut."""
        if isinstance(captions, str):
            captions = [captions]
        ids = torch.full((len(captions), self.length), self.index[PAD], dtype=torch.long)
        for row, caption in enumerate(captions):
            words = self.split(caption)
            if len(words) > self.length - 1:
                raise ValueError(f"the caption {caption!r} has {len(words)} words, more than the "
                                 f"{self.length - 1} of the context: shorten it")
            ids[row, : len(words)] = torch.tensor(
                [self.index.get(w, self.index[UNK]) for w in words], dtype=torch.long)
            ids[row, -1] = self.index[IMG]
        return ids

    def decode(self, ids: torch.Tensor) -> list[str]:
        """(B, length) ids -> captions (special tokens dropped)."""
        return [" ".join(self.vocab[i] for i in row.tolist() if self.vocab[i] not in SPECIALS)
                for row in ids]

    def unknown_words(self, caption: str) -> list[str]:
        """The words of `caption` the model has never seen (they would become <unk>)."""
        return [w for w in self.split(caption) if w not in self.index]


def _phrase_key(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.lower()))


@functools.lru_cache(maxsize=1)
def _phrasebook() -> dict[str, tuple[str, str]]:
    """Every class label and description `utils.captions` writes in fr es it pt zh ("un cercle
    rouge", "红色的圆形", "une grande étoile orange à gauche") -> (the English caption, language)."""
    from . import captions, data

    book = {}
    for lang in COURSE_LANGUAGES[1:]:
        for colour in data.COLOURS:
            for shape in data.SHAPES:
                book[_phrase_key(captions.label(colour, shape, lang))] = (pair_caption(colour, shape), lang)
                for size in data.SIZES:
                    attrs = {"colour": colour, "shape": shape, "size": size, "position": "left"}
                    book[_phrase_key(captions.describe(attrs, lang, where=False))] = (
                        data.caption(attrs, "a {size} {colour} {shape}"), lang)
                    for position in data.POSITIONS:
                        attrs = {**attrs, "position": position}
                        book[_phrase_key(captions.describe(attrs, lang))] = (
                            data.caption(attrs, "a {size} {colour} {shape} {where}"), lang)
    return book


def translate_caption(caption: str) -> tuple[str, str] | None:
    """(English caption, language) when `caption` is one of the course's labels or descriptions
    in another language, word for word as `utils.captions` writes them; else None.

    >>> translate_caption("un cercle rouge")
    ('a red circle', 'fr')
    """
    return _phrasebook().get(_phrase_key(caption))


def check_caption(caption: str, tokenizer: WordTokenizer, reader: str = "the mini DALL-E") -> list[str]:
    """Refuse, in one line, a caption that `reader` cannot read; return its unknown words.

    The word-level models of lesson 05 learned English shapes-world captions only. Refused
    (`UsageError`): a caption longer than the context (more than `length - 1` words: it would
    be cut), text with no word in it, and a caption in another language (an unknown word
    outside a-z, e.g. "红色的圆形", or more unknown words than known ones: "un cercle rouge").
    Kept: a few unknown English words ("a small red circle" for a model that never saw
    "small"), read as <unk>; the caller warns about them.
    """
    from .errors import UsageError

    words = tokenizer.split(caption)
    if caption.strip() and not words:
        raise UsageError(f"{reader} found no word in the caption {caption!r}.", 'Write one, e.g. "a red circle".')
    if len(words) > tokenizer.length - 1:
        raise UsageError(f"the caption has {len(words)} words; {reader} reads at most {tokenizer.length - 1} "
                         "(its context) and will not cut it.", 'Shorten it, e.g. "a red circle on the left".')
    unknown = tokenizer.unknown_words(caption)
    foreign = [w for w in unknown if not re.fullmatch(r"[a-z0-9]+", w)]  # another script or accents
    if foreign or len(unknown) > len(words) - len(unknown):
        others = ", ".join(lang for lang in COURSE_LANGUAGES if lang != "en")
        raise UsageError(f"{reader} reads English captions only, and in {others} only the course's labels "
                         f"as written (\"un cercle rouge\", \"红色的圆形\"): it does not know {' '.join(unknown)!r}.",
                         f"Write the caption in English with its words: {' '.join(tokenizer.vocab[len(SPECIALS):])}.")
    return unknown


def readable_caption(caption: str, tokenizer: WordTokenizer, reader: str = "the mini DALL-E") -> str:
    """The English caption `reader` draws: a course label in another language is translated
    (with a warning), a caption it cannot read is refused (`check_caption`), and unknown
    English words are read as <unk> (with a warning)."""
    import warnings

    translated = translate_caption(caption)  # "un cercle rouge" -> "a red circle", said out loud
    if translated:
        warnings.warn(f"{reader} reads English: {caption!r} ({translated[1]}) is drawn as "
                      f"{translated[0]!r}", stacklevel=3)
        caption = translated[0]
    unknown = check_caption(caption, tokenizer, reader)  # refuses other languages and long captions
    if unknown:
        warnings.warn(f"{reader} never saw the words {unknown}: they are read as <unk>. "
                      f"It knows: {' '.join(tokenizer.vocab[len(SPECIALS):])}", stacklevel=3)
    return caption


def shapes_world_words(sizes: Sequence[str] | None = None) -> list[str]:
    """Every word a shapes-world caption can hold (utils.data templates and attributes).

    sizes: the size words to include (default all); a model trained on large shapes only
    should not pretend to know "small".
    """
    from . import data

    words: list[str] = []
    sizes = data.SIZES if sizes is None else sizes
    for text in [*data.TEMPLATES, *data.WHERE.values(), *data.COLOURS, *data.SHAPES, *sizes, "an"]:
        words += WordTokenizer.split(re.sub(r"\{\w+\}", " ", text))
    return list(dict.fromkeys(words))


def pair_caption(colour: str, shape: str, template: str = "a {colour} {shape}") -> str:
    """The caption of a colour-shape pair: ("orange", "star") -> "an orange star"."""
    from . import data

    return data.caption({"colour": colour, "shape": shape, "size": "large", "position": "left"}, template)


# ---------------------------------------------------------------- pictures as codes


@dataclass
class TokenData:
    """The training set as tokens: codes (N, h*w) long; words (N, n_templates, text_len) long,
    one tokenized caption per template, so each step can pick a fresh wording."""

    codes: torch.Tensor
    words: torch.Tensor
    attrs: list[dict]


@dataclass
class PictureSet:
    """A reproducible set of shapes-world pictures: the first `n` that `keep_pictures` keeps,
    rendered in chunks of `chunk` with seeds first_seed, first_seed + 1, ...

    plain_only: keep only pictures with a plain background (see `plain_background`);
    sizes: keep only shapes of these sizes (None: all);
    upright_only: keep only shapes drawn upright (half the shapes world turns its shapes at random).
    """

    n: int
    first_seed: int = 0
    split: str = "train"
    plain_only: bool = False
    sizes: Sequence[str] | None = None
    chunk: int = 500
    upright_only: bool = False


def build_token_data(vq: nn.Module, tokenizer: WordTokenizer, pictures: PictureSet,
                     progress: bool = True) -> TokenData:
    """Render `pictures`, turn them into VQ codes and their captions (every template) into words."""
    from . import data

    images, attrs = render_kept(pictures, progress, "images -> tokens")
    codes = vq_codes(vq, images, pictures.chunk)                            # (N, h*w)
    captions = [[data.caption(a, template) for template in data.TEMPLATES] for a in attrs]
    words = tokenizer.encode([c for row in captions for c in row])          # (N * n_t, text_len)
    return TokenData(codes, words.view(len(attrs), len(data.TEMPLATES), -1), attrs)


def render_kept(pictures: PictureSet, progress: bool = False,
                desc: str = "rendering") -> tuple[torch.Tensor, list[dict]]:
    """The pictures of `pictures`: (N, 3, H, W) in [0, 1] and their attributes; the same set
    gives the same pictures."""
    from tqdm.auto import tqdm

    from . import data

    images, attrs = [], []
    with tqdm(total=pictures.n, desc=desc, disable=not progress, unit="image") as bar:
        for batch in range(10**6):
            drawn, drawn_attrs = data.render_batch(pictures.chunk, seed=pictures.first_seed + batch,
                                                   split=pictures.split, as_tensor=True)
            keep = keep_pictures(drawn, drawn_attrs, pictures.plain_only, pictures.sizes,
                                 pictures.upright_only)  # (chunk,) bool
            kept_attrs = [a for a, k in zip(drawn_attrs, keep) if k][: pictures.n - len(attrs)]
            images.append(drawn[keep][: len(kept_attrs)])
            attrs += kept_attrs
            bar.update(len(kept_attrs))
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
    """Which pictures have a plain background: (B, 3, H, W) -> (B,) bool.

    Look at the four corner patches; a shape may cover one of them, so keep the three
    flattest. The background is plain if they are flat (pixel std < max_std) and alike
    (their mean brightness differs by < max_spread): no gradient, stripes or noise.
    """
    p = patch
    corners = torch.stack([images[:, :, :p, :p], images[:, :, :p, -p:],
                           images[:, :, -p:, :p], images[:, :, -p:, -p:]], 1)  # (B, 4, 3, p, p)
    std = corners.flatten(3).std(-1).amax(-1)                          # (B, 4) worst channel
    mean = corners.flatten(2).mean(-1)                                 # (B, 4) brightness
    flattest = std.argsort(dim=1)[:, :3]                               # (B, 3)
    std3, mean3 = std.gather(1, flattest), mean.gather(1, flattest)    # (B, 3) each
    spread = mean3.amax(1) - mean3.amin(1)                             # (B,)
    return (std3.amax(1) < max_std) & (spread < max_spread)


# ---------------------------------------------------------------- saved configs


def fields_of(cls, raw: dict) -> dict:
    """The entries of a saved config (JSON beside the weights) that are fields of the dataclass `cls`."""
    return {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
