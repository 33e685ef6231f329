"""Bundled assets (tiny models) and their manifest of sha256 sums."""

from __future__ import annotations

import hashlib
import json
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
    MANIFEST.write_text(json.dumps(dict(sorted(manifest.items())), indent=2) + "\n")
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
            raise ValueError(
                f"Bundled asset {path} does not match its manifest sha256 "
                f"(expected {expected}, got {actual}). Reinstall the course or rebuild the asset."
            )
    return path
