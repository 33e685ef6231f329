# %% [markdown] id="title"
# # 04 · Image generation with VQGAN+CLIP
#
# > **Before notebook 04.** Convolutional networks and autoencoders; the idea of a GAN,
# > summed up on the lesson page; gradient descent, used here on an input instead of on weights.
#
# CLIP can tell how well an image matches a text. Turn that around: start from noise and
# change the image, step by step, until CLIP says it matches the text. That is VQGAN+CLIP,
# the method behind pixray and the first wave of text-to-image art (2021). In this lesson you
# run the algorithm yourself, offline, in the shapes world, and see each step: the generator,
# the quantisation trick, the cutouts, the loss. Then you see what it takes on a GPU with the
# real models.

# %% id="params" tags=["parameters"]
LANG = "en"        # course language: en, fr, es, it, pt, zh
MODEL = "auto"     # CLIP of the real section: "auto" = ViT-B-32 if already downloaded (it never downloads); "ViT-B-32" downloads it once
QUICK = True       # True: fast (what CI runs); False: longer runs, and the real section at 128 px on a CPU (it prints its estimate) or 256 px on a GPU
SEED = 0           # same seed, same picture (on a CPU)
SMOKE = False      # True only where CI runs the translations: tiny runs; cells tagged smoke-skip stand aside

# %% id="imports"
import io
import sys

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from IPython.display import Image as ShowImage
from IPython.display import display

from utils.cutouts import make_cutouts, sample_cutouts
from utils.data import render_batch
from utils.drawers import as_image_tensor, clamp_with_grad, colour_noise
from utils.generate import GenerationConfig, generate, pixray_available, run_pixray
from utils.i18n import set_language, t
from utils.models import load_clip
from utils.objective import clip_normalization, colourfulness, prompt_loss
from utils.prompts import parse_prompts
from utils.shapecheck import dominant_colours
from utils.tinyvq import load_tiny_vq
from utils.viz import plot_curves, show_images

set_language(LANG)
ITERATIONS = 4 if SMOKE else 40 if QUICK else 150  # optimisation steps per picture
CUTOUTS = 4 if SMOKE else 16 if QUICK else 32  # random views of the picture CLIP sees per step
ALL_THREADS = torch.get_num_threads()  # the real models of the last section use every core
if QUICK:  # these small models run fastest on one thread (and CI runs two notebooks at once)
    torch.set_num_threads(1)


# %% [markdown] id="pre-quiz"
# **Before you start:** a short quiz on what you may already know. Guess freely: every
# answer explains itself, and the quiz at the end shows what you learned.

# %% id="pre-quiz-show"
from utils.quiz import show

show("04-vqgan-clip", "pre", LANG)

# %% [markdown] id="models-intro"
# ## Two models, neither of them trained for this
#
# - a **CLIP** that scores image-text pairs: here the tiny shapes-world CLIP of lesson 01;
# - an image **generator**: the decoder of a **VQ** model (vector-quantised autoencoder).
#   The tiny VQ bundled with the course cuts a 64x64 picture into an 8x8 grid of codes, each
#   code one of 256 learned vectors, and its decoder turns a grid of code vectors back into a
#   picture. The VQGAN of the real method is the same idea at 256 px and 16,384 codes.
#
# Neither model knows the other. The generation is pure optimisation: no training happens.

# %% id="load-models"
clip = load_clip("tiny-shapes", device="cpu")  # tiny models: a GPU would not make them faster
vq = load_tiny_vq(device=clip.device)  # the generator lives where its critic lives
print(clip.description)
print(t("tiny VQ: {h}x{w} codes per image, codebook of {k} vectors of dimension {c}",
        h=vq.grid[0], w=vq.grid[1], k=vq.codebook.shape[0], c=vq.codebook.shape[1]))

# %% [markdown] id="vq-intro"
# ## The generator: a decoder of code grids
#
# Real pictures go through the VQ model almost unchanged (top row vs. middle row): the
# decoder can draw the shapes world. A grid of **random** codes decodes to noise made of
# shape fragments (third row). The VQGAN+CLIP notebooks start from such random codes; we
# start from the latents of a picture of **coloured noise** (last row): of all the noises we
# tried, it is the one the tiny CLIP finds least like any particular shape.

# %% id="vq-demo"
real, _ = render_batch(6, seed=SEED, split="test", as_tensor=True)  # (6, 3, 64, 64)
codes = vq.encode(real)  # (6, 8, 8) integers in [0, 256)
rebuilt = vq.decode_codes(codes)
random_codes = torch.randint(vq.codebook.shape[0], (6, *vq.grid), generator=torch.Generator().manual_seed(SEED))
noise = vq.decode_codes(random_codes)
blotches = vq.decode_codes(vq.encode(colour_noise(6, 64, torch.Generator().manual_seed(SEED))))
rows = [(real, t("picture")), (rebuilt, t("encoded + decoded")), (noise, t("random codes")),
        (blotches, t("coloured noise, encoded"))]
show_images([picture for batch, _ in rows for picture in batch[:6]],  # one row per kind, its name on the left
            [name if col == 0 else "" for _, name in rows for col in range(6)],
            t("The tiny VQ: 64x64 pictures as 8x8 grids of codes"), rows=4, size=1.5)
print(t("codes of the first picture:"))
print(codes[0])

# %% [markdown] id="step-intro"
# ## One optimisation step, piece by piece
#
# We optimise the **latent grid** `z` (one 32-dimensional vector per cell), not the pixels.
#
# 1. **Quantise** each vector to its nearest code, `z_q = z + sg[e - z]` (sg: stop the
#    gradient). The decoder sees real codes `e`; the gradient passes to `z` as if quantising
#    were the identity: the *straight-through estimator*.
# 2. **Decode** `z_q` into a picture and clamp it to [0, 1] (keeping a gradient that brings
#    overshooting pixels back).
# 3. **Cut out** N random views: crops of random size and place, slightly rotated, mirrored,
#    with a little noise. All N come from ONE `grid_sample` call: each view is an affine map
#    from output to input coordinates.
# 4. **Embed** the views with CLIP (after CLIP's colour normalisation) and measure the
#    **spherical distance** to the prompt's text embedding, `d(a, b) = 2 arcsin(|a - b| / 2)^2`:
#    half the squared angle between the unit vectors.
# 5. **Step**: Adam lowers the mean distance; then `z` is clamped to the codebook's range.

# %% id="one-step"
g = torch.Generator().manual_seed(SEED)
with torch.no_grad():
    z_start = vq.encode_z(colour_noise(1, 64, g))  # (1, 32, 8, 8): the latents of coloured noise
z = z_start.clone().requires_grad_(True)

z_q, _ = vq.quantize(z)                                  # 1. straight-through quantisation
picture = clamp_with_grad(vq.decode_z(z_q))              # 2. (1, 3, 64, 64)
theta = sample_cutouts(8, batch=1, generator=g)          # 3. (1, 8, 2, 3) affine maps
views = make_cutouts(picture, theta, clip.image_size)    #    (8, 3, 64, 64), one grid_sample
mean, std = clip_normalization(clip)
image_vectors = F.normalize(clip.model.encode_image((views - mean) / std), dim=-1)  # 4. (8, D)
text_vector = clip.encode_texts(["a red circle"])        # (1, D)
loss = prompt_loss(image_vectors[None], text_vector, torch.ones(1))  # mean distance, (1,)
loss.sum().backward()                                    # 5. gradient reaches z through CLIP and the decoder
print(t("loss {l:.3f}; gradient on z: shape {s}, norm {n:.4f}", l=loss.item(), s=tuple(z.grad.shape),
        n=z.grad.norm().item()))
show_images([picture[0].detach()] + list(views[:6].detach()),
         [t("picture")] + [t("view {i}", i=i + 1) for i in range(6)], t("What CLIP sees: random views"))

# %% [markdown] id="loop-intro"
# ## The whole loop, in a dozen lines
#
# Repeat the step. One addition, from pixray's optional losses: a small **saturation
# penalty**, the mean colourfulness `max(r, g, b) - min(r, g, b)` of the picture. The tiny
# CLIP hardly minds stray colour around the shape; the penalty leaves colour only where CLIP
# needs it. We record the **CLIP score** of the whole picture, the cosine similarity between
# its embedding and the prompt's, to watch it rise.

# %% id="loop"
z = z_start.clone().requires_grad_(True)
optimizer = torch.optim.Adam([z], lr=0.15)
z_min = vq.codebook.min(0).values[None, :, None, None]  # the box spanned by the codebook
z_max = vq.codebook.max(0).values[None, :, None, None]


def clip_score(picture: torch.Tensor) -> float:
    with torch.no_grad():
        return float(F.normalize(clip.model.encode_image((picture - mean) / std), dim=-1) @ text_vector[0])


scores = []
for _ in range(ITERATIONS):
    picture = clamp_with_grad(vq.decode_z(vq.quantize(z)[0]))
    theta = sample_cutouts(CUTOUTS, generator=g)
    views = make_cutouts(picture, theta, clip.image_size)
    image_vectors = F.normalize(clip.model.encode_image((views - mean) / std), dim=-1)
    loss = prompt_loss(image_vectors[None], text_vector, torch.ones(1)).sum()
    loss = loss + 0.3 * colourfulness(picture).sum()  # the saturation penalty
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    with torch.no_grad():
        z.clamp_(z_min, z_max)
    scores.append(clip_score(picture.detach()))
by_hand = picture.detach()[0]
print(t("CLIP score: {a:.3f} at the start, {b:.3f} after {n} steps", a=scores[0], b=scores[-1], n=ITERATIONS))

# %% id="loop-plot"
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(8, 3), gridspec_kw={"width_ratios": [2, 1]})
ax1.plot(scores)
ax1.set_xlabel(t("step"))
ax1.set_ylabel(t("CLIP score (cosine)"))
ax1.set_title(t("\"a red circle\": the score rises"))
ax2.imshow(by_hand.permute(1, 2, 0).numpy())
ax2.set_title(t("after {n} steps", n=ITERATIONS))
ax2.axis("off")
plt.tight_layout()
plt.show()

# %% [markdown] id="library-intro"
# ## The same loop in `utils.generate`
#
# `generate()` is this loop with a few more options (several prompts, several seeds per step,
# other drawers, kornia augmentations, `torch.compile`). It keeps every few steps as a frame:
# here is "a red circle" appearing from noise. The command line does the same:
# `python -m utils generate "a red circle" --drawer tiny-vq`.

# %% id="library-run"
RUN = GenerationConfig(drawer="tiny-vq", iterations=ITERATIONS, cutouts=CUTOUTS, seed=SEED)  # the settings, in one place
result = generate("a red circle", RUN, clip=clip, progress=False)
print(t("CLIP score {a:.3f} -> {b:.3f} in {s:.1f} s", a=result.start_score, b=result.final_score,
        s=result.seconds))


def animation(frames, scale: int = 3, fps: int = 8) -> ShowImage:
    """Frames as an animated GIF shown in the notebook (kept in memory, no file written)."""
    import imageio.v3 as iio

    big = [np.asarray(f.resize((f.width * scale, f.height * scale), 0)) for f in frames]
    buffer = io.BytesIO()
    iio.imwrite(buffer, np.stack(big), extension=".gif", duration=1000 / fps, loop=0)
    return ShowImage(data=buffer.getvalue(), format="gif")


display(animation(result.frames))
plot_curves(result.score_iterations, {"": result.scores}, title=t("CLIP score of the picture over the optimisation"),
            xlabel=t("step"), ylabel=t("CLIP score (cosine)"))
plt.show()

# %% [markdown] id="self-check-intro"
# ### Self-check
#
# Claims of this lesson that the code must keep true: the score rises clearly, and an
# independent judge (pixel statistics, not CLIP) finds red the dominant colour of the
# coloured pixels.

# %% id="self-check" tags=["smoke-skip"]
colour, share, n_coloured = dominant_colours(as_image_tensor(result.image))[0]
print(t("dominant colour: {c} ({s:.0%} of {n} coloured pixels)", c=colour, s=share, n=n_coloured))
assert result.final_score > result.start_score + 0.1, "the CLIP score did not rise"
assert colour == "red", f"the picture for 'a red circle' is mostly {colour}"

# %% [markdown] id="cutouts-intro"
# ## Why cutouts?
#
# Run the same optimisation, but let CLIP see only the whole picture, once per step. Now the
# picture is optimised for that single view: it becomes whatever pattern of pixels raises
# CLIP's score for that view, an **adversarial example**, not a red circle. To see it, show
# CLIP fresh random views (crops, small rotations) that neither run was optimised on: the
# picture made with cutouts keeps its score, the other loses much of it. The cutouts force the
# picture to match the prompt from every view, which is what a real red circle does.

# %% id="cutouts-compare" tags=["smoke-skip"]
plain = generate("a red circle", drawer="tiny-vq", clip=clip, iterations=ITERATIONS, seed=SEED,
                 augment="none", progress=False)


def fresh_view_score(image, n: int = 64) -> float:
    """Mean CLIP score of n random views the optimisation never saw."""
    x = as_image_tensor(image)
    views = make_cutouts(x, sample_cutouts(n, generator=torch.Generator().manual_seed(999)), clip.image_size)
    with torch.no_grad():
        v = F.normalize(clip.model.encode_image((views - mean) / std), dim=-1)
    return float((v @ text_vector[0]).mean())


fresh = {}
for name, r in [(t("with cutouts"), result), (t("without cutouts"), plain)]:
    fresh[name] = fresh_view_score(r.image)
    colour, share, _ = dominant_colours(as_image_tensor(r.image))[0]
    print(t("{name}: score of the picture {a:.3f}, of fresh views {b:.3f}; {c} {s:.0%} of the colour",
            name=name, a=r.final_score, b=fresh[name], c=colour, s=share))
show_images([result.image, plain.image], list(fresh), t("\"a red circle\", same seed"), size=2.6)
assert fresh[t("with cutouts")] > fresh[t("without cutouts")], "cutouts should make the picture robust to new views"

# %% [markdown] id="weights-intro"
# ## Prompt weights and negative prompts
#
# pixray's prompt syntax: prompts separated by `|`, each with an optional `:weight`. The loss
# is the weighted sum of the distances, so a **negative** weight pushes the picture away from
# that prompt. Below, "a red circle" that must not look like "a red square", next to the
# plain "a red circle" from above.

# %% id="weights" tags=["smoke-skip"]
print(parse_prompts("a red circle:1 | a red square:-1"))
not_square = generate("a red circle:1 | a red square:-1", RUN, clip=clip, progress=False)
square_vector = clip.encode_texts(["a red square"])[0]
similarity = {name: float(clip.encode_images([r.image])[0] @ square_vector)
              for name, r in [("a red circle", result), ("a red circle:1 | a red square:-1", not_square)]}
for name, value in similarity.items():
    print(t("{p!r}: similarity to 'a red square' {s:.3f}", p=name, s=value))
show_images([result.image, not_square.image], list(similarity), size=2.6)
assert similarity["a red circle:1 | a red square:-1"] < similarity["a red circle"], \
    "the negative prompt should move the picture away from 'a red square'"

# %% [markdown] id="drawers-intro"
# ## Pixel drawer vs. VQ drawer
#
# The generator is a choice. pixray's fastest drawer optimises a coarse grid of coloured
# cells directly: no model, any picture is possible, including the adversarial ones. The VQ
# decoder can only draw what it learnt from the shapes world, a strong **prior** that keeps
# the picture looking like a picture. Compare the CLIP scores with the pictures.

# %% id="drawers"
pixel = generate("a red circle", RUN, clip=clip, drawer="pixel", progress=False)  # RUN, another drawer
show_images([pixel.image, result.image],
         [t("pixel: {s:.2f}", s=pixel.final_score), t("tiny VQ: {s:.2f}", s=result.final_score)],
         t("\"a red circle\": CLIP score of each drawer's picture"), size=2.6)
for name, r in [("pixel", pixel), ("tiny-vq", result)]:
    c, share, _ = dominant_colours(as_image_tensor(r.image))[0]
    print(t("{d}: dominant colour {c} ({s:.0%})", d=name, c=c, s=share))

# %% [markdown] id="gpu-intro"
# ## Optional (deep dive): the real thing, pretrained CLIP + VQGAN
#
# With `drawer="vqgan"` the same loop runs taming-transformers' ImageNet VQGAN (f16: one code
# per 16x16 pixels, 16,384 codes) under a pretrained CLIP (ViT-B-32): a 256x256 picture is a
# 16x16 grid of codes, and every step decodes it with the VQGAN's decoder (the cell below counts
# its parameters) and embeds 32 cutouts with CLIP. The course's VQGAN modules are our own
# (`utils/vqgan.py`), they load taming's checkpoints, and a test proves they compute exactly what
# taming computes.
#
# When both models are on this machine, the cell below runs them: on a GPU at 256 px, on a
# CPU at 128 px with fewer cutouts, enough steps to watch the picture form (with
# `QUICK = False`; quick mode runs 2 steps). On 2 CPU cores the whole cell took
# {{claim lesson04.cpu.cell_minutes:.1f}} minutes, loading included, and a step took
# {{claim lesson04.cpu.seconds_per_step:.1f}} s on average. It first times two steps (the first
# one warms up), then says how long the run will take. CLIP's text tower is needed only to embed the prompt,
# so the cell frees it: with it, the session peaked at {{claim lesson04.cpu.peak_mb_with_text:,d}}
# MB, without it at {{claim lesson04.cpu.peak_mb:,d}} MB, within Binder's 2 GB.
# `python benchmarks/bench_generate.py --device cuda` compares the plain loop with ours (one
# `grid_sample` for all cutouts, several pictures per step, TF32, CUDA graphs) at 256 and 512 px.

# %% id="gpu-path"
import time

from utils.generate import REAL_RUN_CPU, REAL_RUN_GPU
from utils.models import (
    DEFAULT_MODEL,
    DEFAULT_PRETRAINED,
    DOWNLOAD_MB,
    available_worlds,
    pick_device,
    quality_checks_apply,
)
from utils.vqgan import CONFIGS, VQGAN, checkpoint_path, download_command, load_vqgan

with torch.device("meta"):  # shapes only: no memory, no weights
    vqgan_shapes = VQGAN(CONFIGS["f16_16384"])
n_vqgan = sum(p.numel() for p in vqgan_shapes.parameters())
n_decoder = sum(p.numel() for p in vqgan_shapes.decoder.parameters())
print(t("VQGAN f16_16384: {m:.1f} M parameters ({mb:.0f} MB in float32), {d:.1f} M of them in the decoder",
        m=n_vqgan / 1e6, mb=n_vqgan * 4 / 1e6, d=n_decoder / 1e6))
DEVICE = pick_device()  # cuda, mps or cpu: both models and every tensor of the run live there
checkpoint = checkpoint_path("f16_16384")
clip_ready = MODEL != "auto" or available_worlds()["pretrained"]["available"]
if not checkpoint.exists():
    print(t("Skipped: the VQGAN checkpoint is not in {path}. To download it (about 1 GB):", path=checkpoint))
    print("   ", download_command("f16_16384"))
if not clip_ready:
    print(t("Skipped: pretrained CLIP ViT-B-32 is not downloaded. Set MODEL = \"ViT-B-32\" to download it "
            "(about {mb:,.0f} MB).", mb=DOWNLOAD_MB[DEFAULT_MODEL, DEFAULT_PRETRAINED]))
if checkpoint.exists() and clip_ready:
    torch.set_num_threads(ALL_THREADS)
    big_clip = load_clip(MODEL, device=DEVICE)
    run = dict(REAL_RUN_CPU if DEVICE.type == "cpu" else REAL_RUN_GPU)
    if QUICK:  # proves the path in seconds; QUICK = False shows the picture forming
        run["iterations"] = 2
    prompt = "a watercolor painting of a lighthouse"
    big_clip.drop_text_tower([prompt])  # the run needs only the prompt's embedding: ~250 MB freed
    vq_big = load_vqgan(device=DEVICE, encoder=False)  # from random codes: the decoder is enough
    real_run = GenerationConfig(drawer="vqgan", seed=SEED, **run)  # size, iterations, cutouts
    step_ends = []  # two steps: the first warms up, the second, timed, says how long the run will take
    generate(prompt, real_run, clip=big_clip, vq=vq_big, iterations=2, progress=False,
             callback=lambda *_: step_ends.append(time.perf_counter()))
    per_step = step_ends[1] - step_ends[0]
    print(t("{clip} and the VQGAN on {device}: {n} steps at {size} px, about {s:.0f} s ({p:.1f} s per step).",
            clip=big_clip.name, device=DEVICE, n=run["iterations"], size=run["size"],
            s=per_step * run["iterations"], p=per_step))
    big = generate(prompt, real_run, clip=big_clip, vq=vq_big)  # a progress bar while it runs
    print(t("CLIP score: {a:.3f} at the start, {b:.3f} after {n} steps", a=big.start_score, b=big.final_score,
            n=run["iterations"]))
    if DEVICE.type == "cuda":
        print(t("{n} steps in {s:.1f} s ({r:.1f} steps/s), peak GPU memory {g:.1f} GiB", n=run["iterations"],
                s=big.seconds, r=run["iterations"] / big.seconds, g=torch.cuda.max_memory_allocated() / 2**30))
    display(big.image)
    if quality_checks_apply() and not QUICK:  # (random-weight test fixtures stand aside)
        assert big.final_score > big.start_score, "the CLIP score of the real run did not rise"

# %% [markdown] id="pixray-intro"
# ## Optional (deep dive): pixray itself
#
# pixray wraps this loop with many drawers and losses. It is no longer maintained and does not
# install cleanly on current Python packages, so the course does not depend on it. On Colab
# with a GPU you can try it: set `INSTALL_PIXRAY = True` and run the two cells below;
# `run_pixray` takes the same prompt syntax. Elsewhere they only print how to install it.

# %% id="pixray-install"
INSTALL_PIXRAY = False
if INSTALL_PIXRAY and "google.colab" in sys.modules:
    get_ipython().system("git clone --depth 1 https://github.com/pixray/pixray")  # noqa: F821
    get_ipython().system("pip install -q -r pixray/requirements.txt")  # noqa: F821
    sys.path.append("pixray")

# %% id="pixray-run"
if pixray_available() and torch.cuda.is_available():
    run_pixray("a red circle:1 | a blue square:-0.5", drawer="vqgan", quality="draft")
else:
    from utils.generate import PIXRAY_INSTALL

    print(t("pixray is not available here; nothing to run.") if pixray_available() else PIXRAY_INSTALL)

# %% [markdown] id="exercise-1"
# ## Exercises
#
# **Exercise 1: the spherical distance.** Write `my_distance(a, b)` for unit vectors of shape
# (..., D): `2 arcsin(|a - b| / 2)^2`. Check it against the angle between the vectors: it is
# half the squared angle.

# %% id="exercise-1-solution" tags=["solution"]
def my_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """2 arcsin(|a - b| / 2)^2 over the last dimension of unit vectors a, b (..., D)."""
    ### BEGIN SOLUTION
    return 2 * torch.arcsin((a - b).norm(dim=-1) / 2) ** 2
    ### END SOLUTION


# %% id="exercise-1-check"
from utils.exercises import exercise_check

with exercise_check(1):
    a = F.normalize(torch.randn(10, 16), dim=-1)
    b = F.normalize(torch.randn(10, 16), dim=-1)
    angle = torch.arccos((a * b).sum(-1).clamp(-1, 1))
    assert my_distance(a.view(2, 5, 16), b.view(2, 5, 16)).shape == (2, 5), \
        t("my_distance should reduce only the last dimension: (..., D) -> (...)")
    assert torch.allclose(my_distance(a, b), angle**2 / 2, atol=1e-4), \
        t("my_distance should be half the squared angle between a and b")
print(t("Correct."))

# %% [markdown] id="exercise-2"
# **Exercise 2: another colour, another shape.** Generate "a blue square" with the tiny VQ
# drawer (same `ITERATIONS` and `CUTOUTS`) and store the result in `blue`. The check uses the
# independent colour judge.

# %% id="exercise-2-solution" tags=["solution"]
### BEGIN SOLUTION
blue = generate("a blue square", RUN, clip=clip, progress=False)
display(blue.image.resize((128, 128), 0))
### END SOLUTION

# %% id="exercise-2-check" tags=["smoke-skip"]
with exercise_check(2):
    colour, share, _ = dominant_colours(as_image_tensor(blue.image))[0]
    assert blue.final_score > blue.start_score, t("the CLIP score should rise")
    assert colour == "blue", t("the judge finds mostly {c}", c=colour)
print(t("Correct: the judge finds {c} ({s:.0%}).", c=colour, s=share))

# %% [markdown] id="exercise-3"
# **Exercise 3: start from a picture.** `init_image` starts the optimisation from the codes of
# a picture instead of noise. Start from a rendered *green* shape and ask for "a red circle",
# with `ITERATIONS // 2` steps. **Predict first**: what will be left of the green shape: its
# place, its outline, its colour? Write your guess in `my_guess` (it is not graded). Then
# store the result in `recoloured` and compare the two pictures with your guess.

# %% id="exercise-3-solution" tags=["solution"]
my_guess = ""  # your prediction, written before you run: what stays of the green shape?
### BEGIN SOLUTION
start_picture = render_batch(32, seed=3, split="test", as_tensor=True)
green = [i for i, a in enumerate(start_picture[1]) if a["colour"] == "green"]
start = start_picture[0][green[0]]
recoloured = generate("a red circle", RUN, clip=clip, init_image=start, iterations=ITERATIONS // 2,
                      progress=False)
show_images([start, recoloured.image], [t("start"), t("after")], size=2.4)
### END SOLUTION

# %% id="exercise-3-check" tags=["points-2", "smoke-skip"]
with exercise_check(3):
    first_colour, first_share, _ = dominant_colours(as_image_tensor(recoloured.frames[0]))[0]  # at step 0
    assert first_colour == "green" and first_share > 0.5, \
        t("the run should start from a green shape: pass the rendered picture as init_image")
    assert recoloured.final_score > recoloured.start_score, t("the score should rise from the start picture")
print(t("Score {a:.3f} -> {b:.3f}.", a=recoloured.start_score, b=recoloured.final_score))
print(t("Your guess: {g}", g=my_guess))

# %% [markdown] id="summary"
# ## Summary
#
# - VQGAN+CLIP generates by **optimisation**: a latent grid is changed until CLIP finds the
#   decoded picture close to the prompt. No model is trained.
# - The **straight-through estimator** lets gradients pass the non-differentiable choice of
#   the nearest code.
# - **Cutouts and augmentations** make the picture match the prompt from many views; without
#   them the optimiser finds adversarial pixels.
# - The **generator is a prior**: a VQ decoder draws plausible pictures, a free pixel grid
#   does not. Prompt weights add and subtract concepts.
#
# Lesson 05 turns the same code grids into a sequence of tokens, and trains a transformer to
# write them from a caption: DALL-E.

# %% [markdown] id="quiz"
# ## Quiz
#
# Check what you learned.

# %% id="quiz-show"
from utils.quiz import show

show("04-vqgan-clip", "post", LANG)
