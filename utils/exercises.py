"""What a lesson's exercise check cells import (student versions are built by `course_tools`)."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from .i18n import t


@contextlib.contextmanager
def exercise_check(number: int) -> Iterator[None]:
    """Wrap the asserts of a check cell: an unsolved exercise (NotImplementedError, an undefined
    name) fails with an AssertionError that says what to do."""
    try:
        yield
    except (NotImplementedError, NameError) as err:
        raise AssertionError(t(
            "Exercise {n} is not solved yet ({e}). Replace `raise NotImplementedError()` in the "
            "cell above with your code, run it, then run this check again.",
            n=number, e=str(err) or type(err).__name__)) from None
    except AssertionError as err:
        raise AssertionError(t("Exercise {n}: not yet. {hint}", n=number, hint=str(err))) from None


def answer_digest(value: object) -> str:
    """A short digest of an answer (floats to 2 decimals, 128.0 as 128), so a check hides it."""
    if isinstance(value, float):
        value = round(value, 2)
        value = int(value) if value.is_integer() else value
    return hashlib.sha256(repr(value).encode("utf-8")).hexdigest()[:12]


def same_answer(value: object, digest: str) -> bool:
    """Whether `value` is the answer whose `answer_digest` is `digest`."""
    return answer_digest(value) == digest


def same_peaks(similarities, temperatures, answer) -> bool:
    """Whether `answer` holds, for each temperature, the largest probability of
    softmax(similarities / temperature), to 3 decimals (lesson 01, exercise 2)."""
    peaks = [(similarities / tau).softmax(-1).max().item() for tau in temperatures]
    return len(answer) == len(peaks) and all(abs(float(a) - p) < 1e-3
                                             for a, p in zip(answer, peaks))


def same_class_vectors(clip, classnames: list[str], templates: list[str], weights) -> bool:
    """Whether `weights` are build_classifier's class vectors for these names (lesson 02)."""
    from .zeroshot import build_classifier

    reference = build_classifier(clip, classnames, templates).weights
    return weights.shape == reference.shape and bool((weights - reference).abs().max() < 1e-5)


def same_top_k(index, query: str, answer: list[int], k: int = 5,
               keep: list[bool] | None = None) -> bool:
    """Whether `answer` lists, best first, the k images of `index` (among those where `keep` is
    True) that score best for the text `query`, without the check cell showing how."""
    import torch

    scores = index.embeddings.float() @ index.embed_query(query).float().flatten()
    if keep is not None:
        scores = scores.masked_fill(~torch.tensor(keep, dtype=torch.bool), -torch.inf)
    return len(answer) == k and [int(i) for i in answer] == scores.topk(k).indices.tolist()


def same_favourites(clip, prior, images, caption: str, answer: tuple[int, int]) -> bool:
    """Whether `answer` is (index of the image closest to the caption's text embedding, index of
    the image closest to the prior's image embedding for it), with the embeddings of `clip`."""
    from .viz import to_pil

    image_emb, text_emb = clip.encode_images(to_pil(images)), clip.encode_texts([caption])
    return tuple(answer) == (int((image_emb @ text_emb.T).argmax()),
                             int((image_emb @ prior.predict(text_emb).T).argmax()))


def same_float16_changes(index, queries: list[str], answer) -> bool:
    """Whether `answer` is the number of `queries` whose best image differs between `index` and
    a float16 copy of it (lesson 03, exercise 4)."""
    from .retrieval import ImageIndex

    half = ImageIndex(embeddings=index.embeddings.half(), items=index.items, model=index.model,
                      clip=index.clip)
    best = [(index.search(q, k=1)[0].index, half.search(q, k=1)[0].index) for q in queries]
    return int(answer) == sum(a != b for a, b in best)


def same_colour_accuracy(classifier, features, attrs: list[dict], answer) -> bool:
    """Whether `answer` is the accuracy of `classifier` (one class per colour of
    utils.data.COLOURS, in that order) on images with these attributes (lesson 02, exercise 2)."""
    from .data import COLOURS
    from .zeroshot import evaluate

    if len(classifier.classnames) != len(COLOURS):
        return False
    targets = [COLOURS.index(a["colour"]) for a in attrs]
    return abs(float(answer) - evaluate(classifier, features, targets).accuracy) < 1e-4


def same_caption_losses(dalle, vq, images, captions: list[str], order, answer) -> bool:
    """Whether `answer` is (mean loss with the true captions, with caption order[i] for picture
    i) of the mini DALL-E on `images`, within 1e-3 nats (lesson 05, exercise 2)."""
    import torch

    with torch.no_grad():
        codes = vq.encode(images).flatten(1)
        losses = [dalle.model.loss(dalle.tokenizer.encode(c), codes).item()
                  for c in (captions, [captions[int(i)] for i in order])]
    return len(answer) == 2 and all(abs(float(a) - b) < 1e-3 for a, b in zip(answer, losses))
