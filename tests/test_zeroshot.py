"""Zero-shot classification: ensembling equals open_clip's, probabilities, evaluation,
label validation, and the `classify` command on every kind of image file."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from utils import zeroshot
from utils.__main__ import main
from utils.models import TINY_CONFIG, TINY_WEIGHTS, load_clip
from utils.zeroshot import (
    OPENAI_IMAGENET_TEMPLATES,
    SHAPES_TEMPLATES,
    build_classifier,
    evaluate,
    prompts_for,
    validate_labels,
)

LABELS = ["a red square", "a blue circle", "a yellow triangle"]
_STR, _STRS = {"type": "string"}, {"type": "array", "items": {"type": "string"}}


def _obj(required: list[str], **properties) -> dict:
    return {"type": "object", "required": required, "properties": properties}


# the --json output of `classify`, as CLI_HELP describes it
JSON_SCHEMA = _obj(
    ["model", "labels", "templates", "results", "skipped", "warnings"],
    model=_STR, labels={**_STRS, "minItems": 1}, templates=_STRS, warnings=_STRS,
    results={"type": "array", "items": _obj(
        ["path", "probabilities", "top", "prediction"], path=_STR, prediction=_STR,
        probabilities={"type": "object",
                       "additionalProperties": {"type": "number", "minimum": 0, "maximum": 1}},
        top={"type": "array", "items": _obj(["label", "probability"], label=_STR,
                                            probability={"type": "number"})})},
    skipped={"type": "array", "items": _obj(["path", "reason"], path=_STR, reason=_STR)})


@pytest.fixture(scope="module")
def weights_file(small_clip_name, tmp_path_factory):
    """Random weights of the small test model, saved as safetensors."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(0)
    model = open_clip.create_model(small_clip_name)
    path = tmp_path_factory.mktemp("w") / "small.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="module")
def clip(small_clip_name, weights_file):
    return load_clip(small_clip_name, pretrained=str(weights_file), device="cpu")


def _picture(seed: int, size=(40, 30)) -> Image.Image:
    """A picture with no symmetry, so a rotation changes it."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8))


# ------------------------------------------------------------------ the classifier


@pytest.mark.parametrize("templates", [("{}",), SHAPES_TEMPLATES, OPENAI_IMAGENET_TEMPLATES[:5]])
def test_ensemble_equals_open_clip(clip, templates):
    from open_clip import build_zero_shot_classifier

    ours = build_classifier(clip, ["red circle", "blue square", "cat"], templates)
    theirs = build_zero_shot_classifier(clip.model, clip.tokenizer, ["red circle", "blue square", "cat"],
                                        templates, num_classes_per_batch=None)  # (D, C)
    assert ours.weights.shape == (3, 32)
    assert torch.allclose(ours.weights, theirs.T, atol=1e-6)
    assert torch.allclose(ours.weights.norm(dim=-1), torch.ones(3), atol=1e-6)


def test_ensemble_is_the_renormalised_mean_of_prompt_embeddings(clip):
    with pytest.warns(UserWarning, match="Only one label"):
        clf = build_classifier(clip, ["red circle"], ["a {}", "a drawing of a {}"])
    e = clip.encode_texts(["a red circle", "a drawing of a red circle"])  # (2, D), unit rows
    mean = e.mean(dim=0)
    assert torch.allclose(clf.weights[0], mean / mean.norm(), atol=1e-6)
    assert mean.norm() < 1  # the mean of two different unit vectors is shorter: renormalising matters


@pytest.mark.parametrize("limit, batches", [(64 * 2**30, [40]), (2 * 10**9, [16, 16, 8])])
def test_a_big_clip_embeds_in_smaller_batches_under_4_gib(clip, monkeypatch, limit, batches):
    """Binder's 2 GB: 16 images or texts at a time (64 through ViT-B-32 add 170 MB to the peak),
    with the same embeddings."""
    import utils.assets

    images, texts = [_picture(i, (24, 24)) for i in range(40)], [f"a photo of {i}" for i in range(40)]
    before = clip.encode_images(images), clip.encode_texts(texts)
    seen = []
    for name in ("encode_image", "encode_text"):
        encode = getattr(clip.model, name)
        monkeypatch.setattr(clip.model, name, lambda x, encode=encode: seen.append(len(x)) or encode(x))
    monkeypatch.setattr(utils.assets, "memory_limit", lambda: limit)
    after = clip.encode_images(images), clip.encode_texts(texts)
    assert seen == batches * 2
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(before, after))
    assert clip.encode_images(images, batch_size=8).shape == (40, 32)  # smaller asks stay smaller
    assert seen[-5:] == [8] * 5


def test_probabilities_are_softmax_of_scaled_cosine(clip):
    clf = build_classifier(clip, LABELS)
    images = [_picture(i) for i in range(4)]
    cos = clip.encode_images(images) @ clip.encode_texts(LABELS).T  # (4, 3)
    with torch.no_grad():
        scale = clip.logit_scale
    assert clf.logit_scale == scale
    expected = (scale * cos).softmax(dim=-1)
    probs = clf.predict_proba(images)
    assert torch.allclose(probs, expected, atol=1e-5)
    assert torch.allclose(probs.sum(dim=-1), torch.ones(4), atol=1e-6)
    top = clf.top_k(images, k=2)
    assert len(top) == 4 and all(len(row) == 2 for row in top)
    for row, p in zip(top, probs):
        assert row[0][0] == LABELS[int(p.argmax())]
        assert row[0][1] >= row[1][1]
        assert math.isclose(row[0][1], float(p.max()), rel_tol=1e-5)
    assert len(clf.top_k(images, k=10)[0]) == 3  # k larger than the number of classes


def test_evaluate_accuracy_and_confusion(clip):
    clf = build_classifier(clip, LABELS)
    # Feed the class vectors themselves as image features: each is nearest to its own class.
    feats = clf.weights[[0, 1, 2, 2, 0]]  # (5, D)
    result = evaluate(clf, feats, [0, 1, 2, 2, 0])
    assert result.accuracy == 1.0
    assert result.confusion.tolist() == [[2, 0, 0], [0, 1, 0], [0, 0, 2]]
    # Wrong targets for two images: they land off the diagonal, in (true row, predicted column).
    result = evaluate(clf, feats, [0, 1, 2, 1, 2])
    assert result.accuracy == pytest.approx(3 / 5)
    assert result.confusion.tolist() == [[1, 0, 0], [0, 1, 1], [1, 0, 1]]
    assert result.confusion.sum() == 5
    assert result.per_class_accuracy() == {LABELS[0]: 1.0, LABELS[1]: 0.5, LABELS[2]: 0.5}
    assert result.top5 == 1.0  # only three classes: the true one is always in the top 5
    with pytest.raises(ValueError, match="targets"):
        evaluate(clf, feats, [0, 1])


def test_template_without_placeholder_is_an_error(clip):
    with pytest.raises(ValueError, match="no {}"):
        build_classifier(clip, LABELS, ["a {}", "a photo"])


def test_prompts_accept_strings_and_open_clip_callables():
    assert prompts_for("cat", ["a photo of a {}.", OPENAI_IMAGENET_TEMPLATES[0]]) == [
        "a photo of a cat.", "a bad photo of a cat."]


# ------------------------------------------------------------------ labels


@pytest.mark.parametrize("labels", [[], "", " , ,", ["  "]])
def test_empty_labels_are_an_error(labels):
    with pytest.raises(ValueError, match="No labels"):
        validate_labels(labels)


def test_duplicates_are_dropped_with_a_warning():
    with pytest.warns(UserWarning, match="2 duplicate"):
        out = validate_labels("a cat, a dog,A cat,a  dog,a bird")
    assert out == ["a cat", "a dog", "a bird"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning for a clean list
        assert validate_labels(["a cat", "a dog"]) == ["a cat", "a dog"]


def test_single_label_warns_and_dedupe_false_keeps_indices(clip):
    with pytest.warns(UserWarning, match="always 100%"):
        assert validate_labels(["a cat"]) == ["a cat"]
    # A dataset's label list with a repeated name (open_clip's ImageNet list has two):
    # dedupe=False keeps class i at index i, so targets still line up.
    from utils.zeroshot import IMAGENET_CLASSNAMES

    assert len(set(IMAGENET_CLASSNAMES)) < len(IMAGENET_CLASSNAMES) == 1000
    with pytest.warns(UserWarning, match="kept"):
        clf = build_classifier(clip, ["missile", "cat", "missile"], dedupe=False)
    assert clf.classnames == ["missile", "cat", "missile"]
    assert torch.allclose(clf.weights[0], clf.weights[2])


def test_long_label_warns_that_it_is_truncated(clip):
    context = clip.tokenizer.context_length  # 16 tokens for the small test model
    assert context == 16
    short = "a red circle"
    long = "a " + " ".join(["very"] * context) + " red circle"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        validate_labels([short, "a dog"], clip.tokenizer)
    with pytest.warns(UserWarning, match=f"only {context}.*truncated"):
        validate_labels([short, long], clip.tokenizer)
    # The template counts too: "a drawing of a {}" adds 4 tokens to a label that fits alone.
    fits_alone = " ".join(["red"] * (context - 2))
    assert zeroshot.token_count(clip.tokenizer, fits_alone) == context
    with pytest.warns(UserWarning, match="truncated"):
        validate_labels([fits_alone, "a dog"], clip.tokenizer, ["a drawing of a {}"])


# ------------------------------------------------------------------ the command line


def _odd_files(folder) -> dict[str, str]:
    """Write images in awkward formats; returns {name: what it is}."""
    base = _picture(1, (48, 32))
    gray = base.convert("L")
    base.save(folder / "rgb.png")
    gray.save(folder / "gray.png")
    base.convert("RGBA").save(folder / "rgba.png")
    base.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.gif")
    Image.fromarray(np.asarray(gray).astype(np.uint16) * 257).save(folder / "gray16.png")
    base.convert("CMYK").save(folder / "cmyk.jpg")
    # Stored rotated, with the EXIF flag that says "rotate 90 degrees clockwise to view".
    exif = Image.Exif()
    exif[0x0112] = 6
    base.transpose(Image.Transpose.ROTATE_90).save(folder / "exif.png", exif=exif)
    base.transpose(Image.Transpose.ROTATE_90).save(folder / "sideways.png")  # no flag
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (folder / "notes.jpg").write_text("this is text")
    (folder / "empty.png").write_bytes(b"")
    return {"rgb.png": "ok", "gray.png": "ok", "rgba.png": "ok", "palette.gif": "ok",
            "gray16.png": "ok", "cmyk.jpg": "ok", "exif.png": "ok", "sideways.png": "ok",
            "broken.png": "bad", "notes.jpg": "bad", "empty.png": "bad"}


def _cli(capsys, args) -> tuple[int, str, str]:
    code = main(["classify", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_json_handles_odd_images_and_skips_broken_ones(capsys, tmp_path, small_clip_name, weights_file):
    import jsonschema

    kinds = _odd_files(tmp_path)
    code, out, _ = _cli(capsys, [str(tmp_path), "--labels", ",".join(LABELS) + ",a red square",
                                 "--model", small_clip_name, "--pretrained", str(weights_file),
                                 "--top", "2", "--json"])
    assert code == 0
    report = json.loads(out)
    jsonschema.validate(report, JSON_SCHEMA)
    assert report["labels"] == LABELS  # the duplicate is dropped...
    assert any("duplicate" in w for w in report["warnings"])  # ...and said so
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in report["results"]}
    skipped = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in report["skipped"]}
    assert set(by_name) == {n for n, k in kinds.items() if k == "ok"}
    assert set(skipped) == {n for n, k in kinds.items() if k == "bad"}
    assert "empty" in skipped["empty.png"] and "text" in skipped["notes.jpg"]
    for r in report["results"]:
        assert list(r["probabilities"]) == LABELS
        assert sum(r["probabilities"].values()) == pytest.approx(1, abs=1e-4)
        assert len(r["top"]) == 2 and r["prediction"] == r["top"][0]["label"]
    # Conversions are right, not just silent: the same picture gives the same probabilities.
    def same(a: str, b: str, tol: float) -> bool:
        pa, pb = by_name[a]["probabilities"], by_name[b]["probabilities"]
        return all(abs(pa[k] - pb[k]) < tol for k in LABELS)

    assert same("gray.png", "gray16.png", 1e-5)  # 16-bit = 8-bit * 257
    assert same("rgb.png", "rgba.png", 1e-5)  # opaque alpha changes nothing
    assert same("exif.png", "rgb.png", 1e-5)  # turned upright by its EXIF flag
    assert not same("sideways.png", "rgb.png", 1e-5)  # (the rotation does matter to the model)


def test_cli_text_output_and_exit_codes(capsys, tmp_path, small_clip_name, weights_file):
    _picture(3).save(tmp_path / "one.png")
    (tmp_path / "bad.jpg").write_text("not an image")
    model = ["--model", small_clip_name, "--pretrained", str(weights_file)]
    code, out, _ = _cli(capsys, [str(tmp_path / "one.png"), str(tmp_path / "bad.jpg"),
                                 "--labels", "a cat,a dog", *model])
    assert code == 0  # one image classified is success; the bad one is reported
    assert "one.png" in out and "a cat" in out and "%" in out
    assert "skipped" in out and "bad.jpg" in out
    # Nothing classifiable: exit code 1, and the reason is still printed.
    code, out, _ = _cli(capsys, [str(tmp_path / "bad.jpg"), str(tmp_path / "missing.png"),
                                 "--labels", "a cat,a dog", "--json", *model])
    assert code == 1
    report = json.loads(out)
    assert report["results"] == [] and len(report["skipped"]) == 2
    assert "does not exist" in report["skipped"][1]["reason"]
    # No labels: a usage error before any model is loaded.
    code, _, err = _cli(capsys, [str(tmp_path / "one.png"), "--labels", " , ", *model])
    assert code == 2 and "No labels" in err


def test_pad_to_square_keeps_the_whole_picture():
    image = Image.new("RGB", (60, 20), (240, 240, 240))
    ImageDraw.Draw(image).rectangle([0, 5, 9, 14], fill=(200, 0, 0))  # at the far left edge
    square = zeroshot.pad_to_square(image)
    assert square.size == (60, 60)
    a = np.asarray(square)
    assert tuple(a[0, 0]) == (240, 240, 240)  # padded with the background colour
    assert (a[:, :10] == (200, 0, 0)).all(axis=-1).sum() == 100  # the red block is all there


def test_sample_photos_load_offline():
    photos = zeroshot.load_sample_photos()
    assert list(photos) == list(zeroshot.SAMPLE_PHOTOS)
    assert all(p.mode == "RGB" and min(p.size) >= 150 for p in photos.values())


# ------------------------------------------------------------------ the bundled tiny model


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, cx: float, cy: float, r: float, colour) -> None:
    """Draw a shape with Pillow, independently of utils.data's renderer."""
    if shape == "circle":
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=colour)
    elif shape == "square":
        draw.rectangle([cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8], fill=colour)
    elif shape == "triangle":
        draw.regular_polygon((cx, cy, r), 3, fill=colour)
    elif shape == "star":
        points = [(cx + (r if k % 2 == 0 else 0.45 * r) * math.sin(math.pi * k / 5),
                   cy - (r if k % 2 == 0 else 0.45 * r) * math.cos(math.pi * k / 5)) for k in range(10)]
        draw.polygon(points, fill=colour)


@pytest.mark.skipif(not (TINY_CONFIG.exists() and TINY_WEIGHTS.exists()),
                    reason="the tiny CLIP is not built yet (python -m course_tools train clip)")
def test_tiny_model_classifies_shapes_drawn_by_pillow(capsys, tmp_path):
    from utils.data import COLOURS, SHAPES

    # Pillow's own colour names, not the shapes world's RGB values.
    rng = np.random.default_rng(7)
    truth = {}
    for i in range(96):
        colour, shape = COLOURS[i % len(COLOURS)], SHAPES[(i // len(COLOURS)) % len(SHAPES)]
        size = int(rng.choice([64, 96, 128]))
        image = Image.new("RGB", (size, size), tuple(int(v) for v in rng.integers(225, 256, 3)))
        r = size * rng.uniform(0.12, 0.3)
        cx, cy = rng.uniform(r + 1, size - r - 1, 2)
        _draw_shape(ImageDraw.Draw(image), shape, cx, cy, r, colour)
        image.save(tmp_path / f"{i:03d}.png")
        truth[f"{i:03d}.png"] = f"a {colour} {shape}"
    labels = [f"a {c} {s}" for c in COLOURS for s in SHAPES]
    code, out, _ = _cli(capsys, [str(tmp_path), "--labels", ",".join(labels), "--model", "tiny-shapes",
                                 "--json"])
    assert code == 0
    results = json.loads(out)["results"]
    assert len(results) == 96
    correct = sum(r["prediction"] == truth[r["path"].rsplit("/", 1)[-1]] for r in results)
    assert correct / 96 >= 0.9, f"tiny model: {correct}/96 shapes drawn by Pillow right"


# ------------------------------------------------------------------ six languages


@pytest.mark.parametrize("lang", ["en", "fr", "es", "it", "pt", "zh"])
def test_shapes_classes_in_every_language(lang):
    from utils.zeroshot import prompts_for, shapes_classes

    names, templates = shapes_classes(lang)
    assert len(names) == 24 == len(set(names)), names
    assert len(templates) >= 4 and all("{}" in tpl for tpl in templates), templates
    prompts = prompts_for(names[3], templates)  # red star
    assert len(set(prompts)) == len(templates), prompts


def test_shapes_classes_refuses_an_unknown_language():
    from utils.zeroshot import shapes_classes

    with pytest.raises(ValueError, match="speaks en, fr"):
        shapes_classes("de")
