"""Bundled assets (tiny models) and their manifest of sha256 sums."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

ASSETS_DIR = Path(__file__).parent / "assets"
MANIFEST = ASSETS_DIR / "manifest.json"


def sha256_of(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the folder of `path`; on success it is renamed to `path`.

    Whatever happens inside (an error, Ctrl-C), the temporary file is removed, so `path`
    either keeps its old content or gets the whole new one. An existing file keeps its mode.
        with atomic_path("out.png") as tmp:
            image.save(tmp, format="PNG")
    """
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


def verify_assets() -> dict[str, str]:
    """{name: problem} for every manifest entry whose file is missing or whose sha256 differs."""
    problems = {}
    for name, entry in read_manifest().items():
        path = ASSETS_DIR / name
        if not path.exists():
            problems[name] = f"missing; rebuild it with: {entry.get('rebuild') or 'python -m utils train ...'}"
        elif sha256_of(path) != entry.get("sha256"):
            problems[name] = ("sha256 differs from the manifest (changed or damaged); reinstall the "
                              f"course (git checkout utils/assets) or rebuild: {entry.get('rebuild')}")
    return problems


def read_manifest() -> dict:
    if not MANIFEST.exists():
        return {}
    return json.loads(MANIFEST.read_text())


def register_asset(path: str | Path, description: str = "", rebuild: str = "") -> dict:
    """Record a bundled file's sha256 and size in the manifest; returns its entry."""
    path = Path(path).resolve()
    name = path.relative_to(ASSETS_DIR.resolve()).as_posix()
    entry = {
        "sha256": sha256_of(path),
        "bytes": path.stat().st_size,
        "description": description,
        "rebuild": rebuild,
    }
    manifest = read_manifest()
    manifest[name] = entry
    write_atomic(MANIFEST, json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
    return entry


def asset_path(name: str, verify: bool = False) -> Path:
    """Path of a bundled asset; with verify=True, check its sha256 against the manifest."""
    path = ASSETS_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"Bundled asset {name!r} is missing from {ASSETS_DIR}. "
            f"Rebuild it with: {read_manifest().get(name, {}).get('rebuild', 'python -m utils train ...')}"
        )
    if verify:
        expected = read_manifest().get(name, {}).get("sha256")
        actual = sha256_of(path)
        if expected != actual:
            from .errors import CheckpointError

            raise CheckpointError(
                f"Bundled asset {path} does not match its manifest sha256 "
                f"(expected {expected}, got {actual}).", "Reinstall the course or rebuild the asset."
            )
    return path
