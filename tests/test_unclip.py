"""Lesson 05, second half: the unCLIP prior and decoder (utils.unclip)."""

from __future__ import annotations

import pytest
import torch

from utils import data
from utils.dalle import DalleConfig
from utils.unclip import Prior, PriorConfig

# ---------------------------------------------------------------- the unCLIP prior


def test_prior_outputs_unit_vectors():
    prior = Prior(PriorConfig(embed_dim=16, hidden=32))
    out = prior.predict(torch.randn(5, 16))
    assert out.shape == (5, 16)
    assert torch.allclose(out.norm(dim=-1), torch.ones(5), atol=1e-5)


def test_unclip_decoder_reads_an_embedding_prefix():
    from utils.unclip import UnclipDecoder

    torch.manual_seed(0)
    decoder = UnclipDecoder(DalleConfig(text_vocab=1, image_vocab=16, text_len=2, image_rows=3, image_cols=3,
                                        n_layer=1, n_head=2, n_embd=16), embed_dim=8)
    emb = torch.randn(5, 8)
    logits, _ = decoder(emb, torch.randint(0, 16, (5, 4)))
    assert logits.shape == (5, 5, 16)
    codes = decoder.sample(emb, guidance=2.0, empty=torch.zeros(1, 8),
                           generator=torch.Generator().manual_seed(0))
    assert codes.shape == (5, 9) and codes.max() < 16


def test_bundled_prior_lands_near_the_pictures():
    """The prior's output is much closer to the caption's own pictures than the text embedding."""
    from utils.unclip import evaluate_prior, load_prior

    metrics = evaluate_prior(load_prior(), n_images=300, seed=7)
    seen_text, seen_prior = metrics["text_seen"], metrics["prior_seen"]
    assert seen_prior["cos_to_own_images"] > seen_text["cos_to_own_images"] + 0.1, metrics
    assert seen_prior["precision@10"] >= 0.8, metrics


@pytest.mark.slow
def test_decoding_the_prior_beats_decoding_the_text():
    """DALL-E 2's point: the decoder draws the right picture more often from the prior's output."""
    from utils.unclip import evaluate_unclip, load_decoder, load_prior

    result = evaluate_unclip(load_decoder(), load_prior(), pairs=data.SEEN, n_samples=4, seed=1)
    assert result["prior"]["accuracy"] >= result["text"]["accuracy"] + 0.1, result
    assert result["prior"]["accuracy"] >= 0.6 and result["prior"]["colour_accuracy"] >= 0.9, result


def test_training_sets_keep_only_the_pictures_asked_for():
    """The mini DALL-E, the prior and the decoder learn large shapes on plain backgrounds."""
    from utils.dalle_data import PictureSet, keep_pictures, plain_background
    from utils.unclip import clip_pairs

    class FakeClip:
        def encode_images(self, images, progress=False):
            return torch.randn(len(images), 4)

        def encode_texts(self, texts):
            return torch.randn(len(texts), 4)

    image_emb, text_emb, attrs = clip_pairs(FakeClip(), PictureSet(60, 1, plain_only=True, sizes=("large",), chunk=60),
                                            progress=False)
    assert image_emb.shape == text_emb.shape == (60, 4)
    assert {a["size"] for a in attrs} == {"large"}
    images, attrs = data.render_batch(200, seed=2, as_tensor=True)
    keep = keep_pictures(images, attrs, plain_only=True, sizes=("large",))
    assert 0 < int(keep.sum()) < 200
    assert all(attrs[i]["size"] == "large" for i in keep.nonzero().flatten().tolist())
    assert bool(plain_background(images[keep]).all())
    assert bool(keep_pictures(images, attrs).all()), "no filter keeps everything"


def test_prior_and_decoder_survive_a_save_and_load(tmp_path):
    from course_tools.recipes import save_decoder, save_prior
    from utils.unclip import UnclipDecoder, load_decoder, load_prior

    torch.manual_seed(0)
    prior = Prior(PriorConfig(embed_dim=8, hidden=16))
    save_prior(prior, tmp_path / "p.safetensors", extra={"note": "x"})
    again = load_prior(tmp_path / "p.safetensors")
    emb = torch.randn(3, 8)
    assert torch.equal(again.predict(emb), prior.predict(emb)), "the prior is stored in float32"
    decoder = UnclipDecoder(DalleConfig(text_vocab=1, image_vocab=16, text_len=2, image_rows=2, image_cols=2,
                                        n_layer=1, n_head=2, n_embd=16), embed_dim=8)
    decoder.guidance = 1.5
    save_decoder(decoder, tmp_path / "d.safetensors")
    loaded = load_decoder(tmp_path / "d.safetensors")
    assert loaded.guidance == 1.5 and loaded.embed_dim == 8
    codes = torch.randint(0, 16, (3, 3))
    assert torch.allclose(loaded(emb, codes)[0], decoder(emb, codes)[0], atol=1e-2), "float16 storage"
    with pytest.raises(FileNotFoundError, match="train prior"):
        load_decoder(tmp_path / "missing.safetensors")


def test_training_is_seeded_and_leaves_the_configs_alone():
    """Same seed, same losses; the configs given to train_prior and train_decoder are not changed."""
    from utils.dalle_train import TrainConfig
    from utils.unclip import PriorTrainConfig, train_decoder, train_prior

    prior_cfg = PriorTrainConfig(steps=20, n_images=100, batch_size=16)
    first = train_prior(cfg=prior_cfg, progress=False)[1]["loss"]
    assert first == train_prior(cfg=prior_cfg, progress=False)[1]["loss"] and first[-1] < first[0]
    cfg, model_cfg = TrainConfig(steps=10, n_images=60, batch_size=8, warmup=2), DalleConfig(n_layer=1, n_embd=32)
    before = (repr(cfg), repr(model_cfg))
    decoder, history = train_decoder(cfg=cfg, model_cfg=model_cfg, progress=False)
    assert (repr(cfg), repr(model_cfg)) == before, "train_decoder must not change the configs it is given"
    assert decoder.cfg.text_vocab == 1 and decoder.cfg.text_len == 4 and history["step"] == [10]
    assert history["loss"] == train_decoder(cfg=cfg, model_cfg=model_cfg, progress=False)[1]["loss"]
