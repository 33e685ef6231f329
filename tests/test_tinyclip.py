"""The tiny CLIP: it learns, the bundled one is good, and it knows shapes drawn by others."""

from __future__ import annotations

import json
import math

import pytest
import torch
from device_params import DEVICES

from course_tools.recipes import save_model
from utils import data
from utils.assets import ASSETS_DIR, read_manifest, verify_assets
from utils.tinyclip import TINY_CONFIG, TrainConfig, evaluate, train_clip


@pytest.fixture(scope="module")
def tiny():
    from utils.models import load_clip

    return load_clip("tiny-shapes", device="cpu")


def test_short_training_learns():
    model, history = train_clip(steps=60, batch_size=64, eval_every=0, warmup=10, seed=1,
                                progress=False)
    losses = history["loss"]
    assert len(losses) == 60 and all(math.isfinite(x) for x in losses)
    first, last = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert last < first - 0.3, (first, last)
    scores = evaluate(model, n=300, splits=("test",))["test"]
    assert scores["colour"] > 0.45, scores  # chance: 1/6
    assert scores["colour+shape"] > 0.12, scores  # chance: 1/24


def test_same_seed_same_training():
    _, h1 = train_clip(steps=3, batch_size=16, eval_every=0, progress=False, seed=3)
    _, h2 = train_clip(steps=3, batch_size=16, eval_every=0, progress=False, seed=3)
    assert h1["loss"] == h2["loss"]


def test_save_load_roundtrip_through_open_clip(tmp_path):
    import open_clip

    model, _ = train_clip(steps=1, batch_size=8, eval_every=0, progress=False)
    config_path, weights_path = save_model(model, tmp_path, name="tiny-roundtrip")
    open_clip.add_model_config(config_path)
    loaded, _, preprocess = open_clip.create_model_and_transforms(
        "tiny-roundtrip", pretrained=str(weights_path))
    images, _ = data.render_batch(4, seed=0, as_tensor=True)
    from utils.tinyclip import embed_images

    a, b = embed_images(model, images), embed_images(loaded, images)
    assert (a - b).abs().max() < 2e-2  # fp16 storage


def test_bundled_model_files_and_manifest():
    manifest, problems = read_manifest(), verify_assets()
    for name in ("tiny-shapes.json", "tiny-shapes.safetensors"):
        assert name in manifest, f"{name} is not in the manifest: run python -m course_tools train clip"
        assert name not in problems, problems[name]  # present, and its sha256 is the manifest's
        assert manifest[name]["bytes"] == (ASSETS_DIR / name).stat().st_size
    assert (ASSETS_DIR / "tiny-shapes.safetensors").stat().st_size <= 10_000_000
    assert json.loads((ASSETS_DIR / "tiny-shapes.json").read_text()) == TINY_CONFIG


def test_bundled_model_reaches_95_percent(tiny):
    scores = evaluate(tiny, n=1000, seed=2024, splits=("test",))["test"]
    assert scores["colour+shape"] >= 0.95, scores


def test_bundled_model_through_pil_and_preprocess(tiny):
    pairs = data.sample_images(48, seed=77, split="test")
    prompts, classes = data.class_prompts()
    probs = (tiny.logit_scale * tiny.encode_images([im for im, _ in pairs])
             @ tiny.encode_texts(prompts).T).softmax(-1)
    _, attrs = data.render_batch(48, seed=77, split="test")
    hits = sum(classes[i] == (a["colour"], a["shape"]) for i, a in zip(probs.argmax(-1).tolist(), attrs))
    assert hits / 48 >= 0.9


def test_bundled_model_knows_shapes_drawn_with_pil():
    """Shapes drawn the usual PIL way (named colours, 64-224 px): the measure behind the claim
    `pil-shapes`, on half its pictures."""
    from course_tools.measures import pil_shapes_claims

    accuracy = pil_shapes_claims(per_pair=10)["pil-shapes.colour_shape"][0]
    assert accuracy >= 0.9, accuracy


def test_cli_trains_into_a_folder(tmp_path, capsys):
    from course_tools.retrain import main

    assert main(["clip", "--steps", "2", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (tmp_path / "tiny-shapes.safetensors").exists() and report["steps"] == 2
    assert set(report["accuracy"]) == {"test", "heldout"}
    assert "registered" not in report  # a folder other than utils/assets leaves the manifest alone


def test_unknown_option_is_reported():
    with pytest.raises(TypeError, match="unknown option"):
        train_clip(stepz=3)


def test_a_stopped_training_gives_the_notebook_its_threads_back():
    """A student who stops lesson 01's training cell keeps every thread for the next cells."""
    before = torch.get_num_threads()

    def stop(record):
        raise KeyboardInterrupt  # what Jupyter's stop button raises

    with pytest.raises(KeyboardInterrupt):
        train_clip(steps=3, batch_size=8, eval_every=0, progress=False, threads=before + 1,
                   callback=stop)
    assert torch.get_num_threads() == before


@pytest.mark.parametrize("device", DEVICES)
def test_gpu_or_cpu_choice_does_not_matter_for_a_forward_pass(device):
    from utils.tinyclip import embed_images

    model, _ = train_clip(steps=1, batch_size=8, eval_every=0, progress=False)
    images, _ = data.render_batch(2, seed=0, as_tensor=True)
    on_cpu = embed_images(model, images)
    emb = embed_images(model.to(device), images.to(device)).cpu()
    assert emb.shape == (2, TINY_CONFIG["embed_dim"])
    assert torch.allclose(emb.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(emb, on_cpu, atol=1e-4), f"embeddings on {device} differ from the CPU's"
    # lesson 01's way: the model where load_clip put it, the pictures as rendered (on the CPU)
    assert torch.allclose(embed_images(model, images), on_cpu, atol=1e-4)


def test_embeddings_are_computed_on_the_models_device_and_come_back_on_the_cpu(monkeypatch):
    """The pictures and tokens follow the model (a GPU in Colab); the embeddings return to the
    CPU, where the lesson's other tensors are. A model on the meta device shows the move here."""
    from utils import tinyclip
    from utils.tinyclip import embed_images, embed_texts

    monkeypatch.setattr(tinyclip, "normalize_images", lambda x: x)  # torchvision's reads values
    seen = []

    class OnMeta(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.weight = torch.nn.Parameter(torch.zeros(1, device="meta"))

        def encode_image(self, x, normalize):
            seen.append(x.device)
            return torch.ones(len(x), 4)

        encode_text = encode_image

    images = embed_images(OnMeta(), torch.rand(5, 3, 8, 8), batch_size=2)
    texts = embed_texts(OnMeta(), lambda texts: torch.zeros(len(texts), 6, dtype=torch.long), ["a", "b"])
    assert seen == [torch.device("meta")] * 4, "every batch ran on the model's device"
    assert images.shape == (5, 4) and images.device.type == "cpu" and texts.device.type == "cpu"


# ---------------------------------------------------------------- utils.train.fit, the one training loop


def _regression(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x, y = torch.randn(32, 4, generator=gen), torch.randn(32, 2, generator=gen)
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 2), x, y


@pytest.mark.parametrize("schedule", ["cosine", "linear", "onecycle", "annealing", "constant"])
def test_fit_is_the_plain_adamw_loop_it_replaces(schedule):
    from utils.train import FitConfig, fit, lr_at

    cfg = FitConfig(steps=12, lr=0.05, schedule=schedule, warmup=0.25 if schedule == "onecycle" else 3,
                    weight_decay=0.01, betas=(0.9, 0.95), eps=1e-6, grad_clip=0.5)
    model, x, y = _regression()
    history = fit(model, lambda step: ((model(x) - y) ** 2).mean(), cfg, progress=False)

    by_hand, x, y = _regression()  # the loop written out, as each model had its own before
    opt = torch.optim.AdamW(by_hand.parameters(), lr=0.05, betas=(0.9, 0.95), eps=1e-6, weight_decay=0.01)
    sched = {"onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(opt, 0.05, total_steps=12, pct_start=0.25),
             "annealing": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 12)}.get(schedule, lambda: None)()
    losses = []
    for step in range(12):
        if sched is None:
            for group in opt.param_groups:
                group["lr"] = lr_at(step, cfg)
        loss = ((by_hand(x) - y) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(by_hand.parameters(), 0.5)
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
    assert history["loss"] == losses and history["step"] == list(range(12))
    assert torch.equal(model.weight, by_hand.weight), "fit() did not take the same steps as the plain loop"


def test_lr_at_warms_up_then_decays():
    from utils.train import FitConfig, lr_at

    cosine, linear = FitConfig(110, 1.0, "cosine", warmup=10), FitConfig(110, 1.0, "linear", warmup=10)
    assert [lr_at(s, cosine) for s in (0, 4, 9)] == pytest.approx([0.1, 0.5, 1.0])
    assert lr_at(10, cosine) == 1.0 and lr_at(60, cosine) == pytest.approx(0.5) and lr_at(109, cosine) < 1e-3
    assert lr_at(60, linear) == pytest.approx(0.5) and lr_at(109, linear) == pytest.approx(0.01)
    with pytest.raises(ValueError, match="unknown learning-rate schedule"):
        lr_at(0, FitConfig(10, 1.0, "step"))


def test_fit_logs_extra_numbers_and_stops_when_the_callback_says_so():
    from utils.train import FitConfig, fit

    model, x, y = _regression()
    seen = []

    def loss_fn(step):
        loss = ((model(x) - y) ** 2).mean()
        return loss, {"twice": 2 * loss.item()}

    def callback(record):
        seen.append(record["step"])
        record["shown"] = 1.0  # added for the progress bar, not for the history
        return record["step"] == 4

    history = fit(model, loss_fn, FitConfig(20, 0.01), callback=callback, progress=False)
    assert seen == list(range(5)) and history["step"] == seen and "shown" not in history
    assert history["twice"] == pytest.approx([2 * v for v in history["loss"]])
    assert history["seconds"] == sorted(history["seconds"]) and history["train_seconds"] >= history["seconds"][-1]
    assert not model.training, "fit() leaves the model in eval mode"


# ---------------------------------------------------------------- lesson 05's reranker


def test_vq_share_sends_part_of_each_batch_through_the_vq(monkeypatch):
    from utils import tinyvq

    seen = []
    real = tinyvq.load_tiny_vq

    def spy():
        vq = real()
        encode = vq.encode
        vq.encode = lambda x: (seen.append(len(x)), encode(x))[1]
        return vq

    monkeypatch.setattr(tinyvq, "load_tiny_vq", spy)
    train_clip(steps=2, batch_size=8, vq_share=0.5, eval_every=0, progress=False)
    assert seen == [4, 4], seen


def test_reranker_reads_vq_pictures_better_and_renders_as_well(tiny):
    """The fine-tuned CLIP names colour and shape of tiny-VQ pictures far more often, and
    has not forgotten clean renders."""
    from utils.models import load_clip
    from utils.tinyclip import vq_round_trip

    reranker = load_clip("tiny-shapes-vq", device="cpu")
    assert reranker.is_tiny and reranker.name == "tiny-shapes-vq"
    assert "tiny-shapes-vq.safetensors" not in verify_assets()
    before = evaluate(tiny, n=400, seed=31, splits=("test",), image_map=vq_round_trip)["test"]
    after = evaluate(reranker, n=400, seed=31, splits=("test",), image_map=vq_round_trip)["test"]
    assert after["colour+shape"] >= before["colour+shape"] + 0.05, (before, after)
    clean = evaluate(reranker, n=400, seed=31, splits=("test",))["test"]
    assert clean["colour+shape"] >= 0.95, clean


def test_cli_trains_the_reranker_into_a_folder(tmp_path, capsys):
    from course_tools.retrain import main

    assert main(["reranker", "--steps", "2", "--out", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert (tmp_path / "tiny-shapes-vq.safetensors").exists() and report["steps"] == 2
    assert set(report["colour+shape accuracy"]) == {"tiny-shapes", "tiny-shapes-vq"}


def test_live_recipe_trains_a_usable_clip():
    """TrainConfig.live(): 64 px ShapesCNN, frozen token table, stops early, evaluate() can score it."""
    from utils.tinyclip import ShapesCNN, TrainConfig, image_size

    cfg = TrainConfig.live(steps=4, pool=256, batch_size=32, eval_every=2, eval_images=40, threads=1)
    model, history = train_clip(cfg, progress=False)
    assert isinstance(model.visual, ShapesCNN)
    assert image_size(model) == cfg.model_config["vision_cfg"]["image_size"] == 64
    assert not model.token_embedding.weight.requires_grad
    assert history["eval_step"] == [1, 3] and len(history["step"]) == 4
    scores = evaluate(model, n=24, splits=("test",))
    assert 0.0 <= scores["test"]["colour+shape"] <= 1.0


def test_soft_contrastive_loss_matches_plain_loss_on_distinct_captions():
    from utils.losses import contrastive_loss, soft_contrastive_loss

    gen = torch.Generator().manual_seed(0)
    img = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    txt = torch.nn.functional.normalize(torch.randn(6, 8, generator=gen), dim=-1)
    texts = [f"caption {i}" for i in range(6)]
    scale = torch.tensor(10.0)
    assert torch.allclose(soft_contrastive_loss(img, txt, scale, texts), contrastive_loss(img, txt, scale))
    same = ["a red circle"] * 6  # every caption matches every image: targets are uniform
    assert not torch.allclose(soft_contrastive_loss(img, txt, scale, same), contrastive_loss(img, txt, scale))


def test_overrides_leave_the_callers_config_unchanged():
    config = TrainConfig(steps=2, batch_size=8, eval_every=0)
    _, history = train_clip(config, progress=False, steps=1)
    assert config.steps == 2, "train_clip changed the config it was given"
    assert len(history["loss"]) == 1


def test_short_live_run_learns_colours_and_tokenizes_at_its_own_context_length():
    """A few dozen live steps: the loss falls, colours beat chance; evaluate() uses the model's context."""
    cfg = TrainConfig.live(steps=60, batch_size=64, pool=1024, warmup=10, eval_every=0, threads=1, seed=2)
    model, history = train_clip(cfg, progress=False)
    first, last = sum(history["loss"][:10]) / 10, sum(history["loss"][-10:]) / 10
    assert last < first - 0.3, (first, last)
    assert model.context_length == cfg.model_config["text_cfg"]["context_length"] < 32  # evaluate() must follow
    scores = evaluate(model, n=200, splits=("test",))["test"]
    assert scores["colour"] > 0.4, scores  # chance: 1/6


def test_each_caption_is_encoded_once_with_the_same_embedding(monkeypatch):
    """train_clip encodes each distinct caption of a batch once: row i is still caption i's embedding."""
    from utils import tinyclip

    seen = []
    original = tinyclip.soft_contrastive_loss
    monkeypatch.setattr(tinyclip, "soft_contrastive_loss", lambda *args: seen.append(args) or original(*args))
    cfg = TrainConfig.live(steps=1, pool=64, batch_size=32, eval_every=0, threads=1, seed=4)
    reference = tinyclip.build_model(cfg.model_config, seed=4)  # the weights train_clip starts from
    train_clip(cfg, progress=False)
    _, text_features, _, texts = seen[0]
    assert len(set(texts)) < len(texts)  # the batch repeats captions
    with torch.no_grad():
        expected = reference.encode_text(tinyclip.get_tokenizer(cfg.model_config)(texts), normalize=True)
    assert torch.allclose(text_features.detach(), expected, atol=1e-5)
