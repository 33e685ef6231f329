"""`python -m utils classify photo.jpg --labels "a cat,a dog" [--json]`: zero-shot classify
image files from the terminal (the classifier is utils/zeroshot.py)."""

from __future__ import annotations

import argparse
import sys
import warnings

from .cli import add_clip_args
from .errors import UsageError, to_json
from .zeroshot import TEMPLATE_SETS, classify_files, validate_labels

CLI_HELP = """\
Zero-shot classification: which of the labels fits each image best?

Every image is compared with every label; the probabilities of an image sum to 1 over the
labels. Unreadable images are skipped with the reason; the exit code is 1 only when no
image at all could be classified.

--json prints one object:
  {"model": str,                      # description of the CLIP model used
   "labels": [str, ...],              # the labels, in order, after cleaning
   "templates": [str, ...],           # prompt templates ("{}" = the label as it is)
   "results": [{"path": str,          # one entry per classified image, in input order
                "probabilities": {label: float, ...},  # every label, in label order, sums to 1
                "top": [{"label": str, "probability": float}, ...],  # the --top best, best first
                "prediction": str}],  # the most probable label
   "skipped": [{"path": str, "reason": str}, ...],  # images that could not be read
   "warnings": [str, ...]}            # e.g. duplicate labels dropped, prompt truncated

example:
  python -m utils classify cat.jpg shapes/ --labels "a red circle,a blue square" --json
"""


def add_cli(subparsers) -> None:
    p = subparsers.add_parser("classify", help="zero-shot classify images with CLIP",
                              description=CLI_HELP,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("images", nargs="+", metavar="IMAGE", help="image files or folders of images")
    p.add_argument("--labels", required=True,
                   help='comma-separated labels, e.g. "a red circle,a blue square"')
    add_clip_args(p)
    p.add_argument("--templates", default="none", choices=sorted(TEMPLATE_SETS),
                   help="prompt ensembling: none (labels as they are), shapes, simple or openai")
    p.add_argument("--top", type=int, default=5, metavar="K", help="labels to show per image")
    p.add_argument("--fit", default="pad", choices=["pad", "crop"],
                   help="non-square images: pad to a square (default, nothing is lost) or "
                        "let the model's preprocessing crop the centre")
    p.add_argument("--json", action="store_true", help="print JSON (schema above)")
    p.set_defaults(func=run_cli, validate=_validate_cli)


def format_text(report: dict) -> str:
    """The human-readable version of the --json object."""
    lines = [f"model: {report['model']}"] + [f"warning: {w}" for w in report["warnings"]]
    for r in report["results"]:
        lines.append(r["path"])
        for item in r["top"]:
            bar = "#" * round(30 * item["probability"])
            lines.append(f"  {item['probability']:6.1%}  {item['label']:<40} {bar}")
    lines += [f"skipped {s['path']}: {s['reason']}" for s in report["skipped"]]
    lines.append(f"{len(report['results'])} image(s) classified, "
                 f"{len(report['skipped'])} skipped.")
    return "\n".join(lines)


def _validate_cli(args) -> None:
    """Before the model loads: the labels make sense (a missing image is skipped, with why)."""
    try:
        with warnings.catch_warnings():  # classify_files reports the warnings
            warnings.simplefilter("ignore")
            validate_labels(args.labels)
    except ValueError as err:
        raise UsageError(f"argument --labels: {err}") from None


def run_cli(args) -> int:
    from .models import load_clip
    clip = load_clip(args.model, args.pretrained, device=args.device)
    if clip.is_tiny:  # on stderr, so that --json output stays clean
        print("note: the tiny shapes-world model knows only coloured shapes; its answers about "
              "photos mean nothing.", file=sys.stderr)
    report = classify_files(args.images, args.labels, clip, TEMPLATE_SETS[args.templates],
                            args.top, args.fit)
    if not report["results"]:  # the contract's error, with the reasons of every skip
        report["error"] = f"no image could be classified ({len(report['skipped'])} skipped)."
        report["hint"] = "Each skipped file has its reason; fix or replace those files."
    print(to_json(report, indent=1) if args.json else format_text(report))
    if not args.json and not report["results"]:
        print(f"error: {report['error']} {report['hint']}", file=sys.stderr)
    return 1 if not report["results"] else 0
