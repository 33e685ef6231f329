"""The notebooks' playgrounds (lessons 02 and 03): a student's input, checked; what went wrong is
one translated line (`PlaygroundError`), never a traceback."""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from .i18n import t

if TYPE_CHECKING:
    from PIL import Image

    from .models import CLIP
    from .zeroshot import ZeroShotClassifier


class PlaygroundError(ValueError):
    """A student's input a playground cannot use; its text is one translated line."""


def read_upload(data: bytes | memoryview) -> Image.Image:
    """The bytes of an uploaded file as an upright RGB image, or PlaygroundError in one line."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from .images import to_rgb
    if not data:
        raise PlaygroundError(t("The uploaded file is empty. Upload a JPEG or PNG photo."))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(bytes(data)))
            image.load()
    except (UnidentifiedImageError, Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise PlaygroundError(
            t("This file is not an image we can open. Upload a JPEG or PNG photo.")) from None
    except OSError:  # cut short or corrupt
        raise PlaygroundError(
            t("This image file is broken or cut short. Upload it again.")) from None
    return to_rgb(ImageOps.exif_transpose(image))


# validate_labels warns in English for the terminal; a widget shows the same facts translated.
_LABEL_NOTES = (
    ("duplicate label", "Duplicate labels are counted once."),
    ("Only one label",
     "Only one label: its probability is always 100%. Add labels to compare it with."),
    ("truncated", "A label is too long for this model: its end is ignored. Use a shorter label."),
)


def classifier_for_widget(clip: CLIP, text: str) -> tuple[ZeroShotClassifier, list[str]]:
    """(classifier, notes) for the labels typed in a playground: the notes are `validate_labels`'s
    warnings, translated; no label at all -> PlaygroundError."""
    from .zeroshot import build_classifier, validate_labels
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            validate_labels(text, clip.tokenizer)  # raises before any text is embedded
        except ValueError:
            raise PlaygroundError(t("Type at least two labels, separated by commas.")) from None
        classifier = build_classifier(clip, text)  # warns again: the same facts, recorded once
    notes = [_note(str(w.message)) for w in caught]
    return classifier, list(dict.fromkeys(notes))  # each fact once, in order


def _note(message: str) -> str:
    """A label warning in the student's language; one we have no translation for is still one
    line, never a path."""
    for key, line in _LABEL_NOTES:
        if key in message:
            return t(line)
    return next(iter(message.splitlines()), "")  # "" for a warning with no text
