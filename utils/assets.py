"""Where the course runs and what it keeps: the device and cache settings, the bundled assets
(tiny models) with their manifest of sha256 sums, and a streaming safetensors reader."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from .io import atomic_path, sha256_of, write_atomic  # noqa: F401  (callers import them here too)

if TYPE_CHECKING:  # imported lazily: `doctor` and failing offline stay fast
    import torch

ASSETS_DIR = Path(__file__).parent / "assets"
MANIFEST = ASSETS_DIR / "manifest.json"
CACHE_ENV = "COURSE_CACHE"  # the one cache setting: VQGAN checkpoints, image-index caches
CACHE_ENV_ALIASES = ("MULTIMODAL_COURSE_CACHE",)  # older name, still read
DEVICE_ENV = "COURSE_DEVICE"  # the one device setting: cpu, cuda, mps or auto (the default)
RANDOM_WEIGHTS_ENV = "COURSE_RANDOM_WEIGHTS"  # set only by the test fixture (random weights)
LOW_MEMORY_BELOW = 4 * 2**30  # under this many bytes (Binder: 2 GB), big models save memory


def quality_checks_apply() -> bool:
    """False only under the test fixture ($COURSE_RANDOM_WEIGHTS=1: random weights in the real
    formats, which cannot be accurate): cells checking accuracy, recall, CLIP score stand aside."""
    return os.environ.get(RANDOM_WEIGHTS_ENV, "0") in ("", "0")


def memory_limit() -> int | None:
    """Bytes this process may use: its cgroup's limit (Binder, Docker) or the machine's RAM."""
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # "max" or a huge number: no limit there
            return int(text)
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: unknown
        return None


def native_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX-512 BF16 or AMX): bf16 autocast pays."""
    import torch

    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


DEVICE_HELP = "cpu, cuda, mps or auto (default: $COURSE_DEVICE, else the GPU if there is one)"


def pick_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' (or None) -> $COURSE_DEVICE if set, else cuda if available, else mps, else cpu.
    A device that this machine lacks fails with one line saying what to use."""
    import torch

    if device is None or str(device) == "auto":
        device = os.environ.get(DEVICE_ENV) or "auto"
    mps = bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"Unknown device {device!r}: use cpu, cuda, mps or auto.") from err
    if chosen.type == "cuda" and not torch.cuda.is_available():
        lacks = "this machine has no CUDA GPU"
    elif chosen.type == "mps" and not mps:
        lacks = "MPS (Apple GPU) is not available"
    else:
        return chosen
    raise ValueError(f"Device {device!r} asked for, but {lacks}: use cpu or auto.")


def course_cache_dir() -> Path:
    """The course's cache folder: $COURSE_CACHE, else $XDG_CACHE_HOME/multimodal-course
    (default ~/.cache/multimodal-course). Holds vqgan/ and image-index/."""
    for var in (CACHE_ENV, *CACHE_ENV_ALIASES):
        if os.environ.get(var):
            return Path(os.environ[var]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "multimodal-course"


def verify_assets() -> dict[str, str]:
    """{name: problem} for every manifest entry whose file is missing or whose sha256 differs."""
    problems = {}
    for name, entry in read_manifest().items():
        path, rebuild = ASSETS_DIR / name, entry.get("rebuild")
        if not path.exists():
            problems[name] = ("missing; rebuild it with: "
                              f"{rebuild or 'python -m course_tools train ...'}")
        elif sha256_of(path) != entry.get("sha256"):
            problems[name] = ("sha256 differs from the manifest (changed or damaged); reinstall "
                              f"the course (git checkout utils/assets) or rebuild: {rebuild}")
    return problems


def read_manifest() -> dict:
    """{file name: {"sha256", "bytes", "rebuild"}} of the bundled assets; {} without a manifest."""
    return json.loads(MANIFEST.read_text()) if MANIFEST.exists() else {}


def iter_safetensors(path: str | Path):
    """Yield (name, tensor) from a .safetensors file, one tensor at a time, with plain reads (no
    memory map, so the file's pages do not stay resident: tests/test_pretrained_path.py measures
    a session's peak memory). The format: 8 bytes of header length (little-endian), a JSON header
    {name: {dtype, shape, data_offsets}}, then the data."""
    import torch

    path = Path(path)
    dtypes = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16,
              "BF16": torch.bfloat16, "I64": torch.int64, "I32": torch.int32, "I16": torch.int16,
              "I8": torch.int8, "U8": torch.uint8, "BOOL": torch.bool}
    with open(path, "rb") as f:
        head = f.read(8)
        length = int.from_bytes(head, "little") if len(head) == 8 else -1
        if not 0 < length <= path.stat().st_size - 8:
            raise ValueError(f"{path.name} is not a safetensors file (its header length makes no "
                             "sense)")
        header = json.loads(f.read(length))
        header.pop("__metadata__", None)
        for name, info in header.items():
            start, end = info["data_offsets"]
            f.seek(8 + length + start)
            data = bytearray(end - start)
            if f.readinto(data) != end - start:
                raise EOFError(f"{path.name} ends inside tensor {name}: the file is truncated")
            tensor = torch.frombuffer(data, dtype=dtypes[info["dtype"]]) if data else torch.empty(0)
            yield name, tensor.reshape(info["shape"])


def load_safetensors_into(model, path: str | Path) -> None:
    """Copy a .safetensors file's tensors into `model`'s parameters one at a time, so the weights
    are never in memory twice: ViT-B-32 stays under the 1.9 GB peak of open_clip's own loading
    (Binder allows about 2 GB; tests/test_pretrained_path.py measures it)."""
    import torch

    target = model.state_dict()  # tensors sharing memory with the model's parameters and buffers
    seen = set()
    with torch.no_grad():
        for key, tensor in iter_safetensors(path):
            if key == "text.transformer.embeddings.position_ids" and key not in target:
                continue  # saved by transformers < 4.31, rebuilt by newer ones (as open_clip does)
            if key not in target:
                raise KeyError(f"unexpected weight {key!r}")
            if tensor.shape != target[key].shape:
                raise ValueError(f"{key} has shape {tuple(tensor.shape)}, the model wants "
                                 f"{tuple(target[key].shape)}")
            target[key].copy_(tensor)
            seen.add(key)
    if missing := sorted(set(target) - seen):
        raise KeyError(f"missing weights {missing[:5]}")
