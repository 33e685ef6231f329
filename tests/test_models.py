"""load_clip: every checkpoint format, the offline failure, and the CLIP object's contract."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from device_params import DEVICES
from PIL import Image

from utils import models
from utils.models import CheckpointError, PretrainedUnavailable, load_clip

IMAGES = [Image.new("RGB", (40, 30), c) for c in ("red", "navy", "gold")]
TEXTS = ["a red square", "a blue circle", "a yellow triangle"]


def _random_model(name: str, seed: int = 0):
    import open_clip

    torch.manual_seed(seed)
    return open_clip.create_model(name)


def _save(state: dict, path: Path, fmt: str) -> None:
    if fmt == "safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "wrapped":  # a training checkpoint: {"state_dict": {"module.x": ...}}
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    else:
        torch.save(state, path)


@pytest.mark.parametrize("fmt,suffix", [("safetensors", ".safetensors"), ("plain", ".pt"),
                                        ("plain", ".bin"), ("wrapped", ".pt")])
def test_local_checkpoint_reloads_to_identical_embeddings(small_clip_name, tmp_path, fmt, suffix):
    reference = _random_model(small_clip_name).eval()
    path = tmp_path / f"weights{suffix}"
    _save(reference.state_dict(), path, fmt)

    clip = load_clip(small_clip_name, pretrained=str(path), device="cpu")
    assert str(path) in clip.description
    assert not clip.is_tiny

    # Same model, same inputs: identical embeddings to the reference's own forward pass.
    batch = torch.stack([clip.preprocess(im) for im in IMAGES])
    with torch.no_grad():
        ref_img = torch.nn.functional.normalize(reference.encode_image(batch), dim=-1)
        ref_txt = torch.nn.functional.normalize(reference.encode_text(clip.tokenizer(TEXTS)), dim=-1)
    assert torch.allclose(clip.encode_images(IMAGES), ref_img, atol=1e-6)
    assert torch.allclose(clip.encode_texts(TEXTS), ref_txt, atol=1e-6)


def test_embeddings_are_normalised_and_batched(small_clip_name, tmp_path):
    path = tmp_path / "w.safetensors"
    _save(_random_model(small_clip_name, seed=1).state_dict(), path, "safetensors")
    clip = load_clip(small_clip_name, pretrained=str(path), device="cpu")
    many = IMAGES * 7  # 21 images in batches of 4 must equal one batch of 21
    small_batches = clip.encode_images(many, batch_size=4)
    assert small_batches.shape == (21, 32)
    assert torch.allclose(small_batches.norm(dim=-1), torch.ones(21), atol=1e-5)
    assert torch.allclose(small_batches, clip.encode_images(many, batch_size=64), atol=1e-5)
    assert not small_batches.requires_grad
    # Grayscale / RGBA inputs are converted, not rejected.
    odd = [IMAGES[0].convert("L"), IMAGES[1].convert("RGBA")]
    assert clip.encode_images(odd).shape == (2, 32)


def test_drop_text_tower_frees_its_weights_and_keeps_the_embeddings(small_clip_name, tmp_path):
    """Lesson 04 frees CLIP's text tower once the prompt is embedded (Binder's 2 GB)."""
    path = tmp_path / "w.safetensors"
    _save(_random_model(small_clip_name, seed=2).state_dict(), path, "safetensors")
    clip = load_clip(small_clip_name, pretrained=str(path), device="cpu")
    before_txt, before_img = clip.encode_texts(TEXTS), clip.encode_images(IMAGES)
    visual = sum(p.numel() * p.element_size() for p in clip.model.visual.parameters())
    everything = sum(t.numel() * t.element_size() for t in [*clip.model.parameters(), *clip.model.buffers()])
    freed = clip.drop_text_tower(TEXTS[:2])
    left = sum(t.numel() * t.element_size() for t in [*clip.model.parameters(), *clip.model.buffers()])
    assert freed == everything - left and left == visual + clip.model.logit_scale.numel() * 4  # only images
    assert torch.equal(clip.encode_texts(TEXTS[1::-1]), before_txt[[1, 0]])  # answered from memory
    assert torch.allclose(clip.encode_images(IMAGES), before_img, atol=1e-6)
    assert clip.embed_dim == before_txt.shape[1]
    with pytest.raises(ValueError, match="drop_text_tower"):
        clip.encode_texts(TEXTS[2])  # never embedded: the tower that could is gone


@pytest.mark.parametrize("damage", ["truncate", "garbage"])
def test_corrupt_checkpoint_names_the_file(small_clip_name, tmp_path, damage):
    path = tmp_path / "broken.safetensors"
    _save(_random_model(small_clip_name).state_dict(), path, "safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3] if damage == "truncate" else b"not a checkpoint" * 10)
    with pytest.raises(CheckpointError, match="broken.safetensors"):
        load_clip(small_clip_name, pretrained=str(path), device="cpu")


def test_checkpoint_of_another_model_is_refused_clearly(small_clip_name, tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"visual.conv1.weight": torch.zeros(3, 3)}, path)
    with pytest.raises(CheckpointError, match="other.pt"):
        load_clip(small_clip_name, pretrained=str(path), device="cpu")


def test_garbage_pt_checkpoint_is_refused_clearly(small_clip_name, tmp_path):
    path = tmp_path / "garbage.pt"
    path.write_bytes(b"this is no pickle" * 20)
    with pytest.raises(CheckpointError, match="garbage.pt"):
        load_clip(small_clip_name, pretrained=str(path), device="cpu")


def test_an_error_while_building_the_model_keeps_its_meaning(small_clip_name, tmp_path, monkeypatch):
    """Only reading the checkpoint is reported as a damaged file: a model that cannot be built
    (here: its tokenizer files are missing) raises its own error, unchanged."""
    import open_clip

    path = tmp_path / "fine.safetensors"
    _save(_random_model(small_clip_name).state_dict(), path, "safetensors")

    def no_tokenizer(*args, **kwargs):
        raise OSError("tokenizer.json of xlm-roberta-base is not in the cache")

    monkeypatch.setattr(open_clip, "create_model_and_transforms", no_tokenizer)
    with pytest.raises(OSError, match="tokenizer.json of xlm-roberta-base") as info:
        load_clip(small_clip_name, pretrained=str(path), device="cpu")
    assert not isinstance(info.value, CheckpointError)


def test_embed_dim_is_read_from_the_model_without_running_it(small_clip_name, tmp_path, monkeypatch):
    """D comes from the model's shapes: the tiny CLIP's config file, an open_clip model's config."""
    import json

    import open_clip

    path = tmp_path / "w.safetensors"
    _save(_random_model(small_clip_name).state_dict(), path, "safetensors")
    small = load_clip(small_clip_name, pretrained=str(path), device="cpu")
    tiny = load_clip("tiny-shapes", device="cpu")
    expected = [(small, open_clip.get_model_config(small_clip_name)["embed_dim"]),
                (tiny, json.loads(models.TINY_CONFIG.read_text())["embed_dim"])]
    assert expected[0][1] != expected[1][1]  # two different sizes, so a constant cannot pass
    for clip, dim in expected:
        monkeypatch.setattr(clip.model, "encode_text", lambda *a: pytest.fail("embed_dim ran the text encoder"))
        assert clip.embed_dim == dim
        monkeypatch.undo()
        assert clip.encode_texts(["a red circle"]).shape == (1, dim)


def test_missing_local_file_is_clear(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_clip("ViT-B-32", pretrained=str(tmp_path / "nope.safetensors"))


def test_default_repo_constant_matches_open_clip():
    import open_clip

    cfg = open_clip.get_pretrained_cfg(models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED)
    assert cfg["hf_hub"].rstrip("/") == models.DEFAULT_HF_REPO


def test_uncached_pretrained_fails_clearly_offline(monkeypatch, tmp_path):
    monkeypatch.setattr(models, "hf_cache_dir", lambda: tmp_path / "empty-cache")
    monkeypatch.setattr(models, "cached_weights", lambda name, tag: None)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(PretrainedUnavailable) as info:
        load_clip("ViT-B-32", "laion2b_s34b_b79k", device="cpu")
    message = str(info.value)
    assert "ViT-B-32/laion2b_s34b_b79k" in message
    assert str(tmp_path / "empty-cache") in message
    assert "tiny-shapes" in message


def _fresh_process(code: str, **env) -> dict:
    """Run `code` in a new interpreter; it must print a JSON dict on its last line."""
    import json
    import os

    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **env}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=full_env, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_offline_failure_is_fast_by_construction(tmp_path):
    """Failing offline must take well under 2 s: it may not import torch or open_clip
    (together about 3 s) nor try a download (open_clip alone retries for about 45 s)."""
    result = _fresh_process(
        "import json, sys, time\n"
        "start = time.perf_counter()\n"
        "from utils.models import load_clip, PretrainedUnavailable\n"
        "try:\n"
        "    load_clip('ViT-B-32', 'laion2b_s34b_b79k')\n"
        "    failed = False\n"
        "except PretrainedUnavailable:\n"
        "    failed = True\n"
        "print(json.dumps({'failed': failed, 'seconds': time.perf_counter() - start,\n"
        "                  'torch': 'torch' in sys.modules, 'open_clip': 'open_clip' in sys.modules}))",
        HF_HUB_CACHE=str(tmp_path / "empty"),
    )
    print(f"offline failure took {result['seconds']:.2f} s")
    assert result["failed"]
    assert not result["torch"] and not result["open_clip"], result


def test_unreachable_network_fails_without_retrying(monkeypatch):
    # No HF_HUB_OFFLINE, but nothing answers: one connect with a 1.5 s timeout decides,
    # and nothing is downloaded (no 45 s of retries).
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(models, "cached_weights", lambda name, tag: None)
    attempts = []

    def refuse(address, timeout=None):
        attempts.append((address, timeout))
        raise OSError("network unreachable")

    monkeypatch.setattr(models.socket, "create_connection", refuse)
    with pytest.raises(PretrainedUnavailable):
        load_clip("ViT-B-32", "laion2b_s34b_b79k", device="cpu")
    assert len(attempts) == 1 and attempts[0][1] <= 1.5


def test_unknown_tag_lists_the_known_ones():
    with pytest.raises(ValueError, match="laion2b_s34b_b79k"):
        load_clip("ViT-B-32", "no-such-tag", device="cpu")


def test_cached_open_clip_tag_loads_offline_through_hf_cache(small_clip_name, tmp_path, monkeypatch):
    """A tag whose file sits in the Hugging Face cache loads with HF_HUB_OFFLINE=1.

    We lay out a real HF cache folder (models--org--repo/snapshots/<rev>/file) holding random
    weights, and point open_clip's table for our small model at that repo.
    """
    from open_clip import pretrained as oc_pretrained

    repo = "course-test/small-clip"
    cache = tmp_path / "hub"
    snap = cache / "models--course-test--small-clip" / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (cache / "models--course-test--small-clip" / "refs").mkdir()
    (cache / "models--course-test--small-clip" / "refs" / "main").write_text("0" * 40)
    reference = _random_model(small_clip_name, seed=5).eval()
    _save(reference.state_dict(), snap / "open_clip_model.safetensors", "safetensors")

    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    import huggingface_hub.constants as hf_constants

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setitem(oc_pretrained._PRETRAINED, small_clip_name,
                        {"fake_tag": {"hf_hub": f"{repo}/", "mean": (0.5, 0.5, 0.5), "std": (0.5, 0.5, 0.5)}})
    found = models.cached_weights(small_clip_name, "fake_tag")
    assert found is not None and found.name == "open_clip_model.safetensors"

    clip = load_clip(small_clip_name, "fake_tag", device="cpu")
    assert "fake_tag" in clip.description
    batch = torch.stack([clip.preprocess(im) for im in IMAGES])
    with torch.no_grad():
        ref = torch.nn.functional.normalize(reference.encode_image(batch), dim=-1)
    assert torch.allclose(clip.encode_images(IMAGES), ref, atol=1e-6)


def test_auto_falls_back_to_tiny_offline_with_one_line(monkeypatch, capsys):
    monkeypatch.setattr(models, "cached_weights", lambda name, tag: None)
    clip = load_clip("auto", device="cpu")
    assert clip.is_tiny
    captured = capsys.readouterr()  # stderr in a terminal, stdout in a notebook (notice_file)
    err = (captured.out + captured.err).strip().splitlines()
    assert len(err) == 1 and "tiny" in err[0]


def test_doctor_json_offline_reports_worlds_without_loading_models():
    result = _fresh_process(
        "import json, sys, time\n"
        "start = time.perf_counter()\n"
        "from pathlib import Path\n"
        "from utils import models\n"
        "from utils.doctor import diagnose\n"
        "report = diagnose()\n"
        "report['open_clip_imported'] = 'open_clip' in sys.modules\n"
        "report['seconds'] = time.perf_counter() - start\n"
        "models.TINY_WEIGHTS = Path('/nonexistent/tiny-shapes.safetensors')  # as if it were deleted\n"
        "report['without_tiny'] = diagnose()\n"
        "print(json.dumps(report))",
        HF_HUB_CACHE="/nonexistent-cache",
    )
    print(f"doctor took {result['seconds']:.2f} s")
    assert result["worlds"]["pretrained"]["available"] is False
    assert result["worlds"]["pretrained"]["cache_dir"] == "/nonexistent-cache"
    assert result["network"] is False
    # The tiny CLIP ships with the course: present, it is the one CLIP (and its six languages);
    # deleted, doctor says so, says how to rebuild it, and is not ok.
    assert result["worlds"]["tiny"]["available"] and result["ok"]
    assert result["languages"] == {"tiny-shapes": "en fr es it pt zh (shapes world)"}
    gone = result["without_tiny"]
    assert not gone["worlds"]["tiny"]["available"] and not gone["ok"] and gone["languages"] == {}
    assert any("python -m course_tools train clip" in line for line in gone["advice"])
    # Fast by construction: the report never builds a model nor imports open_clip.
    assert result["open_clip_imported"] is False


def test_doctor_cli_prints_json():
    import json

    out = subprocess.run([sys.executable, "-m", "utils", "doctor", "--json"], capture_output=True,
                         text=True, timeout=120, cwd=Path(__file__).resolve().parent.parent)
    report = json.loads(out.stdout)
    assert set(report) >= {"python", "packages", "device", "worlds", "languages", "network", "advice", "ok"}
    assert report["ok"], report["advice"]  # the bundled world is usable here...
    assert out.returncode == 0  # ...and the exit status says so (1 when not ok: see above)
    text = subprocess.run([sys.executable, "-m", "utils", "doctor"], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent).stdout
    line = next(line for line in text.splitlines() if line.startswith("languages"))
    assert all(f"{model}: {langs}" in line for model, langs in report["languages"].items()), line


# ---------------------------------------------------------------- devices, caches, downloads



@pytest.mark.parametrize("device", DEVICES)
def test_tiny_clip_runs_on_each_device_present(device):
    clip = load_clip("tiny-shapes", device=device)
    assert clip.device.type == device
    assert {p.device.type for p in clip.model.parameters()} == {device}
    assert clip.encode_images(IMAGES).device.type == "cpu"  # embeddings come back on the CPU
    assert f"on {device}" in clip.description


def test_auto_device_follows_the_one_setting(monkeypatch):
    monkeypatch.setenv(models.DEVICE_ENV, "cpu")
    assert models.pick_device("auto") == torch.device("cpu")
    assert models.pick_device(None) == torch.device("cpu")
    monkeypatch.delenv(models.DEVICE_ENV)
    expected = "cuda" if torch.cuda.is_available() else (
        "mps" if torch.backends.mps.is_available() else "cpu")
    assert models.pick_device("auto").type == expected


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_missing_device_fails_in_one_line():
    with pytest.raises(ValueError, match="no CUDA GPU: use cpu or auto"):
        models.pick_device("cuda")
    with pytest.raises(ValueError, match="Unknown device 'gpu0'"):
        models.pick_device("gpu0")


def test_one_cache_variable_and_its_old_alias(monkeypatch, tmp_path):
    from utils import vqgan

    monkeypatch.delenv("COURSE_CACHE", raising=False)
    monkeypatch.setenv("MULTIMODAL_COURSE_CACHE", str(tmp_path / "old"))
    assert models.course_cache_dir() == tmp_path / "old"
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "new"))  # the documented one wins
    assert models.course_cache_dir() == tmp_path / "new"
    assert vqgan.cache_dir() == tmp_path / "new" / "vqgan"


def test_quality_checks_stand_aside_only_under_the_fixture_marker(monkeypatch):
    monkeypatch.delenv(models.RANDOM_WEIGHTS_ENV, raising=False)
    assert models.quality_checks_apply()
    monkeypatch.setenv(models.RANDOM_WEIGHTS_ENV, "1")
    assert not models.quality_checks_apply()


def test_auto_never_downloads_even_online(monkeypatch, capsys):
    """Binder: MODEL = "auto" must not fetch 605 MB unasked; naming the model does."""
    monkeypatch.setattr(models, "cached_weights", lambda name, tag: None)
    monkeypatch.setattr(models, "network_available", lambda *a, **k: True)
    from open_clip import pretrained as oc_pretrained

    def no_download(*args, **kwargs):
        raise AssertionError("load_clip('auto') tried to download")

    monkeypatch.setattr(oc_pretrained, "download_pretrained", no_download)
    clip = load_clip("auto", device="cpu")
    assert clip.is_tiny
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert "605 MB" in err and "MODEL = 'ViT-B-32'" in err
    with pytest.raises(AssertionError, match="tried to download"):  # asked by name: it downloads
        load_clip("ViT-B-32", device="cpu")


def test_download_size_matches_the_architecture():
    """605 MB = ViT-B-32's float32 parameters, counted from open_clip's architecture."""
    import open_clip

    model = open_clip.create_model(models.DEFAULT_MODEL, device="meta")  # shapes only, no memory
    megabytes = sum(p.numel() for p in model.parameters()) * 4 / 1e6
    assert round(megabytes) == models.DOWNLOAD_MB[(models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED)]


def test_the_guide_quotes_the_offline_notice_as_each_language_prints_it():
    """The instructor guide's troubleshooting table quotes what `load_clip(..., "auto")` prints
    offline; the notice is translated, so each language's guide must quote its own."""
    from utils.i18n import get_language, set_language

    before = get_language()
    try:
        for lang in ("en", "fr", "es", "it", "pt", "zh"):
            set_language(lang)
            notice = models.offline_notice(models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED)
            guide = (Path(__file__).resolve().parent.parent / "lessons" / lang
                     / "instructor-guide.md").read_text(encoding="utf-8")
            assert notice in guide, f"lessons/{lang}/instructor-guide.md does not quote: {notice}"
        # the errors that quote the size stay English, whatever language the notebook chose
        assert models.download_size(models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED, "en") == \
            f"about {models.DOWNLOAD_MB[models.DEFAULT_MODEL, models.DEFAULT_PRETRAINED]} MB"
    finally:
        set_language(before)
