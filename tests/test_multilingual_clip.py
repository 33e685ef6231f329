"""open_clip's multilingual CLIP (xlm-roberta-base-ViT-B-32), offline, with random weights in the
real formats (tests/pretrained_fixture.py: write_multilingual_clip), and the rule that offers it
for labels that are not English (utils.models: load_clip(..., lang=...), language_note)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pretrained_fixture import XLMR_BASE_CONFIG, write_multilingual_clip

from utils import models

ROOT = Path(__file__).resolve().parent.parent
needs_transformers = pytest.mark.skipif(importlib.util.find_spec("transformers") is None,
                                        reason="open_clip's HF text towers need `transformers` (a test extra)")
TEXTS = ["一个红色的圆形", "一个蓝色的正方形", "un cercle rouge", "un carré bleu"]  # zh and fr labels


@pytest.fixture(scope="module")
def hubs(tmp_path_factory) -> dict[str, Path]:
    """'full': the multilingual CLIP and its text tower's files; 'no-text': its weights only."""
    root = tmp_path_factory.mktemp("multilingual")
    write_multilingual_clip(root / "full" / "hub")
    weights = "models--" + models.MULTILINGUAL_HF_REPO.replace("/", "--")
    (root / "no-text" / "hub").mkdir(parents=True)
    (root / "no-text" / "hub" / weights).symlink_to(root / "full" / "hub" / weights)
    return {"full": root / "full", "no-text": root / "no-text"}


def _python(home: Path, code: str) -> dict:
    """Run `code` in a fresh process pointed at the Hugging Face cache `home`; its last line is JSON."""
    env = {**os.environ, "HF_HOME": str(home), "HF_HUB_CACHE": str(home / "hub"), "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", models.RANDOM_WEIGHTS_ENV: "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=600)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


LOAD_AND_CLASSIFY = f"""
import json, torch
from PIL import Image
from huggingface_hub import try_to_load_from_cache
from open_clip.pretrained import download_pretrained, get_pretrained_cfg
from tokenizers import Tokenizer
from utils import models
from utils.models import clip_languages, language_note, load_clip

found = download_pretrained(get_pretrained_cfg({models.MULTILINGUAL_MODEL!r}, {models.MULTILINGUAL_PRETRAINED!r}))
clip = load_clip("auto", device="cpu", lang="zh")  # "auto" + Chinese labels: the cached multilingual CLIP
english = load_clip("auto", device="cpu", lang="en", verbose=False)  # English keeps today's rule
texts = {TEXTS!r}
ids = clip.tokenizer(texts)  # (4, 77)
reference = Tokenizer.from_file(try_to_load_from_cache({models.MULTILINGUAL_TEXT_REPO!r}, "tokenizer.json"))
images = [Image.new("RGB", (64, 48), c) for c in ("red", "blue")]
img, txt = clip.encode_images(images), clip.encode_texts(texts)
with torch.no_grad():
    own = torch.nn.functional.normalize(clip.model.encode_text(ids), dim=-1)
state = torch.load(found, weights_only=True)
key = "text.transformer.encoder.layer.1.output.dense.weight"
print(json.dumps({{
    "found": found, "name": clip.name, "pretrained": clip.pretrained, "description": clip.description,
    "english_is_tiny": english.is_tiny, "embed_dim": clip.embed_dim, "shape": list(txt.shape),
    "ids": ids.tolist(), "reference_ids": [reference.encode(t).ids for t in texts],
    "same_as_forward": bool(torch.allclose(txt, own, atol=1e-6)),
    "weights_loaded": bool(torch.equal(clip.model.state_dict()[key], state[key])),
    "probs": (clip.logit_scale * img @ txt.T).softmax(-1).tolist(),
    "languages": clip_languages(), "note_zh": language_note(clip, "zh"),
}}))
"""


@needs_transformers
@pytest.mark.slow  # a 352 MB fixture (the full ViT-B-32 image tower) and a fresh process
def test_multilingual_clip_loads_offline_and_classifies_chinese_and_french(hubs):
    r = _python(hubs["full"], LOAD_AND_CLASSIFY)
    # open_clip's own resolver finds the file where the fixture put it: the layout is the real one
    assert r["found"].startswith(str(hubs["full"])) and r["found"].endswith("open_clip_pytorch_model.bin")
    assert (r["name"], r["pretrained"]) == (models.MULTILINGUAL_MODEL, models.MULTILINGUAL_PRETRAINED)
    assert r["english_is_tiny"], "with lang='en', 'auto' must not switch to the multilingual CLIP"
    assert r["weights_loaded"], "the file's weights are not the ones in the model"
    # The tokenizer is the HF cache's tokenizer.json: XLM-R's <s> ... </s>, padded with <pad> (1),
    # and no <unk> (3) for Chinese or French.
    for ids, ref in zip(r["ids"], r["reference_ids"]):
        assert ids[: len(ref)] == ref and set(ids[len(ref):]) == {1}
        assert ref[0] == 0 and ref[-1] == 2 and 3 not in ref
    assert r["same_as_forward"] and r["shape"] == [4, 512] and r["embed_dim"] == 512
    for row in r["probs"]:
        assert sum(row) == pytest.approx(1, abs=1e-5)
    key = f"{models.MULTILINGUAL_MODEL}/{models.MULTILINGUAL_PRETRAINED}"
    assert "100+" in r["languages"][key] and "zh" in r["languages"][models.TINY_NAME]
    assert r["note_zh"] is None  # it reads Chinese: nothing to say


@needs_transformers
@pytest.mark.slow  # a 352 MB fixture (the full ViT-B-32 image tower) and a fresh process
def test_missing_text_tower_files_keep_their_own_error(hubs):
    """Weights cached, the xlm-roberta-base tokenizer/config not: 'auto' does not take the model, and
    asking for it by name says what is missing, not that the checkpoint is corrupt."""
    r = _python(hubs["no-text"], f"""
import json
from utils.models import CheckpointError, PretrainedUnavailable, load_clip, multilingual_cached
auto = load_clip("auto", device="cpu", lang="fr", verbose=False)
try:
    load_clip({models.MULTILINGUAL_MODEL!r}, {models.MULTILINGUAL_PRETRAINED!r}, device="cpu")
    error = None
except CheckpointError as err:
    error = "CheckpointError: " + str(err)
except PretrainedUnavailable as err:
    error = "PretrainedUnavailable: " + str(err)
print(json.dumps({{"cached": str(multilingual_cached()), "auto": auto.name, "error": error}}))
""")
    assert r["cached"] == "None" and r["auto"] == models.TINY_NAME
    assert r["error"] and r["error"].startswith("PretrainedUnavailable"), r["error"]
    assert "xlm-roberta-base's config.json and tokenizer.json" in r["error"] and str(hubs["no-text"]) in r["error"]


def test_auto_prefers_a_cached_multilingual_clip_only_for_other_languages(monkeypatch):
    asked = []
    monkeypatch.setattr(models, "multilingual_cached", lambda: Path("weights.bin"))
    monkeypatch.setattr(models, "_load", lambda name, tag, device, verbose: asked.append((name, tag)) or
                        models.CLIP(None, None, None, name, tag, "stub", "cpu"))
    for lang in ("fr", "zh", "en"):
        models.load_clip("auto", lang=lang, verbose=False)
    models.load_clip("ViT-B-32", lang="fr", verbose=False)  # a model asked for by name is kept
    multilingual = (models.MULTILINGUAL_MODEL, models.MULTILINGUAL_PRETRAINED)
    assert asked == [multilingual, multilingual, ("auto", "auto"), ("ViT-B-32", "auto")]


@pytest.mark.parametrize("cached", [True, False])
def test_an_english_only_clip_says_so_and_offers_the_multilingual_one(monkeypatch, cached):
    monkeypatch.setattr(models, "multilingual_cached", lambda: Path("weights.bin") if cached else None)
    english = models.CLIP(None, None, None, "ViT-B-32", "laion2b_s34b_b79k", "stub", "cpu")
    note = models.language_note(english, "fr")
    assert "English only" in note and models.MULTILINGUAL_MODEL in note
    assert ("downloaded" in note) == cached and ("1,464 MB" in note) == (not cached)
    assert models.language_note(english, "en") is None
    tiny = models.CLIP(None, None, None, models.TINY_NAME, models.TINY_NAME, "stub", "cpu")
    assert all(models.language_note(tiny, lang) is None for lang in models.COURSE_LANGUAGES)
    assert models.language_note(tiny, "de") is not None  # the tiny CLIP learned six languages only


@needs_transformers
def test_multilingual_download_size_matches_the_architecture(tmp_path):
    """1464 MB = float32 parameters of ViT-B-32 images + XLM-R base (its published config) + the
    projection, counted on the meta device (no memory, no download)."""
    import copy

    import open_clip

    (tmp_path / "config.json").write_text(json.dumps(XLMR_BASE_CONFIG))
    cfg = copy.deepcopy(open_clip.get_model_config(models.MULTILINGUAL_MODEL))
    cfg["text_cfg"].update(hf_model_name=str(tmp_path), hf_model_pretrained=False)
    with torch.device("meta"):
        model = open_clip.model.CustomTextCLIP(**cfg)
    megabytes = sum(p.numel() for p in model.parameters()) * 4 / 1e6
    key = (models.MULTILINGUAL_MODEL, models.MULTILINGUAL_PRETRAINED)
    assert round(megabytes) == models.DOWNLOAD_MB[key]


def test_hf_repo_constants_match_open_clip():
    import open_clip

    for (name, tag), repo in models.HF_REPOS.items():
        assert open_clip.get_pretrained_cfg(name, tag)["hf_hub"].rstrip("/") == repo
    text_cfg = open_clip.get_model_config(models.MULTILINGUAL_MODEL)["text_cfg"]
    assert text_cfg["hf_tokenizer_name"] == text_cfg["hf_model_name"] == models.MULTILINGUAL_TEXT_REPO


@needs_transformers
@pytest.mark.slow  # the ViT-B-32 image tower on a CPU: a few minutes
def test_notebook_02_in_french_takes_the_cached_multilingual_clip(hubs, monkeypatch):
    """MODEL = "auto", LANG = "fr", and only the multilingual CLIP downloaded: lesson 02 runs on it
    (its quality checks stand aside under the fixture's marker, as in tests/test_pretrained_path.py)."""
    import nbclient
    import nbformat

    for key, value in {"HF_HOME": str(hubs["full"]), "HF_HUB_CACHE": str(hubs["full"] / "hub"),
                       "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", models.RANDOM_WEIGHTS_ENV: "1"}.items():
        monkeypatch.setenv(key, value)  # the kernel inherits them
    path = ROOT / "notebooks" / "fr" / "02-zero-shot-classification.ipynb"
    nb = nbformat.read(path, as_version=4)
    params = next(i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(params + 1, nbformat.v4.new_code_cell("N_TEST, N_HELDOUT = 24, 12"))
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}}).execute()
    text = "\n".join(out.get("text", "") for cell in nb.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []) if out.get("output_type") == "stream")
    assert f"{models.MULTILINGUAL_MODEL} pretrained on {models.MULTILINGUAL_PRETRAINED}" in text, text[:2000]
    assert "reads English only" not in text
