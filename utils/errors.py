"""The course's exceptions and the one error contract of `python -m utils` (utils/cli.py): a
`UsageError` (a bad argument, found before any work) exits 2, any other error 1, in one line;
`--json` prints {"error": ..., "hint": ...} via `to_json` (NaN -> null; a non-UTF-8 file name is
shown with U+FFFD and kept exactly, base64, under key + "_b64"); `--debug` adds the traceback."""

from __future__ import annotations

import base64
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path


class CourseError(Exception):
    """An error of the course, with what went wrong (`message`) and what to do (`hint`)."""
    exit_code = 1

    def __init__(self, message: str, hint: str = ""):
        self.message, self.hint = str(message), str(hint)
        super().__init__(f"{self.message} {self.hint}".strip())


class UsageError(CourseError, ValueError):
    """A command-line argument (or function argument) outside its allowed values."""
    exit_code = 2


class CheckpointError(CourseError, RuntimeError):
    """A checkpoint file exists but cannot be read (truncated, corrupt, wrong model)."""


@dataclass(frozen=True)
class Range:
    """Allowed values of a number: lo <= x <= hi (lo < x with strict_lo); finite floats only."""
    lo: float | None = None
    hi: float | None = None
    strict_lo: bool = False

    def describe(self) -> str:
        if self.lo is not None and self.hi is not None and not self.strict_lo:
            return f"from {self.lo} to {self.hi}"
        low = f"more than {self.lo}" if self.strict_lo else f"at least {self.lo}"
        parts = [low] if self.lo is not None else []
        parts += [f"at most {self.hi}"] if self.hi is not None else []
        return " and ".join(parts) or "a finite number"

    def check(self, flag: str, value) -> None:
        """Raise UsageError naming `flag` when `value` is not allowed (None always is)."""
        if value is None:
            return
        if isinstance(value, float) and not math.isfinite(value):
            raise UsageError(f"argument {flag}: must be a finite number ({self.describe()}), "
                             f"got {value}.")
        too_low = self.lo is not None and (value <= self.lo if self.strict_lo else value < self.lo)
        if too_low or (self.hi is not None and value > self.hi):
            raise UsageError(f"argument {flag}: must be {self.describe()}, got {value}.")


def check_range(flag: str, value, lo=None, hi=None, strict_lo: bool = False) -> None:
    """The Python API's check: check_range("k", k, 1) raises UsageError("argument k: ...")."""
    Range(lo, hi, strict_lo).check(flag, value)


def check_output(path: str | os.PathLike, flag: str = "--out", force: bool = False,
                 folder: bool = False) -> Path:
    """Check, before any work, that a file (or an empty folder) can be written at `path`;
    an existing one only with force=True. Returns the absolute path; raises UsageError."""
    path = Path(os.path.abspath(os.path.expanduser(os.fspath(path))))
    what = "folder" if folder else "file"
    if path.exists():
        if path.is_dir() != folder:
            raise UsageError(f"argument {flag}: {show(path)} is a "
                             f"{'file' if folder else 'folder'}, not a {what}.",
                             f"Choose a {what} name.")
        if not force and (not folder or any(path.iterdir())):
            raise UsageError(f"argument {flag}: {show(path)} already exists"
                             f"{' and is not empty' if folder else ''}; nothing is overwritten.",
                             "Choose a new name, or pass --force to replace it.")
    parent = path if folder and path.is_dir() else path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"argument {flag}: {show(parent)} is a file, so {show(path)} cannot be "
                         "created under it.", f"Choose a {what} in a folder.")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"argument {flag}: cannot write into {show(parent)} (permission denied).",
                         f"Choose a {what} in a folder you can write to.")
    return path


def first_line(err: BaseException) -> str:
    """The first line of an error's message, at most 300 characters ("" when it has none)."""
    return next(iter(str(err).splitlines()), "")[:300]


def show(text) -> str:
    """Text safe to print: bytes that are not UTF-8 (surrogate escapes) become U+FFFD."""
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def show_progress(args) -> bool:
    """Progress bars only for a person at a terminal: not with --json, not into a log or a pipe."""
    at_terminal = hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    return not getattr(args, "json", False) and at_terminal


def _has_surrogates(text: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in text)


def sanitize(obj):
    """A copy of `obj` that JSON can hold: NaN/inf -> None, Paths -> str, undecodable
    file-name bytes -> replacement characters plus the exact bytes under key + "_b64"."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        obj = os.fspath(obj)
    if isinstance(obj, str):
        return show(obj) if _has_surrogates(obj) else obj
    if isinstance(obj, dict):
        out = {}
        for key, value in obj.items():
            out[str(key) if not isinstance(key, str) else show(key)] = sanitize(value)
            if isinstance(value, (str, os.PathLike)) and _has_surrogates(os.fspath(value)):
                raw = os.fspath(value).encode("utf-8", "surrogateescape")
                out[f"{key}_b64"] = base64.b64encode(raw).decode("ascii")
        return out
    if isinstance(obj, (list, tuple)):
        return [sanitize(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return sanitize(obj.item())
    return obj


def to_json(obj, indent: int | None = None) -> str:
    """json.dumps that never writes NaN/Infinity and is always valid UTF-8 (see `sanitize`)."""
    return json.dumps(sanitize(obj), indent=indent, ensure_ascii=False, allow_nan=False)


def error_json(message: str, hint: str = "") -> str:
    """The --json form of an error: {"error": ..., "hint": ...}."""
    return to_json({"error": message, "hint": hint})
