"""`python -m utils train clip|vq|dalle|prior|reranker|shapecheck`: retrain a tiny model.

Each sub-command trains one model from a seed. Nothing you own is overwritten:

    python -m utils train clip --seed 1          # -> ~/.cache/multimodal-course/models/clip-seed1/
    python -m utils train vq --out my_vq/        # -> my_vq/ (a new or empty folder; --force: any)
    python -m utils train clip --replace-bundled # retrain the bundled model itself (see below)

The default folder is `models/<model>-seed<S>` (then -2, -3... if taken) in the course's cache
folder: $COURSE_CACHE, else $XDG_CACHE_HOME/multimodal-course (~/.cache/multimodal-course).
`--replace-bundled` trains into such a folder first, and copies the new files over the bundled
ones in utils/assets/ (each one written to a temporary file, then renamed) and records their
sha256 in utils/assets/manifest.json only when the new model passes its evaluation bar
(`BARS`). The module that does the work is imported only when its command runs.

Every tiny model trains with the one loop `fit(model, loss_fn, FitConfig(...))`: AdamW, a
learning-rate schedule, optional gradient clipping, a progress bar, a callback per step.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import math
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import CourseError, UsageError, to_json

if TYPE_CHECKING:  # torch is imported when training starts: the CLI's other commands stay fast
    import torch

# ------------------------------------------------------------------ the training loop


@dataclass
class FitConfig:
    """How fit() optimises: AdamW, a learning-rate schedule, optional gradient clipping."""

    steps: int
    lr: float
    schedule: str | Callable[[int], float] = "constant"  # a name of lr_at's, "onecycle", "annealing",
    #                                                       or a function step -> learning rate
    warmup: float = 0  # warm-up steps ("cosine", "linear"); for "onecycle" the fraction of steps
    weight_decay: float = 0.0  # for parameter groups that do not set their own
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    grad_clip: float = 0.0  # clip the gradient norm at this value; 0: never


def with_overrides(config, overrides: dict, who: str):
    """A copy of the dataclass `config` with `overrides` set (the caller's config is never changed)."""
    unknown = [key for key in overrides if not hasattr(config, key)]
    if unknown:
        raise TypeError(f"{who} got an unknown option {unknown[0]!r}; see {type(config).__name__}.")
    return replace(config, **overrides)


def lr_at(step: int, cfg: FitConfig) -> float:
    """The learning rate of step (0-based): a linear warm-up lr (step + 1) / warmup, then
    "cosine": lr (1 + cos(pi p)) / 2 or "linear": lr (1 - p), p = (step - warmup) / (steps - warmup)."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule not in ("cosine", "linear"):
        raise ValueError(f"unknown learning-rate schedule {cfg.schedule!r}: use 'constant', 'cosine', "
                         "'linear', 'onecycle', 'annealing' or a function of the step.")
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    if cfg.schedule == "linear":
        return cfg.lr * (1 - progress)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def _torch_scheduler(optimizer: torch.optim.Optimizer, cfg: FitConfig):
    """torch's own scheduler for "onecycle" (OneCycleLR, warm-up share cfg.warmup) and
    "annealing" (CosineAnnealingLR from lr to 0); None for the schedules fit() sets itself."""
    import torch

    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=cfg.steps,
                                                   pct_start=cfg.warmup)
    if cfg.schedule == "annealing":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.steps)
    return None


def decay_groups(model: torch.nn.Module, weight_decay: float, skip: tuple[str, ...] = ()) -> list[dict]:
    """AdamW parameter groups: weight decay on matrices (ndim >= 2) whose name contains none of
    `skip`; none on biases, norms' gains and the rest. Frozen parameters are left out."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 and not any(s in name for s in skip) else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def fit(model: torch.nn.Module, loss_fn: Callable, cfg: FitConfig, desc: str = "training",
        params=None, callback: Callable[[dict], bool | None] | None = None, progress: bool = True) -> dict:
    """Minimise loss_fn(step) for cfg.steps steps with AdamW; returns the history.

    loss_fn(step) -> loss, or (loss, {name: number}) to log more; params: the parameters or
    AdamW groups to train (default: all of the model's). After each optimiser step,
    callback(record) gets {"step", "loss", names..., "seconds"}; it may add entries (shown in
    the progress bar) and return True to stop. history: a list per entry of the first record,
    and "train_seconds", the time spent outside the callback.
    """
    import torch
    from tqdm.auto import tqdm

    optimizer = torch.optim.AdamW(model.parameters() if params is None else params, lr=cfg.lr,
                                  betas=cfg.betas, eps=cfg.eps, weight_decay=cfg.weight_decay)
    scheduler = _torch_scheduler(optimizer, cfg)
    history: dict = {}
    shown: dict = {}
    seconds = 0.0
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
    """batch_at(step) = draw(step), with draw(step + 1) computed in a thread meanwhile.

        with prefetched(draw, cfg.steps) as batch_at:
            fit(model, lambda step: loss_of(batch_at(step)), cfg)
    """
    with ThreadPoolExecutor(max_workers=1) as pool:
        upcoming: dict = {}

        def batch_at(step: int):
            future = upcoming.pop(step, None) or pool.submit(draw, step)
            if step + 1 < steps:
                upcoming[step + 1] = pool.submit(draw, step + 1)
            return future.result()

        yield batch_at


# ------------------------------------------------------------------ the command line

# sub-command -> (module, function taking the parsed args, one-line help)
MODELS = {
    "clip": ("utils.tinyclip", "train_main", "the tiny CLIP on the shapes world"),
    "vq": ("utils.tinyvq", "train_main", "the tiny VQ image tokenizer/decoder"),
    "dalle": ("utils.dalle_train", "train_main", "the mini DALL-E (text and image tokens in one stream)"),
    "prior": ("utils.unclip", "train_prior_main", "the unCLIP prior (text embedding -> image embedding)"),
    "shapecheck": ("utils.shapecheck", "train_main", "the shape judge that grades lesson 05 (not a CLIP)"),
    "reranker": ("utils.tinyclip", "train_reranker_main",
                 "the tiny CLIP, fine-tuned to read tiny-VQ pictures (reranks the mini DALL-E)"),
}


def _get(report: dict, *keys):
    for key in keys:
        report = report[key]
    return report


# The evaluation bar a retrained model must pass before it may replace a bundled one:
# model -> (what is measured, function of the training report, minimum). The bundled models
# score well above these (README); a model trained too short or broken falls below.
BARS = {
    "clip": ("zero-shot colour+shape accuracy, seen pairs",
             lambda r: _get(r, "accuracy", "test", "colour+shape"), 0.9),
    "vq": ("reconstruction PSNR (dB)", lambda r: r["psnr_db"], 20.0),
    "dalle": ("best-of-8 reranked sample right, seen captions",
              lambda r: _get(r, "seen", "reranked_accuracy"), 0.5),
    "prior": ("pictures decoded right from the prior's embedding",
              lambda r: _get(r, "decoding", "prior", "accuracy"), 0.3),
    "shapecheck": ("shape accuracy", lambda r: r["shape_accuracy"], 0.9),
    "reranker": ("colour+shape accuracy on tiny-VQ pictures",
                 lambda r: _get(r, "colour+shape accuracy", "tiny-shapes-vq", "vq_pictures"), 0.6),
}


def user_models_dir() -> Path:
    """Where `train` writes by default: <course cache folder>/models."""
    from .models import course_cache_dir

    return course_cache_dir() / "models"


def _new_folder(base: Path) -> Path:
    """`base`, or base-2, base-3... : the first that does not exist yet."""
    candidate, i = base, 1
    while candidate.exists():
        i += 1
        candidate = base.with_name(f"{base.name}-{i}")
    return candidate


def print_report(args: argparse.Namespace, report: dict, lines: list[str]) -> int:
    """Print what a training command did: JSON with --json (what --replace-bundled reads), else `lines`."""
    print(to_json(report, indent=2) if args.json else "\n".join(lines))
    return 0


def _validate(args: argparse.Namespace) -> None:
    """Refuse what cannot work before any training starts (numbers: see utils/__main__.LIMITS)."""
    if args.epochs is not None:
        raise UsageError(f"argument --epochs: `train {args.model}` is trained for a number of "
                         "steps, not epochs.", "Use --steps N (N >= 1).")
    if args.replace_bundled and args.out:
        raise UsageError("argument --replace-bundled: not allowed with --out (it replaces the "
                         "bundled model in utils/assets/).", "Pass one of them.")
    from .assets import ASSETS_DIR

    if args.out and Path(args.out).expanduser().resolve() == ASSETS_DIR.resolve():
        raise UsageError("argument --out: utils/assets/ holds the bundled models; they are "
                         "replaced only by --replace-bundled, after an evaluation bar.",
                         "Pass --replace-bundled instead of --out, or choose another folder.")


def _load_function(model: str):
    module_name, function_name, _ = MODELS[model]
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise CourseError(f"`train {model}` needs {module_name}, which is not in this installation.",
                          "Update the course (git pull) and try again.") from err
    function = getattr(module, function_name, None)
    if function is None:
        raise CourseError(f"{module_name} has no {function_name}(args); `train {model}` is not "
                          "available in this version of the course.", "Update the course.")
    return function


def _install(folder: Path, model: str, seed: int) -> list[str]:
    """Copy each file of `folder` over its bundled namesake (temp file + rename), register it."""
    from .assets import ASSETS_DIR, read_manifest, register_asset
    from .io import write_atomic

    manifest, names = read_manifest(), []
    for path in sorted(folder.iterdir()):
        if not path.is_file():
            continue
        target = ASSETS_DIR / path.name
        write_atomic(target, path.read_bytes())
        old = manifest.get(path.name, {})
        register_asset(target, old.get("description", f"{model} (retrained)"),
                       f"python -m utils train {model} --seed {seed} --replace-bundled")
        names.append(path.name)
    return names


def _run(args: argparse.Namespace) -> int:
    function = _load_function(args.model)
    if not args.replace_bundled:
        out = Path(args.out) if args.out else _new_folder(user_models_dir() / f"{args.model}-seed{args.seed}")
        out.mkdir(parents=True, exist_ok=True)
        args.out = str(out)
        return int(function(args) or 0)

    staging = _new_folder(user_models_dir() / f"{args.model}-seed{args.seed}")
    staging.mkdir(parents=True)
    as_json, args.out, args.json = args.json, str(staging), True
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured):
        code = int(function(args) or 0)
    try:
        report = json.loads(captured.getvalue())
    except json.JSONDecodeError:
        raise CourseError(f"`train {args.model}` did not report its evaluation; the bundled model "
                          f"was not replaced (the new one is in {staging}).") from None
    what, measure, minimum = BARS[args.model]
    score = float(measure(report))
    if code != 0 or not score >= minimum:
        raise CourseError(f"the retrained {args.model} scores {score:.3f} on {what}, below the bar of "
                          f"{minimum}: the bundled model was NOT replaced (the new one is in {staging}).",
                          "Train longer (more --steps) or with another --seed.")
    installed = _install(staging, args.model, args.seed)
    report.update({"bar": {"measure": what, "score": score, "minimum": minimum}, "replaced": installed})
    print(to_json(report, indent=2) if as_json else
          f"{args.model}: {what} {score:.3f} >= {minimum}; replaced the bundled "
          f"{', '.join(installed)} (copies kept in {staging}).")
    return 0


def add_cli(subparsers) -> argparse.ArgumentParser:
    """Add `train` and its sub-commands (see MODELS) to the course CLI."""
    parser = subparsers.add_parser(
        "train", help="retrain a tiny model (into your cache folder)", description=__doc__.splitlines()[0]
    )
    models = parser.add_subparsers(dest="model", metavar="MODEL", required=True)
    for name, (_, _, help_text) in MODELS.items():
        sub = models.add_parser(name, help=f"train {help_text}", description=f"Train {help_text}.")
        sub.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
        length = sub.add_mutually_exclusive_group()
        length.add_argument("--steps", type=int, default=None,
                            help="optimisation steps, >= 1 (default: the bundled model's)")
        length.add_argument("--epochs", type=int, default=None, help=argparse.SUPPRESS)
        sub.add_argument("--out", default=None,
                         help="new or empty folder to write the model to (default: "
                              "models/MODEL-seedS in the course cache folder)")
        sub.add_argument("--force", action="store_true", help="allow an --out folder that is not empty")
        sub.add_argument("--replace-bundled", action="store_true",
                         help="replace the bundled model in utils/assets/, if the new one passes "
                              "its evaluation bar")
        sub.add_argument("--json", action="store_true", help="print the report as JSON")
        sub.set_defaults(func=_run, validate=_validate)
    return parser
