"""How fast the shapes world draws: images per second at 64x64 on one CPU core.

    python benchmarks/bench_shapes.py [--images 4096] [--size 64]

Prints wall-clock and CPU-time throughput (CPU time is what one core would give on an
idle machine) and their ratio to the 2,000 images/s goal, plus the same images drawn one
by one with PIL ImageDraw for comparison.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch

from utils import data

GOAL = 2000.0  # images/s at 64x64 on one core


def pil_baseline(n: int, size: int) -> float:
    """Images/s drawing shapes one at a time with PIL (no anti-aliasing, plain background)."""
    from PIL import Image, ImageDraw

    start = time.perf_counter()
    for i in range(n):
        image = Image.new("RGB", (size, size), (240, 240, 240))
        draw = ImageDraw.Draw(image)
        r = size * 0.2
        if i % 2:
            draw.ellipse([size / 2 - r, size / 2 - r, size / 2 + r, size / 2 + r], fill="red")
        else:
            pts = [(size / 2 + r * math.cos(a), size / 2 + r * math.sin(a))
                   for a in (k * 2 * math.pi / 5 for k in range(5))]
            draw.polygon(pts, fill="blue")
    return n / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=4096)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    data.render_batch(data.CHUNK, seed=0, size=args.size)  # warm-up
    wall, cpu = time.perf_counter(), time.process_time()
    data.render_batch(args.images, seed=1, size=args.size)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    result = {
        "images": args.images, "size": args.size,
        "images_per_s_wall": round(args.images / wall, 1),
        "images_per_s_cpu": round(args.images / cpu, 1),
        "ratio_to_goal_wall": round(args.images / wall / GOAL, 2),
        "ratio_to_goal_cpu": round(args.images / cpu / GOAL, 2),
        "pil_one_by_one_images_per_s": round(pil_baseline(1000, args.size), 1),
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"shapes world, {args.size}x{args.size}, 1 thread: {result['images_per_s_wall']:.0f} images/s "
          f"wall clock ({result['ratio_to_goal_wall']:.2f}x the {GOAL:.0f}/s goal), "
          f"{result['images_per_s_cpu']:.0f} images/s of CPU time ({result['ratio_to_goal_cpu']:.2f}x)")
    print(f"for comparison, PIL ImageDraw one image at a time (one plain shape, no variation): "
          f"{result['pil_one_by_one_images_per_s']:.0f} images/s")


if __name__ == "__main__":
    main()
