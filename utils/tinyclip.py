"""The tiny CLIP: an open_clip `CLIP` small enough to train from scratch on a CPU (lesson 01).

Trained on the shapes world (`utils.data`) with `utils.losses`. One step on B image-caption pairs:
    I = normalize(image_encoder(images)); T = normalize(text_encoder(captions))  # (B, D) each
    loss = contrastive_loss(I, T, exp(t))     # t: the learned log logit scale

    model, history = train_clip(TrainConfig.live())   # lesson 01; train_clip(): the bundled recipe
    python -m course_tools train clip --seed 0        # rebuild the bundled model, then:
    python -m course_tools train languages            # its text tower learns six languages
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product

import torch

from . import data
from .i18n import t
from .losses import contrastive_loss, soft_contrastive_loss
from .models import TINY_VQ_NAME

# The bundled model (utils/assets/tiny-shapes.json). Images: open_clip's ModifiedResNet (OpenAI's
# RN50 at width 8, one block per stage). Text: a 2-layer transformer over open_clip's BPE tokens;
# its 49,408-word embedding table is most of the 3.7M weights.
TINY_CONFIG = {"embed_dim": 64,
               "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8,
                              "head_width": 32},
               "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4,
                            "layers": 2, "mlp_ratio": 2.0}}
# The live model (issue 18): the same text tower with 8 tokens (the longest prompt is 6 plus start
# and end) and a ShapesCNN for images: on a CPU a step costs about half the ResNet's, and 95% took
# 300 steps here, 750 with the ResNet.
LIVE_CONFIG = {"embed_dim": 64,
               "vision_cfg": {"image_size": 64, "patch_size": 2, "cnn_widths": [16, 32, 64]},
               "text_cfg": {**TINY_CONFIG["text_cfg"], "context_length": 8}}
# The live recipe: pre-rendered images, captions "a {colour} {shape}" with soft targets, a frozen
# token table, a high learning rate with a short warm-up and a linear decay, stop at 95%.
LIVE_RECIPE = dict(steps=400, batch_size=128, lr=3e-3, warmup=25, schedule="linear", pool=8192,
                   caption_template="a {colour} {shape}", soft_targets=True,
                   freeze_token_embedding=True, partial_captions=0.0, eval_every=25,
                   eval_images=1000, threads=2, stop_at=0.95)
# Captions naming one attribute (TrainConfig.partial_captions): learning "star" apart from "red"
# helps on colour-shape pairs never seen (data.HELD_OUT).
PARTIAL_TEMPLATES = ["a {shape}", "a picture of a {shape}", "a drawing of a {shape}",
                     "a {colour} shape"]
# open_clip's default image normalisation (what its preprocess applies to this config).
MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass
class TrainConfig:
    """Hyper-parameters of `train_clip`. The defaults rebuild the bundled model."""

    steps: int = 3000
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 0.05
    warmup: int = 100
    seed: int = 0
    split: str = "train"  # "train" leaves out data.HELD_OUT; "all" trains on every pair
    partial_captions: float = 0.2  # fraction of captions from PARTIAL_TEMPLATES
    eval_every: int = 100  # zero-shot accuracy on eval_images fresh test images; 0: never
    eval_images: int = 200
    threads: int = 1  # torch threads for the model (one more thread draws the next batch)
    vq_share: float = 0.0  # share of each batch after a tiny-VQ round trip (lesson 05's reranker)
    model_config: dict = field(default_factory=lambda: json.loads(json.dumps(TINY_CONFIG)))
    # The fast live recipe (TrainConfig.live()) turns these on; the defaults keep the bundled one.
    schedule: str = "cosine"  # "cosine" or "linear" after the warm-up
    pool: int = 0  # 0: fresh images every step; N: render N images once and draw batches from them
    caption_template: str | None = None  # None: data's varied captions; e.g. "a {colour} {shape}"
    soft_targets: bool = False  # pairs in a batch with the same caption count as matches too
    freeze_token_embedding: bool = False  # keep the random 49,408 x 64 token table fixed (faster)
    stop_at: float = 0.0  # stop once the on-the-fly eval accuracy reaches this (0: never)

    @classmethod
    def live(cls, **overrides) -> TrainConfig:
        """The recipe lesson 01 trains live: LIVE_RECIPE on LIVE_CONFIG (8 text tokens)."""
        model_config = json.loads(json.dumps(LIVE_CONFIG))  # a deep copy
        return cls(**{**LIVE_RECIPE, "model_config": model_config, **overrides})


class ShapesCNN(torch.nn.Module):
    """The live model's image encoder: (N, 3, H, W) -> (N, embed_dim), a small BatchNorm CNN.

    A patch_size x patch_size convolution cuts the image into patches (64 px -> 32 x 32), then
    each width is one block: 3x3 convolution, 2x2 max-pool, BatchNorm, GELU (32 -> 16 -> 8 -> 4).
    The largest value of each channel over the positions, projected, is the embedding.
    """

    def __init__(self, image_size: int, patch_size: int, cnn_widths: list[int], embed_dim: int):
        super().__init__()
        nn, width = torch.nn, cnn_widths[0]
        self.image_size = image_size
        layers = [nn.Conv2d(3, width, patch_size, patch_size, bias=False), nn.BatchNorm2d(width),
                  nn.GELU()]
        for w in cnn_widths:
            layers += [nn.Conv2d(width, w, 3, padding=1, bias=False), nn.MaxPool2d(2),
                       nn.BatchNorm2d(w), nn.GELU()]
            width = w
        self.blocks = nn.Sequential(*layers)
        self.proj = nn.Linear(width, embed_dim)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.proj(self.blocks(images).amax((2, 3)))


def build_model(config: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised open_clip CLIP from a model config (TINY_CONFIG by default); a
    vision_cfg with "cnn_widths" (LIVE_CONFIG) gets a ShapesCNN as its image encoder."""
    from open_clip.model import CLIP

    config = config or TINY_CONFIG
    vision = config["vision_cfg"]
    torch.manual_seed(seed)
    if "cnn_widths" not in vision:
        return CLIP(**config, output_dict=True)
    resnet = {"image_size": vision["image_size"], "layers": [1, 1, 1, 1], "width": 8}  # replaced:
    model = CLIP(**{**config, "vision_cfg": resnet}, output_dict=True)
    model.visual = ShapesCNN(embed_dim=config["embed_dim"], **vision)
    return model


def get_tokenizer(config: dict | None = None):
    """open_clip's BPE tokenizer, padded or cut to the config's context length."""
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=(config or TINY_CONFIG)["text_cfg"]["context_length"])


def image_size(model) -> int:
    """The side in pixels that a tiny CLIP's image tower expects (64 unless its config says)."""
    return getattr(getattr(getattr(model, "model", model), "visual", None), "image_size", 64)


def normalize_images(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [0, 1] -> the model's input, (x - mean) / std per channel."""
    from torchvision.transforms.functional import normalize

    return normalize(images, MEAN, STD)


class CachedTokenizer:
    """Tokenise each distinct caption once (the shapes world has only a few thousand)."""

    def __init__(self, tokenizer):
        self.tokenizer, self.cache = tokenizer, {}

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        self.cache.update(zip(missing, self.tokenizer(missing) if missing else []))
        return torch.stack([self.cache[t] for t in texts])  # (N, context_length)


@torch.no_grad()
def embed_images(model, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] -> (N, D) L2-normalised image embeddings, on the CPU.

    The images go to the model's device (a GPU if it is there); the embeddings come back."""
    model = getattr(model, "model", model).eval()  # utils.models.CLIP too
    device = next(model.parameters()).device
    return torch.cat([model.encode_image(normalize_images(images[i:i + batch_size].to(device)),
                                         normalize=True).cpu()
                      for i in range(0, len(images), batch_size)])


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Texts -> (N, D) L2-normalised text embeddings, computed on the model's device, on the CPU."""
    model = getattr(model, "model", model).eval()
    tokens = tokenizer(texts).to(next(model.parameters()).device)
    return model.encode_text(tokens, normalize=True).cpu()


def evaluate(model, n: int = 1000, seed: int = 1234, splits=("test", "heldout"),
             image_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
    """Zero-shot accuracy on `n` fresh images of each split (image_map: applied to them first).

    "colour+shape": top-1 among the 24 prompts "a {colour} {shape}" (held-out pairs included),
    and "colour", "shape" of that best prompt on their own; "size": top-1 among
    "a {size} {colour} {shape}" (48), "position": among "a {colour} {shape} {where}" (96).
    """
    context = getattr(model, "model", model).context_length  # 32 tokens; 8 for the live model
    tokenizer = CachedTokenizer(get_tokenizer({"text_cfg": {"context_length": context}}))
    prompt_sets = {}  # the attributes scored -> (every combination, its prompts' embeddings)
    families = {("colour", "shape"): "a {colour} {shape}", ("size",): "a {size} {colour} {shape}",
                ("position",): "a {colour} {shape} {where}"}
    for keys, template in families.items():
        combos = [dict(colour=c, shape=s, size=z, position=p)
                  for c, s, z, p in product(data.COLOURS, data.SHAPES,
                                            data.SIZES if "size" in keys else ["small"],
                                            data.POSITIONS if "position" in keys else ["left"])]
        texts = [data.caption(a, template) for a in combos]
        prompt_sets[keys] = combos, embed_texts(model, tokenizer, texts)
    results = {}
    for split in splits:
        images, attrs = data.render_batch(n, seed=seed, split=split, size=image_size(model))
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
        image_emb = embed_images(model, images if image_map is None else image_map(images))
        results[split] = {}
        for keys, (combos, text_emb) in prompt_sets.items():
            best = [combos[b] for b in (image_emb @ text_emb.T).argmax(-1).tolist()]  # best prompts
            # each attribute alone ("colour"), then all of `keys` at once ("colour+shape")
            hits = {key: [b[key] == a[key] for b, a in zip(best, attrs)] for key in keys}
            results[split].update({key: sum(h) / len(attrs) for key, h in hits.items()})
            results[split]["+".join(keys)] = sum(all(h) for h in zip(*hits.values())) / len(attrs)
    return results


def train_clip(config: TrainConfig | None = None, progress: bool = True,
               callback: Callable[[dict], None] | None = None, model: torch.nn.Module | None = None,
               **overrides) -> tuple[torch.nn.Module, dict]:
    """Train a tiny CLIP on shapes-world batches drawn from (seed, step); returns (model, history).

    history: "step", "loss", "logit_scale", "seconds" per step, "eval_step", "eval_acc"
    (colour+shape zero-shot accuracy on fresh test images). callback(record) after every step
    (live plots). Keyword overrides set TrainConfig fields: train_clip(steps=100, batch_size=64).
    """
    from .tinyvq import load_tiny_vq
    from .train import FitConfig, decay_groups, fit, prefetched, with_overrides

    cfg = with_overrides(config or TrainConfig(), overrides, "train_clip")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    model = model or build_model(cfg.model_config, seed=cfg.seed)
    if cfg.freeze_token_embedding:
        model.token_embedding.weight.requires_grad_(False)
    tokenizer = CachedTokenizer(get_tokenizer(cfg.model_config))
    size = cfg.model_config["vision_cfg"]["image_size"]
    eval_images, eval_attrs = data.render_batch(cfg.eval_images, seed=10_000 + cfg.seed, size=size,
                                                split="test", as_tensor=True)
    eval_prompts, eval_pairs = data.class_prompts()
    eval_truth = torch.tensor([eval_pairs.index((a["colour"], a["shape"])) for a in eval_attrs])
    eval_images = eval_images.contiguous(memory_format=torch.channels_last)  # as the weights
    vq = load_tiny_vq() if cfg.vq_share else None
    rendered = None  # with a pool, the images are rendered once and batches drawn from them
    if cfg.pool:
        rendered = data.render_batch(cfg.pool, seed=cfg.seed, size=size, split=cfg.split,
                                     as_tensor=True)

    def draw(step: int):  # the batch of one step: normalised images (B, 3, H, W), captions
        seed = cfg.seed * 100_003 + step
        if rendered is None:
            images, attrs = data.render_batch(cfg.batch_size, seed=seed, size=size, split=cfg.split,
                                              as_tensor=True)
        else:  # B images drawn at random from the pre-rendered pool
            gen = torch.Generator().manual_seed(seed)
            pick = torch.randint(cfg.pool, (cfg.batch_size,), generator=gen)
            images, attrs = rendered[0][pick], [rendered[1][i] for i in pick.tolist()]
        if cfg.caption_template:
            attrs = [dict(a, caption=data.caption(a, cfg.caption_template)) for a in attrs]
        if vq is not None:  # the first vq_share of the batch as the tiny VQ draws it
            k = round(cfg.vq_share * len(images))
            images[:k] = vq_round_trip(images[:k], vq)
        gen = torch.Generator().manual_seed(seed)
        partial = (torch.rand(len(attrs), generator=gen) < cfg.partial_captions).tolist()
        which = torch.randint(len(PARTIAL_TEMPLATES), (len(attrs),), generator=gen).tolist()
        texts = [data.caption(a, PARTIAL_TEMPLATES[w]) if p else a["caption"]
                 for a, p, w in zip(attrs, partial, which)]
        return normalize_images(images).contiguous(memory_format=torch.channels_last), texts

    def loss_of(batch) -> torch.Tensor:
        images, texts = batch
        unique = {text: k for k, text in enumerate(dict.fromkeys(texts))}  # encode each one once
        image_features = model.encode_image(images, normalize=True)
        text_features = model.encode_text(tokenizer(list(unique)), normalize=True)
        text_features = text_features[[unique[t] for t in texts]]  # (B, D), row i: caption i
        scale = model.logit_scale.exp()
        if cfg.soft_targets:
            return soft_contrastive_loss(image_features, text_features, scale, texts)
        return contrastive_loss(image_features, text_features, scale)

    history = {"step": [], "loss": [], "logit_scale": [], "seconds": [], "eval_step": [],
               "eval_acc": []}

    def after_step(record: dict) -> bool:
        with torch.no_grad():  # CLIP clips the logit scale at 100 (temperature 0.01)
            model.logit_scale.clamp_(0, math.log(100))
        record["logit_scale"] = model.logit_scale.exp().item()
        record["seconds"] = time.perf_counter() - start  # evaluation time included
        for key in ("step", "loss", "logit_scale", "seconds"):
            history[key].append(record[key])
        done = record["step"] + 1  # steps
        if cfg.eval_every and (done % cfg.eval_every == 0 or done == cfg.steps):
            sims = embed_images(model, eval_images) @ embed_texts(model, tokenizer, eval_prompts).T
            record["eval_acc"] = (sims.argmax(-1) == eval_truth).sum().item() / len(eval_truth)
            history["eval_step"].append(record["step"])
            history["eval_acc"].append(record["eval_acc"])
        if callback is not None:
            callback(record)
        return bool(cfg.stop_at) and record.get("eval_acc", 0.0) >= cfg.stop_at

    schedule = FitConfig(cfg.steps, cfg.lr, cfg.schedule, cfg.warmup, betas=(0.9, 0.98), eps=1e-6)
    start = time.perf_counter()
    model.to(memory_format=torch.channels_last)  # faster convolutions on a CPU
    try:
        with prefetched(draw, cfg.steps) as batch_at:  # draws batch k+1 while the model learns on k
            fit(model, lambda step: loss_of(batch_at(step)), schedule, t("training tiny CLIP"),
                decay_groups(model, cfg.weight_decay, skip=("embedding",)), after_step, progress)
    finally:  # also when a student stops the cell: the notebook gets its threads back
        model.to(memory_format=torch.contiguous_format)
        torch.set_num_threads(previous_threads)
    history["train_seconds"] = time.perf_counter() - start
    history["images_per_second"] = len(history["step"]) * cfg.batch_size / history["train_seconds"]
    return model, history


RERANKER_NAME = TINY_VQ_NAME  # "tiny-shapes-vq": the tiny CLIP tuned on VQ pictures (lesson 05)


def vq_round_trip(images: torch.Tensor, vq=None, batch_size: int = 500) -> torch.Tensor:
    """Pictures as the tiny VQ draws them: (N, 3, H, W) -> decode(encode(images)), in [0, 1]."""
    from .tinyvq import load_tiny_vq

    vq = vq or load_tiny_vq()
    with torch.no_grad():
        return torch.cat([vq.decode_codes(vq.encode(images[i:i + batch_size])).clamp(0, 1)
                          for i in range(0, len(images), batch_size)])
