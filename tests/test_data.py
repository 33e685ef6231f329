"""The shapes world: deterministic, varied, anti-aliased, with honest captions and splits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from utils import data


def test_same_seed_same_images_and_captions():
    a, attrs_a = data.render_batch(20, seed=3)
    b, attrs_b = data.render_batch(20, seed=3)
    c, _ = data.render_batch(20, seed=4)
    assert a.dtype == np.uint8 and a.shape == (20, 64, 64, 3)
    assert np.array_equal(a, b) and attrs_a == attrs_b
    assert not np.array_equal(a, c)


def test_prefix_of_a_bigger_batch_is_the_smaller_batch():
    small, attrs_small = data.render_batch(data.CHUNK, seed=1)
    big, attrs_big = data.render_batch(data.CHUNK + 10, seed=1)
    assert np.array_equal(small, big[: data.CHUNK]) and attrs_small == attrs_big[: data.CHUNK]


def test_float_tensor_output_matches_uint8():
    images, _ = data.render_batch(8, seed=0)
    floats, _ = data.render_batch(8, seed=0, as_tensor=True)
    assert floats.shape == (8, 3, 64, 64) and floats.dtype == torch.float32
    assert 0.0 <= floats.min() and floats.max() <= 1.0
    diff = np.abs(floats.permute(0, 2, 3, 1).numpy() * 255 - images.astype(np.float32))
    assert diff.max() <= 0.5 + 1e-3


def test_every_attribute_value_appears():
    _, attrs = data.render_batch(600, seed=0, split="all")
    for key, values in (("colour", data.COLOURS), ("shape", data.SHAPES),
                        ("size", data.SIZES), ("position", data.POSITIONS)):
        counts = {v: sum(a[key] == v for a in attrs) for v in values}
        assert min(counts.values()) > 600 / len(values) / 2, (key, counts)
    assert len(data.COLOURS) >= 6 and {"red", "green", "blue", "yellow"} <= set(data.COLOURS)
    assert {"circle", "square", "triangle"} <= set(data.SHAPES) and len(data.SHAPES) == 4


def test_splits_keep_held_out_pairs_apart():
    held = set(data.HELD_OUT)
    for split in ("train", "test"):
        _, attrs = data.render_batch(500, seed=2, split=split)
        assert not {(a["colour"], a["shape"]) for a in attrs} & held
    _, attrs = data.render_batch(200, seed=2, split="heldout")
    assert {(a["colour"], a["shape"]) for a in attrs} == held
    train, _ = data.render_batch(16, seed=5, split="train")
    test, _ = data.render_batch(16, seed=5, split="test")
    assert not np.array_equal(train, test)
    with pytest.raises(ValueError, match="split"):
        data.render_batch(2, split="validation")


def test_captions_name_the_attributes():
    _, attrs = data.render_batch(300, seed=0)
    for a in attrs:
        cap = a["caption"]
        assert a["colour"] in cap and a["shape"] in cap, cap
        assert not cap.startswith("a orange") and " a orange" not in cap, cap
    templates_used = {len(a["caption"].split()) for a in attrs}
    assert len(templates_used) >= 4  # several templates, not one
    assert data.caption({"colour": "orange", "shape": "star", "size": "large", "position": "top"},
                        "a {size} {colour} {shape} {where}") == "a large orange star at the top"


def _mask_of_shape(image: np.ndarray, rgb_reference: np.ndarray) -> np.ndarray:
    return np.abs(image.astype(int) - rgb_reference).sum(-1) < 40


def test_shape_sits_where_its_position_says_and_size_matches():
    images, attrs = data.render_batch(200, seed=7, split="all")
    checked = 0
    for img, a in zip(images, attrs):
        # the fill colour is the most common colour that differs from the corners (background)
        corners = np.stack([img[0, 0], img[0, -1], img[-1, 0], img[-1, -1]]).astype(int)
        far = np.abs(img[:, :, None, :].astype(int) - corners[None, None]).sum(-1).min(-1) > 90
        if far.sum() < 20:
            continue  # a textured background or a low-contrast pair: skip this image
        ys, xs = np.nonzero(far)
        dx, dy = xs.mean() / 64 - 0.5, ys.mean() / 64 - 0.5
        if abs(abs(dx) - abs(dy)) < 0.08:
            continue  # near a diagonal, where the two neighbouring words both fit
        expected = ("left" if dx < 0 else "right") if abs(dx) > abs(dy) else ("top" if dy < 0 else "bottom")
        assert a["position"] == expected, (a, dx, dy)
        area = far.mean()
        assert (area < 0.12) if a["size"] == "small" else (area > 0.04), (a, area)
        checked += 1
    assert checked > 50


def test_edges_are_anti_aliased():
    images, attrs = data.render_batch(64, seed=11, split="all")
    # pixels between background and fill exist: more than 2 distinct colours along edges
    intermediate = 0
    for img in images:
        grey = img.astype(float).mean(-1)
        jumps = np.abs(np.diff(grey, axis=1))
        intermediate += ((jumps > 5) & (jumps < 60)).sum()
    assert intermediate > 64 * 20


def test_backgrounds_vary():
    images, _ = data.render_batch(200, seed=0)
    corner_std = images[:, :8, :8].reshape(200, -1).astype(float).std(-1)
    assert (corner_std < 2).mean() > 0.2  # plain backgrounds
    assert (corner_std > 8).mean() > 0.1  # textured or noisy ones
    brightness = images[:, 0, 0].astype(float).mean(-1)
    assert (brightness > 200).mean() > 0.3 and (brightness < 120).mean() > 0.1


def test_sample_images():
    pairs = data.sample_images(3, seed=0)
    assert len(pairs) == 3 and pairs[0][0].size == (64, 64) and pairs[0][0].mode == "RGB"
    assert isinstance(pairs[0][1], str)


def test_other_sizes_render():
    images, _ = data.render_batch(4, seed=0, size=32)
    assert images.shape == (4, 32, 32, 3)
    prompts, pairs = data.class_prompts()
    assert len(prompts) == len(data.COLOURS) * len(data.SHAPES) == len(pairs)
    assert "an orange circle" in prompts
