"""CLIP-guided generation: prompt syntax, cutouts, loss, drawers, the config, bad input, CLI,
and that the offline tiny world really draws the prompt's colour (an independent pixel check)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from device_params import DEVICES

from utils import generate as gen
from utils import objective
from utils.cutouts import make_cutouts, sample_cutouts
from utils.drawers import DEFAULT_LR, DEFAULT_SIZE, clamp_with_grad
from utils.generate import GenerationConfig, GenerationError, generate
from utils.io import unique_path
from utils.objective import prompt_loss, spherical_distance
from utils.prompts import Prompt, parse_prompts

# ------------------------------------------------------------------ an independent pixel check

# Hue centres (degrees) of the shapes world's colour names; a pixel gets the nearest one.
HUES = {"red": 0, "orange": 30, "yellow": 56, "green": 120, "blue": 225, "purple": 288}


def colour_shares(image) -> tuple[dict[str, float], float]:
    """Share of each colour name among the saturated pixels (the shapes world's backgrounds have
    saturation <= 0.15), and the fraction of the image those pixels cover (HSV from kornia)."""
    from kornia.color import rgb_to_hsv
    from torchvision.transforms.functional import to_tensor

    hue, sat, value = rgb_to_hsv(to_tensor(image.convert("RGB"))[None])[0]  # (H, W) each, hue in radians
    coloured = (sat > 0.4) & (value > 0.3)
    hue = torch.rad2deg(hue[coloured])  # (M,)
    centres = torch.tensor(list(HUES.values()), dtype=hue.dtype)
    gap = ((hue[:, None] - centres[None] + 180) % 360 - 180).abs()  # (M, 6) circular distance
    counts = torch.bincount(gap.argmin(1), minlength=len(HUES))
    total = max(int(coloured.sum()), 1)
    return {n: int(counts[i]) / total for i, n in enumerate(HUES)}, float(coloured.float().mean())


def test_colour_check_on_rendered_shapes():
    """The check itself is right on the shapes world's own images."""
    from utils.data import sample_images

    for image, caption in sample_images(12, seed=3):
        shares, cover = colour_shares(image)
        colour = next(c for c in HUES if f" {c} " in f" {caption} ")
        if cover > 0.01:
            assert max(shares, key=shares.get) == colour, (caption, shares)


# ------------------------------------------------------------------ prompts


def test_parse_pixray_syntax():
    assert parse_prompts("a red circle:1 | a blue square:-0.5") == [
        Prompt("a red circle", 1.0), Prompt("a blue square", -0.5)]
    assert parse_prompts("a red circle") == [Prompt("a red circle", 1.0)]
    assert parse_prompts(["a", "b:2"]) == [Prompt("a", 1.0), Prompt("b", 2.0)]
    assert parse_prompts("a red circle | ") == [Prompt("a red circle", 1.0)]


@pytest.mark.parametrize("bad, message", [
    ("", "empty"), ("  |  ", "empty"), ("a:b:c", "must be a number"), ("a:1:2", "only one"),
    (":2", "no text"), ("a red circle:0", "weight 0"), ("a:nan", "finite"),
])
def test_bad_prompts(bad, message):
    with pytest.raises(ValueError, match=message):
        parse_prompts(bad)


# ------------------------------------------------------------------ loss and cutouts


def test_spherical_distance():
    a = F.normalize(torch.randn(5, 8), dim=-1)
    b = F.normalize(torch.randn(5, 8), dim=-1)
    angle = torch.arccos((a * b).sum(-1).clamp(-1, 1))
    # 2 arcsin(|a-b|/2)^2 = angle^2 / 2 for unit vectors
    torch.testing.assert_close(spherical_distance(a, b), angle**2 / 2, atol=1e-5, rtol=1e-4)
    assert spherical_distance(a, a).abs().max() < 1e-6
    # antipodal: pi^2 / 2 (arcsin is steep near 1, hence the looser tolerance)
    torch.testing.assert_close(spherical_distance(a, -a), torch.full((5,), math.pi**2 / 2), atol=5e-3, rtol=0)


def test_prompt_loss_weights_and_negative_prompts():
    t = F.normalize(torch.randn(2, 8), dim=-1)
    img = t[0].expand(1, 3, 8)  # three cutouts that all equal prompt 0
    w = torch.tensor([1.0, -0.5])
    expected = 0 - 0.5 * spherical_distance(t[0], t[1])
    torch.testing.assert_close(prompt_loss(img, t, w), expected[None])


def test_fused_cutouts_are_exact_crops():
    image = torch.rand(1, 3, 8, 8)
    identity = torch.tensor([[[[1.0, 0, 0], [0, 1, 0]]]])  # (1, 1, 2, 3)
    torch.testing.assert_close(make_cutouts(image, identity, 8), image)
    top_left = torch.tensor([[[[0.5, 0, -0.5], [0, 0.5, -0.5]]]])  # half size, top-left quarter
    torch.testing.assert_close(make_cutouts(image, top_left, 4), image[:, :, :4, :4])


def test_one_grid_sample_equals_one_call_per_cutout():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 16, 16, generator=g)
    theta = sample_cutouts(5, batch=2, generator=g)  # (2, 5, 2, 3)
    fused = make_cutouts(images, theta, 8)  # (10, 3, 8, 8)
    for b in range(2):
        for n in range(5):
            grid = F.affine_grid(theta[b, n][None], [1, 3, 8, 8], align_corners=False)
            one = F.grid_sample(images[b:b + 1], grid, padding_mode="reflection", align_corners=False)
            torch.testing.assert_close(fused[b * 5 + n], one[0], atol=1e-5, rtol=1e-5)


def test_cutouts_stay_inside_and_vary():
    theta = sample_cutouts(200, generator=torch.Generator().manual_seed(1))[0]  # (200, 2, 3)
    corners = torch.tensor([[-1.0, -1, 1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]]).T  # (3, 4)
    mapped = theta @ corners  # (200, 2, 4)
    # rotation lets corners leave the image by at most sqrt(2) sin(15 deg) * scale
    assert mapped.abs().max() < 1.0 + math.sqrt(2) * math.sin(math.radians(15)) + 1e-4
    scale = theta[:, :, :2].det().abs().sqrt()
    assert 0.5 - 1e-5 <= scale.min() and scale.max() <= 1 + 1e-5 and scale.std() > 0.1
    assert (theta[:, 0, 0] < 0).any() and (theta[:, 0, 0] > 0).any(), "flips should occur"


def test_clamp_with_grad():
    x = torch.tensor([-0.5, 0.5, 1.5], requires_grad=True)
    clamp_with_grad(x).sum().backward()  # descent would push x down: fine for 1.5, not for -0.5
    assert torch.equal(x.grad, torch.tensor([0.0, 1.0, 1.0]))
    assert torch.equal(clamp_with_grad(x.detach()), torch.tensor([0.0, 0.5, 1.0]))


def test_unique_path_never_overwrites(tmp_path):
    first = tmp_path / "a.png"
    assert unique_path(first) == first
    first.write_bytes(b"x")
    assert unique_path(first) == tmp_path / "a-1.png"


# ------------------------------------------------------------------ the loop with the tiny models


@pytest.fixture(scope="module")
def tiny_clip():
    from utils.models import load_clip

    return load_clip("tiny-shapes", device="cpu")


def test_same_seed_same_image_and_batch(tiny_clip):
    a = generate("a red circle", clip=tiny_clip, iterations=4, cutouts=4, seed=3, progress=False)
    b = generate("a red circle", clip=tiny_clip, iterations=4, cutouts=4, seed=3, progress=False)
    c = generate("a red circle", clip=tiny_clip, iterations=4, cutouts=4, seed=4, progress=False)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert not np.array_equal(np.asarray(a.image), np.asarray(c.image))
    # several seeds per step: image i starts where seed + i starts alone (up to rounding:
    # a batched convolution may differ in the last bit)
    batch = generate("a red circle", clip=tiny_clip, iterations=0, seed=3, batch=2, progress=False)
    alone = [generate("a red circle", clip=tiny_clip, iterations=0, seed=s, progress=False).image for s in (3, 4)]
    for got, want in zip(batch.images, alone):
        assert np.abs(np.asarray(got, dtype=int) - np.asarray(want, dtype=int)).max() <= 1
    assert np.abs(np.asarray(batch.images[0], dtype=int) - np.asarray(batch.images[1], dtype=int)).max() > 50


def test_config_and_keywords_run_the_same(tiny_clip):
    """generate(p, GenerationConfig(...)) equals generate(p, **the same settings); keywords
    override the config without changing it; a misspelt setting is refused."""
    config = GenerationConfig(iterations=3, cutouts=2, seed=5)
    a = generate("a red circle", config, clip=tiny_clip, progress=False)
    b = generate("a red circle", clip=tiny_clip, iterations=3, cutouts=2, seed=5, progress=False)
    assert a.losses == b.losses and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    c = generate("a red circle", config, clip=tiny_clip, seed=6, progress=False)
    assert c.settings["seed"] == 6 and config.seed == 5 and c.losses != a.losses
    with pytest.raises(TypeError, match="iteration"):
        generate("a red circle", clip=tiny_clip, iteration=3)


def test_config_fills_presets_and_drawer_defaults():
    real = GenerationConfig(drawer="vqgan", quality="better", cutouts=5).resolved(tiny=False)
    assert real.iterations == gen.PRESETS["better"]["iterations"] and real.cutouts == 5  # explicit wins
    assert real.saturation == 0.0 and real.size == DEFAULT_SIZE["vqgan"] and real.lr == DEFAULT_LR["vqgan"]
    assert real.frame_every == real.iterations // 30
    tiny = GenerationConfig(quality="better").resolved(tiny=True)
    assert tiny.saturation == gen.TINY_PRESETS["better"]["saturation"] > 0 and tiny.size == DEFAULT_SIZE["tiny-vq"]
    assert tiny.iterations < real.iterations  # the shapes world needs fewer steps
    with pytest.raises(ValueError, match="Unknown quality"):
        GenerationConfig(quality="superb").resolved(tiny=True)
    with pytest.raises(ValueError, match="iterations must be >= 0"):
        GenerationConfig(iterations=-1).resolved(tiny=True)


def test_drawers_and_size_rounding(tiny_clip):
    with pytest.warns(UserWarning, match="multiple of 8"):
        r = generate("a red circle", clip=tiny_clip, iterations=2, cutouts=2, size=70, progress=False)
    assert r.image.size == (72, 72) and "using 72" in r.notes[0]
    p = generate("a red circle", drawer="pixel", clip=tiny_clip, iterations=2, cutouts=2, progress=False)
    assert p.image.size == (64, 64)
    k = generate("a red circle", clip=tiny_clip, iterations=2, cutouts=3, augment="kornia", progress=False)
    assert len(k.losses) == 2
    with pytest.raises(ValueError, match="Unknown drawer"):
        generate("x", drawer="crayon", clip=tiny_clip, progress=False)


def test_missing_vqgan_checkpoint_says_how_to_download(tiny_clip, tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError, match="download_vqgan"):
        generate("a red circle", drawer="vqgan", clip=tiny_clip, iterations=1, progress=False)


def test_out_of_memory_is_explained(tiny_clip, monkeypatch):
    def oom(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    before = [p.requires_grad for p in tiny_clip.model.parameters()]
    monkeypatch.setattr(objective, "prompt_loss", oom)
    with pytest.raises(GenerationError, match="fewer cutouts"):
        generate("a red circle", clip=tiny_clip, iterations=2, cutouts=8, progress=False)
    assert [p.requires_grad for p in tiny_clip.model.parameters()] == before, "CLIP left frozen"


def test_pixray_bridge_message():
    if gen.pixray_available():  # a skip that hides nothing: the message is for a missing pixray
        pytest.skip("pixray is installed here")
    with pytest.raises(GenerationError, match="git clone https://github.com/pixray/pixray"):
        gen.run_pixray("a red circle")


# The check the course promises: for each prompt, the CLIP score rises clearly and the
# prompt's colour dominates the coloured pixels of the final image.
PROMPTS = ["a red circle", "a blue square", "a green triangle", "a yellow star"]


@pytest.mark.parametrize("prompt", PROMPTS)
def test_tiny_world_draws_the_prompt(tiny_clip, prompt):
    result = generate(prompt, clip=tiny_clip, seed=0, progress=False)
    assert result.final_score > result.start_score + 0.1, (result.start_score, result.final_score)
    shares, cover = colour_shares(result.image)
    colour = prompt.split()[1]
    assert cover > 0.05, f"almost no coloured pixels in the image for {prompt!r}"
    assert max(shares, key=shares.get) == colour and shares[colour] > 0.5, (prompt, shares)


def test_cli_json(tmp_path, monkeypatch, capsys):
    from utils.__main__ import main

    monkeypatch.chdir(tmp_path)
    assert main(["generate", "a red circle", "--iterations", "3", "--cutouts", "4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) >= {"images", "animation", "start_score", "final_score", "iterations", "seconds"}
    assert report["iterations"] == 3 and (tmp_path / report["images"][0]).exists()
    # it says which CLIP and which device it used (tiny CLIP by default for the tiny VQ)
    assert report["clip"] == {"name": "tiny-shapes", "pretrained": "tiny-shapes", "tiny": True}
    assert report["device"] == report["settings"]["device"] in ("cpu", "cuda", "mps")
    assert (tmp_path / report["animation"]).exists()
    # run again: new files, the first ones are kept
    assert main(["generate", "a red circle", "--iterations", "1", "--cutouts", "2", "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert second["images"][0] != report["images"][0]
    assert main(["generate", "a:b:c", "--json"]) == 1
    assert "must be a number" in json.loads(capsys.readouterr().out)["error"]


def test_animation_files(tmp_path):
    import importlib.util

    import imageio.v3 as iio
    from PIL import Image

    frames = [Image.new("RGB", (16, 16), (40 * i, 0, 0)) for i in range(5)]
    gif = gen.save_animation(frames, tmp_path / "a.gif")
    assert iio.imread(gif, index=None).shape[0] == 5
    assert gen.save_animation(frames, tmp_path / "a.gif").name == "a-1.gif"  # never overwritten
    if not (importlib.util.find_spec("av") or importlib.util.find_spec("imageio_ffmpeg")):
        with pytest.raises(GenerationError, match="pip install av"):
            gen.save_animation(frames, tmp_path / "a.mp4")
    with pytest.raises(ValueError, match=".gif or .mp4"):
        gen.save_animation(frames, tmp_path / "a.avi")




@pytest.mark.parametrize("device", DEVICES)
def test_every_drawer_runs_where_its_clip_lives(device):
    """One device rule: CLIP on `device`, and everything generate() makes follows it."""
    from utils.models import load_clip
    from utils.vqgan import VQGAN, VQGANConfig

    clip = load_clip("tiny-shapes", device=device)
    clip_objective = objective.CLIPObjective(clip, parse_prompts("a red circle"), cutouts=2)
    for tensor in (clip_objective.mean, clip_objective.std, clip_objective.text, clip_objective.weights):
        assert tensor.device.type == device
    torch.manual_seed(0)  # a small VQGAN of the real family (f=2) stands in for the checkpoint
    small_vqgan = VQGAN(VQGANConfig(n_embed=32, embed_dim=8, z_channels=16, ch=32, ch_mult=(1, 2),
                                    num_res_blocks=1, attn_resolutions=(8,), resolution=16))
    for drawer, vq in [("tiny-vq", None), ("pixel", None), ("vqgan", small_vqgan.to(device))]:
        r = generate("a red circle", drawer=drawer, clip=clip, vq=vq, size=32, iterations=2, cutouts=2,
                     progress=False)
        assert r.settings["device"].startswith(device) and r.image.size == (32, 32), drawer
        assert all(np.isfinite(r.losses)), drawer


def test_low_memory_is_the_same_run_and_loads_no_encoder(monkeypatch):
    """low_memory (on by default for the VQGAN on a CPU with under 4 GiB) recomputes the activations of the VQGAN
    decoder and of CLIP's image transformer: the same losses to the bit, their switches restored
    after. Starting from random codes, generate() loads the VQGAN without its encoder."""
    from utils.models import load_clip
    from utils.vqgan import VQGAN, VQGANConfig

    clip = load_clip("tiny-shapes", device="cpu")
    torch.manual_seed(0)
    small_vqgan = VQGAN(VQGANConfig(n_embed=32, embed_dim=8, z_channels=16, ch=32, ch_mult=(1, 2),
                                    num_res_blocks=1, attn_resolutions=(8,), resolution=16))
    runs = {on: generate("a red circle", drawer="vqgan", clip=clip, vq=small_vqgan, size=32, iterations=3,
                         cutouts=2, low_memory=on, progress=False) for on in (False, True)}
    assert runs[True].losses == runs[False].losses
    assert runs[True].settings["low_memory"] and not runs[False].settings["low_memory"]
    assert small_vqgan.decoder.grad_checkpointing is False
    for limit, expected in ((2 * 10**9, True), (16 * 2**30, False), (None, False)):  # Binder, laptop
        monkeypatch.setattr(gen.assets, "memory_limit", lambda limit=limit: limit)
        assert generate("a red circle", drawer="vqgan", clip=clip, vq=small_vqgan, size=32, iterations=0,
                        cutouts=2, progress=False).settings["low_memory"] is expected, limit

    asked = []
    monkeypatch.setattr(gen, "load_vq", lambda name, ckpt, device, encoder: asked.append(encoder) or small_vqgan)
    for init_noise in (None, "random", "grey"):
        generate("a red circle", drawer="vqgan", clip=clip, size=32, iterations=0, cutouts=2,
                 init_noise=init_noise, progress=False)
    assert asked == [False, False, True]  # only a noise picture (or an init image) needs the encoder


# ------------------------------------------------------------------ the CPU speed-ups: same numbers


def test_folded_tower_computes_what_clip_computes(tiny_clip):
    """On a CPU the loop runs the tiny CLIP with its BatchNorms folded into its convolutions, in
    channels_last; the copy's embeddings are CLIP's, and a copy that differs is refused."""
    visual = tiny_clip.model.visual
    tower = objective.folded(visual, 64)
    assert tower is not visual and not any(isinstance(m, torch.nn.BatchNorm2d) for m in tower.modules())
    assert not any(p.requires_grad for p in tower.parameters())
    assert tower.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.rand(5, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(tower(x), visual(x), atol=1e-4, rtol=1e-3)

    class BatchNormFirst(torch.nn.Module):  # registered conv, bn; runs bn, conv: folding would be wrong
        def __init__(self):
            super().__init__()
            self.conv, self.bn = torch.nn.Conv2d(3, 3, 3, padding=1), torch.nn.BatchNorm2d(3)
            self.bn.running_mean.fill_(0.5)

        def forward(self, x):
            return self.conv(self.bn(x))

    odd = BatchNormFirst().eval()
    assert objective.folded(odd, 8) is odd
    conv = torch.nn.Conv2d(3, 3, 1).eval()
    assert objective.folded(conv, 8) is conv  # nothing to fold


def test_sequence_first_attention_and_patches_are_the_same_and_restored():
    """While the loop runs, open_clip's attention is sequence-first and the patch embedding one
    matrix product (faster on a CPU): the same gradients, and the model as it was afterwards."""
    from types import SimpleNamespace

    from open_clip.transformer import VisionTransformer

    torch.manual_seed(0)
    vit = VisionTransformer(image_size=32, patch_size=8, width=64, layers=2, heads=2, mlp_ratio=2.0,
                            output_dim=16).eval()
    drawer = torch.nn.Linear(1, 1)
    drawer.latent = torch.nn.Parameter(torch.zeros(1))
    clip = SimpleNamespace(model=SimpleNamespace(visual=vit, parameters=vit.parameters))
    x = torch.rand(3, 3, 32, 32)

    def input_gradient():
        image = x.clone().requires_grad_()
        vit(image).square().sum().backward()
        return image.grad

    before = input_gradient()
    with gen._loop_settings(clip, drawer, low_memory=False, tf32=True, cpu=True):
        assert vit.transformer.batch_first is False
        assert all(not m.batch_first for m in vit.modules() if isinstance(m, torch.nn.MultiheadAttention))
        assert not any(p.requires_grad for p in vit.parameters()) and isinstance(vit.conv1, objective.Patches)
        during = input_gradient()
    torch.testing.assert_close(during, before, atol=1e-6, rtol=1e-4)
    assert vit.transformer.batch_first and all(p.requires_grad for p in vit.parameters())
    assert isinstance(vit.conv1, torch.nn.Conv2d)
    patches, conv = objective.Patches(vit.conv1), vit.conv1
    for x in (torch.rand(2, 3, 32, 48), torch.rand(2, 3, 33, 32)):  # whole patches; a remainder (plain conv)
        torch.testing.assert_close(patches(x), conv(x), atol=1e-5, rtol=1e-4)


def test_bf16_on_a_cpu(tiny_clip, monkeypatch):
    """bf16 autocast: on by default for the VQGAN where the CPU has native bf16, off for the tiny
    world; `bf16` decides otherwise; a bf16 run draws nearly what a float32 run draws."""
    from utils.vqgan import VQGAN, VQGANConfig

    torch.manual_seed(0)
    small_vqgan = VQGAN(VQGANConfig(n_embed=32, embed_dim=8, z_channels=16, ch=32, ch_mult=(1, 2),
                                    num_res_blocks=1, attn_resolutions=(8,), resolution=16))
    for native in (True, False):
        monkeypatch.setattr(gen.assets, "native_bf16", lambda native=native: native)
        for drawer, vq in (("vqgan", small_vqgan), ("tiny-vq", None)):
            r = generate("a red circle", drawer=drawer, clip=tiny_clip, vq=vq, size=32, iterations=0, cutouts=2,
                         progress=False)
            assert r.settings["bf16"] is (native and drawer == "vqgan"), (native, drawer)
    runs = {bf16: generate("a red circle", clip=tiny_clip, iterations=12, cutouts=8, bf16=bf16, progress=False)
            for bf16 in (False, True)}
    assert runs[True].settings["bf16"] and not runs[False].settings["bf16"]
    assert runs[True].losses != runs[False].losses  # bf16 really ran
    assert abs(runs[True].final_score - runs[False].final_score) < 0.05 * abs(runs[False].final_score)
