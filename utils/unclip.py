"""DALL-E 2 (unCLIP, Ramesh et al. 2022) at small scale (lesson 05): a prior and a decoder.

    prior:   CLIP text embedding t  ->  a CLIP image embedding x      (ours: an MLP)
    decoder: image embedding x      ->  a picture      (ours: the mini DALL-E, prefix W x)

Why not decode t? CLIP's text and image embeddings lie apart on the sphere (the "modality gap")
and the decoder only saw image embeddings. Both learn from the bundled tiny CLIP's embeddings.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from . import data
from .assets import ASSETS_DIR
from .dalle import DalleConfig, MiniDalle, bundled
from .dalle_data import PictureSet, pair_caption, render_kept, vq_codes
from .dalle_train import TrainConfig, fit_codes
from .i18n import t
from .io import fields_of, load_checkpoint
from .shapecheck import load_shape_judge
from .tinyvq import load_tiny_vq
from .train import FitConfig, fit
from .viz import to_pil

PRIOR_WEIGHTS = ASSETS_DIR / "tiny-prior.safetensors"
DECODER_WEIGHTS = ASSETS_DIR / "tiny-unclip-decoder.safetensors"
EMBEDDER = "tiny-shapes"  # the CLIP whose embedding space the prior and decoder use
RETRAIN = "python -m course_tools train prior"


@dataclass
class PriorConfig:
    embed_dim: int = 64
    hidden: int = 256
    n_layer: int = 2


class Prior(nn.Module):
    """unCLIP's prior as an MLP: a CLIP text embedding t -> the image embedding x it describes.
    Trained on 1 - cos(prior(t), x), it predicts the mean direction of a caption's images
    (DALL-E 2's diffusion prior samples one instead)."""

    def __init__(self, cfg: PriorConfig):
        super().__init__()
        self.cfg = cfg
        layers, width = [], cfg.embed_dim
        for _ in range(cfg.n_layer):
            layers += [nn.Linear(width, cfg.hidden), nn.GELU()]
            width = cfg.hidden
        self.mlp = nn.Sequential(*layers, nn.Linear(width, cfg.embed_dim))

    def forward(self, text_emb: torch.Tensor) -> torch.Tensor:
        """(B, D) text embeddings -> (B, D) unit image embeddings."""
        return F.normalize(self.mlp(text_emb), dim=-1)

    @torch.no_grad()
    def predict(self, text_emb: torch.Tensor) -> torch.Tensor:
        self.eval()
        return self(text_emb)


def clip_pairs(clip, pictures: PictureSet,
               progress: bool = True) -> tuple[torch.Tensor, torch.Tensor, list[dict]]:
    """CLIP embeddings of the pictures and of their captions: (N, D), (N, D), attrs."""
    images, attrs = render_kept(pictures)
    image_emb = clip.encode_images(to_pil(images), progress=progress)      # (N, D)
    captions = [a["caption"] for a in attrs]
    index = {c: i for i, c in enumerate(dict.fromkeys(captions))}           # each caption once
    text_emb = clip.encode_texts(list(index))[torch.tensor([index[c] for c in captions])]
    return image_emb, text_emb, attrs


@dataclass
class PriorTrainConfig:
    """Hyper-parameters of `train_prior`; the defaults rebuild the bundled prior."""

    steps: int = 1500
    n_images: int = 10_000
    batch_size: int = 256
    lr: float = 2e-3
    seed: int = 0
    plain_only: bool = True
    sizes: tuple[str, ...] | None = ("large",)


def train_prior(clip=None, cfg: PriorTrainConfig | None = None,
                progress: bool = True) -> tuple[Prior, dict]:
    """Fit the prior on 1 - cos(prior(t), x) over the seen pairs' (caption, image) embeddings;
    returns (prior, history)."""
    cfg, clip = cfg or PriorTrainConfig(), clip or bundled(EMBEDDER)
    torch.manual_seed(cfg.seed)
    start = time.perf_counter()
    pictures = PictureSet(cfg.n_images, cfg.seed, "train", cfg.plain_only, cfg.sizes,
                          chunk=cfg.n_images)
    image_emb, text_emb, _ = clip_pairs(clip, pictures, progress)
    prior = Prior(PriorConfig(embed_dim=image_emb.shape[1]))
    gen = torch.Generator().manual_seed(cfg.seed)

    def loss_of(step: int) -> torch.Tensor:
        idx = torch.randint(len(image_emb), (cfg.batch_size,), generator=gen)
        return (1 - (prior(text_emb[idx]) * image_emb[idx]).sum(-1)).mean()  # 1 - cos

    done = fit(prior, loss_of, FitConfig(cfg.steps, cfg.lr, "annealing", weight_decay=1e-4),
               t("training prior"), progress=progress)
    history = {"loss": [round(x, 4) for x in done["loss"][::10]],
               "train_seconds": round(time.perf_counter() - start, 1)}
    return prior.eval().requires_grad_(False), history


@torch.no_grad()
def evaluate_prior(prior: Prior, clip=None, n_images: int = 1200, seed: int = 99,
                   k: int = 10) -> dict:
    """Retrieval guided by the raw text embedding vs the prior's image embedding, over fresh seen
    and held-out images, a query per pair: precision@k, mAP, and the mean cosine to its images."""
    clip = clip or bundled(EMBEDDER)
    parts = [clip_pairs(clip, PictureSet(n, seed, split, chunk=n), False)  # (images, texts, attrs)
             for n, split in ((n_images, "test"), (n_images // 3, "heldout"))]
    gallery = torch.cat([image_emb for image_emb, _, _ in parts])           # (G, D)
    labels = [(a["colour"], a["shape"]) for _, _, attrs in parts for a in attrs]
    pairs = data.SPLITS["all"]
    text_emb = clip.encode_texts([pair_caption(c, s) for c, s in pairs])    # (P, D)
    result: dict = {"k": k, "gallery": len(gallery)}
    names = (f"precision@{k}", "mAP", "cos_to_own_images")
    for name, guide in (("text", text_emb), ("prior", prior.predict(text_emb))):
        sims = guide @ gallery.T                                            # (P, G)
        stats = {"seen": [], "heldout": []}
        for p, pair in enumerate(pairs):
            hits = torch.tensor([lab == pair for lab in labels])            # (G,)
            ranked = hits[sims[p].argsort(descending=True)].float()        # (G,)
            precision = ranked.cumsum(0) / torch.arange(1, len(ranked) + 1)
            ap = float((precision * ranked).sum() / ranked.sum().clamp(min=1))
            group = "heldout" if pair in data.HELD_OUT else "seen"
            stats[group].append((float(ranked[:k].mean()), ap, float(sims[p][hits].mean())))
        for group, rows in stats.items():
            means = torch.tensor(rows).mean(0).tolist()                     # over the group's pairs
            result[f"{name}_{group}"] = {n: round(x, 4) for n, x in zip(names, means)}
    return result


def load_prior(weights: str | Path | None = None) -> Prior:
    """The bundled unCLIP prior for the tiny CLIP (or `weights` with its .json beside it)."""
    state, raw, _ = load_checkpoint(weights, PRIOR_WEIGHTS, "prior", RETRAIN)
    prior = Prior(PriorConfig(**fields_of(PriorConfig, raw)))
    prior.load_state_dict(state)
    return prior.eval().requires_grad_(False)


def decoder_recipe(seed: int = 0, steps: int = 2000) -> TrainConfig:
    """How the bundled unCLIP decoder was trained: like the mini DALL-E, with batch 64."""
    return TrainConfig(steps=steps, batch_size=64, lr=2e-3, seed=seed)


class UnclipDecoder(MiniDalle):
    """The mini DALL-E drawing codes from a CLIP IMAGE embedding e: the caption words become
    `text_len` prefix vectors W e. It never sees a text embedding in training."""

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
    cfg = cfg or TrainConfig()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    clip, vq = clip or bundled(EMBEDDER), vq or load_tiny_vq()
    start = time.perf_counter()
    images, _ = render_kept(cfg.pictures(cfg.seed * 1000 + 500_000), progress,
                            t("images -> embeddings and codes"))
    embs, codes = clip.encode_images(to_pil(images)), vq_codes(vq, images)  # (N, D), (N, h*w)
    data_seconds = time.perf_counter() - start
    model_cfg = replace(model_cfg or DalleConfig(), text_vocab=1, text_len=n_prefix,
                        image_vocab=vq.cfg.n_codes, image_rows=vq.grid[0], image_cols=vq.grid[1])
    decoder = UnclipDecoder(model_cfg, embs.shape[1])
    gen = torch.Generator().manual_seed(cfg.seed)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(len(codes), (cfg.batch_size,), generator=gen)
        emb = embs[idx].clone()                                             # (B, D)
        emb[torch.rand(cfg.batch_size, generator=gen) < cfg.caption_dropout] = 0  # for guidance
        return emb, codes[idx]

    history = fit_codes(decoder, next_batch, cfg, t("training unCLIP decoder"), progress,
                        data_seconds=data_seconds)
    decoder.guidance = cfg.guidance  # the scale it draws with by default, saved with it
    return decoder, history


def load_decoder(weights: str | Path | None = None) -> UnclipDecoder:
    """The bundled unCLIP decoder (or `weights` with its .json beside it)."""
    state, raw, _ = load_checkpoint(weights, DECODER_WEIGHTS, "unCLIP decoder", RETRAIN)
    decoder = UnclipDecoder(DalleConfig(**fields_of(DalleConfig, raw)), raw["embed_dim"])
    decoder.load_state_dict(state)
    decoder.guidance = raw.get("guidance", 1.0)
    return decoder.eval().requires_grad_(False)


@torch.no_grad()
def decode_embeddings(decoder: UnclipDecoder, vq, emb: torch.Tensor, guidance: float = 1.0,
                      temperature: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Pictures from CLIP embeddings: (B, D) -> (B, 3, H, W) in [0, 1]."""
    codes = decoder.sample(emb, temperature, None, torch.Generator().manual_seed(seed), guidance,
                           torch.zeros(1, decoder.embed_dim))               # (B, h*w)
    return vq.decode_codes(codes.view(len(emb), decoder.cfg.image_rows, decoder.cfg.image_cols))


@torch.no_grad()
def evaluate_unclip(decoder: UnclipDecoder, prior: Prior, clip=None, judge=None, vq=None,
                    pairs=None, n_samples: int = 8, seed: int = 0) -> dict:
    """DALL-E 2's test: n_samples pictures per pair from the prior's embedding vs the raw text
    embedding, drawn at `decoder.guidance`; `utils.shapecheck` judges colour and shape (accuracy)
    and colour alone."""
    clip, judge, vq = clip or bundled(EMBEDDER), judge or load_shape_judge(), vq or load_tiny_vq()
    pairs = list(data.SEEN if pairs is None else pairs)
    wanted = [pair for pair in pairs for _ in range(n_samples)]
    text = clip.encode_texts([pair_caption(c, s) for c, s in pairs])        # (P, D)
    result = {"n_captions": len(pairs), "n_samples": n_samples}
    for name, guide in (("text", text), ("prior", prior.predict(text))):
        images = decode_embeddings(decoder, vq, guide.repeat_interleave(n_samples, 0),
                                   decoder.guidance, seed=seed)
        verdicts = judge.judge(images)                                      # P * n of them
        right = [(v["colour"] == c, v["shape"] == s) for v, (c, s) in zip(verdicts, wanted)]
        result[name] = {"accuracy": round(sum(a and b for a, b in right) / len(wanted), 4),
                        "colour_accuracy": round(sum(a for a, _ in right) / len(wanted), 4)}
    return result
