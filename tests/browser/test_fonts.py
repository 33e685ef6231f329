"""Chinese plot labels render as text, not as empty boxes ("tofu").

A font without Chinese draws every missing character as the same box: two different
words then give the same pixels. With the CJK font that `set_language("zh")` picks, they
differ from each other and from the render without it. CI installs fonts-noto-cjk (apt.txt);
elsewhere, a machine without a Chinese font skips this test with the reason.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from jlab import in_ci

from utils import i18n


def _render(text: str, family: str | None) -> np.ndarray:
    """The pixels of `text` drawn alone (black on white), as a (H, W) array of ink darkness."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(2.4, 0.6), dpi=100)
    FigureCanvasAgg(fig)
    fig.text(0.02, 0.3, text, fontsize=20, **({"family": family} if family else {}))
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    return 255 - rgba[..., :3].mean(axis=-1)


@pytest.fixture
def zh_font(monkeypatch):
    from matplotlib import rcParams

    monkeypatch.setitem(rcParams, "font.sans-serif", list(rcParams["font.sans-serif"]))
    monkeypatch.setitem(rcParams, "font.family", rcParams["font.family"])
    font = i18n.use_cjk_font()
    if font is None:
        if in_ci():
            pytest.fail("no Chinese font in CI: .ci/run must install fonts-noto-cjk (apt.txt)")
        pytest.skip("no Chinese font installed (apt-get install fonts-noto-cjk)")
    yield font
    i18n.set_language("en")


def test_chinese_labels_are_glyphs_not_boxes(zh_font):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a missing glyph warns: here that is a failure
        probability, image = _render("概率", None), _render("图像", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # DejaVu Sans has no Chinese: tofu on purpose
        tofu_a, tofu_b = _render("概率", "DejaVu Sans"), _render("图像", "DejaVu Sans")
    assert np.abs(tofu_a - tofu_b).mean() < 0.5, "the reference render without the font is not tofu"
    assert np.abs(probability - image).mean() > 2, f"two words drawn with {zh_font} look the same"
    assert np.abs(probability - tofu_a).mean() > 2, f"{zh_font} draws the same boxes as no font"
    assert probability.max() > 200, "nothing was drawn"


def test_a_zh_plot_draws_without_missing_glyph_warnings(zh_font):
    import matplotlib.pyplot as plt

    from utils.data import sample_images
    from utils.viz import plot_prediction

    i18n.set_language("zh")
    image, _ = sample_images(1, seed=0)[0]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        axes = plot_prediction(image, ["红色的圆", "蓝色的方块"], [0.7, 0.3], title=i18n.t("probability"))
        axes[0].figure.canvas.draw()
        plt.close(axes[0].figure)
    glyphs = [str(w.message) for w in caught if "missing from" in str(w.message)]
    assert not glyphs, glyphs[:3]
