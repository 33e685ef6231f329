"""Peak memory of index building: is it bounded (the same peak at 10k and 100k images)?

Each size runs in a fresh child process that builds an `ImageIndex` with the tiny CLIP over
shapes-world pictures drawn on demand (a lazy sequence: no folder, no list of all pictures),
and reports its own peak RSS. `ImageIndex.build` embeds batches of 64 and keeps only the
(N, D) embeddings, so the peak should grow by the embeddings alone (N x D x 4 bytes: 25 MB at
100k images for the tiny CLIP's 64 dimensions), not with the pixels.

    python benchmarks/bench_memory.py                    # 10k and 100k images
    python benchmarks/bench_memory.py --sizes 1000 5000  # any sizes
    python benchmarks/bench_memory.py --quick --json     # 300 and 1200 (a smoke test)

Lesson 04 on Binder (about 2 GB): `--lesson04` measures the peak RSS of a process that does what
lesson 04's real section does (load ViT-B-32 and the VQGAN f16_16384, then a few VQGAN+CLIP
steps), side by side: "before" loads as the course did up to c95ca88 (the whole checkpoint read,
encoder kept, every activation kept for the backward pass), "after" as it does now
(CLIP's text tower freed once the prompt is embedded, memory-mapped checkpoint, no encoder,
activations recomputed). Random weights in the real
formats (tests/pretrained_fixture.py; COURSE_RANDOM_WEIGHTS=1): memory does not depend on them.
`--optimizer-states` adds Adam states the size of the weights to the checkpoint, as a
pytorch-lightning training checkpoint keeps them (assumed to be why taming's file is ~1 GB).

    python benchmarks/bench_memory.py --lesson04                     # 128 px/8 cutouts, 256 px/8
    python benchmarks/bench_memory.py --lesson04 --optimizer-states --json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHUNK = 256
BINDER_MB = 2e9 / 2**20  # Binder's limit, "2G" (2e9 bytes = 1907 MiB); MB here are MiB
LESSON_PROMPT = "a watercolor painting of a lighthouse"


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


# ------------------------------------------------------------------ lesson 04 on Binder


def _status_mb(key: str) -> float:
    """A /proc/self/status memory line in MiB: VmRSS (now) or VmHWM (peak since the last reset)."""
    return int(next(line for line in open("/proc/self/status") if line.startswith(key)).split()[1]) / 1024


def lesson04_child(way: str, runs: list[tuple[int, int]], steps: int) -> dict:
    """Lesson 04's real section in this process, loaded `way` ("before" or "after"); the resident
    memory after each phase and the peak of each phase (VmHWM, reset between phases)."""
    import torch

    from utils.generate import GenerationConfig, generate
    from utils.models import load_clip
    from utils.vqgan import VQGAN, config_from_state_dict, load_vqgan, read_state_dict

    torch.set_num_threads(2)
    phases = []

    def mark(name: str) -> None:
        phases.append({"phase": name, "rss_mb": round(_status_mb("VmRSS:")), "peak_mb": round(_status_mb("VmHWM:"))})
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM: the next phase's own peak

    mark("import torch")
    clip = load_clip("auto", device="cpu")
    assert not clip.is_tiny, clip.description
    mark("load ViT-B-32")
    if way == "after":  # as the lesson does once the prompt is embedded
        clip.drop_text_tower([LESSON_PROMPT])
    mark("free CLIP's text tower (after only)")
    if way == "before":  # the loading of c95ca88: whole file, loss.* dropped, encoder kept
        state = {k: v for k, v in read_state_dict(_vqgan_path(), mmap=False).items() if not k.startswith("loss.")}
        with torch.device("meta"):
            vq = VQGAN(config_from_state_dict(state))
        vq.load_state_dict(state, assign=True)
        vq = vq.eval().requires_grad_(False)
        del state
    else:
        vq = load_vqgan(encoder=False)
    mark("load VQGAN f16_16384")
    scores = []
    for size, cutouts in runs:
        cfg = GenerationConfig(drawer="vqgan", size=size, cutouts=cutouts, iterations=steps, seed=0,
                               low_memory=way == "after")
        result = generate(LESSON_PROMPT, cfg, clip=clip, vq=vq, progress=False)
        scores.append({"size": size, "cutouts": cutouts, "losses": result.losses,
                       "final_score": result.final_score})
        mark(f"{steps} steps at {size} px, {cutouts} cutouts")
    return {"way": way, "phases": phases, "peak_mb": max(p["peak_mb"] for p in phases), "runs": scores,
            "vqgan_parameters_m": round(sum(p.numel() for p in vq.parameters()) / 1e6, 1)}


def _vqgan_path() -> Path:  # the checkpoint the child loads (under $COURSE_CACHE)
    from utils.vqgan import checkpoint_path

    return checkpoint_path("f16_16384")


def add_optimizer_states(path: Path) -> None:
    """Rewrite the checkpoint with Adam states (exp_avg, exp_avg_sq) for every model weight."""
    import torch

    from utils.vqgan import read_state_dict

    state = read_state_dict(path, mmap=False)
    model_keys = [k for k in state if not k.startswith("loss.")]
    adam = {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros_like(state[k]),
                "exp_avg_sq": torch.zeros_like(state[k])} for i, k in enumerate(model_keys)}
    torch.save({"epoch": 7, "global_step": 123456, "state_dict": state,
                "optimizer_states": [{"state": adam, "param_groups": [{"lr": 4.5e-6, "params": list(adam)}]}]},
               path)


def lesson04(runs: list[tuple[int, int]], steps: int, optimizer_states: bool) -> dict:
    """Before and after, each in a fresh process pointed at a random-weight world in the real formats."""
    sys.path.insert(0, str(ROOT / "tests"))
    from pretrained_fixture import pretrained_env, write_pretrained_world

    with tempfile.TemporaryDirectory(prefix="bench-lesson04-") as tmp:
        world = write_pretrained_world(Path(tmp))
        if optimizer_states:
            add_optimizer_states(world["vqgan"])
        env = {**os.environ, **pretrained_env(Path(tmp)), "OMP_NUM_THREADS": "2"}
        size_mb = round(world["vqgan"].stat().st_size / 2**20)
        rows = []
        for way in ("before", "after"):
            out = subprocess.run([sys.executable, __file__, "--lesson04-child", way, "--steps", str(steps),
                                  "--runs", *[f"{s}x{c}" for s, c in runs]],
                                 capture_output=True, text=True, env=env, check=False)
            if out.returncode != 0:
                raise RuntimeError(f"lesson 04 child ({way}) failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    before, after = rows
    return {"checkpoint_mb": size_mb, "binder_limit_mb": round(BINDER_MB), "before": before, "after": after,
            "saved_mb": before["peak_mb"] - after["peak_mb"],
            "margin_mb": round(BINDER_MB - after["peak_mb"]),
            "same_losses": all(a["losses"] == b["losses"] for a, b in zip(after["runs"], before["runs"]))}


def print_lesson04(result: dict) -> None:
    before, after = result["before"], result["after"]
    print(f"lesson 04 real section, VQGAN checkpoint {result['checkpoint_mb']} MB; RSS in MiB "
          f"(resident after the phase / peak during it), before | after:")
    for b, a in zip(before["phases"], after["phases"]):
        print(f"  {b['phase']:<34} {b['rss_mb']:>5} / {b['peak_mb']:>5}  |  {a['rss_mb']:>5} / {a['peak_mb']:>5}")
    print(f"peak RSS: before {before['peak_mb']} MB, after {after['peak_mb']} MB (saved {result['saved_mb']} MB); "
          f"VQGAN parameters held {before['vqgan_parameters_m']} M -> {after['vqgan_parameters_m']} M")
    print(f"Binder limit 2 GB = {result['binder_limit_mb']} MiB: margin {result['margin_mb']} MB after "
          f"(before: {round(BINDER_MB - before['peak_mb'])} MB); same losses before and after: {result['same_losses']}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--quick", action="store_true", help="300 and 1200 images")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--lesson04", action="store_true", help="lesson 04's real section, before vs after")
    parser.add_argument("--runs", nargs="+", default=["128x8", "256x8"],
                        help="SIZExCUTOUTS runs of --lesson04 (the lesson's CPU run is 128x8)")
    parser.add_argument("--steps", type=int, default=2, help="generation steps per run of --lesson04")
    parser.add_argument("--optimizer-states", action="store_true", help="a checkpoint with Adam states")
    parser.add_argument("--lesson04-child", choices=("before", "after"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(child(args.child, args.threads)))
        return 0
    runs = [tuple(int(v) for v in r.split("x")) for r in args.runs]
    if args.lesson04_child:
        print(json.dumps(lesson04_child(args.lesson04_child, runs, args.steps)))
        return 0
    if args.lesson04:
        result = lesson04(runs, args.steps, args.optimizer_states)
        if args.json:
            print(json.dumps(result, indent=2))
        else:
            print_lesson04(result)
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
