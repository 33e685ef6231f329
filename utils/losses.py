"""The contrastive losses that train CLIP, written to be read (lesson 01).

A batch holds N matching (image, caption) pairs: image i and caption i are a positive pair,
image i and caption j != i negatives. Every image must pick its own caption among the N, and
every caption its image:

    img = F.normalize(image_features, dim=-1)           # (N, D), unit length
    txt = F.normalize(text_features, dim=-1)            # (N, D)
    logits = logit_scale * img @ txt.T                  # (N, N); logit_scale = 1 / temperature
    loss = (cross_entropy(logits, arange(N)) + cross_entropy(logits.T, arange(N))) / 2

References: CLIP, Radford et al. 2021 (arXiv:2103.00020), Fig. 3; InfoNCE, van den Oord et al.
2018 (arXiv:1807.03748); SigLIP, Zhai et al. 2023 (arXiv:2303.15343). Tests check that these
equal open_clip's ClipLoss and SigLipLoss.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def normalize(features: torch.Tensor) -> torch.Tensor:
    """Scale each row to unit length: x / ||x||, so dot products are cosine similarities."""
    return F.normalize(features, dim=-1)


def similarity_logits(image_features: torch.Tensor, text_features: torch.Tensor,
                      logit_scale: torch.Tensor | float) -> torch.Tensor:
    """logits[i, j] = logit_scale * <image_i, text_j>; (N, D), (M, D) -> (N, M).

    Features must already be normalised. logit_scale = 1 / temperature (CLIP learns its
    logarithm and starts at 1 / 0.07, about 14.3; it is clipped at 100).
    """
    return logit_scale * image_features @ text_features.T


def contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                     logit_scale: torch.Tensor | float, normalized: bool = True) -> torch.Tensor:
    """CLIP's symmetric InfoNCE loss over a batch of N matching pairs.

    loss = 1/2 [ CE(logits, diag) + CE(logits^T, diag) ], logits = s * I T^T (N, N),
    where CE over row i is -log( exp(l_ii) / sum_j exp(l_ij) ): image i must find
    caption i among all N captions (rows), and caption i must find image i (columns).
    Pass normalized=False to normalise the features here first.
    """
    if image_features.shape != text_features.shape:
        raise ValueError(
            f"image_features {tuple(image_features.shape)} and text_features "
            f"{tuple(text_features.shape)} must have the same shape (N pairs, D)."
        )
    if not normalized:
        image_features, text_features = normalize(image_features), normalize(text_features)
    logits_per_image = similarity_logits(image_features, text_features, logit_scale)  # (N, N)
    logits_per_text = logits_per_image.T  # (N, N): row i = caption i against every image
    targets = torch.arange(len(logits_per_image), device=logits_per_image.device)  # the diagonal
    image_to_text = F.cross_entropy(logits_per_image, targets)
    text_to_image = F.cross_entropy(logits_per_text, targets)
    return (image_to_text + text_to_image) / 2


def soft_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                          logit_scale: torch.Tensor, texts: list[str]) -> torch.Tensor:
    """contrastive_loss where every pair with the same caption is a match (target shared evenly).

    With few distinct captions ("a red circle"...) a batch holds many copies of each; the plain
    loss would push image i away from caption j even when both say "a red circle".
    """
    ids = {text: k for k, text in enumerate(dict.fromkeys(texts))}
    caption_id = torch.tensor([ids[text] for text in texts])
    targets = (caption_id[:, None] == caption_id[None, :]).float()  # (B, B) 1 where captions match
    targets /= targets.sum(1, keepdim=True)
    logits = similarity_logits(image_features, text_features, logit_scale)  # (B, B)
    return (F.cross_entropy(logits, targets) + F.cross_entropy(logits.T, targets)) / 2


def siglip_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                logit_scale: torch.Tensor | float,
                logit_bias: torch.Tensor | float) -> torch.Tensor:
    """SigLIP's sigmoid loss: every (image, caption) cell is its own yes/no question.

    loss = -1/N sum_ij log sigmoid(z_ij * (s <I_i, T_j> + b)), z_ij = +1 if i == j else -1.
    No softmax over the batch, so no row needs the whole batch to normalise.
    Features must already be normalised.
    """
    logits = similarity_logits(image_features, text_features, logit_scale) + logit_bias  # (N, N)
    n = len(logits)
    signs = 2 * torch.eye(n, device=logits.device, dtype=logits.dtype) - 1  # +1 diagonal, else -1
    return -F.logsigmoid(signs * logits).sum() / n


# ------------------------------------------------------------------ many processes


def all_gather(features: torch.Tensor, with_grad: bool = False) -> torch.Tensor:
    """Concatenate every process's (n, D) features into (world * n, D), in rank order.

    with_grad=False: the other rows arrive as constants and ours stay the tensor passed in, so
    `features` gets exactly d(loss)/d(our rows), as if one process held the global batch.
    with_grad=True: torch.distributed.nn.all_gather, whose backward sums the gradients of every
    process's (identical) loss, so each shard receives world_size times that.
    """
    if with_grad:
        import warnings

        import torch.distributed.nn as dist_nn

        with warnings.catch_warnings():  # deprecated in torch 2.x, still what open_clip uses
            warnings.simplefilter("ignore", FutureWarning)
            return torch.cat(dist_nn.all_gather(features), dim=0)
    shards = [torch.empty_like(features) for _ in range(dist.get_world_size())]
    dist.all_gather(shards, features.detach().contiguous())
    shards[dist.get_rank()] = features  # our own rows keep their gradient
    return torch.cat(shards, dim=0)


def distributed_contrastive_loss(image_features: torch.Tensor, text_features: torch.Tensor,
                                 logit_scale: torch.Tensor | float,
                                 gather_with_grad: bool = False) -> torch.Tensor:
    """The contrastive loss over the global batch, when each process holds n of the pairs.

    Every process all-gathers the normalised features of all (world * n rows) and computes the
    same loss, so each row has world * n - 1 negatives: how CLIP trains with 32,768 pairs per
    batch over hundreds of GPUs, each encoding only its own n. Like open_clip's ClipLoss with
    local_loss=False. Gradients: see `all_gather` (DDP then averages them over processes).
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "distributed_contrastive_loss needs torch.distributed: call "
            "torch.distributed.init_process_group(...) in every process first, "
            "or use contrastive_loss on one process."
        )
    all_images = all_gather(image_features, gather_with_grad)  # (world * n, D)
    all_texts = all_gather(text_features, gather_with_grad)  # (world * n, D)
    return contrastive_loss(all_images, all_texts, logit_scale)


# ------------------------------------------------------------------ a check you can run


def _check_worker(rank: int, world: int, address: str, images, texts, logit_scale, out_dir):
    """One process of `check_distributed`: its shard of the batch, the gathered loss, gradients."""
    dist.init_process_group("gloo", init_method=address, rank=rank, world_size=world)
    try:
        n, result = len(images) // world, {}
        for key, with_grad in (("local", False), ("with_grad", True)):
            img = images[rank * n:(rank + 1) * n].clone().requires_grad_(True)  # (n, D) our shard
            txt = texts[rank * n:(rank + 1) * n].clone().requires_grad_(True)
            loss = distributed_contrastive_loss(normalize(img), normalize(txt), logit_scale,
                                                with_grad)
            loss.backward()
            result.update({f"loss_{key}": loss.detach(), f"grad_images_{key}": img.grad,
                           f"grad_texts_{key}": txt.grad})
        torch.save(result, f"{out_dir}/rank{rank}.pt")
        # A process that leaves while another still talks to it makes gloo abort that one.
        dist.barrier()
    finally:
        dist.destroy_process_group()


def check_distributed(world_size: int = 2, n_per_process: int = 4, dim: int = 16,
                      logit_scale: float = 10.0, seed: int = 0, attempts: int = 3) -> dict:
    """Run distributed_contrastive_loss in `world_size` CPU processes (gloo) and compare with
    contrastive_loss on the whole batch in this process.

    Returns "single_loss", "process_losses", "max_loss_diff", "max_grad_diff" (each shard's
    gradient against the same rows of the single-process one), "max_grad_diff_with_grad" (after
    dividing by world_size, see `all_gather`) and "attempts" (a launch whose worker died is
    retried, up to `attempts` times).
    """
    import sys
    import tempfile

    import torch.multiprocessing as mp

    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(world_size * n_per_process, dim, generator=gen)  # (world * n, D)
    texts = torch.randn(world_size * n_per_process, dim, generator=gen)
    for attempt in range(1, attempts + 1):
        with tempfile.TemporaryDirectory() as out_dir:
            address = f"file://{out_dir}/rendezvous"  # a file: no network port to collide on
            try:
                mp.spawn(_check_worker, nprocs=world_size, join=True,
                         args=(world_size, address, images, texts, logit_scale, out_dir))
            except mp.ProcessExitedException as err:
                # gloo now and then aborts a process at teardown on a busy machine; that says
                # nothing about the loss, so try again (and say so).
                if attempt == attempts:
                    raise
                print(f"check_distributed: a worker process died ({err}); trying again",
                      file=sys.stderr)
                continue
            results = [torch.load(f"{out_dir}/rank{r}.pt", weights_only=True)
                       for r in range(world_size)]
            break

    img, txt = images.clone().requires_grad_(True), texts.clone().requires_grad_(True)
    single = contrastive_loss(normalize(img), normalize(txt), logit_scale)
    single.backward()

    def grad_diff(key: str, scale: int) -> float:
        grad_img = torch.cat([r[f"grad_images_{key}"] for r in results]) / scale  # (world * n, D)
        grad_txt = torch.cat([r[f"grad_texts_{key}"] for r in results]) / scale
        return torch.cat([grad_img - img.grad, grad_txt - txt.grad]).abs().max().item()

    losses = [r[f"loss_{k}"].item() for r in results for k in ("local", "with_grad")]
    return {"single_loss": single.item(), "process_losses": losses,
            "max_loss_diff": max(abs(x - single.item()) for x in losses), "attempts": attempt,
            "max_grad_diff": grad_diff("local", 1),
            "max_grad_diff_with_grad": grad_diff("with_grad", world_size)}
