"""Locked-image tuning: the text tower learns, the image tower does not move, and the bundled
model's languages meet in one space."""

from __future__ import annotations

import math

import pytest
import torch

from course_tools import languages
from utils import multilingual as ml
from utils.tinyclip import build_model


def test_tuning_trains_the_text_tower_only():
    model = build_model(seed=0)
    visual = {k: v.clone() for k, v in model.visual.state_dict().items()}
    token = model.token_embedding.weight.detach().clone()
    model, history = languages.tune_languages(model, steps=3, pictures=64, batch_size=16, threads=1, progress=False)
    assert len(history["loss"]) == 3 and all(math.isfinite(x) for x in history["loss"])
    for key, value in model.visual.state_dict().items():
        assert torch.equal(value, visual[key]), f"the image tower moved: {key}"
    assert not torch.equal(model.token_embedding.weight, token), "the text tower did not learn"


def test_unknown_option_is_reported():
    with pytest.raises(TypeError, match="unknown option"):
        languages.tune_languages(build_model(seed=0), stepz=3, progress=False)


@pytest.fixture(scope="module")
def tiny():
    from utils.models import load_clip

    return load_clip("tiny-shapes", device="cpu", verbose=False)


@pytest.mark.parametrize("lang", ["fr", "es", "it", "pt", "zh"])
def test_bundled_labels_are_nearest_to_their_english_translation(tiny, lang):
    assert ml.translation_accuracy(tiny, lang) >= 0.9


def test_bundled_cross_language_search_between_english_and_chinese(tiny):
    assert languages.cross_language_retrieval(tiny, "en", "zh", n=300) >= 0.85
    assert languages.cross_language_retrieval(tiny, "zh", "en", n=300) >= 0.85


def test_bundled_english_keeps_its_held_out_pairs(tiny):
    scores = languages.language_accuracy(tiny, n=1000, seed=1234, splits=("heldout",))
    assert scores["en"]["heldout"] >= 0.715, scores  # the English-only model's 71.5%


def test_translation_figure_draws_every_language(tiny):
    import matplotlib

    matplotlib.use("Agg")
    ax = ml.plot_translations(tiny)
    assert len(ax.collections) == 6 * len(ml.PAIRS_SHOWN) + 6  # the points, then the legend's markers
