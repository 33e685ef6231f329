"""Draw the lesson's figures (matplotlib only) into lessons/figures/*.png.

    python lessons/figures/draw_figures.py            # rewrite every figure
    python lessons/figures/draw_figures.py --out DIR  # somewhere else (the tests do this)

Every figure is a diagram: the numbers in the similarity matrix and the points in the
vector-quantisation plot are illustrations drawn from a fixed seed, not measurements.
The labels are English words and formulas, so one set of figures serves every language.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle, FancyArrowPatch, FancyBboxPatch, Polygon, Rectangle  # noqa: E402

HERE = Path(__file__).resolve().parent
IMAGE, TEXT, LATENT, LOSS, GREY = "#f4a261", "#6fa8dc", "#b4a7d6", "#e06666", "#d9d9d9"
SHAPE_COLOURS = {"red": "#d62728", "green": "#2ca02c", "blue": "#1f77b4", "yellow": "#e6b800",
                 "purple": "#9467bd", "orange": "#ff7f0e"}


def box(ax, x: float, y: float, w: float, h: float, text: str, color: str, size: int = 11) -> None:
    """A rounded box centred on (x, y) with a label."""
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02,rounding_size=0.08",
                                facecolor=color, edgecolor="#333333", linewidth=1.2))
    ax.text(x, y, text, ha="center", va="center", fontsize=size)


def arrow(ax, start, end, text: str = "", color: str = "#333333", style: str = "-|>",
          dashed: bool = False, rad: float = 0.0, text_offset=(0, 0.12)) -> None:
    """An arrow from start to end, optionally labelled at its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=16, color=color,
                                 linewidth=1.6, linestyle="--" if dashed else "-",
                                 connectionstyle=f"arc3,rad={rad}"))
    if text:
        mx, my = (start[0] + end[0]) / 2 + text_offset[0], (start[1] + end[1]) / 2 + text_offset[1]
        ax.text(mx, my, text, ha="center", va="center", fontsize=9, color=color)


def shape_icon(ax, x: float, y: float, shape: str, colour: str, r: float = 0.3) -> None:
    """A shapes-world picture: a coloured shape on a light square."""
    ax.add_patch(Rectangle((x - r, y - r), 2 * r, 2 * r, facecolor="#f7f7f7", edgecolor="#999999"))
    c = SHAPE_COLOURS[colour]
    if shape == "circle":
        ax.add_patch(Circle((x, y), 0.65 * r, color=c))
    elif shape == "square":
        ax.add_patch(Rectangle((x - 0.6 * r, y - 0.6 * r), 1.2 * r, 1.2 * r, color=c))
    else:  # triangle
        ax.add_patch(Polygon([(x - 0.7 * r, y - 0.6 * r), (x + 0.7 * r, y - 0.6 * r), (x, y + 0.7 * r)],
                             color=c))


def canvas(width: float, height: float, xlim, ylim):
    fig, ax = plt.subplots(figsize=(width, height))
    ax.set_xlim(*xlim)
    ax.set_ylim(*ylim)
    ax.set_aspect("equal")
    ax.axis("off")
    return fig, ax


# ------------------------------------------------------------------ figures


def clip_architecture():
    fig, ax = canvas(10, 4.4, (0, 12), (0, 5.3))
    ax.set_title("CLIP: two encoders, one embedding space", fontsize=14)
    shape_icon(ax, 0.9, 3.8, "circle", "red", r=0.55)
    ax.text(0.9, 2.95, "image x", ha="center", fontsize=10)
    ax.text(0.9, 1.2, '"a red circle"', ha="center", va="center", fontsize=10,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#999999"))
    ax.text(0.9, 0.55, "text y", ha="center", fontsize=10)
    box(ax, 3.4, 3.8, 2.3, 0.9, "image encoder f\n(ResNet or ViT)", IMAGE, 10)
    box(ax, 3.4, 1.2, 2.3, 0.9, "text encoder g\n(Transformer)", TEXT, 10)
    box(ax, 6.0, 3.8, 1.7, 0.8, "projection\n+ L2 norm", IMAGE, 9)
    box(ax, 6.0, 1.2, 1.7, 0.8, "projection\n+ L2 norm", TEXT, 9)
    arrow(ax, (1.55, 3.8), (2.22, 3.8))
    arrow(ax, (1.85, 1.2), (2.22, 1.2))
    arrow(ax, (4.58, 3.8), (5.13, 3.8))
    arrow(ax, (4.58, 1.2), (5.13, 1.2))
    # the embedding space: a unit circle with the two vectors
    cx, cy, r = 9.9, 2.5, 1.7
    ax.add_patch(Circle((cx, cy), r, fill=False, edgecolor="#666666", linestyle=":"))
    ax.text(cx, cy + r + 0.3, "shared space (unit sphere in D dims)", ha="center", fontsize=9)
    for angle, color, name in [(62, IMAGE, "u"), (40, TEXT, "v")]:
        a = np.deg2rad(angle)
        end = (cx + r * np.cos(a), cy + r * np.sin(a))
        ax.add_patch(FancyArrowPatch((cx, cy), end, arrowstyle="-|>", mutation_scale=14, color=color,
                                     linewidth=2.2))
        ax.text(end[0] + 0.15 * np.cos(a), end[1] + 0.2 * np.sin(a), name, fontsize=12, color="#333333")
    ax.text(cx + 0.55, cy + 0.3, "θ", fontsize=12)
    ax.text(cx, cy - r - 0.45, r"sim$(x, y) = u^{T} v = \cos\theta$", ha="center", fontsize=12)
    arrow(ax, (6.87, 3.8), (8.7, 3.5), r"$u = f(x)\,/\,\Vert f(x)\Vert$", text_offset=(0, 0.3))
    arrow(ax, (6.87, 1.2), (8.6, 2.0), r"$v = g(y)\,/\,\Vert g(y)\Vert$", text_offset=(0.2, -0.55))
    return fig


def similarity_matrix():
    captions = ["a red circle", "a blue square", "a green triangle", "a red square", "a blue circle",
                "a yellow triangle"]
    shapes = [c.split()[-1] for c in captions]
    colours = [c.split()[1] for c in captions]
    rng = np.random.default_rng(0)
    n = len(captions)
    sim = rng.uniform(0.02, 0.12, (n, n))
    for i in range(n):
        for j in range(n):  # sharing a colour or a shape makes a caption partly right
            sim[i, j] += 0.06 * (shapes[i] == shapes[j]) + 0.06 * (colours[i] == colours[j])
    sim[np.arange(n), np.arange(n)] = rng.uniform(0.28, 0.34, n)

    fig = plt.figure(figsize=(10, 6.2))
    ax = fig.add_axes([0.2, 0.1, 0.5, 0.72])
    ax.imshow(sim, cmap="Blues", vmin=0, vmax=0.36)
    for i in range(n):
        for j in range(n):
            ax.text(j, i, f"{sim[i, j]:.2f}", ha="center", va="center", fontsize=9,
                    color="white" if sim[i, j] > 0.25 else "#222222")
        ax.add_patch(Rectangle((i - 0.5, i - 0.5), 1, 1, fill=False, edgecolor=LOSS, linewidth=2))
    ax.set_xticks(range(n), captions, rotation=35, ha="left", fontsize=9)
    ax.xaxis.tick_top()
    ax.set_yticks(range(n), [""] * n)
    ax.set_xlabel(r"texts $v_1 \dots v_N$", fontsize=11)
    for i in range(n):  # the images, drawn as shapes-world pictures left of their row
        icon = fig.add_axes([0.13, 0.82 - (i + 1) * 0.72 / n + 0.01, 0.07, 0.72 / n - 0.02])
        icon.set_xlim(-0.5, 0.5)
        icon.set_ylim(-0.5, 0.5)
        icon.axis("off")
        shape_icon(icon, 0, 0, shapes[i], colours[i], r=0.45)
    fig.suptitle(r"One batch: the $N \times N$ cosine similarities $u_i^{T} v_j$ (illustration)", fontsize=13, y=0.99)
    fig.text(0.165, 0.05, r"images $u_1 \dots u_N$", ha="center", fontsize=11)
    side = fig.add_axes([0.72, 0.1, 0.27, 0.72])
    side.axis("off")
    side.text(0.0, 0.92, "true pairs on the diagonal", color=LOSS, fontsize=11, va="top")
    side.text(0.0, 0.72, "each row: softmax over texts\n→ image-to-text loss", fontsize=10, va="top")
    side.text(0.0, 0.5, "each column: softmax over images\n→ text-to-image loss", fontsize=10, va="top")
    side.text(0.0, 0.28, "logits $\\ell_{ij} = s\\, u_i^{T} v_j$,  $s = e^{t}$\nloss = mean of the two\ncross-entropies",
              fontsize=10, va="top")
    return fig


def zero_shot():
    fig, ax = canvas(10, 4.2, (0, 12), (0, 5))
    ax.set_title("Zero-shot classification: prompts become classifier weights", fontsize=13)
    classes = ["circle", "square", "triangle"]
    for k, name in enumerate(classes):
        y = 4.0 - k * 0.8
        ax.text(1.4, y, f'"a photo of a {name}"', ha="center", va="center", fontsize=9,
                bbox=dict(boxstyle="round", facecolor="white", edgecolor="#999999"))
        arrow(ax, (2.75, y), (3.5, 3.2 + (1 - k) * 0.3))
    box(ax, 4.4, 3.2, 1.6, 0.9, "text\nencoder", TEXT, 10)
    for k in range(3):
        box(ax, 6.3, 4.0 - k * 0.8, 1.0, 0.55, f"$w_{k + 1}$", TEXT, 11)
        arrow(ax, (5.22, 3.2), (5.78, 4.0 - k * 0.8))
    shape_icon(ax, 1.4, 1.0, "triangle", "green", r=0.5)
    box(ax, 4.4, 1.0, 1.6, 0.9, "image\nencoder", IMAGE, 10)
    box(ax, 6.3, 1.0, 1.0, 0.55, "$u$", IMAGE, 11)
    arrow(ax, (1.95, 1.0), (3.58, 1.0))
    arrow(ax, (5.22, 1.0), (5.78, 1.0))
    ax.text(7.9, 2.2, r"softmax$_k(s\, u^{T} w_k)$", fontsize=11, ha="center")
    arrow(ax, (6.85, 3.2), (8.4, 2.8))
    arrow(ax, (6.85, 1.0), (8.4, 1.6))
    probs = [0.07, 0.11, 0.82]
    bars = fig.add_axes([0.74, 0.17, 0.22, 0.5])
    bars.barh(classes[::-1], probs[::-1], color=[IMAGE, TEXT, TEXT])  # triangle wins
    bars.set_xlim(0, 1)
    bars.set_xlabel("p(class | image)")
    bars.set_title("prediction (illustration)", fontsize=9)
    for side in ("top", "right"):
        bars.spines[side].set_visible(False)
    return fig


def vector_quantisation():
    rng = np.random.default_rng(3)
    codebook = np.array([[-0.9, -0.5], [0.6, 0.15], [-0.8, 0.3], [0.0, -0.75], [0.75, -0.8],
                         [-0.15, 0.2], [0.2, 0.8], [0.9, 1.0]])
    z_e = np.clip(rng.normal(0, 0.55, (14, 2)), -1.45, 1.45)
    fig, (ax, grid_ax) = plt.subplots(1, 2, figsize=(10, 4.6), gridspec_kw={"width_ratios": [1.35, 1]})
    xs = np.linspace(-1.6, 1.6, 300)
    gx, gy = np.meshgrid(xs, xs)
    points = np.stack([gx.ravel(), gy.ravel()], 1)
    nearest = np.argmin(((points[:, None, :] - codebook[None]) ** 2).sum(-1), 1).reshape(gx.shape)
    ax.imshow(nearest, extent=(-1.6, 1.6, -1.6, 1.6), origin="lower", cmap="Pastel2", alpha=0.8)
    codes = np.argmin(((z_e[:, None, :] - codebook[None]) ** 2).sum(-1), 1)
    for p, k in zip(z_e, codes):
        ax.annotate("", codebook[k], p, arrowprops=dict(arrowstyle="->", color="#555555", lw=1))
    ax.scatter(z_e[:, 0], z_e[:, 1], marker="x", color="#333333", s=40, label="encoder outputs z_e")
    ax.scatter(codebook[:, 0], codebook[:, 1], marker="o", s=90, color=LOSS, edgecolor="black",
               label="codebook entries e_k", zorder=3)
    for k, (x, y) in enumerate(codebook):
        ax.text(x + 0.06, y + 0.08, str(k), fontsize=11)
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-1.6, 1.6)
    ax.set_xlabel("latent dimension 1")
    ax.set_ylabel("latent dimension 2")
    ax.set_title("Each vector snaps to its nearest code\n(2 of d dimensions, K = 8)", fontsize=11)
    ax.legend(loc="lower left", fontsize=8, framealpha=0.9)
    tokens = rng.integers(0, 8, (4, 4))
    grid_ax.imshow(tokens, cmap="Pastel2", vmin=0, vmax=7)
    for i in range(4):
        for j in range(4):
            grid_ax.text(j, i, str(tokens[i, j]), ha="center", va="center", fontsize=14)
    grid_ax.set_xticks([])
    grid_ax.set_yticks([])
    grid_ax.set_title("The image as an h × w grid of tokens\n(codebook indices)", fontsize=11)
    fig.suptitle("Vector quantisation (illustration)", fontsize=13)
    fig.tight_layout()
    return fig


def generation_loop():
    fig, ax = canvas(11, 5.2, (0, 13), (0, 6.2))
    ax.set_title("VQGAN+CLIP: optimise the latent until CLIP agrees with the prompt", fontsize=13)
    box(ax, 1.4, 4.6, 2.2, 0.9, "latent grid z\n(the only thing\nthat changes)", LATENT, 9)
    box(ax, 4.3, 4.6, 2.0, 0.9, "quantise\n(straight-through)", LATENT, 9)
    box(ax, 7.1, 4.6, 2.0, 0.9, "VQGAN\ndecoder", LATENT, 10)
    shape_icon(ax, 9.6, 4.6, "circle", "orange", r=0.5)
    ax.text(9.6, 3.9, "image", ha="center", fontsize=9)
    box(ax, 11.6, 3.2, 2.2, 1.0, "cutouts +\naugmentations", IMAGE, 9)
    box(ax, 11.6, 1.3, 2.2, 0.9, "CLIP image\nencoder", IMAGE, 10)
    box(ax, 7.1, 1.3, 2.6, 1.0, "spherical distance\n" + r"$d(u, v) = \theta^2/2$", LOSS, 10)
    box(ax, 3.0, 1.3, 2.2, 0.9, "CLIP text\nencoder", TEXT, 10)
    ax.text(3.0, 0.25, '"a sunset over the sea"', ha="center", fontsize=9,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#999999"))
    arrow(ax, (2.5, 4.6), (3.3, 4.6))
    arrow(ax, (5.3, 4.6), (6.1, 4.6))
    arrow(ax, (8.1, 4.6), (9.1, 4.6))
    arrow(ax, (10.1, 4.4), (11.2, 3.7))
    arrow(ax, (11.6, 2.7), (11.6, 1.75), "n views", text_offset=(0.55, 0))
    arrow(ax, (10.5, 1.3), (8.4, 1.3), "u (each view)", text_offset=(0, 0.22))
    arrow(ax, (4.1, 1.3), (5.8, 1.3), "v", text_offset=(0, 0.22))
    arrow(ax, (3.0, 0.55), (3.0, 0.85))
    arrow(ax, (7.1, 1.8), (1.6, 4.15), color=LOSS, dashed=True, rad=-0.25)
    ax.text(2.9, 2.45, "gradient of the loss\n→ Adam step on z", ha="center", fontsize=9, color=LOSS)
    ax.text(6.5, 5.75, "CLIP and the decoder stay frozen", ha="center", fontsize=9, style="italic")
    return fig


def token_stream():
    fig, ax = canvas(12, 4.4, (0, 14.5), (0, 5.2))
    ax.set_title("DALL-E: one stream of text tokens and image tokens", fontsize=13)
    text_tokens = ["a", "red", "circle", "on", "a", "…", "pad"]
    image_tokens = ["812", "77", "5120", "77", "…", "3391", "140"]
    x = 0.3
    for tok in text_tokens:
        ax.add_patch(Rectangle((x, 3.0), 0.9, 0.8, facecolor=TEXT, edgecolor="#333333"))
        ax.text(x + 0.45, 3.4, tok, ha="center", va="center", fontsize=9)
        x += 0.95
    ax.text(0.3 + 3.3, 4.1, "up to 256 BPE text tokens (vocabulary 16,384)", ha="center", fontsize=10)
    x += 0.3
    start_image = x
    for tok in image_tokens:
        ax.add_patch(Rectangle((x, 3.0), 0.9, 0.8, facecolor=IMAGE, edgecolor="#333333"))
        ax.text(x + 0.45, 3.4, tok, ha="center", va="center", fontsize=9)
        x += 0.95
    ax.text((start_image + x) / 2, 4.1, "32 × 32 = 1,024 image tokens (dVAE codes, 8,192)",
            ha="center", fontsize=10)
    for k in range(len(text_tokens) + len(image_tokens) - 1):  # next-token prediction
        left = 0.3 + k * 0.95 + (0.3 if k >= len(text_tokens) else 0)
        right = 0.3 + (k + 1) * 0.95 + (0.3 if k + 1 >= len(text_tokens) else 0)
        ax.add_patch(FancyArrowPatch((left + 0.45, 2.95), (right + 0.45, 2.95), arrowstyle="-|>",
                                     mutation_scale=9, color="#777777", connectionstyle="arc3,rad=0.6"))
    ax.text(7.2, 1.95, "a transformer predicts each token from all the tokens before it "
            "(1,280 positions, 12 billion parameters)", ha="center", fontsize=10)
    ax.text(7.2, 1.35, "to generate: feed the caption, sample the 1,024 image tokens one by one, "
            "decode them with the dVAE", ha="center", fontsize=10)
    ax.text(7.2, 0.6, "then rerank the samples with CLIP and keep the best", ha="center", fontsize=10,
            color=LOSS)
    return fig


def unclip():
    fig, ax = canvas(12, 3.8, (0, 14.5), (0, 4.4))
    ax.set_title("DALL-E 2 (unCLIP): a prior and a decoder around CLIP's embedding space", fontsize=13)
    ax.text(0.9, 2.6, '"a corgi\nplaying a\ntrumpet"', ha="center", va="center", fontsize=9,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#999999"))
    box(ax, 3.0, 2.6, 1.8, 0.9, "CLIP text\nencoder", TEXT, 9)
    box(ax, 5.3, 2.6, 1.4, 0.9, "prior", LATENT, 11)
    box(ax, 7.6, 2.6, 1.8, 0.9, "CLIP image\nembedding", IMAGE, 9)
    box(ax, 10.0, 2.6, 1.8, 0.9, "diffusion\ndecoder\n64×64", LOSS, 9)
    box(ax, 12.5, 2.6, 2.0, 0.9, "2 upsamplers\n→ 256 → 1024", LOSS, 9)
    arrow(ax, (1.75, 2.6), (2.1, 2.6))
    arrow(ax, (3.9, 2.6), (4.6, 2.6), "$z_t$", text_offset=(0, 0.25))
    arrow(ax, (6.0, 2.6), (6.7, 2.6), "$z_i$", text_offset=(0, 0.25))
    arrow(ax, (8.5, 2.6), (9.1, 2.6))
    arrow(ax, (10.9, 2.6), (11.5, 2.6))
    shape_icon(ax, 5.3, 0.7, "square", "purple", r=0.4)
    box(ax, 7.6, 0.7, 1.8, 0.8, "CLIP image\nencoder", IMAGE, 9)
    arrow(ax, (5.75, 0.7), (6.7, 0.7))
    arrow(ax, (7.6, 1.1), (7.6, 2.15))
    ax.text(2.7, 0.7, "variations: encode a photo,\ndecode it again", ha="center", va="center",
            fontsize=9, style="italic")
    return fig


def gan():
    fig, ax = canvas(12, 4.4, (0, 15), (0, 5.4))
    ax.set_title("A GAN: the generator learns to fool the discriminator", fontsize=14)
    ax.text(0.8, 3.7, "noise z", ha="center", va="center", fontsize=10,
            bbox=dict(boxstyle="round", facecolor="white", edgecolor="#999999"))
    box(ax, 3.0, 3.7, 1.9, 0.9, "generator G", LATENT, 11)
    shape_icon(ax, 5.2, 3.7, "triangle", "orange", r=0.45)
    ax.text(5.2, 2.95, "G(z): fake", ha="center", va="top", fontsize=9)
    shape_icon(ax, 5.2, 1.3, "circle", "blue", r=0.45)
    ax.text(5.2, 0.55, "x: real photo", ha="center", fontsize=9)
    box(ax, 7.8, 2.5, 2.1, 1.0, "discriminator D", LOSS, 11)
    ax.text(10.6, 2.5, "D(·) = probability\nthat the input is real", ha="center", va="center", fontsize=9)
    arrow(ax, (1.45, 3.7), (2.05, 3.7))
    arrow(ax, (3.95, 3.7), (4.75, 3.7))
    arrow(ax, (5.65, 3.6), (6.75, 2.8))
    arrow(ax, (5.65, 1.4), (6.75, 2.2))
    arrow(ax, (8.85, 2.5), (9.45, 2.5))
    arrow(ax, (7.8, 3.0), (3.0, 4.2), "G learns: make D say real", color=LOSS, dashed=True, rad=0.35,
          text_offset=(0, 1.05))
    ax.text(7.8, 1.55, "D: say real for x,\nfake for G(z)", ha="center", va="center", fontsize=9, color=LOSS)
    # A patch discriminator (VQGAN) gives one verdict per patch instead of one per image.
    rng = np.random.default_rng(3)
    x0, y0, cell = 12.9, 3.4, 0.38
    for i in range(4):
        for j in range(4):
            v = float(rng.uniform(0.1, 0.95))
            ax.add_patch(Rectangle((x0 + j * cell, y0 + (3 - i) * cell - 3 * cell), cell, cell,
                                   facecolor=plt.cm.RdYlGn(v), edgecolor="white"))
    ax.text(x0 + 2 * cell, y0 + 1.25 * cell, "patch discriminator:\none verdict per patch",
            ha="center", fontsize=8)
    return fig


def vq_autoencoder():
    fig, ax = canvas(12, 4.4, (0, 15), (0, 5.2))
    ax.set_title("VQ-VAE / VQGAN: encoder, quantisation with a codebook, decoder", fontsize=14)
    shape_icon(ax, 0.8, 2.6, "square", "green", r=0.55)
    ax.text(0.8, 1.75, "image x\nH × W", ha="center", va="top", fontsize=9)
    box(ax, 2.8, 2.6, 1.6, 0.9, "encoder E", IMAGE, 10)
    rng = np.random.default_rng(7)
    codebook = rng.uniform(0.15, 0.85, size=(6, 3))
    grid = rng.integers(0, 6, size=(4, 4))
    x0, y0, cell = 4.3, 1.85, 0.38
    for i in range(4):
        for j in range(4):
            noisy = np.clip(codebook[grid[i, j]] + rng.normal(0, 0.08, 3), 0, 1)
            ax.add_patch(Rectangle((x0 + j * cell, y0 + (3 - i) * cell), cell, cell,
                                   facecolor=noisy, edgecolor="white"))
    ax.text(x0 + 2 * cell, y0 - 0.25, "$z_e$: h × w vectors", ha="center", va="top", fontsize=9)
    ax.text(7.75, 4.65, "codebook: K learned vectors", ha="center", fontsize=9)
    for k in range(6):
        ax.add_patch(Rectangle((6.9 + k * 0.3, 4.05), 0.28, 0.4, facecolor=codebook[k], edgecolor="#333333"))
        ax.text(6.9 + k * 0.3 + 0.14, 3.85, str(k), ha="center", va="top", fontsize=8)
    x1 = 7.1
    for i in range(4):
        for j in range(4):
            ax.text(x1 + j * cell + cell / 2, y0 + (3 - i) * cell + cell / 2, str(grid[i, j]),
                    ha="center", va="center", fontsize=9)
            ax.add_patch(Rectangle((x1 + j * cell, y0 + (3 - i) * cell), cell, cell,
                                   facecolor="none", edgecolor="#999999"))
    ax.text(x1 + 2 * cell, y0 - 0.25, "tokens: index of\nthe nearest entry", ha="center", va="top", fontsize=9)
    x2 = 9.9
    for i in range(4):
        for j in range(4):
            ax.add_patch(Rectangle((x2 + j * cell, y0 + (3 - i) * cell), cell, cell,
                                   facecolor=codebook[grid[i, j]], edgecolor="white"))
    ax.text(x2 + 2 * cell, y0 - 0.25, "$z_q$: codebook\nvectors", ha="center", va="top", fontsize=9)
    box(ax, 12.6, 2.6, 1.6, 0.9, "decoder G", IMAGE, 10)
    shape_icon(ax, 14.3, 2.6, "square", "green", r=0.55)
    ax.text(14.3, 1.75, "$\\hat{x}$", ha="center", va="top", fontsize=11)
    arrow(ax, (1.4, 2.6), (2.0, 2.6))
    arrow(ax, (3.6, 2.6), (4.25, 2.6))
    arrow(ax, (5.9, 2.6), (7.05, 2.6), "nearest", text_offset=(0, 0.2))
    arrow(ax, (8.7, 2.6), (9.85, 2.6), "look up", text_offset=(0, 0.2))
    arrow(ax, (11.5, 2.6), (11.8, 2.6))
    arrow(ax, (13.4, 2.6), (13.7, 2.6))
    ax.text(7.5, 0.35, "VQGAN adds a perceptual loss and a patch discriminator to the reconstruction loss;"
            " a transformer (or CLIP's gradient) then works on the tokens", ha="center", fontsize=9,
            style="italic")
    return fig


def diffusion():
    fig, ax = canvas(12, 3.4, (0, 15), (0, 4.0))
    ax.set_title("Diffusion: add noise step by step, learn to remove it", fontsize=14)
    size = 48
    yy, xx = np.mgrid[0:size, 0:size]
    clean = np.full((size, size, 3), 0.92)  # pixel values in [-1, 1], as diffusion models use
    clean[(xx - 24) ** 2 + (yy - 24) ** 2 < 14 ** 2] = [0.68, -0.7, -0.68]
    noise = np.random.default_rng(0).normal(size=clean.shape)
    steps = [("$x_0$", 1.0), ("$x_{t_1}$", 0.8), ("$x_{t_2}$", 0.45), ("$x_{t_3}$", 0.15), ("$x_T$", 0.0)]
    for k, (label, keep) in enumerate(steps):  # x_t = sqrt(a) x_0 + sqrt(1 - a) noise
        image = np.clip((np.sqrt(keep) * clean + np.sqrt(1 - keep) * noise + 1) / 2, 0, 1)
        x = 1.2 + k * 3.1
        ax.imshow(image, extent=(x - 0.9, x + 0.9, 1.5, 3.3), interpolation="nearest")
        ax.text(x, 1.3, label, ha="center", va="top", fontsize=11)
        if k < len(steps) - 1:
            arrow(ax, (x + 1.0, 3.1), (x + 2.1, 3.1), "add noise", text_offset=(0, 0.3))
            arrow(ax, (x + 2.1, 1.7), (x + 1.0, 1.7), "denoise", color=LOSS, dashed=True,
                  text_offset=(0, -0.35))
    ax.text(7.4, 0.35, "training: predict the noise in $x_t$;  generation: start from pure noise $x_T$"
            " and denoise, guided by the text", ha="center", fontsize=9, style="italic")
    ax.set_aspect("auto")
    return fig


FIGURES = {
    "clip-architecture": clip_architecture,
    "similarity-matrix": similarity_matrix,
    "zero-shot": zero_shot,
    "vector-quantisation": vector_quantisation,
    "generation-loop": generation_loop,
    "token-stream": token_stream,
    "unclip": unclip,
    "gan": gan,
    "vq-autoencoder": vq_autoencoder,
    "diffusion": diffusion,
}


def draw_all(out: Path = HERE) -> list[Path]:
    """Draw every figure into `out` as PNG; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, draw in FIGURES.items():
        fig = draw()
        path = out / f"{name}.png"
        # No timestamp or version in the file, so an unchanged figure gives the same bytes.
        fig.savefig(path, dpi=110, bbox_inches="tight", facecolor="white", metadata={"Software": None})
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE, help="folder to write the PNG files to")
    for path in draw_all(parser.parse_args().out):
        print(f"wrote {path}")
