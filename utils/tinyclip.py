"""The tiny CLIP: an open_clip model small enough to train from scratch on a laptop CPU.

It is a real open_clip `CLIP` (a small ResNet for images and a small text transformer,
open_clip's own tokenizer), built from the config in `utils/assets/tiny-shapes.json`,
trained on the shapes world (`utils.data`) with our contrastive loss (`utils.losses`).
Lesson 01 trains one live; every lesson uses the bundled one offline.

    model, history = train_clip(steps=3000, seed=0)      # the bundled model's recipe
    evaluate(model)                                        # zero-shot accuracy per attribute
    python -m utils train clip --seed 0                    # rebuild the bundled model (English),
    python -m utils.multilingual --seed 0                  # then teach it five more languages

Training step (one batch of B fresh image-caption pairs):
    I = normalize(image_encoder(images))      # (B, D)
    T = normalize(text_encoder(captions))     # (B, D)
    loss = contrastive_loss(I, T, exp(t))     # t: the learned log logit scale
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import product
from pathlib import Path

import torch

from . import data
from .io import save_checkpoint
from .losses import contrastive_loss, soft_contrastive_loss
from .models import TINY_VQ_NAME

# The open_clip model config (the same JSON format as open_clip's own model configs).
# Images: open_clip's ModifiedResNet (the architecture of OpenAI's RN50, shrunk to width 8,
# one block per stage): convolutions learn shapes from few examples, where a vision
# transformer this small needs many more steps. Text: a 2-layer transformer over
# open_clip's BPE tokens; its 49,408-word embedding table is most of the 3.7M weights.
TINY_CONFIG = {
    "embed_dim": 64,
    "vision_cfg": {"image_size": 64, "layers": [1, 1, 1, 1], "width": 8, "head_width": 32},
    "text_cfg": {"context_length": 32, "vocab_size": 49408, "width": 64, "heads": 4, "layers": 2,
                 "mlp_ratio": 2.0},
}
# The live model: the same, with 8 text tokens instead of 32 (the longest prompt, "a yellow
# triangle at the top", is 6 tokens plus start and end). At 32 px with a twice wider ResNet
# (session 3) a step cost 15% less CPU, but 95% took 1,025 steps or more, here 775 (one seed).
LIVE_CONFIG = json.loads(json.dumps(TINY_CONFIG))
LIVE_CONFIG["text_cfg"].update(context_length=8)
# The live recipe (issue 18): pre-rendered images, captions "a {colour} {shape}" with soft
# targets (the batch holds many copies of each caption), a frozen token table, a high
# learning rate with a short warm-up and a linear decay, and evaluation on the fly.
LIVE_RECIPE = dict(steps=1200, batch_size=128, lr=3e-3, warmup=25, schedule="linear", pool=8192,
                   caption_template="a {colour} {shape}", soft_targets=True,
                   freeze_token_embedding=True, partial_captions=0.0, eval_every=25,
                   eval_images=300, threads=2, stop_at=0.95)
# Captions that name one attribute only. Mixed into training (TrainConfig.partial_captions)
# they make the model learn "star" apart from "red", which helps it recognise colour-shape
# pairs it never saw (data.HELD_OUT).
PARTIAL_TEMPLATES = ["a {shape}", "a picture of a {shape}", "a drawing of a {shape}", "a {colour} shape"]
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
    vq_share: float = 0.0  # share of each batch shown after a tiny-VQ round trip (lesson 05's reranker)
    model_config: dict = field(default_factory=lambda: json.loads(json.dumps(TINY_CONFIG)))
    # The fast "live" recipe (TrainConfig.live()) turns these on; the defaults keep the bundled recipe.
    schedule: str = "cosine"  # "cosine" (warm-up then cosine) or "linear" (warm-up then linear to zero)
    pool: int = 0  # 0: fresh images every step; N: render N images once and draw batches from them
    caption_template: str | None = None  # None: data's varied captions; e.g. "a {colour} {shape}"
    soft_targets: bool = False  # pairs in a batch with the same caption count as matches too
    freeze_token_embedding: bool = False  # keep the random 49,408 x 64 token table fixed (much faster)
    stop_at: float = 0.0  # stop once the on-the-fly eval accuracy reaches this (0: never)

    @classmethod
    def live(cls, **overrides) -> TrainConfig:
        """The recipe lesson 01 trains live: LIVE_RECIPE on LIVE_CONFIG (8 text tokens)."""
        return cls(**{**LIVE_RECIPE, "model_config": json.loads(json.dumps(LIVE_CONFIG)), **overrides})


def build_model(config: dict | None = None, seed: int = 0) -> torch.nn.Module:
    """A freshly initialised open_clip CLIP from a model config dict (TINY_CONFIG by default)."""
    from open_clip.model import CLIP

    torch.manual_seed(seed)
    return CLIP(**(config or TINY_CONFIG), output_dict=True)


def get_tokenizer(config: dict | None = None):
    """open_clip's BPE tokenizer, truncating/padding to the config's context length."""
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
        if missing:
            for text, tokens in zip(missing, self.tokenizer(missing)):
                self.cache[text] = tokens
        return torch.stack([self.cache[t] for t in texts])  # (N, context_length)


# ------------------------------------------------------------------ evaluation


@torch.no_grad()
def embed_images(model, images: torch.Tensor, batch_size: int = 250) -> torch.Tensor:
    """(N, 3, H, W) floats in [0, 1] -> (N, D) L2-normalised image embeddings."""
    model = getattr(model, "model", model)  # accept utils.models.CLIP too
    model.eval()
    out = [model.encode_image(normalize_images(images[i : i + batch_size]), normalize=True)
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


@torch.no_grad()
def embed_texts(model, tokenizer, texts: list[str]) -> torch.Tensor:
    """Texts -> (N, D) L2-normalised text embeddings."""
    model = getattr(model, "model", model)
    model.eval()
    return model.encode_text(tokenizer(texts), normalize=True)


def _attribute_accuracy(image_emb, text_emb, prompts_attrs, attrs, keys) -> dict[str, float]:
    """Pick the best prompt per image; accuracy of each attribute in `keys` and of all jointly."""
    best = (image_emb @ text_emb.T).argmax(-1).tolist()  # (N,) index of the best prompt
    out = {}
    for key in keys:
        out[key] = sum(prompts_attrs[b][key] == a[key] for b, a in zip(best, attrs)) / len(attrs)
    out["+".join(keys)] = sum(all(prompts_attrs[b][k] == a[k] for k in keys)
                              for b, a in zip(best, attrs)) / len(attrs)
    return out


def evaluate(model, n: int = 1000, seed: int = 1234, tokenizer=None, splits=("test", "heldout"),
             image_map: Callable[[torch.Tensor], torch.Tensor] | None = None) -> dict:
    """Zero-shot accuracy on `n` fresh images of each split.

    image_map: applied to the (N, 3, H, W) images first (e.g. a tiny-VQ round trip).

    "colour+shape": top-1 among the 24 prompts "a {colour} {shape}" (every pair, held-out
    ones included), and the colour and the shape of that best prompt on their own.
    "size": top-1 among "a {size} {colour} {shape}" (48 prompts), scored on the size;
    "position": top-1 among "a {colour} {shape} {where}" (96 prompts), scored on the position.
    """
    if tokenizer is None:  # for the model's own context length (32 tokens; 8 for the live model)
        tokenizer = CachedTokenizer(get_tokenizer({"text_cfg": {"context_length": getattr(model, "model", model).context_length}}))
    results = {}
    families = {("colour", "shape"): "a {colour} {shape}", ("size",): "a {size} {colour} {shape}",
                ("position",): "a {colour} {shape} {where}"}
    prompt_sets = {}
    for keys, template in families.items():
        combos = [dict(colour=c, shape=s, size=z, position=p)
                  for c, s, z, p in product(data.COLOURS, data.SHAPES,
                                            data.SIZES if "size" in keys else ["small"],
                                            data.POSITIONS if "position" in keys else ["left"])]
        texts = [data.caption(a, template) for a in combos]
        prompt_sets[keys] = (combos, embed_texts(model, tokenizer, texts))
    for split in splits:
        images, attrs = data.render_batch(n, seed=seed, split=split, size=image_size(model))
        images = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255  # (N, 3, H, W)
        if image_map is not None:
            images = image_map(images)
        image_emb = embed_images(model, images)
        row = {}
        for keys, (combos, text_emb) in prompt_sets.items():
            row.update(_attribute_accuracy(image_emb, text_emb, combos, attrs, keys))
        results[split] = row
    return results


# ------------------------------------------------------------------ training


def train_clip(config: TrainConfig | None = None, progress: bool = True, callback: Callable[[dict], None] | None = None,
               model: torch.nn.Module | None = None, **overrides) -> tuple[torch.nn.Module, dict]:
    """Train a tiny CLIP from scratch on fresh shapes-world batches; returns (model, history).

    Every step draws B new images with their captions (seed, step) and minimises
    contrastive_loss. history holds "step", "loss", "logit_scale", "seconds" per step and
    "eval_step", "eval_acc" (colour+shape zero-shot accuracy on fresh test images).
    `callback(record)` is called after every step (for live plots). Keyword overrides
    set TrainConfig fields: train_clip(steps=100, batch_size=64).
    """
    from .train import FitConfig, decay_groups, fit, prefetched, with_overrides

    cfg = with_overrides(config or TrainConfig(), overrides, "train_clip")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    model = model or build_model(cfg.model_config, seed=cfg.seed)
    if cfg.freeze_token_embedding:
        model.token_embedding.weight.requires_grad_(False)
    tokenizer = CachedTokenizer(get_tokenizer(cfg.model_config))
    size = cfg.model_config["vision_cfg"]["image_size"]
    eval_set = data.render_batch(cfg.eval_images, seed=10_000 + cfg.seed, size=size, split="test")
    eval_prompts, eval_pairs = data.class_prompts()
    vq = None
    if cfg.vq_share:
        from .tinyvq import load_tiny_vq

        vq = load_tiny_vq()
    rendered = data.render_batch(cfg.pool, seed=cfg.seed, size=size, split=cfg.split, as_tensor=True) \
        if cfg.pool else None

    def draw(step: int):  # the batch of one step: images (B, 3, H, W) in [0, 1], captions
        seed = cfg.seed * 100_003 + step
        if rendered is None:
            images, attrs = data.render_batch(cfg.batch_size, seed=seed, size=size, split=cfg.split,
                                              as_tensor=True)
        else:  # B images drawn at random from the pre-rendered pool
            pick = torch.randint(cfg.pool, (cfg.batch_size,), generator=torch.Generator().manual_seed(seed))
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
        return images, tokenizer(texts), texts

    def loss_of(batch) -> torch.Tensor:
        images, tokens, texts = batch
        out = model(normalize_images(images), tokens)
        if cfg.soft_targets:
            return soft_contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"], texts)
        return contrastive_loss(out["image_features"], out["text_features"], out["logit_scale"])

    history = {"step": [], "loss": [], "logit_scale": [], "seconds": [], "eval_step": [], "eval_acc": []}

    def after_step(record: dict) -> bool:
        with torch.no_grad():  # CLIP clips the logit scale at 100 (temperature 0.01)
            model.logit_scale.clamp_(0, math.log(100))
        record["logit_scale"] = model.logit_scale.exp().item()
        record["seconds"] = time.perf_counter() - start  # evaluation time included
        for key in ("step", "loss", "logit_scale", "seconds"):
            history[key].append(record[key])
        if cfg.eval_every and ((record["step"] + 1) % cfg.eval_every == 0 or record["step"] + 1 == cfg.steps):
            record["eval_acc"] = _quick_accuracy(model, tokenizer, eval_set, eval_prompts, eval_pairs)
            history["eval_step"].append(record["step"])
            history["eval_acc"].append(record["eval_acc"])
        if callback is not None:
            callback(record)
        return bool(cfg.stop_at) and record.get("eval_acc", 0.0) >= cfg.stop_at

    schedule = FitConfig(cfg.steps, cfg.lr, cfg.schedule, cfg.warmup, betas=(0.9, 0.98), eps=1e-6)
    start = time.perf_counter()
    with prefetched(draw, cfg.steps) as batch_at:  # draws batch k+1 while the model learns on k
        fit(model, lambda step: loss_of(batch_at(step)), schedule, "training tiny CLIP",
            decay_groups(model, cfg.weight_decay, skip=("embedding",)), after_step, progress)
    torch.set_num_threads(previous_threads)
    history["train_seconds"] = time.perf_counter() - start
    history["images_per_second"] = len(history["step"]) * cfg.batch_size / history["train_seconds"]
    return model, history


def _quick_accuracy(model, tokenizer, eval_set, prompts, pairs) -> float:
    """Colour+shape zero-shot top-1 on a fixed set of test images (used during training)."""
    images, attrs = eval_set
    image_emb = embed_images(model, torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255)
    best = (image_emb @ embed_texts(model, tokenizer, prompts).T).argmax(-1).tolist()
    return sum(pairs[b] == (a["colour"], a["shape"]) for b, a in zip(best, attrs)) / len(attrs)


def save_model(model, out_dir: str | Path, name: str = "tiny-shapes", config: dict | None = None) -> tuple[Path, Path]:
    """Write `name`.json (open_clip model config) and `name`.safetensors (state dict, fp16).

    open_clip.create_model_and_transforms(name, pretrained=<the .safetensors>) loads it
    once the config is registered with open_clip.add_model_config(<the .json>); the fp16
    weights are cast to the fp32 model when loaded.
    """
    weights = Path(out_dir) / f"{name}.safetensors"
    metadata = {"format": "pt", "trained_on": "utils.data shapes world"}
    return save_checkpoint(model, weights, config or TINY_CONFIG, metadata=metadata), weights


def train_main(args) -> int:
    """`python -m utils train clip`: train, evaluate and save the tiny CLIP into the folder args.out."""
    from .train import print_report

    steps = args.steps or TrainConfig.steps
    model, history = train_clip(TrainConfig(steps=steps, seed=args.seed), progress=not args.json)
    scores = evaluate(model)
    config_path, weights_path = save_model(model, args.out)
    report = {
        "model": str(weights_path), "config": str(config_path), "seed": args.seed, "steps": steps,
        "train_seconds": round(history["train_seconds"], 1),
        "images_per_second": round(history["images_per_second"], 1),
        "final_loss": round(history["loss"][-1], 4), "accuracy": scores,
        "bytes": weights_path.stat().st_size,
    }
    test, held = scores["test"], scores["heldout"]
    return print_report(args, report, [
        f"Trained in {report['train_seconds']} s ({report['images_per_second']} images/s), "
        f"final loss {report['final_loss']}.",
        f"Zero-shot colour+shape accuracy: {test['colour+shape']:.1%} on seen pairs, "
        f"{held['colour+shape']:.1%} on held-out pairs {data.HELD_OUT}.",
        "Per attribute (seen pairs): " + ", ".join(f"{k} {test[k]:.1%}" for k in ("colour", "shape", "size", "position")),
        f"Saved {weights_path} ({report['bytes'] / 1e6:.1f} MB) and {config_path}; the bundled tiny CLIP is "
        "this model taught six languages (python -m utils.multilingual)."])


# ------------------------------------------------------------------ the reranker of lesson 05

RERANKER_NAME = TINY_VQ_NAME  # "tiny-shapes-vq"
RERANKER_STEPS = 2500


def vq_round_trip(images: torch.Tensor, vq=None, batch_size: int = 500) -> torch.Tensor:
    """Pictures as the tiny VQ draws them: (N, 3, H, W) -> decode(encode(images)), in [0, 1]."""
    from .tinyvq import load_tiny_vq

    vq = vq or load_tiny_vq()
    with torch.no_grad():
        return torch.cat([vq.decode_codes(vq.encode(images[i:i + batch_size])).clamp(0, 1)
                          for i in range(0, len(images), batch_size)])


def train_reranker(steps: int = RERANKER_STEPS, seed: int = 0, progress: bool = True,
                   **overrides) -> tuple[torch.nn.Module, dict]:
    """Fine-tune the bundled tiny CLIP so it also reads pictures drawn through the tiny VQ.

    The tiny CLIP only ever saw clean renders; the VQ blurs outlines, and on its pictures the
    CLIP often names the wrong shape. The mini DALL-E draws through that VQ, so its reranker
    must read such pictures: half of each batch goes through a VQ round trip. The text tower
    and the embedding space stay those of the tiny CLIP (the same prompts work).
    """
    from .models import TINY_NAME, load_clip

    model = load_clip(TINY_NAME, verbose=False).model
    model.output_dict = True
    model.train().requires_grad_(True)
    cfg = TrainConfig(steps=steps, seed=1000 + seed, lr=1e-3, warmup=50, vq_share=0.5, eval_every=0)
    model, history = train_clip(cfg, progress=progress, model=model, **overrides)
    model.output_dict = False
    return model.eval().requires_grad_(False), history


def train_reranker_main(args) -> int:
    """`python -m utils train reranker`: fine-tune, compare with the tiny CLIP, save into args.out."""
    from .models import TINY_NAME, load_clip
    from .tinyvq import load_tiny_vq
    from .train import print_report

    steps = args.steps or RERANKER_STEPS
    model, history = train_reranker(steps, args.seed, progress=not args.json)
    vq = load_tiny_vq()
    scores = {}
    for name, m in (("tiny-shapes", load_clip(TINY_NAME, verbose=False).model), (RERANKER_NAME, model)):
        scores[name] = {"renders": evaluate(m, splits=("test",))["test"]["colour+shape"],
                        "vq_pictures": evaluate(m, splits=("test",), image_map=lambda x: vq_round_trip(x, vq))
                        ["test"]["colour+shape"]}
    _, weights_path = save_model(model, args.out, name=RERANKER_NAME)
    report = {"model": str(weights_path), "seed": args.seed, "steps": steps,
              "train_seconds": round(history["train_seconds"], 1), "colour+shape accuracy": scores}
    return print_report(args, report, [
        *(f"{name}: colour+shape zero-shot {row['renders']:.1%} on renders, {row['vq_pictures']:.1%} on tiny-VQ "
          "pictures" for name, row in scores.items()),
        f"Fine-tuned {steps} steps in {report['train_seconds']} s; saved {weights_path}."])
