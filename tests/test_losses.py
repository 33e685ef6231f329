"""Our contrastive losses equal open_clip's, on one process and on two (gloo, CPU)."""

from __future__ import annotations

import math

import pytest
import torch
from open_clip.loss import ClipLoss, SigLipLoss

from utils.losses import (
    check_distributed,
    contrastive_loss,
    normalize,
    siglip_loss,
    similarity_logits,
)


def _features(n: int, d: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    img = torch.randn(n, d, generator=gen, dtype=torch.float64)
    txt = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return normalize(img), normalize(txt)


@pytest.mark.parametrize("n", [1, 2, 7, 32, 128])
@pytest.mark.parametrize("scale", [1.0, 1 / 0.07, 100.0])
def test_contrastive_loss_equals_open_clip(n, scale):
    img, txt = _features(n, 24, seed=n)
    ours = contrastive_loss(img, txt, scale)
    theirs = ClipLoss()(img, txt, torch.tensor(scale, dtype=torch.float64))
    assert abs(ours.item() - theirs.item()) < 1e-6


@pytest.mark.parametrize("n", [3, 16, 64])
def test_contrastive_loss_float32_and_gradients_equal_open_clip(n):
    img, txt = (x.float() for x in _features(n, 32, seed=1))
    scale = torch.tensor(14.3, requires_grad=True)
    a, b = img.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    contrastive_loss(a, b, scale).backward()
    grads_ours = (a.grad, b.grad, scale.grad.clone())
    scale.grad = None
    c, d = img.clone().requires_grad_(True), txt.clone().requires_grad_(True)
    ClipLoss()(c, d, scale).backward()
    for ours, theirs in zip(grads_ours, (c.grad, d.grad, scale.grad)):
        assert torch.allclose(ours, theirs, atol=1e-6), (ours - theirs).abs().max()


@pytest.mark.parametrize("n", [1, 5, 32, 100])
@pytest.mark.parametrize("scale,bias", [(10.0, -10.0), (1.0, 0.0), (50.0, -3.0)])
def test_siglip_loss_equals_open_clip(n, scale, bias):
    img, txt = _features(n, 16, seed=100 + n)
    ours = siglip_loss(img, txt, scale, bias)
    theirs = SigLipLoss()(img, txt, torch.tensor(scale, dtype=torch.float64),
                          torch.tensor(bias, dtype=torch.float64))
    assert abs(ours.item() - theirs.item()) < 1e-6


@pytest.mark.parametrize("n", [4, 16, 64])
def test_siglip_bias_settles_where_the_model_predicts_the_share_of_true_pairs(n):
    """Lesson 01 starts SigLIP's bias near -log N. With uninformative logits (scale 0) the bias
    gradient is N sigmoid(b) - 1: zero at b = -log(N - 1), where the model gives every cell the
    probability 1/N (N true pairs among N^2 cells); above it the gradient lowers b, below it raises it."""
    img, txt = _features(n, 8, seed=n)
    grads = {}
    for bias in (-math.log(n - 1), 0.0, -10.0):
        b = torch.tensor(bias, dtype=torch.float64, requires_grad=True)
        siglip_loss(img, txt, 0.0, b).backward()
        grads[bias] = b.grad.item()
    assert abs(grads[-math.log(n - 1)]) < 1e-9
    assert grads[0.0] > 0 > grads[-10.0]


def test_loss_is_low_for_matching_pairs_and_high_for_shuffled():
    img, _ = _features(16, 64, seed=3)
    matched = contrastive_loss(img, img, 50.0)
    shuffled = contrastive_loss(img, img.roll(1, dims=0), 50.0)
    assert matched.item() < 0.01
    assert shuffled.item() > 10.0
    # a random guess among 16 captions costs log(16)
    assert abs(contrastive_loss(img, img, 0.0).item() - torch.log(torch.tensor(16.0)).item()) < 1e-6


def test_similarity_and_normalisation():
    img, txt = _features(4, 8, seed=5)
    assert torch.allclose(img.norm(dim=-1), torch.ones(4, dtype=torch.float64))
    logits = similarity_logits(img, txt, 2.0)
    assert logits.shape == (4, 4)
    assert torch.allclose(logits[1, 2], 2.0 * (img[1] * txt[2]).sum())


def test_unnormalised_inputs_and_shape_errors():
    gen = torch.Generator().manual_seed(0)
    img, txt = torch.randn(6, 8, generator=gen), torch.randn(6, 8, generator=gen)
    assert torch.allclose(contrastive_loss(img, txt, 5.0, normalized=False),
                          contrastive_loss(normalize(img), normalize(txt), 5.0))
    with pytest.raises(ValueError, match="same shape"):
        contrastive_loss(img, txt[:5], 5.0)


def test_distributed_needs_init():
    from utils.losses import distributed_contrastive_loss

    img, txt = _features(2, 4, seed=0)
    with pytest.raises(RuntimeError, match="init_process_group"):
        distributed_contrastive_loss(img, txt, 1.0)


def test_two_processes_equal_one_process_on_the_concatenated_batch():
    result = check_distributed(world_size=2, n_per_process=5, dim=12, logit_scale=20.0, seed=1)
    assert len(result["process_losses"]) == 4  # 2 processes x (local, with_grad)
    assert result["max_loss_diff"] < 1e-6
    assert result["max_grad_diff"] < 1e-6
    assert result["max_grad_diff_with_grad"] < 1e-6
    # the global batch really is bigger than one shard: its loss differs from a shard's
    gen = torch.Generator().manual_seed(1)
    img, txt = torch.randn(10, 12, generator=gen), torch.randn(10, 12, generator=gen)
    shard = contrastive_loss(normalize(img[:5]), normalize(txt[:5]), 20.0).item()
    assert abs(shard - result["single_loss"]) > 1e-3


def test_a_worker_that_dies_is_retried_and_reported(monkeypatch, capsys):
    import torch.multiprocessing as mp

    real_spawn, calls = mp.spawn, []

    def flaky_spawn(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise mp.ProcessExitedException("process 1 terminated with signal SIGABRT", error_index=1,
                                            error_pid=0, exit_code=-6, signal_name="SIGABRT")
        return real_spawn(*args, **kwargs)

    monkeypatch.setattr(mp, "spawn", flaky_spawn)
    result = check_distributed(world_size=2, n_per_process=3, dim=8)
    assert result["attempts"] == 2 and result["max_loss_diff"] < 1e-6
    assert "trying again" in capsys.readouterr().err
    calls.clear()
    monkeypatch.setattr(mp, "spawn", lambda *a, **k: (_ for _ in ()).throw(
        mp.ProcessExitedException("died", error_index=0, error_pid=0, exit_code=1)))
    with pytest.raises(mp.ProcessExitedException):
        check_distributed(world_size=2, n_per_process=3, dim=8, attempts=2)
