"""A mini DALL-E (lesson 05): caption words and image codes in ONE stream, read by a causal GPT.

DALL-E 1 (Ramesh et al. 2021) writes a caption's words and its image's VQ codes in one stream
and trains a GPT to predict the next token:

    stream = [w_1 ... w_T | c_1 ... c_N]        w: caption words, c: image codes (row by row)
    loss   = - sum_i log p(c_i | w_1..w_T, c_1..c_{i-1})

It samples the codes one at a time, decodes them, and lets CLIP rerank the samples (DALL-E 1
drew 512 and kept the best). The transformer follows nanoGPT (Karpathy). Beside it:
dalle_data.py (tokens and training pictures), dalle_train.py (training, evaluation, the `dalle`
command) and unclip.py (DALL-E 2's prior and decoder).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

from .assets import ASSETS_DIR
from .dalle_data import SPECIALS, WordTokenizer, readable_caption
from .errors import check_range
from .io import fields_of, load_checkpoint, save_checkpoint
from .models import TINY_VQ_NAME, load_clip
from .tinyvq import load_tiny_vq
from .viz import to_pil

if TYPE_CHECKING:
    from PIL import Image

DALLE_WEIGHTS = ASSETS_DIR / "tiny-dalle.safetensors"
DALLE_CONFIG = ASSETS_DIR / "tiny-dalle.json"
RERANKER = TINY_VQ_NAME  # the default reranker: the tiny CLIP fine-tuned on VQ pictures
SAMPLE_CHUNK = 64  # images sampled at once by `generate`


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

    @property
    def image_len(self) -> int:
        return self.image_rows * self.image_cols

    @property
    def block_size(self) -> int:
        # The last image token is never an input: the stream the model reads is one shorter.
        return self.text_len + self.image_len - 1


class CausalSelfAttention(nn.Module):
    """Multi-head attention, position t reads positions <= t: softmax(Q K^T / sqrt(hs) + mask) V."""

    def __init__(self, cfg: DalleConfig):
        super().__init__()
        assert cfg.n_embd % cfg.n_head == 0, "n_embd must be a multiple of n_head"
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd)

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        B, T, C = x.shape
        q, k, v = (part.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for part in self.qkv(x).split(C, dim=2))                 # 3 x (B, nh, T, hs)
        if cache is not None:  # sampling: keep the keys and values of the positions seen so far
            if cache:
                k = torch.cat([cache["k"], k], dim=2)                  # (B, nh, T_past + T, hs)
                v = torch.cat([cache["v"], v], dim=2)
            cache.update(k=k, v=v)
        # New positions come last, so they may read every cached one: a mask is needed only
        # when the queries are the whole stream (training, or the first sampling call).
        attend = partial(F.scaled_dot_product_attention, is_causal=q.shape[2] == k.shape[2])
        if torch.is_autocast_enabled("cpu"):  # bf16 on a CPU: attention is faster in float32
            with torch.autocast("cpu", enabled=False):
                y = attend(q.float(), k.float(), v.float()).to(q.dtype)
        else:
            y = attend(q, k, v)                                             # (B, nh, T, hs)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))     # (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, cfg: DalleConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd)
        self.mlp = nn.Sequential(nn.Linear(cfg.n_embd, 4 * cfg.n_embd), nn.GELU(),
                                 nn.Linear(4 * cfg.n_embd, cfg.n_embd))

    def forward(self, x: torch.Tensor, cache: dict | None = None) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp(self.ln_2(x))


class MiniDalle(nn.Module):
    """GPT over [caption words; image codes] that predicts the image codes; two embedding
    tables, one stream. Positions: one embedding per caption slot, and row_emb[r] + col_emb[c]
    for the image token at grid cell (r, c), so 2-D neighbours are known (as in DALL-E 1)."""

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
        """What the image is conditioned on: word ids (B, T_text) -> (B, T_text, C)."""
        return self.word_emb(words)

    def run(self, x: torch.Tensor, start: int = 0,
            caches: list[dict] | None = None) -> torch.Tensor:
        """Embedded tokens at stream positions start.. -> final hidden states, (B, T, C)."""
        T = x.shape[1]
        if start + T > self.cfg.block_size:
            raise ValueError(f"stream of {start + T} tokens is longer than block_size "
                             f"{self.cfg.block_size}")
        grid = self.row_emb.weight[:, None] + self.col_emb.weight[None, :]  # (h, w, C)
        positions = torch.cat([self.text_pos.weight, grid.flatten(0, 1)])  # (T_text + h*w, C)
        x = x + positions[start:start + T]                                 # (B, T, C)
        for block, cache in zip(self.blocks, caches or [None] * len(self.blocks)):
            x = block(x, cache)
        return self.ln_f(x)

    def forward(self, words: torch.Tensor, codes: torch.Tensor,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """words (B, T_text), codes (B, n) with n < image_len -> logits (B, n + 1, K), where
        logits[:, i] predicts image token i from the caption and codes[:, :i]; with targets
        (B, n + 1), also the mean cross-entropy."""
        prefix = self.embed_prefix(words)                                  # (B, T_text, C)
        h = self.run(torch.cat([prefix, self.code_emb(codes)], dim=1))     # (B, T, C)
        logits = self.head(h[:, prefix.shape[1] - 1:])                     # (B, n + 1, K)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.flatten(0, 1), targets.flatten())

    def loss(self, words: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """Next-token loss of full images: words (B, T_text), codes (B, N) -> scalar."""
        return self(words, codes[:, :-1], targets=codes)[1]

    @torch.no_grad()
    def sample(self, words: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
               generator: torch.Generator | None = None, guidance: float = 1.0,
               empty: torch.Tensor | None = None) -> torch.Tensor:
        """Draw image codes one by one, with a KV cache: words (B, T_text) -> codes (B, N).

        p(c_i) = softmax(logits_i / temperature) over the top_k likeliest codes (1: greedy).
        Classifier-free guidance s != 1, with `empty` the empty caption's ids (1, T_text):
            logits = logits(empty) + s * (logits(caption) - logits(empty)).
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


@dataclass
class Sampling:
    """How each code is drawn: p = softmax(logits / temperature) over the top_k likeliest codes
    (None: all; 1: greedy), with classifier-free guidance scale `guidance` (1: none). A
    temperature or guidance of None is the model's own (`TinyDalle`)."""

    temperature: float | None = None
    top_k: int | None = None
    guidance: float | None = None

    def __post_init__(self):
        t, g = self.temperature, self.guidance
        check_range("temperature", None if t is None else float(t), 0, strict_lo=True)
        check_range("top_k", self.top_k, 1)
        check_range("guidance", None if g is None else float(g), 0)


@dataclass
class TinyDalle:
    """What it takes to draw: the word tokenizer, the transformer and the VQ decoder."""

    model: MiniDalle
    tokenizer: WordTokenizer
    vq: nn.Module
    guidance: float = 1.0  # the sampling defaults saved with the model: guidance scale
    temperature: float = 1.0  # and temperature

    def sampling(self, sampling: Sampling | None = None) -> Sampling:
        """`sampling` with the model's own temperature and guidance where it leaves them None."""
        s = sampling or Sampling()
        return Sampling(self.temperature if s.temperature is None else s.temperature, s.top_k,
                        self.guidance if s.guidance is None else s.guidance)

    def sample_codes(self, captions: Sequence[str], sampling: Sampling | None = None,
                     seed: int = 0) -> torch.Tensor:
        """One code grid per caption: (B,) captions -> (B, h, w) long, on the model's device."""
        s, device = self.sampling(sampling), next(self.model.parameters()).device
        gen = torch.Generator(device=device).manual_seed(seed)
        self.model.eval()
        codes = self.model.sample(self.tokenizer.encode(captions).to(device), s.temperature,
                                  s.top_k, gen, s.guidance, self.tokenizer.encode("").to(device))
        return codes.view(len(captions), *self.vq.grid)                   # (B, h, w)

    @torch.no_grad()
    def draw(self, captions: Sequence[str], sampling: Sampling | None = None, seed: int = 0,
             batch_size: int = 64) -> torch.Tensor:
        """Images for the captions: (B,) -> (B, 3, H, W) in [0, 1], on the CPU; batch j of
        `batch_size` draws from seed + j * batch_size."""
        codes = [self.sample_codes(list(captions[i:i + batch_size]), sampling, seed + i)
                 for i in range(0, len(captions), batch_size)]              # (b, h, w) each
        return torch.cat([self.vq.decode_codes(c).cpu() for c in codes])


def save_tiny_dalle(bundle: TinyDalle, weights: Path = DALLE_WEIGHTS,
                    extra: dict | None = None) -> Path:
    """Write the transformer (float16 safetensors) and a JSON config with its vocabulary."""
    return save_checkpoint(bundle.model, weights, {
        **asdict(bundle.model.cfg), "words": bundle.tokenizer.vocab[len(SPECIALS):],
        "guidance": bundle.guidance, "temperature": bundle.temperature,
        "image_tokenizer": "utils.tinyvq (tiny-vq.safetensors)", **(extra or {})})


def load_tiny_dalle(weights: str | Path | None = None, vq_weights: str | Path | None = None,
                    device: str | torch.device = "cpu") -> TinyDalle:
    """The bundled mini DALL-E (or `weights`, .json beside it) and the tiny VQ, on `device`."""
    state, raw, weights = load_checkpoint(weights, DALLE_WEIGHTS, "mini DALL-E",
                                          "python -m course_tools train dalle")
    cfg = DalleConfig(**fields_of(DalleConfig, raw))
    model = MiniDalle(cfg)
    model.load_state_dict(state)
    vq = load_tiny_vq(vq_weights, device=device)
    if vq.cfg.n_codes != cfg.image_vocab or tuple(vq.grid) != (cfg.image_rows, cfg.image_cols):
        raise ValueError(f"{weights} was trained on {cfg.image_vocab} codes in a {cfg.image_rows}x"
                         f"{cfg.image_cols} grid, the tiny VQ has {vq.cfg.n_codes} in "
                         f"{tuple(vq.grid)}: it was rebuilt after the DALL-E. Retrain it: "
                         "python -m course_tools train dalle")
    return TinyDalle(model.to(device).eval().requires_grad_(False),
                     WordTokenizer(raw["words"], cfg.text_len), vq,
                     raw.get("guidance", 1.0), raw.get("temperature", 1.0))


_CACHE: dict[tuple, object] = {}


def bundled(name: str = "dalle", device: str | torch.device = "cpu"):
    """A bundled model, loaded once per device: "dalle" (the mini DALL-E), or a tiny CLIP:
    "tiny-shapes" (the prior and decoder's embedding space) or "tiny-shapes-vq" (the same CLIP
    fine-tuned on tiny-VQ pictures: `RERANKER`)."""
    key = (name, str(device))
    if key not in _CACHE:
        _CACHE[key] = (load_tiny_dalle(device=device) if name == "dalle"
                       else load_clip(name, device=device))
    return _CACHE[key]


@dataclass
class Generation:
    """n samples for one caption, best CLIP score first (on the CPU): images (n, 3, H, W) in
    [0, 1]; scores (n,) CLIP cosine similarities; order (n,) each image's index among the
    samples as drawn (order[0]: CLIP's favourite); drawn (n, 3, H, W): before reranking."""

    caption: str
    images: torch.Tensor
    scores: torch.Tensor
    order: torch.Tensor
    drawn: torch.Tensor
    codes: torch.Tensor
    guidance: float = 1.0

    def pil(self) -> list[Image.Image]:
        return to_pil(self.images)


def generate(caption: str, n: int = 8, sampling: Sampling | None = None, seed: int = 0,
             rerank: bool = True, dalle: TinyDalle | None = None, clip=None) -> Generation:
    """Draw n images for `caption` and rerank them by score_i = cos(CLIP_image(x_i),
    CLIP_text(caption)), as DALL-E 1 did (rerank=False: kept in the order drawn). dalle and
    clip default to the bundled mini DALL-E and `RERANKER` (the plain tiny CLIP misreads the
    VQ's blurred outlines); sampling: `Sampling` (None: the model's own)."""
    check_range("n", n, 1)
    dalle, clip = dalle or bundled("dalle"), clip or bundled(RERANKER)
    caption = readable_caption(caption, dalle.tokenizer)  # English, or refused in one line
    # in chunks of SAMPLE_CHUNK, chunk j from seed + j: memory stays bounded for any n
    codes = torch.cat([dalle.sample_codes([caption] * min(SAMPLE_CHUNK, n - start), sampling,
                                          seed + start // SAMPLE_CHUNK)
                       for start in range(0, n, SAMPLE_CHUNK)])             # (n, h, w)
    with torch.no_grad():
        drawn = dalle.vq.decode_codes(codes).cpu()                          # (n, 3, H, W)
    scores = (clip.encode_images(to_pil(drawn))
              @ clip.encode_texts([caption]).T).squeeze(1).cpu()            # (n, D) @ (D, 1)
    order = scores.argsort(descending=True) if rerank else torch.arange(n)
    return Generation(caption, drawn[order], scores[order], order, drawn, codes.cpu()[order],
                      dalle.sampling(sampling).guidance)
