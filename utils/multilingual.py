"""Teaching the tiny CLIP the course's six languages: locked-image text tuning.

As in LiT (Zhai et al. 2022), the image tower stays frozen and only the text tower learns, on
captions in six languages (utils.captions). For pictures with captions x_i in random languages
and English captions e_i:

    I = image_encoder(pictures)                 # frozen, computed once for the whole set
    loss = contrastive_loss(I, T(x), s)          # every language learns to name the pictures
         + mean_i (1 - cos(T(e_i), T0(e_i)))     # English stays where it was (T0: the old tower)

The anchor keeps English where it was, so the models built on this space (the reranker, the
unCLIP prior and decoder) keep working, and a caption and its translations meet.

    model = tune_languages(load_clip("tiny-shapes").model)     # a few minutes on 2 cores
    language_accuracy(model)                                   # {"en": {...}, "fr": {...}, ...}
    python -m utils.multilingual --seed 0 --replace-bundled    # rebuild the bundled tiny-shapes
"""

from __future__ import annotations

import argparse
import copy
import math
import random
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from . import captions, data
from .losses import contrastive_loss
from .tinyclip import CachedTokenizer, embed_images, embed_texts, get_tokenizer
from .train import with_overrides

BAR = 0.95  # zero-shot colour+shape accuracy on seen pairs that every language must reach


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


def _text_parameters(model) -> list[torch.nn.Parameter]:
    return [p for name, p in model.named_parameters() if not name.startswith("visual.") and name != "logit_scale"]


def tune_languages(model, config: TuneConfig | None = None, progress: bool = True, **overrides):
    """Train the text tower of a tiny CLIP on six languages with the image tower locked;
    returns (model, {"loss", "anchor" per step, "seconds"})."""
    from .train import FitConfig, fit
    cfg = with_overrides(config or TuneConfig(), overrides, "tune_languages")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    model = getattr(model, "model", model)
    teacher = copy.deepcopy(model).eval().requires_grad_(False)  # T0: the English text tower
    model.requires_grad_(False)
    params = _text_parameters(model)
    for p in params:
        p.requires_grad_(True)
    tokenizer = CachedTokenizer(get_tokenizer())
    images, attrs = data.render_batch(cfg.pictures, seed=50_000 + cfg.seed, size=_side(model),
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
    model = getattr(model, "model", model)
    tokenizer = CachedTokenizer(get_tokenizer())
    pairs = data.class_prompts()[1]
    label_sets = label_sets or {lang: captions.labels(pairs, lang) for lang in captions.LANGUAGES}
    image_embs = {}
    for split in splits:
        images, attrs = data.render_batch(n, seed=seed, size=_side(model), split=split, as_tensor=True)
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
    """Top-1 cross-language search: each caption in `query_lang` looks for its picture among
    `n` pictures captioned in `caption_lang`, by text-to-text similarity; right when the
    caption found names the same colour and shape."""
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


@torch.no_grad()
def translation_accuracy(model, lang: str, target: str = "en") -> float:
    """Share of the 24 labels in `lang` whose nearest label in `target` is their translation."""
    model = getattr(model, "model", model)
    tokenizer = CachedTokenizer(get_tokenizer())
    pairs = data.class_prompts()[1]
    a = embed_texts(model, tokenizer, captions.labels(pairs, lang))  # (24, D)
    b = embed_texts(model, tokenizer, captions.labels(pairs, target))  # (24, D)
    return (a @ b.T).argmax(-1).eq(torch.arange(len(pairs))).float().mean().item()


def _side(model) -> int:
    size = model.visual.image_size
    return size[0] if isinstance(size, tuple) else size


PAIRS_SHOWN = [("red", "circle"), ("blue", "square"), ("yellow", "triangle"), ("purple", "star"),
               ("green", "circle"), ("orange", "star")]
MARKERS = {"en": "o", "fr": "s", "es": "^", "it": "v", "pt": "D", "zh": "*"}


@torch.no_grad()
def plot_translations(model, pairs=PAIRS_SHOWN, ax=None):
    """Each label and its translations on the 2 main axes (PCA) of their text embeddings: one
    colour per meaning, one marker per language; English and course-language labels written."""
    import matplotlib.pyplot as plt

    from .i18n import get_language, t, use_cjk_font
    from .viz import pca_2d
    use_cjk_font()  # the Chinese labels, whatever the notebook's language
    texts = [(lang, pair, captions.label(*pair, lang)) for pair in pairs for lang in captions.LANGUAGES]
    model = getattr(model, "model", model)
    emb = embed_texts(model, CachedTokenizer(get_tokenizer()), [text for _, _, text in texts])  # (P*6, D)
    xy = pca_2d(emb)[0]  # (P*6, 2)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 6))
    for (lang, pair, text), (x, y) in zip(texts, xy.tolist()):
        ax.scatter(x, y, marker=MARKERS[lang], s=60, color=[v / 255 for v in data.COLOUR_RGB[pair[0]]],
                   edgecolor="black")
        if lang in ("en", get_language()):  # six overlapping labels would be unreadable
            ax.annotate(text, (x, y), fontsize=8, xytext=(6, -10 if lang == "en" else 4),
                        textcoords="offset points")
    for lang, marker in MARKERS.items():
        ax.scatter([], [], marker=marker, color="grey", label=lang)
    ax.legend(title=t("language"), fontsize=8)
    ax.set(xlabel=t("principal axis 1"), ylabel=t("principal axis 2"),
           title=t("A label and its translations land together (text embeddings, PCA)"))
    return ax


def main(argv: list[str] | None = None) -> int:
    """`python -m utils.multilingual`: teach the tiny CLIP six languages and save it (in a new
    folder of the course cache, --out, or with --replace-bundled over utils/assets if every
    language reaches BAR on seen pairs)."""
    from .assets import ASSETS_DIR, register_asset
    from .models import TINY_NAME, load_clip
    from .tinyclip import TINY_CONFIG, save_model
    from .train import _new_folder, print_report, user_models_dir
    parser = argparse.ArgumentParser(description="Teach the bundled tiny CLIP the six course languages.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=TuneConfig.steps)
    parser.add_argument("--threads", type=int, default=TuneConfig.threads)
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--out", default=None, help="new folder to write to (default: one in the course cache)")
    where.add_argument("--replace-bundled", action="store_true",
                       help=f"replace utils/assets/tiny-shapes.* if every language reaches {BAR:.0%}")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    model = load_clip(TINY_NAME, device="cpu", verbose=False).model
    before = language_accuracy(model)
    model, history = tune_languages(model, TuneConfig(steps=args.steps, seed=args.seed, threads=args.threads),
                                    progress=not args.json)
    after = language_accuracy(model)
    report = {"steps": args.steps, "seconds": round(history["seconds"], 1), "before": before, "after": after,
              "en->zh": cross_language_retrieval(model, "en", "zh"),
              "zh->en": cross_language_retrieval(model, "zh", "en")}
    worst = min(row["test"] for row in after.values())
    if args.replace_bundled and worst < BAR:
        print(f"A language reached only {worst:.1%} < {BAR:.0%} on seen pairs: the bundled model was NOT "
              "replaced. Train longer (--steps) or with another --seed.")
        return 1
    out_dir = ASSETS_DIR if args.replace_bundled else Path(args.out) if args.out else _new_folder(
        user_models_dir() / f"tiny-shapes-multilingual-seed{args.seed}")
    config_path, weights_path = save_model(model, out_dir, config=TINY_CONFIG)
    report["model"] = str(weights_path)
    if args.replace_bundled:
        rebuild = (f"python -m utils train clip --seed {args.seed} --replace-bundled && "
                   f"python -m utils.multilingual --seed {args.seed} --replace-bundled")
        register_asset(config_path, "tiny CLIP: open_clip model config", rebuild)
        register_asset(weights_path, "tiny CLIP trained on the shapes world, text tower tuned on six languages "
                                     "(fp16 safetensors)", rebuild)
    return print_report(args, report, [
        f"Tuned {args.steps} steps in {report['seconds']} s; saved {weights_path}.",
        *(f"{lang}: seen {before[lang]['test']:.1%} -> {after[lang]['test']:.1%}, "
          f"held-out {before[lang]['heldout']:.1%} -> {after[lang]['heldout']:.1%}" for lang in after),
        f"cross-language search en->zh {report['en->zh']:.1%}, zh->en {report['zh->en']:.1%}"])


if __name__ == "__main__":
    raise SystemExit(main())
