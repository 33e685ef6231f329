"""How each bundled tiny model in utils/assets was trained: the `python -m course_tools train
MODEL` entry points (course_tools/retrain.py) and the recipes only they use.

Lessons never retrain these models; they train their own small ones live with `utils.train.fit`.
Each `*_main(args)` trains from args.seed for args.steps (default: the bundled recipe), saves into
the folder args.out, and prints a report (JSON with args.json, which --replace-bundled reads).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from utils import data
from utils.io import save_checkpoint, sha256_of
from utils.train import FitConfig, fit

from .retrain import print_report

# ------------------------------------------------------------------ tiny CLIP and its reranker


def save_model(model, out_dir: str | Path, name: str = "tiny-shapes", config: dict | None = None) -> tuple[Path, Path]:
    """Write `name`.json (open_clip model config) and `name`.safetensors (fp16): open_clip loads
    them with add_model_config(<the .json>), then create_model_and_transforms(name, pretrained=...)."""
    from utils.tinyclip import TINY_CONFIG

    weights = Path(out_dir) / f"{name}.safetensors"
    metadata = {"format": "pt", "trained_on": "utils.data shapes world"}
    return save_checkpoint(model, weights, config or TINY_CONFIG, metadata=metadata), weights


def clip_main(args) -> int:
    """Train the bundled recipe (TrainConfig's defaults), evaluate, save; the bundled tiny CLIP is
    this model after `train languages`."""
    from utils.tinyclip import TrainConfig, evaluate, train_clip

    steps = args.steps or TrainConfig.steps
    model, history = train_clip(TrainConfig(steps=steps, seed=args.seed), progress=not args.json)
    scores = evaluate(model)
    config_path, weights_path = save_model(model, args.out)
    report = {"model": str(weights_path), "config": str(config_path), "seed": args.seed, "steps": steps,
              "train_seconds": round(history["train_seconds"], 1), "accuracy": scores,
              "images_per_second": round(history["images_per_second"], 1),
              "final_loss": round(history["loss"][-1], 4), "bytes": weights_path.stat().st_size}
    test, held = scores["test"], scores["heldout"]
    return print_report(args, report, [
        f"Trained in {report['train_seconds']} s ({report['images_per_second']} images/s), "
        f"final loss {report['final_loss']}.",
        f"Zero-shot colour+shape accuracy: {test['colour+shape']:.1%} on seen pairs, "
        f"{held['colour+shape']:.1%} on held-out pairs {data.HELD_OUT}.",
        "Per attribute (seen pairs): " + ", ".join(f"{k} {test[k]:.1%}" for k in ("colour", "shape", "size", "position")),
        f"Saved {weights_path} ({report['bytes'] / 1e6:.1f} MB) and {config_path}; the bundled tiny CLIP is "
        "this model taught six languages (python -m course_tools train languages)."])


RERANKER_STEPS = 2500


def train_reranker(steps: int = RERANKER_STEPS, seed: int = 0, progress: bool = True,
                   **overrides) -> tuple[torch.nn.Module, dict]:
    """Fine-tune the bundled tiny CLIP to read pictures as the tiny VQ draws them (blurred
    outlines): half of each batch goes through a VQ round trip. The text tower and the embedding
    space stay the tiny CLIP's, so the same prompts work."""
    from utils.models import TINY_NAME, load_clip
    from utils.tinyclip import TrainConfig, train_clip

    model = load_clip(TINY_NAME, verbose=False).model.train().requires_grad_(True)
    cfg = TrainConfig(steps=steps, seed=1000 + seed, lr=1e-3, warmup=50, vq_share=0.5, eval_every=0)
    model, history = train_clip(cfg, progress=progress, model=model, **overrides)
    return model.eval().requires_grad_(False), history


def reranker_main(args) -> int:
    """Fine-tune the reranker, compare it with the tiny CLIP on renders and on VQ pictures, save."""
    from utils.models import TINY_NAME, load_clip
    from utils.tinyclip import RERANKER_NAME, evaluate, vq_round_trip
    from utils.tinyvq import load_tiny_vq

    steps = args.steps or RERANKER_STEPS
    model, history = train_reranker(steps, args.seed, progress=not args.json)
    vq = load_tiny_vq()
    scores = {}
    for name, m in (("tiny-shapes", load_clip(TINY_NAME, verbose=False).model), (RERANKER_NAME, model)):
        scores[name] = {"renders": evaluate(m, splits=("test",))["test"]["colour+shape"],
                        "vq_pictures": evaluate(m, splits=("test",), image_map=lambda x: vq_round_trip(x, vq))
                        ["test"]["colour+shape"]}
    _, weights_path = save_model(model, args.out, name=RERANKER_NAME)
    report = {"model": str(weights_path), "seed": args.seed, "steps": steps,
              "train_seconds": round(history["train_seconds"], 1), "colour+shape accuracy": scores}
    return print_report(args, report, [
        *(f"{name}: colour+shape zero-shot {row['renders']:.1%} on renders, {row['vq_pictures']:.1%} on tiny-VQ "
          "pictures" for name, row in scores.items()),
        f"Fine-tuned {steps} steps in {report['train_seconds']} s; saved {weights_path}."])


# ------------------------------------------------------------------ tiny VQ


def _rendered(n: int, seed: int, size: int) -> torch.Tensor:
    """(n, 3, size, size) float in [0, 1], through uint8 as the bundled VQ was trained."""
    images = torch.from_numpy(data.render_batch(n, seed=seed, size=size)[0])  # (n, H, W, 3) uint8
    return (images.float() / 255).permute(0, 3, 1, 2).contiguous()


def train_tiny_vq(steps: int = 3000, seed: int = 0, batch_size: int = 32, lr: float = 2e-3,
                  progress: bool = True):
    """Train the tiny VQ (its loss: utils/tinyvq.py) on fresh shapes-world images; codes unused
    for 100 steps restart on random encoder outputs, so the whole codebook is used."""
    from utils.tinyvq import TinyVQ, TinyVQConfig

    torch.manual_seed(seed)
    cfg = TinyVQConfig()
    model = TinyVQ(cfg)
    usage = torch.zeros(cfg.n_codes)  # how often each code was picked since the last restart
    last: dict = {}  # the images and codes of the step that just ran

    def loss_of(step: int):
        last["images"] = images = _rendered(batch_size, seed * 1_000_003 + step, cfg.image_size)
        recon, vq_loss, last["codes"] = model(images)
        rec_loss = F.mse_loss(recon, images * 2 - 1)
        return rec_loss + vq_loss, {"rec": rec_loss.item(), "vq": vq_loss.item()}

    def after_step(record: dict) -> None:
        usage.add_(torch.bincount(last["codes"].flatten(), minlength=cfg.n_codes))
        if record["step"] % 100 != 99 or record["step"] >= steps * 0.8:
            return
        dead = (usage == 0).nonzero().flatten()
        if len(dead):
            with torch.no_grad():
                z = model.encode_z(last["images"]).permute(0, 2, 3, 1).reshape(-1, cfg.code_dim)  # (N, C)
                pick = torch.randint(len(z), (len(dead),))
                model.codebook[dead] = z[pick] + 0.01 * torch.randn(len(dead), cfg.code_dim)
        usage.zero_()

    fit(model, loss_of, FitConfig(steps, lr, "onecycle", warmup=0.05), "training tiny VQ",
        callback=after_step, progress=progress)
    return model.eval().requires_grad_(False), evaluate_tiny_vq(model, seed=seed + 10_000)


def evaluate_tiny_vq(model, n: int = 256, seed: int = 12345) -> dict:
    """Reconstruction PSNR (dB) and codebook usage on `n` fresh images."""
    images = _rendered(n, seed, model.cfg.image_size)
    codes = model.encode(images)
    mse = float(F.mse_loss(model.decode_codes(codes), images))
    return {"psnr_db": round(10 * math.log10(1 / max(mse, 1e-10)), 2), "codes_used": int(codes.unique().numel()),
            "n_codes": model.cfg.n_codes, "grid": list(model.grid)}


def vq_main(args) -> int:
    """Train the tiny VQ; args.out is a folder, or a .safetensors path."""
    from utils.tinyvq import TINY_VQ_WEIGHTS

    torch.set_num_threads(max(1, min(torch.get_num_threads(), 4)))
    steps, start = args.steps or 3000, time.perf_counter()
    model, metrics = train_tiny_vq(steps=steps, seed=args.seed or 0, progress=not args.json)
    out = Path(args.out)
    if out.suffix != ".safetensors":  # a folder
        out = out / TINY_VQ_WEIGHTS.name
    config = save_checkpoint(model, out, {**asdict(model.cfg),
                                          "trained": {"steps": steps, "seed": args.seed or 0, **metrics}})
    report = {"weights": str(out), "config": str(config), "steps": steps,
              "seconds": round(time.perf_counter() - start, 1), **metrics}
    return print_report(args, report, [
        f"saved {out} ({out.stat().st_size / 1e6:.2f} MB): PSNR {metrics['psnr_db']} dB, "
        f"{metrics['codes_used']}/{metrics['n_codes']} codes used, {report['seconds']} s"])


# ------------------------------------------------------------------ the shape judge


def degrade(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random blur (down- then up-sampling) and noise, so the judge also reads decoder output."""
    B, _, H, W = images.shape
    out = images.clone()
    blur = torch.rand(B, generator=gen) < 0.6
    if blur.any():
        factor = int(torch.randint(2, 5, (1,), generator=gen))
        small = F.interpolate(images[blur], scale_factor=1 / factor, mode="area")
        out[blur] = F.interpolate(small, size=(H, W), mode="bilinear", align_corners=False)
    noise = 0.04 * torch.rand(B, 1, 1, 1, generator=gen) * torch.randn(out.shape, generator=gen)
    return (out + noise).clamp(0, 1)


def train_judge(steps: int = 2000, seed: int = 0, batch_size: int = 64, lr: float = 3e-3,
                vq=None, progress: bool = True):
    """Train ShapeNet on ALL colour-shape pairs (it is the instrument, not the model under test),
    half of each batch through the `vq` round trip; returns (net, metrics)."""
    from utils.shapecheck import JudgeConfig, ShapeJudge, ShapeNet

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = ShapeNet(JudgeConfig())

    def loss_of(step: int) -> torch.Tensor:
        images, attrs = data.render_batch(batch_size, seed=10_000 + seed * 100_003 + step, split="all",
                                          as_tensor=True)
        target = torch.tensor([data.SHAPES.index(a["shape"]) for a in attrs])
        if vq is not None:  # the VQ round trip of the clean image, for half of the batch
            images[: batch_size // 2] = vq.decode_codes(vq.encode(images[: batch_size // 2]))
        return F.cross_entropy(net(degrade(images, gen)), target)

    fit(net, loss_of, FitConfig(steps, lr, "onecycle", warmup=0.1, weight_decay=1e-4),
        "training shape judge", progress=progress)
    net.eval()
    return net, evaluate_judge(ShapeJudge(net), seed=seed + 777, vq=vq)


def evaluate_judge(judge, n: int = 512, seed: int = 777, vq=None) -> dict:
    """Shape and colour accuracy on fresh rendered images, and with a `vq` on their round trips
    (`vq_` keys: the best a VQ-drawn image can do)."""
    images, attrs = data.render_batch(n, seed=seed, split="all", as_tensor=True)
    out = {"n": n}
    versions = {"": images}
    if vq is not None:
        versions["vq_"] = vq.decode_codes(vq.encode(images))
    for prefix, batch in versions.items():
        verdicts = judge.judge(batch)
        for key in ("shape", "colour"):
            right = sum(v[key] == a[key] for v, a in zip(verdicts, attrs)) / n
            out[f"{prefix}{key}_accuracy"] = round(right, 4)
    return out


def shapecheck_main(args) -> int:
    """Train the judge on the bundled tiny VQ's round trips; save it with that VQ's sha256."""
    from utils.shapecheck import JUDGE_WEIGHTS, JudgeConfig
    from utils.tinyvq import TINY_VQ_WEIGHTS, load_tiny_vq

    steps, seed, start = args.steps or 2000, args.seed or 0, time.perf_counter()
    net, metrics = train_judge(steps=steps, seed=seed, vq=load_tiny_vq(), progress=not args.json)
    out = Path(args.out) / JUDGE_WEIGHTS.name
    save_checkpoint(net, out, {**asdict(JudgeConfig(width=net.head.in_features // 4)), "shapes": data.SHAPES,
                               "vq_sha256": sha256_of(TINY_VQ_WEIGHTS),
                               "trained": {"steps": steps, "seed": seed, **metrics}})
    report = {"weights": str(out), "steps": steps, "seconds": round(time.perf_counter() - start, 1), **metrics}
    return print_report(args, report, [f"saved {out}: shape accuracy {metrics['shape_accuracy']:.3f}, colour "
                                       f"accuracy {metrics['colour_accuracy']:.3f} ({report['seconds']} s)"])


# ------------------------------------------------------------------ unCLIP prior and decoder


def save_prior(prior, weights: Path, extra: dict | None = None) -> Path:
    return save_checkpoint(prior, weights, {**asdict(prior.cfg), **(extra or {})}, half=False)


def save_decoder(decoder, weights: Path, extra: dict | None = None) -> Path:
    return save_checkpoint(decoder, weights, {**asdict(decoder.cfg), "embed_dim": decoder.embed_dim,
                                              "guidance": decoder.guidance, **(extra or {})})


def prior_main(args) -> int:
    """Fit the unCLIP prior and decoder (lesson 05's recipes), measure lesson 05's numbers, save."""
    from utils.dalle import bundled
    from utils.models import TINY_WEIGHTS
    from utils.tinyvq import TINY_VQ_WEIGHTS
    from utils.unclip import (
        DECODER_WEIGHTS,
        EMBEDDER,
        PRIOR_WEIGHTS,
        PriorTrainConfig,
        decoder_recipe,
        evaluate_prior,
        evaluate_unclip,
        train_decoder,
        train_prior,
    )

    seed, steps, clip = args.seed or 0, args.steps or 1500, bundled(EMBEDDER)
    prior, history = train_prior(clip, PriorTrainConfig(steps=steps, seed=seed), progress=not args.json)
    decoder_cfg = decoder_recipe(seed)
    decoder, decoder_history = train_decoder(clip, decoder_cfg, progress=not args.json)
    retrieval = evaluate_prior(prior, clip)
    decoding = evaluate_unclip(decoder, prior, clip, pairs=data.SEEN, seed=seed)
    out, decoder_out = Path(args.out) / PRIOR_WEIGHTS.name, Path(args.out) / DECODER_WEIGHTS.name
    clip_sha, vq_sha = sha256_of(TINY_WEIGHTS), sha256_of(TINY_VQ_WEIGHTS)
    save_prior(prior, out, extra={"clip_sha256": clip_sha, "trained": {
        "steps": steps, "seed": seed, "retrieval": retrieval, "decoding": decoding}})
    save_decoder(decoder, decoder_out, extra={"clip_sha256": clip_sha, "vq_sha256": vq_sha, "trained": {
        "steps": decoder_cfg.steps, "seed": seed, "train_seconds": decoder_history["train_seconds"],
        "final_loss": decoder_history["loss"][-1], "decoding": decoding}})
    report = {"weights": str(out), "decoder": str(decoder_out), "steps": steps, "seed": seed,
              "train_seconds": history["train_seconds"] + decoder_history["train_seconds"],
              "retrieval": retrieval, "decoding": decoding}
    k = retrieval["k"]
    return print_report(args, report, [
        f"retrieval precision@{k} on seen pairs: text {retrieval['text_seen'][f'precision@{k}']:.3f}, "
        f"prior {retrieval['prior_seen'][f'precision@{k}']:.3f}; cosine to the caption's pictures: "
        f"{retrieval['text_seen']['cos_to_own_images']:.3f} -> {retrieval['prior_seen']['cos_to_own_images']:.3f}",
        f"decoded pictures with the right colour and shape: {decoding['text']['accuracy']:.0%} from the text "
        f"embedding, {decoding['prior']['accuracy']:.0%} from the prior's image embedding",
        f"saved {out} and {decoder_out}"])


# ------------------------------------------------------------------ mini DALL-E


def dalle_main(args) -> int:
    """Train the mini DALL-E (TrainConfig's defaults), judge it on seen and held-out captions
    (best of 8 reranked by the tiny-VQ CLIP, graded by utils.shapecheck), save it."""
    from utils.dalle import DALLE_WEIGHTS, RERANKER, bundled, save_tiny_dalle
    from utils.dalle_train import TrainConfig, evaluate_dalle, train_dalle
    from utils.shapecheck import load_shape_judge
    from utils.tinyvq import TINY_VQ_WEIGHTS

    seed = args.seed or 0
    cfg = TrainConfig(steps=args.steps or TrainConfig.steps, seed=seed)
    bundle, history = train_dalle(cfg, progress=not args.json)
    clip, judge = bundled(RERANKER), load_shape_judge()
    quality = {}
    for name, pairs in (("seen", data.SEEN), ("heldout", data.HELD_OUT)):
        r = evaluate_dalle(bundle, clip, judge, pairs, seed=seed, repeats=5)
        quality[name] = {k: r[k] for k in ("n_captions", "n_samples", "reranked_accuracy", "sample_accuracy", "any_right")}
    quality["reranker"] = RERANKER
    quality["judge"] = "utils.shapecheck: colour from pixel hues, shape from a separately trained CNN"
    out = Path(args.out) / DALLE_WEIGHTS.name
    config = save_tiny_dalle(bundle, out, extra={
        "vq_sha256": sha256_of(TINY_VQ_WEIGHTS),
        "trained": {"steps": cfg.steps, "seed": seed, "train_seconds": history["train_seconds"],
                    "final_loss": history["loss"][-1], "quality": quality}})
    report = {"weights": str(out), "config": str(config), "steps": cfg.steps, "seed": seed,
              "train_seconds": history["train_seconds"], "final_loss": history["loss"][-1], **quality}
    return print_report(args, report, [
        f"trained {cfg.steps} steps in {history['train_seconds']} s, final loss {history['loss'][-1]}",
        f"best-of-8 reranked sample right (colour and shape, independent judge): "
        f"{quality['seen']['reranked_accuracy']:.0%} of {quality['seen']['n_captions']} seen-pair captions, "
        f"{quality['heldout']['reranked_accuracy']:.0%} of {quality['heldout']['n_captions']} held-out ones",
        f"saved {out}"])
