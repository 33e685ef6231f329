"""Lesson 04's real section on a CPU, end to end: the notebook's own cell, timed, and its peak memory.

Random weights in the real formats (tests/pretrained_fixture.py: open_clip ViT-B-32 in a Hugging
Face hub cache, taming's VQGAN f16_16384 .ckpt); speed and memory do not depend on the weights.
A fresh process pointed at them, with --threads threads, runs the cells `imports` and `gpu-path`
of notebooks/src/04-vqgan-clip.py with QUICK = False, as a student's kernel does: load ViT-B-32,
free its text tower, load the VQGAN, time two steps (the first warms up), say the estimate, run
REAL_RUN_CPU's steps with a progress bar. --binder gives that process Binder's 2 GB as its memory
limit, so that generation recomputes activations as it does on Binder. It prints the cell's wall
time and CPU time (all threads: on a busy machine the wall time grows, the CPU time hardly),
seconds per step (the run's average: its time over its steps), the cell's own estimate, the peak
resident memory (VmHWM) and the load average before and after; --record writes them to
reports/claims.json (time them alone: `flock -x /tmp/team/cpu.lock ...`).

    python benchmarks/bench_lesson04_cpu.py --threads 2 --binder --record
    python benchmarks/bench_lesson04_cpu.py --threads 2 --binder --keep-text --steps 2 --record
        # memory only: the same session with the text tower kept (peak_mb_with_text)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = ROOT / "notebooks" / "src" / "04-vqgan-clip.py"
BINDER_BYTES = 2 * 10**9  # Binder's memory limit, "2G"


def peak_rss_bytes() -> int:
    """VmHWM: the peak resident memory of this process (its own: counted from exec)."""
    line = next(x for x in open("/proc/self/status") if x.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def child(args) -> dict:
    """Run the lesson's cells in this process; what was measured."""
    import jupytext
    import torch

    started = time.perf_counter()
    torch.set_num_threads(args.threads)
    cells = {c.metadata.get("id"): c.source for c in jupytext.read(NOTEBOOK).cells}
    scope: dict = {}
    exec(cells["params"], scope)  # the lesson's parameters, then full mode with the cached models
    scope.update(MODEL="auto", QUICK=False)
    exec(cells["imports"], scope)
    import utils.assets
    import utils.generate
    import utils.models

    if args.binder:  # what memory_limit() reads from the cgroup on Binder
        utils.assets.memory_limit = lambda: BINDER_BYTES
    if args.keep_text:  # the session as it was before the cell freed the text tower
        utils.models.CLIP.drop_text_tower = lambda self, keep: 0
    if args.steps:
        utils.generate.REAL_RUN_CPU["iterations"] = args.steps
    cell_start, cpu_start = time.perf_counter(), time.process_time()
    exec(cells["gpu-path"], scope)
    cell, cpu = time.perf_counter() - cell_start, time.process_time() - cpu_start
    if "big" not in scope:
        raise RuntimeError("the real section was skipped: the fixture's models were not found")
    return {"cell_seconds": round(cell, 1), "cell_cpu_seconds": round(cpu, 1), "process_seconds": round(time.perf_counter() - started, 1),
            "seconds_per_step": round(scope["big"].seconds / scope["run"]["iterations"], 2),
            "run_seconds": round(scope["big"].seconds, 1), "timed_step_seconds": round(scope["per_step"], 2),
            "estimate_seconds": round(scope["per_step"] * scope["run"]["iterations"], 1),
            "low_memory": scope["big"].settings["low_memory"], **scope["run"],
            "threads": torch.get_num_threads(), "peak_rss_bytes": peak_rss_bytes()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--binder", action="store_true", help="a 2 GB memory limit, as on Binder")
    parser.add_argument("--keep-text", action="store_true", help="do not free CLIP's text tower")
    parser.add_argument("--steps", type=int, default=None, help="steps instead of REAL_RUN_CPU's (memory runs)")
    parser.add_argument("--world", type=Path, default=None, help="a folder written by write_pretrained_world")
    parser.add_argument("--record", action="store_true", help="write the numbers to reports/claims.json")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return 0
    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from pretrained_fixture import pretrained_env, write_pretrained_world

    with tempfile.TemporaryDirectory(prefix="bench-lesson04-") as tmp:
        world = args.world or Path(tmp)
        if not (world / "course").exists():
            write_pretrained_world(world)
        env = {**os.environ, **pretrained_env(world), "OMP_NUM_THREADS": str(args.threads),
               "PYTHONPATH": str(ROOT)}
        load_before = os.getloadavg()
        out = subprocess.run([sys.executable, __file__, "--child", *(argv if argv is not None else sys.argv[1:])],
                             env=env, cwd=ROOT, stdout=subprocess.PIPE, text=True, check=False)
        load_after = os.getloadavg()
    if out.returncode != 0:
        raise SystemExit(f"the lesson's cell failed (exit {out.returncode})")
    *cell_output, last = out.stdout.strip().splitlines()
    print("\n".join(cell_output))  # what the cell printed
    result = json.loads(last)
    result["load_average"] = {"before": [round(x, 2) for x in load_before], "after": [round(x, 2) for x in load_after]}
    peak_mb = result["peak_rss_bytes"] / 1e6
    print(json.dumps(result, indent=2))
    print(f"lesson 04's real section on {result['threads']} threads ({result['size']} px, {result['iterations']} "
          f"steps, {result['cutouts']} cutouts, low_memory {result['low_memory']}): cell {result['cell_seconds']:.0f} s "
          f"= {result['cell_seconds'] / 60:.1f} min ({result['cell_cpu_seconds']:.0f} s of CPU time), "
          f"{result['seconds_per_step']:.2f} s/step (run {result['run_seconds']:.0f} s, estimated "
          f"{result['estimate_seconds']:.0f} s); peak RSS "
          f"{peak_mb:,.0f} MB ({'under' if peak_mb * 1e6 < 1.8e9 else 'OVER'} 1.8 GB); load average "
          f"{load_before[0]:.2f} before, {load_after[0]:.2f} after")
    if args.record:
        from course_tools.claims import record

        measured_by = "python benchmarks/bench_lesson04_cpu.py " + " ".join(argv if argv is not None else sys.argv[1:])
        if args.keep_text:
            claims = {"lesson04.cpu.peak_mb_with_text": (round(peak_mb), "MB")}
        elif args.steps:
            claims = {"lesson04.cpu.peak_mb": (round(peak_mb), "MB")}
        else:
            claims = {"lesson04.cpu.cell_minutes": (round(result["cell_seconds"] / 60, 2), "minutes"),
                      "lesson04.cpu.seconds_per_step": (result["seconds_per_step"], "seconds"),
                      "lesson04.cpu.cell_cpu_minutes": (round(result["cell_cpu_seconds"] / 60, 2), "CPU minutes"),
                      "lesson04.cpu.steps": (result["iterations"], "steps"),
                      "lesson04.cpu.size": (result["size"], "px"),
                      "lesson04.cpu.threads": (result["threads"], "threads"),
                      "lesson04.cpu.peak_mb": (round(peak_mb), "MB")}
        print("recorded in", record(claims, measured_by, "benchmarks/bench_lesson04_cpu.py"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
