"""The tiny CLIP that speaks the course's six languages (lesson 01): its text tower was tuned
on captions in six languages with the image tower locked (LiT, Zhai et al. 2022; the recipe:
course_tools/languages.py `tune_languages`), so a label and its translations land together.
"""

from __future__ import annotations

import torch

from . import captions, data
from .tinyclip import embed_texts, get_tokenizer

PAIRS_SHOWN = [("red", "circle"), ("blue", "square"), ("yellow", "triangle"), ("purple", "star"),
               ("green", "circle"), ("orange", "star")]
MARKERS = {"en": "o", "fr": "s", "es": "^", "it": "v", "pt": "D", "zh": "*"}


@torch.no_grad()
def translation_accuracy(model, lang: str, target: str = "en") -> float:
    """Share of the 24 labels in `lang` whose nearest label in `target` is their translation."""
    pairs = data.class_prompts()[1]
    tokenizer = get_tokenizer()
    a = embed_texts(model, tokenizer, captions.labels(pairs, lang))  # (24, D)
    b = embed_texts(model, tokenizer, captions.labels(pairs, target))  # (24, D)
    return (a @ b.T).argmax(-1).eq(torch.arange(len(pairs))).float().mean().item()


@torch.no_grad()
def plot_translations(model, pairs=PAIRS_SHOWN, ax=None):
    """Each label and its translations on the 2 main axes (PCA) of their text embeddings: one
    colour per meaning, one marker per language; English and course-language labels written."""
    import matplotlib.pyplot as plt

    from .i18n import get_language, t, use_cjk_font
    from .viz import pca_2d
    use_cjk_font()  # the Chinese labels, whatever the notebook's language
    texts = [(lang, colour, captions.label(colour, shape, lang))
             for colour, shape in pairs for lang in captions.LANGUAGES]
    emb = embed_texts(model, get_tokenizer(), [text for _, _, text in texts])  # (P*6, D)
    if ax is None:
        _, ax = plt.subplots(figsize=(8, 6))
    for (lang, colour, text), (x, y) in zip(texts, pca_2d(emb)[0].tolist()):  # pca_2d: (P*6, 2)
        rgb = [v / 255 for v in data.COLOUR_RGB[colour]]
        ax.scatter(x, y, marker=MARKERS[lang], s=60, color=rgb, edgecolor="black")
        if lang in ("en", get_language()):  # six overlapping labels would be unreadable
            ax.annotate(text, (x, y), fontsize=8, xytext=(6, -10 if lang == "en" else 4),
                        textcoords="offset points")
    for lang, marker in MARKERS.items():
        ax.scatter([], [], marker=marker, color="grey", label=lang)
    ax.legend(title=t("language"), fontsize=8)
    ax.set(xlabel=t("principal axis 1"), ylabel=t("principal axis 2"),
           title=t("A label and its translations land together (text embeddings, PCA)"))
    return ax
