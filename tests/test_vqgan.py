"""Our VQGAN modules equal taming-transformers' on the same weights, and its checkpoints load.

The reference is the `taming-transformers-rom1504` package (a test dependency). Only
taming.modules.* is imported: its VQModel (taming.models.vqgan) needs pytorch-lightning, so
the reference model is composed here exactly as VQModel.encode / decode do it:
    encode: quantize(quant_conv(encoder(x)))      decode: decoder(post_quant_conv(z_q))
"""

from __future__ import annotations

import hashlib
import sys
import types

import pytest
import torch

from utils.vqgan import (
    CheckpointError,
    VQGANConfig,
    config_from_state_dict,
    download_command,
    load_vqgan,
    read_state_dict,
)

try:
    from taming.modules.diffusionmodules.model import Decoder as TamingDecoder
    from taming.modules.diffusionmodules.model import Encoder as TamingEncoder
    from taming.modules.vqvae.quantize import VectorQuantizer2 as TamingQuantizer
except ImportError as err:  # a clear failure, not a silent skip: this test is the proof
    raise ImportError(
        "tests/test_vqgan.py compares with taming-transformers: pip install -c constraints.txt "
        "-e '.[test]' (or: pip install --no-deps taming-transformers-rom1504 einops)"
    ) from err

# A small config of the same family as f16_16384: two levels (f=2), attention at the lower one.
DDCONFIG = dict(ch=32, out_ch=3, ch_mult=(1, 2), num_res_blocks=1, attn_resolutions=[8],
                dropout=0.0, in_channels=3, resolution=16, z_channels=64, double_z=False)
N_EMBED, EMBED_DIM = 48, 16


class TamingReference(torch.nn.Module):
    """taming's VQModel without its training parts (same submodule names, hence same keys)."""

    def __init__(self):
        super().__init__()
        self.encoder = TamingEncoder(**DDCONFIG)
        self.decoder = TamingDecoder(**DDCONFIG)
        self.quantize = TamingQuantizer(N_EMBED, EMBED_DIM, beta=0.25, sane_index_shape=True)
        self.quant_conv = torch.nn.Conv2d(DDCONFIG["z_channels"], EMBED_DIM, 1)
        self.post_quant_conv = torch.nn.Conv2d(EMBED_DIM, DDCONFIG["z_channels"], 1)


@pytest.fixture(scope="module")
def reference() -> TamingReference:
    torch.manual_seed(0)
    ref = TamingReference().eval()
    with torch.no_grad():  # random weights everywhere, including GroupNorm affine and codebook
        for p in ref.parameters():
            p.add_(0.1 * torch.randn_like(p))
        ref.quantize.embedding.weight.normal_()
    return ref


class ModelCheckpoint:
    """Stands for pytorch-lightning's callback, which taming's .ckpt files hold."""

    def __init__(self):
        self.monitor, self.best_model_score = "val/rec_loss", torch.tensor(0.5)


LIGHTNING = "pytorch_lightning.callbacks.model_checkpoint"


@pytest.fixture
def fake_lightning(monkeypatch):
    """Make ModelCheckpoint picklable as pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint;
    afterwards the fake modules are gone, so loading must work without pytorch-lightning."""
    for name in ["pytorch_lightning", "pytorch_lightning.callbacks", LIGHTNING]:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[LIGHTNING].ModelCheckpoint = ModelCheckpoint
    monkeypatch.setattr(ModelCheckpoint, "__module__", LIGHTNING)


def lightning_checkpoint(state: dict) -> dict:
    """What a taming .ckpt holds: the weights plus pytorch-lightning training extras."""
    return {
        "epoch": 3, "global_step": 1234, "pytorch-lightning_version": "1.0.8",
        "state_dict": {**state, "loss.discriminator.main.0.weight": torch.zeros(2, 3, 4, 4)},
        "callbacks": {ModelCheckpoint: ModelCheckpoint()},
        "optimizer_states": [{"state": {}, "param_groups": [{"lr": 4.5e-6}]}],
    }


def save_ckpt(reference, path, legacy: bool = False):
    torch.save(lightning_checkpoint(reference.state_dict()), path,
               _use_new_zipfile_serialization=not legacy)


@pytest.fixture(scope="module")
def ours(reference, tmp_path_factory):
    path = tmp_path_factory.mktemp("vqgan") / "last.ckpt"
    torch.save({"state_dict": reference.state_dict()}, path)
    return load_vqgan(path)


def test_config_read_from_weights(reference):
    cfg = config_from_state_dict(reference.state_dict())
    assert (cfg.n_embed, cfg.embed_dim, cfg.z_channels, cfg.ch) == (N_EMBED, EMBED_DIM, 64, 32)
    assert cfg.ch_mult == (1, 2) and cfg.num_res_blocks == 1 and cfg.downsample == 2


def test_same_keys_and_shapes_as_taming(reference, ours):
    theirs = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    mine = {k: tuple(v.shape) for k, v in ours.state_dict().items()}
    assert mine == theirs


def test_encode_quantize_decode_equal_taming(reference, ours):
    torch.manual_seed(1)
    images = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        z_ref = reference.quant_conv(reference.encoder(images * 2 - 1))  # (2, 16, 8, 8)
        zq_ref, _, (_, _, codes_ref) = reference.quantize(z_ref)
        out_ref = reference.decoder(reference.post_quant_conv(zq_ref))
        z = ours.encode_z(images)
        zq, codes = ours.quantize(z)
        out = ours.decode_z(zq)
    assert z.shape == (2, EMBED_DIM, 8, 8)
    torch.testing.assert_close(z, z_ref, atol=1e-5, rtol=1e-4)
    assert torch.equal(codes, codes_ref), "nearest-code indices differ from taming's"
    assert torch.equal(ours.encode(images), codes_ref)
    torch.testing.assert_close(zq, zq_ref, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(out, (out_ref + 1) / 2, atol=1e-5, rtol=1e-4)
    # decoding codes: taming's get_codebook_entry, then decode
    with torch.no_grad():
        entry = reference.quantize.get_codebook_entry(codes_ref.flatten(), (2, 8, 8, EMBED_DIM))
        from_codes_ref = reference.decoder(reference.post_quant_conv(entry))
    torch.testing.assert_close(ours.decode_codes(codes_ref), ((from_codes_ref + 1) / 2).clamp(0, 1),
                               atol=1e-5, rtol=1e-4)
    assert out.std() > 0.01, "a constant output would make the comparison meaningless"


def test_straight_through_gradient_equals_taming(reference, ours):
    torch.manual_seed(2)
    z = torch.randn(1, EMBED_DIM, 4, 4)
    z_ours, z_ref = z.clone().requires_grad_(), z.clone().requires_grad_()
    ours.decode_z(ours.quantize(z_ours)[0]).square().mean().backward()
    zq_ref = reference.quantize(z_ref)[0]
    ((reference.decoder(reference.post_quant_conv(zq_ref)) + 1) / 2).square().mean().backward()
    torch.testing.assert_close(z_ours.grad, z_ref.grad, atol=1e-6, rtol=1e-4)
    assert z_ours.grad.abs().sum() > 0


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy-format"])
def test_lightning_checkpoint_loads_with_weights_only(reference, tmp_path, fake_lightning, legacy):
    path = tmp_path / "last.ckpt"
    save_ckpt(reference, path, legacy)
    for name in ["pytorch_lightning", "pytorch_lightning.callbacks", LIGHTNING]:
        sys.modules.pop(name)  # the fixture restores them
    # plain weights_only loading refuses the pytorch-lightning callback ...
    with pytest.raises(Exception, match="pytorch_lightning"):
        torch.load(path, weights_only=True)
    # ... ours keeps only the weights, drops the loss.* training weights, and runs no code
    state = read_state_dict(path)
    assert "loss.discriminator.main.0.weight" in state
    model = load_vqgan(path)
    for key, value in reference.state_dict().items():
        assert torch.equal(model.state_dict()[key], value), key


def test_safetensors_checkpoint(reference, tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "vqgan.safetensors"
    save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    assert torch.equal(load_vqgan(path).codebook, reference.quantize.embedding.weight)


def test_missing_checkpoint_says_how_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    with pytest.raises(FileNotFoundError) as info:
        load_vqgan(name="f16_1024")
    assert download_command("f16_1024") in str(info.value)
    with pytest.raises(ValueError, match="f16_16384"):
        load_vqgan(name="f8_nonsense")


def test_truncated_and_foreign_checkpoints(reference, tmp_path):
    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": reference.state_dict()}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_vqgan(path)
    legacy = tmp_path / "legacy.ckpt"  # torch's older format, cut anywhere (empty messages too)
    torch.save({"state_dict": reference.state_dict()}, legacy, _use_new_zipfile_serialization=False)
    data = legacy.read_bytes()
    for cut in (1, 8, 100, len(data) // 2, len(data) - 1):
        legacy.write_bytes(data[:cut])
        with pytest.raises(CheckpointError, match="truncated"):
            load_vqgan(legacy)
    other = tmp_path / "other.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(CheckpointError, match="not a taming VQGAN"):
        load_vqgan(other)


def test_sha256_record_detects_a_changed_file(reference, tmp_path):
    path = tmp_path / "vqgan_imagenet_f16_1024.ckpt"
    torch.save({"state_dict": reference.state_dict()}, path)
    (tmp_path / (path.name + ".sha256")).write_text("0" * 64 + "  x\n")
    with pytest.raises(CheckpointError, match="sha256"):
        load_vqgan(path)


def test_real_configs_shapes():
    """The f16 configs build with taming's layer sizes (no weights needed)."""
    from utils.vqgan import CONFIGS, VQGAN

    with torch.device("meta"):
        model = VQGAN(CONFIGS["f16_1024"])
    assert model.codebook.shape == (1024, 256)
    assert model.decoder.up[4].block[0].conv1.weight.shape == (512, 512, 3, 3)
    assert model.grid == (16, 16) and VQGANConfig().downsample == 16
    assert sum(p.numel() for p in model.parameters()) > 70_000_000


def test_offline_download_fails_in_one_line(tmp_path, monkeypatch):
    from utils import vqgan

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ConnectionError) as info:
        vqgan.download_vqgan("f16_16384")
    message = str(info.value)
    assert "\n" not in message and download_command("f16_16384") in message
    assert not list(tmp_path.rglob("*.part")), "nothing half-downloaded is left behind"


@pytest.fixture
def local_server(tmp_path):
    """An HTTP server on 127.0.0.1 serving tmp_path/served: the download runs for real, offline."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    served.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_download_is_atomic_and_records_its_sha256(local_server, tmp_path, monkeypatch):
    from utils import models, vqgan

    served, url = local_server
    (served / "last.ckpt").write_bytes(b"weights " * 5000)
    monkeypatch.setenv("COURSE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setattr(models, "network_available", lambda *args, **kwargs: True)
    monkeypatch.setitem(vqgan.CHECKPOINT_URLS, "f16_1024", f"{url}/last.ckpt")
    # a wrong pinned sha256: refused, and nothing (not even a partial file) is kept
    with pytest.raises(CheckpointError, match="expected sha256"):
        vqgan.download_vqgan("f16_1024", sha256="0" * 64)
    target = vqgan.checkpoint_path("f16_1024")
    assert not any(target.parent.iterdir())
    # no known sha256: downloaded whole, its sha256 computed and recorded beside it
    assert vqgan.download_vqgan("f16_1024") == target
    digest = hashlib.sha256((served / "last.ckpt").read_bytes()).hexdigest()
    assert target.read_bytes() == (served / "last.ckpt").read_bytes()
    assert target.with_name(target.name + ".sha256").read_text().split()[0] == digest
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name, target.name + ".sha256"]
    # the right pinned sha256 is accepted
    target.unlink()
    assert vqgan.download_vqgan("f16_1024", sha256=digest) == target


def test_checkpoint_status_verifies_the_recorded_sha256(reference, tmp_path, monkeypatch):
    from utils import vqgan

    monkeypatch.setenv("COURSE_CACHE", str(tmp_path))
    assert vqgan.checkpoint_status()["present"] is False
    path = vqgan.checkpoint_path("f16_16384")
    path.parent.mkdir(parents=True)
    torch.save({"state_dict": reference.state_dict()}, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    status = vqgan.checkpoint_status()
    assert status["present"] and status["sha256"] == digest and status["sha256_verified"] is None
    path.with_name(path.name + ".sha256").write_text(f"{digest}  {path.name}\n")
    assert vqgan.checkpoint_status()["sha256_verified"] is True
    path.with_name(path.name + ".sha256").write_text("0" * 64 + "\n")
    assert vqgan.checkpoint_status()["sha256_verified"] is False


def test_fixture_checkpoint_is_taming_f16_16384_with_its_yaml(tmp_path):
    """The random-weight fixture of tests/test_pretrained_path.py: a lightning .ckpt whose
    weights have the shapes its taming model.yaml states, and which loads without lightning."""
    import yaml
    from pretrained_fixture import write_vqgan

    path = write_vqgan(tmp_path, "f16_1024")  # the 1024-code sibling: same layers, smaller file
    assert "pytorch_lightning" not in sys.modules
    params = yaml.safe_load(path.with_suffix(".yaml").read_text())["model"]["params"]
    cfg = config_from_state_dict(read_state_dict(path))
    dd = params["ddconfig"]
    assert (cfg.n_embed, cfg.embed_dim) == (params["n_embed"], params["embed_dim"]) == (1024, 256)
    assert (cfg.ch, cfg.ch_mult, cfg.num_res_blocks) == (dd["ch"], tuple(dd["ch_mult"]), dd["num_res_blocks"])
    assert list(cfg.attn_resolutions) == dd["attn_resolutions"] and cfg.z_channels == dd["z_channels"]
    assert load_vqgan(path).codebook.shape == (1024, 256)


# ------------------------------------------------------------------ memory (lesson 04 on a 2 GB Binder)
# benchmarks/bench_memory.py --lesson04 measures the peak RSS; these tests pin what makes it small.


def _file_mappings(path) -> list[tuple[int, int]]:
    """Address ranges of this process that map `path` (Linux /proc/self/maps)."""
    target, ranges = str(path.resolve()), []
    with open("/proc/self/maps") as maps:
        for line in maps:
            fields = line.split(maxsplit=5)
            if len(fields) == 6 and fields[5].strip() == target:
                start, end = (int(x, 16) for x in fields[0].split("-"))
                ranges.append((start, end))
    return ranges


def test_generation_vqgan_holds_no_encoder_nor_training_weights(reference, tmp_path, fake_lightning):
    """load_vqgan(encoder=False): decoder, codebook and post_quant_conv only; it decodes exactly
    as the full model does, and says how to get the encoder when asked to encode."""
    path = tmp_path / "last.ckpt"
    save_ckpt(reference, path)
    full, light = load_vqgan(path), load_vqgan(path, encoder=False)
    assert {k.split(".")[0] for k in light.state_dict()} == {"decoder", "quantize", "post_quant_conv"}
    assert {k.split(".")[0] for k in full.state_dict()} == {"encoder", "decoder", "quantize", "quant_conv",
                                                            "post_quant_conv"}
    z = torch.randn(1, EMBED_DIM, 4, 4, generator=torch.Generator().manual_seed(0))
    assert torch.equal(light.decode_z(z), full.decode_z(z))
    with pytest.raises(RuntimeError, match="encoder=True"):
        light.encode_z(torch.rand(1, 3, 16, 16))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_checkpoint_is_memory_mapped_not_copied(reference, tmp_path):
    """The weights are not held twice: the parameters are the checkpoint file's own pages
    (torch.load(mmap=True) + assign), and the optimizer states beside them are never read."""
    path = tmp_path / "last.ckpt"
    adam = {i: {"exp_avg": torch.zeros_like(v), "exp_avg_sq": torch.zeros_like(v)}
            for i, v in enumerate(reference.state_dict().values())}
    torch.save({"state_dict": reference.state_dict(), "optimizer_states": [{"state": adam}]}, path)
    model = load_vqgan(path, encoder=False)
    ranges = _file_mappings(path)
    assert ranges, "the checkpoint is not memory-mapped"
    for name, p in model.named_parameters():
        assert any(start <= p.data_ptr() < end for start, end in ranges), f"{name} was copied out of the file"
    assert torch.equal(model.codebook, reference.quantize.embedding.weight)


def test_decoder_recomputes_activations_with_the_same_numbers(ours):
    """grad_checkpointing keeps only each stage's input for the backward pass (a fraction of the
    activations) and gives bit-identical images and gradients."""
    z = torch.randn(1, EMBED_DIM, 8, 8, generator=torch.Generator().manual_seed(1), requires_grad=True)
    weights = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(2))
    results = {}
    for on in (False, True):
        ours.decoder.grad_checkpointing, saved = on, []
        z.grad = None
        with torch.autograd.graph.saved_tensors_hooks(lambda t, saved=saved: saved.append(t.numel()) or t, lambda t: t):
            image = ours.decode_z(z)
        (image * weights).sum().backward()
        results[on] = (image.detach(), z.grad.clone(), sum(saved))
    ours.decoder.grad_checkpointing = False
    assert torch.equal(results[True][0], results[False][0]) and torch.equal(results[True][1], results[False][1])
    assert results[True][2] < results[False][2] / 3, (results[True][2], results[False][2])
