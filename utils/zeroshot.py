"""Zero-shot classification with CLIP (lesson 02): an image goes to the class whose text vector
points the most in the same direction as its own (`build_classifier`, then `evaluate`):

    w_c    = normalise( mean_t normalise( E_text(template_t(class_c)) ) )   # prompt ensembling
    p(c|x) = softmax_c( s * cos(E_image(x), w_c) )                         # s = clip.logit_scale

    clf = build_classifier(clip, ["red circle", "blue square"], SHAPES_TEMPLATES)
    probs = clf.predict_proba(images)             # (N, C), rows sum to 1
    result = evaluate(clf, images, targets)       # accuracy and confusion matrix

ImageNet templates and class names are open_clip's; the terminal command is utils/classify_cli.py.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import TYPE_CHECKING

from open_clip.zero_shot_metadata import (  # noqa: F401 - re-exported for the lesson
    IMAGENET_CLASSNAMES,
    OPENAI_IMAGENET_TEMPLATES,
    SIMPLE_IMAGENET_TEMPLATES,
)

from . import captions

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from .models import CLIP

# A template turns a class name into a sentence: "a photo of a {}." or a function of it.
Template = str | Callable[[str], str]

SINGLE_TEMPLATE: tuple[str, ...] = ("{}",)  # the label is used as it is
# Templates for the shapes world: the class name is "red circle", "blue square", ...
SHAPES_TEMPLATES: tuple[str, ...] = ("a {}", "a picture of a {}", "a drawing of a {}",
                                     "an image of a {}", "a {} on a plain background",
                                     "a small {}", "a large {}", "a photo of a {}")
TEMPLATE_SETS: dict[str, Sequence[Template]] = {
    "none": SINGLE_TEMPLATE,
    "shapes": SHAPES_TEMPLATES,
    "simple": SIMPLE_IMAGENET_TEMPLATES,  # 7 templates chosen by the CLIP authors
    "openai": OPENAI_IMAGENET_TEMPLATES,  # the 80 templates of the CLIP paper
}


def shapes_classes(lang: str = "en") -> tuple[list[str], list[str]]:
    """The 24 shapes-world class names in `lang` and templates that fit them: English bare names
    ("red circle") with SHAPES_TEMPLATES, other languages whole labels ("une étoile violette")
    with utils.captions.TEMPLATES. Only the tiny CLIP reads all six languages."""
    from .data import COLOURS, SHAPES
    pairs = list(product(COLOURS, SHAPES))
    if lang == "en":
        return [f"{c} {s}" for c, s in pairs], list(SHAPES_TEMPLATES)
    return captions.labels(pairs, lang), list(captions.TEMPLATES[lang])


def prompts_for(classname: str, templates: Sequence[Template]) -> list[str]:
    """Fill every template with one class name: "a photo of a {}." -> "a photo of a cat."."""
    return [tpl(classname) if callable(tpl) else tpl.format(classname) for tpl in templates]


def token_count(tokenizer, text: str) -> int:
    """How many tokens `text` takes in the model's context, start and end tokens included."""
    if hasattr(tokenizer, "encode"):  # open_clip's SimpleTokenizer: BPE ids without start/end
        return len(tokenizer.encode(text)) + 2
    ids = tokenizer([text], context_length=10_000)[0]  # other tokenizers: count non-padding ids
    return int((ids != 0).sum())


def validate_labels(labels: str | Sequence[str], tokenizer=None,
                    templates: Sequence[Template] = SINGLE_TEMPLATE,
                    dedupe: bool = True) -> list[str]:
    """Clean labels (a list or one comma-separated string): blanks dropped, none -> ValueError;
    warnings for one label (always 100%), duplicates (same up to case and spaces: dropped
    unless dedupe=False, which keeps class i as class i, e.g. IMAGENET_CLASSNAMES) and a prompt
    longer than the tokenizer's context (open_clip silently cuts it)."""
    if isinstance(labels, str):
        labels = labels.split(",")
    cleaned = [label for label in (str(x).strip() for x in labels) if label]
    if not cleaned:
        raise ValueError(
            'No labels given: pass at least two class names, e.g. --labels "a cat,a dog".')
    unique: dict[str, str] = {}
    for label in cleaned:
        unique.setdefault(" ".join(label.lower().split()), label)
    n = len(cleaned) - len(unique)
    if n and dedupe:
        warnings.warn(f"{n} duplicate label(s) dropped; each label is kept once: "
                      f"{', '.join(unique.values())}.", stacklevel=2)
    elif n:
        warnings.warn(f"{n} duplicate label(s) kept (dedupe=False): identical classes share "
                      "their probability.", stacklevel=2)
    out = list(unique.values()) if dedupe else cleaned
    if len(unique) == 1:
        warnings.warn(f"Only one label ({out[0]!r}): its probability is always 100%. Add the "
                      "alternatives it should be compared with.", stacklevel=2)
    context = getattr(tokenizer, "context_length", None)
    if context:
        for label in unique.values():
            longest = max(prompts_for(label, templates), key=lambda p: token_count(tokenizer, p))
            if (n := token_count(tokenizer, longest)) > context:
                warnings.warn(f"The prompt {longest[:60]!r}... takes {n} tokens but the model "
                              f"reads only {context}: it is truncated and its end is ignored. "
                              "Use a shorter label.", stacklevel=2)
    return out


@dataclass
class ZeroShotClassifier:
    """A linear classifier whose weights are text embeddings: one unit vector per class."""
    clip: CLIP
    classnames: list[str]
    templates: list[Template]
    weights: torch.Tensor  # (C, D), L2-normalised rows
    logit_scale: float  # s: the model's learned inverse temperature

    def logits(self, images) -> torch.Tensor:
        """s * cos(image, class): (N, C), for PIL images, a (N,3,H,W) tensor or (N, D) features."""
        import torch
        is_features = isinstance(images, torch.Tensor) and images.ndim == 2
        features = images if is_features else self.clip.encode_images(images)  # (N, D)
        return self.logit_scale * features @ self.weights.T

    def predict_proba(self, images) -> torch.Tensor:
        """softmax_c(s * cos(image, class)): (N, C)."""
        return self.logits(images).softmax(dim=-1)

    def top_k(self, images, k: int = 5) -> list[list[tuple[str, float]]]:
        """The k most probable (label, probability) pairs of each image, best first."""
        values, indices = self.predict_proba(images).topk(min(k, len(self.classnames)), dim=-1)
        return [[(self.classnames[j], p) for p, j in zip(vs, js)]
                for vs, js in zip(values.tolist(), indices.tolist())]


def build_classifier(clip: CLIP, classnames: str | Sequence[str],
                     templates: Sequence[Template] = SINGLE_TEMPLATE,
                     dedupe: bool = True) -> ZeroShotClassifier:
    """Zero-shot classifier from class names (checked by `validate_labels`), with prompt
    ensembling: w_c = normalise(mean_t normalise(E_text(template_t(c)))), as
    open_clip.build_zero_shot_classifier (which returns the transpose)."""
    if not templates:
        raise ValueError("No templates given: use SINGLE_TEMPLATE to take the labels as they are.")
    blind = [tpl for tpl in templates if isinstance(tpl, str) and "{}" not in tpl]
    if blind:  # every class would get the same sentence
        raise ValueError(f"Template {blind[0]!r} has no {{}} where the class name goes, "
                         "e.g. 'a photo of a {}'.")
    classnames = validate_labels(classnames, clip.tokenizer, templates, dedupe)
    texts = [p for c in classnames for p in prompts_for(c, templates)]  # C*T prompts, class-major
    emb = clip.encode_texts(texts).view(len(classnames), len(templates), -1).mean(dim=1)  # (C, D)
    weights = emb / emb.norm(dim=-1, keepdim=True)  # (C, D), back to unit length
    return ZeroShotClassifier(clip, classnames, list(templates), weights, clip.logit_scale)


@dataclass
class Evaluation:
    """What `evaluate` measured."""
    accuracy: float  # top-1, in [0, 1]
    top5: float  # the true class among the 5 most probable ones
    confusion: torch.Tensor  # (C, C) counts: row = true class, column = predicted class
    predictions: torch.Tensor  # (N,)
    classnames: list[str]

    def per_class_accuracy(self) -> dict[str, float]:
        """Recall of each class: confusion[c, c] / (number of images of class c)."""
        totals = self.confusion.sum(dim=1).clamp(min=1)
        return dict(zip(self.classnames, (self.confusion.diag() / totals).tolist()))


def evaluate(classifier: ZeroShotClassifier, images, targets: Sequence[int]) -> Evaluation:
    """Accuracy and confusion matrix of `classifier` on labelled images (or their features)."""
    import torch
    targets = torch.as_tensor(targets, dtype=torch.long)  # (N,)
    logits = classifier.logits(images)  # (N, C)
    if len(targets) != len(logits):
        raise ValueError(f"{len(logits)} images but {len(targets)} targets.")
    n = len(classifier.classnames)
    predictions = logits.argmax(dim=-1)
    top5 = logits.topk(min(5, n), dim=-1).indices  # (N, 5)
    confusion = torch.bincount(targets * n + predictions, minlength=n * n).view(n, n)
    return Evaluation(float((predictions == targets).float().mean()),
                      float((top5 == targets[:, None]).any(dim=-1).float().mean()),
                      confusion, predictions, list(classifier.classnames))


# The eight scikit-image photos OpenAI's CLIP notebook shows, each with our own caption.
SAMPLE_PHOTOS: dict[str, str] = {
    "page": "a page of printed text about image segmentation",
    "chelsea": "a close-up of a tabby cat's face",
    "astronaut": "an astronaut in an orange suit in front of a US flag",
    "rocket": "a rocket on a launch pad at night",
    "motorcycle": "a red motorbike parked in a workshop",
    "camera": "a man looking through a camera on a tripod",
    "horse": "the black silhouette of a horse",
    "coffee": "a cup of coffee on a red saucer with a spoon",
}


def load_sample_photos() -> dict[str, Image.Image]:
    """The eight scikit-image sample photos as RGB PIL images (offline: they ship with it)."""
    import skimage.data
    from PIL import Image
    photos = {}
    for name in SAMPLE_PHOTOS:
        if name == "motorcycle":
            array = skimage.data.stereo_motorcycle()[0]  # (left view, right view, disparity)
        else:
            array = getattr(skimage.data, name)()  # the horse is a bool mask: Pillow mode "1"
        photos[name] = Image.fromarray(array).convert("RGB")
    return photos


def pad_to_square(image: Image.Image) -> Image.Image:
    """Pad the short side with the border's median colour: CLIP's centre crop then loses nothing."""
    import numpy as np
    from PIL import Image
    w, h = image.size
    if w == h:
        return image
    a = np.asarray(image.convert("RGB"))  # (H, W, 3)
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])  # (2W+2H, 3)
    side = max(w, h)
    out = Image.new("RGB", (side, side), tuple(int(v) for v in np.median(border, axis=0)))
    out.paste(image, ((side - w) // 2, (side - h) // 2))
    return out


def classify_files(paths: Sequence[str | Path], labels: str | Sequence[str], clip: CLIP,
                   templates: Sequence[Template] = SINGLE_TEMPLATE, top: int = 5,
                   fit: str = "pad", batch_size: int = 64) -> dict:
    """Classify image files (a folder: the images in it and its subfolders); returns the --json
    object (see CLI_HELP). Bad files are skipped."""
    from .images import ImageLoadError, list_images, open_image
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        clf = build_classifier(clip, labels, templates)
    out = {"model": clip.description, "labels": clf.classnames,
           "templates": [t if isinstance(t, str) else t("{}") for t in templates],
           "results": [], "skipped": [], "warnings": [str(w.message) for w in caught]}
    files = [f for p in map(Path, paths) for f in (list_images(p) if p.is_dir() else [p])]
    for start in range(0, len(files), batch_size):  # a batch at a time: bounded memory
        good = []
        for path in files[start:start + batch_size]:
            try:
                image = open_image(path)
            except ImageLoadError as err:  # missing, empty, not an image, truncated, too large
                out["skipped"].append({"path": str(path), "reason": err.reason})
            else:
                good.append((path, pad_to_square(image) if fit == "pad" else image))
        rows = clf.predict_proba([image for _, image in good]).tolist() if good else []  # (B, C)
        for (path, _), row in zip(good, rows):
            order = sorted(range(len(row)), key=lambda j: -row[j])[:max(1, top)]
            out["results"].append({
                "path": str(path),
                "probabilities": {label: round(p, 6) for label, p in zip(clf.classnames, row)},
                "top": [{"label": clf.classnames[j], "probability": round(row[j], 6)}
                        for j in order],
                "prediction": clf.classnames[order[0]],
            })
    return out
