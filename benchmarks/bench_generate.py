"""Speed of CLIP-guided generation: our loop vs a plain reference loop of the same math.

The reference is the canonical VQGAN+CLIP step as the notebooks and pixray write it: one
image per step, cutouts cut and resized one at a time then augmented with kornia, float32
matmuls without TF32, no compilation. Ours: all cutouts from one batched grid_sample,
several images per step, TF32 and (with --compile, the default on CUDA) torch.compile with
CUDA graphs. Both run in this process, on the same models, and we print image-iterations
per second and their ratio.

    python benchmarks/bench_generate.py                 # CPU, 2 threads, 32 cutouts: tiny world, then
                                                        # the real architectures at 256 px
    python benchmarks/bench_generate.py --device cuda   # GPU: 256 and 512 px, with peak memory
    python benchmarks/bench_generate.py --quick --json  # smoke test of this script (numbers mean nothing)

On a CPU both loops use the same threads and the same 32 cutouts (issue 18's terms). Measured
here (torch 2.14, AMD EPYC with avx512_bf16): bf16 autocast makes a 768 x 3072 matmul and a
128-channel 3x3 convolution 2.2x faster, but makes open_clip's ViT-B-32 forward + backward 2x
SLOWER (its attention's input projection goes through a batched matmul that copies the
weight once per position in bf16), so our loop stays in float32 on a CPU.

"Real architectures" are taming's f16_16384 VQGAN and open_clip's ViT-B-32 with random
weights: speed does not depend on the weights, and nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.cutouts import KorniaCutouts  # noqa: E402
from utils.drawers import clamp_with_grad  # noqa: E402
from utils.generate import GenerationConfig, generate  # noqa: E402
from utils.objective import clip_normalization, prompt_loss  # noqa: E402


def reference_loop(clip, vq, size: int, cutouts: int, iterations: int, device: torch.device) -> float:
    """The canonical loop, written plainly. Returns seconds per iteration (after one warm-up)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.manual_seed(0)
    grid = size // vq.cfg.downsample
    codes = torch.randint(len(vq.codebook), (1, grid, grid), device=device)
    z = vq.codebook[codes].permute(0, 3, 1, 2).clone().requires_grad_()  # (1, C, h, w)
    z_min = vq.codebook.min(0).values[None, :, None, None]
    z_max = vq.codebook.max(0).values[None, :, None, None]
    opt = torch.optim.Adam([z], lr=0.1)
    make_cutouts = KorniaCutouts(clip.image_size, cutouts, min_scale=0.5, noise=0.05)
    mean, std = clip_normalization(clip)
    text = clip.encode_texts(["a red circle"]).to(device)  # (1, D)
    weights = torch.ones(1, device=device)
    for p in clip.model.parameters():
        p.requires_grad_(False)

    def step():
        z_q, _ = vq.quantize(z)
        image = clamp_with_grad(vq.decode_z(z_q))  # (1, 3, H, W)
        cuts = make_cutouts(image)  # (N, 3, S, S)
        embeds = F.normalize(clip.model.visual((cuts - mean) / std), dim=-1)
        loss = prompt_loss(embeds[None], text, weights).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            z.copy_(torch.maximum(torch.minimum(z, z_max), z_min))

    step()  # warm-up
    _sync(device)
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    _sync(device)
    return (time.perf_counter() - start) / iterations


def our_loop(clip, vq, run: GenerationConfig) -> float:
    """`utils.generate.generate` with `run.batch` images per step; seconds per step, steady state."""
    warmup = 3 if run.compile else 1
    stamps = []

    def tick(it, images, loss):
        _sync(torch.device(run.device))
        stamps.append(time.perf_counter())

    generate("a red circle", run, clip=clip, vq=vq, iterations=warmup + run.iterations, frame_every=10**9,
             progress=False, callback=tick)
    return (stamps[-1] - stamps[warmup - 1]) / run.iterations


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _peak_memory_reset(device):
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_memory(device) -> str:
    return f"{torch.cuda.max_memory_allocated() / 2**30:.1f} GiB" if device.type == "cuda" else "-"


def compare(name, clip, vq, run: GenerationConfig, quiet: bool = False) -> dict:
    """Both loops on the same models, one after the other: image-iterations/s and their ratio."""
    device, size, cutouts, iterations, batch, compile = (torch.device(run.device), run.size, run.cutouts,
                                                         run.iterations, run.batch, run.compile)
    _peak_memory_reset(device)
    ref = reference_loop(clip, vq, size, cutouts, iterations, device)
    ref_mem = _peak_memory(device)
    _peak_memory_reset(device)
    ours = our_loop(clip, vq, run)
    our_mem = _peak_memory(device)
    ref_rate, our_rate = 1 / ref, batch / ours
    row = {"name": name, "size": size, "cutouts": cutouts, "iterations": iterations, "batch": batch,
           "compile": compile, "reference_img_it_per_s": round(ref_rate, 3), "ours_img_it_per_s": round(our_rate, 3),
           "ratio": round(our_rate / ref_rate, 2), "reference_cuda_max_allocated": ref_mem,
           "ours_cuda_max_allocated": our_mem}
    if not quiet:
        print(f"{name:<34} {size:>4}px {cutouts:>3} cuts | reference {ref_rate:8.2f} img-it/s ({ref_mem}) | "
              f"ours batch {batch}{' compiled' if compile else ''} {our_rate:8.2f} img-it/s ({our_mem}) | "
              f"ratio {our_rate / ref_rate:5.2f}x", flush=True)
    return row


def tiny_world(device):
    from utils.models import load_clip
    from utils.tinyvq import load_tiny_vq

    return load_clip("tiny-shapes", device=device), load_tiny_vq(device=device)


def real_architectures(device):
    """open_clip ViT-B-32 and taming's f16_16384 VQGAN, random weights (nothing downloaded)."""
    import open_clip

    from utils.models import CLIP
    from utils.vqgan import CONFIGS, VQGAN

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", pretrained=None, device=device)
    clip = CLIP(model.eval(), preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32", "random",
                "ViT-B-32 with random weights", device)
    vq = VQGAN(CONFIGS["f16_16384"]).to(device).eval().requires_grad_(False)
    with torch.no_grad():  # a spread-out codebook, as in a trained model
        vq.codebook.normal_()
    return clip, vq


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--iterations", type=int, default=None, help="timed iterations per loop")
    parser.add_argument("--batch", type=int, default=None, help="images per step in our loop")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile our step (default: on for CUDA, off for CPU)")
    parser.add_argument("--skip-real", action="store_true", help="only the tiny world")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads, the same for both loops (default 2)")
    parser.add_argument("--cutouts", type=int, default=32, help="cutouts per step, both loops (default 32)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke test of this script (tiny world, 2 iterations, 4 cutouts): numbers mean nothing")
    parser.add_argument("--json", action="store_true", help="print one JSON report")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("--device cuda: no CUDA GPU is visible to torch here.", file=sys.stderr)
        return 2
    on_gpu = device.type == "cuda"
    if not on_gpu:
        torch.set_num_threads(args.threads)
    compile = on_gpu if args.compile is None else args.compile
    report = {"device": torch.cuda.get_device_name() if on_gpu else "cpu", "threads": torch.get_num_threads(),
              "torch": torch.__version__, "load_average_before": round(os.getloadavg()[0], 2), "rows": []}
    if not args.json:
        print(f"torch {torch.__version__} on {report['device']} ({report['threads']} threads)")
    cutouts = 4 if args.quick else args.cutouts
    clip, vq = tiny_world(device)
    run = GenerationConfig(drawer="tiny-vq", size=64, cutouts=cutouts, batch=args.batch or 8, compile=compile,
                           iterations=2 if args.quick else args.iterations or (50 if on_gpu else 20),
                           device=str(device), tf32=True)
    report["rows"].append(compare("tiny world (tiny CLIP + tiny VQ)", clip, vq, run, args.json))
    if not (args.skip_real or args.quick):
        clip, vq = real_architectures(device)
        # a CPU step takes seconds at 256 px with 32 cutouts: a few iterations, one image a step
        for size in (256, 512) if on_gpu else (256,):
            real = replace(run, drawer="vqgan", size=size, iterations=args.iterations or (30 if on_gpu else 3),
                           batch=args.batch or (8 if on_gpu else 1))
            report["rows"].append(compare("ViT-B-32 + VQGAN f16_16384", clip, vq, real, args.json))
    report["load_average_after"] = round(os.getloadavg()[0], 2)
    if args.json:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
