"""`python -m utils search "a green triangle" --images my_folder --top 5 [--json]`: search a
folder of images by text or by example image (the index is utils/retrieval.py)."""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

from .cli import add_clip_args
from .errors import UsageError, show, show_progress, to_json
from .images import DEFAULT_MAX_PIXELS
from .models import CACHE_ENV
from .retrieval import ImageIndex


def add_cli(subparsers) -> None:
    p = subparsers.add_parser(
        "search", help="search a folder of images by text or by example image",
        description="Search a folder of images with CLIP. Embeddings are cached outside the "
                    "folder (see --cache), so the next search only embeds new or changed images.")
    p.add_argument("query", nargs="*", help="text queries, e.g. \"a green triangle\"")
    p.add_argument("--images", required=True, help="folder of images to search")
    p.add_argument("--like", action="append", default=[], metavar="IMAGE",
                   help="find images that look like this image file (may be repeated)")
    p.add_argument("--top", type=int, default=5, help="how many results per query (default 5)")
    add_clip_args(p)
    p.add_argument("--cache", default="auto", help="index cache file (.safetensors or .npz); "
                   f"default: in ${CACHE_ENV} or ~/.cache/multimodal-course")
    p.add_argument("--no-cache", action="store_true", help="do not read or write a cache")
    p.add_argument("--rebuild", action="store_true", help="embed every image again")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=0, help="processes decoding images (default 0)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"skip images larger than this (default {DEFAULT_MAX_PIXELS:,})")
    p.add_argument("--faiss", action="store_true", help="search with faiss (same results)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run_cli, validate=_validate_cli)


def _validate_cli(args: argparse.Namespace) -> None:
    """Before the model loads: the folder and every --like image must exist."""
    if not Path(args.images).is_dir():
        raise UsageError(f"argument --images: {show(args.images)} is not a folder.",
                         "Pass the folder that holds your images.")
    for like in args.like:
        if not Path(like).is_file():
            raise UsageError(f"argument --like: {show(like)} is not a file.", "Pass an image file.")
    if not args.query and not args.like:
        raise UsageError("search needs a text query or --like IMAGE.",
                         'e.g. python -m utils search "a green triangle" --images FOLDER')


def run_cli(args: argparse.Namespace) -> int:
    from .models import load_clip
    clock = [time.perf_counter()]
    clip = load_clip(args.model, args.pretrained, device=args.device, verbose=not args.json)
    clock.append(time.perf_counter())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        index = ImageIndex.build(clip, args.images, batch_size=args.batch_size,
                                 cache=None if args.no_cache else args.cache, rebuild=args.rebuild,
                                 progress=show_progress(args), num_workers=args.workers,
                                 max_pixels=args.max_pixels)
    notes = list(dict.fromkeys(str(w.message) for w in caught))  # each warning once
    for note in notes:
        print(f"warning: {show(note)}", file=sys.stderr)
    clock.append(time.perf_counter())
    if args.faiss:
        index.use_faiss()

    def hits(query) -> list[dict]:
        return [{"rank": h.rank, "path": h.item, "score": round(h.score, 4)}
                for h in index.search(query, args.top)]

    results = [{"query": q, "hits": hits(q)} for q in args.query]
    results += [{"query": {"image": like}, "hits": hits(Path(like))} for like in args.like]
    clock.append(time.perf_counter())
    skipped = [{"path": s.item, "reason": s.reason} for s in index.skipped]
    report = {"model": clip.description, "images": str(Path(args.images).resolve()),
              "index": {**index.stats, "backend": index.backend, "skipped_files": skipped},
              "results": results, "warnings": notes,
              "seconds": {name: round(b - a, 3) for name, a, b in
                          zip(("load_model", "index", "search"), clock, clock[1:])}}
    print(to_json(report, indent=2) if args.json else _format_report(report))
    return 0


def _format_report(report: dict) -> str:
    s = report["index"]
    lines = [f"Model: {report['model']}",
             f"Index of {report['images']}: {s['indexed']} images ({s['embedded']} embedded now, "
             f"{s['reused']} reused from the cache {s['cache']}), {s['skipped']} skipped, "
             f"{s['seconds']} s (model loaded in {report['seconds']['load_model']} s)."]
    lines += [f"  skipped {skip['path']}: {skip['reason']}" for skip in s["skipped_files"]]
    for result in report["results"]:
        query = result["query"]
        lines.append(f"\n{query if isinstance(query, str) else 'like ' + query['image']!s}")
        lines += [f"  {h['rank']:>2}. {h['score']:.3f}  {h['path']}" for h in result["hits"]]
    return "\n".join(lines)
