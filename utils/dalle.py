"""A mini DALL-E: caption tokens and image tokens in ONE stream, read by a causal transformer.

Lesson 05. DALL-E 1 (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation") turns an
image into a grid of discrete codes with a VQ tokenizer, writes the caption's tokens and the
image's tokens one after the other, and trains a GPT to predict the next token:

    stream = [w_1 ... w_T | c_1 ... c_N]        w: caption words, c: image codes (row by row)
    loss   = - sum_i log p(c_i | w_1..w_T, c_1..c_{i-1})

To draw a caption, feed its words and sample the image codes one at a time; the VQ decoder
turns the codes back into pixels. Sample several images and let CLIP rerank them (DALL-E 1
drew 512 and kept the best). The transformer below follows nanoGPT (Karpathy): one file,
a `@dataclass` config, the shape of every tensor written beside it.

Our choices for the shapes world:
- Caption tokens: a word-level vocabulary (one token per word of the shapes world: "a",
  "red", "circle", ...). It is tiny, every token is readable, and the model needs nothing
  else. DALL-E 1 used BPE over 16k subwords because real captions are open-ended.
- Image tokens: the tiny VQ of lesson 04 (`utils.tinyvq`), the same tokenizer in both lessons.

DALL-E 2 (unCLIP, Ramesh et al. 2022) is the `Prior` at the end of this file: a small
network that maps a CLIP *text* embedding to a CLIP *image* embedding.
"""

from __future__ import annotations

import functools
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .assets import ASSETS_DIR
from .generate import unique_path as new_path  # never overwrite a file a student made
from .models import TINY_VQ_NAME

if TYPE_CHECKING:
    from PIL import Image

DALLE_WEIGHTS = ASSETS_DIR / "tiny-dalle.safetensors"
DALLE_CONFIG = ASSETS_DIR / "tiny-dalle.json"
PRIOR_WEIGHTS = ASSETS_DIR / "tiny-prior.safetensors"
PRIOR_CONFIG = ASSETS_DIR / "tiny-prior.json"
DECODER_WEIGHTS = ASSETS_DIR / "tiny-unclip-decoder.safetensors"
DECODER_CONFIG = ASSETS_DIR / "tiny-unclip-decoder.json"
RERANKER = TINY_VQ_NAME  # the CLIP that reranks by default: the tiny CLIP, fine-tuned on VQ pictures

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


COURSE_LANGUAGES = ("en", "fr", "es", "it", "pt", "zh")


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


# ---------------------------------------------------------------- the transformer


@dataclass
class DalleConfig:
    text_vocab: int = 32          # caption words, specials included
    image_vocab: int = 64         # VQ codebook size K
    text_len: int = 8             # caption slots, the final <img> included
    image_rows: int = 8           # h: rows of the VQ code grid
    image_cols: int = 8           # w: columns
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0

    @property
    def image_len(self) -> int:
        return self.image_rows * self.image_cols

    @property
    def block_size(self) -> int:
        # The last image token is never an input: the stream the model reads is one shorter.
        return self.text_len + self.image_len - 1


class CausalSelfAttention(nn.Module):
    """Multi-head attention where position t only sees positions <= t.

    att = softmax(Q K^T / sqrt(hs) + causal mask) V, per head.
    """

    def __init__(self, cfg: DalleConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)                        # 3 x (B, T, C)
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, nh, T, hs)
        if cache is not None:  # sampling: keep the keys and values of the positions seen so far
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)                # (B, nh, T_past + T, hs)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        # New positions come last, so they may read every cached one: a mask is needed only
        # when the queries are the whole stream (training, or the first sampling call).
        y = F.scaled_dot_product_attention(
            q, k, v, is_causal=q.shape[2] == k.shape[2],
            dropout_p=self.dropout if self.training else 0.0)
        y = y.transpose(1, 2).contiguous().view(B, T, C)             # (B, T, C)
        return self.proj(y)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: DalleConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(
            nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(), nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class MiniDalle(nn.Module):
    """GPT over [caption words; image codes]; predicts the image codes only.

    Words and codes have separate embedding tables (two vocabularies, one stream).
    Position embeddings: one per caption slot; an image token at grid cell (r, c) gets
    row_emb[r] + col_emb[c], so the model knows which tokens are neighbours in 2-D
    (DALL-E 1 did the same).
    """

    def __init__(self, cfg: DalleConfig):
        super().__init__()
        self.cfg = cfg
        self.word_emb = nn.Embedding(cfg.text_vocab, cfg.n_embd)
        self.code_emb = nn.Embedding(cfg.image_vocab, cfg.n_embd)
        self.text_pos = nn.Embedding(cfg.text_len, cfg.n_embd)
        self.row_emb = nn.Embedding(cfg.image_rows, cfg.n_embd)
        self.col_emb = nn.Embedding(cfg.image_cols, cfg.n_embd)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd)
        self.head = nn.Linear(cfg.n_embd, cfg.image_vocab, bias=False)  # logits over codes
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def embed_prefix(self, words: torch.Tensor) -> torch.Tensor:
        """The part of the stream the image is conditioned on: word ids (B, T_text) -> (B, T_text, C)."""
        return self.word_emb(words)

    def positions(self) -> torch.Tensor:
        """Position embedding of every slot of the stream: (block_size, C)."""
        grid = self.row_emb.weight[:, None] + self.col_emb.weight[None, :]  # (h, w, C)
        stream = torch.cat([self.text_pos.weight, grid.flatten(0, 1)])     # (T_text + h*w, C)
        return stream[: self.cfg.block_size]

    def run(self, x: torch.Tensor, start: int = 0, caches: list[dict] | None = None) -> torch.Tensor:
        """Embedded tokens at stream positions start.. -> final hidden states, (B, T, C)."""
        T = x.shape[1]
        if start + T > self.cfg.block_size:
            raise ValueError(f"stream of {start + T} tokens is longer than block_size {self.cfg.block_size}")
        x = x + self.positions()[start:start + T]                          # (B, T, C)
        for i, block in enumerate(self.blocks):
            x = block(x, caches[i] if caches is not None else None)
        return self.ln_f(x)

    def forward(self, words: torch.Tensor, codes: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """words (B, T_text), codes (B, n) with n < image_len -> logits (B, n + 1, K).

        logits[:, i] is the distribution of image token i given the caption and codes[:, :i].
        With targets (B, n + 1), also returns the mean cross-entropy.
        """
        prefix = self.embed_prefix(words)                                  # (B, T_text, C)
        n_text = prefix.shape[1]
        x = torch.cat([prefix, self.code_emb(codes)], dim=1)             # (B, T, C)
        h = self.run(x)                                                    # (B, T, C)
        logits = self.head(h[:, n_text - 1:])                              # (B, n + 1, K)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss

    def loss(self, words: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Next-token loss of full images: words (B, T_text), codes (B, N) -> scalar."""
        _, loss = self(words, codes[:, :-1], targets=codes)
        return loss

    @torch.no_grad()
    def sample(self, words: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, guidance: float = 1.0,
               empty: torch.Tensor | None = None) -> torch.Tensor:
        """Draw image codes one by one: words (B, T_text) -> codes (B, N).

        p(c_i) = softmax(logits_i / temperature), restricted to the top_k likeliest codes.
        top_k=1 is greedy decoding. With guidance s != 1 and `empty` (the ids of the empty
        caption, (1, T_text)), classifier-free guidance:
            logits = logits(empty) + s * (logits(caption) - logits(empty)).
        A KV cache keeps each layer's keys and values, so each step processes one new token.
        """
        if temperature <= 0:
            raise ValueError("temperature must be > 0 (use top_k=1 for greedy decoding)")
        B, n_text = words.shape[0], self.cfg.text_len
        guided = guidance != 1.0
        if guided:
            if empty is None:
                raise ValueError("classifier-free guidance needs the ids of the empty caption")
            words = torch.cat([words, empty.expand(B, -1)])                # (2B, T_text)
        caches = [{} for _ in self.blocks]
        h = self.run(self.embed_prefix(words), 0, caches)                  # (B', T_text, C)
        codes = torch.zeros(B, 0, dtype=torch.long, device=words.device)   # (B, 0)
        for i in range(self.cfg.image_len):
            logits = self.head(h[:, -1])                                   # (B', K)
            if guided:
                cond, uncond = logits.chunk(2)                             # (B, K) each
                logits = uncond + guidance * (cond - uncond)
            logits = logits / temperature
            if top_k is not None and top_k < logits.shape[-1]:
                kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]     # (B, 1)
                logits = logits.masked_fill(logits < kth, float("-inf"))
            nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)  # (B, 1)
            codes = torch.cat([codes, nxt], dim=1)                         # (B, i + 1)
            if i + 1 < self.cfg.image_len:
                fed = torch.cat([nxt, nxt]) if guided else nxt             # (B', 1)
                h = self.run(self.code_emb(fed), n_text + i, caches)       # (B', 1, C)
        return codes


# ---------------------------------------------------------------- the bundle: tokenizer + model + VQ


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


@dataclass
class TinyDalle:
    """What it takes to draw: the word tokenizer, the transformer and the VQ decoder."""

    model: MiniDalle
    tokenizer: WordTokenizer
    vq: nn.Module
    guidance: float = 1.0  # default classifier-free guidance scale when sampling

    @property
    def grid(self) -> tuple[int, int]:
        return tuple(self.vq.grid)

    def sample_codes(self, captions: Sequence[str], temperature: float = 1.0, top_k: int | None = None,
                     seed: int = 0, guidance: float = 1.0) -> torch.Tensor:
        """One code grid per caption: (B,) captions -> (B, h, w) long."""
        gen = torch.Generator().manual_seed(seed)
        self.model.eval()
        codes = self.model.sample(self.tokenizer.encode(captions), temperature, top_k, gen,
                                  guidance, self.tokenizer.encode(""))    # (B, N)
        return codes.view(len(captions), *self.grid)

    @torch.no_grad()
    def draw(self, captions: Sequence[str], temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0, guidance: float = 1.0, batch_size: int = 64) -> torch.Tensor:
        """Images for the captions: (B,) -> (B, 3, H, W) in [0, 1]."""
        out = []
        for start in range(0, len(captions), batch_size):
            chunk = list(captions[start:start + batch_size])
            codes = self.sample_codes(chunk, temperature, top_k, seed + start, guidance)  # (b, h, w)
            out.append(self.vq.decode_codes(codes))
        return torch.cat(out)


def _write_model(model: nn.Module, weights: Path, config: dict, half: bool = True) -> Path:
    """Save a model's weights (safetensors, float16 unless half=False) and `config` beside
    them as JSON; returns the config's path."""
    from safetensors.torch import save_file

    state = {k: (v.detach().half() if half else v.detach()).contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(weights))
    path = weights.with_suffix(".json")
    path.write_text(json.dumps(config, indent=2) + "\n")
    return path


def _read_model(weights: str | Path | None, default: Path, what: str, rebuild: str) -> tuple[dict, dict, Path]:
    """(float32 state dict, config, weights path) of a model saved by `_write_model`."""
    from safetensors.torch import load_file

    weights = Path(weights) if weights else default
    config = weights.with_suffix(".json")
    if not weights.exists() or not config.exists():
        raise FileNotFoundError(f"The {what} {weights} (or {config.name}) is missing. Rebuild it: {rebuild}")
    state = {k: v.float() for k, v in load_file(str(weights)).items()}
    return state, json.loads(config.read_text()), weights


def _fields_of(cls, raw: dict) -> dict:
    """The entries of a saved config that are fields of the dataclass `cls`."""
    return {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}


def save_tiny_dalle(bundle: TinyDalle, weights: Path = DALLE_WEIGHTS, extra: dict | None = None) -> Path:
    """Write the transformer (float16 safetensors) and a JSON config with its vocabulary."""
    return _write_model(bundle.model, weights, {
        **asdict(bundle.model.cfg), "words": bundle.tokenizer.vocab[len(SPECIALS):], "guidance": bundle.guidance,
        "image_tokenizer": "utils.tinyvq (tiny-vq.safetensors)", **(extra or {})})


_CACHE: dict[str, object] = {}


def load_tiny_dalle(weights: str | Path | None = None, vq_weights: str | Path | None = None) -> TinyDalle:
    """The bundled mini DALL-E (or `weights`, with its .json beside it) and the tiny VQ."""
    from .tinyvq import load_tiny_vq

    state, raw, weights = _read_model(weights, DALLE_WEIGHTS, "mini DALL-E", "python -m utils train dalle")
    cfg = DalleConfig(**_fields_of(DalleConfig, raw))
    tokenizer = WordTokenizer(raw["words"], length=cfg.text_len)
    model = MiniDalle(cfg)
    model.load_state_dict(state)
    vq = load_tiny_vq(vq_weights)
    if vq.cfg.n_codes != cfg.image_vocab or tuple(vq.grid) != (cfg.image_rows, cfg.image_cols):
        raise ValueError(f"{weights} was trained on {cfg.image_vocab} codes in a {cfg.image_rows}x"
                         f"{cfg.image_cols} grid, the tiny VQ has {vq.cfg.n_codes} in {tuple(vq.grid)}: it was rebuilt "
                         "after the DALL-E. Retrain it: python -m utils train dalle")
    return TinyDalle(model.eval().requires_grad_(False), tokenizer, vq, raw.get("guidance", 1.0))


def _bundled_dalle() -> TinyDalle:
    if "dalle" not in _CACHE:
        _CACHE["dalle"] = load_tiny_dalle()
    return _CACHE["dalle"]


def _bundled_clip(name: str = "tiny-shapes"):
    """A bundled tiny CLIP, loaded once: "tiny-shapes" (the prior and decoder's embedding
    space) or "tiny-shapes-vq" (the same CLIP fine-tuned on tiny-VQ pictures: the reranker)."""
    if name not in _CACHE:
        from .models import load_clip

        _CACHE[name] = load_clip(name, device="cpu")
    return _CACHE[name]


def _bundled_reranker():
    return _bundled_clip(RERANKER)


# ---------------------------------------------------------------- generate and rerank


def to_pil(images: torch.Tensor) -> list[Image.Image]:
    """(B, 3, H, W) in [0, 1] -> PIL images."""
    from PIL import Image

    arrays = (images.clamp(0, 1).permute(0, 2, 3, 1) * 255 + 0.5).to(torch.uint8).numpy()
    return [Image.fromarray(a) for a in arrays]


def clip_scores(clip, images: torch.Tensor, caption: str) -> torch.Tensor:
    """Cosine similarity between each image and the caption under `clip`: (B, 3, H, W) -> (B,)."""
    image_emb = clip.encode_images(to_pil(images))            # (B, D)
    text_emb = clip.encode_texts([caption])                   # (1, D)
    return (image_emb @ text_emb.T).squeeze(1)                # (B,)


@dataclass
class Generation:
    """n samples for one caption, best CLIP score first.

    images (n, 3, H, W) in [0, 1]; scores (n,) CLIP cosine similarities; order (n,) the index
    each image had among the samples as drawn (order[0] is the sample CLIP liked best);
    drawn (n, 3, H, W): the samples in the order they were drawn, before reranking.
    """

    caption: str
    images: torch.Tensor
    scores: torch.Tensor
    order: torch.Tensor
    drawn: torch.Tensor
    codes: torch.Tensor
    guidance: float = 1.0

    @property
    def best(self) -> torch.Tensor:
        return self.images[0]

    def pil(self) -> list[Image.Image]:
        return to_pil(self.images)


SAMPLE_CHUNK = 64  # images sampled at once by `generate`


def generate(caption: str, n: int = 8, temperature: float = 1.0, top_k: int | None = None,
             seed: int = 0, rerank: bool = True, dalle: TinyDalle | None = None, clip=None,
             guidance: float | None = None) -> Generation:
    """Draw n images for `caption` and rerank them with CLIP, as DALL-E 1 did.

    score_i = cos(CLIP_image(x_i), CLIP_text(caption)); images come back sorted by score.
    With rerank=False the images keep the order they were drawn in (scores still given).
    dalle and clip default to the bundled mini DALL-E and the tiny CLIP fine-tuned on tiny-VQ
    pictures (`RERANKER`: the plain tiny CLIP misreads the VQ's blurred outlines);
    guidance (classifier-free, 1 = none) defaults to the model's `guidance`.
    """
    from .errors import check_range

    check_range("n", n, 1)
    check_range("temperature", float(temperature), 0, strict_lo=True)
    check_range("top_k", top_k, 1)
    check_range("guidance", None if guidance is None else float(guidance), 0)
    dalle = dalle or _bundled_dalle()
    clip = clip or _bundled_reranker()
    translated = translate_caption(caption)  # "un cercle rouge" -> "a red circle", said out loud
    if translated:
        import warnings

        warnings.warn(f"the mini DALL-E reads English: {caption!r} ({translated[1]}) is drawn as "
                      f"{translated[0]!r}", stacklevel=2)
        caption = translated[0]
    unknown = check_caption(caption, dalle.tokenizer)  # refuses other languages and long captions
    if unknown:
        import warnings

        warnings.warn(f"the mini DALL-E never saw the words {unknown}: they are read as <unk>. "
                      f"It knows: {' '.join(dalle.tokenizer.vocab[len(SPECIALS):])}", stacklevel=2)
    guidance = dalle.guidance if guidance is None else guidance
    # in chunks of SAMPLE_CHUNK: memory stays bounded for any n (chunk j draws from seed + j)
    codes = torch.cat([dalle.sample_codes([caption] * min(SAMPLE_CHUNK, n - start), temperature, top_k,
                                          seed + start // SAMPLE_CHUNK, guidance)
                       for start in range(0, n, SAMPLE_CHUNK)])               # (n, h, w)
    with torch.no_grad():
        drawn = dalle.vq.decode_codes(codes)                                # (n, 3, H, W)
    scores = clip_scores(clip, drawn, caption)                              # (n,)
    order = scores.argsort(descending=True) if rerank else torch.arange(n)
    return Generation(caption, drawn[order], scores[order], order, drawn, codes[order], guidance)


# ---------------------------------------------------------------- training the mini DALL-E


@dataclass
class TokenData:
    """The training set as tokens: codes (N, h*w) long; words (N, n_templates, text_len) long,
    one tokenized caption per template, so each step can pick a fresh wording."""

    codes: torch.Tensor
    words: torch.Tensor
    attrs: list[dict]


def build_token_data(vq: nn.Module, tokenizer: WordTokenizer, n_images: int, seed: int = 0,
                     split: str = "train", chunk: int = 500, plain_only: bool = False,
                     sizes: Sequence[str] | None = None, progress: bool = True) -> TokenData:
    """Render `n_images` shapes-world images, turn them into VQ codes and their captions into words.

    plain_only: keep only pictures with a plain background (see `plain_background`).
    sizes: keep only shapes of these sizes (default: all).
    """
    from . import data

    images, attrs = render_kept(n_images, seed * 1000, split, chunk, plain_only, sizes, progress,
                                "images -> tokens")
    codes = vq_codes(vq, images, chunk)                                     # (N, h*w)
    captions = [[data.caption(a, template) for template in data.TEMPLATES] for a in attrs]
    words = tokenizer.encode([c for row in captions for c in row])          # (N * n_t, text_len)
    return TokenData(codes, words.view(len(attrs), len(data.TEMPLATES), -1), attrs)


def render_kept(n_images: int, first_seed: int, split: str = "train", chunk: int = 500,
                plain_only: bool = False, sizes: Sequence[str] | None = None, progress: bool = False,
                desc: str = "rendering") -> tuple[torch.Tensor, list[dict]]:
    """n_images shapes-world pictures that `keep_pictures` keeps: (N, 3, H, W) in [0, 1], attrs.

    Renders chunks of `chunk` pictures with seeds first_seed, first_seed + 1, ... until enough
    pass the filter; the same arguments give the same pictures.
    """
    from tqdm.auto import tqdm

    from . import data

    images, attrs = [], []
    with tqdm(total=n_images, desc=desc, disable=not progress, unit="image") as bar:
        for batch in range(10**6):
            drawn, drawn_attrs = data.render_batch(chunk, seed=first_seed + batch, split=split, as_tensor=True)
            keep = keep_pictures(drawn, drawn_attrs, plain_only, sizes)     # (chunk,) bool
            kept_attrs = [a for a, k in zip(drawn_attrs, keep) if k][: n_images - len(attrs)]
            images.append(drawn[keep][: len(kept_attrs)])
            attrs += kept_attrs
            bar.update(len(kept_attrs))
            if len(attrs) >= n_images:
                break
    return torch.cat(images), attrs


@torch.no_grad()
def vq_codes(vq: nn.Module, images: torch.Tensor, chunk: int = 500) -> torch.Tensor:
    """The tiny VQ's codes of each picture, row by row: (N, 3, H, W) -> (N, h*w) long."""
    return torch.cat([vq.encode(part).flatten(1) for part in images.split(chunk)])


def keep_pictures(images: torch.Tensor, attrs: list[dict], plain_only: bool = False,
                  sizes: Sequence[str] | None = None) -> torch.Tensor:
    """Which rendered pictures a training set keeps: (B, 3, H, W) -> (B,) bool."""
    keep = plain_background(images) if plain_only else torch.ones(len(images), dtype=torch.bool)
    if sizes is not None:
        keep &= torch.tensor([a["size"] in sizes for a in attrs], dtype=torch.bool)
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


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_dalle`; the defaults rebuild the bundled model.

    The bundled mini DALL-E sees large shapes on plain backgrounds only: the tiny VQ has one
    code per 8 x 8 pixels, so a small shape spans a code or two and its outline does not
    survive the round trip (see lesson 05), and busy backgrounds spend the codes on texture.
    """

    steps: int = 2000
    batch_size: int = 128
    lr: float = 3e-3
    warmup: int = 100
    weight_decay: float = 0.01
    caption_dropout: float = 0.1  # share of captions replaced by the empty one (for guidance)
    guidance: float = 2.0  # the classifier-free guidance scale saved with the model for sampling
    n_images: int = 10_000
    plain_backgrounds: bool = True  # keep only pictures whose background is plain
    sizes: tuple[str, ...] | None = ("large",)  # keep only shapes of these sizes (None: all)
    seed: int = 0
    threads: int = 0  # torch threads while training; 0 keeps the current setting
    schedule: str = "cosine"  # after warm-up: "cosine" (to lr / 10) or "linear" (to 0)
    text_len: int = 12  # caption slots of the stream, the final <img> included


def train_dalle(cfg: TrainConfig | None = None, model_cfg: DalleConfig | None = None, vq=None,
                progress: bool = True, callback=None, callback_every: int = 0) -> tuple[TinyDalle, dict]:
    """Train the mini DALL-E on the shapes world's seen pairs; returns (bundle, history).

    Each step: B images' codes, each with one of its captions drawn at random, and the
    next-token loss over the image part of the stream. callback(step, bundle) runs every
    `callback_every` steps (the benchmark measures quality there); its time is not counted.
    """
    import time

    from .tinyvq import load_tiny_vq

    cfg = cfg or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    vq = vq or load_tiny_vq()
    words = shapes_world_words(cfg.sizes)
    tokenizer = WordTokenizer(words, length=cfg.text_len)
    model_cfg = model_cfg or DalleConfig()
    model_cfg.text_vocab, model_cfg.text_len = len(tokenizer), tokenizer.length
    model_cfg.image_vocab = vq.cfg.n_codes
    model_cfg.image_rows, model_cfg.image_cols = vq.grid
    bundle = TinyDalle(MiniDalle(model_cfg), tokenizer, vq, cfg.guidance)
    start = time.perf_counter()
    tokens = build_token_data(vq, tokenizer, cfg.n_images, seed=cfg.seed, plain_only=cfg.plain_backgrounds,
                              sizes=cfg.sizes,
                              progress=progress)
    data_seconds = time.perf_counter() - start

    gen = torch.Generator().manual_seed(cfg.seed)
    empty = tokenizer.encode("")[0]                                             # (T_text,)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(tokens.codes), (cfg.batch_size,), generator=gen)          # (B,)
        which = torch.randint(tokens.words.shape[1], (cfg.batch_size,), generator=gen)   # (B,)
        words = tokens.words[idx, which]                                                 # (B, T_text)
        drop = torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout
        words[drop] = empty                                # learn p(image) too, for guidance
        return words, tokens.codes[idx]

    history = fit(bundle.model, next_batch, cfg, "training mini DALL-E", progress,
                  callback and (lambda step: callback(step, bundle)), callback_every)
    history["data_seconds"] = round(data_seconds, 1)
    history["train_seconds"] = round(history["train_seconds"] + data_seconds, 1)
    for c in history["callbacks"]:
        c["train_seconds"] = round(c["train_seconds"] + data_seconds, 1)
    return bundle, history


def fit(model: MiniDalle, next_batch, cfg: TrainConfig, desc: str = "training", progress: bool = True,
        callback=None, callback_every: int = 0) -> dict:
    """The training loop: AdamW, warm-up + cosine learning rate, gradient clipping at 1.

    next_batch() -> (condition, codes (B, N)); loss = model.loss(condition, codes).
    callback(step) runs every `callback_every` steps, in eval mode; its time is not counted.
    """
    import time

    from tqdm.auto import tqdm

    model.train()
    decay = [p for p in model.parameters() if p.ndim >= 2]
    no_decay = [p for p in model.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
    history = {"loss": [], "step": [], "callbacks": []}
    train_seconds = 0.0
    bar = tqdm(range(1, cfg.steps + 1), desc=desc, disable=not progress, mininterval=1)
    for step in bar:
        tick = time.perf_counter()
        for group in opt.param_groups:
            group["lr"] = lr_at(step, cfg)
        loss = model.loss(*next_batch())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        train_seconds += time.perf_counter() - tick
        if step % 10 == 0 or step == cfg.steps:
            history["loss"].append(round(loss.item(), 4))
            history["step"].append(step)
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if callback and callback_every and (step % callback_every == 0 or step == cfg.steps):
            model.eval()
            history["callbacks"].append({"step": step, "train_seconds": round(train_seconds, 1),
                                         **(callback(step) or {})})
            model.train()
    history["train_seconds"] = round(train_seconds, 1)
    model.eval().requires_grad_(False)
    return history


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warm-up for `warmup` steps, then a decay: cosine to lr / 10, or linear to 0."""
    if step <= cfg.warmup:
        return cfg.lr * step / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.schedule == "linear":
        return cfg.lr * (1 - progress)
    if cfg.schedule != "cosine":
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r}: use 'cosine' or 'linear'")
    return cfg.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


# ---------------------------------------------------------------- measuring: an independent judge


def pair_caption(colour: str, shape: str, template: str = "a {colour} {shape}") -> str:
    """The caption of a colour-shape pair: ("orange", "star") -> "an orange star"."""
    from . import data

    return data.caption({"colour": colour, "shape": shape, "size": "large", "position": "left"}, template)


@torch.no_grad()
def evaluate_dalle(bundle: TinyDalle, clip=None, judge=None, pairs=None, n_samples: int = 8,
                   seed: int = 0, temperature: float = 1.0, top_k: int | None = None,
                   prior: Prior | None = None, template: str = "a {colour} {shape}",
                   guidance: float | None = None, repeats: int = 1) -> dict:
    """How often the drawn images show the right colour AND shape, judged by `utils.shapecheck`.

    For each colour-shape pair: draw n_samples images of its caption, rerank them with CLIP,
    and judge (colour by pixel statistics, shape by a separately trained CNN):
    - reranked_accuracy: the sample CLIP ranked first is right (what DALL-E 1 shows you);
    - sample_accuracy: a sample drawn at random is right (no reranking);
    - prior_reranked_accuracy (with a prior): rerank by cos(image, prior(text)) instead.
    repeats: judge each caption this many times, with fresh samples (n_captions grows with
    it); twenty captions alone give a share that moves by 5 points per caption.
    """
    from . import data
    from .shapecheck import load_shape_judge

    clip = clip or _bundled_reranker()
    judge = judge or load_shape_judge()
    pairs = list(data.SEEN if pairs is None else pairs) * repeats
    captions = [pair_caption(c, s, template) for c, s in pairs]
    guidance = bundle.guidance if guidance is None else guidance
    images = bundle.draw([c for c in captions for _ in range(n_samples)], temperature, top_k, seed, guidance)
    images = images.view(len(pairs), n_samples, *images.shape[1:])          # (P, n, 3, H, W)
    image_emb = clip.encode_images(to_pil(images.flatten(0, 1))).view(len(pairs), n_samples, -1)  # (P, n, D)
    text_emb = clip.encode_texts(captions)                                  # (P, D)
    guides = {"clip": text_emb}
    if prior is not None:
        guides["prior"] = prior.predict(text_emb)                           # (P, D)
    per_pair, right = [], torch.zeros(len(pairs), n_samples, dtype=torch.bool)
    best = {name: torch.zeros(len(pairs), dtype=torch.long) for name in guides}
    for p, ((colour, shape), caption) in enumerate(zip(pairs, captions)):
        verdicts = judge.judge(images[p])
        right[p] = torch.tensor([v["colour"] == colour and v["shape"] == shape for v in verdicts])
        for name, guide in guides.items():
            best[name][p] = int((image_emb[p] @ guide[p]).argmax())
        top = verdicts[int(best["clip"][p])]
        per_pair.append({"caption": caption, "right_samples": int(right[p].sum()), "n": n_samples,
                         "top_colour": top["colour"], "top_shape": top["shape"],
                         "top_right": bool(right[p, best["clip"][p]])})
    rows = torch.arange(len(pairs))
    result = {"n_captions": len(pairs), "n_samples": n_samples,
              "reranked_accuracy": round(float(right[rows, best["clip"]].float().mean()), 4),
              "sample_accuracy": round(float(right.float().mean()), 4),
              "any_right": round(float(right.any(1).float().mean()), 4),
              "per_caption": per_pair}
    if prior is not None:
        result["prior_reranked_accuracy"] = round(float(right[rows, best["prior"]].float().mean()), 4)
    return result


# ---------------------------------------------------------------- the unCLIP prior (DALL-E 2)


@dataclass
class PriorConfig:
    embed_dim: int = 64
    hidden: int = 256
    n_layer: int = 2


class Prior(nn.Module):
    """unCLIP's prior, as an MLP: a CLIP text embedding -> the CLIP image embedding it describes.

    DALL-E 2 needs it because its decoder draws from an *image* embedding, and CLIP's text and
    image embeddings live in different regions of the sphere (the "modality gap": a caption's
    embedding is never close to its images'). Trained to minimise 1 - cos(prior(t), x) over
    pairs (t, x) = (text embedding, image embedding), it predicts the average direction of the
    images a caption describes. DALL-E 2's prior is a diffusion model that samples one image
    embedding instead of the average; the MLP is the deterministic version.
    """

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        layers, width = [], cfg.embed_dim
        for _ in range(cfg.n_layer):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, cfg.embed_dim))

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        """(B, D) text embeddings -> (B, D) predicted image embeddings, L2-normalised."""
        return F.normalize(self.mlp(text_emb), dim=-1)

    @torch.no_grad()
    def predict(self, text_emb: torch.Tensor) -> torch.Tensor:
        self.eval()
        return self(text_emb)

    @torch.no_grad()
    def embed_captions(self, clip, captions: Sequence[str]) -> torch.Tensor:
        """Captions -> the prior's image embeddings (B, D): prior(CLIP_text(caption)).

        The prior learned English shapes-world captions only: the course's labels in the other
        languages are translated (`translate_caption`); any other caption in another language,
        or one longer than PRIOR_MAX_WORDS words, is refused in one line (`check_caption`).
        """
        tokenizer = WordTokenizer(shapes_world_words(), length=PRIOR_MAX_WORDS + 1)
        english = [(translate_caption(c) or (c,))[0] for c in captions]  # the course's labels, translated
        for caption in english:
            check_caption(caption, tokenizer, reader="the unCLIP prior")
        return self.predict(clip.encode_texts(english))


PRIOR_MAX_WORDS = 15  # captions the prior accepts; the tiny CLIP's context is 32 BPE tokens


def clip_pairs(clip, n_images: int, seed: int = 0, split: str = "train", progress: bool = True,
               plain_only: bool = False, sizes: Sequence[str] | None = None,
               ) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """CLIP embeddings of n rendered images and of their captions: (N, D), (N, D), attrs.

    plain_only, sizes: keep only such pictures (see `keep_pictures`), as the decoder saw.
    """
    # One chunk holds all n pictures when nothing is filtered out.
    images, attrs = render_kept(n_images, seed, split, n_images, plain_only, sizes)
    image_emb = clip.encode_images(to_pil(images), progress=progress)      # (N, D)
    captions = [a["caption"] for a in attrs]
    unique = list(dict.fromkeys(captions))
    unique_emb = clip.encode_texts(unique)                                  # (U, D)
    index = {c: i for i, c in enumerate(unique)}
    text_emb = unique_emb[torch.tensor([index[c] for c in captions])]       # (N, D)
    return image_emb, text_emb, attrs


def train_prior(clip=None, steps: int = 1500, n_images: int = 10_000, batch_size: int = 256,
                lr: float = 2e-3, seed: int = 0, progress: bool = True, plain_only: bool = True,
                sizes: Sequence[str] | None = ("large",)) -> tuple[Prior, dict]:
    """Fit the prior on (caption, image) pairs of the seen colour-shape pairs; returns (prior, history).

    By default on the pictures the decoder learns to draw: large shapes, plain backgrounds."""
    import time

    from tqdm.auto import tqdm

    clip = clip or _bundled_clip()
    torch.manual_seed(seed)
    start = time.perf_counter()
    image_emb, text_emb, _ = clip_pairs(clip, n_images, seed=seed, progress=progress, plain_only=plain_only,
                                        sizes=sizes)
    prior = Prior(PriorConfig(embed_dim=image_emb.shape[1]))
    opt = torch.optim.AdamW(prior.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    gen = torch.Generator().manual_seed(seed)
    history = {"loss": []}
    for step in tqdm(range(steps), desc="training prior", disable=not progress, mininterval=1):
        idx = torch.randint(len(image_emb), (batch_size,), generator=gen)
        loss = (1 - (prior(text_emb[idx]) * image_emb[idx]).sum(-1)).mean()  # 1 - cos
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if step % 10 == 0:
            history["loss"].append(round(loss.item(), 4))
    history["train_seconds"] = round(time.perf_counter() - start, 1)
    return prior.eval().requires_grad_(False), history


@torch.no_grad()
def evaluate_prior(prior: Prior, clip=None, n_images: int = 1200, seed: int = 99, k: int = 10) -> dict:
    """Retrieval by the raw text embedding vs by the prior's image embedding.

    Gallery: fresh "test" images (seen pairs) and "heldout" images. Query: "a {colour} {shape}"
    for every pair. A hit is an image of that colour and shape. For each guide g we report
    precision@k (share of hits among the k images with the highest cos(g, x)), average
    precision over the whole ranking, and the mean cosine between g and its own images.
    """
    from . import data

    clip = clip or _bundled_clip()
    seen_emb, _, seen_attrs = clip_pairs(clip, n_images, seed=seed, split="test", progress=False)
    held_emb, _, held_attrs = clip_pairs(clip, n_images // 3, seed=seed, split="heldout", progress=False)
    gallery = torch.cat([seen_emb, held_emb])                               # (G, D)
    attrs = seen_attrs + held_attrs
    labels = [(a["colour"], a["shape"]) for a in attrs]
    pairs = data.SPLITS["all"]
    text_emb = clip.encode_texts([pair_caption(c, s) for c, s in pairs])    # (P, D)
    guides = {"text": text_emb, "prior": prior.predict(text_emb)}
    result: dict = {"k": k, "gallery": len(gallery)}
    for name, guide in guides.items():
        sims = guide @ gallery.T                                            # (P, G)
        stats = {"seen": [], "heldout": []}
        for p, pair in enumerate(pairs):
            hits = torch.tensor([lab == pair for lab in labels])            # (G,)
            order = sims[p].argsort(descending=True)
            ranked = hits[order].float()                                    # (G,)
            precision = ranked.cumsum(0) / torch.arange(1, len(ranked) + 1)
            ap = float((precision * ranked).sum() / ranked.sum().clamp(min=1))
            group = "heldout" if pair in data.HELD_OUT else "seen"
            stats[group].append((float(ranked[:k].mean()), ap, float(sims[p][hits].mean())))
        for group, rows in stats.items():
            cols = torch.tensor(rows).mean(0).tolist()
            result[f"{name}_{group}"] = {f"precision@{k}": round(cols[0], 4), "mAP": round(cols[1], 4),
                                          "cos_to_own_images": round(cols[2], 4)}
    return result


def save_prior(prior: Prior, weights: Path = PRIOR_WEIGHTS, extra: dict | None = None) -> Path:
    return _write_model(prior, weights, {**asdict(prior.cfg), **(extra or {})}, half=False)


def load_prior(weights: str | Path | None = None) -> Prior:
    """The bundled unCLIP prior for the tiny CLIP (or `weights` with its .json beside it)."""
    state, raw, _ = _read_model(weights, PRIOR_WEIGHTS, "prior", "python -m utils train prior")
    prior = Prior(PriorConfig(**_fields_of(PriorConfig, raw)))
    prior.load_state_dict(state)
    return prior.eval().requires_grad_(False)


# ---------------------------------------------------------------- the unCLIP decoder (DALL-E 2)


DECODER_STEPS = 2000


def decoder_recipe(seed: int = 0, steps: int = DECODER_STEPS) -> TrainConfig:
    """How the bundled unCLIP decoder was trained: like the mini DALL-E (large shapes, plain
    backgrounds), with batch 64."""
    return TrainConfig(steps=steps, batch_size=64, lr=2e-3, seed=seed)


class UnclipDecoder(MiniDalle):
    """DALL-E 2's decoder idea on our transformer: draw image codes from a CLIP IMAGE embedding.

    The caption words are replaced by `text_len` prefix vectors computed from the embedding,
    prefix = W e reshaped to (text_len, C); the rest is the mini DALL-E. It is trained on
    (CLIP image embedding of a picture, the picture's codes) and never sees a text embedding:
    at drawing time it gets either the prior's prediction or, to show why the prior exists,
    the raw text embedding.
    """

    def __init__(self, cfg: DalleConfig, embed_dim: int):
        super().__init__(cfg)
        self.embed_dim = embed_dim
        self.guidance = 1.0  # default classifier-free guidance scale; training sets its own
        self.cond_proj = nn.Linear(embed_dim, cfg.text_len * cfg.n_embd)

    def embed_prefix(self, emb: torch.Tensor) -> torch.Tensor:
        """(B, D) CLIP embeddings -> (B, text_len, C) prefix vectors."""
        return self.cond_proj(emb).view(len(emb), self.cfg.text_len, self.cfg.n_embd)


def train_decoder(clip=None, cfg: TrainConfig | None = None, model_cfg: DalleConfig | None = None,
                  vq=None, n_prefix: int = 4, progress: bool = True) -> tuple[UnclipDecoder, dict]:
    """Train the unCLIP decoder on (CLIP image embedding, VQ codes) of rendered pictures."""
    import time

    from .tinyvq import load_tiny_vq

    cfg = cfg or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    clip, vq = clip or _bundled_clip(), vq or load_tiny_vq()
    start = time.perf_counter()
    images, _ = render_kept(cfg.n_images, cfg.seed * 1000 + 500_000, "train", 500, cfg.plain_backgrounds,
                            cfg.sizes, progress, "images -> embeddings and codes")
    embs = clip.encode_images(to_pil(images))                                # (N, D)
    codes = vq_codes(vq, images)                                             # (N, h*w)
    data_seconds = time.perf_counter() - start
    model_cfg = model_cfg or DalleConfig()
    model_cfg.text_vocab, model_cfg.text_len, model_cfg.image_vocab = 1, n_prefix, vq.cfg.n_codes
    model_cfg.image_rows, model_cfg.image_cols = vq.grid
    decoder = UnclipDecoder(model_cfg, embs.shape[1])
    gen = torch.Generator().manual_seed(cfg.seed)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(codes), (cfg.batch_size,), generator=gen)
        emb = embs[idx].clone()                                             # (B, D)
        emb[torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout] = 0  # for guidance
        return emb, codes[idx]

    history = fit(decoder, next_batch, cfg, "training unCLIP decoder", progress)
    decoder.guidance = cfg.guidance  # the scale it draws with by default, saved with it
    history["data_seconds"] = round(data_seconds, 1)
    history["train_seconds"] = round(history["train_seconds"] + data_seconds, 1)
    return decoder, history


def save_decoder(decoder: UnclipDecoder, weights: Path = DECODER_WEIGHTS, extra: dict | None = None) -> Path:
    return _write_model(decoder, weights, {**asdict(decoder.cfg), "embed_dim": decoder.embed_dim,
                                           "guidance": decoder.guidance, **(extra or {})})


def load_decoder(weights: str | Path | None = None) -> UnclipDecoder:
    """The bundled unCLIP decoder (or `weights` with its .json beside it)."""
    state, raw, _ = _read_model(weights, DECODER_WEIGHTS, "unCLIP decoder", "python -m utils train prior")
    decoder = UnclipDecoder(DalleConfig(**_fields_of(DalleConfig, raw)), raw["embed_dim"])
    decoder.load_state_dict(state)
    decoder.guidance = raw.get("guidance", 1.0)
    return decoder.eval().requires_grad_(False)


@torch.no_grad()
def decode_embeddings(decoder: UnclipDecoder, vq, emb: torch.Tensor, guidance: float = 1.0,
                      temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Pictures from CLIP embeddings: (B, D) -> (B, 3, H, W) in [0, 1]."""
    empty = torch.zeros(1, decoder.embed_dim)
    codes = decoder.sample(emb, temperature, None, torch.Generator().manual_seed(seed), guidance, empty)
    return vq.decode_codes(codes.view(len(emb), decoder.cfg.image_rows, decoder.cfg.image_cols))


@torch.no_grad()
def evaluate_unclip(decoder: UnclipDecoder, prior: Prior, clip=None, judge=None, vq=None, pairs=None,
                    n_samples: int = 8, seed: int = 0, guidance: float | None = None) -> dict:
    """DALL-E 2's test: decode the prior's image embedding vs the raw text embedding.

    For each colour-shape pair, draw n_samples pictures from each guide; the judge of
    `utils.shapecheck` says how many have the right colour and shape (accuracy), and the right
    colour alone.
    """
    from . import data
    from .shapecheck import load_shape_judge
    from .tinyvq import load_tiny_vq

    clip, judge, vq = clip or _bundled_clip(), judge or load_shape_judge(), vq or load_tiny_vq()
    guidance = decoder.guidance if guidance is None else guidance
    pairs = list(data.SEEN if pairs is None else pairs)
    text = clip.encode_texts([pair_caption(c, s) for c, s in pairs])        # (P, D)
    result = {"n_captions": len(pairs), "n_samples": n_samples}
    for name, guide in (("text", text), ("prior", prior.predict(text))):
        images = decode_embeddings(decoder, vq, guide.repeat_interleave(n_samples, 0), guidance,
                                   seed=seed)                               # (P * n, 3, H, W)
        verdicts = judge.judge(images)
        wanted = [pair for pair in pairs for _ in range(n_samples)]
        result[name] = {
            "accuracy": round(sum(v["colour"] == c and v["shape"] == s
                                  for v, (c, s) in zip(verdicts, wanted)) / len(wanted), 4),
            "colour_accuracy": round(sum(v["colour"] == c for v, (c, _) in zip(verdicts, wanted)) / len(wanted), 4),
        }
    return result


# ---------------------------------------------------------------- command line


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:40] or "image"




def image_grid(images: torch.Tensor, gap: int = 2, ncols: int | None = None) -> Image.Image:
    """(n, 3, H, W) -> one PIL image, the n images in a square-ish grid (ncols = ceil(sqrt(n))
    by default) in reading order, `gap` white pixels apart."""
    n, _, H, W = images.shape
    ncols = ncols or math.ceil(math.sqrt(n))
    nrows = -(-n // ncols)
    canvas = torch.ones(3, nrows * H + (nrows - 1) * gap, ncols * W + (ncols - 1) * gap)
    for i, image in enumerate(images):
        top, left = (i // ncols) * (H + gap), (i % ncols) * (W + gap)
        canvas[:, top:top + H, left:left + W] = image
    return to_pil(canvas[None])[0]


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("dalle", help="draw shapes-world images from a caption with the mini DALL-E",
                              description="Draw n images for a caption with the mini DALL-E, rerank "
                                          "them with the tiny CLIP, save the best and a grid of all.")
    p.add_argument("caption", help='e.g. "a yellow square" or "a small red circle on the left"')
    p.add_argument("--n", type=int, default=8, help="samples to draw and rerank (default 8)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--temperature", type=float, default=1.0)
    p.add_argument("--top-k", type=int, default=None, help="sample among the k likeliest codes only")
    p.add_argument("--guidance", type=float, default=None,
                   help="classifier-free guidance scale (1: none; default: the model's, 2)")
    p.add_argument("--out", default=None, help="PNG for the best sample; the grid goes beside it as "
                                               "NAME-grid.png (new names are chosen if they exist)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=_cli)


def _cli(args) -> int:
    import sys
    import time
    import warnings

    from .assets import atomic_path
    from .errors import CourseError, to_json
    from .shapecheck import load_shape_judge

    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:  # errors: the contract of utils/__main__.py
        warnings.simplefilter("always")
        result = generate(args.caption, n=args.n, temperature=args.temperature, top_k=args.top_k,
                          seed=args.seed, guidance=args.guidance)
    if not (torch.isfinite(result.images).all() and torch.isfinite(result.scores).all()):
        raise CourseError("the mini DALL-E produced NaN or infinite pixels or scores; nothing was "
                          "written.", "Check the bundled weights with `python -m utils doctor`.")
    verdicts = load_shape_judge().judge(result.images)
    base = Path(args.out) if args.out else Path("outputs") / f"dalle-{_slug(args.caption)}-seed{args.seed}.png"
    if base.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        base = base.with_suffix(".png")
    base.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    fmt = Image.registered_extensions()[base.suffix.lower()]
    best = new_path(base)
    with atomic_path(best) as tmp:  # never a half-written file, whatever happens
        result.pil()[0].save(tmp, format=fmt)
    grid = new_path(best.with_name(f"{best.stem}-grid{best.suffix}"))
    with atomic_path(grid) as tmp:
        image_grid(result.images).save(tmp, format=fmt)
    samples = [{"rank": r, "clip_score": round(float(s), 4), "drawn_index": int(i), **v}
               for r, (s, i, v) in enumerate(zip(result.scores, result.order, verdicts))]
    report = {"caption": args.caption, "image": str(best), "grid": str(grid), "n": args.n,
              "seed": args.seed, "temperature": args.temperature, "top_k": args.top_k,
              "guidance": result.guidance,
              "best": samples[0], "samples": samples, "warnings": [str(w.message) for w in caught],
              "seconds": round(time.perf_counter() - start, 2),
              "judge": "colour: pixel hue statistics; shape: utils.shapecheck CNN (not the reranking CLIP)"}
    if args.json:
        print(to_json(report))
    else:
        for w in report["warnings"]:
            print(f"warning: {w}", file=sys.stderr)
        top = samples[0]
        print(f"best of {args.n} by CLIP (score {top['clip_score']:.3f}): judged {top['colour']} "
              f"{top['shape']}; wrote {best} and {grid}")
    return 0


def _report(report: dict, as_json: bool, lines: list[str]) -> None:
    print(json.dumps(report) if as_json else "\n".join(lines))


def _out_path(args, bundled: Path) -> Path:
    """Where `train` writes: `--out` is a folder (default: the bundled assets folder)."""
    if getattr(args, "epochs", None):
        raise SystemExit("this model is trained for a number of steps: use --steps, not --epochs")
    return Path(args.out) / bundled.name if getattr(args, "out", None) else bundled


def train_main(args) -> int:
    """`python -m utils train dalle`: train, judge, save next to the other assets, register them."""
    from . import data
    from .assets import register_asset, sha256_of
    from .shapecheck import load_shape_judge
    from .tinyvq import TINY_VQ_WEIGHTS

    seed = args.seed or 0
    cfg = TrainConfig(steps=args.steps or TrainConfig.steps, seed=seed)
    bundle, history = train_dalle(cfg, progress=not args.json)
    clip, judge = _bundled_reranker(), load_shape_judge()
    seen = evaluate_dalle(bundle, clip, judge, data.SEEN, seed=seed, repeats=5)
    held = evaluate_dalle(bundle, clip, judge, data.HELD_OUT, seed=seed, repeats=5)
    quality = {name: {k: r[k] for k in ("n_captions", "n_samples", "reranked_accuracy", "sample_accuracy",
                                        "any_right")}
               for name, r in (("seen", seen), ("heldout", held))}
    quality["reranker"] = RERANKER
    quality["judge"] = "utils.shapecheck: colour from pixel hues, shape from a separately trained CNN"
    out = _out_path(args, DALLE_WEIGHTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    config = save_tiny_dalle(bundle, out, extra={
        "vq_sha256": sha256_of(TINY_VQ_WEIGHTS),
        "trained": {"steps": cfg.steps, "seed": seed, "train_seconds": history["train_seconds"],
                    "final_loss": history["loss"][-1], "quality": quality}})
    if out.resolve().parent == ASSETS_DIR.resolve():
        rebuild = f"python -m utils train dalle --seed {seed}"
        register_asset(out, "mini DALL-E: causal transformer over [caption words; tiny-VQ codes]", rebuild)
        register_asset(config, "config and word vocabulary of tiny-dalle.safetensors", rebuild)
    report = {"weights": str(out), "config": str(config), "steps": cfg.steps, "seed": seed,
              "train_seconds": history["train_seconds"], "final_loss": history["loss"][-1], **quality}
    _report(report, args.json, [
        f"trained {cfg.steps} steps in {history['train_seconds']} s, final loss {history['loss'][-1]}",
        f"best-of-8 reranked sample right (colour and shape, independent judge): "
        f"{quality['seen']['reranked_accuracy']:.0%} of {quality['seen']['n_captions']} seen-pair captions, "
        f"{quality['heldout']['reranked_accuracy']:.0%} of {quality['heldout']['n_captions']} held-out ones",
        f"saved {out}"])
    return 0


def train_prior_main(args) -> int:
    """`python -m utils train prior`: fit the unCLIP prior and decoder to the tiny CLIP, compare, save.

    The two numbers of lesson 05: retrieval by the raw text embedding vs by the prior's image
    embedding, and pictures decoded from each (judged by `utils.shapecheck`).
    """
    from . import data
    from .assets import register_asset, sha256_of
    from .models import TINY_WEIGHTS
    from .tinyvq import TINY_VQ_WEIGHTS

    seed = args.seed or 0
    steps = args.steps or 1500
    clip = _bundled_clip()
    prior, history = train_prior(clip, steps=steps, seed=seed, progress=not args.json)
    decoder_cfg = decoder_recipe(seed)
    decoder, decoder_history = train_decoder(clip, decoder_cfg, progress=not args.json)
    retrieval = evaluate_prior(prior, clip)
    decoding = evaluate_unclip(decoder, prior, clip, pairs=data.SEEN, seed=seed)
    out = _out_path(args, PRIOR_WEIGHTS)
    out.parent.mkdir(parents=True, exist_ok=True)
    clip_sha, vq_sha = sha256_of(TINY_WEIGHTS), sha256_of(TINY_VQ_WEIGHTS)
    config = save_prior(prior, out, extra={"clip_sha256": clip_sha, "trained": {
        "steps": steps, "seed": seed, "retrieval": retrieval, "decoding": decoding}})
    decoder_out = out.with_name(DECODER_WEIGHTS.name)
    decoder_config = save_decoder(decoder, decoder_out, extra={"clip_sha256": clip_sha, "vq_sha256": vq_sha, "trained": {
        "steps": decoder_cfg.steps, "seed": seed, "train_seconds": decoder_history["train_seconds"],
        "final_loss": decoder_history["loss"][-1], "decoding": decoding}})
    if out.resolve().parent == ASSETS_DIR.resolve():
        rebuild = f"python -m utils train prior --seed {seed}"
        register_asset(out, "unCLIP prior: MLP from tiny-CLIP text embeddings to image embeddings", rebuild)
        register_asset(config, "config of tiny-prior.safetensors", rebuild)
        register_asset(decoder_out, "unCLIP decoder: transformer drawing tiny-VQ codes from a tiny-CLIP "
                                    "image embedding", rebuild)
        register_asset(decoder_config, "config of tiny-unclip-decoder.safetensors", rebuild)
    report = {"weights": str(out), "decoder": str(decoder_out), "steps": steps, "seed": seed,
              "train_seconds": history["train_seconds"] + decoder_history["train_seconds"],
              "retrieval": retrieval, "decoding": decoding}
    k = retrieval["k"]
    _report(report, args.json, [
        f"retrieval precision@{k} on seen pairs: text {retrieval['text_seen'][f'precision@{k}']:.3f}, "
        f"prior {retrieval['prior_seen'][f'precision@{k}']:.3f}; cosine to the caption's pictures: "
        f"{retrieval['text_seen']['cos_to_own_images']:.3f} -> {retrieval['prior_seen']['cos_to_own_images']:.3f}",
        f"decoded pictures with the right colour and shape: {decoding['text']['accuracy']:.0%} from the text "
        f"embedding, {decoding['prior']['accuracy']:.0%} from the prior's image embedding",
        f"saved {out} and {decoder_out}"])
    return 0
