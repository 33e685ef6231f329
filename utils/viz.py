"""Every plot and picture grid of the course: matplotlib figures, torchvision grids.

A picture is a PIL image, an (H, W, 3) array or a (3, H, W) tensor in [0, 1]; a batch is a
list of those or an (N, 3, H, W) tensor.

    show_images(batch, titles=captions, title="A batch")   # a row (or grid) with captions
    image_grid(batch).save("grid.png")                       # one PIL image, no matplotlib
    live = LiveCurves([Curve("loss", "Training loss", "loss")]); fit(..., callback=live)
    plot_embedding_2d(image_emb, classes, text_emb, names)     # images and texts on 2 PCA axes
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .i18n import number, t
from .images import open_image, to_rgb


def to_pil(images: torch.Tensor) -> Image.Image | list[Image.Image]:
    """(3, H, W) in [0, 1] -> one PIL image; (N, 3, H, W) -> a list. v8 = round(255 v)."""
    from torchvision.transforms.functional import to_pil_image
    as_bytes = (images.detach().clamp(0, 1).cpu() * 255 + 0.5).to(torch.uint8)  # round, not floor
    if as_bytes.dim() == 3:
        return to_pil_image(as_bytes)
    return [to_pil_image(image) for image in as_bytes]


def image_grid(images: torch.Tensor, gap: int = 2, ncols: int | None = None) -> Image.Image:
    """(N, 3, H, W) in [0, 1] -> one PIL grid (ncols = ceil(sqrt(N)) by default), `gap` white
    pixels between pictures and none around them."""
    from torchvision.utils import make_grid
    ncols = ncols or math.ceil(math.sqrt(len(images)))
    grid = make_grid(images, nrow=ncols, padding=gap, pad_value=1.0)  # gap around each picture
    return to_pil(grid[:, gap:grid.shape[1] - gap, gap:grid.shape[2] - gap])


def show_images(images, titles: Sequence[str] | None = None, title: str | None = None,
                rows: int = 1, size: float = 2.0, fontsize: int = 9, show: bool = True):
    """Pictures in `rows` rows, each with its title, under the suptitle `title`; returns the figure
    (show=True calls plt.show(), so that it appears where the call is in a notebook)."""
    import matplotlib.pyplot as plt
    images = list(images)
    cols = max(1, math.ceil(len(images) / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(size * cols, (size + 0.5) * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image) in enumerate(zip(axes.flat, images)):
        if isinstance(image, torch.Tensor):
            image = image.detach().clamp(0, 1).permute(1, 2, 0).cpu().numpy()  # (H, W, 3)
        ax.imshow(np.asarray(image), interpolation="nearest")  # small pictures stay sharp
        if titles is not None:
            ax.set_title(titles[i], fontsize=fontsize)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if show:
        plt.show()
    return fig


def show_hits(hits, images=None, title: str | None = None, ncols: int = 5, size: float = 2.0):
    """Search hits (utils.retrieval.Hit) as a grid captioned with rank and score; images: indexed
    by hit.index, or None to open hit.path."""
    import matplotlib.pyplot as plt
    ncols = max(1, min(ncols, len(hits)))
    nrows = max(1, -(-len(hits) // ncols))
    fig = plt.figure(figsize=(size * ncols, size * nrows + (0.4 if title else 0)))
    for j, hit in enumerate(hits):
        ax = fig.add_subplot(nrows, ncols, j + 1)
        image = images[hit.index] if images is not None else open_image(hit.path)
        ax.imshow(to_rgb(image))
        ax.set_title(f"#{hit.rank}  {hit.score:.3f}", fontsize=9)
        ax.set_xlabel(Path(hit.item).name if hit.path else (hit.caption or ""), fontsize=7)
        ax.set(xticks=[], yticks=[])
    if not hits:
        fig.text(0.5, 0.5, t("no results"), ha="center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_matrix(matrix, ax=None, title: str = "", xlabel: str = "", ylabel: str = "",
                colorbar: str = "", values: bool = True, cmap: str = "viridis"):
    """Heatmap of a matrix with index ticks, its values written in (values=True) and a labelled
    colour bar; returns the axes."""
    import matplotlib.pyplot as plt
    matrix = matrix.detach().cpu().numpy() if torch.is_tensor(matrix) else np.asarray(matrix)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.6 * matrix.shape[1] + 2.5, 0.5 * matrix.shape[0] + 1.5))
    shown = ax.imshow(matrix, cmap=cmap, vmin=float(matrix.min()), vmax=float(matrix.max()))
    rows, cols = matrix.shape
    ax.set(xticks=range(cols), yticks=range(rows), xlabel=xlabel, ylabel=ylabel, title=title)
    if values:
        for (i, j), value in np.ndenumerate(matrix):
            ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=7, color="white")
    plt.colorbar(shown, ax=ax, fraction=0.046, label=colorbar)
    return ax


def plot_similarity(similarity, images: Sequence, texts: Sequence[str], title: str = "", ax=None):
    """Heatmap of cosine similarities (texts x images) with the images as column headers."""
    import matplotlib.pyplot as plt
    sim = similarity.detach().cpu().numpy() if hasattr(similarity, "detach") else similarity
    n_texts, n_images = sim.shape
    if ax is None:
        _, ax = plt.subplots(figsize=(1.1 * n_images + 3, 0.6 * n_texts + 1.5),
                             layout="constrained")
    shown = ax.imshow(sim, cmap="viridis", extent=(-0.5, n_images - 0.5, n_texts - 0.5, -0.5))
    for j, image in enumerate(images):  # thumbnails in a row above the matrix
        ax.imshow(image, extent=(j - 0.45, j + 0.45, -0.6, -1.6), origin="upper")
    for (i, j), value in np.ndenumerate(sim):
        ax.text(j, i, f"{value:.2f}", ha="center", va="center", fontsize=8, color="white")
    ax.set_yticks(range(n_texts), texts)
    ax.set(xlim=(-0.5, n_images - 0.5), ylim=(n_texts - 0.5, -1.7), xticks=[], xlabel=t("images"),
           ylabel=t("texts"), title=title or t("Cosine similarity between texts and images"))
    plt.colorbar(shown, ax=ax, fraction=0.03, label=t("cosine similarity"))
    return ax


def plot_confusion(confusion, classnames: Sequence[str], title: str = "", ax=None):
    """Confusion matrix as an image: row = true class, column = predicted class."""
    import matplotlib.pyplot as plt
    n = len(classnames)
    if ax is None:
        _, ax = plt.subplots(figsize=(0.3 * n + 3, 0.3 * n + 2.5))
    shown = ax.imshow(confusion, cmap="Blues")
    ax.set_xticks(range(n), classnames, rotation=90, fontsize=7)
    ax.set_yticks(range(n), classnames, fontsize=7)
    ax.set(xlabel=t("predicted class"), ylabel=t("true class"),
           title=title or t("Confusion matrix"))
    plt.colorbar(shown, ax=ax, fraction=0.04, label=t("images"))
    return ax


def plot_prediction(image, labels: Sequence[str], probs, title: str = "", axes=None):
    """The image on the left (`title` above it), one bar per label on the right (best on top);
    each label is written above its bar, so that long labels never run over the picture."""
    import matplotlib.pyplot as plt
    if axes is None:
        _, axes = plt.subplots(1, 2, figsize=(8, 0.5 * len(labels) + 1.4),
                               gridspec_kw={"width_ratios": [1, 1.6]})
    ax_img, ax_bar = axes
    ax_img.imshow(image)
    ax_img.axis("off")
    ax_img.set_title(title, fontsize=10)
    probs = [float(p) for p in probs]
    order = sorted(range(len(labels)), key=lambda i: probs[i])  # barh draws bottom-up
    ax_bar.barh(range(len(order)), [probs[i] for i in order], height=0.4, color="tab:blue")
    ax_bar.set(xlim=(0, 1), ylim=(-0.4, len(order) - 0.15), yticks=[], xlabel=t("probability"),
               ylabel=t("labels"))
    ax_bar.set_title(t("Zero-shot prediction"), fontsize=10)
    for y, i in enumerate(order):
        label = labels[i] if len(labels[i]) <= 48 else labels[i][:47] + "…"
        ax_bar.text(0.005, y + 0.24, label, va="bottom", ha="left", fontsize=9)
        ax_bar.text(min(probs[i] + 0.02, 0.88), y, number(probs[i], ".0%"), va="center", fontsize=8)
    return axes


def pca_2d(points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, D) -> the centred points on their two main axes (N, 2) (PCA by SVD) and the share of
    the variance each axis keeps (2,)."""
    points = points.detach().float().cpu()
    centred = points - points.mean(0)
    _, singular, vh = torch.linalg.svd(centred, full_matrices=False)
    return centred @ vh[:2].T, singular[:2] ** 2 / (singular ** 2).sum()


def plot_embedding_2d(image_emb: torch.Tensor, image_classes: Sequence[int],
                      text_emb: torch.Tensor, class_names: Sequence[str],
                      colours: Sequence[str] | None = None, title: str = "", ax=None):
    """Images (dots) and texts (stars; text k names class k) on the two main axes of all the
    embeddings, one colour per class; returns the axes."""
    import matplotlib.pyplot as plt
    n = len(image_emb)
    xy, share = pca_2d(torch.cat([image_emb, text_emb]))
    colours = colours or [plt.get_cmap("tab10")(k % 10) for k in range(len(class_names))]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 5))
    classes = torch.as_tensor(list(image_classes))
    for k, name in enumerate(class_names):
        points = xy[:n][classes == k]
        ax.scatter(points[:, 0], points[:, 1], s=18, alpha=0.55, color=colours[k],
                   label=t("images: {name}", name=name))
        ax.scatter(xy[n + k, 0], xy[n + k, 1], s=260, marker="*", color=colours[k],
                   edgecolors="black", linewidths=1.2, zorder=3)
    ax.scatter([], [], s=160, marker="*", color="white", edgecolors="black", label=t("text (star)"))
    ax.set(xlabel=t("axis 1 ({p:.0%} of the variance)", p=share[0].item()),
           ylabel=t("axis 2 ({p:.0%} of the variance)", p=share[1].item()),
           title=title or t("Images and texts in one embedding space (PCA)"))
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), fontsize=8)  # beside the points
    return ax


def plot_curves(x, curves: dict[str, Sequence[float]], ax=None, title: str = "", xlabel: str = "",
                ylabel: str = "", reference: tuple[Sequence[float] | float, str] | None = None,
                **axis):
    """One line per {label: ys} against x, an optional dashed (value(s), label) reference;
    `axis` goes to ax.set."""
    import matplotlib.pyplot as plt
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.4))
    few = len(x) <= 20  # few points: marked, on a thicker line
    for label, ys in curves.items():
        ax.plot(x, ys, marker="o" if few else None, label=label or None, lw=1.5 if few else 1)
    if reference is not None:
        value, label = reference
        if isinstance(value, (int, float)):
            ax.axhline(value, color="grey", ls="--", label=label)
        else:
            ax.plot(x, value, color="grey", ls="--", label=label)
    ax.set(title=title, xlabel=xlabel, ylabel=ylabel, **axis)
    if reference is not None or any(curves):
        ax.legend(fontsize=8)
    return ax


@dataclass
class Curve:
    """One panel of LiveCurves: record[key] against record["step"]."""

    key: str
    title: str
    ylabel: str
    reference: float | None = None  # a dashed horizontal line, e.g. chance
    reference_label: str = ""
    ylim: tuple[float, float] | None = None


class LiveCurves:
    """Training curves that redraw in place in a notebook, as fit()'s callback: each record
    {"step": ..., key: value} adds points; the figure redraws when `redraw_on` is in it."""

    def __init__(self, curves: Sequence[Curve], redraw_on: str | None = None, size: float = 5.5):
        import matplotlib.pyplot as plt
        from IPython.display import display
        self.curves, self.redraw_on = list(curves), redraw_on
        self.points = {c.key: ([], []) for c in self.curves}  # key -> (steps, values)
        self.fig, axes = plt.subplots(1, len(self.curves), figsize=(size * len(self.curves), 3.5),
                                      squeeze=False)
        self.axes = list(axes.flat)
        self.handle = display(self.fig, display_id=True)

    def __call__(self, record: dict) -> None:
        for key, (steps, values) in self.points.items():
            if key in record:
                steps.append(record["step"])
                values.append(record[key])
        if self.redraw_on is None or self.redraw_on in record:
            self.redraw()

    def redraw(self) -> None:
        for ax, curve in zip(self.axes, self.curves):
            ax.clear()
            steps, values = self.points[curve.key]
            reference = None if curve.reference is None else (curve.reference,
                                                              curve.reference_label)
            plot_curves(steps, {"": values}, ax=ax, title=curve.title, xlabel=t("step"),
                        ylabel=curve.ylabel, reference=reference,
                        **({"ylim": curve.ylim} if curve.ylim else {}))
        self.fig.tight_layout()
        if self.handle is not None:  # None outside a notebook: nothing to update
            self.handle.update(self.fig)

    def close(self) -> None:
        """Last redraw, then close the figure (it stays shown in the notebook)."""
        import matplotlib.pyplot as plt
        self.redraw()
        plt.close(self.fig)
