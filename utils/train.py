"""The one training loop of the course: `fit(model, loss_fn, FitConfig(...))`, with AdamW, a
learning-rate schedule, optional gradient clipping, a progress bar and a callback per step.
Lesson 01 trains the tiny CLIP with it; lesson 05 the mini DALL-E, the unCLIP prior and decoder.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported when training starts: the CLI stays fast
    import torch


@dataclass
class FitConfig:
    """How fit() optimises: AdamW, a learning-rate schedule, optional gradient clipping."""

    steps: int
    lr: float
    # a name of lr_at's, "onecycle", "annealing", or a function step -> learning rate
    schedule: str | Callable[[int], float] = "constant"
    warmup: float = 0  # warm-up steps ("cosine", "linear"); for "onecycle" the fraction of steps
    weight_decay: float = 0.0  # for parameter groups that do not set their own
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 0.0  # clip the gradient norm at this value; 0: never


def with_overrides(config, overrides: dict, who: str):
    """A copy of the dataclass `config` with `overrides` set (the caller's is never changed)."""
    unknown = [key for key in overrides if not hasattr(config, key)]
    if unknown:
        raise TypeError(f"{who} got an unknown option {unknown[0]!r}; see {type(config).__name__}.")
    return replace(config, **overrides)


def lr_at(step: int, cfg: FitConfig) -> float:
    """The learning rate of step (0-based): a linear warm-up lr (step + 1) / warmup, then
    "cosine": lr (1 + cos(pi p)) / 2 or "linear": lr (1 - p), with
    p = (step - warmup) / (steps - warmup)."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule not in ("cosine", "linear"):
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r}: use 'constant', "
                         "'cosine', 'linear', 'onecycle', 'annealing' or a function of the step.")
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.schedule == "linear":
        return cfg.lr * (1 - progress)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def decay_groups(model: torch.nn.Module, weight_decay: float,
                 skip: tuple[str, ...] = ()) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices (ndim >= 2) whose name contains none of
    `skip`; none on biases, norms' gains and the rest. Frozen parameters are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and not any(s in name for s in skip) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def fit(model: torch.nn.Module, loss_fn: Callable, cfg: FitConfig, desc: str = "training",
        params=None, callback: Callable[[dict], bool | None] | None = None,
        progress: bool = True) -> dict:
    """Minimise loss_fn(step) for cfg.steps steps with AdamW; returns the history.

    loss_fn(step) -> loss, or (loss, {name: number}) to log more; params: the parameters or
    AdamW groups to train (default: all). After each step callback(record) gets {"step", "loss",
    names..., "seconds"}; it may add entries (shown in the progress bar) and return True to stop.
    history: a list per key of the first record, and "train_seconds" (time outside the callback).
    """
    import torch
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(model.parameters() if params is None else params, lr=cfg.lr,
                                  betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    scheduler = None  # torch's own for these two; fit() sets the others' learning rate itself
    if cfg.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr,
                                                        total_steps=cfg.steps, pct_start=cfg.warmup)
    elif cfg.schedule == "annealing":  # cosine from lr to 0
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    history, shown, seconds = {}, {}, 0.0
    bar = tqdm(range(cfg.steps), desc=desc, disable=not progress, unit="step", mininterval=1)
    for step in bar:
        tick = time.perf_counter()
        model.train()
        if scheduler is None:
            lr = cfg.schedule(step) if callable(cfg.schedule) else lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
        out = loss_fn(step)
        loss, logged = out if isinstance(out, tuple) else (out, {})
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        seconds += time.perf_counter() - tick
        record = {"step": step, "loss": loss.item(), **{k: float(v) for k, v in logged.items()},
                  "seconds": seconds}
        for key in history or record:
            history.setdefault(key, []).append(record[key])
        stop = callback(record) if callback is not None else None
        shown.update((k, f"{v:.3g}") for k, v in record.items()
                     if k not in ("step", "seconds") and isinstance(v, (int, float)))
        bar.set_postfix(shown, refresh=False)
        if stop:
            break
    model.eval()
    history["train_seconds"] = seconds
    return history


@contextlib.contextmanager
def prefetched(draw: Callable[[int], object], steps: int) -> Iterator[Callable[[int], object]]:
    """batch_at(step) = draw(step), with draw(step + 1) computed in a thread meanwhile:
    `with prefetched(draw, steps) as batch_at: fit(model, lambda s: loss_of(batch_at(s)), cfg)`."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming: dict = {}

        def batch_at(step: int):
            future = upcoming.pop(step, None) or pool.submit(draw, step)
            if step + 1 < steps:
                upcoming[step + 1] = pool.submit(draw, step + 1)
            return future.result()

        yield batch_at
