"""Training the tiny CLIP on CPU: time to reach 95% zero-shot accuracy, and images/s.

    python benchmarks/bench_tinyclip.py [--threads 2] [--steps N]

Trains the bundled recipe from scratch (seed 0), checks the colour+shape zero-shot
accuracy on 1,000 fresh test images every 100 steps, and prints when it first reaches
95% together with the training throughput. Numbers depend on how busy the machine is:
the report prints the load average next to them.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

from utils.tinyclip import TrainConfig, evaluate, train_clip

GOAL_SECONDS = 90.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=TrainConfig.steps)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    checkpoints = []  # (step, training seconds so far, accuracy)
    state = {"eval_seconds": 0.0, "model": None}

    def on_step(record: dict) -> None:
        if (record["step"] + 1) % 100 == 0 and state["model"] is not None:
            start = time.perf_counter()
            acc = evaluate(state["model"], n=1000, splits=("test",))["test"]["colour+shape"]
            state["eval_seconds"] += time.perf_counter() - start
            state["model"].train()
            checkpoints.append((record["step"] + 1, record["seconds"] - state["eval_seconds"], acc))

    from utils.tinyclip import build_model

    cfg = TrainConfig(steps=args.steps, threads=args.threads, eval_every=0)
    state["model"] = build_model(cfg.model_config, seed=cfg.seed)
    load_before = os.getloadavg()[0]
    model, history = train_clip(cfg, model=state["model"], callback=on_step, progress=not args.json)
    train_seconds = history["train_seconds"] - state["eval_seconds"]
    reached = next(((s, t) for s, t, a in checkpoints if a >= 0.95), None)
    result = {
        "threads": args.threads, "steps": args.steps, "batch_size": cfg.batch_size,
        "train_seconds": round(train_seconds, 1),
        "images_per_second": round(args.steps * cfg.batch_size / train_seconds, 1),
        "checkpoints": [{"step": s, "seconds": round(t, 1), "accuracy": a} for s, t, a in checkpoints],
        "seconds_to_95": round(reached[1], 1) if reached else None,
        "ratio_to_90s_goal": round(reached[1] / GOAL_SECONDS, 2) if reached else None,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(), "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return
    for s, t, a in checkpoints:
        print(f"step {s:5d}  {t:7.1f} s  zero-shot colour+shape accuracy {a:.1%}")
    print(f"throughput: {result['images_per_second']:.0f} images/s on {args.threads} thread(s); "
          f"load average {result['load_average_before_after']} on {os.cpu_count()} cores")
    if reached:
        print(f"reached 95% after {reached[0]} steps, {reached[1]:.0f} s of training "
              f"({result['ratio_to_90s_goal']:.2f}x the {GOAL_SECONDS:.0f} s goal)")
    else:
        print("did not reach 95% within the steps given")


if __name__ == "__main__":
    main()
