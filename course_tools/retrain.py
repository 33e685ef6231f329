"""Retrain a bundled tiny model of utils/assets: `python -m course_tools train MODEL`.

Course-author tooling: lessons train their own small models live with `utils.train.fit`.

    python -m course_tools train clip --seed 1          # -> <cache>/models/clip-seed1/
    python -m course_tools train vq --out my_vq/        # -> my_vq/ (a new or empty folder; --force: any)
    python -m course_tools train clip --replace-bundled # retrain the bundled model itself

The default folder is `models/<model>-seed<S>` (then -2, -3... if taken) in the course's cache
folder ($COURSE_CACHE, else ~/.cache/multimodal-course). `--replace-bundled` trains into such a
folder first, then copies the new files over the bundled ones in utils/assets/ (atomically) and
records their sha256 in the manifest, only if the new model passes its bar (`BARS`): a model
trained too short or broken never replaces a good one.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
from pathlib import Path

from utils.cli import CourseArgumentParser, run
from utils.errors import CourseError, Range, UsageError, check_output, to_json

# sub-command -> (module, function taking the parsed args, one-line help)
MODELS = {
    "clip": ("course_tools.recipes", "clip_main", "the tiny CLIP on the shapes world"),
    "vq": ("course_tools.recipes", "vq_main", "the tiny VQ image tokenizer/decoder"),
    "dalle": ("course_tools.recipes", "dalle_main", "the mini DALL-E (text and image tokens in one stream)"),
    "prior": ("course_tools.recipes", "prior_main", "the unCLIP prior (text embedding -> image embedding)"),
    "shapecheck": ("course_tools.recipes", "shapecheck_main", "the shape judge that grades lesson 05 (not a CLIP)"),
    "reranker": ("course_tools.recipes", "reranker_main",
                 "the tiny CLIP, fine-tuned to read tiny-VQ pictures (reranks the mini DALL-E)"),
    "languages": ("course_tools.languages", "languages_main",
                  "the bundled tiny CLIP's text tower, on the six course languages"),
}


def _get(report: dict, *keys):
    for key in keys:
        report = report[key]
    return report


# model -> (what is measured, function of the training report, minimum). The bundled models
# score well above these (README); a model trained too short or broken falls below.
BARS = {
    "clip": ("zero-shot colour+shape accuracy, seen pairs",
             lambda r: _get(r, "accuracy", "test", "colour+shape"), 0.9),
    "vq": ("reconstruction PSNR (dB)", lambda r: r["psnr_db"], 20.0),
    "dalle": ("best-of-8 reranked sample right, seen captions",
              lambda r: _get(r, "seen", "reranked_accuracy"), 0.5),
    "prior": ("pictures decoded right from the prior's embedding",
              lambda r: _get(r, "decoding", "prior", "accuracy"), 0.3),
    "shapecheck": ("shape accuracy", lambda r: r["shape_accuracy"], 0.9),
    "reranker": ("colour+shape accuracy on tiny-VQ pictures",
                 lambda r: _get(r, "colour+shape accuracy", "tiny-shapes-vq", "vq_pictures"), 0.6),
    "languages": ("zero-shot colour+shape accuracy on seen pairs, worst language",
                  lambda r: min(row["test"] for row in r["after"].values()), 0.95),
}
LIMITS = {"seed": Range(0, 2**32 - 1), "steps": Range(1, 1_000_000)}


def user_models_dir() -> Path:
    """Where `train` writes by default: <course cache folder>/models."""
    from utils.models import course_cache_dir

    return course_cache_dir() / "models"


def new_folder(base: Path) -> Path:
    """`base`, or base-2, base-3... : the first that does not exist yet."""
    candidate, i = base, 1
    while candidate.exists():
        i += 1
        candidate = base.with_name(f"{base.name}-{i}")
    return candidate


def print_report(args: argparse.Namespace, report: dict, lines: list[str]) -> int:
    """JSON with --json (what --replace-bundled reads), else `lines`."""
    print(to_json(report, indent=2) if args.json else "\n".join(lines))
    return 0


def _validate(args: argparse.Namespace) -> None:
    """Refuse what cannot work before any training starts."""
    hint = f"See `python -m course_tools train {args.model} --help`."
    for dest, allowed in LIMITS.items():
        try:
            allowed.check("--" + dest, getattr(args, dest))
        except UsageError as err:
            raise UsageError(err.message, hint) from None
    if args.epochs is not None:
        raise UsageError(f"argument --epochs: `train {args.model}` is trained for a number of "
                         "steps, not epochs.", "Use --steps N (N >= 1).")
    if args.replace_bundled and args.out_dir:
        raise UsageError("argument --replace-bundled: not allowed with --out (it replaces the "
                         "bundled model in utils/assets/).", "Pass one of them.")
    from utils.assets import ASSETS_DIR

    if args.out_dir and Path(args.out_dir).expanduser().resolve() == ASSETS_DIR.resolve():
        raise UsageError("argument --out: utils/assets/ holds the bundled models; they are "
                         "replaced only by --replace-bundled, after an evaluation bar.",
                         "Pass --replace-bundled instead of --out, or choose another folder.")
    if args.out_dir:
        check_output(args.out_dir, "--out", force=args.force, folder=True)


def _install(folder: Path, model: str, seed: int) -> list[str]:
    """Copy each file of `folder` over its bundled namesake (temp file + rename) and record its
    sha256 and size in utils/assets/manifest.json."""
    from utils import assets
    from utils.io import sha256_of, write_atomic

    manifest, names = assets.read_manifest(), []
    for path in sorted(p for p in folder.iterdir() if p.is_file()):
        target = assets.ASSETS_DIR / path.name
        write_atomic(target, path.read_bytes())
        manifest[path.name] = {"sha256": sha256_of(target), "bytes": target.stat().st_size,
                               "description": manifest.get(path.name, {}).get("description", f"{model} (retrained)"),
                               "rebuild": f"python -m course_tools train {model} --seed {seed} --replace-bundled"}
        names.append(path.name)
    write_atomic(assets.MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return names


def _run(args: argparse.Namespace) -> int:
    module_name, function_name, _ = MODELS[args.model]
    function = getattr(importlib.import_module(module_name), function_name)
    default = new_folder(user_models_dir() / f"{args.model}-seed{args.seed}")
    if not args.replace_bundled:
        out = Path(args.out_dir) if args.out_dir else default
        out.mkdir(parents=True, exist_ok=True)
        args.out = str(out)
        return int(function(args) or 0)

    default.mkdir(parents=True)
    as_json, args.out, args.json = args.json, str(default), True
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = int(function(args) or 0)
    try:
        report = json.loads(captured.getvalue())
    except json.JSONDecodeError:
        raise CourseError(f"`train {args.model}` did not report its evaluation; the bundled model "
                          f"was not replaced (the new one is in {default}).") from None
    what, measure, minimum = BARS[args.model]
    score = float(measure(report))
    if code != 0 or not score >= minimum:
        raise CourseError(f"the retrained {args.model} scores {score:.3f} on {what}, below the bar of "
                          f"{minimum}: the bundled model was NOT replaced (the new one is in {default}).",
                          "Train longer (more --steps) or with another --seed.")
    installed = _install(default, args.model, args.seed)
    report.update({"bar": {"measure": what, "score": score, "minimum": minimum}, "replaced": installed})
    print(to_json(report, indent=2) if as_json else
          f"{args.model}: {what} {score:.3f} >= {minimum}; replaced the bundled "
          f"{', '.join(installed)} (copies kept in {default}).")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = CourseArgumentParser(prog="python -m course_tools train", description=__doc__.splitlines()[0])
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, (_, _, help_text) in MODELS.items():
        sub = models.add_parser(name, help=f"train {help_text}", description=f"Train {help_text}.")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        length = sub.add_mutually_exclusive_group()
        length.add_argument("--steps", type=int, default=None,
                            help="optimisation steps, >= 1 (default: the bundled model's)")
        length.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
        sub.add_argument("--out", dest="out_dir", default=None,
                         help="new or empty folder to write the model to (default: "
                              "models/MODEL-seedS in the course cache folder)")
        sub.add_argument("--force", action="store_true", help="allow an --out folder that is not empty")
        sub.add_argument("--replace-bundled", action="store_true",
                         help="replace the bundled model in utils/assets/, if the new one passes "
                              "its evaluation bar")
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
        sub.set_defaults(func=_run, validate=_validate)
    return parser


def main(argv: list[str] | None = None) -> int:
    """`python -m course_tools train MODEL ...`, with the error contract of `python -m utils`."""
    import sys

    return run(build_parser, list(sys.argv[2:] if argv is None else argv))
