# %% [markdown] id="title"
# # 01 · Contrastive learning: the loss that trains CLIP
#
# > **Before notebook 01.** Softmax and cross-entropy for classification; the dot product
# > and the cosine of two vectors; what an encoder is: a network that turns an input into a
# > vector (for images, a convolutional network or a Vision Transformer).
#
# CLIP learns from pairs of an image and its caption, and from one loss. This lesson takes
# that loss apart: you will see a batch of pairs and its similarity matrix, write the loss
# step by step, train a tiny CLIP from scratch on this computer while its curves update,
# and run the experiments that explain why CLIP needs huge batches.

# %% id="params" tags=["parameters"]
LANG = "en"        # course language: en, fr, es, it, pt, zh
MODEL = "auto"     # the CLIP of the last comparison: "auto", "tiny-shapes" or an open_clip name
QUICK = True       # True: fast, offline (what CI runs); False: the full experiments
SEED = 0           # the same seed gives the same images and the same training run
SMOKE = False      # True only where CI runs the translations: tiny runs; cells tagged smoke-skip stand aside
TRAIN_STEPS = 4 if SMOKE else 400 if QUICK else 1200  # live training; QUICK = True stops early at 95% accuracy

# %% id="imports"
import inspect
import math
import textwrap

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from IPython.display import Code, display
from PIL import Image

from utils import data
from utils.captions import describe
from utils.i18n import number, set_language, t
from utils.losses import check_distributed, contrastive_loss, normalize, similarity_logits
from utils.models import load_clip
from utils.tinyclip import (
    ShapesCNN,
    TrainConfig,
    build_model,
    embed_images,
    embed_texts,
    evaluate,
    get_tokenizer,
    normalize_images,
    train_clip,
)
from utils.viz import Curve, LiveCurves, plot_curves, plot_matrix, show_images

set_language(LANG)
torch.manual_seed(SEED)
tiny = load_clip("tiny-shapes")  # the tiny CLIP bundled with the course, trained on the shapes world
print(tiny.description)

# %% [markdown] id="pre-quiz"
# **Before you start:** a short quiz on what you may already know. Guess freely: every
# answer explains itself, and the quiz at the end shows what you learned.

# %% id="pre-quiz-show"
from utils.quiz import show

show("01-contrastive-learning", "pre", LANG)

# %% [markdown] id="idea"
# ## The idea: find your partner in the batch
#
# A training batch holds $N$ images and their $N$ captions. Image $i$ belongs with
# caption $i$, and with no other caption of the batch. CLIP embeds every image with an
# image encoder and every caption with a text encoder, into vectors of the same length,
# and compares all of them with all of them: an $N \times N$ matrix of similarities.
# Training pushes the **diagonal** (the true pairs) up and everything else down.
#
# Here is a batch of 8 pairs from the *shapes world*, the pictures the course draws itself
# (`utils.data`): each holds one coloured shape, and its caption says what is there.

# %% id="batch"
pool, pool_attrs = data.render_batch(64, seed=SEED, split="test")
chosen, seen_pairs = [], set()
for i, a in enumerate(pool_attrs):  # 8 images with 8 different colour-shape pairs
    if (a["colour"], a["shape"]) not in seen_pairs and len(chosen) < 8:
        chosen.append(i)
        seen_pairs.add((a["colour"], a["shape"]))
pixels = torch.from_numpy(pool[chosen]).permute(0, 3, 1, 2).float() / 255  # (8, 3, 64, 64) in [0, 1]
captions = [describe(pool_attrs[i], LANG) for i in chosen]  # in the course language
N = len(captions)

show_images(pool[chosen], [f"{i}: " + "\n".join(textwrap.wrap(c, 18)) for i, c in enumerate(captions)],
            t("A batch of {n} image-caption pairs", n=N), size=1.75, fontsize=8)

# %% [markdown] id="matrix-intro"
# Below, the similarity matrix of that batch, twice: for a CLIP with random weights
# (before training) and for the tiny CLIP (after training). Entry $(i, j)$ is the cosine
# similarity between image $i$ and caption $j$. After training, the diagonal lights up.

# %% id="matrix"
random_model = build_model(seed=SEED)  # same architecture as the tiny CLIP, random weights
tokenizer = get_tokenizer()
sim_before = embed_images(random_model, pixels) @ embed_texts(random_model, tokenizer, captions).T
sim_after = embed_images(tiny, pixels) @ embed_texts(tiny, tokenizer, captions).T  # (8, 8)

fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
for ax, sim, title in ((axes[0], sim_before, t("Before training (random weights)")),
                       (axes[1], sim_after, t("After training (tiny CLIP)"))):
    plot_matrix(sim, ax, title, t("caption j"), t("image i"), colorbar=t("cosine similarity"))
plt.tight_layout()
plt.show()

# %% [markdown] id="space-intro"
# ## A picture of the embedding space
#
# The matrix compares 8 images with 8 captions. To see more at once, we embed 120 new test
# images and four English texts the tiny CLIP learned, "a circle", "a square", "a triangle"
# and "a star", then project all of them on the two directions along which they vary most
# (a PCA). Dots are images, stars are texts, and each colour is one shape.

# %% id="space"
from utils.viz import plot_embedding_2d

space_images, space_attrs = data.render_batch(120, seed=SEED + 3, split="test", as_tensor=True)
space_I = embed_images(tiny, space_images)  # (120, D), normalised
shape_texts, _ = data.class_prompts("a {shape}", [("red", s) for s in data.SHAPES])  # text k: shape k
space_T = embed_texts(tiny, tokenizer, shape_texts)  # (4, D)
space_classes = [data.SHAPES.index(a["shape"]) for a in space_attrs]
plot_embedding_2d(space_I, space_classes, space_T, shape_texts)
plt.tight_layout()
plt.show()

# %% [markdown] id="space-check"
# Images of one shape, whatever their colour, gather around the star of their own text: the
# model put a picture and the words for it in the same place. Two axes keep only part of the
# variance (see the axis labels), so the picture can hide or invent closeness.
# **Self-check:** in the full space, each text is closest to the centre of its own shape's
# images.

# %% id="space-check-code"
classes_t = torch.tensor(space_classes)
centroids = torch.stack([space_I[classes_t == k].mean(0) for k in range(len(shape_texts))])
centroids = F.normalize(centroids, dim=-1)  # (4, D): the mean image of each shape, length 1
nearest_centroid = (space_T @ centroids.T).argmax(-1)  # (4,): the closest image centroid of each text
print(t("nearest image centroid of each text:"), [shape_texts[k] for k in nearest_centroid.tolist()])
assert nearest_centroid.tolist() == list(range(len(shape_texts))), \
    "a text is closer to another shape's images than to its own"

# %% [markdown] id="loss-intro"
# ## The loss, step by step
#
# Here is the whole loss, from `utils/losses.py`:

# %% id="loss-source"
display(Code(inspect.getsource(contrastive_loss), language="python"))

# %% [markdown] id="loss-steps"
# Four steps, run one at a time on our batch with the tiny CLIP:
#
# 1. **Normalise.** Divide every embedding by its length, so that the dot product of an
#    image vector and a text vector is their cosine similarity, between -1 and 1.
# 2. **Similarity matrix.** $S = I\,T^\top$, an $N \times N$ matrix ($I$: images in rows,
#    $T$: captions in rows).
# 3. **Temperature.** Multiply by the *logit scale* $s = 1/\tau$. Cosines live in
#    $[-1, 1]$, too narrow for a sharp softmax; CLIP learns $s$ (it starts at
#    $1/0.07 \approx 14$ and is capped at 100).
# 4. **Cross-entropy both ways.** Each row of $sS$ is a classification problem: which of
#    the $N$ captions is image $i$'s? The right answer is $i$. Each column is the same
#    problem for a caption choosing among the images. The loss averages both:
#
# $$\mathcal{L} = \frac{1}{2}\left[\frac{1}{N}\sum_i -\log\frac{e^{s S_{ii}}}{\sum_j e^{s S_{ij}}}
# + \frac{1}{N}\sum_i -\log\frac{e^{s S_{ii}}}{\sum_j e^{s S_{ji}}}\right]$$

# %% id="loss-steps-code"
def numbers(values: torch.Tensor) -> str:
    """A few values written the way the course language writes them: "0,93, 1,02" in French."""
    return ", ".join(number(x, ".2f") for x in values.tolist())


with torch.no_grad():
    # (N, D) each, not normalised yet; the inputs go to the model's device (a GPU if load_clip
    # chose one) and the features come back to the CPU
    image_features = tiny.model.encode_image(normalize_images(pixels).to(tiny.device)).cpu()
    text_features = tiny.model.encode_text(tiny.tokenizer(captions).to(tiny.device)).cpu()
print(t("1. lengths before normalising:"), numbers(image_features.norm(dim=-1)[:4]), "...")
img, txt = normalize(image_features), normalize(text_features)  # (N, D) each
print(t("   lengths after:"), numbers(img.norm(dim=-1)[:4]), "...")
S = img @ txt.T  # (N, N) cosine similarities
print(t("2. similarity matrix:"), tuple(S.shape), t("diagonal:"), numbers(S.diag()))
scale = tiny.logit_scale
logits = similarity_logits(img, txt, scale)  # (N, N) = scale * S
print(t("3. logit scale s = {s:.1f}, temperature 1/s = {tau:.4f}", s=scale, tau=1 / scale))
targets = torch.arange(N)  # the right answer of row i (and of column i) is i
loss_image_to_text = F.cross_entropy(logits, targets)  # rows: each image picks a caption
loss_text_to_image = F.cross_entropy(logits.T, targets)  # columns: each caption picks an image
loss = (loss_image_to_text + loss_text_to_image) / 2
print(t("4. image->text {a:.4f}, text->image {b:.4f}, loss {c:.4f}",
        a=loss_image_to_text.item(), b=loss_text_to_image.item(), c=loss.item()))
print(t("   a random guess costs log(N) = {v:.4f}", v=torch.log(torch.tensor(float(N))).item()))

# %% [markdown] id="check-open-clip"
# **Self-check: ours equals open_clip's.** open_clip, the library that trains CLIP models
# at scale, has its own `ClipLoss`. Same inputs, same number, to a millionth:

# %% id="check-open-clip-code"
from open_clip.loss import ClipLoss

ours = contrastive_loss(img, txt, scale)
theirs = ClipLoss()(img, txt, torch.tensor(scale))
print(t("ours {a:.6f}, open_clip {b:.6f}", a=ours.item(), b=theirs.item()))
assert abs(ours.item() - theirs.item()) < 1e-6, "our contrastive loss differs from open_clip's ClipLoss"
assert abs(ours.item() - loss.item()) < 1e-6, "the step-by-step loss differs from contrastive_loss"

# %% [markdown] id="train-intro"
# ## Train a tiny CLIP, live
#
# Now train one from scratch. The model is an open_clip `CLIP` with the bundled model's text
# encoder (a small transformer that uses open_clip's own tokenizer) and a faster image encoder,
# `ShapesCNN` (its code is printed below): four convolutions, each followed by BatchNorm.
# It uses the live recipe, `TrainConfig.live()`: images rendered once,
# short captions "a {colour} {shape}", a frozen token table, a high learning rate that decays
# to zero. Every step takes a batch of 128 pairs and one gradient step on the contrastive
# loss, where pairs with the same caption count as matches (`soft_contrastive_loss`;
# Experiment 3 shows why). Left: the loss. Right: the zero-shot accuracy on new test images,
# choosing among the 24 prompts "a {colour} {shape}". With `QUICK = True` it stops as soon as
# that accuracy reaches 95% (the cell prints its time). That 95% is measured on the fixed set
# of evaluation images that decides when to stop, and the first evaluation to cross the bar
# is often a lucky one: on fresh images the same model usually scores a little lower (the
# self-check below measures it). With `QUICK = False` it trains all 1,200 steps, for a more
# accurate model.

# %% id="train"
display(Code(inspect.getsource(ShapesCNN), language="python"))
changes = {"pool": 256, "eval_images": 200} if SMOKE else {} if QUICK else {"stop_at": 0.0}  # full: all steps
recipe = TrainConfig.live(seed=SEED, steps=TRAIN_STEPS, **changes)
live = LiveCurves([  # redrawn in place after each evaluation (drawing costs time)
    Curve("loss", t("Training loss"), t("contrastive loss"), math.log(recipe.batch_size),
          t("random guess, log(batch size)")),
    Curve("eval_acc", t("Colour + shape accuracy on test images"), t("zero-shot accuracy"), 1 / 24,
          t("chance (1/24)"), ylim=(0, 1))], redraw_on="eval_acc")
model, history = train_clip(recipe, callback=live)  # QUICK: stops once the accuracy on the fly reaches 95%
live.close()
print(t("{steps} steps in {s:.0f} s ({ips:.0f} images/s)", steps=len(history["step"]),
        s=history["train_seconds"], ips=history["images_per_second"]))

# %% [markdown] id="learning-check"
# **Self-check: learning happens.** The loss must fall, and the model must name colours
# far better than chance (1 in 6) on images it never saw.

# %% id="learning-check-code" tags=["smoke-skip"]
first, last = sum(history["loss"][:10]) / 10, sum(history["loss"][-10:]) / 10
scores = evaluate(model, n=200 if QUICK else 1000, splits=("test",))["test"]
print(t("loss {a:.2f} -> {b:.2f}; colour accuracy {c:.0%}, colour+shape accuracy {d:.0%}",
        a=first, b=last, c=scores["colour"], d=scores["colour+shape"]))
assert last < first - 0.3, "the loss did not fall: training is broken"
assert scores["colour"] > 0.4, "the trained model names colours no better than chance (1/6)"

# %% [markdown] id="temperature-intro"
# ## Experiment 1: the temperature
#
# The softmax of one row turns similarities into probabilities over the captions. Divide the
# similarities by a temperature $\tau$ before the softmax: a small $\tau$ (a large logit
# scale) makes the distribution sharp, a large one makes it flat. Move the slider.

# %% id="temperature"
import ipywidgets as widgets

row = sim_after[0]  # image 0 against the 8 captions, cosine similarities


def plot_row(temperature: float = 0.07, ax=None) -> None:
    show = ax is None
    if show:
        fig, ax = plt.subplots(figsize=(6, 2.8))
    probs = (row / temperature).softmax(-1)
    ax.bar(range(N), probs, color=["tab:green" if j == 0 else "tab:grey" for j in range(N)])
    ax.set(xlabel=t("caption j"), ylabel=t("probability"), ylim=(0, 1),
           title=t("softmax(similarity / {tau})", tau=number(temperature, ".3g")))
    ax.set_xticks(range(N))
    if show:
        plt.show()


# Round values on a log scale: the readout shows 0.07, as the text says (a log slider snaps to 0.0708).
TEMPERATURES = [0.005, 0.01, 0.02, 0.03, 0.05, 0.07, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0]
slider = widgets.SelectionSlider(options=TEMPERATURES, value=0.07, description=t("temperature"),
                                 style={"description_width": "initial"})
display(widgets.interactive(plot_row, temperature=slider, ax=widgets.fixed(None)))
fig, axes = plt.subplots(1, 3, figsize=(13, 2.8))
for ax, tau in zip(axes, (1.0, 0.07, 0.01)):
    plot_row(tau, ax)
plt.tight_layout()
plt.show()

# At τ = 1 the softmax weighs caption j by exp(row[j]): the right one over a wrong one is
# exp(row[0] - row[j]). The captions are in the course language, so the numbers vary with it.
weight_ratios = (row[0] - row[1:]).exp()  # (N - 1,), one per wrong caption
print(t("At τ = 1 the right caption gets {lo} to {hi} times the weight of each wrong one.",
        lo=number(weight_ratios.min().item(), ".1f"), hi=number(weight_ratios.max().item(), ".1f")))
assert weight_ratios.min() > 1, "at τ = 1 a wrong caption outweighs the right one for image 0"
assert weight_ratios.max() < 5, "at τ = 1 the row is not flat: a wrong caption weighs under 1/5"

# %% [markdown] id="temperature-conclusion"
# At $\tau = 1$ the row is flat: the right caption gets at most a few times the weight of a
# wrong one (the cell above prints how many), so the loss barely separates a good model from
# a bad one; at $\tau = 0.01$ it is nearly one-hot. CLIP learns $\tau$: OpenAI's CLIP models
# ended at the cap, $0.01$ (logit scale 100). The tiny CLIP learned a gentler one: step 3
# above printed its logit scale.

# %% [markdown] id="negatives-intro"
# ## Optional (deep dive): Experiment 2, batch size and the number of negatives
#
# With $N$ pairs in a batch, every image must beat $N - 1$ wrong captions (its negatives).
# More negatives make the task harder and the signal richer. Below, the trained tiny CLIP
# picks captions in batches of growing size: the accuracy of "find your caption" falls and
# the loss grows, while a random guess would cost $\log N$.

# %% id="negatives"
pool_n = 128 if QUICK else 512
neg_images, neg_attrs = data.render_batch(pool_n, seed=SEED + 1, split="test", as_tensor=True)
neg_I = embed_images(tiny, neg_images)  # (pool_n, D)
neg_T = embed_texts(tiny, tokenizer, [a["caption"] for a in neg_attrs])  # (pool_n, D)
sizes, accuracies, losses = [n for n in (2, 4, 8, 16, 32, 64, 128, 256, 512) if n <= pool_n], [], []
for n in sizes:
    acc, lo = [], []
    for start in range(0, pool_n, n):  # split the pool of pairs into batches of n
        i_b, t_b = neg_I[start : start + n], neg_T[start : start + n]
        acc.append(((i_b @ t_b.T).argmax(-1) == torch.arange(n)).float().mean().item())
        lo.append(contrastive_loss(i_b, t_b, tiny.logit_scale).item())
    accuracies.append(sum(acc) / len(acc))
    losses.append(sum(lo) / len(lo))

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
plot_curves(sizes, {"": accuracies}, ax1, t("Finding your caption among N"), t("batch size N"),
            t("image -> caption accuracy"), xscale="log", ylim=(0, 1.05))
plot_curves(sizes, {t("tiny CLIP"): losses}, ax2, t("Loss against batch size"), t("batch size N"),
            t("contrastive loss"), ([math.log(n) for n in sizes], t("random guess, log N")), xscale="log")
plt.tight_layout()
plt.show()
assert accuracies[-1] < accuracies[0] and losses[-1] > losses[0], "more negatives should make the task harder"

# %% [markdown] id="negatives-conclusion"
# This measures one trained model: more candidates make the same task harder (the accuracy
# falls, the loss rises), because more of them differ from the right caption by one word. It
# does not measure what *training* with a bigger batch gives. CLIP's authors trained with
# 32,768 pairs per batch so that every step shows each image many near-miss captions; the
# SigLIP paper (see Experiment 5) measures how the training batch size changes the result.

# %% [markdown] id="duplicates-intro"
# ## Experiment 3: duplicate captions are false negatives
#
# The loss assumes caption $j$ is wrong for image $i$ whenever $j \ne i$. If two images of
# the batch are both "a red circle", each is pushed *away* from a caption that describes
# it perfectly: a **false negative**. We measure it: 20 images, each caption repeated $k$
# times ($20/k$ different captions, from the 20 colour-shape pairs seen in training). Even a
# perfect model cannot tell the $k$ copies apart, so the loss cannot go below $\log k$.

# %% id="duplicates"
prompts, pairs_all = data.class_prompts()  # the 24 prompts "a {colour} {shape}"
by_pair = {}
dup_images, dup_attrs = data.render_batch(600, seed=SEED + 2, split="all", as_tensor=True)
for img, a in zip(dup_images, dup_attrs):
    by_pair.setdefault((a["colour"], a["shape"]), []).append(img)
prompt_emb = dict(zip(pairs_all, embed_texts(tiny, tokenizer, prompts)))
ks, dup_losses = [1, 2, 4, 5, 10], []
for k in ks:
    batch_pairs = [p for p in pairs_all if p not in data.HELD_OUT][: 20 // k]  # 20/k captions...
    imgs = torch.stack([by_pair[p][c] for p in batch_pairs for c in range(k)])  # ...k images each
    texts = torch.stack([prompt_emb[p] for p in batch_pairs for _ in range(k)])
    dup_losses.append(contrastive_loss(embed_images(tiny, imgs), texts, tiny.logit_scale).item())

plot_curves(ks, {t("tiny CLIP, measured"): dup_losses}, title=t("Duplicates raise the loss"),
            xlabel=t("copies k of each caption in a batch of 20"), ylabel=t("contrastive loss"),
            reference=([math.log(k) for k in ks], t("floor: log k")))
plt.show()
print(t("loss with unique captions {a:.2f}, with every caption {k} times {b:.2f}", a=dup_losses[0], k=ks[-1],
        b=dup_losses[-1]))
assert all(lo >= torch.log(torch.tensor(float(k))).item() - 1e-4 for k, lo in zip(ks, dup_losses)), \
    "a loss fell below its log k floor: the duplicates were not counted right"
assert dup_losses[-1] > dup_losses[0] + 1.0, "duplicates should raise the loss"

# %% [markdown] id="duplicates-conclusion"
# The measured loss climbs with $k$ and stays above $\log k$: part of the loss of a batch
# with duplicates is not an error of the model but a wrong label. With 400 million varied
# web captions, exact duplicates are rare; in our small world they are common, which is
# one reason the tiny CLIP's training loss never gets near zero.

# %% [markdown] id="composition-intro"
# ## Experiment 4: compositional generalisation
#
# The tiny CLIP never saw four colour-shape pairs during training (`data.HELD_OUT`): no red
# star, no green square, no blue triangle, no purple circle. It saw red things and stars.
# Does it recognise a red star?

# %% id="composition"
print(t("held-out pairs:"), ", ".join(f"{c} {s}" for c, s in data.HELD_OUT))
comp = evaluate(tiny, n=200 if QUICK else 1000, splits=("test", "heldout"))
keys = ["colour", "shape", "colour+shape"]
fig, ax = plt.subplots(figsize=(8.5, 3.4))
width = 0.38
for k, (split, label) in enumerate((("test", t("pairs seen in training")), ("heldout", t("held-out pairs")))):
    ax.bar([x + k * width for x in range(3)], [comp[split][key] for key in keys], width, label=label)
ax.set_xticks([x + width / 2 for x in range(3)], [t(key) for key in keys])
ax.set(xlabel=t("what is scored"), ylabel=t("zero-shot accuracy"), ylim=(0, 1.05),
       title=t("Seen and never-seen colour-shape pairs"))
ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=9)  # beside the bars, never on them
plt.tight_layout()
plt.show()
print(t("colour+shape accuracy: {a:.0%} on seen pairs, {b:.0%} on held-out pairs",
        a=comp["test"]["colour+shape"], b=comp["heldout"]["colour+shape"]))
assert comp["heldout"]["colour"] > 0.9, "colour should carry over to held-out pairs"
assert comp["heldout"]["colour+shape"] > 4 / 24, "held-out pairs should beat chance by far"

# %% [markdown] id="composition-conclusion"
# Colours carry over to the held-out pairs almost perfectly: the model learned "red" as a
# property of any shape. Shapes carry over much less well: part of what it learned about a
# star is tied to the colours it saw stars in, and a red star is often taken for a red
# shape it did see. That is the honest result, and real CLIP models share the weakness:
# they are known to be poor at *composition* (which object has which colour). Captions
# that name one attribute alone ("a star") help; `utils.tinyclip` mixes some in.

# %% [markdown] id="siglip-intro"
# ## Optional (deep dive): Experiment 5, the sigmoid loss (SigLIP)
#
# The softmax of a row needs every caption of the batch: with the batch spread over many
# GPUs, all of them must see the whole matrix. SigLIP (Zhai et al. 2023) asks instead one
# yes/no question per cell of the matrix: "do image $i$ and caption $j$ belong together?",
# with a sigmoid, a learned scale $s$ and a learned bias $b$:
#
# $$\mathcal{L} = -\frac{1}{N}\sum_{i,j} \log \sigma\big(z_{ij}\,(s\,S_{ij} + b)\big),
# \qquad z_{ij} = +1 \text{ if } i = j, \text{ else } -1$$
#
# Below, two small CLIPs start from the same random weights and see the same batches; one
# learns with `contrastive_loss`, the other with `siglip_loss`. Only $N$ of the $N^2$ cells
# are pairs, so $b$ starts at $-\log N$: before any learning, the model says "no" to most
# cells, as it should. (The paper starts at $b = -10$ for batches of thousands.)

# %% id="siglip" tags=["smoke-skip"]
from utils.losses import siglip_loss
from utils.tinyclip import TINY_CONFIG
from utils.train import FitConfig, fit

display(Code(inspect.getsource(siglip_loss), language="python"))
SIG_STEPS, SIG_BATCH = (80, 16) if QUICK else (600, 64)
SIG_CONFIG = {**TINY_CONFIG, "vision_cfg": {**TINY_CONFIG["vision_cfg"], "image_size": 32, "width": 16},
              "text_cfg": {**TINY_CONFIG["text_cfg"], "context_length": 8}}  # a fast variant: 32 px, 8 tokens
sig_tokenizer = get_tokenizer(SIG_CONFIG)


def sig_batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The batch of a step, the same for both losses: images (B, 3, 32, 32) and tokens."""
    images, attrs = data.render_batch(SIG_BATCH, seed=SEED * 1000 + step, size=32, split="train",
                                      as_tensor=True)
    return normalize_images(images), sig_tokenizer([data.caption(a) for a in attrs])


def train_with(loss_name: str):
    """A fresh small CLIP (seed SEED) trained with one loss on sig_batch(0...): (model, losses)."""
    clip_model = build_model(SIG_CONFIG, seed=SEED)
    clip_model.token_embedding.weight.requires_grad_(False)  # as the live recipe: faster
    bias = torch.nn.Parameter(torch.tensor(-math.log(SIG_BATCH)))  # SigLIP's learned b

    def loss_fn(step: int) -> torch.Tensor:
        out = clip_model(*sig_batch(step))
        img_f, txt_f, s = out["image_features"], out["text_features"], out["logit_scale"]
        if loss_name == "sigmoid":
            return siglip_loss(img_f, txt_f, s, bias)
        return contrastive_loss(img_f, txt_f, s)

    params = [p for p in clip_model.parameters() if p.requires_grad] + [bias]
    schedule = FitConfig(SIG_STEPS, 3e-3, "linear", warmup=5, betas=(0.9, 0.98), eps=1e-6, grad_clip=1.0)
    return clip_model, fit(clip_model, loss_fn, schedule, loss_name, params, progress=False)["loss"]


sig_names = {"softmax": t("softmax (CLIP)"), "sigmoid": t("sigmoid (SigLIP)")}
sig_runs = {name: train_with(name) for name in sig_names}
sig_scores = {name: evaluate(m, n=200 if QUICK else 1000, splits=("test",))["test"]
              for name, (m, _) in sig_runs.items()}
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
plot_curves(range(SIG_STEPS), {sig_names[name]: losses for name, (_, losses) in sig_runs.items()},
            ax1, t("Same model, same batches, two losses"), t("step"), t("training loss"))
ax2.bar(list(sig_names.values()), [sig_scores[name]["colour"] for name in sig_names],
        color=["tab:blue", "tab:orange"])
ax2.axhline(1 / 6, color="grey", ls="--", label=t("chance (1/6)"))
ax2.set(xlabel=t("loss used in training"), ylabel=t("colour accuracy on test images"), ylim=(0, 1),
        title=t("After {n} steps", n=SIG_STEPS))
ax2.legend(fontsize=8)
plt.tight_layout()
plt.show()
for name in sig_runs:
    print(t("{name}: colour accuracy {c:.0%}, colour+shape accuracy {d:.0%}", name=sig_names[name],
            c=sig_scores[name]["colour"], d=sig_scores[name]["colour+shape"]))
sig_losses = sig_runs["sigmoid"][1]
assert sum(sig_losses[-10:]) / 10 < sum(sig_losses[:10]) / 10 - 0.5, "the sigmoid loss did not fall"
assert min(score["colour"] for score in sig_scores.values()) > 0.25, \
    "a loss left its model near chance on colour"

# %% [markdown] id="siglip-conclusion"
# Both losses teach the model to match pictures and words, from the same batches. Their
# values are not comparable (the sigmoid loss adds $N^2$ yes/no terms and divides by $N$,
# the softmax loss averages $2N$ choices): compare the accuracies. A run this short and this
# small says little about which loss is better. The SigLIP paper compares them over long runs
# with batches of thousands: the sigmoid loss does better at the smaller batch sizes, about as
# well at 32,768, and needs no softmax over the whole batch, which saves memory and
# communication between GPUs. `QUICK = False` trains longer, on larger batches.

# %% [markdown] id="languages-intro"
# ## Optional (deep dive): one embedding space, six languages
#
# The bundled tiny CLIP first learned English; then its text tower learned French, Spanish,
# Italian, Portuguese and Chinese while the image tower stayed frozen (`course_tools/languages.py`,
# *locked-image tuning*). Below, six labels and their translations, embedded by the text
# encoder and projected on the two main axes: each meaning forms one cluster, whatever the
# language. Which models read which languages: the tiny CLIP reads all six course languages;
# OpenAI's and LAION's ViT-B-32 read English only; open_clip's `xlm-roberta-base-ViT-B-32`
# (`laion5b_s13b_b90k`) reads many languages, once downloaded.

# %% id="translations-meet"
from utils.multilingual import plot_translations, translation_accuracy

plot_translations(tiny)
plt.tight_layout()
plt.show()
nearest = {lang: translation_accuracy(tiny, lang) for lang in ("fr", "es", "it", "pt", "zh")}
print(t("labels whose nearest English label is their translation:"),
      ", ".join(f"{lang} {number(acc, '.0%')}" for lang, acc in nearest.items()))
assert min(nearest.values()) >= 0.9, f"a translation is not nearest to its English label: {nearest}"

# %% [markdown] id="scale-intro"
# ## Optional (deep dive): how CLIP trains at scale
#
# The original CLIP saw 400 million image-caption pairs, in batches of 32,768 spread over
# hundreds of GPUs. Each GPU encodes only its own share of the batch, say 128 pairs. But the
# loss needs the **whole** $32768 \times 32768$ similarity matrix, so every GPU sends its
# embeddings to all the others (an *all-gather*): each GPU then holds all 32,768 image and
# text vectors, computes the same loss, and gets gradients for its own 128 pairs. Only the
# embeddings travel (32,768 x 512 numbers), never the images.
#
# `utils.losses.distributed_contrastive_loss` does this with `torch.distributed`. The cell
# below starts 2 processes on this CPU (the `gloo` backend), gives each process 4 of 8 random
# embedding pairs (16 numbers each), and compares their loss and gradients with one process
# holding all 8 pairs.

# %% id="scale" tags=["smoke-skip"]
result = check_distributed(world_size=2, n_per_process=4)
print(t("one process, whole batch: {a:.6f}", a=result["single_loss"]))
print(t("two processes, all-gather: {b}", b=", ".join(number(x, ".6f")
                                                         for x in result["process_losses"][::2])))
print(t("largest gradient difference: {g:.1e}", g=result["max_grad_diff"]))
assert result["max_loss_diff"] < 1e-6 and result["max_grad_diff"] < 1e-6, \
    "the distributed loss does not match the single-process loss"

# %% [markdown] id="exercise-1"
# ## Exercises
#
# **Exercise 1.** Write the image-to-text half of the loss without `F.cross_entropy`: for
# each row $i$ of `logits`, take the log-softmax over the row and keep the entry of the
# right caption, then average minus those over the rows.

# %% id="exercise-1-solution" tags=["solution"]
def image_to_text_loss(logits: torch.Tensor) -> torch.Tensor:
    """The image-to-text cross-entropy of a (N, N) logit matrix, without F.cross_entropy."""
    ### BEGIN SOLUTION
    log_probs = logits.log_softmax(dim=1)  # (N, N): each row sums to 1 after exp
    rows = torch.arange(len(logits))
    return -log_probs[rows, rows].mean()
    ### END SOLUTION


# %% id="exercise-1-check"
from utils.exercises import exercise_check

with exercise_check(1):
    assert torch.allclose(image_to_text_loss(logits), F.cross_entropy(logits, torch.arange(N)), atol=1e-6), \
        t("image_to_text_loss differs from F.cross_entropy(logits, arange(N)): check the sign and the mean")
print(t("Exercise 1 passed."))

# %% [markdown] id="exercise-2"
# **Exercise 2.** Predict, then compute: with the similarities `row` of image 0 (above),
# what is the largest probability of the softmax at temperature 0.01, and at temperature
# 1? First write your guesses in the cell below (they are not graded), then compute the two
# probabilities and store them in `p_cold` and `p_hot`.

# %% id="exercise-2-guess"
my_guess_cold, my_guess_hot = 0.5, 0.5  # your prediction, before you compute: change these numbers

# %% id="exercise-2-solution" tags=["solution"]
### BEGIN SOLUTION
p_cold = (row / 0.01).softmax(-1).max().item()
p_hot = (row / 1.0).softmax(-1).max().item()
### END SOLUTION

# %% id="exercise-2-check" tags=["points-2"]
from utils.exercises import same_peaks

with exercise_check(2):
    print(t("temperature 0.01: {a:.3f}; temperature 1: {b:.3f}", a=p_cold, b=p_hot))
    assert 0 < p_hot <= 1 and 0 < p_cold <= 1, t("p_cold and p_hot are probabilities: numbers in (0, 1]")
    assert same_peaks(row, (0.01, 1.0), (p_cold, p_hot)), \
        t("not the softmax of row / temperature: divide the similarities, then take the largest probability")

# %% [markdown] id="exercise-3"
# **Exercise 3.** CLIP trained with 32,768 pairs per batch on 256 GPUs. How many pairs does
# each GPU encode (`per_gpu`), and how many negatives does each image have in the loss
# (`negatives`)?

# %% id="exercise-3-solution" tags=["solution"]
### BEGIN SOLUTION
per_gpu = 32768 // 256
negatives = 32768 - 1
### END SOLUTION

# %% id="exercise-3-check"
from utils.exercises import same_answer

with exercise_check(3):
    assert same_answer(per_gpu, "2747b7c71856"), t("per_gpu: each GPU encodes its share of the batch")
    assert same_answer(negatives, "d8442baf6f43"), \
        t("negatives: after the all-gather, which captions of the global batch are wrong for an image?")
print(t("Exercise 3 passed."))

# %% [markdown] id="final-check"
# ## Self-check: the trained diagonal
#
# The tiny CLIP must match each image of our first batch with its own caption, with a clear
# margin between the true pairs (diagonal) and the wrong ones. The last line computes the
# same loss with the model chosen by `MODEL` (the pretrained CLIP when available).

# %% id="final-check-code"
diag = sim_after.diag()
off = sim_after[~torch.eye(N, dtype=torch.bool)]
print(t("mean similarity: true pairs {a:.2f}, wrong pairs {b:.2f}", a=diag.mean().item(), b=off.mean().item()))
assert (sim_after.argmax(-1) == torch.arange(N)).sum() >= N - 1, "the tiny CLIP mismatched its batch"
assert diag.mean() - off.mean() > 0.2, "the trained diagonal does not stand out"
other = tiny if MODEL == "tiny-shapes" else load_clip(MODEL)
pil_images = [Image.fromarray(pool[i]) for i in chosen]
other_loss = contrastive_loss(other.encode_images(pil_images), other.encode_texts(captions), other.logit_scale)
print(t("{name}: loss {v:.3f} on this batch (random guess: {r:.3f})", name=other.name, v=other_loss.item(),
        r=torch.log(torch.tensor(float(N))).item()))

# %% [markdown] id="quiz"
# ## Quiz
#
# Check what you learned.

# %% id="quiz-show"
from utils.quiz import show

show("01-contrastive-learning", "post", LANG)
