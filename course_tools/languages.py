"""The bundled tiny CLIP's six languages: locked-image text tuning (LiT, Zhai et al. 2022), and
the measures of `python -m course_tools train languages` and benchmarks/bench_languages.py."""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from utils import captions, data
from utils.train import FitConfig, fit, with_overrides

from .recipes import save_model
from .retrain import print_report


@dataclass
class TuneConfig:
    """Hyper-parameters of `tune_languages`. The defaults rebuild the bundled model."""
    steps: int = 400
    batch_size: int = 256
    pictures: int = 8192  # embedded once by the frozen image tower
    lr: float = 1e-3
    warmup: int = 30
    anchor: float = 5.0  # weight of the English distillation term
    english_share: float = 0.25  # share of captions in English (the rest: the five others)
    seed: int = 0
    threads: int = 2


def tune_languages(model, config: TuneConfig | None = None, progress: bool = True, **overrides):
    """Locked-image text tuning (LiT, Zhai et al. 2022): only the text tower learns, on captions in
    six languages, with the image embeddings I of the frozen tower computed once:

        loss = contrastive_loss(I, T(x), s) + anchor * mean_i (1 - cos(T(e_i), T0(e_i)))

    x: captions in random languages, e: the same in English, T0: the tower before tuning. The
    anchor keeps English where it was, so the models built on this space (the reranker, the
    unCLIP prior and decoder) keep working. Returns (model, {"loss", "anchor", "seconds"})."""
    from utils.losses import contrastive_loss
    from utils.tinyclip import CachedTokenizer, embed_images, get_tokenizer, image_size

    cfg = with_overrides(config or TuneConfig(), overrides, "tune_languages")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    model = getattr(model, "model", model)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)  # T0: the English text tower
    model.requires_grad_(False)
    params = [p for name, p in model.named_parameters() if not name.startswith("visual.") and name != "logit_scale"]
    for p in params:
        p.requires_grad_(True)
    tokenizer = CachedTokenizer(get_tokenizer())
    images, attrs = data.render_batch(cfg.pictures, seed=50_000 + cfg.seed, size=image_size(model),
                                      split="train", as_tensor=True)
    image_emb = embed_images(model, images)  # (P, D), the locked image tower's view, once
    del images
    rng = random.Random(cfg.seed)
    others = [lang for lang in captions.LANGUAGES if lang != "en"]
    scale = model.logit_scale.exp().detach()

    def loss_of(step: int):
        idx = rng.sample(range(cfg.pictures), cfg.batch_size)
        langs = ["en" if rng.random() < cfg.english_share else rng.choice(others) for _ in idx]
        texts = [captions.caption(attrs[i], lang, rng) for i, lang in zip(idx, langs)]
        english = [captions.caption(attrs[i], "en", rng) for i in idx]
        text_emb = F.normalize(model.encode_text(tokenizer(texts)), dim=-1)  # (B, D)
        english_emb = F.normalize(model.encode_text(tokenizer(english)), dim=-1)  # (B, D)
        with torch.no_grad():
            target = F.normalize(teacher.encode_text(tokenizer(english)), dim=-1)  # (B, D)
        anchor = (1 - (english_emb * target).sum(-1)).mean()
        return contrastive_loss(image_emb[idx], text_emb, scale) + cfg.anchor * anchor, {"anchor": anchor.item()}

    def warmup_then_linear(step: int) -> float:  # lr min(1, (step + 1) / warmup) (1 - step / steps)
        return cfg.lr * min(1.0, (step + 1) / cfg.warmup) * (1 - step / cfg.steps)

    done = fit(model, loss_of, FitConfig(cfg.steps, cfg.lr, warmup_then_linear, betas=(0.9, 0.98), eps=1e-6),
               "teaching the tiny CLIP six languages", params, progress=progress)
    history = {"loss": done["loss"], "anchor": done["anchor"], "seconds": done["train_seconds"]}
    torch.set_num_threads(previous_threads)
    model.requires_grad_(False).eval()
    return model, history


@torch.no_grad()
def language_accuracy(model, n: int = 1000, seed: int = 1234, splits=("test", "heldout"),
                      label_sets: dict[str, list[str]] | None = None) -> dict[str, dict[str, float]]:
    """{lang: {split: zero-shot top-1 colour+shape accuracy among that language's 24 labels}};
    label_sets: {lang: labels in product(COLOURS, SHAPES) order}, default captions.labels."""
    from utils.tinyclip import CachedTokenizer, embed_images, embed_texts, get_tokenizer, image_size

    model = getattr(model, "model", model)
    tokenizer = CachedTokenizer(get_tokenizer())
    pairs = data.class_prompts()[1]
    label_sets = label_sets or {lang: captions.labels(pairs, lang) for lang in captions.LANGUAGES}
    image_embs = {}
    for split in splits:
        images, attrs = data.render_batch(n, seed=seed, size=image_size(model), split=split, as_tensor=True)
        image_embs[split] = (embed_images(model, images), [(a["colour"], a["shape"]) for a in attrs])
    out = {}
    for lang, labels in label_sets.items():
        text_emb = embed_texts(model, tokenizer, labels)  # (24, D)
        out[lang] = {}
        for split, (emb, truth) in image_embs.items():
            best = (emb @ text_emb.T).argmax(-1).tolist()
            out[lang][split] = sum(pairs[b] == t for b, t in zip(best, truth)) / len(truth)
    return out


@torch.no_grad()
def cross_language_retrieval(model, query_lang: str = "en", caption_lang: str = "zh", n: int = 500,
                             seed: int = 7) -> float:
    """Top-1 cross-language search by text-to-text similarity: each caption in `query_lang` looks
    among `n` captions in `caption_lang`; right when the one found names the same colour and shape."""
    from utils.tinyclip import CachedTokenizer, embed_texts, get_tokenizer

    model = getattr(model, "model", model)
    tokenizer = CachedTokenizer(get_tokenizer())
    _, attrs = data.render_batch(n, seed=seed, size=8, split="all")
    rng = random.Random(seed)
    queries = embed_texts(model, tokenizer, [captions.caption(a, query_lang, rng) for a in attrs])
    found = embed_texts(model, tokenizer, [captions.caption(a, caption_lang, rng) for a in attrs])
    sim = queries @ found.T  # (n, n)
    sim.fill_diagonal_(-math.inf)  # not the picture itself: another one with the same content
    best = sim.argmax(-1).tolist()
    return sum((attrs[b]["colour"], attrs[b]["shape"]) == (a["colour"], a["shape"])
               for b, a in zip(best, attrs)) / n


def languages_main(args) -> int:
    """Teach the bundled tiny CLIP six languages (run after `train clip`), save it as tiny-shapes."""
    from utils.models import TINY_NAME, load_clip
    from utils.tinyclip import TINY_CONFIG

    steps = args.steps or TuneConfig.steps
    model = load_clip(TINY_NAME, device="cpu", verbose=False).model
    before = language_accuracy(model)
    model, history = tune_languages(model, TuneConfig(steps=steps, seed=args.seed), progress=not args.json)
    after = language_accuracy(model)
    _, weights_path = save_model(model, args.out, config=TINY_CONFIG)
    report = {"model": str(weights_path), "steps": steps, "seconds": round(history["seconds"], 1),
              "before": before, "after": after, "en->zh": cross_language_retrieval(model, "en", "zh"),
              "zh->en": cross_language_retrieval(model, "zh", "en")}
    return print_report(args, report, [
        f"Tuned {steps} steps in {report['seconds']} s; saved {weights_path}.",
        *(f"{lang}: seen {before[lang]['test']:.1%} -> {after[lang]['test']:.1%}, "
          f"held-out {before[lang]['heldout']:.1%} -> {after[lang]['heldout']:.1%}" for lang in after),
        f"cross-language search en->zh {report['en->zh']:.1%}, zh->en {report['zh->en']:.1%}"])
