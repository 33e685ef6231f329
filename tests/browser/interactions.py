"""Each widget of the course, used as a student uses it, with the check of what must change."""

from __future__ import annotations

import io

from jlab import cell_index, image_sources, output_of

from utils.i18n import catalog

WAIT_MS = 60_000


def png_bytes(colour: str = "green") -> bytes:
    """A small PNG, as a student's photo would arrive in the upload widget."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (96, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def in_language(text: str, lang: str) -> str:
    """What t(text) shows in `lang` (the English text where no translation exists)."""
    return text if lang == "en" else catalog(lang).get(text, text)


def _wait_for_new_image(page, area, before: list[str], what: str) -> list[str]:
    """Wait until the images of `area` differ from `before` (the output was redrawn)."""
    deadline = WAIT_MS
    while deadline > 0:
        now = image_sources(area)
        if now and now != before:
            return now
        page.wait_for_timeout(200)
        deadline -= 200
    raise AssertionError(f"{what}: the output did not change")


def _one_line_text(page, area, what: str) -> str:
    """The text the output area shows instead of a plot: exactly one line, no raw repr."""
    area.locator(".jp-OutputArea-output").first.wait_for(timeout=WAIT_MS)
    page.wait_for_function("(el) => el.innerText.trim().length > 0", arg=area.element_handle(),
                           timeout=WAIT_MS)
    text = area.inner_text().strip()
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == 1, f"{what}: the widget shows {len(lines)} lines, expected one: {text!r}"
    for raw in ("BytesIO", "Traceback", "Warning", "--", "/", "<"):
        assert raw not in text, f"{what}: the message shows {raw!r}: {text!r}"
    return text


def upload_file(page, area, name: str, data: bytes) -> None:
    """Click the Upload button and pick a file in the dialog that opens."""
    with page.expect_file_chooser() as chooser:
        area.locator(".widget-upload").first.click()
    chooser.value.set_files({"name": name, "mimeType": "image/png", "buffer": data})


def temperature_slider(page, lang: str) -> None:
    """01: the temperature slider shows its whole label and 0.07, and moving it redraws the plot."""
    area = output_of(page, cell_index(page, "temperature"))
    slider = area.locator(".widget-slider").first
    label = slider.locator(".widget-label")
    cut = label.evaluate("el => el.scrollWidth > el.clientWidth + 1")
    assert not cut, f"the slider label is cut off: {label.inner_text()!r}"
    readout = slider.locator(".widget-readout")
    assert readout.inner_text().strip() == "0.07", f"the readout shows {readout.inner_text()!r}"
    before = image_sources(area)
    assert before, "the temperature cell shows no plot"
    handle = slider.locator(".noUi-handle").first
    handle.focus()
    for _ in range(3):  # three steps to the right, as with the arrow keys of a laptop
        handle.press("ArrowRight")
    assert readout.inner_text().strip() == "0.3", f"after 3 steps the readout shows {readout.inner_text()!r}"
    _wait_for_new_image(page, area, before, "moving the temperature slider")


def playground(page, lang: str) -> None:
    """02: the dropdown, an upload, the dropdown again (it used to be ignored after an upload),
    then a file that is not an image and empty labels: one line in the student's language."""
    area = output_of(page, cell_index(page, "playground"))
    select = area.locator("select").first
    options = select.locator("option").all_inner_texts()
    assert len(options) >= 3, f"the image dropdown offers {options}"
    shown = image_sources(area)
    select.select_option(index=1)
    shown = _wait_for_new_image(page, area, shown, "choosing another image in the dropdown")
    upload_file(page, area, "my-photo.png", png_bytes("green"))
    shown = _wait_for_new_image(page, area, shown, "uploading a photo")
    select.select_option(index=2)
    shown = _wait_for_new_image(page, area, shown, "choosing a sample after an upload")

    upload_file(page, area, "notes.png", b"this is not a picture")
    result = area.locator(".widget-output").first  # the playground's own output, under its controls
    page.wait_for_function("(el) => el.querySelectorAll('img').length === 0",
                           arg=result.element_handle(), timeout=WAIT_MS)
    text = _one_line_text(page, result, "uploading a file that is not an image")
    prefix = in_language("Cannot classify:", lang)
    assert text.startswith(prefix), f"the error is not in {lang}: {text!r}"

    select.select_option(index=0)  # back to a sample: the broken upload is forgotten
    _wait_for_new_image(page, area, [], "choosing a sample after a broken upload")
    labels = area.locator(".widget-text input").first
    shown = image_sources(area)
    labels.fill("a red circle, a red circle, a blue square")  # a duplicate: a note, never a warning
    labels.press("Enter")
    _wait_for_new_image(page, area, shown, "typing labels with a duplicate")
    note = in_language("Duplicate labels are counted once.", lang)
    result.get_by_text(note).wait_for(timeout=WAIT_MS)
    stderr = result.locator('[data-mime-type="application/vnd.jupyter.stderr"]')
    assert stderr.count() == 0, f"the playground shows a warning block: {stderr.first.inner_text()!r}"
    labels.fill(" , ")
    labels.press("Enter")
    page.wait_for_function("(el) => el.querySelectorAll('img').length === 0",
                           arg=result.element_handle(), timeout=WAIT_MS)
    text = _one_line_text(page, result, "classifying with no labels")
    assert text.startswith(prefix), f"the error is not in {lang}: {text!r}"

    native_labels(page, area, result, lang)


def red_circle_png() -> bytes:
    """A red circle on white, drawn by PIL (not by the course's renderer), as a student's picture."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (128, 128), "white")
    ImageDraw.Draw(image).ellipse((24, 24, 104, 104), fill=(220, 20, 20))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def native_labels(page, area, result, lang: str) -> None:
    """02: labels typed in the notebook's language (zh: 红色的圆形 ...) name an uploaded red circle."""
    from utils.captions import label

    pairs = [("blue", "square"), ("red", "circle"), ("green", "triangle"), ("yellow", "star")]
    names = [label(colour, shape, lang) for colour, shape in pairs]
    expected = label("red", "circle", lang)
    upload_file(page, area, "red-circle.png", red_circle_png())
    labels = area.locator(".widget-text input").first
    labels.fill(", ".join(names))
    labels.press("Enter")
    best = in_language("Best match: {label} ({p:.0%})", lang).split("{label}")[0]
    line = result.get_by_text(best + expected)
    try:
        line.first.wait_for(timeout=WAIT_MS)
    except Exception as err:  # the assertion below says what the student saw instead
        raise AssertionError(f"labels {names} on a red circle: the playground says "
                             f"{result.inner_text()!r}, expected {expected!r} first") from err


def search_box(page, lang: str) -> None:
    """03: typing a query and pressing Enter redraws the results."""
    area = output_of(page, cell_index(page, "widget"))
    before = image_sources(area)
    assert before, "the search cell shows no results"
    box = area.locator(".widget-text input").first
    box.fill("a red circle")
    box.press("Enter")
    _wait_for_new_image(page, area, before, "searching for 'a red circle'")


def gif_plays(page, lang: str) -> None:
    """04: the animation of the optimisation is a GIF that plays (its pixels change)."""
    gif = page.locator(".jp-OutputArea-output img[src^='data:image/gif']").first
    gif.wait_for(timeout=WAIT_MS)
    gif.scroll_into_view_if_needed()
    first = gif.screenshot()
    for _ in range(20):
        page.wait_for_timeout(150)
        if gif.screenshot() != first:
            return
    raise AssertionError("the GIF of the optimisation does not play: its pixels never change")


def quiz_gives_feedback(page, lang: str) -> None:
    """Both quizzes (before the lesson, when the notebook has one, and after it): Check
    without an answer asks for one; with an answer it says right or wrong."""
    if cell_index(page, "pre-quiz-show", missing_ok=True) >= 0:
        _quiz_answers(page, "pre-quiz-show")
    _quiz_answers(page, "quiz-show")


def _quiz_answers(page, cell_id: str) -> None:
    area = output_of(page, cell_index(page, cell_id))
    button = area.locator("button").first
    button.scroll_into_view_if_needed()
    question = button.locator("xpath=..")
    feedback = question.locator(".widget-html").last
    button.click()
    page.wait_for_function("(el) => el.innerText.trim().length > 0",
                           arg=feedback.element_handle(), timeout=WAIT_MS)
    asked = feedback.inner_text()
    answer = question.locator("input").first
    if answer.get_attribute("type") == "checkbox":
        answer.check()
    else:
        answer.fill("1")
    button.click()
    page.wait_for_function("([el, before]) => el.innerText.trim() !== before.trim()",
                           arg=[feedback.element_handle(), asked], timeout=WAIT_MS)
    verdict = feedback.inner_text()
    assert "✔" in verdict or "✘" in verdict or "%" in verdict, f"{cell_id}: no verdict: {verdict!r}"


# The cells whose widgets the tests use: each gets its own screenshot after use.
WIDGET_CELLS = ("temperature", "playground", "widget", "library-run", "pre-quiz-show", "quiz-show")

FOR_LESSON = {
    "01-contrastive-learning": [temperature_slider],
    "02-zero-shot-classification": [playground],
    "03-image-search": [search_box],
    "04-vqgan-clip": [gif_plays],
}
