"""Random weights in the exact on-disk formats of the real pretrained models, for offline tests.

`write_pretrained_world(root)` writes, under `root`:
- hf/hub/models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K/: the Hugging Face hub cache layout
  (blobs/<sha256>, snapshots/<revision>/<file> -> ../../blobs/<sha256>, refs/main) holding
  open_clip_model.safetensors (ViT-B-32, float32, full size: about 605 MB) and
  open_clip_config.json, the files open_clip resolves `ViT-B-32`/`laion2b_s34b_b79k` to;
- course/vqgan/vqgan_imagenet_f16_16384.ckpt: a pytorch-lightning checkpoint as taming's
  ImageNet VQGAN ships it (state_dict with the training-only loss.* weights, callbacks keyed by
  a pytorch_lightning class, optimizer states), and vqgan_imagenet_f16_16384.yaml, its config.

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
