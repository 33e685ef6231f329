"""The playgrounds' helpers: one-line messages in the student's language, and readable plots."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from utils import i18n
from utils.widgets import PlaygroundError, classifier_for_widget, read_upload


@pytest.fixture
def french():
    i18n.set_language("fr")
    yield
    i18n.set_language("en")


def _png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_upload_becomes_an_rgb_image():
    image = read_upload(memoryview(_png()))
    assert image.mode == "RGB" and image.size == (40, 30)


@pytest.mark.parametrize("data", [b"", b"this is not a picture", _png()[:60]],
                         ids=["empty", "text", "cut-short"])
def test_a_bad_upload_is_one_line_in_the_students_language(french, data):
    with pytest.raises(PlaygroundError) as info:
        read_upload(data)
    message = str(info.value)
    assert "\n" not in message and "BytesIO" not in message and "<" not in message
    assert message in i18n.catalog("fr").values(), f"not a French catalog entry: {message!r}"


def test_no_labels_is_one_line_without_a_terminal_flag(french):
    from utils.models import load_clip

    clip = load_clip("tiny-shapes")
    with pytest.raises(PlaygroundError) as info:
        classifier_for_widget(clip, " , ")
    assert "--" not in str(info.value) and str(info.value) == i18n.t(
        "Type at least two labels, separated by commas.")


def test_label_warnings_become_translated_notes_not_stderr(french, recwarn):
    from utils.models import load_clip

    clip = load_clip("tiny-shapes")
    classifier, notes = classifier_for_widget(clip, "a red circle, a red circle")
    assert classifier.classnames == ["a red circle"]
    assert notes == [i18n.t("Duplicate labels are counted once."),
                     i18n.t("Only one label: its probability is always 100%. Add labels to "
                            "compare it with.")]
    assert not [w for w in recwarn if issubclass(w.category, UserWarning)]


def test_numbers_follow_the_language():
    assert i18n.t("{n:,} images, {h:.1f} h", "fr", n=50000, h=0.31) == "50\u202f000 images, 0,3 h"
    assert i18n.t("{n:,} images, {h:.1f} h", "en", n=50000, h=0.31) == "50,000 images, 0.3 h"
    assert i18n.t("{h:.2f}", "it", h=np.float32(0.5)) == "0,50"
    assert i18n.t("{name}", "fr", name="v1.2") == "v1.2"  # text is left alone
    assert i18n.number(3.25, ".1f", "fr") == "3,2" and i18n.number(3.25, ".1f", "zh") == "3.2"
    # the percent sign as each locale writes it (CLDR): a no-break space before it in fr and es
    assert [i18n.t("{p:.0%}", lang, p=0.5) for lang in ("en", "fr", "es", "pt", "zh")] == \
        ["50%", "50\u00a0%", "50\u00a0%", "50%", "50%"]


def test_prediction_labels_stay_inside_the_bar_plot():
    import matplotlib.pyplot as plt

    from utils.viz import plot_prediction

    labels = ["a photo of a cat", "a drawing of a green star at the bottom of the picture"]
    axes = plot_prediction(np.zeros((32, 32, 3), np.uint8), labels, [0.3, 0.7])
    fig = axes[0].figure
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    picture = axes[0].get_window_extent(renderer)
    texts = [text for text in axes[1].texts if text.get_text().startswith("a ")]
    assert len(texts) == 2
    for text in texts:
        box = text.get_window_extent(renderer)
        assert box.x0 >= picture.x1, f"{text.get_text()!r} is drawn over the picture"
        assert box.x1 <= fig.bbox.x1 + 1, f"{text.get_text()!r} runs off the figure"
    plt.close(fig)


def test_notices_go_to_stdout_in_a_notebook_and_stderr_in_a_terminal(monkeypatch):
    import sys

    monkeypatch.delitem(sys.modules, "ipykernel", raising=False)
    assert i18n.notice_file() is sys.stderr  # the CLI: --json on stdout stays clean
    monkeypatch.setitem(sys.modules, "ipykernel", sys)
    assert i18n.notice_file() is sys.stdout  # a notebook: no pink block for a notice



def _ready_made_plot_texts(lang: str) -> list[tuple[str, str, str]]:
    """(title, x label, y label) of each ready-made plot, drawn with no title given, in lang."""
    import matplotlib.pyplot as plt
    import torch

    from utils.viz import plot_confusion, plot_embedding_2d, plot_prediction, plot_similarity

    previous = i18n.get_language()
    i18n.set_language(lang)
    try:
        image = np.zeros((8, 8, 3), np.uint8)
        emb = torch.nn.functional.normalize(torch.randn(6, 4, generator=torch.Generator().manual_seed(0)), dim=-1)
        axes = [plot_prediction(image, ["a", "b"], [0.4, 0.6])[1],
                plot_similarity(torch.rand(2, 3), [image] * 3, ["a", "b"]),
                plot_confusion(np.eye(2), ["a", "b"]),
                plot_embedding_2d(emb[:4], [0, 1, 0, 1], emb[4:], ["a", "b"])]
        return [(ax.get_title(), ax.get_xlabel(), ax.get_ylabel()) for ax in axes]
    finally:
        i18n.set_language(previous)
        plt.close("all")


def test_the_ready_made_plots_have_a_title_and_both_axis_labels_in_the_course_language():
    """What a student sees without passing a title: every panel titled, every axis labelled, in
    the course's language (plot_matrix and plot_curves take theirs from the caller)."""
    english = _ready_made_plot_texts("en")
    for lang in ("en", "fr", "zh"):
        for texts, in_english in zip(_ready_made_plot_texts(lang), english):
            assert all(texts), f"{lang}: an empty title or axis label: {texts}"
            if lang != "en":
                assert texts[0] != in_english[0], f"{lang}: the title {texts[0]!r} is English"
