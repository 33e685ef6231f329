"""Bad input, thrown at the command line and the Python API as a new user would.

Every case checks the contract of utils/__main__.py: the exit code (2 for a bad argument,
1 for a failure), no traceback, one line that names the problem (or {"error", "hint"} with
--json), and that nothing outside the output was touched: the bundled files in utils/assets/
keep their sha256, and no temporary file is left behind. Files are made here, at test time.
"""

from __future__ import annotations

import base64
import io
import json
import os
import sys
import types
import warnings
import zlib
from pathlib import Path

import pytest
from PIL import Image, PngImagePlugin

from course_tools import retrain
from utils import assets
from utils.__main__ import DALLE_MAX_N, main
from utils.errors import CourseError, UsageError, to_json

ASSET_FILES = sorted(p for p in assets.ASSETS_DIR.iterdir() if p.is_file())
TINY = ["--model", "tiny-shapes"]


@pytest.fixture(autouse=True)
def sandbox(tmp_path, monkeypatch):
    """Run in tmp_path with a private course cache; afterwards, the bundled files are unchanged
    and no temporary file is left anywhere in tmp_path."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("MULTIMODAL_COURSE_CACHE", raising=False)
    before = {p.name: assets.sha256_of(p) for p in ASSET_FILES}
    yield
    assert {p.name: assets.sha256_of(p) for p in ASSET_FILES} == before, "a bundled file changed"
    leftovers = [p for p in tmp_path.rglob("*") if ".tmp" in p.name]
    assert not leftovers, f"temporary files left behind: {leftovers}"


def run(capsys, *argv: str, entry=main) -> tuple[int, str, str]:
    code = entry(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def refused(capsys, argv: list[str], code: int, *words: str, entry=main) -> str:
    """Run argv; check the exit code and the one-line message naming `words`; return it."""
    got, out, err = run(capsys, *argv, entry=entry)
    assert got == code, (argv, out, err)
    if "--json" in argv:
        report = json.loads(out)
        assert {"error", "hint"} <= set(report), report
        message = report["error"] + " " + report["hint"]
    else:
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert len(lines) == 1, err
        message = lines[0]
    assert "\n" not in message
    for word in words:
        assert word.lower() in message.lower(), (word, message)
    return message


def picture(path: Path, colour=(200, 30, 30), size=(32, 32)) -> Path:
    Image.new("RGB", size, colour).save(path)
    return path


def png_with_huge_text(path: Path) -> Path:
    """A valid PNG whose compressed zTXt chunk inflates past Pillow's MAX_TEXT_CHUNK."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4)).save(buffer, "PNG")
    png = buffer.getvalue()
    data = b"k\x00\x00" + zlib.compress(b"a" * (PngImagePlugin.MAX_TEXT_CHUNK + 10))
    chunk = len(data).to_bytes(4, "big") + b"zTXt" + data + zlib.crc32(b"zTXt" + data).to_bytes(4, "big")
    path.write_bytes(png[:33] + chunk + png[33:])  # after the IHDR chunk
    return path


# ------------------------------------------------------------------ numbers, before any work

USAGE_CASES = [
    (["classify", "x.png", "--labels", "a,b", "--top", "0"], "--top"),
    (["classify", "x.png", "--labels", "a,b", "--top", "x"], "--top"),
    (["classify", "x.png", "--labels", " , "], "--labels"),
    (["classify", "x.png", "--labels", "a,b", "--model", "no-such-model"], "--model"),
    (["classify", "x.png", "--labels", "a,b", "--pretrained", "missing.safetensors"], "--pretrained"),
    (["search", "x", "--images", "nowhere"], "--images"),
    (["search", "x", "--images", ".", "--top", "-1", "--faiss"], "--top"),
    (["search", "x", "--images", ".", "--top", "0"], "--top"),
    (["search", "x", "--images", ".", "--batch-size", "0"], "--batch-size"),
    (["search", "--images", "."], "query"),
    (["search", "x", "--images", ".", "--like", "missing.png"], "--like"),
    (["generate", "a red circle", "--size", "0"], "--size"),
    (["generate", "a red circle", "--iterations", "-1"], "--iterations"),
    (["generate", "a red circle", "--cutouts", "0"], "--cutouts"),
    (["generate", "a red circle", "--lr", "nan"], "--lr"),
    (["generate", "a red circle", "--lr", "inf"], "--lr"),
    (["generate", "a red circle", "--batch", "0"], "--batch"),
    (["generate", "a red circle", "--init-image", "missing.png"], "--init-image"),
    (["generate", "a red circle", "--model", "no-such-model"], "--model"),
    (["dalle", "a red circle", "--n", "0"], "--n"),
    (["dalle", "a red circle", "--n", "100000"], str(DALLE_MAX_N)),
    (["dalle", "a red circle", "--temperature", "nan"], "--temperature"),
    (["dalle", "a red circle", "--temperature", "inf", "--json"], "--temperature"),
    (["dalle", "a red circle", "--temperature", "0"], "--temperature"),
    (["dalle", "a red circle", "--top-k", "0"], "--top-k"),
    (["dalle", "a red circle", "--guidance", "-1"], "--guidance"),
    (["dalle", "a red circle", "--seed", "-1"], "--seed"),
    (["dalle", "a red circle", "--device", "tpu"], "--device"),
    (["classify", "x.png", "--labels", "a,b", "--device", "tpu"], "--device"),
    (["search", "x", "--images", ".", "--device", "tpu"], "--device"),
    (["generate", "a red circle", "--device", "tpu"], "--device"),
    (["quiz", "no-such-lesson"], "lesson"),
    (["no-such-command"], "command"),
]


@pytest.mark.parametrize(("argv", "word"), USAGE_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_arguments_exit_2_with_one_line_naming_them(capsys, argv, word):
    refused(capsys, argv, 2, word)


# `python -m course_tools train` (the authors' retraining) keeps the same contract
TRAIN_USAGE_CASES = [
    (["clip", "--steps", "-1"], "--steps"),
    (["clip", "--steps", "0"], "--steps"),
    (["vq", "--steps", "-1"], "--steps"),
    (["dalle", "--steps", "-1"], "--steps"),
    (["reranker", "--epochs", "2"], "--epochs"),
    (["clip", "--seed", "-1"], "--seed"),
    (["clip", "--out", str(assets.ASSETS_DIR)], "--replace-bundled"),
    (["clip", "--replace-bundled", "--out", "somewhere"], "--replace-bundled"),
    (["no-such-model"], "model"),
]


@pytest.mark.parametrize(("argv", "word"), TRAIN_USAGE_CASES, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_bad_train_arguments_exit_2_with_one_line_naming_them(capsys, argv, word):
    refused(capsys, argv, 2, word, entry=retrain.main)


@pytest.mark.parametrize(("command", "entry"), [
    (["generate", "a red circle", "--out"], main), (["dalle", "a red circle", "--out"], main),
    (["clip", "--out"], retrain.main)])
def test_an_output_under_a_file_is_refused_before_any_work(capsys, tmp_path, command, entry):
    (tmp_path / "a_file").write_text("mine")
    refused(capsys, [*command, str(tmp_path / "a_file" / "x.png")], 2, "--out", "a_file", entry=entry)
    assert (tmp_path / "a_file").read_text() == "mine"


def test_train_out_folder_that_is_not_empty_is_refused(capsys, tmp_path):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "keep.txt").write_text("mine")
    refused(capsys, ["vq", "--out", str(tmp_path / "models")], 2, "--out", "not empty", entry=retrain.main)


def test_debug_shows_the_traceback(capsys):
    code = main(["generate", "a:b:c", "--debug"])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" in err and err.strip().splitlines()[-1].startswith("error:")


# ------------------------------------------------------------------ classify and images


def test_classify_skips_a_png_with_a_huge_text_chunk(capsys, tmp_path):
    bomb = png_with_huge_text(tmp_path / "bomb.png")
    picture(tmp_path / "ok.png")
    code, out, _ = run(capsys, "classify", str(bomb), str(tmp_path / "ok.png"), "--labels",
                       "a red circle,a blue square", *TINY, "--json")
    report = json.loads(out)
    assert code == 0 and len(report["results"]) == 1
    assert "metadata" in report["skipped"][0]["reason"]


def test_classify_only_bad_files_is_an_error_with_the_reasons(capsys, tmp_path):
    (tmp_path / "page.jpg").write_text("<html>not a picture</html>")
    message = refused(capsys, ["classify", str(tmp_path / "page.jpg"), "--labels", "a,b", *TINY, "--json"],
                      1, "no image could be classified")
    assert "skipped" in message


def test_a_huge_file_is_skipped_before_it_is_read(tmp_path, monkeypatch):
    from utils import images

    big = tmp_path / "big.png"
    with open(big, "wb") as f:  # sparse: 300 MiB on paper, nothing on disk
        f.write(b"\x89PNG\r\n\x1a\n")
        f.truncate(300 * 2**20)
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("read whole"))
    with pytest.raises(images.ImageLoadError, match="MiB") as info:
        images.open_image(big)
    assert isinstance(info.value, CourseError) and "not read" in info.value.reason


def test_over_the_pixel_limit_is_a_skip_with_a_reason(tmp_path):
    from utils.images import ImageLoadError, open_image

    with pytest.raises(ImageLoadError, match="over the limit"):
        open_image(picture(tmp_path / "wide.png", size=(300, 200)), max_pixels=10_000)


def test_classify_json_keeps_non_utf8_file_names_exactly(capsys, tmp_path):
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"  # Latin-1 name, not UTF-8
    picture(Path(os.fsdecode(raw)))
    code, out, _ = run(capsys, "classify", os.fsdecode(raw), "--labels", "a red circle,a blue square",
                       *TINY, "--json")
    result = json.loads(out.encode("utf-8"))["results"][0]  # valid UTF-8 and valid JSON
    assert code == 0 and "caf\ufffd.png" in result["path"]
    assert base64.b64decode(result["path_b64"]) == raw


def test_text_output_shows_replacement_characters(capsys, tmp_path):
    raw = os.fsencode(tmp_path) + b"/\xff.png"
    picture(Path(os.fsdecode(raw)))
    code, out, _ = run(capsys, "classify", os.fsdecode(raw), "--labels", "a red circle,a blue square", *TINY)
    assert code == 0 and "\ufffd.png" in out


# ------------------------------------------------------------------ search


@pytest.fixture
def folder(tmp_path) -> Path:
    images = tmp_path / "pictures"
    images.mkdir()
    for name, colour in (("red.png", (220, 20, 20)), ("green.png", (20, 200, 20)), ("blue.png", (20, 20, 220))):
        picture(images / name, colour)
    return images


def test_search_goes_on_in_memory_when_the_cache_cannot_be_written(capsys, tmp_path, monkeypatch, folder):
    (tmp_path / "plain_file").write_text("x")
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "plain_file" / "cache"))  # cannot be created
    code, out, err = run(capsys, "search", "a red square", "--images", str(folder), *TINY, "--json")
    report = json.loads(out)
    assert code == 0 and len(report["results"][0]["hits"]) == 3
    assert err.count("Could not write the index cache") == 1 and "in memory" in err


def test_search_json_keeps_non_utf8_file_names_exactly(capsys, folder):
    raw = os.fsencode(folder) + b"/\xe9t\xe9.png"
    picture(Path(os.fsdecode(raw)))
    code, out, _ = run(capsys, "search", "a red square", "--images", str(folder), *TINY, "--json", "--top", "4")
    hits = json.loads(out.encode("utf-8"))["results"][0]["hits"]
    odd = [h for h in hits if "path_b64" in h]
    assert code == 0 and len(odd) == 1 and base64.b64decode(odd[0]["path_b64"]) == b"\xe9t\xe9.png"


def test_no_progress_bar_codes_when_stderr_is_not_a_terminal(capsys, folder):
    code, _, err = run(capsys, "search", "a red square", "--images", str(folder), *TINY, "--no-cache")
    assert code == 0 and "\x1b[" not in err and "\r" not in err


def test_index_api_refuses_bad_k_and_rows(folder):
    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    index = ImageIndex.build(load_clip("tiny-shapes", verbose=False), folder, cache=None, progress=False)
    for call in (lambda: index.more_like(-1), lambda: index.more_like(3), lambda: index.search("x", k=0)):
        with pytest.raises(UsageError):
            call()
    with pytest.warns(UserWarning, match="Path"):  # a path as a str is searched as text, and said so
        index.search(str(folder / "red.png"), k=1)


def test_a_skip_that_depends_on_a_limit_is_retried(folder, tmp_path):
    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    clip = load_clip("tiny-shapes", verbose=False)
    cache = tmp_path / "index.safetensors"
    first = ImageIndex.build(clip, folder, cache=cache, progress=False, max_pixels=100)
    assert len(first) == 0 and len(first.skipped) == 3
    second = ImageIndex.build(clip, folder, cache=cache, progress=False)
    assert len(second) == 3 and second.stats["embedded"] == 3


def test_a_failed_index_save_leaves_no_temporary_file(folder, tmp_path, monkeypatch):
    import safetensors.torch

    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    index = ImageIndex.build(load_clip("tiny-shapes", verbose=False), folder, cache=None, progress=False)

    def disk_full(*args, **kwargs):
        Path(args[1]).write_bytes(b"half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(OSError):
        index.save(tmp_path / "out" / "index.safetensors")
    assert list((tmp_path / "out").iterdir()) == []


# ------------------------------------------------------------------ generate and dalle


def test_generate_notes_a_prompt_longer_than_clip_reads(capsys):
    prompt = " ".join(["a red circle next to a blue square"] * 40)
    code, out, _ = run(capsys, "generate", prompt, "--iterations", "1", "--cutouts", "1",
                       "--no-animation", "--json")
    assert code == 0 and any("longer than" in note for note in json.loads(out)["notes"])


def test_generate_empty_prompt_is_one_line(capsys):
    refused(capsys, ["generate", " | ", "--json"], 1, "empty")


def test_generate_with_a_broken_vqgan_checkpoint(capsys, tmp_path):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    refused(capsys, ["generate", "a red circle", "--drawer", "vqgan", "--checkpoint", str(bad),
                     *TINY, "--iterations", "1"], 1, "model.ckpt")


def test_generate_nan_is_an_error_and_writes_nothing(capsys, tmp_path, monkeypatch):
    from utils import generate_cli

    real = generate_cli.generate

    def diverging(*args, **kwargs):
        result = real(*args, **kwargs)
        result.final_scores = [float("nan")]
        return result

    monkeypatch.setattr(generate_cli, "generate", diverging)
    refused(capsys, ["generate", "a red circle", "--iterations", "1", "--cutouts", "1", "--json"],
            1, "diverged", "--lr")
    assert not (tmp_path / "outputs").exists() or not any((tmp_path / "outputs").iterdir())


def test_dalle_samples_in_chunks_and_lays_out_a_square_grid(tmp_path):
    import torch

    from utils.viz import image_grid

    grid = image_grid(torch.zeros(10, 3, 8, 8), gap=2)
    assert grid.size == (4 * 8 + 3 * 2, 3 * 8 + 2 * 2)  # 10 images: 4 columns, 3 rows


def test_dalle_api_refuses_bad_numbers():
    from utils.dalle import Sampling, generate

    with pytest.raises(UsageError):
        generate("a red circle", n=0)
    for kwargs in ({"temperature": float("inf")}, {"temperature": float("nan")}, {"top_k": 0}):
        with pytest.raises(UsageError):
            generate("a red circle", sampling=Sampling(**kwargs))


# ------------------------------------------------------------------ quiz


@pytest.mark.parametrize(("content", "words"), [
    (b"{", ["not valid JSON"]),
    (b"[1, 2]", ["problem", "object"]),
    (b'{"lesson": "03-image-search", "pre": "x"}', ["problem"]),
    (b"\xff\xfe{}", ["UTF-8"]),
])
def test_a_malformed_quiz_file_is_one_line(capsys, tmp_path, monkeypatch, content, words):
    quizzes = tmp_path / "quizzes"
    quizzes.mkdir()
    (quizzes / "03-image-search.json").write_bytes(content)
    monkeypatch.setenv("COURSE_QUIZ_DIR", str(quizzes))
    refused(capsys, ["quiz", "03-image-search", "--json"], 1, "03-image-search.json", *words)


def test_quiz_answer_with_a_superscript_digit_is_asked_again():
    from utils import quiz as Q

    quiz = Q.load_quiz("03-image-search")
    out = io.StringIO()
    right, asked = Q.take_quiz(quiz, "pre", "en", stdin=io.StringIO("²\n"), stdout=out)
    assert (right, asked) == (0, 0) and "A-" in out.getvalue()  # the 'choose A-..' message


def test_quiz_export_out_never_overwrites_without_force(capsys, tmp_path):
    from course_tools.quiz_export import main as export

    mine = tmp_path / "notes.md"
    mine.write_text("my notes")
    argv = ["03-image-search", "--format", "markdown", "--out", str(mine)]
    refused(capsys, argv, 2, "--out", "already exists", "--force", entry=export)
    assert mine.read_text() == "my notes"
    code, _, _ = run(capsys, *argv, "--force", entry=export)
    assert code == 0 and mine.read_text().startswith("# ")
    (tmp_path / "a_file").write_text("mine")  # an output under a file: refused before any work
    refused(capsys, [*argv[:-1], str(tmp_path / "a_file" / "x.md")], 2, "--out", "a_file", entry=export)
    assert (tmp_path / "a_file").read_text() == "mine"
    refused(capsys, ["03-image-search", "--format", "pdf"], 2, "--format", entry=export)


def test_markdown_export_cannot_make_links_headings_or_html():
    from course_tools.quiz_export import md_escape

    text = md_escape("see [this](javascript:alert(1))\n# Heading\n<img src=x>")
    assert "](" not in text and "\n" not in text and "<img" not in text


# ------------------------------------------------------------------ train and doctor


def fake_trainer(score: float):
    """A stand-in for a training module: writes one file into args.out, reports `score`."""
    def train_main(args) -> int:
        Path(args.out, "tiny-vq.safetensors").write_bytes(b"new weights")
        print(json.dumps({"psnr_db": score, "weights": str(Path(args.out, "tiny-vq.safetensors"))}))
        return 0
    module = types.ModuleType("fake_trainer")
    module.train_main = train_main
    return module


@pytest.fixture
def fake_vq(monkeypatch):
    def use(score: float):
        monkeypatch.setitem(sys.modules, "fake_trainer", fake_trainer(score))
        monkeypatch.setitem(retrain.MODELS, "vq", ("fake_trainer", "train_main", "fake"))
    return use


def test_train_writes_to_the_user_folder_by_default(capsys, tmp_path, fake_vq):
    fake_vq(30.0)
    for expected in ("vq-seed0", "vq-seed0-2"):  # a second run never overwrites the first
        code, out, _ = run(capsys, "vq", entry=retrain.main)
        assert code == 0 and (tmp_path / "cache" / "models" / expected / "tiny-vq.safetensors").exists()


def test_replace_bundled_refuses_a_model_below_its_bar(capsys, fake_vq):
    fake_vq(3.0)
    refused(capsys, ["vq", "--replace-bundled"], 1, "below the bar", "NOT replaced", entry=retrain.main)


def test_replace_bundled_installs_a_model_that_passes(capsys, tmp_path, fake_vq, monkeypatch):
    bundled = tmp_path / "assets"
    bundled.mkdir()
    (bundled / "tiny-vq.safetensors").write_bytes(b"old weights")
    (bundled / "tiny-vq.safetensors").chmod(0o644)
    monkeypatch.setattr(assets, "ASSETS_DIR", bundled)
    monkeypatch.setattr(assets, "MANIFEST", bundled / "manifest.json")
    fake_vq(30.0)
    code, out, _ = run(capsys, "vq", "--replace-bundled", "--json", entry=retrain.main)
    assert code == 0 and json.loads(out)["replaced"] == ["tiny-vq.safetensors"]
    assert (bundled / "tiny-vq.safetensors").read_bytes() == b"new weights"
    assert (bundled / "tiny-vq.safetensors").stat().st_mode & 0o777 == 0o644  # mode kept
    entry = json.loads((bundled / "manifest.json").read_text())["tiny-vq.safetensors"]
    assert entry["sha256"] == assets.sha256_of(bundled / "tiny-vq.safetensors")


def test_doctor_finds_a_damaged_bundled_file(capsys, tmp_path, monkeypatch):
    copy = tmp_path / "assets"
    copy.mkdir()
    for path in ASSET_FILES:
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "tiny-vq.safetensors").write_bytes(b"damaged")
    monkeypatch.setattr(assets, "ASSETS_DIR", copy)
    monkeypatch.setattr(assets, "MANIFEST", copy / "manifest.json")
    monkeypatch.setattr("utils.models.network_available", lambda timeout=1.0: False)
    code, out, _ = run(capsys, "doctor", "--json")
    report = json.loads(out)
    assert code == 1 and list(report["assets"]) == ["tiny-vq.safetensors"]
    assert "sha256" in report["assets"]["tiny-vq.safetensors"]


# ------------------------------------------------------------------ the contract's pieces


def test_json_never_holds_nan_or_infinity():
    text = to_json({"a": float("nan"), "b": [float("inf"), 1.5], "c": "x"})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": "x"}


def test_atomic_write_cleans_up_on_every_exit_path(tmp_path):
    target = tmp_path / "kept.txt"
    target.write_text("old")
    with pytest.raises(KeyboardInterrupt), assets.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise KeyboardInterrupt
    assert target.read_text() == "old" and sorted(tmp_path.iterdir()) == [target]


def test_checkpoint_error_is_one_class():
    from utils import models, vqgan

    assert models.CheckpointError is vqgan.CheckpointError
    assert issubclass(models.CheckpointError, CourseError)


def test_warnings_of_search_are_shown_once(capsys, folder, tmp_path, monkeypatch):
    (tmp_path / "plain_file").write_text("x")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing may escape as a Python warning
        code, _, err = run(capsys, "search", "a red square", "--images", str(folder), *TINY,
                           "--cache", str(tmp_path / "plain_file" / "i.safetensors"))
    assert code == 0 and err.count("warning:") == 1


def test_interrupted_indexing_resumes(folder, tmp_path):
    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    clip = load_clip("tiny-shapes", verbose=False)
    cache, real, calls = tmp_path / "index.safetensors", clip.encode_images, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C after the first batch
        return real(*args, **kwargs)

    clip.encode_images = interrupted
    with pytest.raises(KeyboardInterrupt):
        ImageIndex.build(clip, folder, cache=cache, batch_size=1, progress=False)
    clip.encode_images = real
    resumed = ImageIndex.build(clip, folder, cache=cache, batch_size=1, progress=False)
    assert (resumed.stats["reused"], resumed.stats["embedded"], len(resumed)) == (1, 2, 3)


def test_a_skipped_file_is_remembered_until_it_changes(folder, tmp_path):
    from utils.models import load_clip
    from utils.retrieval import ImageIndex

    clip, cache = load_clip("tiny-shapes", verbose=False), tmp_path / "index.safetensors"
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n cut short")
    first = ImageIndex.build(clip, folder, cache=cache, progress=False)
    again = ImageIndex.build(clip, folder, cache=cache, progress=False)
    assert [s.item for s in again.skipped] == ["broken.png"] and again.stats["embedded"] == 0
    assert again.skipped[0].reason == first.skipped[0].reason and again.skipped[0].size > 0
    picture(folder / "broken.png", size=(40, 40))  # fixed: new size and mtime, so tried again
    fixed = ImageIndex.build(clip, folder, cache=cache, progress=False)
    assert fixed.skipped == [] and fixed.stats["embedded"] == 1 and len(fixed) == 4


def test_an_output_folder_without_write_permission_is_refused(capsys, tmp_path, monkeypatch):
    # (the tests may run as root, who may write anywhere: the permission check is simulated)
    monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != tmp_path / "locked")
    (tmp_path / "locked").mkdir()
    refused(capsys, ["dalle", "a red circle", "--out", str(tmp_path / "locked" / "x.png")], 2,
            "--out", "permission denied")
    monkeypatch.chdir(tmp_path / "locked")  # the default outputs/ folder is checked too
    refused(capsys, ["generate", "a red circle"], 2, "permission denied")


def test_out_of_memory_is_one_line(capsys, monkeypatch):
    import torch

    from utils import dalle

    def too_big(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 80 GiB")

    monkeypatch.setattr(dalle, "generate", too_big)
    refused(capsys, ["dalle", "a red circle", "--n", "256", "--json"], 1, "out of memory", "--n")


@pytest.mark.parametrize("error", [KeyError("colour"), IndexError("list index out of range")])
def test_a_lookup_error_is_named_a_bug_not_bad_input(capsys, monkeypatch, error):
    """A KeyError's message is only its key: the line names the error and asks for a report."""
    from utils import dalle

    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(dalle, "generate", broken)
    refused(capsys, ["dalle", "a red circle", "--json"], 1, type(error).__name__, "bug", "--debug")


def test_dalle_nan_pixels_are_an_error_and_write_nothing(capsys, tmp_path, monkeypatch):
    from utils import dalle

    real = dalle.generate

    def broken(*args, **kwargs):
        result = real(*args, **kwargs)
        result.images[0, 0, 0, 0] = float("nan")
        return result

    monkeypatch.setattr(dalle, "generate", broken)
    refused(capsys, ["dalle", "a red circle", "--n", "2", "--out", str(tmp_path / "d.png")], 1, "NaN")
    assert not (tmp_path / "d.png").exists()
