"""Image search benchmark: index build throughput and query latency, printed as ratios.

1. Build throughput (images/s) on CPU, from PNG files on disk, for the tiny shapes CLIP
   and for ViT-B-32 with random weights (same compute as the pretrained one):
   - naive: open every file, preprocess all, ONE forward pass (the public lesson's way);
     memory grows with the folder (N x 3 x H x W floats at once);
   - ImageIndex.build: batches of 64, bounded memory, cache written;
   - ImageIndex.build again: everything reused from the cache.
2. Query latency (ms per query) on random unit vectors (N, 512) at 10k / 100k / 1M
   (clustered around 1000 random directions, like real embeddings):
   exact search (chunked matrix product) vs faiss IndexFlatIP (exact too: same hits)
   vs faiss IVF (approximate; its recall@10 against exact search is printed).

    python benchmarks/bench_retrieval.py            # full: 1M embeddings (about 4 GB of RAM)
    python benchmarks/bench_retrieval.py --quick    # small sizes, a few seconds
    python benchmarks/bench_retrieval.py --cpu-time --json   # CPU time, not wall time: what one
                                                    # thread gives on an idle machine, even on a busy one

The README's numbers are claims `retrieval.*`: save the --cpu-time --json output as
reports/bench_retrieval.json, then `python -m course_tools.claims --import reports/bench_retrieval.json
--prefix retrieval --measured-by "python benchmarks/bench_retrieval.py --cpu-time --json" --on "..."`.
"""

from __future__ import annotations

import argparse
import builtins
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.images import list_images  # noqa: E402
from utils.models import CLIP, load_clip  # noqa: E402
from utils.retrieval import ImageIndex, exact_top_k  # noqa: E402

clock = time.perf_counter  # --cpu-time: time.process_time


def write_shapes(folder: Path, n: int, size: int = 64) -> None:
    from PIL import Image

    from utils.data import render_batch

    images, _ = render_batch(n, seed=123, size=size, split="all")
    for i, image in enumerate(images):
        Image.fromarray(image).save(folder / f"{i:05d}.png")


def naive_build(clip: CLIP, folder: Path) -> torch.Tensor:
    """Everything at once: all pixels of the folder in one tensor, one forward pass."""
    from PIL import Image

    pixels = torch.stack([clip.preprocess(Image.open(p).convert("RGB")) for p in list_images(folder)])
    with torch.no_grad():
        return torch.nn.functional.normalize(clip.model.encode_image(pixels), dim=-1)


def random_vit_b_32() -> CLIP:
    import open_clip

    torch.manual_seed(0)
    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that the weights are random
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None)
    model.eval()
    return CLIP(model, preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32", "random",
                "ViT-B-32 with random weights", torch.device("cpu"))


def bench_build(clip: CLIP, n: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache = Path(tmp) / "images", Path(tmp) / "index.safetensors"
        folder.mkdir()
        write_shapes(folder, n)
        naive_build(clip, folder)  # warm-up (first-call allocations)
        t = clock()
        reference = naive_build(clip, folder)
        naive = clock() - t
        t = clock()
        index = ImageIndex.build(clip, folder, cache=cache, batch_size=64, progress=False)
        ours = clock() - t
        t = clock()
        again = ImageIndex.build(clip, folder, cache=cache, batch_size=64, progress=False)
        cached = clock() - t
        assert again.stats["embedded"] == 0 and again.stats["reused"] == n
        err = float((index.embeddings - reference).abs().max())
    side = clip.image_size
    return {"n": n, "naive": n / naive, "ours": n / ours, "cached": n / cached, "max_diff": err,
            "naive_mb": n * 3 * side * side * 4 / 2**20, "ours_mb": 64 * 3 * side * side * 4 / 2**20}


def median_ms(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t = clock()
        fn()
        times.append(clock() - t)
    return 1000 * statistics.median(times)


def clustered_unit_vectors(n: int, dim: int, gen: torch.Generator, topics: int = 1000,
                           spread: float = 0.5) -> torch.Tensor:
    """Random unit vectors gathered around `topics` random directions, as real image
    embeddings are (pure Gaussian noise has no structure at all: the worst case for IVF)."""
    centres = torch.randn(topics, dim, generator=gen)  # (T, D), length ~ sqrt(D)
    noise = torch.randn(n, dim, generator=gen) * spread
    return torch.nn.functional.normalize(centres[torch.randint(topics, (n,), generator=gen)] + noise, dim=1)


def bench_query(n: int, dim: int = 512, k: int = 10, n_queries: int = 20) -> dict:
    gen = torch.Generator().manual_seed(n)
    emb = clustered_unit_vectors(n, dim, gen)  # (N, D)
    queries = clustered_unit_vectors(n_queries, dim, gen)  # (Q, D)
    index = ImageIndex(embeddings=emb, items=[""] * n, model={})
    row = {"n": n, "mb": emb.numel() * 4 / 2**20}
    exact_ids = exact_top_k(emb, queries, k)[1]
    row["exact"] = median_ms(lambda: [exact_top_k(emb, q[None], k) for q in queries], 3) / n_queries
    index.root, index.files = Path("/photos"), [(0, 0)] * n  # each hit carries its file, as for a folder
    row["hits"] = median_ms(lambda: [index.search(q, k) for q in queries], 3) / n_queries
    index.use_faiss("Flat")
    flat_ids = index.search_embeddings(queries, k)[1]
    row["flat_same"] = bool(torch.equal(flat_ids, exact_ids))
    row["flat"] = median_ms(lambda: [index.search_embeddings(q[None], k) for q in queries], 3) / n_queries
    nlist = int(np.sqrt(n))
    t = clock()
    index.use_faiss(f"IVF{nlist},Flat", nprobe=16)
    row["ivf_build_s"] = clock() - t
    ivf_ids = index.search_embeddings(queries, k)[1]
    row["ivf_recall"] = float(np.mean([len(set(a.tolist()) & set(b.tolist())) / k
                                       for a, b in zip(ivf_ids, exact_ids)]))
    row["ivf"] = median_ms(lambda: [index.search_embeddings(q[None], k) for q in queries], 3) / n_queries
    row["nlist"] = nlist
    return row


def main() -> None:  # noqa: C901 - one table after the other
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (a few seconds)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--json", action="store_true", help="print one JSON report instead of the tables")
    parser.add_argument("--cpu-time", action="store_true",
                        help="time with the process's CPU time instead of the wall clock (one thread)")
    args = parser.parse_args()
    global clock
    if args.cpu_time:
        clock = time.process_time
    # dicts keyed by model and size, so `python -m course_tools.claims --import` reads every number
    report = {"threads": args.threads, "clock": "cpu" if args.cpu_time else "wall", "build": {}, "query": {}}
    print = (lambda *a, **k: None) if args.json else builtins.print  # noqa: A001 - quiet under --json
    torch.set_num_threads(args.threads)
    import faiss

    faiss.omp_set_num_threads(args.threads)
    print(f"CPU, {args.threads} thread(s), torch {torch.__version__}, faiss {faiss.__version__}")

    print("\n1. Index build throughput (images/s, 64x64 PNG files on disk)")
    print(f"{'model':<26}{'N':>6}{'naive':>9}{'ours':>9}{'cached':>10}{'ours/naive':>12}"
          f"{'cached/naive':>14}{'naive MB':>10}{'ours MB':>9}")
    models = []
    try:
        models.append((load_clip("tiny-shapes", device="cpu"), 128 if args.quick else 2048))
    except FileNotFoundError as err:
        print(f"(tiny-shapes skipped: {err})")
    models.append((random_vit_b_32(), 16 if args.quick else 256))
    for clip, n in models:
        r = bench_build(clip, n)
        assert r["max_diff"] < 1e-4, f"batched and one-batch embeddings differ by {r['max_diff']}"
        report["build"][clip.name] = {"pretrained": clip.pretrained, "images": n,
                                      **{k: round(float(v), 4) for k, v in r.items()},
                                      "ours_over_naive_ratio": round(r["ours"] / r["naive"], 2),
                                      "cached_over_naive_ratio": round(r["cached"] / r["naive"], 1),
                                      "cached_over_ours_ratio": round(r["cached"] / r["ours"], 1)}
        print(f"{clip.name + '/' + clip.pretrained:<26}{n:>6}{r['naive']:>9.0f}{r['ours']:>9.0f}"
              f"{r['cached']:>10.0f}{r['ours'] / r['naive']:>11.2f}x{r['cached'] / r['naive']:>13.0f}x"
              f"{r['naive_mb']:>10.0f}{r['ours_mb']:>9.0f}")
    print("naive MB / ours MB: preprocessed pixels held at once (naive grows with N; ours is one batch).")

    print("\n2. Query latency (ms per query, top-10 of N random 512-d unit vectors, clustered)")
    print(f"{'N':>9}{'MB':>7}{'exact':>9}{'search()':>10}{'faiss Flat':>12}{'same hits':>11}{'exact/Flat':>12}"
          f"{'faiss IVF':>11}{'exact/IVF':>11}{'IVF recall@10':>15}")
    for n in ([10_000] if args.quick else [10_000, 100_000, 1_000_000]):
        r = bench_query(n)
        assert r["flat_same"], "faiss Flat is exact: it must return the same hits as exact search"
        report["query"][f"n{n}"] = {**{k: (round(float(v), 4) if not isinstance(v, bool) else v)
                                       for k, v in r.items()},
                                    "exact_over_flat_ratio": round(r["exact"] / r["flat"], 1),
                                    "hits_over_exact_ratio": round(r["hits"] / r["exact"], 2),
                                    "exact_over_ivf_ratio": round(r["exact"] / r["ivf"], 1)}
        print(f"{n:>9,}{r['mb']:>7.0f}{r['exact']:>9.2f}{r['hits']:>10.2f}{r['flat']:>12.2f}{str(r['flat_same']):>11}"
              f"{r['exact'] / r['flat']:>11.1f}x{r['ivf']:>11.3f}{r['exact'] / r['ivf']:>10.0f}x"
              f"{r['ivf_recall']:>15.2f}")
    print("search(): exact top-10 plus the 10 Hit objects with their paths (near 'exact': a hit "
          "looks up its own path, it never lists all N).")
    print("faiss IVF: nlist = sqrt(N) clusters, nprobe = 16 searched; approximate, hence its recall.")
    if args.json:
        builtins.print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
