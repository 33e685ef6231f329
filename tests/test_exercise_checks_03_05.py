"""The answer checks of lessons 02, 03 and 05 (utils.exercises: same_top_k, same_favourites...): they accept
the right answer and reject near misses, without the check cell showing how to compute it."""

from __future__ import annotations

import torch

from utils.exercises import same_favourites, same_float16_changes, same_top_k
from utils.retrieval import ImageIndex


class _TextEncoder:
    """A stand-in CLIP: each text is a fixed random unit vector (no model, no weights)."""

    def __init__(self, dim: int):
        self.dim = dim

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        out = [torch.randn(self.dim, generator=torch.Generator().manual_seed(sum(map(ord, s)))) for s in texts]
        return torch.nn.functional.normalize(torch.stack(out), dim=-1)

    def encode_images(self, images) -> torch.Tensor:
        return torch.nn.functional.normalize(torch.stack([torch.as_tensor(x).float().flatten() for x in images]), dim=-1)


def _index(n: int = 50, dim: int = 8) -> ImageIndex:
    embeddings = torch.nn.functional.normalize(torch.randn(n, dim, generator=torch.Generator().manual_seed(1)), dim=-1)
    return ImageIndex(embeddings=embeddings, items=[f"#{i}" for i in range(n)], model={}, clip=_TextEncoder(dim))


def test_same_top_k_accepts_the_ranking_and_rejects_near_misses():
    index = _index()
    scores = index.embeddings @ index.clip.encode_texts(["a yellow square"])[0]
    best = scores.argsort(descending=True).tolist()
    assert same_top_k(index, "a yellow square", best[:5])
    assert same_top_k(index, "a yellow square", torch.tensor(best[:5]))  # a tensor of indices is fine too
    assert not same_top_k(index, "a yellow square", best[:5][::-1])  # not best first
    assert not same_top_k(index, "a yellow square", best[:4])  # too few
    assert not same_top_k(index, "a yellow square", best[1:6])  # the best one missing
    assert not same_top_k(index, "a green circle", best[:5])  # another query's ranking


def test_same_top_k_with_a_filter_ranks_only_the_kept_images():
    index = _index()
    keep = [i % 3 == 0 for i in range(len(index))]
    scores = index.embeddings @ index.clip.encode_texts(["a green circle"])[0]
    kept = [i for i in scores.argsort(descending=True).tolist() if keep[i]]
    assert same_top_k(index, "a green circle", kept[:5], keep=keep)
    assert not same_top_k(index, "a green circle", kept[:5])  # unfiltered, the ranking differs
    first_five = scores.argsort(descending=True).tolist()[:5]
    assert not same_top_k(index, "a green circle", first_five, keep=keep)


class _ShiftPrior:
    """A stand-in prior: moves the text embedding to another direction."""

    def predict(self, text_emb: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.normalize(text_emb.roll(1, dims=-1), dim=-1)


def test_same_favourites_wants_each_argmax(monkeypatch):
    import utils.viz

    monkeypatch.setattr(utils.viz, "to_pil", lambda images: list(images))  # the stand-in reads tensors
    clip, prior, caption = _TextEncoder(12), _ShiftPrior(), "a blue star"
    images = torch.randn(8, 12, generator=torch.Generator().manual_seed(2))
    image_emb = clip.encode_images(images)
    text_emb = clip.encode_texts([caption])
    best_text = int((image_emb @ text_emb.T).argmax())
    best_prior = int((image_emb @ prior.predict(text_emb).T).argmax())
    assert same_favourites(clip, prior, images, caption, (best_text, best_prior))
    wrong_text = int((image_emb @ text_emb.T).argmin())
    assert not same_favourites(clip, prior, images, caption, (wrong_text, best_prior))
    if best_text != best_prior:
        assert not same_favourites(clip, prior, images, caption, (best_prior, best_text))  # swapped


def test_same_float16_changes_counts_the_queries_whose_best_image_moves():
    index = _index(n=3000, dim=3)  # many near-ties: float16 rounding moves some best images
    half = ImageIndex(embeddings=index.embeddings.half(), items=index.items, model={}, clip=index.clip)
    queries = [f"query {i}" for i in range(60)]
    moved = sum(index.search(q, k=1)[0].index != half.search(q, k=1)[0].index for q in queries)
    assert 0 < moved < len(queries)
    assert same_float16_changes(index, queries, moved)
    assert not same_float16_changes(index, queries, moved + 1)
    assert same_float16_changes(index, [], 0)


def test_same_colour_accuracy_recomputes_the_students_classifier():
    """Lesson 02, exercise 2: a typed-in accuracy or another classifier's does not pass."""
    from PIL import Image

    from utils.data import COLOURS, SHAPES, render_batch
    from utils.exercises import same_colour_accuracy
    from utils.models import load_clip
    from utils.zeroshot import build_classifier, evaluate

    clip = load_clip("tiny-shapes", device="cpu")
    arrays, attrs = render_batch(60, seed=3, split="test")
    features = clip.encode_images([Image.fromarray(a) for a in arrays])
    colours = build_classifier(clip, COLOURS, ["a {} shape"])
    right = evaluate(colours, features, [COLOURS.index(a["colour"]) for a in attrs]).accuracy
    assert same_colour_accuracy(colours, features, attrs, right)
    assert not same_colour_accuracy(colours, features, attrs, 0.9 if right != 0.9 else 0.8)
    assert not same_colour_accuracy(colours, features, attrs, right - 1 / 60)  # one image off
    assert not same_colour_accuracy(build_classifier(clip, SHAPES, ["a {}"]), features, attrs, right)


def test_same_caption_losses_recomputes_both_losses():
    """Lesson 05, exercise 2: (0, 1), swapped losses or another shuffle do not pass."""
    from utils.dalle import load_tiny_dalle
    from utils.data import render_batch
    from utils.exercises import same_caption_losses

    dalle = load_tiny_dalle()
    images, attrs = render_batch(16, seed=9, split="test", as_tensor=True)
    captions = [a["caption"] for a in attrs]
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    codes = dalle.vq.encode(images).flatten(1)
    with torch.no_grad():
        true = dalle.model.loss(dalle.tokenizer.encode(captions), codes).item()
        shuffled = dalle.model.loss(dalle.tokenizer.encode([captions[i] for i in order]), codes).item()
    assert true < shuffled
    assert same_caption_losses(dalle, dalle.vq, images, captions, order, (true, shuffled))
    assert not same_caption_losses(dalle, dalle.vq, images, captions, order, (0.0, 1.0))
    assert not same_caption_losses(dalle, dalle.vq, images, captions, order, (shuffled, true))
    assert not same_caption_losses(dalle, dalle.vq, images, captions, order.flip(0), (true, shuffled))
