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
        detail = str(err) or type(err).__name__
        raise AssertionError(t("Exercise {n} is not solved yet ({e}). Replace `raise NotImplementedError()` "
                               "in the cell above with your code, run it, then run this check again.",
                               n=number, e=detail)) from None
    except AssertionError as err:
        raise AssertionError(t("Exercise {n}: not yet. {hint}", n=number, hint=str(err))) from None


def answer_digest(value: object) -> str:
    """A short digest of an answer (floats to 2 decimals): a check need not show what it expects."""
    if isinstance(value, float):
        value = round(value, 2)
    return hashlib.sha256(repr(value).encode("utf-8")).hexdigest()[:12]


def same_answer(value: object, digest: str) -> bool:
    """Whether `value` is the answer whose `answer_digest` is `digest`."""
    return answer_digest(value) == digest
