"""utils.retrieval: the image index, its cache, search backends, recall@k and the CLI."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from utils import index_cache
from utils.images import open_image
from utils.models import CACHE_ENV, load_clip
from utils.retrieval import (
    CorruptIndexError,
    ImageIndex,
    IndexMismatchError,
    exact_top_k,
    recall_at_k,
)

COLOURS = {"red": (220, 30, 30), "green": (30, 170, 50), "blue": (40, 60, 220),
           "yellow": (235, 210, 40), "purple": (140, 50, 170)}


def _small_clip(name: str, folder: Path, seed: int = 0):
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    path = folder / f"weights-{seed}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return load_clip(name, pretrained=str(path), device="cpu")


@pytest.fixture(scope="module")
def clip(small_clip_name, tmp_path_factory):
    return _small_clip(small_clip_name, tmp_path_factory.mktemp("weights"))


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test gets its own cache folder: nothing is written to the real user cache."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache"


def _draw(path: Path, colour: str, shape: str, size: int = 64, background=(245, 245, 240)):
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    box = (size // 5, size // 5, size * 4 // 5, size * 4 // 5)
    fill = COLOURS[colour]
    if shape == "circle":
        draw.ellipse(box, fill=fill)
    elif shape == "square":
        draw.rectangle(box, fill=fill)
    else:
        draw.polygon([(size // 2, box[1]), (box[2], box[3]), (box[0], box[3])], fill=fill)
    image.save(path)
    return path


def _broken_files(folder: Path) -> dict[str, str]:
    """Write one file of each kind that cannot be indexed; returns {name: word in reason}."""
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("this is not a picture\n")
    full = folder / "_full.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8)).save(full)
    (folder / "cut.jpg").write_bytes(full.read_bytes()[:600])
    full.unlink()
    Image.new("RGB", (3000, 2000)).save(folder / "huge.png")
    return {"empty.jpg": "empty", "notes.jpg": "text", "cut.jpg": "truncated", "huge.png": "pixels"}


def _folder(tmp_path: Path) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for colour, shape in [("red", "circle"), ("green", "triangle"), ("blue", "square"),
                          ("yellow", "circle"), ("purple", "triangle")]:
        _draw(folder / f"{colour}_{shape}.png", colour, shape)
    return folder


def test_build_skips_every_bad_file_and_keeps_the_rest(clip, tmp_path):
    folder = _folder(tmp_path)
    broken = _broken_files(folder)
    index = ImageIndex.build(clip, folder, batch_size=2, max_pixels=10**6, progress=False)
    assert len(index) == 5 and index.stats["skipped"] == 4
    reasons = {s.item: s.reason for s in index.skipped}
    assert set(reasons) == set(broken)
    for name, word in broken.items():
        assert word in reasons[name], (name, reasons[name])
    # Batched embeddings equal one-image-at-a-time embeddings, in the folder's sorted order.
    direct = clip.encode_images([open_image(p) for p in index.paths])
    assert torch.allclose(index.embeddings, direct, atol=1e-5)
    assert index.items == sorted(index.items)


def test_search_by_text_image_and_embedding(clip, tmp_path):
    folder = _folder(tmp_path)
    index = ImageIndex.build(clip, folder, progress=False)
    hits = index.search("a red circle", k=3)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].score >= hits[1].score >= hits[2].score
    text = clip.encode_texts(["a red circle"])[0]
    expected = (index.embeddings @ text).topk(3)
    assert [h.index for h in hits] == expected.indices.tolist()
    # An image query finds itself first, with cosine similarity 1.
    best = index.search(folder / "blue_square.png", k=1)[0]
    assert best.item == "blue_square.png" and best.score == pytest.approx(1.0, abs=1e-5)
    assert index.search(index.embeddings[2], k=1)[0].index == 2
    big_jpeg = folder / "big.jpg"  # decoded at reduced size (JPEG draft) in build and query alike
    Image.open(folder / "red_circle.png").resize((512, 512)).save(big_jpeg)
    with_jpeg = ImageIndex.build(clip, folder, cache=None, progress=False)
    assert with_jpeg.search(big_jpeg, k=1)[0].score == pytest.approx(1.0, abs=1e-5)
    # "More like this" leaves the image itself out.
    assert all(h.index != 2 for h in index.more_like(2, k=4)) and len(index.more_like(2, k=4)) == 4


def test_second_build_reuses_the_cache_and_embeds_only_changes(clip, tmp_path, cache_dir):
    folder = _folder(tmp_path)
    broken = _broken_files(folder)
    first = ImageIndex.build(clip, folder, progress=False, max_pixels=10**6)
    assert (first.stats["embedded"], first.stats["reused"]) == (5, 0)
    assert Path(first.stats["cache"]).is_relative_to(cache_dir)
    assert not any(p.name.startswith(".") or p.suffix == ".safetensors" for p in folder.iterdir())

    second = ImageIndex.build(clip, folder, progress=False, max_pixels=10**6)
    assert (second.stats["embedded"], second.stats["reused"]) == (0, 5)
    assert {s.item for s in second.skipped} == set(broken)  # still reported, not re-read
    assert torch.equal(first.embeddings, second.embeddings)

    _draw(folder / "green_square.png", "green", "square")  # new
    _draw(folder / "red_circle.png", "red", "square")  # changed content
    os.utime(folder / "red_circle.png", ns=(1, 1))
    (folder / "purple_triangle.png").unlink()  # removed
    third = ImageIndex.build(clip, folder, progress=False, max_pixels=10**6)
    assert third.stats["embedded"] == 2 and third.stats["reused"] == 3
    assert third.stats["removed"] == 1 and len(third) == 5
    fresh = ImageIndex.build(clip, folder, cache=None, progress=False, max_pixels=10**6)
    assert fresh.items == third.items
    assert torch.allclose(fresh.embeddings, third.embeddings, atol=1e-6)


def test_cache_of_another_model_is_refused(clip, small_clip_name, tmp_path):
    folder = _folder(tmp_path)
    cache = tmp_path / "index.safetensors"
    ImageIndex.build(clip, folder, cache=cache, progress=False)
    other = _small_clip(small_clip_name, tmp_path, seed=1)  # same architecture, other weights
    other.pretrained = clip.pretrained  # even under the same name: the fingerprint differs
    other.extra.pop("fingerprint", None)
    with pytest.raises(IndexMismatchError, match="rebuild"):
        ImageIndex.build(other, folder, cache=cache, progress=False)
    with pytest.raises(IndexMismatchError, match="made by"):
        ImageIndex.load(cache, clip=other)
    rebuilt = ImageIndex.build(other, folder, cache=cache, rebuild=True, progress=False)
    assert rebuilt.stats["embedded"] == 5
    # The automatic cache location is per model and weights: no clash, nothing to refuse.
    assert index_cache.default_cache_path(folder, clip) != index_cache.default_cache_path(folder, other)
    assert ImageIndex.load(cache, clip=other).model == index_cache.model_identity(other)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not-normalised", "wrong-count"])
def test_corrupt_cache_is_rebuilt_not_trusted(clip, tmp_path, damage):
    folder = _folder(tmp_path)
    cache = tmp_path / "index.safetensors"
    good = ImageIndex.build(clip, folder, cache=cache, progress=False)
    if damage == "garbage":
        cache.write_bytes(b"\x00" * 100)
    elif damage == "truncated":
        cache.write_bytes(cache.read_bytes()[:-50])
    else:
        bad = ImageIndex.load(cache)
        if damage == "not-normalised":
            bad.embeddings = bad.embeddings * 3
        else:
            bad.items = bad.items[:-1]
        bad.save(cache)
    with pytest.raises(CorruptIndexError, match="Delete it"):
        ImageIndex.load(cache)
    with pytest.warns(UserWarning, match="Rebuilding"):
        rebuilt = ImageIndex.build(clip, folder, cache=cache, progress=False)
    assert rebuilt.stats["embedded"] == 5
    assert torch.allclose(rebuilt.embeddings, good.embeddings, atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_save_load_roundtrip_and_float16(clip, tmp_path, suffix):
    index = ImageIndex.build(clip, _folder(tmp_path), cache=None, progress=False)
    path = index.save(tmp_path / f"ix{suffix}")
    loaded = ImageIndex.load(path, clip=clip)
    assert loaded.items == index.items and torch.equal(loaded.embeddings, index.embeddings)
    assert loaded.root == index.root
    small = ImageIndex.load(index.save(tmp_path / f"half{suffix}", float16=True), clip=clip)
    assert small.embeddings.dtype == torch.float16
    assert path.stat().st_size > (tmp_path / f"half{suffix}").stat().st_size
    a, b = index.search("a blue square", k=5), small.search("a blue square", k=5)
    assert max(abs(x.score - y.score) for x, y in zip(a, b)) < 2e-3
    with pytest.raises(ValueError, match="safetensors"):
        index.save(tmp_path / "ix.pkl")


def test_interrupted_build_keeps_what_was_embedded(clip, tmp_path, monkeypatch):
    folder = _folder(tmp_path)
    cache = tmp_path / "index.safetensors"
    calls = {"n": 0}
    real = type(clip).encode_images

    def flaky(self, images, batch_size=64, progress=False):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real(self, images, batch_size)

    monkeypatch.setattr(type(clip), "encode_images", flaky)
    with pytest.raises(KeyboardInterrupt):
        ImageIndex.build(clip, folder, cache=cache, batch_size=2, progress=False)
    monkeypatch.setattr(type(clip), "encode_images", real)
    assert len(ImageIndex.load(cache)) == 2
    resumed = ImageIndex.build(clip, folder, cache=cache, batch_size=2, progress=False)
    assert (resumed.stats["reused"], resumed.stats["embedded"]) == (2, 3)


def test_in_memory_dataset_with_captions_and_recall(clip):
    items = [(Image.new("RGB", (32, 32), c), f"a {n} image")
             for n, c in [("red", (255, 0, 0)), ("green", (0, 255, 0)), ("blue", (0, 0, 255))]]
    items.append(("not an image", "broken"))
    index = ImageIndex.build(clip, items, batch_size=2, progress=False)
    assert index.items == ["#0", "#1", "#2"] and index.captions[1] == "a green image"
    assert index.skipped[0].item == "#3" and "could not be processed" in index.skipped[0].reason
    # An index whose "images" are the captions' own text embeddings has perfect recall.
    captions = ["a red circle", "a blue square", "a green triangle", "a red circle"]
    perfect = ImageIndex(embeddings=clip.encode_texts(captions), items=list("abcd"),
                         model=index.model, captions=captions, clip=clip)
    assert perfect.recall_at_k(ks=(1, 2)) == {1: 1.0, 2: 1.0}
    # Chosen queries: "a blue square" is found first; a caption no image has cannot be scored.
    assert perfect.recall_at_k(ks=(1,), queries=["a blue square"]) == {1: 1.0}
    swapped = ["a blue square", "a red circle", "a green triangle", "a blue square"]
    # its image is 3rd: the two images that ARE red circles score higher
    assert perfect.recall_at_k(swapped, ks=(2, 3), queries=["a red circle"]) == {2: 0.0, 3: 1.0}
    with pytest.raises(ValueError, match="relevant"):
        perfect.recall_at_k(queries=["a yellow star"])


def test_recall_at_k_by_hand():
    scores = np.array([[0.9, 0.8, 0.1],    # relevant item 1 ranks 2nd
                       [0.2, 0.3, 0.95],   # relevant item 2 ranks 1st
                       [0.5, 0.6, 0.7]])   # relevant item 0 ranks 3rd
    relevant = np.eye(3, dtype=bool)[[1, 2, 0]]
    assert recall_at_k(scores, relevant, ks=(1, 2, 3)) == {1: 1 / 3, 2: 2 / 3, 3: 1.0}
    with pytest.raises(ValueError, match="relevant"):
        recall_at_k(scores, np.zeros((3, 3), bool))


def test_chunked_exact_search_and_faiss_agree():
    gen = torch.Generator().manual_seed(0)
    emb = torch.nn.functional.normalize(torch.randn(5000, 64, generator=gen), dim=1)
    queries = torch.nn.functional.normalize(torch.randn(7, 64, generator=gen), dim=1)
    full = (queries @ emb.T).topk(10, dim=1)
    scores, ids = exact_top_k(emb, queries, 10, chunk=333)
    assert torch.equal(ids, full.indices) and torch.allclose(scores, full.values)
    pytest.importorskip("faiss")
    index = ImageIndex(embeddings=emb, items=[str(i) for i in range(5000)], model={})
    exact = index.search_embeddings(queries, 10)
    index.use_faiss()  # IndexFlatIP: exact
    assert index.backend == "faiss:Flat"
    f_scores, f_ids = index.search_embeddings(queries, 10)
    assert torch.equal(f_ids, exact[1])
    assert torch.allclose(f_scores, exact[0], atol=1e-5)


def test_folder_of_only_broken_files_gives_an_empty_index(clip, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    broken = _broken_files(folder)
    index = ImageIndex.build(clip, folder, max_pixels=10**6, progress=False)
    assert len(index) == 0 and {s.item for s in index.skipped} == set(broken)
    assert index.search("a red circle", k=5) == []
    again = ImageIndex.build(clip, folder, max_pixels=10**6, progress=False)
    assert again.stats["embedded"] == 0 and len(again.skipped) == len(broken)


def test_unwritable_cache_warns_but_builds(clip, tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="Could not write"):
        index = ImageIndex.build(clip, _folder(tmp_path), cache=blocker / "ix.safetensors",
                                 progress=False)
    assert len(index) == 5
    import safetensors.torch
    from safetensors import SafetensorError

    def disk_full(*args, **kwargs):  # what safetensors raises when the disk is full
        raise SafetensorError("Error while serializing: I/O error: No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.warns(UserWarning, match="No space left"):
        index = ImageIndex.build(clip, tmp_path / "images", cache=tmp_path / "ix.safetensors",
                                 progress=False)
    assert len(index) == 5 and not (tmp_path / "ix.safetensors").exists()


def test_query_of_the_wrong_size_is_explained(clip, tmp_path):
    index = ImageIndex.build(clip, _folder(tmp_path), progress=False)
    with pytest.raises(ValueError, match="dimension"):
        index.search_embeddings(torch.zeros(3), 1)
    with pytest.raises(TypeError, match="Cannot search"):
        index.search(3.5)


def _cli(args: list[str], capsys) -> dict:
    from utils.__main__ import main

    code = main(["search", *args, "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    return out


def test_cli_json_reports_cache_use_and_broken_files(clip, tmp_path, capsys):
    folder = _folder(tmp_path)
    broken = _broken_files(folder)
    model = ["--model", clip.name, "--pretrained", str(clip.pretrained), "--max-pixels", "1000000"]
    first = _cli(["a green triangle", "--images", str(folder), "--top", "3", *model], capsys)
    assert first["index"]["embedded"] == 5 and first["index"]["reused"] == 0
    assert {s["path"] for s in first["index"]["skipped_files"]} == set(broken)
    assert [h["rank"] for h in first["results"][0]["hits"]] == [1, 2, 3]
    second = _cli(["a green triangle", "--images", str(folder), "--top", "3", "--faiss",
                   "--like", str(folder / "red_circle.png"), *model], capsys)
    assert second["index"]["embedded"] == 0 and second["index"]["reused"] == 5
    assert second["results"][0]["hits"] == first["results"][0]["hits"]  # faiss = exact
    assert second["results"][1]["hits"][0]["path"] == "red_circle.png"


def test_cli_missing_folder_is_an_error(clip, tmp_path, capsys):
    from utils.__main__ import main

    code = main(["search", "x", "--images", str(tmp_path / "nope"), "--model", clip.name,
                 "--pretrained", str(clip.pretrained), "--json"])
    assert code == 2 and "not a folder" in json.loads(capsys.readouterr().out)["error"]


def _draw_star(draw: ImageDraw.ImageDraw, cx: float, cy: float, r: float, fill) -> None:
    import math

    points = [(cx + (r if i % 2 == 0 else r * 0.45) * math.sin(i * math.pi / 5),
               cy - (r if i % 2 == 0 else r * 0.45) * math.cos(i * math.pi / 5)) for i in range(10)]
    draw.polygon(points, fill=fill)


def test_cli_finds_shapes_drawn_by_another_program(tmp_path, capsys):
    """The acceptance check: PIL-drawn shapes on light backgrounds plus broken files, searched
    by `python -m utils search --json` with the bundled tiny CLIP; the second run reuses the cache."""
    from utils.data import COLOUR_RGB, HELD_OUT

    folder = tmp_path / "drawings"
    folder.mkdir()
    rng = np.random.default_rng(0)
    pairs = [(c, s) for c in ("red", "green", "blue", "yellow", "orange", "purple")
             for s in ("circle", "square", "triangle", "star") if (c, s) not in HELD_OUT]
    for colour, shape in pairs:
        background = tuple(int(v) for v in rng.integers(225, 256, 3))
        image = Image.new("RGB", (96, 96), background)
        draw = ImageDraw.Draw(image)
        cx, cy, r = rng.uniform(38, 58), rng.uniform(38, 58), rng.uniform(22, 32)
        fill = COLOUR_RGB[colour]
        if shape == "circle":
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=fill)
        elif shape == "square":
            draw.rectangle((cx - r * 0.8, cy - r * 0.8, cx + r * 0.8, cy + r * 0.8), fill=fill)
        elif shape == "triangle":
            draw.polygon([(cx, cy - r), (cx + r, cy + r * 0.8), (cx - r, cy + r * 0.8)], fill=fill)
        else:
            _draw_star(draw, cx, cy, r, fill)
        image.save(folder / f"{colour}-{shape}.{'png' if len(colour) % 2 else 'jpg'}")
    broken = _broken_files(folder)
    queries = [f"a {c} {s}" for c, s in pairs]
    args = [*queries, "--images", str(folder), "--model", "tiny-shapes", "--top", "3",
            "--max-pixels", "1000000"]
    first = _cli(args, capsys)
    assert first["index"]["embedded"] == len(pairs) and first["index"]["reused"] == 0
    assert {s["path"] for s in first["index"]["skipped_files"]} == set(broken)
    right = [Path(r["hits"][0]["path"]).stem == r["query"][2:].replace(" ", "-")
             for r in first["results"]]
    assert sum(right) >= 0.75 * len(pairs), [r["hits"][0]["path"] for r in first["results"]]
    second = _cli(args, capsys)
    assert second["index"]["embedded"] == 0 and second["index"]["reused"] == len(pairs)
    assert second["results"] == first["results"]
    assert set(second["seconds"]) == {"load_model", "index", "search"}
    assert {s["path"] for s in second["index"]["skipped_files"]} == set(broken)


class _NoScan(list):
    """A list of items that fails if anything walks through it, and counts the items read."""

    reads = 0

    def __iter__(self):
        raise AssertionError("the whole list of items was scanned")

    def __getitem__(self, i):
        self.reads += 1
        return super().__getitem__(i)


def test_a_hit_looks_up_only_its_own_path(clip, tmp_path):
    """search() finds each hit's file by its row: it never walks the N items (was O(N) per hit)."""
    folder = _folder(tmp_path)
    index = ImageIndex.build(clip, folder, cache=None, progress=False)
    expected = {item: folder.resolve() / item for item in index.items}
    index.items = _NoScan(index.items)
    hits = index.search("a red circle", k=3) + index.more_like(0, k=2)
    assert hits and all(h.path == expected[h.item] for h in hits)
    assert index.items.reads <= 2 * len(hits), f"{index.items.reads} items read for {len(hits)} hits"
    listed = ImageIndex.build(clip, sorted(folder.iterdir()), cache=None, progress=False)
    assert listed.path(0) == Path(listed.items[0]) and listed.path(0).is_absolute()
    in_memory = ImageIndex.build(clip, [Image.new("RGB", (8, 8))], progress=False)
    assert in_memory.search("a red circle", k=1)[0].path is None


def test_a_bug_in_preprocessing_is_raised_not_reported_as_a_bad_file(clip, tmp_path, monkeypatch):
    """Only an unreadable file is skipped; an error of our own code keeps its type and message."""
    def broken(image):
        raise RuntimeError("bug in the transform")

    monkeypatch.setattr(clip, "preprocess", broken)
    with pytest.raises(RuntimeError, match="bug in the transform"):
        ImageIndex.build(clip, _folder(tmp_path), cache=None, progress=False)
    with pytest.raises(RuntimeError, match="bug in the transform"):
        ImageIndex.build(clip, [Image.new("RGB", (8, 8))], progress=False)


def test_build_options_are_one_config(clip, tmp_path):
    from utils.index_cache import BuildConfig

    folder = _folder(tmp_path)
    by_config = ImageIndex.build(clip, folder, BuildConfig(cache=None, progress=False, float16=True))
    by_keywords = ImageIndex.build(clip, folder, cache=None, progress=False, float16=True)
    assert by_config.embeddings.dtype == torch.float16
    assert torch.equal(by_config.embeddings, by_keywords.embeddings)
    with pytest.raises(TypeError, match="batchsize"):
        ImageIndex.build(clip, folder, batchsize=8)
