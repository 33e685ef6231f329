"""Random weights in the exact on-disk formats of the real pretrained models, for offline tests.

`write_pretrained_world(root)` writes, under `root`:
- hf/hub/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/: the Hugging Face hub cache layout
  (blobs/<sha256>, snapshots/<revision>/<file> -> ../../blobs/<sha256>, refs/main) holding
  open_clip_model.safetensors (ViT-B-32, float32, full size: about 605 MB) and
  open_clip_config.json, the files open_clip resolves `ViT-B-32`/`laion2b_s34b_b79k` to;
- course/vqgan/vqgan_imagenet_f16_16384.ckpt: a pytorch-lightning checkpoint as taming's
  ImageNet VQGAN ships it (state_dict with the training-only loss.* weights, callbacks keyed by
  a pytorch_lightning class, optimizer states), and vqgan_imagenet_f16_16384.yaml, its config.

`write_multilingual_clip(hub)` adds open_clip's multilingual CLIP in the same layout:
- models--laion--CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k/: open_clip_pytorch_model.bin,
  a plain state_dict as that repository ships it (with the text tower's position_ids, as files
  saved by transformers < 4.31 have), the file open_clip resolves `xlm-roberta-base-ViT-B-32` /
  `laion5b_s13b_b90k` to;
- models--xlm-roberta-base/: config.json and tokenizer.json, what transformers reads to build the
  text tower and its tokenizer. The config is XLM-R base's own, shrunk (XLMR_SMALL: 2 layers of
  width 64, instead of 12 of 768 and 250,002 tokens); the tokenizer is a real-format Unigram
  (SentencePiece) tokenizer with XLM-R's special tokens, trained here on a few captions in the six
  course languages. XLM-R's sentencepiece.bpe.model is not written: building one needs the
  `sentencepiece` trainer, and tokenizer.json alone is what the fast tokenizer reads. The image
  tower cannot shrink (open_clip's own ViT-B-32 config): the file is about 352 MB.

`pretrained_env(root)` is the environment that points a process at them: HF_HOME and
HF_HUB_CACHE, COURSE_CACHE, HF_HUB_OFFLINE=1, and COURSE_RANDOM_WEIGHTS=1, the one marker
that lets quality checks (accuracy, recall, CLIP score) stand aside
(`utils.models.quality_checks_apply()`). Everything else runs as with the real weights.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import types
from pathlib import Path

import torch

from utils import models

REVISION = "0" * 40  # the commit a snapshot folder is named after
VQGAN_YAML = """\
model:
  base_learning_rate: 4.5e-06
  target: taming.models.vqgan.VQModel
  params:
    embed_dim: 256
    n_embed: 16384
    monitor: val/rec_loss
    ddconfig:
      double_z: false
      z_channels: 256
      resolution: 256
      in_channels: 3
      out_ch: 3
      ch: 128
      ch_mult: [1, 1, 2, 2, 4]
      num_res_blocks: 2
      attn_resolutions: [16]
      dropout: 0.0
    lossconfig:
      target: taming.modules.losses.vqperceptual.VQLPIPSWithDiscriminator
      params:
        disc_conditional: false
        disc_in_channels: 3
        disc_start: 0
        disc_weight: 0.75
        disc_num_layers: 2
        codebook_weight: 1.0
"""
LIGHTNING = "pytorch_lightning.callbacks.model_checkpoint"


def hf_repo_folder(hub: Path, repo_id: str) -> Path:
    """models--org--name: how the hub cache names a model repository's folder."""
    return hub / ("models--" + repo_id.replace("/", "--"))


def write_hf_cache_file(hub: Path, repo_id: str, filename: str, source: Path) -> Path:
    """Put `source` in the hub cache as `filename` of `repo_id`, laid out as huggingface_hub
    does: the content in blobs/, a relative symlink in snapshots/<revision>/, refs/main."""
    repo = hf_repo_folder(hub, repo_id)
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    blob = repo / "blobs" / digest
    blob.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(source), blob)
    link = repo / "snapshots" / REVISION / filename
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.exists() or link.is_symlink():
        link.unlink()
    link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(REVISION)
    return link


def write_open_clip(hub: Path, name: str = models.DEFAULT_MODEL, repo_id: str = models.DEFAULT_HF_REPO,
                    seed: int = 0) -> Path:
    """Random `name` weights as open_clip_model.safetensors (float32) in the hub cache of `repo_id`."""
    import open_clip
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    model = open_clip.create_model(name)
    tmp = hub / f"{name}.safetensors.tmp"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp))
    del model
    path = write_hf_cache_file(hub, repo_id, "open_clip_model.safetensors", tmp)
    config = hub / "open_clip_config.json.tmp"
    config.write_text(json.dumps({"model_cfg": open_clip.get_model_config(name),
                                  "preprocess_cfg": {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                                                     "std": list(open_clip.OPENAI_DATASET_STD)}}))
    write_hf_cache_file(hub, repo_id, "open_clip_config.json", config)
    return path


class ModelCheckpoint:
    """Pickled under pytorch_lightning's name, as in taming's .ckpt files."""

    def __init__(self):
        self.monitor, self.best_model_score = "val/rec_loss", torch.tensor(0.5)


def write_vqgan(folder: Path, name: str = "f16_16384", seed: int = 0) -> Path:
    """Random VQGAN weights as taming's pytorch-lightning .ckpt, with its model .yaml beside it."""
    from utils.vqgan import CONFIGS, VQGAN

    torch.manual_seed(seed)
    state = VQGAN(CONFIGS[name]).state_dict()  # taming's parameter names (tests/test_vqgan.py)
    state["loss.discriminator.main.0.weight"] = torch.randn(64, 3, 4, 4)
    state["loss.perceptual_loss.net.slice1.0.weight"] = torch.randn(64, 3, 3, 3)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"vqgan_imagenet_{name}.ckpt"
    # Pickle the callback under pytorch_lightning's module path, then forget that module again:
    # loading must work without pytorch-lightning installed.
    fake = ["pytorch_lightning", "pytorch_lightning.callbacks", LIGHTNING]
    saved = {m: sys.modules.get(m) for m in fake}
    try:
        for m in fake:
            sys.modules[m] = types.ModuleType(m)
        sys.modules[LIGHTNING].ModelCheckpoint = ModelCheckpoint
        ModelCheckpoint.__module__ = LIGHTNING
        torch.save({"epoch": 7, "global_step": 123456, "pytorch-lightning_version": "1.0.8",
                    "state_dict": state, "callbacks": {ModelCheckpoint: ModelCheckpoint()},
                    "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6}]}]}, path)
    finally:
        ModelCheckpoint.__module__ = __name__
        for m, module in saved.items():
            if module is None:
                sys.modules.pop(m, None)
            else:
                sys.modules[m] = module
    path.with_suffix(".yaml").write_text(VQGAN_YAML.replace("n_embed: 16384", f"n_embed: {CONFIGS[name].n_embed}"))
    return path


# xlm-roberta-base's config.json as published (FacebookAI/xlm-roberta-base), and what the fixture
# shrinks in it: the architecture is the same, the sizes are small.
XLMR_BASE_CONFIG = {
    "architectures": ["XLMRobertaForMaskedLM"], "attention_probs_dropout_prob": 0.1, "bos_token_id": 0,
    "eos_token_id": 2, "hidden_act": "gelu", "hidden_dropout_prob": 0.1, "hidden_size": 768,
    "initializer_range": 0.02, "intermediate_size": 3072, "layer_norm_eps": 1e-05,
    "max_position_embeddings": 514, "model_type": "xlm-roberta", "num_attention_heads": 12,
    "num_hidden_layers": 12, "output_past": True, "pad_token_id": 1, "position_embedding_type": "absolute",
    "transformers_version": "4.17.0.dev0", "type_vocab_size": 1, "use_cache": True, "vocab_size": 250002,
}
XLMR_SMALL = {"hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 2, "num_hidden_layers": 2}
XLMR_SPECIAL = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0-3 as in XLM-R; "<mask>" comes last
MULTILINGUAL_CORPUS = [
    "a photo of a cat", "a red circle", "a blue square", "a photo of a dog",
    "une photo d'un chat", "un cercle rouge", "un carré bleu", "une photo d'un chien",
    "una foto de un gato", "un círculo rojo", "una estrella morada", "un cuadrado azul",
    "una foto di un gatto", "un cerchio rosso", "un quadrato blu", "uma foto de um gato",
    "um círculo vermelho", "um quadrado azul", "一张猫的照片", "一个红色的圆形", "一个蓝色的正方形", "一张狗的照片",
]


def write_xlmr_tokenizer(path: Path, corpus: list[str] = MULTILINGUAL_CORPUS, vocab_size: int = 200) -> int:
    """Train a Unigram tokenizer shaped like XLM-R's (NFKC, "▁" word marks, <s> $A </s>) on
    `corpus` and save it as tokenizer.json; returns its vocabulary size."""
    import tokenizers as tk

    tok = tk.Tokenizer(tk.models.Unigram())
    tok.normalizer = tk.normalizers.NFKC()
    tok.pre_tokenizer = tk.pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = tk.decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.train_from_iterator(corpus, tk.trainers.UnigramTrainer(
        vocab_size=vocab_size, special_tokens=XLMR_SPECIAL, unk_token="<unk>", show_progress=False))
    tok.add_special_tokens(["<mask>"])
    tok.post_processor = tk.processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> </s> $B </s>", special_tokens=[("<s>", 0), ("</s>", 2)])
    tok.save(str(path))
    return tok.get_vocab_size()


def write_multilingual_clip(hub: Path, seed: int = 0) -> Path:
    """Random xlm-roberta-base-ViT-B-32 weights, its text config and tokenizer, in the hub cache."""
    import copy

    import open_clip

    hub.mkdir(parents=True, exist_ok=True)
    vocab = write_xlmr_tokenizer(hub / "tokenizer.json.tmp")
    write_hf_cache_file(hub, models.MULTILINGUAL_TEXT_REPO, "tokenizer.json", hub / "tokenizer.json.tmp")
    config = hub / "config.json.tmp"
    config.write_text(json.dumps({**XLMR_BASE_CONFIG, **XLMR_SMALL, "vocab_size": vocab}, indent=2))
    text_config = write_hf_cache_file(hub, models.MULTILINGUAL_TEXT_REPO, "config.json", config)
    # Built from the config file just written (transformers reads a folder as well as a repo name):
    # the same parameter names as open_clip's `xlm-roberta-base-ViT-B-32`.
    cfg = copy.deepcopy(open_clip.get_model_config(models.MULTILINGUAL_MODEL))
    cfg["text_cfg"].update(hf_model_name=str(text_config.parent), hf_model_pretrained=False)
    torch.manual_seed(seed)
    state = open_clip.model.CustomTextCLIP(**cfg).state_dict()
    state.setdefault("text.transformer.embeddings.position_ids", torch.arange(514)[None])
    tmp = hub / "open_clip_pytorch_model.bin.tmp"
    torch.save(state, tmp)
    return write_hf_cache_file(hub, models.MULTILINGUAL_HF_REPO, "open_clip_pytorch_model.bin", tmp)


def write_pretrained_world(root: Path) -> dict:
    """Write the random-weight pretrained world under `root`; returns the paths written."""
    hub = root / "hf" / "hub"
    clip_path = write_open_clip(hub)
    vqgan_path = write_vqgan(root / "course" / "vqgan")
    return {"root": root, "hub": hub, "clip": clip_path, "vqgan": vqgan_path}


def pretrained_env(root: Path) -> dict[str, str]:
    """Environment variables that point a process at the world written under `root`."""
    return {"HF_HOME": str(root / "hf"), "HF_HUB_CACHE": str(root / "hf" / "hub"),
            "COURSE_CACHE": str(root / "course"), "HF_HUB_OFFLINE": "1",
            models.RANDOM_WEIGHTS_ENV: "1"}
