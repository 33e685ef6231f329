"""`python -m utils train clip|vq|dalle|prior|reranker|shapecheck`: rebuild the bundled tiny models.

Each sub-command trains one model from a seed, saves it into utils/assets/ (or --out)
and records its sha256 in utils/assets/manifest.json:

    python -m utils train clip --seed 0          # the tiny CLIP (utils.tinyclip)
    python -m utils train vq --seed 0            # the tiny VQ image tokenizer (utils.tinyvq)
    python -m utils train dalle --seed 0         # the mini DALL-E (utils.dalle)
    python -m utils train prior --seed 0         # the unCLIP prior and decoder (utils.dalle)
    python -m utils train reranker --seed 0      # the tiny CLIP, fine-tuned on tiny-VQ pictures
    python -m utils train shapecheck --seed 0    # lesson 05's judge (utils.shapecheck)

The module that does the work is imported only when its command runs.
"""

from __future__ import annotations

import argparse
import importlib

# sub-command -> (module, function taking the parsed args, one-line help)
MODELS = {
    "clip": ("utils.tinyclip", "train_main", "the tiny CLIP on the shapes world"),
    "vq": ("utils.tinyvq", "train_main", "the tiny VQ image tokenizer/decoder"),
    "dalle": ("utils.dalle", "train_main", "the mini DALL-E (text and image tokens in one stream)"),
    "prior": ("utils.dalle", "train_prior_main", "the unCLIP prior (text embedding -> image embedding)"),
    "shapecheck": ("utils.shapecheck", "train_main", "the shape judge that grades lesson 05 (not a CLIP)"),
    "reranker": ("utils.tinyclip", "train_reranker_main",
                 "the tiny CLIP, fine-tuned to read tiny-VQ pictures (reranks the mini DALL-E)"),
}


def _run(args: argparse.Namespace) -> int:
    module_name, function_name, _ = MODELS[args.model]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise SystemExit(f"`train {args.model}` needs {module_name}, which is not in this "
                         "installation yet. Update the course (git pull) and try again.") from err
    function = getattr(module, function_name, None)
    if function is None:
        raise SystemExit(f"{module_name} has no {function_name}(args); `train {args.model}` "
                         "is not available in this version of the course.")
    return int(function(args) or 0)


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add `train` and its sub-commands (see MODELS) to the course CLI."""
    parser = subparsers.add_parser(
        "train", help="rebuild a bundled tiny model", description=__doc__.splitlines()[0]
    )
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, (_, _, help_text) in MODELS.items():
        sub = models.add_parser(name, help=f"train {help_text}", description=f"Train {help_text}.")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        length = sub.add_mutually_exclusive_group()
        length.add_argument("--steps", type=int, default=None,
                            help="optimisation steps (default: the bundled model's)")
        length.add_argument("--epochs", type=int, default=None,
                            help="passes over the training set, where the model has one")
        sub.add_argument("--out", default=None,
                         help="folder to write the model to (default: utils/assets/, which also "
                              "updates the manifest)")
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
        sub.set_defaults(func=_run)
    return parser
