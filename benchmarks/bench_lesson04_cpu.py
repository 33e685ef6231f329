"""Lesson 04's real section on a CPU: seconds per VQGAN+CLIP step at the sizes the lesson uses.

Random weights in the real architectures (taming's f16_16384 VQGAN, open_clip's ViT-B-32):
speed does not depend on the weights, and nothing is downloaded. Prints seconds per step
(after one warm-up step) for each (size, cutouts) and the time of the lesson's CPU run,
which `utils.generate.REAL_RUN_CPU` sets. Also prints the peak RSS of the process.

    python benchmarks/bench_lesson04_cpu.py            # all cores
    python benchmarks/bench_lesson04_cpu.py --threads 2
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from utils.generate import REAL_RUN_CPU, GenerationConfig, generate  # noqa: E402
from utils.models import CLIP, pick_device  # noqa: E402
from utils.vqgan import CONFIGS, VQGAN  # noqa: E402


def random_clip(device: torch.device) -> CLIP:
    import open_clip

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms("ViT-B-32", device=device)
    return CLIP(model.eval(), preprocess, open_clip.get_tokenizer("ViT-B-32"), "ViT-B-32", "random",
                "ViT-B-32 with random weights", device)


def seconds_per_step(clip: CLIP, vq: VQGAN, size: int, cutouts: int, steps: int) -> tuple[float, float]:
    """(wall time, CPU time of this process) per step: the difference between a run of
    `steps + 1` steps and a run of 1 step, so that loading and scoring are not counted.
    On a busy shared machine the wall time grows; the CPU time does not."""
    def run(n: int) -> tuple[float, float]:
        wall, cpu = time.perf_counter(), time.process_time()
        generate("a lighthouse", GenerationConfig(drawer="vqgan", size=size, iterations=n, cutouts=cutouts),
                 clip=clip, vq=vq, progress=False)
        return time.perf_counter() - wall, time.process_time() - cpu

    one, more = run(1), run(steps + 1)
    return (more[0] - one[0]) / steps, (more[1] - one[1]) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--steps", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device("cpu")
    clip = random_clip(device)
    torch.manual_seed(0)
    vq = VQGAN(CONFIGS["f16_16384"], encoder=False).eval().requires_grad_(False)  # as the lesson loads it
    print(f"threads {torch.get_num_threads()}, load average {Path('/proc/loadavg').read_text().split()[:3]}")
    for size, cutouts in [(64, 8), (REAL_RUN_CPU["size"], REAL_RUN_CPU["cutouts"])]:
        per_step, cpu_per_step = seconds_per_step(clip, vq, size, cutouts, args.steps)
        print(f"size {size:>3} px, {cutouts:>2} cutouts: {per_step:.2f} s/step wall, "
              f"{cpu_per_step:.2f} s/step of CPU time")
    threads = torch.get_num_threads()
    run, idle = REAL_RUN_CPU["iterations"] * per_step, REAL_RUN_CPU["iterations"] * cpu_per_step / threads
    print(f"lesson 04 CPU run ({REAL_RUN_CPU['iterations']} steps at {REAL_RUN_CPU['size']} px): {run:.0f} s wall "
          f"here; on {threads} idle cores about {idle:.0f} s = {idle / 60:.1f} min (CPU time / threads)")
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
