"""The course's command line: `python -m utils <command> [--json] [--debug]`.

Each command's module (COMMANDS) adds its sub-parser with `add_cli(subparsers)`. Every command
follows the error contract of utils/errors.py: a bad argument exits 2 before any work, a failure
exits 1, in one line; no traceback unless --debug; progress bars only on a terminal.
"""

from __future__ import annotations

import argparse
import codecs
import importlib
import os
import sys
import traceback

from .assets import DEVICE_HELP
from .errors import CourseError, Range, UsageError, check_output, error_json, show

# command name -> the module that defines its add_cli(subparsers)
COMMANDS = {
    "doctor": "utils.doctor",
    "classify": "utils.classify_cli",
    "search": "utils.search_cli",
    "generate": "utils.generate_cli",
    "dalle": "utils.dalle_train",
    "quiz": "utils.quiz",
}

SEED = Range(0, 2**32 - 1)
DALLE_MAX_N = 256  # samples per `dalle` call: 256 images of 64 x 64 sample in chunks in seconds
# command -> {argument: the allowed values of that number}
LIMITS = {
    "classify": {"top": Range(1, 1000)},
    "search": {"top": Range(1, 10_000), "batch_size": Range(1, 4096), "workers": Range(0, 64),
               "max_pixels": Range(1, 1_000_000_000)},
    "generate": {"iterations": Range(0, 100_000), "cutouts": Range(1, 1024), "size": Range(8, 2048),
                 "lr": Range(0, 100, strict_lo=True), "seed": SEED, "batch": Range(1, 64),
                 "saturation": Range(0, 1000), "threads": Range(1, 1024)},
    "dalle": {"n": Range(1, DALLE_MAX_N), "seed": SEED,
              "temperature": Range(0, 100, strict_lo=True), "top_k": Range(1, 100_000),
              "guidance": Range(0, 100)},
}


def add_clip_args(p: argparse.ArgumentParser) -> None:
    """--model, --pretrained and --device: which CLIP a command uses, and where."""
    p.add_argument("--model", default="auto", help='"auto" (pretrained if available, else tiny), '
                                                   '"tiny-shapes" or an open_clip name')
    p.add_argument("--pretrained", default="auto", help="open_clip tag or a local checkpoint file")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


class CourseArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad argument raises UsageError (one line, exit 2) instead of exiting."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message}.", f"See `{self.prog} --help`.")


def build_parser(commands: list[str] | None = None) -> argparse.ArgumentParser:
    parser = CourseArgumentParser(prog="python -m utils", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in commands or COMMANDS:
        importlib.import_module(COMMANDS[name]).add_cli(sub)
    return parser


def validate(args: argparse.Namespace) -> None:
    """Check every number and output path of the parsed command before any work starts."""
    command = getattr(args, "command", None)
    for dest, allowed in LIMITS.get(command, {}).items():
        try:
            allowed.check("--" + dest.replace("_", "-"), getattr(args, dest, None))
        except UsageError as err:
            raise UsageError(err.message, f"See `python -m utils {command} --help`.") from None
    extra = getattr(args, "validate", None)  # a command's own checks (e.g. files that must exist)
    if extra is not None:
        extra(args)
    if command in ("classify", "search", "generate"):
        _check_model_arguments(args)
    if getattr(args, "device", None) not in (None, "auto"):  # a device this machine lacks
        from .assets import pick_device
        try:
            pick_device(args.device)
        except ValueError as err:
            raise UsageError(f"argument --device: {err}",
                             f"See `python -m utils {command} --help`.") from None
    out = getattr(args, "out", None)
    if not out and command in ("generate", "dalle"):
        out = os.path.join("outputs", "new.png")  # their default folder must be writable too
    if out:
        # generate and dalle choose a new name when the file exists; quiz exports need --force
        force = getattr(args, "force", False) or command in ("generate", "dalle")
        check_output(out, "--out", force=force)


def _check_model_arguments(args: argparse.Namespace) -> None:
    """--model must be a model we know; --pretrained, --checkpoint, --init-image files exist."""
    from .models import CHECKPOINT_SUFFIXES, TINY_NAME, TINY_VQ_NAME
    for dest in ("pretrained", "checkpoint", "init_image"):
        value = getattr(args, dest, None)
        looks_like_file = (dest != "pretrained" or str(value).endswith(CHECKPOINT_SUFFIXES)
                           or os.sep in str(value))
        if value not in (None, "", "auto") and looks_like_file and not os.path.isfile(value):
            raise UsageError(f"argument --{dest.replace('_', '-')}: {show(value)} is not a file.",
                             "Check the path.")
    name = getattr(args, "model", None)
    if name in (None, "auto", TINY_NAME, TINY_VQ_NAME):  # hf-hub:org/name: unknown, as load_clip
        return
    import open_clip
    if name not in open_clip.list_models():
        raise UsageError(f"argument --model: unknown model {show(name)!r}.",
                         f"Use auto, {TINY_NAME}, or an open_clip name such as ViT-B-32 "
                         "(python -c 'import open_clip; print(open_clip.list_models())').")


def _replace_undecodable(err: UnicodeEncodeError):
    """Codec error handler: what a stream cannot encode shows as U+FFFD (in UTF-8) or '?'."""
    utf8 = err.encoding.lower().replace("-", "").replace("_", "") == "utf8"
    n = err.end - err.start
    return (b"\xef\xbf\xbd" * n if utf8 else "?" * n, err.end)


codecs.register_error("course-replace", _replace_undecodable)


def _explain(err: Exception) -> CourseError:
    """Any error as a CourseError: what went wrong, and what to do."""
    if isinstance(err, CourseError):
        return err
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return CourseError(f"out of memory ({type(err).__name__}).",
                           "Ask for less at once (smaller --n, --batch, --size or --batch-size).")
    if isinstance(err, OSError):  # no strerror: raised by the course with its own message
        where = f" {show(err.filename)}" if err.filename else ""
        return CourseError(str(err) if err.strerror is None
                           else f"could not read or write{where}: {err.strerror or err}.",
                           "Check that the path exists and that you may use it.")
    if isinstance(err, ValueError):  # a value the course (or a library) refuses, saying why
        return CourseError(str(err))
    # Anything else is a bug, named by its type (a KeyError's message is just its key).
    return CourseError(f"unexpected {type(err).__name__}: {err}",
                       "This is a bug in the course: rerun with --debug and report the traceback.")


def _fail(err: CourseError, as_json: bool, code: int | None = None) -> int:
    """Print the error in one line (JSON with --json); return the exit code."""
    lines = [line.strip() for line in show(err.message).splitlines() if line.strip()]
    if len(lines) > 2:  # e.g. every problem of a quiz file: the first, and how many more
        lines = [*lines[:2], f"(and {len(lines) - 2} more)"]
    message, hint = " ".join(" ".join(lines).split()), show(err.hint)  # one line, always
    if as_json:
        print(error_json(message, hint))
    else:
        print(f"error: {message}" + (f" {hint}" if hint else ""), file=sys.stderr)
    return err.exit_code if code is None else code


def main(argv: list[str] | None = None) -> int:
    """`python -m utils COMMAND ...`: the exit code of the command (0 when it worked)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # Import only the module of the command asked for: `doctor` must start fast.
    wanted = [argv[0]] if argv and argv[0] in COMMANDS else None
    return run(lambda: build_parser(wanted), argv)


def run(make_parser, argv: list[str]) -> int:
    """Parse argv with make_parser(), `validate`, call `args.func`; every error follows the
    contract (course_tools uses it for its own commands)."""
    debug = "--debug" in argv
    argv = [a for a in argv if a != "--debug"]
    as_json = "--json" in argv
    for stream in (sys.stdout, sys.stderr):  # undecodable file names print, never crash
        try:
            stream.reconfigure(errors="course-replace")
        except (AttributeError, ValueError, OSError):  # a stream that cannot change: leave it
            pass
    try:
        parser = make_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        validate(args)
        return int(args.func(args) or 0)
    except SystemExit as err:  # --help, or a command that ends itself
        if isinstance(err.code, str):
            return _fail(CourseError(err.code), as_json)
        return int(err.code or 0)
    except KeyboardInterrupt:
        return _fail(CourseError("interrupted (Ctrl-C); no output file was left half-written."),
                     as_json, code=130)
    # The command line's outer edge: every error becomes one line (the traceback with --debug).
    # _explain keeps its meaning: an error it does not know is named a bug, with its type.
    except Exception as err:
        if debug:
            traceback.print_exc()
        return _fail(_explain(err), as_json)
