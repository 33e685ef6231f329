"""Peak memory of index building: is it bounded (the same peak at 10k and 100k images)?

Each size runs in a fresh child process that builds an `ImageIndex` with the tiny CLIP over
shapes-world pictures drawn on demand (a lazy sequence: no folder, no list of all pictures),
and reports its own peak RSS. `ImageIndex.build` embeds batches of 64 and keeps only the
(N, D) embeddings, so the peak should grow by the embeddings alone (N x D x 4 bytes: 25 MB at
100k images for the tiny CLIP's 64 dimensions), not with the pixels.

    python benchmarks/bench_memory.py                    # 10k and 100k images
    python benchmarks/bench_memory.py --sizes 1000 5000  # any sizes
    python benchmarks/bench_memory.py --quick --json     # 300 and 1200 (a smoke test)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

CHUNK = 256


class LazyShapes(Sequence):
    """n shapes-world pictures (PIL), drawn CHUNK at a time when asked for: memory holds one chunk."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self._chunk = n, seed, (None, None)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        from PIL import Image

        from utils import data

        if not 0 <= i < self.n:
            raise IndexError(i)
        k = i // CHUNK
        if self._chunk[0] != k:
            images, _ = data.render_batch(CHUNK, seed=self.seed + k, split="all")
            self._chunk = (k, images)
        return Image.fromarray(self._chunk[1][i % CHUNK])


def child(n: int, threads: int) -> dict:
    """Build the index in this process; its numbers (the parent reads the peak RSS)."""
    import torch

    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    torch.set_num_threads(threads)
    clip = load_clip("tiny-shapes", device="cpu")
    start = time.perf_counter()
    index = ImageIndex.build(clip, LazyShapes(n), progress=False)
    return {"images": len(index), "seconds": round(time.perf_counter() - start, 1),
            "embeddings_mb": round(index.embeddings.numel() * index.embeddings.element_size() / 2**20, 1)}


def measure(n: int, threads: int) -> dict:
    """Run `child(n)` in a fresh process: its result and its peak RSS in MB."""
    proc = subprocess.Popen([sys.executable, __file__, "--child", str(n), "--threads", str(threads)],
                            stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"the index build of {n} images failed (exit {os.waitstatus_to_exitcode(status)})")
    return {**json.loads(out), "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quick", action="store_true", help="300 and 1200 images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    sizes = [300, 1200] if args.quick else args.sizes
    rows = [{"images": n, **measure(n, args.threads)} for n in sizes]
    small, large = rows[0], rows[-1]
    growth = large["peak_rss_mb"] - small["peak_rss_mb"]
    result = {"index_build": rows,
              "peak_growth_mb": round(growth, 1),
              "embeddings_growth_mb": round(large["embeddings_mb"] - small["embeddings_mb"], 1),
              "peak_ratio_largest_to_smallest": round(large["peak_rss_mb"] / small["peak_rss_mb"], 2)}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for r in rows:
        print(f"index build, {r['images']:>7,} images: peak RSS {r['peak_rss_mb']:.0f} MB "
              f"(embeddings {r['embeddings_mb']:.1f} MB), {r['seconds']} s")
    print(f"peak grows by {growth:.0f} MB from {small['images']:,} to {large['images']:,} images "
          f"(the embeddings themselves: {result['embeddings_growth_mb']} MB); ratio "
          f"{result['peak_ratio_largest_to_smallest']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
