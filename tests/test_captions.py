"""Captions in six languages: the words agree, every language covers every attribute, and
open_clip's byte-level tokenizer keeps Chinese text whole (no unknown tokens)."""

from __future__ import annotations

import random

import pytest

from utils import captions, data


def test_every_language_names_every_attribute():
    for lang in captions.LANGUAGES:
        words = captions.LANGUAGE_WORDS[lang]
        assert set(words.colours) == set(data.COLOURS), lang
        assert set(words.shapes) == set(data.SHAPES), lang
        assert set(words.sizes) == set(data.SIZES), lang
        assert set(words.where) == set(data.POSITIONS), lang
        assert captions.TEMPLATES[lang][0] == "{}", lang


@pytest.mark.parametrize(("lang", "colour", "shape", "expected"), [
    ("en", "orange", "circle", "an orange circle"),
    ("fr", "purple", "star", "une étoile violette"),
    ("fr", "green", "square", "un carré vert"),
    ("es", "purple", "star", "una estrella morada"),
    ("es", "red", "triangle", "un triángulo rojo"),
    ("it", "red", "star", "una stella rossa"),
    ("pt", "yellow", "star", "uma estrela amarela"),
    ("zh", "red", "circle", "红色的圆形"),
])
def test_labels_agree_in_gender_and_follow_word_order(lang, colour, shape, expected):
    assert captions.label(colour, shape, lang) == expected


def test_training_captions_vary_and_always_name_colour_and_shape():
    rng = random.Random(0)
    attrs = {"colour": "blue", "shape": "star", "size": "small", "position": "top"}
    for lang in captions.LANGUAGES:
        words = captions.LANGUAGE_WORDS[lang]
        texts = {captions.caption(attrs, lang, rng) for _ in range(200)}
        assert len(texts) >= 8, (lang, texts)
        for text in texts:
            assert any(w.split("/")[-1] in text or w.split("/")[0] in text for w in words.colours["blue"])
            assert any(w in text for w in words.shapes["star"][1]), text
            assert "{" not in text, text


def test_feminine_shapes_take_feminine_words():
    rng = random.Random(1)
    attrs = {"colour": "red", "shape": "star", "size": "small", "position": "left"}
    texts = " ".join(captions.caption(attrs, lang, rng) for lang in ("fr", "es", "it", "pt") for _ in range(50))
    for masculine in ("rojo", "rosso", "vermelho", "petit ", "pequeño", "piccolo", "pequeno"):
        assert masculine not in texts, masculine


def test_unknown_language_is_refused():
    with pytest.raises(ValueError, match="speaks en, fr"):
        captions.label("red", "circle", "de")


def test_bpe_tokenizer_round_trips_every_language():
    """open_clip's BPE works on bytes: Chinese text decodes back exactly, no [UNK] exists."""
    from open_clip.tokenizer import SimpleTokenizer

    tokenizer = SimpleTokenizer()
    rng = random.Random(2)
    for lang in captions.LANGUAGES:
        for _ in range(20):
            attrs = {"colour": rng.choice(data.COLOURS), "shape": rng.choice(data.SHAPES),
                     "size": rng.choice(data.SIZES), "position": rng.choice(data.POSITIONS)}
            text = captions.caption(attrs, lang, rng)
            ids = tokenizer.encode(text)
            assert tokenizer.decode(ids).replace(" ", "") == text.replace(" ", "").lower(), text
            assert len(ids) + 2 <= 32, (text, len(ids))  # fits the tiny CLIP context with start and end


# Labels written by hand, in forms the training patterns never produce (a definite article,
# no 的), in the order of product(COLOURS, SHAPES).
NATURAL_LABELS = {
    "en": [f"the {c} {s}" for c in data.COLOURS for s in data.SHAPES],
    "fr": ["le cercle rouge", "le carré rouge", "le triangle rouge", "l'étoile rouge",
           "le cercle orange", "le carré orange", "le triangle orange", "l'étoile orange",
           "le cercle jaune", "le carré jaune", "le triangle jaune", "l'étoile jaune",
           "le cercle vert", "le carré vert", "le triangle vert", "l'étoile verte",
           "le cercle bleu", "le carré bleu", "le triangle bleu", "l'étoile bleue",
           "le cercle violet", "le carré violet", "le triangle violet", "l'étoile violette"],
    "es": ["el círculo rojo", "el cuadrado rojo", "el triángulo rojo", "la estrella roja",
           "el círculo naranja", "el cuadrado naranja", "el triángulo naranja", "la estrella naranja",
           "el círculo amarillo", "el cuadrado amarillo", "el triángulo amarillo", "la estrella amarilla",
           "el círculo verde", "el cuadrado verde", "el triángulo verde", "la estrella verde",
           "el círculo azul", "el cuadrado azul", "el triángulo azul", "la estrella azul",
           "el círculo morado", "el cuadrado morado", "el triángulo morado", "la estrella morada"],
    "it": ["il cerchio rosso", "il quadrato rosso", "il triangolo rosso", "la stella rossa",
           "il cerchio arancione", "il quadrato arancione", "il triangolo arancione", "la stella arancione",
           "il cerchio giallo", "il quadrato giallo", "il triangolo giallo", "la stella gialla",
           "il cerchio verde", "il quadrato verde", "il triangolo verde", "la stella verde",
           "il cerchio blu", "il quadrato blu", "il triangolo blu", "la stella blu",
           "il cerchio viola", "il quadrato viola", "il triangolo viola", "la stella viola"],
    "pt": ["o círculo vermelho", "o quadrado vermelho", "o triângulo vermelho", "a estrela vermelha",
           "o círculo laranja", "o quadrado laranja", "o triângulo laranja", "a estrela laranja",
           "o círculo amarelo", "o quadrado amarelo", "o triângulo amarelo", "a estrela amarela",
           "o círculo verde", "o quadrado verde", "o triângulo verde", "a estrela verde",
           "o círculo azul", "o quadrado azul", "o triângulo azul", "a estrela azul",
           "o círculo roxo", "o quadrado roxo", "o triângulo roxo", "a estrela roxa"],
    "zh": ["一个红色圆形", "一个红色正方形", "一个红色三角形", "一个红色星形",
           "一个橙色圆形", "一个橙色正方形", "一个橙色三角形", "一个橙色星形",
           "一个黄色圆形", "一个黄色正方形", "一个黄色三角形", "一个黄色星形",
           "一个绿色圆形", "一个绿色正方形", "一个绿色三角形", "一个绿色星形",
           "一个蓝色圆形", "一个蓝色正方形", "一个蓝色三角形", "一个蓝色星形",
           "一个紫色圆形", "一个紫色正方形", "一个紫色三角形", "一个紫色星形"],
}


def test_natural_labels_are_not_training_captions():
    rng = random.Random(3)
    from itertools import product

    made = {captions.caption({"colour": c, "shape": s, "size": z, "position": p}, lang, rng)
            for lang in captions.LANGUAGES for _ in range(3)
            for c, s, z, p in product(data.COLOURS, data.SHAPES, data.SIZES, data.POSITIONS)}
    for lang, labels in NATURAL_LABELS.items():
        assert len(labels) == 24 and not made & set(labels), lang


@pytest.fixture(scope="module")
def language_scores():
    from course_tools.languages import language_accuracy
    from utils.models import load_clip

    tiny = load_clip("tiny-shapes", device="cpu", verbose=False)
    return language_accuracy(tiny, n=500, seed=2025, splits=("test",), label_sets=NATURAL_LABELS)


@pytest.mark.parametrize("lang", captions.LANGUAGES)
def test_bundled_tiny_clip_reads_natural_labels_in_every_language(language_scores, lang):
    assert language_scores[lang]["test"] >= 0.95, language_scores
