"""Captions of the shapes world in the course's six languages, phrased as a native speaker would.

    label("purple", "star", "fr")  # 'une étoile violette'
    label("red", "circle", "zh")   # '红色的圆形'

In a pattern {a} is the article that agrees with the shape; a gendered word is written "m/f"
("vert/verte"). Training draws patterns and synonyms at random (lessons 00, 01); `label` and
`TEMPLATES` (lesson 02) take the first of each.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass

LANGUAGES = ("en", "fr", "es", "it", "pt", "zh")  # the course's languages (utils.i18n names them)


@dataclass(frozen=True)
class Language:
    """The words of the shapes world in one language and the sentence patterns that use them."""
    shapes: dict[str, tuple[str, list[str]]]  # shape -> (gender "m"/"f", [word, synonyms...])
    colours: dict[str, list[str]]  # colour -> ["m/f" forms, synonyms...]
    sizes: dict[str, list[str]]
    where: dict[str, list[str]]  # position -> how it is said
    article: str  # "m/f" indefinite article
    sized: str  # a label with the size ("a {size} {colour} {shape}")
    full: str  # every attribute ("a {size} {colour} {shape} {where}")
    captions: list[str]  # the patterns of training captions; the first is the class label's


EN = Language(
    shapes={"circle": ("m", ["circle"]), "square": ("m", ["square"]),
            "triangle": ("m", ["triangle"]), "star": ("m", ["star"])},
    colours={"red": ["red"], "orange": ["orange"], "yellow": ["yellow"], "green": ["green"],
             "blue": ["blue"], "purple": ["purple", "violet"]},
    sizes={"small": ["small", "little"], "large": ["large", "big"]}, article="a",
    where={"left": ["on the left"], "right": ["on the right"], "top": ["at the top"],
           "bottom": ["at the bottom"]},
    sized="a {size} {colour} {shape}", full="a {size} {colour} {shape} {where}",
    captions=["a {colour} {shape}", "a {size} {colour} {shape}", "a {colour} {shape} {where}",
              "a {size} {colour} {shape} {where}", "a picture of a {colour} {shape}",
              "a photo of a {size} {colour} {shape}", "a drawing of a {colour} {shape} {where}",
              "there is a {colour} {shape} {where}", "the {shape} is {colour}",
              "a {colour} {shape} on a background"],
)

FR = Language(
    shapes={"circle": ("m", ["cercle", "rond"]), "square": ("m", ["carré"]),
            "triangle": ("m", ["triangle"]), "star": ("f", ["étoile"])},
    colours={"red": ["rouge"], "orange": ["orange"], "yellow": ["jaune"], "green": ["vert/verte"],
             "blue": ["bleu/bleue"], "purple": ["violet/violette", "mauve"]},
    sizes={"small": ["petit/petite"], "large": ["grand/grande", "gros/grosse"]}, article="un/une",
    where={"left": ["à gauche"], "right": ["à droite"], "top": ["en haut"], "bottom": ["en bas"]},
    sized="{a} {size} {shape} {colour}", full="{a} {size} {shape} {colour} {where}",
    captions=["{a} {shape} {colour}", "{a} {size} {shape} {colour}", "{a} {shape} {colour} {where}",
              "{a} {size} {shape} {colour} {where}", "une image d'{a} {shape} {colour}",
              "une photo d'{a} {size} {shape} {colour}", "un dessin d'{a} {shape} {colour} {where}",
              "il y a {a} {shape} {colour} {where}", "{shape} {colour}",
              "{a} {shape} {colour} sur un fond"],
)

ES = Language(
    shapes={"circle": ("m", ["círculo"]), "square": ("m", ["cuadrado"]),
            "triangle": ("m", ["triángulo"]), "star": ("f", ["estrella"])},
    colours={"red": ["rojo/roja"], "orange": ["naranja", "anaranjado/anaranjada"],
             "yellow": ["amarillo/amarilla"], "green": ["verde"], "blue": ["azul"],
             "purple": ["morado/morada", "violeta", "púrpura"]},
    sizes={"small": ["pequeño/pequeña"], "large": ["grande"]}, article="un/una",
    where={"left": ["a la izquierda"], "right": ["a la derecha"], "top": ["arriba"],
           "bottom": ["abajo"]},
    sized="{a} {shape} {colour} {size}", full="{a} {shape} {colour} {size} {where}",
    captions=["{a} {shape} {colour}", "{a} {shape} {colour} {size}", "{a} {shape} {colour} {where}",
              "{a} {shape} {colour} {size} {where}", "una imagen de {a} {shape} {colour}",
              "una foto de {a} {shape} {colour} {size}",
              "un dibujo de {a} {shape} {colour} {where}", "hay {a} {shape} {colour} {where}",
              "{shape} {colour}", "{a} {shape} {colour} sobre un fondo"],
)

IT = Language(
    shapes={"circle": ("m", ["cerchio"]), "square": ("m", ["quadrato"]),
            "triangle": ("m", ["triangolo"]), "star": ("f", ["stella"])},
    colours={"red": ["rosso/rossa"], "orange": ["arancione"], "yellow": ["giallo/gialla"],
             "green": ["verde"], "blue": ["blu", "azzurro/azzurra"], "purple": ["viola"]},
    sizes={"small": ["piccolo/piccola"], "large": ["grande"]}, article="un/una",
    where={"left": ["a sinistra"], "right": ["a destra"], "top": ["in alto"],
           "bottom": ["in basso"]},
    sized="{a} {size} {shape} {colour}", full="{a} {shape} {colour} {size} {where}",
    captions=["{a} {shape} {colour}", "{a} {size} {shape} {colour}", "{a} {shape} {colour} {where}",
              "{a} {shape} {colour} {size} {where}", "un'immagine di {a} {shape} {colour}",
              "una foto di {a} {size} {shape} {colour}",
              "un disegno di {a} {shape} {colour} {where}", "c'è {a} {shape} {colour} {where}",
              "{shape} {colour}", "{a} {shape} {colour} su uno sfondo"],
)

PT = Language(
    shapes={"circle": ("m", ["círculo"]), "square": ("m", ["quadrado"]),
            "triangle": ("m", ["triângulo"]), "star": ("f", ["estrela"])},
    colours={"red": ["vermelho/vermelha"], "orange": ["laranja"], "yellow": ["amarelo/amarela"],
             "green": ["verde"], "blue": ["azul"], "purple": ["roxo/roxa", "violeta"]},
    sizes={"small": ["pequeno/pequena"], "large": ["grande"]}, article="um/uma",
    where={"left": ["à esquerda"], "right": ["à direita"], "top": ["em cima"],
           "bottom": ["embaixo"]},
    sized="{a} {shape} {colour} {size}", full="{a} {shape} {colour} {size} {where}",
    captions=["{a} {shape} {colour}", "{a} {shape} {colour} {size}", "{a} {shape} {colour} {where}",
              "{a} {size} {shape} {colour} {where}", "uma imagem de {a} {shape} {colour}",
              "uma foto de {a} {shape} {colour} {size}",
              "um desenho de {a} {shape} {colour} {where}", "há {a} {shape} {colour} {where}",
              "{shape} {colour}", "{a} {shape} {colour} num fundo"],
)

# Chinese: no articles or gender; a measure word (一个) and 的 between the colour and the
# noun; the place comes first ("左边有一个…", "on the left there is a…").
ZH = Language(
    shapes={"circle": ("m", ["圆形", "圆", "圆圈"]), "square": ("m", ["正方形", "方形", "方块"]),
            "triangle": ("m", ["三角形"]), "star": ("m", ["星形", "星星", "五角星"])},
    colours={"red": ["红色"], "orange": ["橙色", "橘色"], "yellow": ["黄色"], "green": ["绿色"],
             "blue": ["蓝色"], "purple": ["紫色"]},
    sizes={"small": ["小"], "large": ["大"]}, article="一个",
    where={"left": ["左边"], "right": ["右边"], "top": ["上面", "上方"],
           "bottom": ["下面", "下方"]},
    sized="一个{size}的{colour}{shape}", full="{where}有个{size}的{colour}{shape}",
    captions=["{colour}的{shape}", "一个{colour}的{shape}", "一个{size}的{colour}{shape}",
              "{where}有一个{colour}的{shape}", "{where}有个{size}的{colour}{shape}",
              "一张{colour}{shape}的图片", "一幅{colour}{shape}的画", "{colour}{shape}",
              "这个{shape}是{colour}的", "{where}的{colour}{shape}"],
)

LANGUAGE_WORDS: dict[str, Language] = {"en": EN, "fr": FR, "es": ES, "it": IT, "pt": PT, "zh": ZH}

# Zero-shot prompt templates (lesson 02) around a label(); wordings that made the held-out pairs
# worse with the tiny CLIP were left out (zh "画的是{}", it "una foto di {}").
TEMPLATES: dict[str, list[str]] = {
    "en": ["{}", "a picture of {}", "a drawing of {}", "a photo of {}", "there is {}"],
    "fr": ["{}", "une image d'{}", "un dessin d'{}", "on voit {}", "il y a {}"],
    "es": ["{}", "una imagen de {}", "un dibujo de {}", "una foto de {}", "hay {}"],
    "it": ["{}", "un'immagine di {}", "{} su uno sfondo", "qui c'è {}"],
    "pt": ["{}", "uma imagem de {}", "um desenho de {}", "uma foto de {}", "há {}"],
    "zh": ["{}", "一个{}", "画着一个{}", "这是一个{}"],
}


def _words(lang: str) -> Language:
    if lang not in LANGUAGE_WORDS:
        raise ValueError(
            f"Unknown language {lang!r}; the shapes world speaks {', '.join(LANGUAGES)}.")
    return LANGUAGE_WORDS[lang]


def _agree(word: str, gender: str) -> str:
    """'vert/verte' -> 'vert' (m) or 'verte' (f); a word without '/' stays as it is."""
    masculine, _, feminine = word.partition("/")
    return feminine if gender == "f" and feminine else masculine


def caption(attrs: dict, lang: str = "en", rng: random.Random | None = None,
            pattern: str | None = None) -> str:
    """A caption of a picture's colour, shape, size, position in `lang`: with `rng` a random pattern
    and synonyms (training), else `pattern` (default: the label) with each first word."""
    words = _words(lang)
    pick = rng.choice if rng is not None else (lambda options: options[0])
    pattern = pick(words.captions) if pattern is None else pattern
    gender, shape_words = words.shapes[attrs["shape"]]
    text = pattern.format(
        a=_agree(words.article, gender), shape=pick(shape_words),
        colour=_agree(pick(words.colours[attrs["colour"]]), gender),
        size=_agree(pick(words.sizes[attrs.get("size", "small")]), gender),
        where=pick(words.where[attrs.get("position", "left")]),
    )
    return with_an(text) if lang == "en" else text


def with_an(text: str) -> str:
    """English articles before a vowel: "a orange circle" -> "an orange circle"."""
    return re.sub(r"\b([Aa]) (?=[aeiou])", r"\1n ", text)


def describe(attrs: dict, lang: str = "en", where: bool = True) -> str:
    """A picture's size, colour, shape (and position): 'una estrella morada grande arriba'."""
    words = _words(lang)
    return caption(attrs, lang, pattern=words.full if where else words.sized)


def label(colour: str, shape: str, lang: str = "en") -> str:
    """The class label of a colour-shape pair in `lang`: 'a red circle', 'une étoile violette'."""
    return caption({"colour": colour, "shape": shape}, lang)


def labels(pairs, lang: str = "en") -> list[str]:
    """label() of each (colour, shape) pair."""
    return [label(c, s, lang) for c, s in pairs]
