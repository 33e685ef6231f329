"""Files the course writes and reads: checkpoints (a tiny model is `name.safetensors`, float16 by
default, beside its config `name.json`: `save_checkpoint`, `load_checkpoint`), atomic writes (never
half-written), sha256 sums and file names."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_of(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`, renamed to it on success and removed in any case,
    so `path` keeps its old content or gets the whole new one (and keeps its mode)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        if path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:  # what open() would have given: 0666 minus the umask
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write bytes (or UTF-8 text) to `path` through a temporary file and a rename."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return Path(path)


def unique_path(path: str | os.PathLike) -> Path:
    """`path` if free, else the first free `stem-1.ext`, `stem-2.ext`, ...: never overwrite."""
    path = Path(path)
    candidate, i = path, 1
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{i}{path.suffix}")
        i += 1
    return candidate


def slug(text: str, limit: int = 40, empty: str = "image") -> str:
    """A file name from text: "A red Star!" -> "a-red-star" (lower case, a-z 0-9 and dashes)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:limit] or empty


def save_checkpoint(model, weights: str | os.PathLike, config: dict, half: bool = True,
                    metadata: dict[str, str] | None = None) -> Path:
    """Write a model's state dict to `weights` (safetensors, float16 when half=True) and `config`
    beside it as .json; returns the config's path."""
    from safetensors.torch import save
    weights = Path(weights)
    state = {k: (v.detach().half() if half and v.is_floating_point() else v.detach()).contiguous()
             for k, v in getattr(model, "model", model).state_dict().items()}
    write_atomic(weights, save(state, metadata=metadata))
    return write_atomic(weights.with_suffix(".json"), json.dumps(config, indent=2) + "\n")


def load_checkpoint(weights: str | os.PathLike | None, default: Path, what: str,
                    rebuild: str) -> tuple[dict, dict, Path]:
    """(float32 state dict, config, path) of `weights` (None: `default`) from save_checkpoint;
    a missing file fails with the `rebuild` command."""
    from safetensors.torch import load_file
    weights = Path(weights) if weights else default
    config = weights.with_suffix(".json")
    if not weights.exists() or not config.exists():
        raise FileNotFoundError(f"The {what} {weights} (or its config {config.name}) is missing. "
                                f"Rebuild it: {rebuild}")
    state = load_file(str(weights))
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    return state, json.loads(config.read_text()), weights


def fields_of(cls, raw: dict) -> dict:
    """The entries of a saved config (JSON beside the weights) that are fields of `cls`."""
    return {k: v for k, v in raw.items() if k in cls.__dataclass_fields__}
