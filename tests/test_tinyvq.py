"""The bundled tiny VQ tokenizer/decoder: the interface lessons 04 and 05 use, its quality,
its manifest entry, and that `python -m course_tools train vq` rebuilds it."""

from __future__ import annotations

import argparse
import json

import pytest
import torch

from course_tools.recipes import evaluate_tiny_vq, vq_main
from utils.assets import read_manifest, verify_assets
from utils.data import render_batch
from utils.tinyvq import (
    TINY_VQ_CONFIG,
    TINY_VQ_WEIGHTS,
    TinyVQ,
    load_tiny_vq,
    nearest_codes,
    quantize,
)


@pytest.fixture(scope="module")
def vq():
    return load_tiny_vq()


@pytest.fixture(scope="module")
def images():
    return render_batch(64, seed=777, split="test", as_tensor=True)[0]  # (64, 3, 64, 64)


def test_bundled_files_small_and_in_manifest():
    manifest, problems = read_manifest(), verify_assets()
    for path in (TINY_VQ_WEIGHTS, TINY_VQ_CONFIG):
        assert path.name in manifest, f"{path.name} missing from the manifest"
        assert path.name not in problems, problems[path.name]  # present, sha256 matches
    assert TINY_VQ_WEIGHTS.stat().st_size <= 2_000_000
    assert "train vq" in manifest[TINY_VQ_WEIGHTS.name]["rebuild"]


def test_interface_shapes(vq, images):
    assert vq.grid == (8, 8) and vq.codebook.shape == (256, 32)
    codes = vq.encode(images[:4])
    assert codes.shape == (4, 8, 8) and codes.dtype == torch.long
    out = vq.decode_codes(codes)
    assert out.shape == (4, 3, 64, 64) and out.min() >= 0 and out.max() <= 1
    z = vq.codebook[codes].permute(0, 3, 1, 2)  # (4, 32, 8, 8)
    torch.testing.assert_close(vq.decode_z(z).clamp(0, 1), out)


def test_reconstruction_quality(vq, images):
    """Fresh test images survive tokenisation: PSNR above 20 dB, colours kept."""
    recon = vq.decode_codes(vq.encode(images))
    mse = torch.mean((recon - images) ** 2)
    psnr = 10 * torch.log10(1 / mse)
    assert psnr > 20, f"PSNR {psnr:.1f} dB"
    # the mean colour of each image is kept: off by 0.02 on average, 0.08 at worst
    error = (recon.mean((2, 3)) - images.mean((2, 3))).abs()  # (64, 3)
    assert error.mean() < 0.02 and error.max() < 0.08, (error.mean(), error.max())


def test_codebook_is_used(vq):
    codes = vq.encode(render_batch(256, seed=5, as_tensor=True)[0])
    assert codes.unique().numel() >= 128, "most codes should be in use"


def test_quantize_is_nearest_with_straight_through_gradient(vq):
    z = torch.randn(2, 32, 3, 3, requires_grad=True)
    z_q, codes = quantize(z, vq.codebook)
    dist = ((z.detach().permute(0, 2, 3, 1)[..., None, :] - vq.codebook) ** 2).sum(-1)  # (2, 3, 3, K)
    assert torch.equal(codes, dist.argmin(-1))
    torch.testing.assert_close(z_q, vq.codebook[codes].permute(0, 3, 1, 2))
    (z_q * torch.arange(9.0).view(1, 1, 3, 3)).sum().backward()
    torch.testing.assert_close(z.grad, torch.arange(9.0).view(1, 1, 3, 3).expand(2, 32, 3, 3))
    assert torch.equal(nearest_codes(z.detach(), vq.codebook), codes)


def test_bad_input_is_explained(vq):
    with pytest.raises(ValueError, match="64x64"):
        vq.encode(torch.rand(1, 3, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        vq.encode(torch.rand(3, 64, 64))
    with pytest.raises(ValueError, match="codes must lie"):
        vq.decode_codes(torch.full((1, 8, 8), 256))
    with pytest.raises(FileNotFoundError, match="train vq"):
        load_tiny_vq("/nonexistent/tiny-vq.safetensors")


def test_train_command_writes_a_loadable_model(tmp_path, capsys):
    import hashlib

    def digest(path):
        return hashlib.sha256(path.read_bytes()).hexdigest()

    bundled_before = digest(TINY_VQ_WEIGHTS)
    out = tmp_path / "vq.safetensors"
    args = argparse.Namespace(seed=1, steps=3, out=str(out), json=True)
    vq_main(args)
    report = json.loads(capsys.readouterr().out)
    assert report["weights"] == str(out) and report["steps"] == 3
    model = load_tiny_vq(out)
    assert isinstance(model, TinyVQ) and model.grid == (8, 8)
    # The file holds the model that was measured: its PSNR, recomputed (float16 weights now).
    assert evaluate_tiny_vq(model, seed=1 + 10_000)["psnr_db"] == pytest.approx(report["psnr_db"], abs=0.05)
    assert digest(TINY_VQ_WEIGHTS) == bundled_before, "training with --out changed the bundled tiny VQ"
