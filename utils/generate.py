"""CLIP-guided image generation (lesson 04): VQGAN+CLIP, the method pixray implements.

A drawer G (a VQ decoder or a pixel grid: utils.drawers) draws an image from parameters z, which
start from noise or an init image; CLIP scores the image against the prompts (utils.prompts);
we change z to raise the score. One step:

    z_q    = quantize(z)                      nearest codebook vectors, straight-through gradient
    x      = clamp(G(z_q), 0, 1)              the image, (B, 3, H, W)
    cuts   = augment(crops of x)              N random crops at CLIP's input size (utils.cutouts)
    e      = normalize(CLIP(cuts))            (B, N, D)
    loss   = sum_p w_p * mean_n d(e_n, t_p)   t_p: prompt p's text embedding, w_p its weight
             (+ s * colourfulness(x))         optional: pixray's saturation penalty
    z     <- Adam(z, grad loss); clamp z to the codebook's range

with d the spherical distance (utils.objective). Negative weights push the image away.

    result = generate("a red circle", drawer="tiny-vq", iterations=60, seed=0)
    result.image; result.scores; result.save("out.png"); result.save_animation("out.gif")
"""

from __future__ import annotations

import importlib.util
import time
import warnings
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from . import assets
from .drawers import DEFAULT_LR, DEFAULT_SIZE, as_image_tensor, load_vq, make_drawer, needs_encoder
from .errors import CourseError
from .i18n import t
from .io import atomic_path, unique_path
from .objective import CLIPObjective, Patches, spherical_distance  # noqa: F401 - for lesson 04
from .prompts import Prompt, parse_prompts
from .train import with_overrides

# Iterations from pixray's quality table; pixray also uses more and bigger CLIPs at higher
# quality, which we leave to the `clip` argument.
PRESETS = {
    "draft": {"iterations": 200, "cutouts": 32},
    "normal": {"iterations": 250, "cutouts": 48},
    "better": {"iterations": 300, "cutouts": 64},
    "best": {"iterations": 350, "cutouts": 96},
}
# The shapes world's, sized for a laptop CPU. Its tiny CLIP does not mind stray colour on the
# grey backgrounds: a small saturation penalty keeps colour where the prompt needs it.
TINY_PRESETS = {
    "draft": {"iterations": 60, "cutouts": 16, "saturation": 0.3},
    "normal": {"iterations": 100, "cutouts": 24, "saturation": 0.3},
    "better": {"iterations": 150, "cutouts": 32, "saturation": 0.3},
    "best": {"iterations": 250, "cutouts": 48, "saturation": 0.3},
}
# Lesson 04's real section (pretrained CLIP + VQGAN f16): on a CPU the picture forms in under
# 3 minutes on 2 cores (benchmarks/bench_lesson04_cpu.py); and on a GPU.
REAL_RUN_CPU = {"size": 128, "iterations": 24, "cutouts": 8}
REAL_RUN_GPU = {"size": 256, "iterations": 150, "cutouts": 32}


class GenerationError(CourseError, RuntimeError):
    """Generation cannot run as asked; the message says what to change."""


@dataclass
class GenerationConfig:
    """How `generate` runs. None: the quality preset's value, or the drawer's default."""

    drawer: str = "tiny-vq"  # "tiny-vq" (bundled), "pixel" (no model), "vqgan" (taming checkpoint)
    quality: str = "draft"  # preset of iterations, cutouts, saturation: draft/normal/better/best
    size: int | None = None  # pixels per side, rounded to what the drawer makes
    iterations: int | None = None
    cutouts: int | None = None  # random views CLIP scores per step
    lr: float | None = None  # Adam's learning rate
    seed: int = 0  # same seed, same result on a CPU
    batch: int = 1  # images per step, from seeds seed, seed+1, ... (same cutout positions)
    augment: str = "fused"  # "fused" (one grid_sample), "kornia" (per cutout), "none" (adversarial)
    min_scale: float = 0.5  # smallest cutout, as a fraction of the image side
    noise: float = 0.05  # strength of the Gaussian noise added to the cutouts
    saturation: float | None = None  # weight of pixray's saturation penalty
    init_noise: str | None = None  # start without init image: "colour"/"grey" noise, "random" codes
    checkpoint: str | None = None  # VQGAN .ckpt for drawer "vqgan" (None: the downloaded one)
    device: str | None = None  # None: where CLIP is
    frame_every: int | None = None  # keep a frame every this many steps (None: about 30 frames)
    compile: bool = False  # torch.compile the step (CUDA graphs on a GPU)
    # recompute the activations of the VQGAN decoder and CLIP's image tower in the backward pass
    # (same numbers, less memory). None: for the VQGAN on a CPU under assets.LOW_MEMORY_BELOW bytes
    low_memory: bool | None = None
    tf32: bool = True  # TF32 matmuls on a GPU
    bf16: bool | None = None  # bf16 autocast on a CPU (None: for the VQGAN, if the CPU has it)

    def resolved(self, tiny: bool) -> GenerationConfig:
        """A copy with every None filled in, from the presets (TINY_PRESETS for the tiny CLIP)."""
        presets = TINY_PRESETS if tiny else PRESETS
        if self.quality not in presets:
            choices = ", ".join(presets)
            raise ValueError(f"Unknown quality {self.quality!r}; choose one of {choices}.")
        preset = presets[self.quality]
        iterations = preset["iterations"] if self.iterations is None else int(self.iterations)
        cutouts = preset["cutouts"] if self.cutouts is None else int(self.cutouts)
        if iterations < 0 or cutouts < 1 or self.batch < 1:
            raise ValueError("iterations must be >= 0, cutouts and batch >= 1.")
        saturation = preset.get("saturation", 0.0) if self.saturation is None else self.saturation
        return replace(self, iterations=iterations, cutouts=cutouts, saturation=saturation,
                       size=self.size or DEFAULT_SIZE.get(self.drawer, 64),
                       lr=DEFAULT_LR.get(self.drawer, 0.1) if self.lr is None else self.lr,
                       frame_every=self.frame_every or max(1, iterations // 30))


@dataclass
class GenerationResult:
    """What `generate` returns: final images, frames, and the CLIP score history."""

    images: list  # final PIL images, one per seed
    frames: list  # PIL frames of the first image, every `frame_every` iterations
    scores: list[float]  # CLIP score (cosine, first positive prompt) of image 0 at each frame
    score_iterations: list[int]
    prompts: list[Prompt]
    settings: dict
    seconds: float
    final_scores: list[float] = field(default_factory=list)  # per image
    start_scores: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)  # loss of image 0 per iteration
    notes: list[str] = field(default_factory=list)

    @property
    def image(self):
        """The first final image (PIL)."""
        return self.images[0]

    @property
    def start_score(self) -> float:
        return self.start_scores[0]

    @property
    def final_score(self) -> float:
        return self.final_scores[0]

    def save(self, path: str | Path, index: int = 0) -> Path:
        """Save image `index` as PNG to `path`, or to a new name beside it if it exists."""
        from PIL import Image

        path = unique_path(path)
        with atomic_path(path) as tmp:  # a crash leaves no half-written PNG behind
            kind = Image.registered_extensions().get(path.suffix.lower(), "PNG")
            self.images[index].save(tmp, format=kind)
        return path

    def save_animation(self, path: str | Path, fps: int = 10) -> Path:
        """Save the frames as a GIF (or MP4, which needs imageio-ffmpeg) to a new file."""
        return save_animation(self.frames, path, fps)


def save_animation(frames: list, path: str | Path, fps: int = 10) -> Path:
    """Write PIL frames to a new .gif or .mp4 file with imageio."""
    import imageio.v3 as iio

    path = unique_path(path)
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"Animations are saved as .gif or .mp4, not {path.suffix!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = np.stack([np.asarray(f.convert("RGB")) for f in frames])  # (T, H, W, 3)
    if suffix == ".gif":
        with atomic_path(path) as tmp:
            iio.imwrite(tmp, arrays, duration=1000 / fps, loop=0, extension=".gif")
    elif importlib.util.find_spec("av"):  # imageio's PyAV plugin
        iio.imwrite(path, arrays, plugin="pyav", fps=fps, codec="libx264")
    elif importlib.util.find_spec("imageio_ffmpeg"):  # imageio's ffmpeg plugin
        import imageio.v2

        imageio.v2.mimwrite(path, list(arrays), fps=fps, macro_block_size=1)
    else:
        raise GenerationError("Writing MP4 needs a video backend for imageio: "
                              "`pip install av` (or imageio-ffmpeg). Or save a .gif instead.")
    return path


# ------------------------------------------------------------------ the loop


@contextmanager
def _loop_settings(clip, drawer, low_memory: bool, tf32: bool, cpu: bool):
    """While the loop runs (restored after): gradients flow through CLIP and the drawer into its
    latent only; TF32 matmuls if `tf32`; with `low_memory`, activation checkpointing in the
    VQGAN decoder and CLIP's image transformer; on a `cpu`, open_clip's attention sequence-first
    (batch-first, its input projection is a batched matmul a CPU runs several times slower) and
    a ViT's patch embedding as one matrix product (`Patches`)."""
    visual = getattr(clip.model, "visual", None)
    transformer, conv1 = getattr(visual, "transformer", None), getattr(visual, "conv1", None)
    parts = [getattr(getattr(drawer, "vq", None), "decoder", None), transformer]
    settings = [(m, "grad_checkpointing", low_memory) for m in parts
                if hasattr(m, "grad_checkpointing")]
    settings += [(p, "requires_grad", False) for m in (clip.model, drawer) for p in m.parameters()
                 if p is not drawer.latent]
    settings.append((torch.backends.cuda.matmul, "allow_tf32", tf32))
    if cpu and transformer is not None and isinstance(conv1, torch.nn.Conv2d) \
            and conv1.stride == conv1.kernel_size and conv1.padding == (0, 0) \
            and conv1.groups == conv1.dilation[0] == 1:
        settings.append((visual, "conv1", Patches(conv1)))
    if cpu and getattr(transformer, "batch_first", None) is True:
        settings += [(m, "batch_first", False) for m in transformer.modules()
                     if getattr(m, "batch_first", 0) is True]
    before = [(m, name, getattr(m, name)) for m, name, _ in settings]
    for m, name, value in settings:
        setattr(m, name, value)
    try:
        yield
    finally:
        for m, name, value in reversed(before):
            setattr(m, name, value)


def generate(prompts: str | Sequence[str], config: GenerationConfig | None = None, *,
             clip=None, vq=None, init_image=None,
             callback: Callable[[int, torch.Tensor, float], None] | None = None,
             progress: bool = True, **overrides) -> GenerationResult:
    """Generate images for `prompts` (pixray syntax, "a red circle:1 | a blue square:-0.5") by
    optimising a drawer's parameters against CLIP.

    config: a GenerationConfig; keyword `overrides` change its fields (generate(p, iterations=40)).
    clip: a `utils.models.CLIP` (None: the tiny shapes-world CLIP). vq: the drawer's VQ model
    (None: loaded). init_image: PIL image, path or tensor to start from instead of noise.
    callback(iteration, images (B, 3, H, W), loss of image 0) is called after every step.
    """
    from tqdm.auto import tqdm

    from .viz import to_pil

    cfg = with_overrides(config or GenerationConfig(), overrides, "generate()")
    parsed = parse_prompts(prompts)
    if clip is None:
        from .models import load_clip

        clip = load_clip("tiny-shapes", device=cfg.device or "cpu")
    device = torch.device(cfg.device) if cfg.device is not None else clip.device
    if device.type != clip.device.type:
        raise ValueError(f"CLIP is on {clip.device} but device={device}: load CLIP on the same "
                         f"device, e.g. load_clip(..., device={str(device)!r}).")
    cfg = cfg.resolved(tiny=getattr(clip, "is_tiny", False))
    objective = CLIPObjective(clip, parsed, cfg.cutouts, cfg.augment, cfg.min_scale, cfg.noise,
                              cfg.saturation)

    generator = torch.Generator().manual_seed(cfg.seed)  # start and cutout positions, on the CPU
    noise_generator = torch.Generator(device).manual_seed(cfg.seed)  # noise, made where it is used
    torch.manual_seed(cfg.seed)  # kornia's augmentations draw from the global generator
    init = as_image_tensor(init_image, device) if init_image is not None else None
    if vq is None:  # the VQGAN's encoder is loaded only if a picture is to be encoded
        encoder = needs_encoder(cfg.drawer, init, cfg.init_noise)
        vq = load_vq(cfg.drawer, cfg.checkpoint, device, encoder=encoder)
    model, size, notes = make_drawer(cfg.drawer, cfg.size, cfg.batch, generator, device, init, vq,
                                     cfg.init_noise)
    if cfg.batch > 1 and init is None:  # image i starts where seed + i starts alone
        for i in range(cfg.batch):
            alone = torch.Generator().manual_seed(cfg.seed + i)
            single = make_drawer(cfg.drawer, size, 1, alone, device, None, vq, cfg.init_noise)[0]
            with torch.no_grad():
                model.latent[i] = single.latent[0]
    model = model.to(device)
    for note in notes:
        warnings.warn(note, stacklevel=2)

    def forward(theta, noise_t) -> tuple[torch.Tensor, torch.Tensor]:
        images = model()  # (B, 3, H, W)
        return images, objective.loss(images, theta, noise_t)

    graphs = cfg.compile and device.type == "cuda"
    if cfg.compile:  # the backward pass is compiled too (AOTAutograd); CUDA graphs on a GPU
        forward = torch.compile(forward, mode="reduce-overhead" if graphs else "default")
    opt = torch.optim.Adam([model.latent], lr=cfg.lr, fused=device.type == "cuda")
    frames, scores, score_its, losses = [], [], [], []

    def keep_frame(it: int) -> tuple[torch.Tensor, list[float]]:  # the images and their scores
        with torch.no_grad():
            images = model()
        all_scores = objective.score(images)
        frames.append(to_pil(images[0]))
        scores.append(all_scores[0])
        score_its.append(it)
        return images, all_scores

    start = time.perf_counter()
    cpu = device.type == "cpu"
    vqgan_on_cpu = cpu and cfg.drawer == "vqgan"
    low_memory = cfg.low_memory
    if low_memory is None:
        limit = assets.memory_limit()
        low_memory = vqgan_on_cpu and limit is not None and limit < assets.LOW_MEMORY_BELOW
    # bf16 by default for the VQGAN only: the tiny models gain little and lose > 2% of the score
    bf16 = cpu and (vqgan_on_cpu and assets.native_bf16() if cfg.bf16 is None else cfg.bf16)
    try:
        with _loop_settings(clip, model, low_memory, cfg.tf32, cpu):
            clip.model.eval()
            final_images, start_scores = keep_frame(0)  # the start, in case of 0 iterations
            final_scores = start_scores
            for it in tqdm(range(1, cfg.iterations + 1), desc=t("generating"), disable=not progress,
                           unit="it"):
                if graphs:  # CUDA graphs: a new step begins
                    torch.compiler.cudagraph_mark_step_begin()
                theta, noise_t = objective.sample(cfg.batch, generator, noise_generator)
                opt.zero_grad(set_to_none=False)
                with torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                    images, loss = forward(theta, noise_t)
                loss.sum().backward()  # images are independent: the sum gives each its own gradient
                opt.step()
                model.clamp_()
                # kept on the device (no wait for the GPU); a copy, as CUDA graphs reuse memory
                losses.append(loss.detach()[0].clone())
                if callback is not None:
                    callback(it, images.detach().clone().float(), float(losses[-1]))
                if it % cfg.frame_every == 0 or it == cfg.iterations:  # the last one always
                    final_images, final_scores = keep_frame(it)
    except torch.OutOfMemoryError as err:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise GenerationError(
            f"Out of memory on {device} with size {size}, {cfg.cutouts} cutouts, batch "
            f"{cfg.batch}. Try fewer cutouts (e.g. cutouts={max(1, cfg.cutouts // 2)}), a smaller "
            "size, or batch=1."
        ) from err
    names = ("drawer", "size", "iterations", "cutouts", "lr", "seed", "batch", "augment",
             "quality", "saturation", "compile")
    settings = {k: getattr(cfg, k) for k in names} | dict(
        size=size, device=str(device), clip=clip.description, low_memory=low_memory, bf16=bf16)
    return GenerationResult(
        images=to_pil(final_images), frames=frames, scores=scores, score_iterations=score_its,
        prompts=parsed, settings=settings, seconds=time.perf_counter() - start,
        final_scores=final_scores, start_scores=start_scores, notes=notes,
        losses=torch.stack(losses).tolist() if losses else [],
    )


# ------------------------------------------------------------------ pixray bridge

PIXRAY_INSTALL = (
    "pixray is not installed. It is not on PyPI and pins old packages (kornia 0.6, CLIP and "
    "taming-transformers from git), so install it in its own environment or on Colab:\n"
    "    git clone https://github.com/pixray/pixray\n"
    "    pip install -r pixray/requirements.txt\n"
    "    import sys; sys.path.append('pixray')\n"
    "It needs a CUDA GPU. Everything in this lesson runs without it: utils.generate.generate()."
)


def pixray_available() -> bool:
    """Whether pixray itself can be imported here."""
    return importlib.util.find_spec("pixray") is not None


def run_pixray(prompts: str, drawer: str = "vqgan", quality: str = "draft",
               outdir: str = "outputs/pixray", **kwargs):
    """Run pixray itself with the same prompt syntax (`pixray.run`), when it is importable."""
    try:
        import pixray
    except ImportError as err:
        raise GenerationError(PIXRAY_INSTALL) from err
    return pixray.run(prompts, drawer, quality=quality, outdir=outdir, **kwargs)
