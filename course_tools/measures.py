"""More measured numbers for `python -m course_tools.claims --measure NAME` (see claims.py).

Each function returns {claim key: (value, unit)}; the key's first part is the measure's name.
"""

from __future__ import annotations

import math

# Colour names and RGB values another program might use for each of our colour words.
PIL_COLOURS = {
    "red": ["red", "crimson", (200, 20, 20), "firebrick"],
    "orange": ["orange", "darkorange", (255, 120, 0)],
    "yellow": ["yellow", "gold", (240, 220, 30)],
    "green": ["green", "limegreen", "forestgreen", (0, 180, 0)],
    "blue": ["blue", "royalblue", "mediumblue", (30, 90, 200)],
    "purple": ["purple", "darkviolet", "rebeccapurple", (140, 50, 180)],
}


def draw_with_pil(colour: str, shape: str, rng, size: int):
    """One filled shape on a plain light background, drawn with PIL, not with utils.data."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (size, size), tuple(int(rng.integers(225, 256)) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    fill = PIL_COLOURS[colour][int(rng.integers(len(PIL_COLOURS[colour])))]
    r = rng.uniform(0.12, 0.32) * size
    cx, cy = rng.uniform(r + 2, size - r - 2), rng.uniform(r + 2, size - r - 2)
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
    elif shape == "square":
        draw.rectangle([cx - r * 0.85, cy - r * 0.85, cx + r * 0.85, cy + r * 0.85], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, cy - r), (cx - r, cy + r * 0.8), (cx + r, cy + r * 0.8)], fill=fill)
    else:  # a five-pointed star
        draw.polygon([(cx + (r if k % 2 == 0 else r * 0.45) * math.cos(-math.pi / 2 + k * math.pi / 5),
                       cy + (r if k % 2 == 0 else r * 0.45) * math.sin(-math.pi / 2 + k * math.pi / 5))
                      for k in range(10)], fill=fill)
    return image


def pil_shapes_claims(per_pair: int = 20, seed: int = 0) -> dict[str, tuple[float, str]]:
    """The bundled tiny CLIP on shapes drawn by PIL (64, 128 or 224 px, `per_pair` of each of
    the 24 colour-shape pairs): colour+shape accuracy among the 24 prompts "a {colour} {shape}"."""
    import numpy as np

    from utils.data import class_prompts
    from utils.models import load_clip

    clip = load_clip("tiny-shapes", device="cpu", verbose=False)
    rng = np.random.default_rng(seed)
    prompts, pairs = class_prompts()
    truth = [pairs[i % len(pairs)] for i in range(per_pair * len(pairs))]
    images = [draw_with_pil(c, s, rng, int(rng.choice([64, 128, 224]))) for c, s in truth]
    best = (clip.encode_images(images) @ clip.encode_texts(prompts).T).argmax(-1).tolist()
    accuracy = sum(pairs[b] == pair for b, pair in zip(best, truth)) / len(truth)
    return {"pil-shapes.n_images": (len(truth), "images"),
            "pil-shapes.colour_shape": (round(accuracy, 6), "fraction")}


def _test_pictures(n: int, seed: int):
    """Notebook 05's pictures (split "test") and their tiny-VQ round trips, as (N, 3, 64, 64)."""
    from utils import data
    from utils.tinyclip import vq_round_trip

    pictures, attrs = data.render_batch(n, seed=seed, split="test", as_tensor=True)
    return pictures, vq_round_trip(pictures), attrs


def vq_roundtrip_claims(n: int = 3000, seed: int = 5) -> dict[str, tuple[float, str]]:
    """Notebook 05's "what the image tokenizer can carry" in full mode: the shape judge names the
    shape of each tiny-VQ round trip of `n` test pictures, by the shape's size."""
    import torch

    from utils import data
    from utils.shapecheck import load_shape_judge

    _, round_trips, attrs = _test_pictures(n, seed)
    judged = load_shape_judge().judge(round_trips)
    right = torch.tensor([j["shape"] == a["shape"] for j, a in zip(judged, attrs)])
    claims = {"vq-roundtrip.n_images": (n, "images")}
    for size in data.SIZES:
        chosen = torch.tensor([a["size"] == size for a in attrs])
        claims[f"vq-roundtrip.{size}.shape"] = (round(float(right[chosen].float().mean()), 6), "fraction")
    return claims


def reranker_claims(n: int = 3000, seed: int = 6) -> dict[str, tuple[float, str]]:
    """The tiny CLIP before (`tiny-shapes`) and after fine-tuning on tiny-VQ pictures
    (`tiny-shapes-vq`, lesson 05's reranker): colour+shape zero-shot accuracy among the 24 prompts
    on `n` clean test renders and on their tiny-VQ round trips, by the shape's size."""
    import torch

    from utils import data
    from utils.models import load_clip
    from utils.tinyclip import embed_images

    pictures, round_trips, attrs = _test_pictures(n, seed)
    prompts, pairs = data.class_prompts()
    truth = torch.tensor([pairs.index((a["colour"], a["shape"])) for a in attrs])
    sizes = {size: torch.tensor([a["size"] == size for a in attrs]) for size in data.SIZES}
    claims = {"reranker.n_images": (n, "images")}
    for name in ("tiny-shapes", "tiny-shapes-vq"):
        clip = load_clip(name, device="cpu", verbose=False)
        texts = clip.encode_texts(prompts)
        with torch.no_grad():
            for where, images in (("renders", pictures), ("vq", round_trips)):
                right = (embed_images(clip, images) @ texts.T).argmax(-1) == truth
                claims[f"reranker.{name}.{where}.colour_shape"] = (round(float(right.float().mean()), 6), "fraction")
                if where == "vq":
                    for size, chosen in sizes.items():
                        claims[f"reranker.{name}.vq_{size}.colour_shape"] = (
                            round(float(right[chosen].float().mean()), 6), "fraction")
    return claims


def tiny_generate_claims(seed: int = 0, pairs=None) -> dict[str, tuple[float, str]]:
    """`generate` with its defaults (tiny VQ drawer, tiny CLIP, "draft"), one image for each of
    the 24 prompts "a {colour} {shape}" (or of `pairs`): how many have the prompt's colour
    dominant among the coloured pixels, the CLIP score before and after, and the smallest rise."""
    from torchvision.transforms.functional import to_tensor

    from utils.data import class_prompts
    from utils.generate import generate
    from utils.models import load_clip
    from utils.shapecheck import dominant_colours

    clip = load_clip("tiny-shapes", device="cpu", verbose=False)
    prompts, pairs = class_prompts(pairs=pairs)
    right, rises, claims = 0, [], {}
    for prompt, (colour, _shape) in zip(prompts, pairs):
        result = generate(prompt, clip=clip, seed=seed, progress=False)
        right += dominant_colours(to_tensor(result.image)[None])[0][0] == colour
        rises.append(result.final_score - result.start_score)
        if prompt == "a red circle":
            claims["tiny-generate.red_circle.start_score"] = (round(result.start_score, 6), "cosine")
            claims["tiny-generate.red_circle.final_score"] = (round(result.final_score, 6), "cosine")
    return {**claims, "tiny-generate.n_prompts": (len(prompts), "prompts"),
            "tiny-generate.colour_dominant": (right, "prompts"),
            "tiny-generate.min_score_rise": (round(min(rises), 6), "cosine")}


def model_size_claims() -> dict[str, tuple[float, str]]:
    """The download size of ViT-B-32 in float32, counted from the architecture (random weights):
    4 bytes per parameter, in MB (10^6 bytes)."""
    import logging

    import open_clip

    logging.getLogger().setLevel(logging.ERROR)  # open_clip warns that the weights are random
    model = open_clip.create_model("ViT-B-32", pretrained=None)
    n = sum(p.numel() for p in model.parameters())
    return {"model-size.ViT-B-32.parameters": (n, "parameters"),
            "model-size.ViT-B-32.float32_mb": (round(4 * n / 1e6, 1), "MB")}


def vit_speed_claims(n_texts: int = 256, n_images: int = 64) -> dict[str, tuple[float, str]]:
    """How fast ViT-B-32 (random weights: the pretrained model's compute) embeds on this CPU, in
    texts and images per second of CPU time on one thread, and the CPU minutes that makes of the
    two largest jobs of the full notebooks: notebook 02's ImageNet classifier (every class name
    in every template) and notebook 03's 20,000 pictures. CPU time, unlike wall time, hardly
    depends on what else the machine runs."""
    import logging
    import time

    import open_clip
    import torch

    from utils.zeroshot import IMAGENET_CLASSNAMES, SIMPLE_IMAGENET_TEMPLATES

    torch.set_num_threads(1)
    logging.getLogger().setLevel(logging.ERROR)
    model = open_clip.create_model("ViT-B-32", pretrained=None).eval()
    tokens = open_clip.get_tokenizer("ViT-B-32")([template(c) for template in SIMPLE_IMAGENET_TEMPLATES
                                                  for c in IMAGENET_CLASSNAMES][:n_texts])
    images = torch.rand(n_images, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    rates = {}
    with torch.no_grad():
        for name, encode, batch in (("texts", model.encode_text, tokens), ("images", model.encode_image, images)):
            encode(batch[:64])  # warm-up
            start = time.process_time()
            for i in range(0, len(batch), 64):
                encode(batch[i:i + 64])
            rates[name] = len(batch) / (time.process_time() - start)
    n_imagenet = len(IMAGENET_CLASSNAMES) * len(SIMPLE_IMAGENET_TEMPLATES)
    return {"vit-speed.texts_per_cpu_s": (round(rates["texts"], 1), "texts/s"),
            "vit-speed.images_per_cpu_s": (round(rates["images"], 1), "images/s"),
            "vit-speed.imagenet_texts": (n_imagenet, "texts"),
            "vit-speed.imagenet_cpu_minutes": (round(n_imagenet / rates["texts"] / 60, 1), "min"),
            "vit-speed.images_20000_cpu_minutes": (round(20_000 / rates["images"] / 60, 1), "min")}


def ensembling_claims(n_test: int = 3000, n_heldout: int = 1000) -> dict[str, tuple[float, str]]:
    """Notebook 02's experiment in full mode, in every language, on the same images: the tiny CLIP's
    accuracy with the bare class name ("{}"), with one template (the first of the language's
    templates that adds words: "a {}" in English) and with the ensemble of templates.

    Keys `ensembling.<lang>.<seen|heldout>.<single|template|ensemble>` (fractions),
    `...gain_points` (ensemble minus bare name) and `...template_gain_points` (ensemble minus one
    template) in percentage points, `...gain_images` and `...template_gain_images` in images;
    `ensembling.<lang>.templates` counts the ensemble's templates, `ensembling.<split>.images` the images."""
    import torch
    from PIL import Image

    from utils.data import COLOURS, SHAPES, render_batch
    from utils.i18n import LANGUAGES
    from utils.models import load_clip
    from utils.zeroshot import build_classifier, evaluate, shapes_classes

    pairs = [(c, s) for c in COLOURS for s in SHAPES]
    clip = load_clip("tiny-shapes", device="cpu", verbose=False)
    sets, claims = {}, {}
    for split, n, seed in (("seen", n_test, 2024), ("heldout", n_heldout, 7)):  # as notebook 02
        arrays, attrs = render_batch(n, seed=seed, split="test" if split == "seen" else "heldout")
        targets = torch.tensor([pairs.index((a["colour"], a["shape"])) for a in attrs])
        sets[split] = (clip.encode_images([Image.fromarray(a) for a in arrays], progress=False), targets)
        claims[f"ensembling.{split}.images"] = (n, "images")
    for lang in LANGUAGES:
        classnames, templates = shapes_classes(lang)
        one = next(tpl for tpl in templates if tpl != "{}")
        claims[f"ensembling.{lang}.templates"] = (len(templates), "templates")
        for split, (features, targets) in sets.items():
            acc = {name: float(evaluate(build_classifier(clip, classnames, tpls), features, targets).accuracy)
                   for name, tpls in (("single", ["{}"]), ("template", [one]), ("ensemble", templates))}
            key = f"ensembling.{lang}.{split}"
            claims.update({f"{key}.{name}": (round(value, 6), "fraction") for name, value in acc.items()})
            claims[f"{key}.gain_points"] = (round(100 * (acc["ensemble"] - acc["single"]), 6), "points")
            claims[f"{key}.template_gain_points"] = (round(100 * (acc["ensemble"] - acc["template"]), 6), "points")
            for base in ("single", "template"):  # the same gains counted in images
                claims[f"{key}.{'gain' if base == 'single' else 'template_gain'}_images"] = (
                    round((acc["ensemble"] - acc[base]) * len(targets)), "images")
    return claims
