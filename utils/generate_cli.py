"""`python -m utils generate "a red circle:1 | a blue square:-0.5" --drawer tiny-vq [--json]`:
draw an image from a text prompt with CLIP guidance. The generation is utils/generate.py; this
module reads the arguments, writes the files and prints the report."""

from __future__ import annotations

import argparse
import math
import warnings
from pathlib import Path

import torch

from .cli import DEVICE_HELP
from .drawers import DRAWERS
from .errors import show_progress, to_json
from .generate import PRESETS, GenerationConfig, GenerationError, generate
from .io import slug
from .prompts import parse_prompts, prompt_notes

# the flags that are GenerationConfig fields (same names, dashes for underscores)
CLI_FIELDS = ("drawer", "quality", "iterations", "cutouts", "size", "lr", "seed", "batch",
              "init_noise", "saturation", "checkpoint", "compile", "bf16")


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "generate", help="draw an image from a text prompt with CLIP guidance",
        description="Draw an image from a text prompt with CLIP guidance (lesson 04).")
    p.add_argument("prompt", help="prompt(s), pixray syntax: 'a red circle:1 | a blue square:-0.5'")
    p.add_argument("--drawer", choices=DRAWERS, default="tiny-vq")
    p.add_argument("--quality", choices=list(PRESETS), default="draft")
    for name, kind in [("iterations", int), ("cutouts", int), ("size", int), ("lr", float)]:
        p.add_argument(f"--{name}", type=kind)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=1, help="images per step (seeds seed, seed+1, ...)")
    p.add_argument("--init-image", help="start from this image instead of noise")
    p.add_argument("--init-noise", choices=["grey", "colour", "random"], help="the noise to start "
                   "from (default: colour for tiny-vq and pixel, random for vqgan)")
    p.add_argument("--saturation", type=float, help="weight of the saturation penalty")
    p.add_argument("--model", help="CLIP: tiny-shapes, auto (pretrained ViT-B-32 if downloaded, "
                   "else tiny), or an open_clip name (default: auto with --drawer vqgan, else "
                   "tiny-shapes)")
    p.add_argument("--checkpoint", help="VQGAN .ckpt for --drawer vqgan")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=int, help="CPU threads (default: 1 for the tiny models, "
                   "whose layers are too small to share)")
    p.add_argument("--compile", action="store_true", help="torch.compile the step")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, help="bf16 autocast on a CPU "
                   "(default: on for --drawer vqgan where the CPU has native bf16)")
    p.add_argument("--out", help="output PNG (a new name is chosen if it exists)")
    p.add_argument("--no-animation", action="store_true", help="do not write the GIF of the frames")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    p.set_defaults(func=_cli)


def _cli(args: argparse.Namespace) -> int:
    from .models import load_clip
    prompts = parse_prompts(args.prompt)
    model = args.model or ("auto" if args.drawer == "vqgan" else "tiny-shapes")  # see its help
    clip = load_clip(model, device=args.device, verbose=not args.json)
    if args.threads or (clip.is_tiny and clip.device.type == "cpu"):  # big models: every core
        torch.set_num_threads(args.threads or 1)
    config = GenerationConfig(**{name: getattr(args, name) for name in CLI_FIELDS})
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        result = generate(prompts, config, clip=clip, init_image=args.init_image,
                          progress=show_progress(args))
    scores = [result.start_score, *result.final_scores, *result.losses]
    if not all(math.isfinite(s) for s in scores):
        raise GenerationError("the optimisation diverged (NaN or infinite scores): the images "
                              "would be blank, so none was written.",
                              "Try a smaller --lr, or another --seed.")
    notes = prompt_notes(clip, result.prompts) + list(result.notes)
    base = Path(args.out or Path("outputs") / f"{slug(prompts[0].text)}-seed{args.seed}.png")
    if base.suffix.lower() not in (".png", ".jpg", ".jpeg", ".webp"):
        base = base.with_suffix(".png")
    paths = [base.with_name(f"{base.stem}-{i}{base.suffix}") if i else base
             for i in range(len(result.images))]
    images = [str(result.save(path, i).resolve()) for i, path in enumerate(paths)]
    animation = None if args.no_animation else str(
        result.save_animation(Path(images[0]).with_suffix(".gif")).resolve())
    report = {
        "prompts": [{"text": p.text, "weight": p.weight} for p in result.prompts],
        "images": images, "animation": animation,
        "start_score": round(result.start_score, 4), "final_score": round(result.final_score, 4),
        "final_scores": [round(s, 4) for s in result.final_scores],
        "iterations": result.settings["iterations"], "seconds": round(result.seconds, 2),
        "settings": result.settings, "notes": notes,
        "clip": {"name": clip.name, "pretrained": clip.pretrained, "tiny": clip.is_tiny},
        "device": result.settings["device"],
    }
    if args.json:
        print(to_json(report))
        return 0
    for note in notes:
        print(f"note: {note}")
    print(f"CLIP: {clip.name}/{clip.pretrained} on {result.settings['device']}")
    print(f"CLIP score {result.start_score:.3f} -> {result.final_score:.3f} in "
          f"{report['iterations']} iterations ({report['seconds']} s)")
    print("wrote " + ", ".join(images + ([animation] if animation else [])))
    return 0
