"""What a lesson's exercise check cells import: `exercise_check`, `same_answer`, `answer_digest`.

A check cell runs its asserts inside `with exercise_check(n):`. On an unsolved exercise (the
student version's `raise NotImplementedError()`, or a name the solution should define) it fails
with an AssertionError that says what to do. `same_answer` compares with a digest, so that a
check does not print the answer it expects. Student versions are built by `course_tools`.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

from .i18n import t


@contextlib.contextmanager
def exercise_check(number: int) -> Iterator[None]:
    """Wrap the asserts of a check cell: an unsolved exercise (NotImplementedError, or a name
    the solution should define) fails with an AssertionError that says what to do."""
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
    """A short digest of an answer (floats rounded to 2 decimals), for checks that must not
    show the value they expect."""
    if isinstance(value, float):
        value = round(value, 2)
    return hashlib.sha256(repr(value).encode("utf-8")).hexdigest()[:12]


def same_answer(value: object, digest: str) -> bool:
    """Whether `value` is the answer whose `answer_digest` is `digest`."""
    return answer_digest(value) == digest
